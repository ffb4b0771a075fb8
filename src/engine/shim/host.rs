//! The host's side of the job supervisor: starts it, hands it attempts, routes its news to
//! the jobs that wait for them, and cleans up after it if it dies.
use super::*;

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

    /// Hands `launch` to the supervisor, to start at once or, with `after`, when that job
    /// ends; its news come on the returned channel, which closes without an `Ended` if the
    /// supervisor dies. Must run inside the runtime.
    pub fn launch(
        self: &Arc<Self>,
        mut launch: Launch,
        num_gpus: usize,
        after: Option<i64>,
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
                after,
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
        let wait = if crate::engine::job_host::store_failure().is_some() {
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
        // Read on the runtime: the news of a job's end wakes its worker with no relay thread.
        tokio::spawn(async move {
            me.read(&c, reader).await;
            // Blocking (it waits for what the lost jobs left to be gone).
            let _ = tokio::task::spawn_blocking(move || me.lost(&c)).await;
        });
        Ok(conn)
    }

    fn start(&self) -> LabResult<(Arc<Conn>, tokio::net::UnixStream)> {
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
        let mut child =
            crate::process::spawn(&program, &io).map_err(|e| err("spawn", e.into_io()))?;
        drop(theirs);
        let pid = child.pid;
        // Reaped when it exits (it outlives this process only if this one dies first).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        // Non-blocking for the runtime's reader (and so for `send`, which shares the file).
        let reader = ours
            .set_nonblocking(true)
            .and_then(|()| ours.try_clone())
            .and_then(tokio::net::UnixStream::from_std)
            .map_err(|e| err("socket", e))?;
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
    async fn read(&self, conn: &Conn, stream: tokio::net::UnixStream) {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
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
    }

    /// The supervisor closed the socket: it died (this host still lives). No new one starts
    /// until what its jobs left is stopped; then their runs go back to the queue.
    fn lost(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
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

/// Writes `order` whole (the socket is non-blocking: a full buffer is waited out).
fn send(conn: &Conn, order: &Order) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(order).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut w = conn.writer.lock().unwrap_or_else(|e| e.into_inner());
    let mut rest = &line[..];
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd {
                    fd: w.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
