//! `jobs`: submit jobs to the persistent local engine (src/jobs), wait for them, read their
//! logs and metrics. Typed API over the store and the job host; no rhai here.
pub mod pool;
pub mod rhai;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, HostResult};
use crate::jobs::store::{NewRun, Run, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

/// A job as scripts describe it. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub command: Option<Command>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, Value>,
    #[serde(default)]
    pub num_gpus: i64,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, Value>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub depends_on: Vec<i64>,
    #[serde(default)]
    pub retries: i64,
    /// Seconds before the first retry (doubles each time); default 1.
    pub backoff: Option<f64>,
    /// Seconds.
    pub timeout: Option<f64>,
    /// Idempotency key: a job with this key that exists already is returned, not run again.
    pub key: Option<String>,
    pub parent: Option<i64>,
    /// `"host"` (default) or `"docker"`.
    pub run_in: Option<String>,
    /// Image for `run_in: "docker"` (default: `DOCKER_IMAGE_NAME`).
    pub image: Option<String>,
    /// More bind mounts for `run_in: "docker"`: `"host:/path[:ro]"` (the run folder and the
    /// working directory are always mounted at their own paths).
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Network mode for `run_in: "docker"` (e.g. `none`, `host`; default: the engine's).
    pub network: Option<String>,
    /// nussl's `blocking`: the job must end before anything submitted after it starts
    /// (`submit` returns only when it has finished; `pool` waits for it before going on).
    #[serde(default)]
    pub blocking: bool,
    /// With `key`: a run with this key that failed (or was cancelled / timed out) is queued
    /// again rather than returned (pipelines set it; not a script key).
    #[serde(skip)]
    pub retry_failed: bool,
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// Validates a spec and turns it into a store record.
pub fn to_new_run(s: &JobSpec) -> HostResult<NewRun> {
    let bad = |m: String| Err(HostError::new("jobs.invalid_spec", m));
    let command = match &s.command {
        None => return bad("a job needs a command".into()),
        Some(Command::Shell(c)) if c.trim().is_empty() => return bad("the command is empty".into()),
        Some(Command::Argv(a)) if a.is_empty() => return bad("the command array is empty".into()),
        Some(Command::Shell(c)) => Value::String(c.clone()),
        Some(Command::Argv(a)) => Value::Array(a.iter().cloned().map(Value::String).collect()),
    };
    if s.num_gpus < 0 {
        return bad(format!("num_gpus must be 0 or more, not {}", s.num_gpus));
    }
    if s.retries < 0 {
        return bad(format!("retries must be 0 or more, not {}", s.retries));
    }
    if let Some(t) = s.timeout.filter(|t| !t.is_finite() || *t <= 0.0) {
        return bad(format!(
            "timeout must be a positive number of seconds, not {t}"
        ));
    }
    let docker = match s.run_in.as_deref() {
        None | Some("host") => false,
        Some("docker") => true,
        Some(other) => {
            return bad(format!(
                "run_in must be \"host\" or \"docker\", not \"{other}\""
            ))
        }
    };
    if !docker && (s.image.is_some() || !s.mounts.is_empty() || s.network.is_some()) {
        return bad("image, mounts and network go with run_in: \"docker\"".into());
    }
    let mut mounts = Vec::new();
    for m in &s.mounts {
        // Checked now (a missing source is an error at submit, not when the job starts).
        let v = crate::modules::docker::Volume::parse(m)?;
        mounts.push(Value::String(format!(
            "{}:{}{}",
            v.source.display(),
            v.target,
            if v.read_only { ":ro" } else { "" }
        )));
    }
    if let Some(cwd) = &s.cwd {
        if !std::path::Path::new(cwd).is_dir() {
            return bad(format!("working directory '{cwd}' does not exist"));
        }
    }
    let env: serde_json::Map<String, Value> = s
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(text(v))))
        .collect();
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
    let spec = serde_json::json!({
        "command": command,
        "cwd": cwd,
        "env": env,
        "num_gpus": s.num_gpus,
        "timeout": s.timeout,
    });
    let mut spec = spec;
    if docker {
        spec["run_in"] = "docker".into();
        spec["image"] = s.image.clone().into();
        spec["mounts"] = mounts.into();
        spec["network"] = s.network.clone().into();
    }
    Ok(NewRun {
        parent_id: s.parent,
        kind: "job".into(),
        name: s.name.clone().unwrap_or_default(),
        key: s.key.clone(),
        spec,
        priority: s.priority,
        max_retries: s.retries,
        backoff: s.backoff.unwrap_or(1.0),
        depends_on: s.depends_on.clone(),
        params: s
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tags: s.tags.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        owner: None,
        retry_failed: s.retry_failed,
    })
}

/// Submits a job; the job host of this process starts running it (up to `workers` at once).
///
/// Secrets in `env` are stored masked (`***`) in the database and the run folder; this host
/// keeps the real values in memory to run the job. A job that another host (or a later run of
/// the script that does not submit it again) picks up sees the masked value.
pub fn submit(s: &JobSpec) -> HostResult<Run> {
    let mut out = submit_many(std::slice::from_ref(s))?;
    Ok(out.remove(0))
}

/// `submit` for many specs at once: validated first, then recorded in one transaction (all or
/// none).
pub fn submit_many(specs: &[JobSpec]) -> HostResult<Vec<Run>> {
    let mut runs = Vec::with_capacity(specs.len());
    for s in specs {
        let mut n = to_new_run(s)?;
        let real_env = n.spec["env"].clone();
        n.spec = crate::modules::yaml::redact_value(&n.spec);
        let secret_env = (n.spec["env"] != real_env).then(|| {
            real_env
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default()
        });
        runs.push((n, secret_env));
    }
    crate::jobs::host::get()?.create_many(runs)
}

/// Runs `f` on this process's connection to the state database.
pub fn with_store<T>(f: impl FnOnce(&mut Store) -> HostResult<T>) -> HostResult<T> {
    crate::jobs::store::with(&crate::state::dir()?, f)
}

pub fn get(id: i64) -> HostResult<Run> {
    with_store(|s| s.get(id))
}

/// Waits until the job has finished (completed, failed, cancelled or timed out): woken when
/// this process ends a job, and looking every 100 ms for jobs other processes run.
pub fn wait(id: i64, cancel: &CancellationToken) -> HostResult<Run> {
    let state = crate::state::dir()?;
    loop {
        let seen = crate::jobs::host::ended_count();
        let r = crate::jobs::store::with(&state, |s| s.get(id))?;
        if crate::jobs::store::FINISHED.contains(&r.status.as_str()) {
            return Ok(r);
        }
        if cancel.is_cancelled() {
            return Err(HostError::cancelled());
        }
        crate::jobs::host::wait_for_end(seen, Duration::from_millis(100));
    }
}

pub fn cancel(id: i64) -> HostResult<String> {
    crate::jobs::host::get()?.cancel(id)
}

/// The job's stdout (and stderr) so far.
pub fn logs(id: i64, stream: &str) -> HostResult<String> {
    let r = get(id)?;
    let p = std::path::Path::new(&r.run_dir).join(format!("{stream}.log"));
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(crate::error::io_err("jobs", "cannot read", &p, &e)),
    }
}

pub fn set_workers(n: usize) -> HostResult<()> {
    crate::jobs::host::get()?.set_workers(n);
    Ok(())
}
