//! The job supervisor ("shim", as containerd's shim and slurmstepd are): one process per job
//! host, `labhost __supervise <host> <state>`, started with the host's first process job.
//! It is the parent of every job process the host runs, so a job outlives its host:
//!
//! - The host hands it each attempt ([`Launch`]: the command, the real environment with its
//!   secrets, the values to mask) over a socket pair — never through a file — and it runs the
//!   attempt (`supervisor::run_process`: containment, logs, timeout, metrics file). It sends
//!   back the start, the metrics and the end; the host records them (an end together with
//!   its next claim) and acknowledges the end.
//! - It lives in a session of its own with no death signal, and holds
//!   `<state>/hosts/<host>.supervisor` locked while it lives: other labhosts treat its host's
//!   running runs as alive (`supervisor_alive`), leave them alone and wait for their ends.
//! - When the host dies (the socket closes) it goes on alone: it reads each attempt's
//!   metrics file again from the attempt's start (points sent to the dead host may be lost)
//!   and records starts, points and ends in the store itself — an end it sent but the host
//!   never acknowledged too — stops attempts whose cancel is asked for (`labhost cancel`),
//!   and exits after the last one ended.
//! - Killing the supervisor itself (-9) is the one way an attempt is lost: its job leaders
//!   die with it (their death signal), the host (or, if it is gone too, the next labhost)
//!   stops what is left and puts the runs back in the queue.
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::MetricsTail;
use super::supervisor::{self, AttemptEnd, Launch, Report};
use crate::error::{LabError, LabResult};
use crate::store::{Metric, Started, Store};

/// Writes a line to stderr (the supervisor's log file), ignoring a failure: `eprintln!` would
/// panic on a full disk, and this process must outlive exactly that.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// The hidden first argument that makes labhost a job supervisor.
pub const ARG: &str = "__supervise";

/// The error kind of an attempt whose supervisor died under it (the run goes back to the
/// queue).
pub const DIED: &str = "jobs.supervisor_died";

/// What the host asks of its supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Order {
    /// Run this attempt (with `num_gpus` GPUs leased from the ledger first).
    Launch {
        launch: Box<Launch>,
        num_gpus: usize,
    },
    /// Stop it (a cancel, or the host exiting): its end says `cancelled`.
    Cancel { job: i64 },
    /// The host recorded its end.
    Recorded { job: i64 },
    /// SIGKILL every job at once and exit (the host exits at once: a second Ctrl-C).
    KillAll,
}

/// What the supervisor tells its host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum News {
    Started {
        job: i64,
        started: Started,
    },
    Metrics {
        job: i64,
        points: Vec<Metric>,
    },
    Ended {
        job: i64,
        end: Result<AttemptEnd, (String, String)>,
    },
    /// A line the supervisor logged (a warning about a job's metrics file, say).
    Log {
        level: String,
        line: String,
    },
}

fn lock_path(state: &Path, host: &str) -> PathBuf {
    state.join("hosts").join(format!("{host}.supervisor"))
}

/// True while the supervisor of `host` lives (it holds its lock file).
pub fn supervisor_alive(state: &Path, host: &str) -> bool {
    super::job_host::lock_held(&lock_path(state, host))
}

// ---------------------------------------------------------------------------------------
// The host's side.

/// The host's handle on its supervisor (started on first use, again after it died).
pub struct Handle {
    host: String,
    state: PathBuf,
    conn: Mutex<Option<Arc<Conn>>>,
}

struct Conn {
    pid: i32,
    writer: Mutex<UnixStream>,
    waiters: Mutex<HashMap<i64, Waiter>>,
}

struct Waiter {
    tx: mpsc::UnboundedSender<News>,
    attempt: i64,
    started: Option<Started>,
}

impl Handle {
    pub fn new(host: &str, state: &Path) -> Handle {
        Handle {
            host: host.to_string(),
            state: state.to_path_buf(),
            conn: Mutex::new(None),
        }
    }

