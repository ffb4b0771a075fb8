//! A fluent builder for running the built `labhost` binary against a temp folder.
//!
//! ```ignore
//! TestCmd::new().script("print(1 + 1);").run().success().stdout_is("2\n");
//! ```
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_labhost");

pub struct TestCmd {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
}

impl TestCmd {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        TestCmd {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `main.rhai` and runs it (`labhost run main.rhai`).
    pub fn script(self, text: &str) -> Self {
        self.file("main.rhai", text).args(["run", "main.rhai"])
    }

    /// Writes a file (relative to the temp folder), creating parent folders.
    pub fn file(self, name: &str, content: impl AsRef<[u8]>) -> Self {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// Copies `tests/fixtures/<name>/` into the temp folder.
    pub fn fixture(self, name: &str) -> Self {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let (src, dst) = (e.path(), to.join(e.file_name()));
                if src.is_dir() {
                    copy(&src, &dst);
                } else {
                    std::fs::copy(&src, &dst).unwrap();
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        copy(&src, self.dir.path());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self) -> Command {
        // Scripts that use $TMPDIR write inside the test's folder, which is removed after.
        let tmp = self.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mut c = Command::new(BIN);
        c.args(&self.args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("LABHOST_HOME", self.dir.path().join(".labhost"))
            .env("TMPDIR", &tmp)
            .env_remove("LABHOST_PRIVATE_SETTINGS")
            .env_remove("LABHOST_FAKE_GPUS")
            .env_remove("DATA_DIRECTORY")
            .env_remove("ARTIFACTS_DIRECTORY")
            .env_remove("LABHOST_PATH")
            .env_remove("LABHOST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(self) -> Out {
        let mut c = self.command();
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn labhost");
        if let Some(s) = &self.stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            dir: self.dir.path().to_path_buf(),
            _keep: Some(self.dir),
        };
        assert!(
            !out.stderr.contains("panicked"),
            "labhost panicked:\n{}",
            out.stderr
        );
        out
    }
}

impl Out {
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn stdout_is(&self, s: &str) -> &Self {
        assert_eq!(self.stdout, s, "stderr:\n{}", self.stderr);
        self
    }

    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout lacks {s:?}:\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr lacks {s:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// A labhost process started in the background, its stdout read line by line.
pub struct Running {
    pub child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// Stderr, once a line of it was asked for.
    err: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl TestCmd {
    /// Starts `labhost ARGS` (plus the builder's args) without waiting for it.
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn labhost");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Running {
            child,
            out,
            err: None,
        }
    }
}

impl Running {
    /// The next line of stdout, without its newline.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut s).unwrap();
        s.trim_end_matches('\n').to_string()
    }

    /// The next line of stderr, without its newline ("" at its end).
    pub fn err_line(&mut self) -> String {
        if self.err.is_none() {
            self.err = self.child.stderr.take().map(std::io::BufReader::new);
        }
        let mut s = String::new();
        if let Some(e) = self.err.as_mut() {
            let _ = std::io::BufRead::read_line(e, &mut s);
        }
        s.trim_end_matches('\n').to_string()
    }

    pub fn expect_line(&mut self, want: &str) -> &mut Self {
        assert_eq!(self.line(), want);
        self
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for exit: (exit code, rest of stdout, stderr).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        let mut err_rest = String::new();
        if let Some(e) = self.err.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut err_rest);
        }
        let o = self.child.wait_with_output().unwrap();
        err_rest.push_str(&String::from_utf8_lossy(&o.stderr));
        (o.status.code(), rest, err_rest)
    }
}

impl TestCmd {
    /// Starts `labhost ARGS` and kills it with SIGKILL after a random 0–`spread` ms past
    /// `min_ms`, up to `times` times (fewer if a run ends first); the seed is printed so a
    /// failure can be replayed. Returns how many kills there were.
    pub fn kill_9_at_random(&self, args: &[&str], times: usize, min_ms: u64, spread: u64) -> usize {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("seed {seed}");
        let mut kills = 0;
        while kills < times {
            let mut r = self.spawn(args);
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(std::time::Duration::from_millis(
                min_ms + (seed >> 33) % spread,
            ));
            if !r.is_running() {
                break; // finished before this kill
            }
            r.signal(libc::SIGKILL);
            r.finish();
            kills += 1;
        }
        eprintln!("killed the host {kills} times");
        kills
    }
}

/// A background server process in its own process group, killed with its group on drop.
pub struct Background {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: signalling the server's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A loopback port free now and never handed out before in this test process: tests run in
/// parallel, and two of them given the same just-freed port would start two servers on it —
/// one fails to bind while the other answers its readiness probe, then goes away with its
/// test (CI saw "Connection refused" from a server that had "started").
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts `cmd` (given its temp folder and port) in a fresh temp folder and waits until the
/// port accepts connections.
pub fn background(
    what: &str,
    timeout: std::time::Duration,
    cmd: impl FnOnce(&Path, u16) -> Command,
) -> Background {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = cmd(dir.path(), port)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut bg = Background {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let until = std::time::Instant::now() + timeout;
    // Ready when the port accepts and the process that answers is still ours.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || bg.exited() {
        assert!(
            std::time::Instant::now() < until && !bg.exited(),
            "{what} did not start:\n{}",
            bg.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bg
}

impl Background {
    /// Whether the server process has gone (it could not bind, or it crashed).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }
}

/// The status line and body of `GET path` on a loopback server, or None when it does not
/// answer (plain HTTP/1.0, enough for a readiness probe).
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A real `mlflow server` (sqlite store, artifacts proxied) in a fresh temp folder.
pub struct MlflowServer;

impl MlflowServer {
    pub fn start(mlflow: &str) -> Background {
        let mut bg = background(
            "mlflow server",
            std::time::Duration::from_secs(60),
            |dir, port| {
                let mut c = Command::new(mlflow);
                c.args([
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--workers",
                    "1",
                ])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}/mlflow.db", dir.display()))
                .arg("--artifacts-destination")
                .arg(dir.join("art"));
                c
            },
        );
        // The port opens before the app has loaded: ready when /health says OK.
        let port: u16 = bg.url.rsplit(':').next().unwrap().parse().unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let health = http_get(port, "/health").unwrap_or_default();
            if health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200") {
                break;
            }
            assert!(
                std::time::Instant::now() < until && !bg.exited(),
                "mlflow server did not become healthy ({health}):\n{}",
                bg.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bg
    }
}

/// Azurite's blob service, its data in the temp folder; `url` is its account base URL.
pub fn azurite(bin: &str) -> Background {
    let mut bg = background(
        "azurite",
        std::time::Duration::from_secs(30),
        |dir, port| {
            let mut c = Command::new(bin);
            c.args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--location",
            ])
            .arg(dir);
            c
        },
    );
    bg.url = format!("{}/devstoreaccount1", bg.url);
    bg
}

/// How many files directly in `dir` end in `.ext` (a differential corpus's cases).
pub fn count_files(dir: &str, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == ext)
        })
        .count()
}

/// `labhost ARGS` (a `sweep … --json`) in `t`: its exit code, the result as JSON, the logs
/// (stdout) of its first trial, and its stderr.
pub fn sweep_json(t: &TestCmd, args: &[&str]) -> (Option<i32>, serde_json::Value, String, String) {
    let (code, out, err) = t.spawn(args).finish();
    let r: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    let id = r["trials"][0]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &id]).finish();
    (code, r, log, err)
}

/// `labhost ARGS` (a `sweep … --json` whose one trial must fail) in `t`, within `limit`:
/// the trial failed with a reason starting with `reason`. Returns the result.
pub fn sweep_fails_within(
    t: &TestCmd,
    args: &[&str],
    reason: &str,
    limit: std::time::Duration,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    let (_, out, err) = t.spawn(args).finish();
    assert!(
        started.elapsed() < limit,
        "took {:?}: what should stop did not",
        started.elapsed()
    );
    let r: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    assert_eq!(r["trials"][0]["status"], "failed", "{out}");
    let why = r["trials"][0]["reason"].as_str().unwrap_or("");
    assert!(why.starts_with(reason), "{why}\n{err}");
    r
}
