//! Runs a schedule: fires become record runs (kind cron) in the store, scripts run as
//! `labhost run SCRIPT ARGS…` in their own process group with their output in the run's
//! `stdout.log`/`stderr.log`, functions run on blocking threads; each entry's last fire is
//! persisted under `<state>/cron/` before its run starts, so a restart neither repeats nor
//! loses a fire. SIGTERM/SIGINT stop firing, let running fires finish for a grace period,
//! then stop them (recorded as cancelled) and return.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Action, Decision, Entry, Fire, Scheduler};
use std::os::fd::AsRawFd;

use crate::error::{LabError, LabResult};
use crate::process;
use crate::store::with_current;
use crate::store::{NewRun, RunKind, RunStatus};

/// Calls a script-defined entry's function (`Action::Function { id }`) for one fire, its
/// output going to the fire's logs and stopping when `io.stop` says so: Err = its error.
pub type Functions = Arc<dyn Fn(usize, FireIo) -> Result<(), String> + Send + Sync>;

/// What a function fire writes to and listens to.
#[derive(Clone)]
pub struct FireIo {
    /// The run's `stdout.log` / `stderr.log`: `print` and `debug` of the function.
    pub out: PathBuf,
    pub err: PathBuf,
    /// 0 while it may run; [`STOP_TIMEOUT`] or [`STOP_CANCEL`] when it must stop.
    pub stop: Arc<std::sync::atomic::AtomicU8>,
    /// Also print to this process's stdout/stderr (a manual fire).
    pub echo: bool,
}

pub const STOP_TIMEOUT: u8 = 1;
pub const STOP_CANCEL: u8 = 2;

/// How a schedule is run.
#[derive(Clone)]
pub struct Opts {
    /// The schedule's identity in the state directory (its absolute path).
    pub source: String,
    /// How long running fires may finish after SIGTERM/SIGINT.
    pub grace: Duration,
    pub quiet: bool,
    pub functions: Option<Functions>,
    /// Fires run by hand (`--once`): tagged `cron.manual`, their output streamed to this
    /// process's stdout/stderr as well as into the run's logs.
    pub manual: bool,
}

/// What is persisted per schedule: each entry's last handled fire and its run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub source: String,
    pub entries: BTreeMap<String, SavedEntry>,
    /// The `labhost cron` serving the schedule (its pid; alive while its lock is held).
    #[serde(default)]
    pub served_by: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SavedEntry {
    pub schedule: String,
    pub timezone: String,
    pub last_fire: Option<DateTime<Utc>>,
    pub last_run: Option<i64>,
    /// The last fire run by hand (`--once`) and its run; not a scheduled fire, so catch-up
    /// does not count from it.
    #[serde(default)]
    pub last_manual: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_manual_run: Option<i64>,
}

impl Saved {
    /// Whether a `labhost cron` serves this schedule now.
    pub fn served(&self) -> bool {
        self.served_by
            .is_some_and(|p| cron_daemon_alive(&p.to_string()))
    }
}

/// Notes a manual fire of `e` (`--once`) in the schedule's state.
pub fn record_manual(source: &str, e: &Entry, at: DateTime<Utc>, run: i64) -> LabResult<()> {
    let mut saved = load_saved(source)?;
    let s = saved.entries.entry(e.name.clone()).or_default();
    s.schedule = e.schedule.text.clone();
    s.timezone = e.schedule.zone.name();
    s.last_manual = Some(at);
    s.last_manual_run = Some(run);
    save(&saved)
}

fn state_file(source: &str) -> LabResult<PathBuf> {
    Ok(crate::state::dir()?
        .join("cron")
        .join(format!("{}.json", crate::util::fnv(source))))
}

pub fn load_saved(source: &str) -> LabResult<Saved> {
    let f = state_file(source)?;
    match std::fs::read_to_string(&f) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| LabError::new("cron.state", format!("{}: {e}", f.display()))),
        Err(_) => Ok(Saved {
            source: source.to_string(),
            ..Default::default()
        }),
    }
}

