//! Runs one job's process: its own process group, its containment (a cgroup, or the
//! subreaper's token: see `contain`) and a parent-death signal (it dies with the host),
//! stdout/stderr straight into `stdout.log` / `stderr.log` of the run folder, the metrics file
//! (`LABHOST_METRICS`, JSON lines `{"name","value","step"}`) tailed while it runs, exit seen by
//! the event (`wait`). An attempt ends only when all of its processes are gone: what is left
//! when the leader exits, and everything on timeout or cancel, gets SIGTERM, then SIGKILL
//! after the grace (`process::grace()`).
//!
//! Spawn from a long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread* that spawned the
//! child exits, and tokio's blocking-pool threads exit when idle.
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use super::metrics::read_metrics;
use super::metrics::MetricsTail;
use crate::command::Command;
use crate::error::{LabError, LabResult};
use crate::process::{self, contain, contain::Attempt};
use crate::store::{Metric, RunStatus, Started};

/// How often the metrics file is read while the job runs.
pub const METRICS_POLL: Duration = Duration::from_millis(200);

/// How long a job runs before its start (`running`, pid) is recorded on its own; a job that
/// ends sooner has start and end recorded in one transaction.
pub const START_RECORD: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    pub job_id: i64,
    /// The host running it and the attempt number (they name its containment).
    pub host: String,
    pub attempt: i64,
    /// Fds the process keeps (its GPU lease's locks: held while any process of it lives).
    #[serde(skip)]
    pub keep_fds: Vec<std::os::fd::RawFd>,
    pub command: Command,
    pub cwd: Option<PathBuf>,
    /// Azure's runtime contract: `cwd` is the run's own copy of this folder, made before the
    /// job starts (`workdir::prepare`).
    pub cwd_from: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub run_dir: PathBuf,
    pub timeout: Option<Duration>,
    /// `run_in: "docker"`: the container's settings.
    #[serde(skip)]
    pub docker: Option<DockerLaunch>,
    /// The environment the job's own is laid over: the host's of the moment when the job
    /// supervisor starts it (a script may have changed the host's since the supervisor
    /// started); `None`: this process's.
    #[serde(default)]
    pub base_env: Option<Vec<(String, String)>>,
    /// Values masked as `***` in `stdout.log` and `stderr.log` (the secrets of its
    /// environment and every secret this process registered). With none, the job writes its
    /// logs directly; with some, through pipes copied into the logs masked.
    pub secrets: Vec<String>,
    /// The most each log keeps (bytes; see `joblog`); `None`: unlimited.
    #[serde(default)]
    pub log_limit: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct DockerLaunch {
    pub image: Option<String>,
    /// `host:/path[:ro]`, sources already absolute.
    pub mounts: Vec<String>,
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttemptEnd {
    /// `completed`, `failed`, `timed_out` or `cancelled`.
    pub status: RunStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// The start when `started` was not called (the process ended within `START_RECORD`):
    /// the caller records the start together with the end.
    pub start: Option<Started>,
}

/// Where an attempt's news go while it runs: its start and its metrics.
pub trait Report: Send {
    fn started(&mut self, st: &Started);
    fn metrics(&mut self, batch: Vec<Metric>);
    /// Asked before each read of the metrics file: `true` reads the attempt's points again
    /// from their start (their receiver changed: the job supervisor lost its host).
    fn replay(&mut self) -> bool {
        false
    }
}

/// A [`Report`] made of two callbacks.
struct Callbacks<'a> {
    started: &'a mut (dyn FnMut(&Started) + Send),
    metrics: &'a mut (dyn FnMut(Vec<Metric>) + Send),
}

impl Report for Callbacks<'_> {
    fn started(&mut self, st: &Started) {
        (self.started)(st)
    }
    fn metrics(&mut self, batch: Vec<Metric>) {
        (self.metrics)(batch)
    }
}

