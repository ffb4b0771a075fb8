//! `sh`: run commands. A string runs through `sh -c`; an array runs the program directly
//! (no shell, no quoting problems). Each command gets its own process group, so a timeout or
//! Ctrl-C kills everything it started (SIGTERM, then SIGKILL after a grace period), and a
//! parent-death signal, so nothing outlives a killed host.
pub mod rhai;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, HostResult};

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The command type shared by sh, jobs and docker.
pub use crate::command::Command as Cmd;

#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub cwd: Option<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
}

/// Where streamed output lines go (`sh::stream`); `None` captures only.
pub type LineSink = Arc<dyn Fn(crate::host::Stream, &str) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Output {
    /// Exit code; 128 + N when killed by signal N (shell convention).
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// Wall time in seconds.
    pub duration: f64,
}

/// A supervised command: its own process group (a timeout or Ctrl-C kills everything it
/// started), killed if dropped, and a parent-death signal so it dies with the thread that
/// spawned it. `cwd` must exist (error kind `<module>.invalid_cwd`). Callers add env and stdio.
pub fn supervised(cmd: &Cmd, cwd: Option<&std::path::Path>, module: &str) -> HostResult<Command> {
    let mut c = match cmd {
        Cmd::Shell(s) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(s);
            c
        }
        Cmd::Argv(a) => {
            let Some((prog, args)) = a.split_first() else {
                return Err(HostError::new("invalid_argument", "empty command array"));
            };
            let mut c = Command::new(prog);
            c.args(args);
            c
        }
    };
    if let Some(dir) = cwd {
        if !dir.is_dir() {
            return Err(HostError::new(
                format!("{module}.invalid_cwd"),
                format!("working directory '{}' does not exist", dir.display()),
            ));
        }
        c.current_dir(dir);
    }
    c.kill_on_drop(true).process_group(0);
    // SAFETY: prctl, getppid and _exit are async-signal-safe; the hook runs in the child.
    let parent = unsafe { libc::getpid() };
    unsafe {
        c.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before the death signal was armed: then nothing
            // would ever deliver it.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    Ok(c)
}

