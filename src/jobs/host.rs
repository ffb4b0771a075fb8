//! The job host: one per labhost process that submits jobs. It holds an exclusive flock on
//! `<state>/hosts/<id>.lock` for as long as it lives (so other hosts can tell it is alive),
//! re-queues the runs of hosts that died, and runs queued jobs with up to `workers` at once:
//! claim (atomic across processes) → optional GPU lease → supervisor → finish.
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{Metric, Run, Store};
use super::supervisor;
use crate::error::{HostError, HostResult};

pub struct JobHost {
    pub state: PathBuf,
    pub id: String,
    _lock: File,
    workers: AtomicUsize,
    running: AtomicUsize,
    wake: Notify,
    cancels: Mutex<HashMap<i64, CancellationToken>>,
    /// Open database connections for reuse (opening one costs pragmas and a schema check).
    stores: Mutex<Vec<Store>>,
    /// Real env values of jobs whose stored spec has secrets masked, by run id.
    secret_env: Mutex<HashMap<i64, std::collections::BTreeMap<String, String>>>,
}

fn hosts_dir(state: &Path) -> PathBuf {
    state.join("hosts")
}

/// True while the host that wrote `<state>/hosts/<id>.lock` holds its lock.
pub fn host_alive(state: &Path, id: &str) -> bool {
    let p = hosts_dir(state).join(format!("{id}.lock"));
    match File::open(&p) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

static HOST: OnceLock<Arc<JobHost>> = OnceLock::new();

/// The job host of this process, started on first use.
pub fn get() -> HostResult<Arc<JobHost>> {
    if let Some(h) = HOST.get() {
        return Ok(h.clone());
    }
    let state = crate::state::dir()?;
    let h = Arc::new(JobHost::start(&state)?);
    let h = HOST.get_or_init(|| h).clone();
    let rt = &crate::host::ctx().rt;
    let sched = h.clone();
    rt.spawn(async move { sched.schedule().await });
    Ok(h)
}

fn default_workers() -> usize {
    std::env::var("LABHOST_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1)
}

impl JobHost {
    fn start(state: &Path) -> HostResult<JobHost> {
        let dir = hosts_dir(state);
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::error::io_err("jobs", "cannot create", &dir, &e))?;
        let nanos = crate::modules::gpu::ledger_seed() % 1_000_000_000;
        let id = format!("{}-{}-{nanos}", hostname(), std::process::id());
        let p = dir.join(format!("{id}.lock"));
        let f =
            File::create(&p).map_err(|e| crate::error::io_err("jobs", "cannot create", &p, &e))?;
        f.lock()
            .map_err(|e| crate::error::io_err("jobs", "cannot lock", &p, &e))?;
        let mut store = Store::open(state)?;
        let orphans = store.requeue_orphans(&|h| h == id || host_alive(state, h))?;
        if !orphans.is_empty() {
            tracing::info!(
                "re-queued {} job(s) whose host had died: {:?}",
                orphans.len(),
                orphans
            );
        }
        Ok(JobHost {
            state: state.to_path_buf(),
            id,
            _lock: f,
            workers: AtomicUsize::new(default_workers()),
            running: AtomicUsize::new(0),
            wake: Notify::new(),
            cancels: Mutex::new(HashMap::new()),
            secret_env: Mutex::new(HashMap::new()),
            stores: Mutex::new(vec![store]),
        })
    }

    /// A connection from the pool (or a new one); give it back with `put_store`.
    fn take_store(&self) -> HostResult<Store> {
        match self.stores.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(s) => Ok(s),
            None => Store::open(&self.state),
        }
    }

    fn put_store(&self, s: Store) {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    pub fn set_workers(&self, n: usize) {
        self.workers.store(n.max(1), Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Records a run (masked spec) and keeps its real env in memory; the lock spans both so
    /// the scheduler never runs the job without it.
    pub fn create(
        &self,
        n: &super::store::NewRun,
        secret_env: Option<std::collections::BTreeMap<String, String>>,
    ) -> HostResult<Run> {
        let mut secrets = self.secret_env.lock().unwrap_or_else(|e| e.into_inner());
        let mut store = self.take_store()?;
        let n = super::store::NewRun {
            owner: Some(self.id.clone()),
            ..n.clone()
        };
        let res = store.create(&n);
        self.put_store(store);
        let (run, created) = res?;
        if let Some(env) = secret_env {
            if created || !super::store::FINISHED.contains(&run.status.as_str()) {
                secrets.insert(run.id, env);
            }
        }
        drop(secrets);
        self.poke();
        Ok(run)
    }

    /// Wakes the scheduler (after a submit).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Cancels a job: in the store, and at once if this host runs it.
    pub fn cancel(&self, id: i64) -> HostResult<String> {
        let mut store = self.take_store()?;
        let res = store.cancel(id);
        self.put_store(store);
        let status = res?;
        if let Some(t) = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            t.cancel();
        }
        Ok(status)
    }

    async fn schedule(self: Arc<Self>) {
        let mut store = match Store::open(&self.state) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("job host: {}", e.message);
                return;
            }
        };
        let mut last_orphan_check = std::time::Instant::now();
        loop {
            // Another host may die while running jobs this one waits for: look every second.
            if last_orphan_check.elapsed() >= Duration::from_secs(1) {
                last_orphan_check = std::time::Instant::now();
                match store.requeue_orphans(&|h| h == self.id || host_alive(&self.state, h)) {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::info!("re-queued job(s) {ids:?}: their host died")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("job host: {}", e.message),
                }
            }
            if self.running.load(Ordering::SeqCst) < self.workers.load(Ordering::SeqCst) {
                match store.claim_next(&self.id) {
                    Ok(Some(run)) => {
                        self.running.fetch_add(1, Ordering::SeqCst);
                        let me = self.clone();
                        tokio::spawn(async move {
                            let id = run.id;
                            if let Err(e) = me.execute(run).await {
                                tracing::error!("job {id}: {}", e.message);
                            }
                            me.running.fetch_sub(1, Ordering::SeqCst);
                            me.wake.notify_one();
                        });
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("job host: {}", e.message),
                }
            }
            // Woken by submits and job ends; the tick covers retries coming due and other hosts.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    async fn execute(&self, run: Run) -> HostResult<()> {
        let token = CancellationToken::new();
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.id, token.clone());
        let result = self.execute_inner(&run, token).await;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run.id);
        let mut store = self.take_store()?;
        let res = match result {
            Ok(o) => store.finish(run.id, o.status, o.exit_code, o.error.as_deref()),
            Err(e) => store.finish(run.id, "failed", None, Some(&e.message)),
        };
        self.put_store(store);
        res.map(|_| ())
    }

    async fn execute_inner(
        &self,
        run: &Run,
        token: CancellationToken,
    ) -> HostResult<supervisor::Outcome> {
        let mut launch = supervisor::launch_for(run)?;
        let spec = &run.spec;
        if let Some(real) = self
            .secret_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run.id)
        {
            launch.env = real.clone();
        }
        // GPUs: a lease from the ledger, held until the process ends.
        let num_gpus = spec["num_gpus"].as_u64().unwrap_or(0) as usize;
        let lease = if num_gpus > 0 {
            let t = token.clone();
            let o = crate::modules::gpu::ledger::ReserveOpts {
                holder: Some(format!("job {}", run.id)),
                ..Default::default()
            };
            let lease = tokio::task::spawn_blocking(move || {
                crate::modules::gpu::ledger::Ledger::open()?.reserve(num_gpus, &o, &t)
            })
            .await
            .map_err(|e| HostError::new("jobs.gpu", e.to_string()))??;
            launch.env.extend(lease.env());
            Some(lease)
        } else {
            None
        };
        let store = Mutex::new(self.take_store()?);
        let lock = || store.lock().unwrap_or_else(|e| e.into_inner());
        let mut started = |pid: i64| {
            if let Err(e) = lock().set_running(run.id, pid) {
                tracing::error!("job {}: {}", run.id, e.message);
            }
        };
        let mut metrics = |b: Vec<Metric>| {
            if let Err(e) = lock().add_metrics(run.id, &b) {
                tracing::error!("job {}: {}", run.id, e.message);
            }
        };
        // A cancel from another process (`labhost cancel`) shows up in the store.
        let watch_state = self.state.clone();
        let watch_token = token.clone();
        let id = run.id;
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(s) = Store::open(&watch_state).and_then(|s| s.get(id)) {
                    if s.status == "cancelled" {
                        watch_token.cancel();
                        return;
                    }
                }
            }
        });
        let out = supervisor::run(&launch, &mut started, &mut metrics, token).await;
        self.put_store(store.into_inner().unwrap_or_else(|e| e.into_inner()));
        watcher.abort();
        drop(lease);
        out
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