/// Runs the process to its end. `started(pid)` is called once it has run for `START_RECORD`
/// (the store records it; `AttemptEnd::start` carries it otherwise); `metrics(batch)` receives
/// metric lines as they are written.
pub async fn run(
    l: &Launch,
    started: &mut (dyn FnMut(&Started) + Send),
    metrics: &mut (dyn FnMut(Vec<Metric>) + Send),
    cancel: CancellationToken,
) -> LabResult<AttemptEnd> {
    if let Some(d) = &l.docker {
        let (out, err) = (open_log(l, "stdout.log")?, open_log(l, "stderr.log")?);
        let (out, err) = (
            log_sink(l, out, "stdout.log")?,
            log_sink(l, err, "stderr.log")?,
        );
        if let Some(src) = &l.cwd_from {
            super::workdir::prepare(src, &l.run_dir)?;
        }
        return super::docker_run::run_docker(l, d, out, err, started, metrics, cancel).await;
    }
    let mut tail = metrics_tail(l);
    let mut report = Callbacks { started, metrics };
    run_process(l, &mut tail, &mut report, cancel).await
}

/// The tail of the attempt's metrics file (the job's first append makes it).
pub(super) fn metrics_tail(l: &Launch) -> MetricsTail {
    MetricsTail::new(l.run_dir.join("metrics.jsonl"))
}

/// Where a job's output goes: the log file itself, or within its `log_limit`.
fn log_sink(l: &Launch, f: std::fs::File, name: &str) -> LabResult<Box<dyn std::io::Write + Send>> {
    Ok(match l.log_limit {
        Some(limit) => {
            let p = l.run_dir.join(name);
            drop(f);
            Box::new(
                super::joblog::CappedLog::open(p.clone(), limit)
                    .map_err(|e| crate::error::io_err("jobs", "cannot open", &p, &e))?,
            )
        }
        None => Box::new(f),
    })
}

fn open_log(l: &Launch, name: &str) -> LabResult<std::fs::File> {
    let p = l.run_dir.join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| crate::error::io_err("jobs", "cannot open", &p, &e))
}