/// Every schedule this state directory has run.
pub fn all_saved() -> LabResult<Vec<Saved>> {
    let dir = crate::state::dir()?.join("cron");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if let Ok(t) = std::fs::read_to_string(e.path()) {
            if let Ok(s) = serde_json::from_str::<Saved>(&t) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(out)
}

fn save(s: &Saved) -> LabResult<()> {
    let f = state_file(&s.source)?;
    if let Some(p) = f.parent() {
        std::fs::create_dir_all(p).map_err(|e| LabError::new("cron.state", e.to_string()))?;
    }
    crate::modules::fs::write_atomic(
        &f,
        serde_json::to_string_pretty(s)
            .unwrap_or_default()
            .as_bytes(),
    )
}

fn command_text(e: &Entry) -> String {
    match &e.action {
        Action::Script { path, args } => {
            let mut s = format!(
                "labhost run {}",
                crate::util::shell_quote(&path.display().to_string())
            );
            for a in args {
                s.push(' ');
                s.push_str(&crate::util::shell_quote(a));
            }
            s
        }
        Action::Function { .. } => format!("cron function {}", e.name),
    }
}

fn new_run(e: &Entry, f: &Fire, source: &str, manual: bool) -> NewRun {
    NewRun {
        key: Some(format!("cron:{source}#{}@{}", e.name, f.at.to_rfc3339())),
        tags: vec![
            ("cron.entry".into(), e.name.clone()),
            ("cron.schedule".into(), e.schedule.text.clone()),
            ("cron.timezone".into(), e.schedule.zone.name()),
            ("cron.fire_time".into(), f.at.to_rfc3339()),
            ("cron.file".into(), source.to_string()),
        ]
        .into_iter()
        .chain(
            f.catch_up
                .then(|| ("cron.catch_up".to_string(), "true".to_string())),
        )
        .chain(manual.then(|| ("cron.manual".to_string(), "true".to_string())))
        .collect(),
        ..NewRun::record(RunKind::Cron, &e.name, &command_text(e))
    }
}

/// A fire that does not run (overlap): a cancelled run that says why.
fn record_skip(e: &Entry, f: &Fire, source: &str, reason: &str) -> LabResult<i64> {
    with_current(|st| {
        let (r, _) = st.create(&new_run(e, f, source, false))?;
        st.cancel(r.id, reason)?;
        Ok(r.id)
    })
}

/// How one fire ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub run_id: i64,
    pub status: RunStatus,
    pub error: Option<String>,
}

/// Runs one fire to its end: opens its record (an existing finished record of the same fire
/// means it ran already: nothing runs), runs it, closes the record.
pub async fn run_fire(e: Entry, f: Fire, opts: Opts, kill: CancellationToken) -> LabResult<Ended> {
    let host = format!("cron:{}", std::process::id());
    let (run, created) = with_current(|st| {
        st.open_record(&new_run(&e, &f, &opts.source, opts.manual), Some(&host))
    })?;
    if !created && run.status.is_finished() {
        return Ok(Ended {
            run_id: run.id,
            status: run.status,
            error: run.error,
        });
    }
    let started = std::time::Instant::now();
    if !opts.quiet {
        eprintln!(
            "[cron] {} ({}) started: run {}",
            e.name,
            e.schedule.zone.show(f.at),
            run.id
        );
    }
    let (status, error) = match &e.action {
        Action::Script { path, args } => run_script(&e, path, args, &run, &kill, opts.manual).await,
        Action::Function { id } => match &opts.functions {
            None => (
                RunStatus::Failed,
                Some("no function table (a script entry outside its script)".into()),
            ),
            Some(funcs) => run_function(&e, funcs.clone(), *id, &run, &kill, opts.manual).await,
        },
    };
    with_current(|st| {
        if status == RunStatus::Cancelled || status == RunStatus::TimedOut {
            st.cancel(run.id, error.as_deref().unwrap_or("cancelled"))?;
        }
        st.close_record(
            run.id,
            status,
            if status == RunStatus::Failed {
                error.as_deref()
            } else {
                None
            },
        )
    })?;
    if !opts.quiet {
        eprintln!(
            "[cron] {} run {} {} after {}{}",
            e.name,
            run.id,
            status.as_str(),
            crate::util::fmt_duration(started.elapsed()),
            error
                .as_ref()
                .map(|m| format!(": {}", crate::redact::apply(m)))
                .unwrap_or_default()
        );
    }
    Ok(Ended {
        run_id: run.id,
        status,
        error,
    })
}