    /// Hands `launch` to the supervisor; its news come on the returned channel, which closes
    /// without an `Ended` if the supervisor dies. Must run inside the runtime.
    pub fn launch(
        self: &Arc<Self>,
        mut launch: Launch,
        num_gpus: usize,
    ) -> LabResult<mpsc::UnboundedReceiver<News>> {
        let conn = self.connect()?;
        let (tx, rx) = mpsc::unbounded_channel();
        conn.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                launch.job_id,
                Waiter {
                    tx,
                    attempt: launch.attempt,
                    started: None,
                },
            );
        // The job starts in the host's environment of this moment.
        launch.base_env = Some(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        );
        let id = launch.job_id;
        if let Err(e) = send(
            &conn,
            &Order::Launch {
                launch: Box::new(launch),
                num_gpus,
            },
        ) {
            conn.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(LabError::new(
                DIED,
                format!("job {id}: cannot reach the job supervisor: {e}"),
            ));
        }
        Ok(rx)
    }

    fn current(&self) -> Option<Arc<Conn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the supervisor to stop job `id`.
    pub fn cancel(&self, id: i64) {
        if let Some(c) = self.current() {
            let _ = send(&c, &Order::Cancel { job: id });
        }
    }

    /// Tells the supervisor that job `id`'s end is recorded.
    pub fn recorded(&self, id: i64) {
        if let Some(c) = self.current() {
            let _ = send(&c, &Order::Recorded { job: id });
        }
    }

    /// Makes the supervisor SIGKILL every job and exit (this process exits at once).
    pub fn kill_all(&self) {
        if let Some(c) = self.current() {
            let _ = send(&c, &Order::KillAll);
        }
    }

    /// This host exits with no job left: the supervisor is told (its socket closes) and
    /// awaited, so nothing of the host outlives it.
    pub fn close(&self) {
        let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = c
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown(std::net::Shutdown::Write);
        // After a refused write the supervisor may wait on the store itself (it records what
        // this host could not): it is not waited for.
        let wait = if super::job_host::store_failure().is_some() {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        };
        let deadline = std::time::Instant::now() + wait;
        let running =
            |pid: i32| crate::process::stat(pid).is_some_and(|(state, _, _)| state != 'Z');
        while running(c.pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The live connection, or a new supervisor.
    fn connect(self: &Arc<Self>) -> LabResult<Arc<Conn>> {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let (conn, reader) = self.start()?;
        *slot = Some(conn.clone());
        let me = self.clone();
        let c = conn.clone();
        std::thread::Builder::new()
            .name("labhost-supervisor".into())
            .spawn(move || me.read(c, reader))
            .map_err(|e| LabError::new("jobs", format!("cannot start a thread: {e}")))?;
        Ok(conn)
    }

    fn start(&self) -> LabResult<(Arc<Conn>, UnixStream)> {
        let err = |what: &str, e: std::io::Error| {
            LabError::new(
                "jobs.spawn",
                format!("cannot start the job supervisor: {what}: {e}"),
            )
        };
        let (ours, theirs) = UnixStream::pair().map_err(|e| err("socketpair", e))?;
        let log_path = lock_path(&self.state, &self.host).with_extension("supervisor.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| err(&log_path.display().to_string(), e))?;
        let null = File::open("/dev/null").map_err(|e| err("/dev/null", e))?;
        let args: Vec<OsString> = vec![
            ARG.into(),
            self.host.clone().into(),
            self.state.clone().into_os_string(),
        ];
        let env = [(
            OsString::from("LABHOST_HOME"),
            self.state.clone().into_os_string(),
        )];
        let program = crate::process::Program::supervisor(&args, &env)
            .map_err(|e| err("labhost binary", e))?;
        let io = crate::process::Io::stdio([theirs.as_raw_fd(), null.as_raw_fd(), log.as_raw_fd()]);
        let mut child = crate::process::spawn(&program, &io).map_err(|e| {
            err(
                "spawn",
                match e {
                    crate::process::SpawnError::Cwd(e)
                    | crate::process::SpawnError::Exec(e)
                    | crate::process::SpawnError::Contain(e) => e,
                },
            )
        })?;
        drop(theirs);
        let pid = child.pid;
        // Reaped when it exits (it outlives this process only if this one dies first).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let reader = ours.try_clone().map_err(|e| err("socket", e))?;
        Ok((
            Arc::new(Conn {
                pid,
                writer: Mutex::new(ours),
                waiters: Mutex::new(HashMap::new()),
            }),
            reader,
        ))
    }

    /// The supervisor's news, handed to the jobs that wait for them, until it closes the
    /// socket: then it died (this host still lives), and what its jobs left is stopped before
    /// their runs go back to the queue.
    fn read(&self, conn: Arc<Conn>, stream: UnixStream) {
        let r = std::io::BufReader::new(stream);
        for line in r.lines() {
            let Ok(line) = line else { break };
            let news: News = match serde_json::from_str(&line) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("job supervisor: unreadable news ({e})");
                    continue;
                }
            };
            let job = match &news {
                News::Log { level, line } => {
                    match level.as_str() {
                        "ERROR" => tracing::error!("{line}"),
                        "WARN" => tracing::warn!("{line}"),
                        "INFO" => tracing::info!("{line}"),
                        _ => tracing::debug!("{line}"),
                    }
                    continue;
                }
                News::Started { job, .. } | News::Metrics { job, .. } | News::Ended { job, .. } => {
                    *job
                }
            };
            let mut w = conn.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if let News::Started { started, .. } = &news {
                if let Some(x) = w.get_mut(&job) {
                    x.started = Some(started.clone());
                }
            }
            let ended = matches!(news, News::Ended { .. });
            if let Some(x) = w.get(&job) {
                let _ = x.tx.send(news);
            }
            if ended {
                w.remove(&job);
            }
        }
        // The supervisor is gone: no new one starts until its jobs' leftovers are stopped.
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            *slot = None;
        }
        let lost: Vec<(i64, Waiter)> = conn
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if !lost.is_empty() {
            tracing::warn!(
                "the job supervisor of this host died: stopping what its {} job(s) left",
                lost.len()
            );
        }
        let host_file = self.state.join("hosts").join(format!("{}.lock", self.host));
        for (job, w) in &lost {
            let st = w.started.as_ref();
            crate::process::contain::stop_orphan(&crate::process::contain::Orphan {
                host: &self.host,
                job: *job,
                attempt: w.attempt,
                pid: st.map(|s| s.pid),
                leader_start: st.and_then(|s| s.leader_start),
                cgroup: st.and_then(|s| s.cgroup.as_deref()),
                host_file: host_file.clone(),
            });
        }
        drop(slot);
        // Their channels close here: each job ends with `DIED`.
        drop(lost);
    }
}