/// Runs a process job (not `run_in: docker`) to its end, its news to `report`, its metrics
/// read through `tail` (the caller's: it may read them again after the end).
pub(super) async fn run_process(
    l: &Launch,
    tail: &mut MetricsTail,
    report: &mut dyn Report,
    cancel: CancellationToken,
) -> LabResult<AttemptEnd> {
    let (out, err) = (open_log(l, "stdout.log")?, open_log(l, "stderr.log")?);
    if let Some(src) = &l.cwd_from {
        super::workdir::prepare(src, &l.run_dir)?;
    }
    let logs = JobLogs::new(l, out, err)?;
    let metrics_path = l.run_dir.join("metrics.jsonl");
    let mut attempt = Attempt::new(&l.host, l.job_id, l.attempt)?;
    let mut child = start(l, &attempt, &logs, &metrics_path);
    let group_gone = |a: &Attempt| a.cgroup.as_ref().is_some_and(|d| !d.exists());
    if matches!(&child, Err(e) if e.kind == "jobs.containment") && group_gone(&attempt) {
        // Its group was removed under it (it is not reused): once more in a fresh one.
        drop(attempt);
        attempt = Attempt::new(&l.host, l.job_id, l.attempt)?;
        child = start(l, &attempt, &logs, &metrics_path);
    }
    let child = child?;
    // The child has its copies of the log fds: ours close here (a pipe's reader sees EOF
    // once every process of the job has closed its end).
    let JobLogs { out, err, copies } = logs;
    drop((out, err));
    let outcome = match child {
        Ok(child) => watch(l, child, &attempt, report, tail, cancel).await?,
        Err(not_started) => not_started,
    };
    drop(attempt);
    // Nothing of the attempt is left to write: the copies end at the pipes' EOF.
    for c in copies {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    pump(tail, report);
    Ok(outcome)
}

/// Hands the metrics written since the last read to `report` (all of the attempt's again
/// when it asks for a replay).
pub(super) fn pump(tail: &mut MetricsTail, report: &mut dyn Report) {
    if report.replay() {
        tail.rewind();
    }
    tail.pump(&mut |b| report.metrics(b));
}

/// Starts the job's leader in its containment, stdout and stderr on `logs`. `Ok(Err(end))`:
/// the program does not exist (exit 127, as sh reports it), not an error of labhost's.
fn start(
    l: &Launch,
    attempt: &Attempt,
    logs: &JobLogs,
    metrics_path: &Path,
) -> LabResult<Result<process::Child, AttemptEnd>> {
    static NULL: std::sync::OnceLock<std::io::Result<std::fs::File>> = std::sync::OnceLock::new();
    let null = match NULL.get_or_init(|| std::fs::File::open("/dev/null")) {
        Ok(f) => f,
        Err(e) => {
            return Err(crate::error::io_err(
                "jobs",
                "cannot open",
                Path::new("/dev/null"),
                e,
            ))
        }
    };
    let argv: Vec<OsString> = match &l.command {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), s.into()],
        Command::Argv(a) => a.iter().map(OsString::from).collect(),
    };
    let job_id = l.job_id.to_string();
    let extra = [
        ("LABHOST_JOB_ID", OsStr::new(&job_id)),
        ("LABHOST_RUN_DIR", l.run_dir.as_os_str()),
        ("LABHOST_METRICS", metrics_path.as_os_str()),
        (contain::ATTEMPT_VAR, OsStr::new(&attempt.token)),
    ];
    let env = l
        .env
        .iter()
        .map(|(k, v)| (OsStr::new(k.as_str()), OsStr::new(v.as_str())))
        .chain(extra.iter().map(|(k, v)| (OsStr::new(*k), *v)));
    let not_found = || AttemptEnd {
        status: RunStatus::Failed,
        exit_code: Some(127),
        error: Some(format!("command not found: {}", l.command.program())),
        start: None,
    };
    let cannot_start = |e: std::io::Error| {
        LabError::new("jobs.spawn", format!("cannot start job {}: {e}", l.job_id))
    };
    let program = match &l.base_env {
        Some(base) => {
            let base: Vec<(OsString, OsString)> =
                base.iter().map(|(k, v)| (k.into(), v.into())).collect();
            let extra: Vec<(OsString, OsString)> = env
                .map(|(k, v)| (k.to_os_string(), v.to_os_string()))
                .collect();
            process::Program::over_env(&argv, &base, extra, l.cwd.as_deref())
        }
        None => process::Program::new(&argv, env, l.cwd.as_deref()),
    };
    let program = match program {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(not_found())),
        Err(e) => return Err(cannot_start(e)),
    };
    let io = process::Io {
        stdio: [null.as_raw_fd(), logs.out.as_raw_fd(), logs.err.as_raw_fd()],
        cgroup_procs: attempt.procs_fd(),
        cgroup_dir: attempt.dir_fd(),
        keep: &l.keep_fds,
    };
    match process::spawn(&program, &io) {
        Ok(ch) => Ok(Ok(ch)),
        Err(process::SpawnError::Exec(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Err(not_found()))
        }
        Err(process::SpawnError::Cwd(e)) => Err(LabError::new(
            "jobs.invalid_cwd",
            format!(
                "working directory '{}': {e}",
                l.cwd.as_deref().unwrap_or(Path::new(".")).display()
            ),
        )),
        Err(process::SpawnError::Exec(e) | process::SpawnError::Fork(e)) => Err(cannot_start(e)),
        Err(process::SpawnError::Contain(e)) => Err(LabError::new(
            "jobs.containment",
            format!(
                "job {}: cannot join its cgroup {}: {e}",
                l.job_id,
                attempt
                    .cgroup
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ),
        )),
    }
}