/// Completes when the entry's timeout has passed (never without one).
async fn timeout_of(e: &Entry) {
    match e.timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// A function fire on a blocking thread: its prints in the run's logs; the timeout and a
/// stop raise the flag the function's engine checks between operations.
async fn run_function(
    e: &Entry,
    funcs: Functions,
    id: usize,
    run: &crate::store::Run,
    kill: &CancellationToken,
    echo: bool,
) -> (RunStatus, Option<String>) {
    use std::sync::atomic::Ordering;
    let dir = PathBuf::from(&run.run_dir);
    let _ = std::fs::create_dir_all(&dir);
    let io = FireIo {
        out: dir.join("stdout.log"),
        err: dir.join("stderr.log"),
        stop: Default::default(),
        echo,
    };
    let stop = io.stop.clone();
    let mut call = tokio::task::spawn_blocking(move || funcs(id, io));
    let timeout = timeout_of(e);
    let r = tokio::select! {
        r = &mut call => r,
        _ = timeout => {
            stop.store(STOP_TIMEOUT, Ordering::SeqCst);
            call.await
        }
        _ = kill.cancelled() => {
            stop.store(STOP_CANCEL, Ordering::SeqCst);
            call.await
        }
    };
    match (stop.load(Ordering::SeqCst), r) {
        (STOP_TIMEOUT, _) => (
            RunStatus::TimedOut,
            Some(format!(
                "timed out after {}",
                crate::util::fmt_duration(e.timeout.unwrap_or_default())
            )),
        ),
        (STOP_CANCEL, _) => (
            RunStatus::Cancelled,
            Some("cancelled: labhost cron stopped and the grace period ran out".into()),
        ),
        (_, Ok(Ok(()))) => (RunStatus::Completed, None),
        (_, Ok(Err(m))) => (RunStatus::Failed, Some(m)),
        (_, Err(j)) => (
            RunStatus::Failed,
            Some(format!("the function panicked: {j}")),
        ),
    }
}

async fn run_script(
    e: &Entry,
    path: &std::path::Path,
    args: &[String],
    run: &crate::store::Run,
    kill: &CancellationToken,
    echo: bool,
) -> (RunStatus, Option<String>) {
    let dir = PathBuf::from(&run.run_dir);
    let _ = std::fs::create_dir_all(&dir);
    let open = |n: &str| std::fs::File::create(dir.join(n));
    let (Ok(out), Ok(err)) = (open("stdout.log"), open("stderr.log")) else {
        return (
            RunStatus::Failed,
            Some(format!("cannot write the logs in {}", dir.display())),
        );
    };
    let logs = match FireLogs::new(out, err, echo) {
        Ok(l) => l,
        Err(x) => return (RunStatus::Failed, Some(format!("cannot make a pipe: {x}"))),
    };
    let argv: Vec<std::ffi::OsString> = ["run".into(), path.into()]
        .into_iter()
        .chain(args.iter().map(Into::into))
        .collect();
    let id = run.id.to_string();
    let env = e
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), std::ffi::OsStr::new(v.as_str())))
        .chain([
            ("LABHOST_JOB_ID", std::ffi::OsStr::new(&id)),
            ("LABHOST_RUN_DIR", dir.as_os_str()),
            ("LABHOST_CRON_ENTRY", std::ffi::OsStr::new(&e.name)),
        ]);
    // Started by the process module as a labhost child: the fire is stopped with this
    // process (a kill -9 of `labhost cron` leaves no fire running unwatched; the restarted
    // cron records the fire as failed).
    let started = process::Program::labhost(&argv, env, None).and_then(|p| {
        let null = std::fs::File::open("/dev/null")?;
        process::spawn(
            &p,
            &process::Io::stdio([null.as_raw_fd(), logs.out.as_raw_fd(), logs.err.as_raw_fd()]),
        )
        .map_err(process::SpawnError::into_io)
    });
    let copies = logs.close();
    let mut child = match started {
        Ok(ch) => ch,
        Err(x) => {
            return (
                RunStatus::Failed,
                Some(format!("cannot start labhost run: {x}")),
            )
        }
    };
    let pgid = child.pid;
    let _ = with_current(|st| st.set_tag(run.id, "cron.pid", &pgid.to_string()));
    let timeout = timeout_of(e);
    let ended = tokio::select! {
        s = child.wait() => Ok(s),
        _ = timeout => Err((RunStatus::TimedOut, format!("timed out after {}", crate::util::fmt_duration(e.timeout.unwrap_or_default())))),
        _ = kill.cancelled() => Err((RunStatus::Cancelled, "cancelled: labhost cron stopped and the grace period ran out".to_string())),
    };
    if ended.is_err() {
        // Stopped as every process labhost started is: its group gets SIGTERM, then
        // SIGKILL after a grace. The fire is a labhost that first stops its own groups
        // with the same grace, so it gets twice that and a margin.
        let _ = child
            .stop(process::grace() * 2 + Duration::from_secs(2))
            .await;
    }
    copies.finish().await;
    match ended {
        Ok(Ok(s)) if s.success() => (RunStatus::Completed, None),
        Ok(Ok(s)) => {
            let tail = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| l.starts_with("error"))
                .or_else(|| tail.lines().rev().find(|l| !l.trim().is_empty()));
            let code = s
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "killed by a signal".into());
            (
                RunStatus::Failed,
                Some(match last {
                    Some(l) => format!("{code}: {}", l.trim()),
                    None => code,
                }),
            )
        }
        Ok(Err(x)) => (RunStatus::Failed, Some(x.to_string())),
        Err((status, why)) => (status, Some(why)),
    }
}