fn send(conn: &Conn, order: &Order) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(order).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut w = conn.writer.lock().unwrap_or_else(|e| e.into_inner());
    w.write_all(&line)
}

// ---------------------------------------------------------------------------------------
// The supervisor's side.

/// `labhost __supervise <host> <state>`: serves its host on stdin (a socket) until the host
/// is gone and its last job ended.
pub fn main(args: &[OsString]) -> ExitCode {
    let (Some(host), Some(state)) = (args.first().and_then(|h| h.to_str()), args.get(1)) else {
        say!("usage: labhost {ARG} <host> <state dir> (started by a job host)");
        return ExitCode::from(crate::error::exit::USAGE);
    };
    let state = PathBuf::from(state);
    // SAFETY: setting dispositions with no handler, before any thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let lock_file = lock_path(&state, host);
    let lock = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&lock_file)
    {
        Ok(f) if f.try_lock().is_ok() => f,
        Ok(_) => {
            say!("{}: held by another supervisor", lock_file.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            say!("{}: {e}", lock_file.display());
            return ExitCode::from(1);
        }
    };
    let _ = writeln!(&lock, "{}", std::process::id());
    init_logging();
    // The host's containment (cgroups, or this process as the jobs' subreaper).
    crate::process::contain::mode();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // SAFETY: fd 0 is the socket the host made for this process, owned by nobody else.
    let sock = unsafe { UnixStream::from_raw_fd(0) };
    rt.block_on(serve(host.to_string(), state, sock));
    crate::process::contain::release_slots();
    let log = lock_file.with_extension("supervisor.log");
    if std::fs::metadata(&log).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&log);
    }
    let _ = std::fs::remove_file(&lock_file);
    drop(lock);
    ExitCode::SUCCESS
}