/// Watches a started attempt to its end: its exit (then whatever it left is stopped), its
/// timeout or a cancel (then all of it is stopped); records its start after `START_RECORD`
/// and reads its metrics every `METRICS_POLL` meanwhile.
async fn watch(
    l: &Launch,
    mut child: process::Child,
    attempt: &Attempt,
    report: &mut dyn Report,
    tail: &mut MetricsTail,
    cancel: CancellationToken,
) -> LabResult<AttemptEnd> {
    let pgid = child.pid;
    attempt.started(pgid);
    // Recorded at the first tick: most short jobs end before it and record start and end in
    // one transaction.
    let mut start = Some(Started {
        pid: i64::from(pgid),
        at: crate::clock::unix(),
        leader_start: None,
        cgroup: attempt.cgroup.as_ref().map(|c| c.display().to_string()),
        gpus: Started::gpus_of(&l.env),
    });
    let grace = process::grace();
    let deadline = l.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + START_RECORD, METRICS_POLL);
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = child.wait() => {
                let st = st.map_err(|e| LabError::new("jobs.wait", e.to_string()))?;
                // The job is over when all of it is: what the leader left behind is stopped.
                if attempt.any_left(pgid) {
                    attempt.stop(pgid, grace, &mut || {}).await;
                }
                return Ok(exit_end(st, start));
            }
            _ = tick.tick() => {
                if let Some(mut st) = start.take() {
                    st.leader_start = process::start_time(pgid);
                    report.started(&st);
                }
                pump(tail, report);
            }
            _ = until_deadline => {
                stop_all(attempt, &mut child, grace).await;
                return Ok(AttemptEnd { status: RunStatus::TimedOut, exit_code: None,
                    error: Some(format!("timed out after {:.1}s", l.timeout.unwrap_or_default().as_secs_f64())), start });
            }
            _ = cancel.cancelled() => {
                stop_all(attempt, &mut child, grace).await;
                return Ok(AttemptEnd { status: RunStatus::Cancelled, exit_code: None, error: Some("cancelled".into()), start });
            }
        }
    }
}

