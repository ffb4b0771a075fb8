//! The one way labhost starts and stops a process. Every child — a job's leader, an
//! `sh::run` / `sh::stream` command, a cron fire's `labhost run` — is started by [`spawn`]
//! and stopped by [`stop_group`] (or [`Child::stop`]); nothing else in the crate forks,
//! sets a `pre_exec` hook or signals a process group.
//!
//! What every child gets, by policy:
//! - **Its own process group** (pgid = its pid), so everything it starts without `setsid`
//!   is signalled with it. Jobs are contained further (a cgroup, or the subreaper's token:
//!   [`contain`]).
//! - **The death signal is SIGKILL**: when the thread that started it ends (labhost exited,
//!   however), the kernel kills it. The one exception is a child that is labhost itself
//!   ([`Program::labhost`], a cron fire): it gets SIGTERM, on which it stops its own process
//!   groups with the grace, as on Ctrl-C — a SIGKILL would leave their members running. A
//!   child whose parent is already gone when it starts exits at once with 128 + that signal,
//!   as if it had come. Nothing labhost started runs on unwatched.
//! - **A clean start**: signal handlers reset to their defaults, nothing blocked, no fd of
//!   labhost's open past stdio and the fds the caller keeps (a GPU lease's locks).
//! - **One grace**: a stop is SIGTERM to the group, then SIGKILL to whatever is left after
//!   [`grace()`] (`LABHOST_KILL_GRACE`, default [`KILL_GRACE`]); a stop returns only once no
//!   process of the group is left.
//!
//! Start from a thread that outlives the child: the death signal follows the *thread*
//! that started it (tokio's blocking-pool threads exit when idle).
pub mod contain;
mod group;
pub mod spawn;

use std::time::Duration;

pub use group::{
    forget_child, group_alive, own_child, signal_group, signal_pid, spawn_guard, start_time, stat,
    stop_group,
};
pub use spawn::{probe_exit_watch, spawn, Child, ExitWatch, Io, Program, SpawnError};

/// The default time a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The grace of every stop: `LABHOST_KILL_GRACE` (a duration), else [`KILL_GRACE`].
pub fn grace() -> Duration {
    static G: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *G.get_or_init(|| crate::config::kill_grace().unwrap_or(KILL_GRACE))
}

/// The exit code of a status in the shell's convention: the code, or 128 + N when killed by
/// signal N.
pub fn exit_code(st: std::process::ExitStatus) -> Option<i64> {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .map(i64::from)
        .or_else(|| st.signal().map(|s| 128 + i64::from(s)))
}

/// A pipe whose both ends close on exec (the child gets its end through dup2, which clears
/// the flag on the copy): `(read end, write end)`.
pub fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Copies what a child writes into `pipe` to every sink (its log file; a terminal too), every
/// registered secret masked — also one split across two writes — until every writer has
/// closed the pipe. A sink that fails (a closed terminal) is dropped; the others go on.
pub async fn copy_masked(
    pipe: std::os::fd::OwnedFd,
    mut sinks: Vec<Box<dyn std::io::Write + Send>>,
    secrets: Vec<String>,
) {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else {
        return;
    };
    let mut r = crate::redact::StreamRedactor::new(&secrets);
    let mut buf = vec![0u8; 64 << 10];
    let put = |sinks: &mut Vec<Box<dyn std::io::Write + Send>>, b: &[u8]| {
        sinks.retain_mut(|s| s.write_all(b).and_then(|_| s.flush()).is_ok());
    };
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => put(&mut sinks, &r.feed(&buf[..n])),
        }
    }
    put(&mut sinks, &r.finish());
}

#[cfg(test)]
pub(crate) mod tests {
    /// A current-thread runtime for tests that start processes.
    pub(crate) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}