static OUT: std::sync::OnceLock<mpsc::UnboundedSender<News>> = std::sync::OnceLock::new();
/// The host still reads what this process sends.
static CONNECTED: AtomicBool = AtomicBool::new(true);

/// Warnings go to the host while it lives (it prints them as its own), else to stderr (the
/// supervisor's log file).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(crate::config::LOG_VAR)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Forward)
        .with_ansi(false)
        .with_level(false)
        .with_target(false)
        .without_time()
        .try_init();
}

struct Forward;

struct ForwardLine {
    level: tracing::Level,
    buf: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Forward {
    type Writer = ForwardLine;
    fn make_writer(&'a self) -> ForwardLine {
        ForwardLine {
            level: tracing::Level::INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> ForwardLine {
        ForwardLine {
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

impl Write for ForwardLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ForwardLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf).trim_end().to_string();
        if line.is_empty() {
            return;
        }
        let sent = CONNECTED.load(Ordering::SeqCst)
            && OUT.get().is_some_and(|o| {
                o.send(News::Log {
                    level: self.level.to_string(),
                    line: line.clone(),
                })
                .is_ok()
            });
        if !sent {
            say!("{} {line}", self.level);
        }
    }
}

/// What the supervisor knows: its jobs, the ends its host has not acknowledged, and the
/// store once it is alone.
struct Shared {
    host: String,
    state: PathBuf,
    out: mpsc::UnboundedSender<News>,
    alone: AtomicBool,
    store: Mutex<Option<Store>>,
    running: Mutex<HashMap<i64, CancellationToken>>,
    unacked: Mutex<HashMap<i64, Done>>,
    /// Ends the store refused while alone (tried again every tick).
    unrecorded: Mutex<Vec<Done>>,
}

/// An ended attempt whose end the host has not acknowledged yet.
struct Done {
    report: JobReport,
    tail: MetricsTail,
    end: Result<AttemptEnd, LabError>,
}

impl Shared {
    fn is_alone(&self) -> bool {
        self.alone.load(Ordering::SeqCst)
    }

    /// No job runs.
    fn is_idle(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn with_store<T>(&self, what: &str, f: impl FnOnce(&mut Store) -> LabResult<T>) -> Option<T> {
        let mut s = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let store = s.as_mut()?;
        match f(store) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!("{what}: {}", e.message);
                None
            }
        }
    }

    /// The host is gone: from now on this process records what its jobs do, beginning with
    /// the ends the host never acknowledged.
    fn go_alone(&self) {
        if self.alone.swap(true, Ordering::SeqCst) {
            return;
        }
        CONNECTED.store(false, Ordering::SeqCst);
        match Store::open(&self.state) {
            Ok(s) => *self.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(s),
            Err(e) => tracing::error!("job supervisor: {}", e.message),
        }
        let pending: Vec<Done> = self
            .unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, d)| d)
            .collect();
        // Every run handed over: running, or ended (recorded now or kept until it can be).
        let mut mine: Vec<i64> = pending.iter().map(|d| d.report.id).collect();
        mine.extend(
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied(),
        );
        for d in pending {
            self.record_end(d);
        }
        // Runs the host claimed but never handed over: back to the queue at once (nothing
        // of them runs), not when this process exits.
        let host = self.host.clone();
        self.with_store("job supervisor", |s| {
            let lost: Vec<(i64, String)> = s
                .held_by(&host)?
                .into_iter()
                .filter(|id| !mine.contains(id))
                .map(|id| (id, host.clone()))
                .collect();
            s.requeue(&lost, &format!("host {host} died before starting it"))
        });
    }