/// How an attempt whose leader exited with `st` ended.
fn exit_end(st: std::process::ExitStatus, start: Option<Started>) -> AttemptEnd {
    let code = process::exit_code(st);
    let status = if st.success() {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    // sh reports a missing program as 127.
    let error = match code {
        Some(127) => Some("exit 127: command not found".to_string()),
        Some(0) => None,
        Some(c) => Some(format!("exit {c}")),
        None => Some("killed".to_string()),
    };
    AttemptEnd {
        status,
        exit_code: code,
        error,
        start,
    }
}

/// Where a job's stdout and stderr go: the fds the child gets, and the tasks that copy its
/// output into the log files masked (none when there is no secret to mask).
struct JobLogs {
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
    copies: Vec<tokio::task::JoinHandle<()>>,
}

impl JobLogs {
    /// Straight into the files, or through pipes when secrets are masked or the logs capped.
    fn new(l: &Launch, out: std::fs::File, err: std::fs::File) -> LabResult<JobLogs> {
        let masked = !crate::redact::StreamRedactor::new(&l.secrets).is_empty();
        if !masked && l.log_limit.is_none() {
            return Ok(JobLogs {
                out: out.into(),
                err: err.into(),
                copies: Vec::new(),
            });
        }
        let pipe = || {
            process::pipe()
                .map_err(|e| LabError::new("jobs.spawn", format!("cannot make a pipe: {e}")))
        };
        let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
        let (out_sink, err_sink) = (
            log_sink(l, out, "stdout.log")?,
            log_sink(l, err, "stderr.log")?,
        );
        Ok(JobLogs {
            out: out_w,
            err: err_w,
            copies: vec![
                tokio::spawn(process::copy_masked(
                    out_r,
                    vec![out_sink],
                    l.secrets.clone(),
                )),
                tokio::spawn(process::copy_masked(
                    err_r,
                    vec![err_sink],
                    l.secrets.clone(),
                )),
            ],
        })
    }
}

/// Stops every process of the attempt (the leader's group, its cgroup or its adopted
/// orphans): SIGTERM, SIGKILL after `grace`. The leader is reaped as soon as it exits (a
/// zombie leader would keep the group "alive"). Returns when nothing of it is left.
async fn stop_all(attempt: &Attempt, child: &mut process::Child, grace: Duration) {
    let pgid = child.pid;
    attempt
        .stop(pgid, grace, &mut || {
            let _ = child.try_wait();
        })
        .await;
    let _ = child.wait().await;
}

/// The GPUs of job `id` (`n` of them) from the ledger, waiting for them unless `token` is
/// cancelled; `None` without GPUs. The lease ends when the job's last process does (its
/// fds are kept by the job).
pub(super) async fn lease_gpus(
    id: i64,
    n: usize,
    token: &CancellationToken,
) -> LabResult<Option<crate::modules::gpu::ledger::Lease>> {
    if n == 0 {
        return Ok(None);
    }
    let t = token.clone();
    let o = crate::modules::gpu::ledger::ReserveOpts {
        holder: Some(format!("job {id}")),
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || {
        crate::modules::gpu::ledger::Ledger::open()?.reserve(n, &o, &t)
    })
    .await
    .map_err(|e| LabError::new("jobs.gpu", e.to_string()))?
    .map(Some)
}

/// The launch description of a stored run (command, env, cwd, timeout from its spec).
pub fn launch_for(run: &crate::store::Run) -> LabResult<Launch> {
    let spec = &run.spec;
    spec.command
        .check_not_empty()
        .map_err(|m| LabError::new("jobs.invalid_spec", m))?;
    Ok(Launch {
        job_id: run.id,
        host: run.host.clone().unwrap_or_default(),
        attempt: run.attempt,
        keep_fds: Vec::new(),
        command: spec.command.clone(),
        cwd: if spec.own_cwd {
            Some(PathBuf::from(&run.run_dir).join("wd"))
        } else {
            spec.cwd.as_deref().map(PathBuf::from)
        },
        cwd_from: spec
            .own_cwd
            .then(|| spec.cwd.as_deref().map(PathBuf::from))
            .flatten(),
        env: spec.env.clone(),
        run_dir: PathBuf::from(&run.run_dir),
        timeout: spec.timeout.and_then(crate::util::secs_to_duration),
        secrets: Vec::new(),
        log_limit: spec
            .log_limit
            .or_else(|| crate::config::log_limit().ok().flatten()),
        base_env: None,
        docker: (spec.run_in == crate::store::RunIn::Docker).then(|| DockerLaunch {
            image: spec.image.clone(),
            mounts: spec.mounts.clone(),
            network: spec.network.clone(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, Store};
    use serde_json::json;

    fn spec(v: serde_json::Value) -> crate::store::StoredSpec {
        serde_json::from_value(v).unwrap()
    }

    /// Test driver: claims queued runs and runs them one after another, the way the job host
    /// does (without workers or GPU leases); returns the ids it ran.
    async fn drain(state: &Path, host: &str, cancel: CancellationToken) -> LabResult<Vec<i64>> {
        let mut store = Store::open(state)?;
        let mut ran = Vec::new();
        while let Some(job) = store.claim_next(host)? {
            let launch = match launch_for(&job) {
                Ok(l) => l,
                Err(e) => {
                    store.finish(job.id, RunStatus::Failed, None, Some(&e.message))?;
                    continue;
                }
            };
            // The pid is recorded as soon as the process exists, metrics as they are written.
            let shared = std::sync::Mutex::new(store);
            let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
            let mut started = |st: &Started| {
                if let Err(e) = lock().set_running(job.id, st) {
                    tracing::error!("job {}: {}", job.id, e.message);
                }
            };
            let mut metrics = |b: Vec<Metric>| {
                if let Err(e) = lock().add_metrics(job.id, &b) {
                    tracing::error!("job {}: {}", job.id, e.message);
                }
            };
            let outcome = self::run(&launch, &mut started, &mut metrics, cancel.clone()).await;
            store = shared.into_inner().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(o) => {
                    store.finish_and_claim(
                        job.id,
                        o.start.as_ref(),
                        o.status,
                        o.exit_code,
                        o.error.as_deref(),
                        None,
                    )?;
                }
                Err(e) => {
                    store.finish(job.id, RunStatus::Failed, None, Some(&e.message))?;
                }
            }
            ran.push(job.id);
        }
        contain::release_slots();
        Ok(ran)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn metrics_file_is_read_in_whole_lines_and_bad_lines_skipped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m.jsonl");
        std::fs::write(
            &p,
            "{\"name\":\"loss\",\"value\":0.5,\"step\":1}\nnot json\n{\"name\":\"loss\",\"val",
        )
        .unwrap();
        let (mut off, mut n) = (0, 0);
        let got = read_metrics(&p, &mut off, &mut n);
        assert_eq!(got.len(), 1);
        assert_eq!(n, 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ue\":0.25,\"step\":2}\n"))
            .unwrap();
        let got = read_metrics(&p, &mut off, &mut n);
        assert_eq!((got.len(), got[0].value, got[0].step), (1, 0.25, 2));
    }

    /// A slot group removed while it waited in the pool (a dead host's sweep did that to
    /// its living supervisor): the job starts in a fresh group, not "cannot join its cgroup".
    #[test]
    fn a_job_whose_group_was_removed_starts_in_a_fresh_one() {
        let t = tempfile::tempdir().unwrap();
        let host = format!("test-host-{}-9", std::process::id());
        let a = contain::Attempt::new(&host, 1, 1).unwrap();
        let Some(dir) = a.cgroup.clone() else {
            eprintln!("skipped: no writable cgroup v2 here");
            return;
        };
        drop(a);
        std::fs::remove_dir(&dir).unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (j, _) = s
            .create(&NewRun {
                spec: spec(json!({"command": ["true"]})),
                ..Default::default()
            })
            .unwrap();
        rt().block_on(drain(t.path(), &host, CancellationToken::new()))
            .unwrap();
        let r = s.get(j.id).unwrap();
        assert_eq!((r.status, r.error), (RunStatus::Completed, None));
        assert_ne!(r.cgroup.as_deref(), Some(dir.to_str().unwrap()));
    }

    #[test]
    fn drain_runs_jobs_with_env_logs_metrics_and_exit_codes() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let ok = json!({"command": "echo job $LABHOST_JOB_ID $LR; echo oops >&2; for i in 1 2 3; do echo \"{\\\"name\\\":\\\"loss\\\",\\\"value\\\":0.$i,\\\"step\\\":$i}\" >> $LABHOST_METRICS; done",
                        "env": {"LR": "0.1"}});
        let (a, _) = s
            .create(&NewRun {
                spec: spec(ok),
                ..Default::default()
            })
            .unwrap();
        let (b, _) = s
            .create(&NewRun {
                spec: spec(json!({"command": ["sh", "-c", "exit 3"]})),
                ..Default::default()
            })
            .unwrap();
        let (c, _) = s
            .create(&NewRun {
                spec: spec(json!({"command": ["no-such-program-xyz"]})),
                ..Default::default()
            })
            .unwrap();
        let (d, _) = s
            .create(&NewRun {
                spec: spec(json!({"command": "sleep 30", "timeout": 0.3})),
                ..Default::default()
            })
            .unwrap();
        let (e, _) = s
            .create(&NewRun {
                spec: spec(json!({"command": "no-such-program-xyz"})),
                ..Default::default()
            })
            .unwrap();
        let ran = rt()
            .block_on(drain(
                t.path(),
                &format!("test-host-{}-0", std::process::id()),
                CancellationToken::new(),
            ))
            .unwrap();
        assert_eq!(ran, vec![a.id, b.id, c.id, d.id, e.id]);
        let ra = s.get(a.id).unwrap();
        assert_eq!((ra.status, ra.exit_code), (RunStatus::Completed, Some(0)));
        assert!(ra.pid.unwrap() > 0);
        let dir = PathBuf::from(&ra.run_dir);
        assert_eq!(
            std::fs::read_to_string(dir.join("stdout.log")).unwrap(),
            format!("job {} 0.1\n", a.id)
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("stderr.log")).unwrap(),
            "oops\n"
        );
        let loss: Vec<f64> = s
            .metrics(a.id, Some("loss"))
            .unwrap()
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(loss, vec![0.1, 0.2, 0.3]);
        assert_eq!(
            (s.get(b.id).unwrap().status, s.get(b.id).unwrap().exit_code),
            (RunStatus::Failed, Some(3))
        );
        let rc = s.get(c.id).unwrap();
        assert_eq!(
            (rc.exit_code, rc.error.as_deref()),
            (Some(127), Some("command not found: no-such-program-xyz"))
        );
        assert_eq!(s.get(d.id).unwrap().status, RunStatus::TimedOut);
        let re = s.get(e.id).unwrap();
        assert_eq!(
            (re.exit_code, re.error.as_deref()),
            (Some(127), Some("exit 127: command not found"))
        );
    }
}
