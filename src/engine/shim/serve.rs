//! The supervisor process itself: `labhost __supervise`, serving its host and, once the host
//! is gone, recording its jobs alone.
use super::*;

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
    /// Attempts handed over to start when a running job ends, by that job (locked after
    /// `running`, never before).
    next: Mutex<HashMap<i64, Next>>,
    unacked: Mutex<HashMap<i64, Done>>,
    /// Ends the store refused while alone (tried again every tick).
    unrecorded: Mutex<Vec<Done>>,
}

/// An attempt that starts when the job before it in its slot ends.
struct Next {
    launch: Launch,
    num_gpus: usize,
    token: CancellationToken,
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
        // Every run handed over: running, next in a slot, or ended (recorded now or kept
        // until it can be).
        let mut mine: Vec<i64> = pending.iter().map(|d| d.report.id).collect();
        {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            mine.extend(running.keys().copied());
            let next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            mine.extend(next.values().map(|n| n.launch.job_id));
        }
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
        let (id, attempt) = (d.report.id, d.report.attempt);
        // Recorded by the host, which exited before its acknowledgement came: nothing to do
        // (reading its points again would delete and re-insert what the host wrote).
        let recorded = self.with_store(&format!("job {id}"), |s| {
            s.attempt_held(id, attempt, &self.host)
        });
        if recorded == Some(false) {
            return;
        }
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

impl JobReport {
    /// The news of attempt `l`, nothing reported yet.
    fn new(shared: &Arc<Shared>, l: &Launch) -> JobReport {
        JobReport {
            shared: shared.clone(),
            id: l.job_id,
            attempt: l.attempt,
            start: None,
            replayed: false,
            failed: false,
        }
    }
}

impl Report for JobReport {
    fn started(&mut self, st: &Started) {
        self.start = Some(st.clone());
        if self.shared.is_alone() {
            let id = self.id;
            self.shared
                .with_store(&format!("job {id}"), |s| s.set_running(id, st));
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
                Some(st) => s.set_running(id, st),
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
        next: Mutex::new(HashMap::new()),
        unacked: Mutex::new(HashMap::new()),
        unrecorded: Mutex::new(Vec::new()),
    });
    // The socket is read and written on this runtime (no relay threads: each was a wake-up
    // more on the way from a job's end to the next job's start).
    let sock = match sock
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(sock))
    {
        Ok(s) => s,
        Err(e) => {
            say!("cannot watch the host's socket: {e}");
            return;
        }
    };
    let (read_half, mut write_half) = sock.into_split();
    // A write fails when the host is gone; going alone waits for the end of its orders (a
    // launch it sent before it died still runs, and is not put back in the queue).
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut line = Vec::new();
        while let Some(n) = rx.recv().await {
            line.clear();
            if serde_json::to_writer(&mut line, &n).is_err() {
                continue;
            }
            line.push(b'\n');
            if write_half.write_all(&line).await.is_err() {
                CONNECTED.store(false, Ordering::SeqCst);
                break;
            }
        }
    });
    let mut orders = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(read_half));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut host_gone = false;
    loop {
        tokio::select! {
            o = orders.next_line(), if !host_gone => match o {
                Ok(Some(line)) => match serde_json::from_str::<Order>(&line) {
                    Ok(o) => take(&shared, o),
                    Err(e) => say!("unreadable order: {e}"),
                },
                Ok(None) | Err(_) => {
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
    writer.abort();
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
        Order::Launch {
            launch,
            num_gpus,
            after,
        } => {
            let n = Next {
                launch: *launch,
                num_gpus,
                token: CancellationToken::new(),
            };
            let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
            match after.filter(|a| running.contains_key(a)) {
                Some(a) => {
                    let mut next = shared.next.lock().unwrap_or_else(|e| e.into_inner());
                    next.insert(a, n);
                }
                None => start(shared, &mut running, n),
            }
        }
        Order::Cancel { job } => {
            let running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = running.get(&job) {
                t.cancel();
                return;
            }
            // Not started yet: it never will be, and ends `cancelled` at once.
            let mut next = shared.next.lock().unwrap_or_else(|e| e.into_inner());
            let Some(after) = next
                .iter()
                .find(|(_, n)| n.launch.job_id == job)
                .map(|x| *x.0)
            else {
                return;
            };
            let n = next.remove(&after).expect("found above");
            drop((next, running));
            shared.ended(never_started(shared, &n.launch));
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

/// Runs `n` now (the caller holds `running`).
fn start(shared: &Arc<Shared>, running: &mut HashMap<i64, CancellationToken>, n: Next) {
    running.insert(n.launch.job_id, n.token.clone());
    tokio::spawn(run_job(shared.clone(), n.launch, n.num_gpus, n.token));
}

/// The end of an attempt cancelled before it started: nothing of it ran.
fn never_started(shared: &Arc<Shared>, l: &Launch) -> Done {
    Done {
        report: JobReport::new(shared, l),
        tail: supervisor::metrics_tail(l),
        end: Ok(AttemptEnd {
            status: crate::store::RunStatus::Cancelled,
            exit_code: None,
            error: None,
            start: None,
        }),
    }
}

async fn run_job(shared: Arc<Shared>, mut l: Launch, num_gpus: usize, token: CancellationToken) {
    let id = l.job_id;
    let mut report = JobReport::new(&shared, &l);
    let mut tail = supervisor::metrics_tail(&l);
    let end = async {
        let lease = supervisor::lease_gpus(id, num_gpus, &token).await?;
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
    // The slot's next attempt starts before this end is even sent.
    {
        let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
        let next = shared
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(n) = next {
            start(&shared, &mut running, n);
        }
    }
    shared.ended(Done { report, tail, end });
}