/// Where a script fire's stdout and stderr go: straight into its log files, or (a manual
/// fire) through pipes copied to the log files and to this process's stdout/stderr.
struct FireLogs {
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
    copies: Vec<tokio::task::JoinHandle<()>>,
}

impl FireLogs {
    fn new(out: std::fs::File, err: std::fs::File, echo: bool) -> std::io::Result<FireLogs> {
        if !echo {
            return Ok(FireLogs {
                out: out.into(),
                err: err.into(),
                copies: Vec::new(),
            });
        }
        let ((out_r, out_w), (err_r, err_w)) = (process::pipe()?, process::pipe()?);
        let secrets = crate::redact::registered();
        Ok(FireLogs {
            out: out_w,
            err: err_w,
            copies: vec![
                tokio::spawn(process::copy_masked(
                    out_r,
                    vec![Box::new(out), Box::new(std::io::stdout())],
                    secrets.clone(),
                )),
                tokio::spawn(process::copy_masked(
                    err_r,
                    vec![Box::new(err), Box::new(std::io::stderr())],
                    secrets,
                )),
            ],
        })
    }

    /// Closes this process's ends (the child has its own): the copies end with the child.
    fn close(self) -> Copies {
        Copies(self.copies)
    }
}

/// The copies of a manual fire's output, running until the fire's processes close it.
struct Copies(Vec<tokio::task::JoinHandle<()>>);

