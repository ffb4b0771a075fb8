//! `sh`: run commands. A string runs through `sh -c`; an array runs the program directly
//! (no shell, no quoting problems). Each command is started and stopped by the process
//! module (`crate::process`): its own process group, so a timeout or Ctrl-C stops everything
//! it started (SIGTERM, then SIGKILL after the grace), and the death signal, so nothing
//! outlives a killed labhost.
pub mod rhai;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use crate::command::Command;
use crate::error::{LabError, LabResult};
use crate::process::{self, SpawnError};

#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub cwd: Option<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
}

/// Where streamed output lines go (`sh::stream`); `None` captures only.
pub type LineSink = Arc<dyn Fn(crate::runtime::Stream, &str) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Output {
    /// Exit code; 128 + N when killed by signal N (shell convention).
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// Wall time in seconds.
    pub duration: f64,
}

/// The argv of a command (`sh -c TEXT` for a shell string).
fn argv(cmd: &Command) -> LabResult<Vec<OsString>> {
    match cmd {
        Command::Shell(s) => Ok(vec!["sh".into(), "-c".into(), s.into()]),
        Command::Argv(a) if a.is_empty() => {
            Err(LabError::new("invalid_argument", "empty command array"))
        }
        Command::Argv(a) => Ok(a.iter().map(OsString::from).collect()),
    }
}

fn start_error(cmd: &Command, cwd: Option<&Path>, e: SpawnError) -> LabError {
    let prog = cmd.program();
    let e = match e {
        SpawnError::Cwd(e) => {
            return LabError::new(
                "sh.invalid_cwd",
                format!(
                    "working directory '{}': {e}",
                    cwd.unwrap_or(Path::new(".")).display()
                ),
            )
        }
        SpawnError::Fork(e) | SpawnError::Contain(e) => {
            return LabError::new("sh.spawn", format!("cannot start '{prog}': {e}"))
        }
        SpawnError::Exec(e) => e,
    };
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            LabError::new("sh.not_found", format!("command not found: {prog}"))
        }
        std::io::ErrorKind::PermissionDenied => {
            LabError::new("sh.permission_denied", format!("permission denied: {prog}"))
        }
        _ => LabError::new("sh.spawn", format!("cannot start '{prog}': {e}")),
    }
}

/// A started command with the parent's ends of its pipes.
struct Started {
    child: process::Child,
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
}

fn io_error(e: std::io::Error) -> LabError {
    LabError::new("sh.spawn", format!("cannot make a pipe: {e}"))
}

/// The process groups of the commands running now. A hard exit (a second Ctrl-C) kills them
/// whole: the death signal reaches only each command's first process, not what a shell
/// forked.
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// A command's group, listed in [`RUNNING`] while its `run` lasts.
struct Listed(i32);

impl Listed {
    fn new(pgid: i32) -> Self {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| crate::runtime::on_hard_exit(kill_running));
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
        Listed(pgid)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != self.0);
    }
}

fn kill_running() {
    for &pgid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        process::signal_group(pgid, libc::SIGKILL);
    }
}

/// Starts `cmd` through the process module with stdout and stderr (and stdin when given)
/// on pipes.
fn start(cmd: &Command, opts: &RunOpts) -> LabResult<Started> {
    let cwd = opts.cwd.as_deref().map(Path::new);
    if let Some(dir) = cwd.filter(|d| !d.is_dir()) {
        return Err(LabError::new(
            "sh.invalid_cwd",
            format!("working directory '{}' does not exist", dir.display()),
        ));
    }
    let program = process::Program::new(&argv(cmd)?, &opts.env, cwd)
        .map_err(|e| start_error(cmd, cwd, SpawnError::Exec(e)))?;
    let null: OwnedFd;
    let (stdin_child, stdin_parent) = match opts.stdin {
        Some(_) => {
            let (r, w) = process::pipe().map_err(io_error)?;
            (r, Some(w))
        }
        None => {
            null = std::fs::File::open("/dev/null").map_err(io_error)?.into();
            (null, None)
        }
    };
    let (out_r, out_w) = process::pipe().map_err(io_error)?;
    let (err_r, err_w) = process::pipe().map_err(io_error)?;
    let io = process::Io::stdio([
        stdin_child.as_raw_fd(),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
    ]);
    let child = process::spawn(&program, &io).map_err(|e| start_error(cmd, cwd, e))?;
    // The child has its copies: the parent's ends of the write sides close here, so the
    // readers see EOF when the command's group is done writing.
    drop((stdin_child, out_w, err_w));
    Ok(Started {
        child,
        stdin: stdin_parent
            .map(pipe::Sender::from_owned_fd)
            .transpose()
            .map_err(io_error)?,
        stdout: pipe::Receiver::from_owned_fd(out_r).map_err(io_error)?,
        stderr: pipe::Receiver::from_owned_fd(err_r).map_err(io_error)?,
    })
}

async fn pump<R: AsyncRead + Unpin>(
    r: R,
    stream: crate::runtime::Stream,
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

/// Runs a command to completion. Output is captured, and also streamed line by line to
/// `sink` when given. Timeout → `sh.timeout`; cancellation → `cancelled`; either stops the
/// command's whole process group with the process module's grace.
pub async fn run(
    cmd: &Command,
    opts: &RunOpts,
    sink: Option<LineSink>,
    cancel: CancellationToken,
) -> LabResult<Output> {
    let started = Instant::now();
    let Started {
        mut child,
        stdin,
        stdout,
        stderr,
    } = start(cmd, opts)?;
    let _listed = Listed::new(child.pid);
    if let (Some(text), Some(mut w)) = (opts.stdin.clone(), stdin) {
        tokio::spawn(async move {
            let _ = w.write_all(text.as_bytes()).await;
        });
    }
    let out = tokio::spawn(pump(stdout, crate::runtime::Stream::Out, sink.clone()));
    let err = tokio::spawn(pump(stderr, crate::runtime::Stream::Err, sink));
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
            let status = status.map_err(|e| LabError::new("sh.wait", e.to_string()))?;
            Ok(Output {
                code: process::exit_code(status).unwrap_or(-1),
                stdout,
                stderr,
                duration: started.elapsed().as_secs_f64(),
            })
        }
        End::Timeout => {
            let _ = child.stop(process::grace()).await;
            Err(LabError::new(
                "sh.timeout",
                format!(
                    "command timed out after {:.1}s and was killed: {}",
                    opts.timeout.unwrap_or_default().as_secs_f64(),
                    cmd.display()
                ),
            ))
        }
        End::Cancelled => {
            let _ = child.stop(process::grace()).await;
            Err(LabError::cancelled())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::tests::rt;

    #[test]
    fn captures_code_stdout_stderr_env_stdin() {
        let opts = RunOpts {
            env: [("X".to_string(), "42".to_string())].into(),
            stdin: Some("in".into()),
            ..Default::default()
        };
        let cmd = Command::Shell("cat; echo \" $X\"; echo err >&2; exit 3".into());
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
        let cmd = Command::Shell(format!("(sleep 1; touch {}) & sleep 30", marker.display()));
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
                &Command::Argv(vec!["no-such-prog-xyz".into()]),
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
                &Command::Shell("true".into()),
                &opts,
                None,
                CancellationToken::new(),
            ))
            .unwrap_err();
        assert_eq!(e.kind, "sh.invalid_cwd");
    }
}