    /// Records an attempt's points (again, from its start) and its end, as its host would.
    /// What the store refuses (a full disk, a lock) is kept and tried again every tick until
    /// it is recorded: other labhosts see this process alive meanwhile and run none of it again.
    fn record_end(&self, mut d: Done) {
        self.ensure_store();
        d.report.failed = false;
        supervisor::pump(&mut d.tail, &mut d.report);
        let (status, code, error, start) = match &d.end {
            Ok(o) => (o.status, o.exit_code, o.error.clone(), o.start.clone()),
            Err(e) => (
                crate::store::RunStatus::Failed,
                None,
                Some(e.message.clone()),
                None,
            ),
        };
        let (id, attempt) = (d.report.id, d.report.attempt);
        let recorded = !d.report.failed
            && self
                .with_store(&format!("job {id}"), |s| {
                    s.finish_attempt(
                        id,
                        attempt,
                        &self.host,
                        start.as_ref(),
                        status,
                        code,
                        error.as_deref(),
                    )
                })
                .is_some();
        if !recorded {
            // Its points are read again from their start next time.
            d.report.replayed = false;
            self.unrecorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d);
        }
    }

    /// Opens the store if it is not open (it may have failed to open when the host died).
    fn ensure_store(&self) {
        let mut s = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            match Store::open(&self.state) {
                Ok(st) => *s = Some(st),
                Err(e) => tracing::debug!("job supervisor: {}", e.message),
            }
        }
    }

    /// Tries again to record the ends the store refused.
    fn record_refused(&self) {
        let refused =
            std::mem::take(&mut *self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()));
        for d in refused {
            self.record_end(d);
        }
    }

    /// An attempt ended: its host records it, or this process when the host is gone.
    fn ended(&self, d: Done) {
        let id = d.report.id;
        if self.is_alone() {
            self.record_end(d);
            return;
        }
        let end = match &d.end {
            Ok(o) => Ok(o.clone()),
            Err(e) => Err((e.kind.clone(), e.message.clone())),
        };
        self.unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, d);
        let _ = self.out.send(News::Ended { job: id, end });
    }
}

/// One job's news: to the host, or into the store once the host is gone.
struct JobReport {
    shared: Arc<Shared>,
    id: i64,
    attempt: i64,
    start: Option<Started>,
    replayed: bool,
    /// A write of its news to the store failed (its points are read again from the start).
    failed: bool,
}

impl Report for JobReport {
    fn started(&mut self, st: &Started) {
        self.start = Some(st.clone());
        if self.shared.is_alone() {
            let id = self.id;
            self.shared.with_store(&format!("job {id}"), |s| {
                s.set_running(id, st.pid, st.leader_start, st.cgroup.as_deref())
            });
        } else {
            let _ = self.shared.out.send(News::Started {
                job: self.id,
                started: st.clone(),
            });
        }
    }

    fn metrics(&mut self, points: Vec<Metric>) {
        if self.shared.is_alone() {
            let id = self.id;
            let r = self
                .shared
                .with_store(&format!("job {id}"), |s| s.add_file_metrics(id, &points));
            self.failed |= r.is_none();
        } else {
            let _ = self.shared.out.send(News::Metrics {
                job: self.id,
                points,
            });
        }
    }

    fn replay(&mut self) -> bool {
        if !self.shared.is_alone() || self.replayed {
            return false;
        }
        self.replayed = true;
        let (id, attempt) = (self.id, self.attempt);
        let start = self.start.clone();
        let r = self.shared.with_store(&format!("job {id}"), |s| {
            s.forget_attempt_metrics(id, attempt)?;
            match &start {
                Some(st) => s.set_running(id, st.pid, st.leader_start, st.cgroup.as_deref()),
                None => Ok(()),
            }
        });
        self.failed |= r.is_none();
        true
    }
}

