//! The job supervisor ("shim", as containerd's shim and slurmstepd are): one process per job
//! host, `labhost __supervise <host> <state>`, started with the host's first process job.
//! It is the parent of every job process the host runs, so a job outlives its host:
//!
//! - The host hands it each attempt ([`Launch`]: the command, the real environment with its
//!   secrets, the values to mask) over a socket pair — never through a file — and it runs the
//!   attempt (`supervisor::run_process`: containment, logs, timeout, metrics file). It sends
//!   back the start, the metrics and the end; the host records them (an end together with
//!   its next claim) and acknowledges the end.
//! - A worker hands over its next attempt while the current one runs (`after`): it starts
//!   the moment the current one ends, with no round trip to the host in between.
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
use std::io::Write;
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
    /// Run this attempt (with `num_gpus` GPUs leased from the ledger first); with `after`,
    /// the moment that job ends (in its slot), or at once if it is not running.
    Launch {
        launch: Box<Launch>,
        num_gpus: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<i64>,
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

mod host;
mod serve;

pub use host::Handle;
pub use serve::main;