impl Copies {
    /// Waits for the copies (a process that outlived the fire and keeps the pipe open is
    /// given a second, then its copy is dropped).
    async fn finish(self) {
        for c in self.0 {
            let abort = c.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), c)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// The clock the loop reads (tests use the scheduler with their own instants).
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Notes a handled fire of `e` at `at` (and its run) in `saved`, without writing it.
fn note(saved: &mut Saved, e: &Entry, at: DateTime<Utc>, run: Option<i64>) {
    let s = saved.entries.entry(e.name.clone()).or_default();
    s.schedule = e.schedule.text.clone();
    s.timezone = e.schedule.zone.name();
    if s.last_fire.is_none_or(|l| l < at) {
        s.last_fire = Some(at);
    }
    if run.is_some() {
        s.last_run = run;
    }
}

fn write(saved: &Saved) {
    if let Err(x) = save(saved) {
        tracing::warn!("cannot save the cron state: {}", x.message);
    }
}

/// [`note`], then the state written.
fn persist(saved: &mut Saved, e: &Entry, at: DateTime<Utc>, run: Option<i64>) {
    note(saved, e, at, run);
    write(saved);
}

fn daemon_lock(pid: u32) -> LabResult<PathBuf> {
    Ok(crate::state::dir()?
        .join("cron")
        .join("hosts")
        .join(format!("{pid}.lock")))
}

/// This process's liveness lock: held while it runs fires (the kernel drops it when the
/// process dies, however it dies).
pub fn hold_daemon_lock() -> LabResult<std::fs::File> {
    let p = daemon_lock(std::process::id())?;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| LabError::new("cron.state", e.to_string()))?;
    }
    let f = std::fs::File::create(&p)
        .map_err(|e| LabError::new("cron.state", format!("{}: {e}", p.display())))?;
    f.lock()
        .map_err(|e| LabError::new("cron.state", e.to_string()))?;
    Ok(f)
}

