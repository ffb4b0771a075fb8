//! `jobs`: submit jobs to the persistent local engine (`crate::engine`), wait for them, read their
//! logs and metrics. Typed API over the store and the job host; no rhai here.
pub mod launch;
pub mod pool;
pub mod rhai;

pub mod pipeline;
pub mod progress;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::command::Command;
use crate::error::{LabError, LabResult};
use crate::store::{NewRun, Run, RunIn, RunKind, RunStatus, StoredSpec};
use crate::util::{ByteSize, Seconds, Text};

/// A job as scripts describe it. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub command: Option<Command>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, Text>,
    #[serde(default)]
    pub num_gpus: u32,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, Text>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub depends_on: Vec<i64>,
    #[serde(default)]
    pub retries: u32,
    /// Before the first retry (doubles each time); default 1 s.
    pub backoff: Option<Seconds>,
    pub timeout: Option<Seconds>,
    /// Idempotency key: a job with this key that exists already is returned, not run again.
    pub key: Option<String>,
    pub parent: Option<i64>,
    /// `"host"` (default) or `"docker"`.
    pub run_in: Option<RunIn>,
    /// Image for `run_in: "docker"` (default: `DOCKER_IMAGE_NAME`).
    pub image: Option<String>,
    /// More bind mounts for `run_in: "docker"`: `"host:/path[:ro]"` (the run folder and the
    /// working directory are always mounted at their own paths).
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Network mode for `run_in: "docker"` (e.g. `none`, `host`; default: the engine's).
    pub network: Option<String>,
    /// The most each of its logs keeps (`"100MiB"` or bytes): older output is dropped, with a
    /// line saying so (default: `LABHOST_LOG_LIMIT`, else unlimited).
    pub log_limit: Option<ByteSize>,
    /// nussl's `blocking`: the job must end before anything submitted after it starts
    /// (`submit` returns only when it has finished; `pool` waits for it before going on).
    #[serde(default)]
    pub blocking: bool,
    /// With `key`: a run with this key that failed (or was cancelled / timed out) is queued
    /// again rather than returned (pipelines set it; not a script key).
    #[serde(skip)]
    pub retry_failed: bool,
    /// What the run is (sweeps submit trials, cross-validations folds); not a script key.
    #[serde(skip)]
    pub kind: RunKind,
    /// The experiment (by name, made if missing) the job's run belongs to — the one its
    /// MLflow client sees as `MLFLOW_EXPERIMENT_ID`/`_NAME`. A script that calls
    /// `mlflow.set_experiment` must name the same one (as in an Azure ML job).
    pub experiment: Option<String>,
    /// The experiment the run belongs to, by id (sweeps set it); not a script key.
    #[serde(skip)]
    pub experiment_id: Option<i64>,
    /// Run in its own copy of `cwd` with `outputs/` and `logs/` (Azure ML's runtime
    /// contract; sweeps of job files set it); not a script key.
    #[serde(skip)]
    pub own_cwd: bool,
    /// In a pool: the positions (in the pool's spec list, all earlier) of the specs this one
    /// depends on; the pool turns them into `depends_on` ids. Not a script key.
    #[serde(skip)]
    pub after: Vec<usize>,
}