fn build(cmd: &Cmd, opts: &RunOpts) -> HostResult<Command> {
    let mut c = supervised(cmd, opts.cwd.as_deref().map(std::path::Path::new), "sh")?;
    c.envs(&opts.env);
    c.stdin(if opts.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    Ok(c)
}

async fn pump<R: AsyncRead + Unpin>(
    r: R,
    stream: crate::host::Stream,
    sink: Option<LineSink>,
) -> String {
    let mut r = BufReader::new(r);
    let mut all = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(s) = &sink {
                    let text = String::from_utf8_lossy(&line);
                    s(stream, text.trim_end_matches(['\n', '\r']));
                }
                all.extend_from_slice(&line);
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Sends SIGTERM to the command's whole group, then SIGKILL if anything is left after
/// `grace`. The leader is reaped as soon as it exits (a zombie leader would keep the group
/// "alive" for the whole grace).
async fn kill_group(child: &mut tokio::process::Child, pgid: i32, grace: Duration) {
    if pgid <= 0 {
        // No group of its own to signal (killpg(0) would hit our own): the leader only.
        let _ = child.start_kill();
        let _ = child.wait().await;
        return;
    }
    // SAFETY: plain syscalls on a process group we created (pgid > 0).
    unsafe { libc::killpg(pgid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let _ = child.try_wait();
        if !crate::engine::group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    let _ = child.wait().await;
}

/// Runs a command to completion. Output is captured, and also streamed line by line to
/// `sink` when given. Timeout → `sh.timeout`; cancellation → `cancelled`.
pub async fn run(
    cmd: &Cmd,
    opts: &RunOpts,
    sink: Option<LineSink>,
    cancel: CancellationToken,
) -> HostResult<Output> {
    let started = Instant::now();
    let mut command = build(cmd, opts)?;
    // Recorded as ours, so a subreaping job host never reaps it behind tokio's back.
    let guard = crate::engine::spawn_guard();
    let spawned = command.spawn();
    if let Some(pid) = spawned.as_ref().ok().and_then(|c| c.id()) {
        crate::engine::own_child(pid as i32);
    }
    drop(guard);
    let mut child = spawned.map_err(|e| {
        let prog = cmd.program();
        match e.kind() {
            std::io::ErrorKind::NotFound => {
                HostError::new("sh.not_found", format!("command not found: {prog}"))
            }
            std::io::ErrorKind::PermissionDenied => {
                HostError::new("sh.permission_denied", format!("permission denied: {prog}"))
            }
            _ => HostError::new("sh.spawn", format!("cannot start '{prog}': {e}")),
        }
    })?;
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    let _forget = Forget(pgid);
    if let (Some(text), Some(mut w)) = (opts.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = w.write_all(text.as_bytes()).await;
        });
    }
    let out = tokio::spawn(pump(
        child.stdout.take().expect("piped"),
        crate::host::Stream::Out,
        sink.clone(),
    ));
    let err = tokio::spawn(pump(
        child.stderr.take().expect("piped"),
        crate::host::Stream::Err,
        sink,
    ));
    enum End {
        Done(std::io::Result<std::process::ExitStatus>, String, String),
        Timeout,
        Cancelled,
    }
    let end = {
        let finish = async {
            let status = child.wait().await;
            let stdout = out.await.unwrap_or_default();
            let stderr = err.await.unwrap_or_default();
            (status, stdout, stderr)
        };
        let timeout = async {
            match opts.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (status, stdout, stderr) = finish => End::Done(status, stdout, stderr),
            _ = timeout => End::Timeout,
            _ = cancel.cancelled() => End::Cancelled,
        }
    };
    match end {
        End::Done(status, stdout, stderr) => {
            use std::os::unix::process::ExitStatusExt;
            let status = status.map_err(|e| HostError::new("sh.wait", e.to_string()))?;
            let code = status
                .code()
                .map(i64::from)
                .or_else(|| status.signal().map(|s| 128 + i64::from(s)))
                .unwrap_or(-1);
            Ok(Output {
                code,
                stdout,
                stderr,
                duration: started.elapsed().as_secs_f64(),
            })
        }
        End::Timeout => {
            kill_group(&mut child, pgid, KILL_GRACE).await;
            Err(HostError::new(
                "sh.timeout",
                format!(
                    "command timed out after {:.1}s and was killed: {}",
                    opts.timeout.unwrap_or_default().as_secs_f64(),
                    cmd.display()
                ),
            ))
        }
        End::Cancelled => {
            kill_group(&mut child, pgid, KILL_GRACE).await;
            Err(HostError::cancelled())
        }
    }
}

/// Forgets the command's pid in the registry of our own children when `run` returns.
struct Forget(i32);

impl Drop for Forget {
    fn drop(&mut self) {
        crate::engine::forget_child(self.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A current-thread runtime for tests that start processes.
    pub(crate) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn captures_code_stdout_stderr_env_stdin() {
        let opts = RunOpts {
            env: [("X".to_string(), "42".to_string())].into(),
            stdin: Some("in".into()),
            ..Default::default()
        };
        let cmd = Cmd::Shell("cat; echo \" $X\"; echo err >&2; exit 3".into());
        let o = rt()
            .block_on(run(&cmd, &opts, None, CancellationToken::new()))
            .unwrap();
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (3, "in 42\n", "err\n")
        );
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let t = tempfile::tempdir().unwrap();
        let marker = t.path().join("survivor");
        // The grandchild would write the marker after 1s if it survived the kill.
        let cmd = Cmd::Shell(format!("(sleep 1; touch {}) & sleep 30", marker.display()));
        let opts = RunOpts {
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        };
        let started = Instant::now();
        let e = rt()
            .block_on(run(&cmd, &opts, None, CancellationToken::new()))
            .unwrap_err();
        assert_eq!(e.kind, "sh.timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1300));
        assert!(
            !marker.exists(),
            "a process of the group survived the timeout"
        );
    }

    #[test]
    fn missing_program_and_cwd_are_clear_errors() {
        let e = rt()
            .block_on(run(
                &Cmd::Argv(vec!["no-such-prog-xyz".into()]),
                &RunOpts::default(),
                None,
                CancellationToken::new(),
            ))
            .unwrap_err();
        assert_eq!(e.kind, "sh.not_found");
        let opts = RunOpts {
            cwd: Some("/no/such/dir".into()),
            ..Default::default()
        };
        let e = rt()
            .block_on(run(
                &Cmd::Shell("true".into()),
                &opts,
                None,
                CancellationToken::new(),
            ))
            .unwrap_err();
        assert_eq!(e.kind, "sh.invalid_cwd");
    }
}