fn cron_daemon_alive(pid: &str) -> bool {
    let Ok(p) = pid
        .parse::<u32>()
        .map_err(|_| ())
        .and_then(|p| daemon_lock(p).map_err(|_| ()))
    else {
        return false;
    };
    match std::fs::File::open(&p) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                let _ = std::fs::remove_file(&p);
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

/// Fires whose `labhost cron` died while they ran (kill -9, a crash, a reboot): recorded as
/// failed, their process group stopped if anything of it is left. They are not run again.
pub fn close_orphans() -> LabResult<Vec<i64>> {
    let runs = with_current(|st| st.list(Some(RunStatus::Running), None, usize::MAX >> 1))?;
    let mut closed = Vec::new();
    for r in runs.into_iter().filter(|r| r.kind == RunKind::Cron) {
        let Some(pid) = r.host.as_deref().and_then(|h| h.strip_prefix("cron:")) else {
            continue;
        };
        if cron_daemon_alive(pid) {
            continue;
        }
        let tags = with_current(|st| st.tags(r.id))?;
        if let Some(g) = tags
            .iter()
            .find(|(k, _)| k == "cron.pid")
            .and_then(|(_, v)| v.parse::<i32>().ok())
            .filter(|g| *g > 0)
        {
            process::signal_group(g, libc::SIGKILL);
        }
        with_current(|st| {
            st.close_record(r.id, RunStatus::Failed, Some("the labhost cron process running this fire died (kill -9, crash or reboot); the fire is not run again"))
        })?;
        closed.push(r.id);
    }
    Ok(closed)
}

/// What a fire task returns: the entry's index, the fire's time and how it ended.
type FireTask = (usize, DateTime<Utc>, LabResult<Ended>);

/// Every entry of every schedule this state directory has run, as `labhost cron status
/// --json` prints it (and the dashboard's cron page shows it): file, entry, schedule,
/// timezone, who serves it, the last fire and its run and outcome, the next fire.
pub fn status_rows() -> LabResult<Vec<serde_json::Value>> {
    let mut rows = Vec::new();
    for s in &all_saved()? {
        let served = s.served();
        for (name, e) in &s.entries {
            rows.push(status_row(s, served, name, e));
        }
    }
    Ok(rows)
}

/// One entry's status: its last fire, scheduled or by hand (whichever came later), the
/// run's outcome, and its next fire if a `labhost cron` serves the schedule.
fn status_row(s: &Saved, served: bool, name: &str, e: &SavedEntry) -> serde_json::Value {
    let zone = super::Zone::parse(Some(&e.timezone)).unwrap_or(super::Zone::Local);
    let next = super::Schedule::parse(&e.schedule, zone)
        .ok()
        .and_then(|sc| sc.next_after(chrono::Utc::now()))
        .filter(|_| served);
    let manual_last = e.last_manual.is_some() && e.last_manual > e.last_fire;
    let (last, last_run) = if manual_last {
        (e.last_manual, e.last_manual_run)
    } else {
        (e.last_fire, e.last_run)
    };
    let outcome = last_run
        .and_then(|id| crate::modules::jobs::get(id).ok())
        .map(|r| match (&r.cancel_reason, &r.error) {
            (Some(c), _) => format!("{} ({c})", r.status.as_str()),
            (_, Some(err)) => format!("{} ({err})", r.status.as_str()),
            _ => r.status.as_str().to_string(),
        })
        .unwrap_or_else(|| "-".into());
    serde_json::json!({
        "file": s.source, "entry": name, "schedule": e.schedule, "timezone": e.timezone,
        "served_by": if served { s.served_by } else { None },
        "last": last.map(|t| zone.show(t)), "last_manual": manual_last, "last_run": last_run,
        "outcome": outcome,
        "last_fire": e.last_fire.map(|t| zone.show(t)), "last_scheduled_run": e.last_run,
        "last_manual_fire": e.last_manual.map(|t| zone.show(t)),
        "last_manual_run": e.last_manual_run,
        "next": next.map(|t| zone.show(t)),
    })
}

/// The running `labhost cron`: its schedule, the fires running (and queued) and the state
/// file. [`serve`] drives it: start, then hand each due fire to [`Daemon::handle`] and each
/// ended one to [`Daemon::fire_ended`], then [`Daemon::shutdown`].
struct Daemon {
    sched: Scheduler,
    saved: Saved,
    tasks: tokio::task::JoinSet<FireTask>,
    opts: Opts,
    /// Fired when the grace after SIGTERM runs out: running fires are stopped.
    kill: CancellationToken,
}

impl Daemon {
    /// Records the fires of a cron that died as failed, reads the state file, starts the
    /// schedule (with the fires missed while down) and shows each entry's next fire.
    fn start(entries: Vec<Entry>, opts: Opts) -> LabResult<(Daemon, Vec<Fire>)> {
        for id in close_orphans()? {
            if !opts.quiet {
                eprintln!(
                    "[cron] run {id}: its labhost cron died while it ran; recorded as failed"
                );
            }
        }
        let mut saved = load_saved(&opts.source)?;
        saved.served_by = Some(std::process::id());
        // Entries no longer in the file are forgotten.
        saved
            .entries
            .retain(|k, _| entries.iter().any(|e| &e.name == k));
        let last: BTreeMap<String, DateTime<Utc>> = saved
            .entries
            .iter()
            .filter_map(|(k, v)| v.last_fire.map(|l| (k.clone(), l)))
            .collect();
        let start = now();
        let (sched, catch_up) = Scheduler::start(entries, start, &last);
        for (e, n) in sched.entries.iter().zip(&sched.next) {
            // An entry seen for the first time counts from now: a fire missed from here on is
            // caught up after a restart.
            let base = saved
                .entries
                .get(&e.name)
                .and_then(|s| s.last_fire)
                .unwrap_or(start);
            note(&mut saved, e, base, None);
            if !opts.quiet {
                match n {
                    Some(n) => eprintln!(
                        "[cron] {}: {} ({}), next {}",
                        e.name,
                        e.schedule.text,
                        e.schedule.zone.name(),
                        e.schedule.zone.show(*n)
                    ),
                    None => eprintln!("[cron] {}: disabled", e.name),
                }
            }
        }
        write(&saved);
        let d = Daemon {
            sched,
            saved,
            tasks: tokio::task::JoinSet::new(),
            opts,
            kill: CancellationToken::new(),
        };
        Ok((d, catch_up))
    }

    /// A due fire: run it, queue it behind the running one, or record it as skipped, as the
    /// entry's overlap policy says.
    fn handle(&mut self, f: Fire) {
        let e = self.sched.entries[f.entry].clone();
        match self.sched.decide(&f) {
            Decision::Run => {
                self.sched.running[f.entry] += 1;
                persist(&mut self.saved, &e, f.at, None);
                let (o, k, i, at) = (self.opts.clone(), self.kill.clone(), f.entry, f.at);
                self.tasks
                    .spawn(async move { (i, at, run_fire(e, f, o, k).await) });
            }
            Decision::Queue => {
                persist(&mut self.saved, &e, f.at, None);
                self.sched.queued[f.entry].push(f);
            }
            Decision::Skip(reason) => {
                let id = record_skip(&e, &f, &self.opts.source, &reason).ok();
                persist(&mut self.saved, &e, f.at, id);
                if !self.opts.quiet {
                    eprintln!(
                        "[cron] {} ({}): {reason}",
                        e.name,
                        e.schedule.zone.show(f.at)
                    );
                }
            }
        }
    }

    /// A fire ended: its outcome is the entry's latest (unless a later fire's is), and the
    /// next queued fire of the entry starts.
    fn fire_ended(&mut self, (i, at, r): FireTask) {
        self.sched.running[i] = self.sched.running[i].saturating_sub(1);
        if let Ok(end) = &r {
            // The outcome shown is the latest fire's.
            let e = self.sched.entries[i].clone();
            let s = self.saved.entries.entry(e.name.clone()).or_default();
            if s.last_fire.is_none_or(|l| l <= at) {
                s.last_run = Some(end.run_id);
                write(&self.saved);
            }
        }
        if let Err(x) = r {
            tracing::warn!("cron: {}", x.message);
        }
        if !self.sched.queued[i].is_empty() {
            let f = self.sched.queued[i].remove(0);
            self.handle(f);
        }
    }

    /// Stopping: queued fires are recorded as skipped; running ones get the grace period,
    /// then are stopped.
    async fn shutdown(mut self) {
        for (i, q) in self.sched.queued.iter_mut().enumerate() {
            for f in q.drain(..) {
                let _ = record_skip(
                    &self.sched.entries[i],
                    &f,
                    &self.opts.source,
                    "skipped: labhost cron stopped before the previous run ended (overlap: queue)",
                );
            }
        }
        if self.tasks.is_empty() {
            return;
        }
        if !self.opts.quiet {
            eprintln!(
                "[cron] stopping: {} run(s) still going get {} to finish",
                self.tasks.len(),
                crate::util::fmt_duration(self.opts.grace)
            );
        }
        let tasks = &mut self.tasks;
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.opts.grace, drain).await.is_err() {
            self.kill.cancel();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// Runs the schedule until `stop` fires (SIGTERM/SIGINT): the loop of the module doc.
pub async fn serve(entries: Vec<Entry>, opts: Opts, stop: CancellationToken) -> LabResult<()> {
    let _lock = hold_daemon_lock()?;
    let (mut d, catch_up) = Daemon::start(entries, opts)?;
    for f in catch_up {
        d.handle(f);
    }
    loop {
        let wait = d
            .sched
            .next_wake()
            .map(|w| (w - now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {
                for f in d.sched.due(now()) {
                    d.handle(f);
                }
            }
            Some(done) = d.tasks.join_next(), if !d.tasks.is_empty() => {
                if let Ok(task) = done {
                    d.fire_ended(task);
                }
            }
        }
    }
    d.shutdown().await;
    Ok(())
}
