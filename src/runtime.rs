//! The host context shared by every native function: the tokio runtime handle, the
//! cancellation state (and the Ctrl-C handler that drives it) and the output sink. One per
//! process, created on first use.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::redact;

/// Cancellation: a flag the engine checks on every operation (cheap) and a token that
/// blocking natives select on. `reset` re-arms both (the REPL does it per statement).
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    token: Mutex<CancellationToken>,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// A token for the current statement; it fires when `cancel` is called.
    pub fn token(&self) -> CancellationToken {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reset(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = CancellationToken::new();
        self.flag.store(false, Ordering::SeqCst);
    }
}

/// Where script output goes. Every line is redacted, then written to stdout/stderr (or a
/// capture buffer in tests) and mirrored as a `trace` event for `-vv` / log files.
#[derive(Default)]
pub struct Sink {
    capture: Option<Mutex<Vec<(Stream, String)>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Sink {
    /// A sink that keeps lines in memory instead of writing them (for tests).
    pub fn capturing() -> Self {
        Sink {
            capture: Some(Mutex::new(Vec::new())),
        }
    }

    /// Lines captured so far (empty unless built with `capturing`).
    pub fn captured(&self) -> Vec<(Stream, String)> {
        match &self.capture {
            Some(c) => c.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => Vec::new(),
        }
    }

    pub fn line(&self, stream: Stream, text: &str) {
        let text = redact::apply(text);
        tracing::trace!(target: "labhost::output", ?stream, "{text}");
        if let Some(c) = &self.capture {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((stream, text));
            return;
        }
        // A closed pipe (labhost run x | head) must not panic the host.
        let _ = match stream {
            Stream::Out => writeln!(std::io::stdout().lock(), "{text}"),
            Stream::Err => writeln!(std::io::stderr().lock(), "{text}"),
        };
    }

    pub fn print(&self, text: &str) {
        self.line(Stream::Out, text)
    }

    pub fn eprint(&self, text: &str) {
        self.line(Stream::Err, text)
    }
}

pub struct RuntimeCtx {
    pub rt: tokio::runtime::Handle,
    pub cancel: Cancel,
    pub sink: Sink,
}

static CTX: OnceLock<Arc<RuntimeCtx>> = OnceLock::new();
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Builds the multi-thread runtime once. Scripts never run on its workers: they run on the
/// caller's thread and reach async code through `Handle::block_on` (see `crate::bridge`).
fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("labhost-rt")
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// The process-wide host context, created on first use with a terminal sink.
pub fn ctx() -> &'static Arc<RuntimeCtx> {
    CTX.get_or_init(|| {
        Arc::new(RuntimeCtx {
            rt: runtime().handle().clone(),
            cancel: Cancel::default(),
            sink: Sink::default(),
        })
    })
}

/// Installs a context with a custom sink (tests). Returns false if one was already set.
pub fn install_sink(sink: Sink) -> bool {
    CTX.set(Arc::new(RuntimeCtx {
        rt: runtime().handle().clone(),
        cancel: Cancel::default(),
        sink,
    }))
    .is_ok()
}

/// Ctrl-C: the first one cancels the running script or command (it ends with exit 130); with
/// `hard_exit`, a second one exits the process at once. `hard_exit: false` (the REPL) only
/// cancels, so the prompt comes back.
///
/// With `hard_exit`, SIGTERM (`kill`, systemd, `labhost cron` stopping a fire) cancels as
/// the first Ctrl-C does, so what the script started — commands, jobs, containers — is
/// stopped before the process ends instead of being orphaned. A second SIGTERM does not
/// exit at once: a parent-death signal comes once for each thread of a dying parent (a
/// `labhost cron` killed with -9 sends its fire two or more), and exiting on the second left
/// the grandchildren of the fire's `sh::run` behind. Without `hard_exit` (the REPL) SIGTERM
/// keeps its default.
pub fn install_ctrl_c(hard_exit: bool) {
    let h = ctx();
    let _guard = h.rt.enter();
    let mut kinds = vec![tokio::signal::unix::SignalKind::interrupt()];
    if hard_exit {
        kinds.push(tokio::signal::unix::SignalKind::terminate());
    }
    for kind in kinds {
        let Ok(mut sig) = tokio::signal::unix::signal(kind) else {
            continue;
        };
        let escalates = hard_exit && kind == tokio::signal::unix::SignalKind::interrupt();
        h.rt.spawn(async move {
            while sig.recv().await.is_some() {
                let c = &ctx().cancel;
                if escalates && c.is_cancelled() {
                    run_hard_exit_hooks();
                    std::process::exit(i32::from(crate::error::exit::INTERRUPTED));
                }
                c.cancel();
            }
        });
    }
}

static HARD_EXIT: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Registers `f` to run when the process exits at once (a second Ctrl-C): the job engine
/// kills its jobs' processes there, so none outlives its host.
pub fn on_hard_exit(f: fn()) {
    let mut h = HARD_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    if !h.contains(&f) {
        h.push(f);
    }
}

fn run_hard_exit_hooks() {
    let hooks = HARD_EXIT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for f in hooks {
        f();
    }
}

static SCRIPT_END: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Registers `f` to run when the running script ends, normally or by Ctrl-C (docker removes
/// the containers the script started with `stop_on_exit` there). The script runner calls
/// [`script_ended`]; a module registers what it needs without the runner knowing it.
pub fn at_script_end(f: fn()) {
    let mut h = SCRIPT_END.lock().unwrap_or_else(|e| e.into_inner());
    if !h.contains(&f) {
        h.push(f);
    }
}

/// Runs the hooks registered with [`at_script_end`].
pub fn script_ended() {
    let hooks = SCRIPT_END.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for f in hooks {
        f();
    }
}

/// Runs `f` to its end on the runtime from a blocking thread (a script's), unless Ctrl-C (the
/// cancel token) comes first: then `cancelled`. Every native and every module's blocking
/// facade waits through this, so Ctrl-C cancels any of them.
pub fn block_on<F: std::future::Future>(f: F) -> crate::error::LabResult<F::Output> {
    let h = ctx();
    let token = h.cancel.token();
    if token.is_cancelled() {
        return Err(crate::error::LabError::cancelled());
    }
    h.rt.block_on(async {
        tokio::select! {
            biased;
            _ = token.cancelled() => Err(crate::error::LabError::cancelled()),
            r = f => Ok(r),
        }
    })
}