async fn serve(host: String, state: PathBuf, sock: UnixStream) {
    let (tx, mut rx) = mpsc::unbounded_channel::<News>();
    let _ = OUT.set(tx.clone());
    let shared = Arc::new(Shared {
        host,
        state,
        out: tx,
        alone: AtomicBool::new(false),
        store: Mutex::new(None),
        running: Mutex::new(HashMap::new()),
        unacked: Mutex::new(HashMap::new()),
        unrecorded: Mutex::new(Vec::new()),
    });
    let Ok(write_half) = sock.try_clone() else {
        return;
    };
    // News go out on a thread of their own (a blocking socket). A write fails when the host
    // is gone; going alone waits for the end of its orders (a launch it sent before it died
    // still runs, and is not put back in the queue).
    let (wtx, wrx) = std::sync::mpsc::channel::<Vec<u8>>();
    let writer = std::thread::spawn(move || {
        let mut w = write_half;
        for line in wrx {
            if w.write_all(&line).is_err() {
                CONNECTED.store(false, Ordering::SeqCst);
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            let mut line = serde_json::to_vec(&n).unwrap_or_default();
            line.push(b'\n');
            if wtx.send(line).is_err() {
                break;
            }
        }
    });
    // Orders come on a thread too, into the runtime.
    let (otx, mut orx) = mpsc::unbounded_channel::<Order>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(sock).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Order>(&line) {
                Ok(o) => {
                    if otx.send(o).is_err() {
                        break;
                    }
                }
                Err(e) => say!("unreadable order: {e}"),
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut host_gone = false;
    loop {
        tokio::select! {
            o = orx.recv(), if !host_gone => match o {
                Some(o) => take(&shared, o),
                None => {
                    host_gone = true;
                    let acked = shared.unacked.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                    if shared.is_idle() && acked {
                        break;
                    }
                    shared.go_alone();
                }
            },
            _ = tick.tick() => {
                crate::process::contain::reap_adopted();
                if !shared.is_alone() {
                    continue;
                }
                shared.record_refused();
                look_for_cancels(&shared);
                let refused = !shared.unrecorded.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                if shared.is_idle() && !refused {
                    break;
                }
            }
        }
    }
    // Nothing of an ended job stays (subreaper mode: orphans without a token too).
    crate::process::contain::stop_strays(crate::process::grace(), &|| true).await;
    if shared.is_alone() {
        shared.with_store("job supervisor", |s| s.checkpoint_truncate());
    }
    drop(writer);
}

/// Alone, this process stops the jobs whose cancel `labhost cancel` asked for.
fn look_for_cancels(shared: &Shared) {
    let ids = shared
        .with_store("job supervisor", |s| s.cancel_requests(&shared.host))
        .unwrap_or_default();
    let running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
    for id in ids {
        if let Some(t) = running.get(&id) {
            t.cancel();
        }
    }
}

fn take(shared: &Arc<Shared>, order: Order) {
    match order {
        Order::Launch { launch, num_gpus } => {
            let token = CancellationToken::new();
            shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(launch.job_id, token.clone());
            tokio::spawn(run_job(shared.clone(), *launch, num_gpus, token));
        }
        Order::Cancel { job } => {
            if let Some(t) = shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&job)
            {
                t.cancel();
            }
        }
        Order::Recorded { job } => {
            shared
                .unacked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job);
        }
        Order::KillAll => {
            crate::process::contain::kill_all_now();
            std::process::exit(137);
        }
    }
}

async fn run_job(shared: Arc<Shared>, mut l: Launch, num_gpus: usize, token: CancellationToken) {
    let id = l.job_id;
    let mut report = JobReport {
        shared: shared.clone(),
        id,
        attempt: l.attempt,
        start: None,
        replayed: false,
        failed: false,
    };
    let mut tail = supervisor::metrics_tail(&l);
    let end = async {
        let lease = lease_gpus(id, num_gpus, &token).await?;
        if let Some(lease) = &lease {
            l.env.extend(lease.env());
            // The job's processes hold the lease too: it ends when the last of them does.
            l.keep_fds = lease.fds();
        }
        let end = supervisor::run_process(&l, &mut tail, &mut report, token.clone()).await;
        drop(lease);
        end
    }
    .await;
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    // With no other job running, whatever was re-parented here is this one's (subreaper
    // mode: a daemon that cleared its environment carries no token): it ends with it.
    let s = shared.clone();
    crate::process::contain::stop_strays(crate::process::grace(), &move || s.is_idle()).await;
    shared.ended(Done { report, tail, end });
}

async fn lease_gpus(
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