/// Validates a spec and turns it into a store record.
pub fn to_new_run(s: &JobSpec) -> LabResult<NewRun> {
    let bad = |m: String| Err(LabError::new("jobs.invalid_spec", m));
    let Some(command) = s.command.clone() else {
        return bad("a job needs a command".into());
    };
    if let Err(m) = command.check_not_empty() {
        return bad(m);
    }
    let docker = s.run_in == Some(RunIn::Docker);
    if !docker && (s.image.is_some() || !s.mounts.is_empty() || s.network.is_some()) {
        return bad("image, mounts and network go with run_in: \"docker\"".into());
    }
    if s.timeout.is_some_and(|t| t.0.is_zero()) {
        return bad("timeout must be more than 0 seconds".into());
    }
    if s.log_limit.is_some_and(|b| b.0 < 1024) {
        return bad("log_limit must be at least 1KiB".into());
    }
    let mut mounts = Vec::new();
    for m in &s.mounts {
        // Checked now (a missing source is an error at submit, not when the job starts).
        let v = crate::modules::docker::Volume::parse(m)?;
        mounts.push(format!(
            "{}:{}{}",
            v.source.display(),
            v.target,
            if v.read_only { ":ro" } else { "" }
        ));
    }
    if let Some(cwd) = &s.cwd {
        if !std::path::Path::new(cwd).is_dir() {
            return bad(format!("working directory '{cwd}' does not exist"));
        }
    }
    // Default: the submitter's working directory, recorded so a resumed job runs where it was
    // meant to, whatever folder the resuming host runs in.
    let cwd = match &s.cwd {
        Some(c) => Some(
            std::path::Path::new(c)
                .canonicalize()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| c.clone()),
        ),
        None => std::env::current_dir()
            .ok()
            .map(|d| d.display().to_string()),
    };
    let spec = StoredSpec {
        command,
        cwd,
        env: s
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        num_gpus: s.num_gpus,
        timeout: s.timeout.map(Seconds::secs),
        run_in: s.run_in.unwrap_or_default(),
        image: s.image.clone(),
        mounts,
        network: s.network.clone(),
        own_cwd: s.own_cwd,
        log_limit: s.log_limit.map(|b| b.0),
    };
    Ok(NewRun {
        parent_id: s.parent,
        kind: s.kind,
        name: s.name.clone().unwrap_or_default(),
        key: s.key.clone(),
        spec,
        priority: s.priority,
        max_retries: i64::from(s.retries),
        backoff: s.backoff.map(Seconds::secs).unwrap_or(1.0),
        depends_on: s.depends_on.clone(),
        params: s
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tags: s
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        owner: None,
        retry_failed: s.retry_failed,
        experiment_id: s.experiment_id,
    })
}

/// Submits a job; the job host of this process starts running it (up to `workers` at once).
///
/// Secrets in `env` are stored masked (`***`) in the database and the run folder; this host
/// keeps the real values in memory to run the job. A job that another host (or a later run of
/// the script that does not submit it again) picks up sees the masked value.
pub fn submit(s: &JobSpec) -> LabResult<Run> {
    let mut out = submit_many(std::slice::from_ref(s))?;
    Ok(out.remove(0))
}

/// `submit` for many specs at once: validated first, then recorded in one transaction (all or
/// none).
pub fn submit_many(specs: &[JobSpec]) -> LabResult<Vec<Run>> {
    let mut runs = Vec::with_capacity(specs.len());
    for s in specs {
        let mut n = to_new_run(s)?;
        if let (Some(name), None) = (&s.experiment, s.experiment_id) {
            n.experiment_id = Some(crate::store::with_current(|st| st.experiment_id(name))?);
        }
        let real_env = n.spec.env.clone();
        n.spec = n.spec.masked();
        let secret_env = (n.spec.env != real_env).then_some(real_env);
        runs.push((n, secret_env));
    }
    crate::engine::job_host()?.create_many(runs)
}

pub fn get(id: i64) -> LabResult<Run> {
    crate::store::with_current(|s| s.get(id))
}

/// Waits until the job has finished (completed, failed, cancelled or timed out): woken when
/// this process ends a job, and looking every 100 ms for jobs other processes run.
pub fn wait(id: i64, cancel: &CancellationToken) -> LabResult<Run> {
    let state = crate::state::dir()?;
    loop {
        let seen = crate::engine::ended_count();
        let r = crate::store::with(&state, |s| s.get(id))?;
        if r.status.is_finished() {
            return Ok(r);
        }
        if cancel.is_cancelled() {
            return Err(LabError::cancelled());
        }
        // This process's host takes no more work: nothing it runs will be recorded.
        if let Some(e) = crate::engine::store_failure() {
            return Err(e);
        }
        crate::engine::wait_for_end(seen, Duration::from_millis(100));
    }
}

/// Cancels a job, recording why (`"cancelled by script"`, a policy's verdict, …), and returns
/// once it has ended: a running job's processes are all gone by then. Returns its final status
/// (`cancelled`, or how it ended if it ended first).
pub fn cancel(id: i64, reason: &str) -> LabResult<RunStatus> {
    let st = crate::engine::job_host()?.cancel(id, reason)?;
    if st.is_finished() {
        return Ok(st);
    }
    Ok(wait(id, &CancellationToken::new())?.status)
}

/// The job's stdout (and stderr) so far.
pub fn logs(id: i64, stream: &str) -> LabResult<String> {
    let r = get(id)?;
    let p = std::path::Path::new(&r.run_dir).join(format!("{stream}.log"));
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(crate::error::io_err("jobs", "cannot read", &p, &e)),
    }
}

pub fn set_workers(n: usize) -> LabResult<()> {
    crate::engine::job_host()?.set_workers(n);
    Ok(())
}
