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

use super::supervisor;
use crate::error::{LabError, LabResult};
use crate::process::contain;
use crate::store::{Metric, NewRun, Run, RunStatus, Started, Store};

pub struct JobHost {
    pub state: PathBuf,
    pub id: String,
    _lock: File,
    workers: AtomicUsize,
    running: AtomicUsize,
    /// The host is exiting: it claims nothing more, and jobs it stops go back to the queue.
    stopping: std::sync::atomic::AtomicBool,
    wake: Notify,
    cancels: Mutex<HashMap<i64, CancellationToken>>,
    /// Jobs handed to the supervisor to start when their slot's current job ends.
    ahead: Mutex<std::collections::HashSet<i64>>,
    /// Of those, the ones taken back (fewer workers): cancelled before they start, re-queued.
    unleased: Mutex<std::collections::HashSet<i64>>,
    /// Real env values of jobs whose stored spec has secrets masked, by run id.
    secret_env: Mutex<HashMap<i64, std::collections::BTreeMap<String, String>>>,
    /// Experiment names by id (they never change), for jobs' MLFLOW_EXPERIMENT_NAME.
    experiments: Mutex<HashMap<i64, String>>,
    /// The job supervisor: the parent of this host's process jobs, which outlives it.
    supervisor: Arc<super::shim::Handle>,
    /// Ends the store refused (see [`JobHost::keep`]).
    kept: Mutex<Vec<KeptEnd>>,
}

fn hosts_dir(state: &Path) -> PathBuf {
    state.join("hosts")
}

/// True while the host that wrote `<state>/hosts/<id>.lock` holds its lock.
pub fn job_host_alive(state: &Path, id: &str) -> bool {
    lock_held(&hosts_dir(state).join(format!("{id}.lock")))
}

/// True while some process holds an exclusive lock on the file at `p`.
pub(in crate::engine) fn lock_held(p: &Path) -> bool {
    match File::open(p) {
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

/// The error kind of a failure of the state database.
const STORE_ERROR: &str = "jobs.store";

/// How often a write the database refused is tried again (after 0.1, 0.3, 0.9 s).
const STORE_RETRIES: usize = 3;

/// The write this process's host could not make: from then on it takes no new job, and the
/// command ends non-zero (the scripts' waits and sweeps end with this error).
static STORE_FAILURE: Mutex<Option<LabError>> = Mutex::new(None);

/// Held by whoever checkpoints in this process: SQLite refuses a checkpoint while another
/// runs, busy handler or not, and the exit's truncating checkpoint must not meet the
/// checkpointer thread's (it left the WAL at 10 MB when they met).
static CHECKPOINTING: Mutex<()> = Mutex::new(());

/// Why this process's job host stopped taking work, if it did.
pub fn store_failure() -> Option<LabError> {
    STORE_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn fail_store(what: &str, e: &LabError) {
    let mut f = STORE_FAILURE.lock().unwrap_or_else(|e| e.into_inner());
    if f.is_none() {
        tracing::error!(
            "{what}: {}: this labhost starts no new job; what finished is kept",
            e.message
        );
        *f = Some(LabError::new(
            STORE_ERROR,
            format!("{what}: {} (no new job was started after it)", e.message),
        ));
    }
}

/// An attempt's end the store refused.
struct KeptEnd {
    id: i64,
    attempt: i64,
    run_dir: PathBuf,
    end: supervisor::AttemptEnd,
}

/// Where an end the store refused is left for the next labhost.
fn end_marker(run_dir: &Path, attempt: i64) -> PathBuf {
    run_dir.join(format!("end-{attempt}.json"))
}

/// Counts the jobs this process has finished; `wait` sleeps on it instead of polling.
static ENDED: (Mutex<u64>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

/// How many jobs this process has finished so far (read it before looking at a job's status,
/// then hand it to `wait_for_end`).
pub fn ended_count() -> u64 {
    *ENDED.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sleeps until this process finishes another job after `seen` ended, or `max` passes (a job
/// run by another process ends unannounced).
pub fn wait_for_end(seen: u64, max: Duration) {
    let g = ENDED.0.lock().unwrap_or_else(|e| e.into_inner());
    let _ = ENDED
        .1
        .wait_timeout_while(g, max, |n| *n == seen)
        .unwrap_or_else(|e| e.into_inner());
}

fn announce_end() {
    *ENDED.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    ENDED.1.notify_all();
}

/// The job host of this process, started on first use.
pub fn get() -> LabResult<Arc<JobHost>> {
    if let Some(h) = HOST.get() {
        return Ok(h.clone());
    }
    let state = crate::state::dir()?;
    let h = Arc::new(JobHost::start(&state)?);
    let h = HOST.get_or_init(|| h).clone();
    let rt = &crate::runtime::ctx().rt;
    let sched = h.clone();
    rt.spawn(async move { sched.schedule().await });
    // Jobs report through MLflow's API too; a failure to listen only loses that channel.
    if let Err(e) = super::mlflow::start(&state) {
        tracing::warn!("{}", e.message);
    }
    Ok(h)
}

fn default_workers() -> usize {
    crate::config::workers()
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1)
}

impl JobHost {
    fn start(state: &Path) -> LabResult<JobHost> {
        let dir = hosts_dir(state);
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::error::io_err("jobs", "cannot create", &dir, &e))?;
        let nanos = crate::modules::gpu::ledger_seed() % 1_000_000_000;
        let id = format!("{}-{}-{nanos}", hostname(), std::process::id());
        let p = dir.join(format!("{id}.lock"));
        let mut f =
            File::create(&p).map_err(|e| crate::error::io_err("jobs", "cannot create", &p, &e))?;
        f.lock()
            .map_err(|e| crate::error::io_err("jobs", "cannot lock", &p, &e))?;
        // How to find this host's jobs' processes should it die (containment chosen here).
        contain::write_host_info(&mut f)
            .map_err(|e| crate::error::io_err("jobs", "cannot write", &p, &e))?;
        crate::runtime::on_hard_exit(contain::kill_all_now);
        crate::runtime::on_hard_exit(kill_supervised);
        crate::store::with(state, |s| s.no_autocheckpoint())?;
        let orphans = recover_orphans(state, &id)?;
        contain::sweep_dead_groups();
        // Checkpoints fsync; a worker that did one would stall every job behind it.
        let ckpt = Store::open(state)?;
        std::thread::Builder::new()
            .name("labhost-ckpt".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                let _one = CHECKPOINTING.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = ckpt.checkpoint() {
                    tracing::debug!("checkpoint: {}", e.message);
                }
            })
            .map_err(|e| LabError::new("jobs", format!("cannot start a thread: {e}")))?;
        if !orphans.is_empty() {
            tracing::info!(
                "re-queued {} job(s) whose host had died: {:?}",
                orphans.len(),
                orphans
            );
        }
        Ok(JobHost {
            state: state.to_path_buf(),
            _lock: f,
            workers: AtomicUsize::new(default_workers()),
            running: AtomicUsize::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            cancels: Mutex::new(HashMap::new()),
            ahead: Mutex::new(Default::default()),
            unleased: Mutex::new(Default::default()),
            secret_env: Mutex::new(HashMap::new()),
            experiments: Mutex::new(HashMap::new()),
            supervisor: Arc::new(super::shim::Handle::new(&id, state)),
            kept: Mutex::new(Vec::new()),
            id,
        })
    }

    /// Runs `f` on this process's connection to the state database.
    fn store<T>(&self, f: impl FnOnce(&mut Store) -> LabResult<T>) -> LabResult<T> {
        crate::store::with(&self.state, f)
    }

    /// Runs up to `n` jobs at once from now; fewer than before takes back the jobs handed
    /// over to start next in a slot (they go back to the queue).
    pub fn set_workers(&self, n: usize) {
        let n = n.max(1);
        if n < self.workers.swap(n, Ordering::SeqCst) {
            let ahead: Vec<i64> = {
                let ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
                ahead.iter().copied().collect()
            };
            for id in ahead {
                self.take_back(id);
            }
        }
        self.wake.notify_one();
    }

    /// Takes back job `id`, handed over to start next in its slot: cancelled before it
    /// starts, it goes back to the queue with its attempt not counted (see `record`).
    fn take_back(&self, id: i64) {
        self.unleased
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.kill(id);
    }

    /// A worker may take on another job (see [`JobHost::record`]).
    fn goes_on(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
            && store_failure().is_none()
            && self.running.load(Ordering::SeqCst) <= self.workers.load(Ordering::SeqCst)
    }

    /// Records a run (masked spec) and keeps its real env in memory; the lock spans both so
    /// the scheduler never runs the job without it.
    pub fn create(
        &self,
        n: &NewRun,
        secret_env: Option<std::collections::BTreeMap<String, String>>,
    ) -> LabResult<Run> {
        let mut out = self.create_many(vec![(n.clone(), secret_env)])?;
        Ok(out.remove(0))
    }

    /// `create` for many runs, in one transaction.
    pub fn create_many(
        &self,
        runs: Vec<(NewRun, Option<std::collections::BTreeMap<String, String>>)>,
    ) -> LabResult<Vec<Run>> {
        let mut secrets = self.secret_env.lock().unwrap_or_else(|e| e.into_inner());
        let (news, envs): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .map(|(n, env)| {
                (
                    NewRun {
                        owner: Some(self.id.clone()),
                        ..n
                    },
                    env,
                )
            })
            .unzip();
        // Small transactions, so running jobs never wait long for the connection.
        let mut created = Vec::with_capacity(news.len());
        for chunk in news.chunks(128) {
            created.extend(self.store(|s| s.insert_many(chunk))?);
        }
        let mut out = Vec::with_capacity(created.len());
        let mut fresh = Vec::new();
        for ((run, created), env) in created.into_iter().zip(envs) {
            if let Some(env) = env {
                if created || !run.status.is_finished() {
                    secrets.insert(run.id, env);
                }
            }
            if created {
                fresh.push(out.len());
            }
            out.push(run);
        }
        // The jobs may start now (their secrets are in place): the host makes a folder it
        // finds missing, so the first jobs run while the rest of the folders are made.
        drop(secrets);
        self.poke();
        for i in fresh {
            crate::store::ensure_run_dir(&out[i])?;
        }
        Ok(out)
    }

    /// Wakes the scheduler (after a submit).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Cancels a job with `reason`: a queued one at once; a running one is stopped (all of
    /// its processes) by the host that runs it, this one at once, which then records
    /// `cancelled`. Returns the status right after the request (see [`Store::cancel`]).
    pub fn cancel(&self, id: i64, reason: &str) -> LabResult<RunStatus> {
        let status = self.store(|s| s.cancel(id, reason))?;
        self.kill(id);
        Ok(status)
    }

    /// Fires the cancel token of a job this host runs (it kills the process group).
    fn kill(&self, id: i64) {
        if let Some(t) = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            t.cancel();
        }
    }

    /// Stops the running jobs of this host whose cancel another process asked for.
    fn look_for_cancels(&self) {
        if self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return;
        }
        if let Ok(ids) = self.store(|s| s.cancel_requests(&self.id)) {
            for id in ids {
                self.kill(id);
            }
        }
    }

    async fn schedule(self: Arc<Self>) {
        let mut last_orphan_check = std::time::Instant::now();
        let mut last_cancel_check = std::time::Instant::now();
        loop {
            if last_cancel_check.elapsed() >= Duration::from_millis(250) {
                last_cancel_check = std::time::Instant::now();
                self.look_for_cancels();
            }
            // Another host may die while running jobs this one waits for: look every second
            // (not once the store refused a write: each look would wait on it again).
            if last_orphan_check.elapsed() >= Duration::from_secs(1) && store_failure().is_none() {
                last_orphan_check = std::time::Instant::now();
                contain::reap_adopted();
                let (state, id) = (self.state.clone(), self.id.clone());
                match tokio::task::spawn_blocking(move || recover_orphans(&state, &id)).await {
                    Ok(Ok(ids)) if !ids.is_empty() => {
                        tracing::info!("re-queued job(s) {ids:?}: their host died")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        // Said once: the same failure comes back every second.
                        static SAID: std::sync::atomic::AtomicBool =
                            std::sync::atomic::AtomicBool::new(false);
                        if !SAID.swap(true, Ordering::SeqCst) {
                            tracing::warn!(
                                "job host: looking for jobs of dead hosts: {}",
                                e.message
                            )
                        }
                    }
                    Err(e) => tracing::warn!("job host: {e}"),
                }
            }
            let stopping = self.stopping.load(Ordering::SeqCst);
            if !stopping
                && store_failure().is_none()
                && self.running.load(Ordering::SeqCst) < self.workers.load(Ordering::SeqCst)
            {
                if let Ok(Some(run)) = self
                    .write("claiming a job", |s| s.claim_next(&self.id))
                    .await
                {
                    self.running.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(self.clone().work(run));
                    continue;
                }
            }
            // Woken by submits and job ends; the tick covers retries coming due and other hosts.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// A worker: runs its job, then claims the next itself while its slot is still within
    /// `workers` (no round trip to the scheduler). After a job that ran shorter than
    /// [`AHEAD_BELOW`], the next is claimed and handed to the supervisor while the current one
    /// runs: it starts there the moment the current one ends.
    async fn work(self: Arc<Self>, run: Run) {
        let mut cur = Slotted { run, handed: None };
        let mut ahead: Option<Slotted> = None;
        let mut short = false;
        loop {
            let began = std::time::Instant::now();
            let outcome = self.execute(&mut cur, &mut ahead, short).await;
            short = began.elapsed() < AHEAD_BELOW;
            let claim_ahead = ahead.is_none() || short;
            let claimed = self.record(&cur.run, outcome, claim_ahead).await;
            cur = match (ahead.take(), claimed) {
                (Some(a), claimed) => {
                    if let Some(n) = claimed {
                        ahead = self.hand_ahead(n, a.run.id).await;
                    }
                    a
                }
                (None, Some(n)) => Slotted {
                    run: n,
                    handed: None,
                },
                (None, None) => break,
            };
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Hands `run` to the supervisor, to start when job `after` ends (at once without); a
    /// container's launch comes back (it runs from this process).
    fn hand(&self, run: &Run, after: Option<i64>) -> LabResult<Handing> {
        let launch = self.prepare(run)?;
        if launch.docker.is_some() {
            return Ok(Handing::Container(Box::new(launch)));
        }
        let token = CancellationToken::new();
        let id = run.id;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, token.clone());
        match self
            .supervisor
            .launch(launch, run.spec.num_gpus as usize, after)
        {
            Ok(news) => Ok(Handing::Supervised(Handed { news, token })),
            Err(e) => {
                self.cancels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Err(e)
            }
        }
    }

    /// A job claimed to run next in a slot, handed over to start when job `after` ends. One
    /// that cannot be (a container, or a launch that fails: it is claimed again in its turn)
    /// goes back to the queue.
    async fn hand_ahead(&self, run: Run, after: i64) -> Option<Slotted> {
        if let Ok(Handing::Supervised(h)) = self.hand(&run, Some(after)) {
            self.ahead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(run.id);
            // Fewer workers or an exit since the claim (`set_workers` and `finish` take back
            // only what they find handed over): taken back at once.
            if !self.goes_on() {
                self.take_back(run.id);
            }
            return Some(Slotted {
                run,
                handed: Some(h),
            });
        }
        let why = "not started: claimed again in its turn";
        let _ = self
            .write("a job", |s| s.unclaim(run.id, &self.id, why))
            .await;
        None
    }

    /// Records how a job's attempt ended (back to the queue when it was stopped because this
    /// host exits or lost with its supervisor) and claims the next job. An end the store
    /// refuses is kept (see [`JobHost::keep`]).
    /// With `claim` false, the next job is not claimed (one is already waiting in the slot).
    async fn record(
        &self,
        run: &Run,
        outcome: LabResult<supervisor::AttemptEnd>,
        claim: bool,
    ) -> Option<Run> {
        let id = run.id;
        let unleased = self
            .unleased
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let died = matches!(&outcome, Err(e) if e.kind == super::shim::DIED);
        let end = outcome.unwrap_or_else(|e| {
            tracing::error!("job {id}: {}", e.message);
            supervisor::AttemptEnd {
                status: RunStatus::Failed,
                exit_code: None,
                error: Some(e.message),
                start: None,
            }
        });
        let what = format!("job {id}");
        let stopping = self.stopping.load(Ordering::SeqCst);
        if died || ((stopping || unleased) && end.status == RunStatus::Cancelled) {
            // Back to the queue, unless a cancel was asked for (it then is cancelled).
            let why = if died {
                "its job supervisor died"
            } else if stopping {
                "stopped: its host exited"
            } else {
                "not started: its host runs fewer jobs at once now"
            };
            // One that waited next in its slot and never started gets its attempt back.
            let never_started = !died && end.start.is_none() && end.exit_code.is_none();
            let _ = self
                .write(&what, |s| {
                    if never_started && s.unclaim(id, &self.id, why)? {
                        return Ok(());
                    }
                    s.requeue(&[(id, self.id.clone())], why).map(drop)
                })
                .await;
            self.supervisor.recorded(id);
            announce_end();
            if died && !stopping {
                self.wake.notify_one();
            }
            return None;
        }
        let go_on = claim && self.goes_on();
        let recorded = self
            .write(&what, |s| {
                s.finish_and_claim(
                    id,
                    end.start.as_ref(),
                    end.status,
                    end.exit_code,
                    end.error.as_deref(),
                    go_on.then_some(self.id.as_str()),
                )
            })
            .await;
        if recorded.is_ok() {
            // Acknowledged before anyone waiting for the end is woken: a script that then
            // exits closes the supervisor's socket, and an end it never acknowledged is
            // recorded by the supervisor again (its points read again, deleted first).
            self.supervisor.recorded(id);
        }
        announce_end();
        match recorded {
            Ok((st, next)) => {
                if st.is_finished() {
                    // No retry left: the real secret values are not needed again.
                    self.secret_env
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                }
                next
            }
            Err(_) => {
                self.keep(run, end);
                None
            }
        }
    }

    /// Runs `f` on the store; a failure of the database itself (a lock held past the busy
    /// timeout, a full disk) is tried again with back-off a few times, then stops this host
    /// taking work (said once: [`store_failure`]) and is returned.
    async fn write<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Store) -> LabResult<T>,
    ) -> LabResult<T> {
        let mut delay = Duration::from_millis(100);
        // Once one write failed for good, the next ones are tried once.
        let retries = if store_failure().is_some() {
            0
        } else {
            STORE_RETRIES
        };
        for _ in 0..retries {
            match self.store(&mut f) {
                Err(e) if e.kind == STORE_ERROR => {
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
                other => return other,
            }
        }
        let r = self.store(&mut f);
        if let Err(e) = &r {
            if e.kind == STORE_ERROR {
                fail_store(what, e);
            }
        }
        r
    }

    /// Keeps an end the store refused: recorded as soon as it can be, else written into the
    /// run folder when this host exits (`end-<attempt>.json`), where the next labhost finds
    /// it — a job that finished is never run again.
    fn keep(&self, run: &Run, end: supervisor::AttemptEnd) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(KeptEnd {
                id: run.id,
                attempt: run.attempt,
                run_dir: PathBuf::from(&run.run_dir),
                end,
            });
    }

    /// Records the ends kept so far, if the store takes them now.
    fn record_kept(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.is_empty() {
            return;
        }
        let mut refused = false;
        kept.retain(|k| {
            if refused {
                return true;
            }
            let e = &k.end;
            let r = self.store(|s| {
                s.finish_attempt(
                    k.id,
                    k.attempt,
                    &self.id,
                    e.start.as_ref(),
                    e.status,
                    e.exit_code,
                    e.error.as_deref(),
                )
            });
            refused = r.is_err();
            refused
        });
    }

    /// Writes the ends still kept into their run folders (this host exits).
    fn leave_kept(&self) {
        self.record_kept();
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        if kept.is_empty() {
            return;
        }
        let mut ids = Vec::new();
        for k in &kept {
            let p = end_marker(&k.run_dir, k.attempt);
            let body = serde_json::to_vec(&k.end).unwrap_or_default();
            let tmp = p.with_extension("json.tmp");
            let written = std::fs::write(&tmp, &body).and_then(|_| std::fs::rename(&tmp, &p));
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            match written {
                Ok(()) => ids.push(k.id.to_string()),
                Err(e) => eprintln!(
                    "job {}: its end ({}) could be written neither to the state database nor to {} ({e}); its job supervisor keeps it and records it once the store takes writes again",
                    k.id,
                    k.end.status,
                    p.display()
                ),
            }
        }
        if !ids.is_empty() {
            eprintln!(
                "the ends of job(s) {} could not be recorded: kept in their run folders (end-<attempt>.json), the next labhost records them",
                ids.join(", ")
            );
        }
    }

    /// Runs the slot's current job to its end; the caller records the outcome. After a
    /// `short` job, with none waiting in the slot, the next is claimed and handed over first.
    async fn execute(
        &self,
        cur: &mut Slotted,
        ahead: &mut Option<Slotted>,
        short: bool,
    ) -> LabResult<supervisor::AttemptEnd> {
        let run = &cur.run;
        let handed = match cur.handed.take() {
            Some(h) => {
                self.ahead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&run.id);
                h
            }
            None => match self.hand(run, None)? {
                Handing::Supervised(h) => h,
                Handing::Container(launch) => return self.in_container(run, *launch).await,
            },
        };
        if short && ahead.is_none() && self.goes_on() {
            if let Ok(Some(n)) = self
                .write("claiming a job", |s| s.claim_next(&self.id))
                .await
            {
                *ahead = self.hand_ahead(n, run.id).await;
            }
        }
        let result = self.supervised(run, handed, ahead).await;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run.id);
        result
    }

    /// The launch of a claimed job: its command, real environment, masks and MLflow
    /// variables.
    fn prepare(&self, run: &Run) -> LabResult<supervisor::Launch> {
        // Made by the submitter; a submitter that died right after its commit left none.
        if !Path::new(&run.run_dir).join("stderr.log").exists() {
            crate::store::ensure_run_dir(run)?;
        }
        let mut launch = supervisor::launch_for(run)?;
        if let Some(real) = self
            .secret_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run.id)
        {
            launch.env = real.clone();
        }
        // Every secret this process knows (those read with `secrets::get`, which is how one
        // reaches a job's `env`) is masked in the job's logs as it writes them.
        launch.secrets = crate::redact::registered();
        let experiment = match run.experiment_id {
            Some(e) => {
                let known = self
                    .experiments
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&e)
                    .cloned();
                match known {
                    Some(n) => Some(n),
                    None => self.store(|s| s.experiment(e)).ok().map(|x| {
                        self.experiments
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(e, x.name.clone());
                        x.name
                    }),
                }
            }
            None => None,
        };
        super::mlflow::job_env(run, experiment.as_deref(), &mut launch.env);
        Ok(launch)
    }

    /// Runs a container job from here (the Docker daemon is its parent), with its GPUs
    /// leased from the ledger until the process ends.
    async fn in_container(
        &self,
        run: &Run,
        mut launch: supervisor::Launch,
    ) -> LabResult<supervisor::AttemptEnd> {
        let token = CancellationToken::new();
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.id, token.clone());
        let out = async {
            let lease = supervisor::lease_gpus(run.id, run.spec.num_gpus as usize, &token).await?;
            if let Some(lease) = &lease {
                launch.env.extend(lease.env());
                launch.keep_fds = lease.fds();
            }
            let mut started = |st: &Started| {
                if let Err(e) = self.store(|s| s.set_running(run.id, st)) {
                    tracing::error!("job {}: {}", run.id, e.message);
                }
            };
            let mut metrics = |b: Vec<Metric>| {
                if let Err(e) = self.store(|s| s.add_file_metrics(run.id, &b)) {
                    tracing::error!("job {}: {}", run.id, e.message);
                }
            };
            let out = supervisor::run(&launch, &mut started, &mut metrics, token.clone()).await;
            drop(lease);
            out
        }
        .await;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run.id);
        out
    }

    /// Follows a process job in the supervisor's hands: records its start and metrics as
    /// they come; a cancel is passed on and the job's end awaited. The job waiting next in
    /// the slot (`ahead`) is followed too: its cancel is passed on, so it never starts, and
    /// its end (it was cancelled) recorded at once, not when its turn comes.
    async fn supervised(
        &self,
        run: &Run,
        handed: Handed,
        ahead: &mut Option<Slotted>,
    ) -> LabResult<supervisor::AttemptEnd> {
        let Handed { mut news, token } = handed;
        let (mut cancel_sent, mut next_cancel_sent, mut next_lost) = (false, false, false);
        loop {
            let next = ahead
                .as_mut()
                .and_then(|a| Some((a.run.id, a.handed.as_mut()?)));
            let (next_id, next_news, next_token) = match next {
                Some((id, h)) => (id, Some(&mut h.news), h.token.clone()),
                None => (0, None, CancellationToken::new()),
            };
            let open = next_news.is_some() && !next_lost;
            let next_news = async {
                match next_news {
                    Some(n) => n.recv().await,
                    None => std::future::pending().await,
                }
            };
            // Biased: a cancel of the job waiting next goes out before one of the current job
            // (whose end would start it).
            tokio::select! {
                biased;
                _ = next_token.cancelled(), if open && !next_cancel_sent => {
                    next_cancel_sent = true;
                    self.supervisor.cancel(next_id);
                }
                n = news.recv() => {
                    if let Some(end) = self.follow(run.id, n).await {
                        return end;
                    }
                }
                n = next_news, if open => match self.follow(next_id, n).await {
                    Some(Ok(end)) => {
                        let a = ahead.take().expect("followed above");
                        self.ahead.lock().unwrap_or_else(|e| e.into_inner()).remove(&next_id);
                        self.cancels.lock().unwrap_or_else(|e| e.into_inner()).remove(&next_id);
                        // Recorded with no claim: the slot goes on with the current job.
                        let _ = self.record(&a.run, Ok(end), false).await;
                    }
                    // The supervisor died: the current job's news say so too.
                    Some(Err(_)) => next_lost = true,
                    None => {}
                },
                _ = token.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    self.supervisor.cancel(run.id);
                }
            }
        }
    }

    /// What a news of job `id` means: a start or points are recorded (`None`); an end, or
    /// the supervisor's death (its channel closed), is returned.
    async fn follow(
        &self,
        id: i64,
        news: Option<super::shim::News>,
    ) -> Option<LabResult<supervisor::AttemptEnd>> {
        use super::shim::News;
        let what = format!("job {id}");
        match news {
            // A refused write stops this host taking work (said once, by `write`).
            Some(News::Started { started: st, .. }) => {
                let _ = self.write(&what, |s| s.set_running(id, &st)).await;
                None
            }
            Some(News::Metrics { points, .. }) => {
                let _ = self.write(&what, |s| s.add_file_metrics(id, &points)).await;
                None
            }
            Some(News::Ended { end, .. }) => {
                Some(end.map_err(|(kind, message)| LabError::new(kind, message)))
            }
            Some(News::Log { .. }) => None,
            None => Some(Err(LabError::new(
                super::shim::DIED,
                format!("job {id}: its job supervisor died"),
            ))),
        }
    }
}

/// A job that runs in a worker's slot: handed to the supervisor, or (`None`) launched when
/// its turn comes.
struct Slotted {
    run: Run,
    handed: Option<Handed>,
}

/// A job handed to the supervisor, or the launch of a container (it runs from the host).
enum Handing {
    Supervised(Handed),
    Container(Box<supervisor::Launch>),
}

/// A job in the supervisor's hands: its news, and its cancel token (in `cancels`).
struct Handed {
    news: tokio::sync::mpsc::UnboundedReceiver<super::shim::News>,
    token: CancellationToken,
}

/// A worker claims its slot's next job while the current one runs only after a job that ran
/// shorter than this: a chain of short jobs loses no time between them, while a long job
/// keeps at most one job waiting behind it that another slot or host could have run.
const AHEAD_BELOW: Duration = Duration::from_secs(1);

/// A second Ctrl-C: the supervisor SIGKILLs this host's jobs and exits with it.
fn kill_supervised() {
    if let Some(h) = HOST.get() {
        h.supervisor.kill_all();
    }
}

fn hostname() -> String {
    crate::util::hostname_or_local()
}

/// Stops what is left of the attempts of hosts that died (their cgroups, process groups and
/// token carriers), then puts those runs back in the queue; a run whose cancel was asked
/// for is cancelled instead. Returns the ids re-queued.
pub fn recover_orphans(state: &Path, me: &str) -> LabResult<Vec<i64>> {
    // A host whose job supervisor lives is alive for its running jobs (the supervisor
    // records them), not for its queued ones (it starts nothing new).
    let orphans = crate::store::with(state, |s| {
        s.orphans(&|h| h == me || job_host_alive(state, h), &|h| {
            h == me || job_host_alive(state, h) || super::shim::supervisor_alive(state, h)
        })
    })?;
    let mut back = Vec::new();
    for r in orphans {
        let host = r.host.clone().unwrap_or_default();
        if record_left_end(state, &r, &host)? {
            continue;
        }
        let found = contain::stop_orphan(&contain::Orphan {
            host: &host,
            job: r.id,
            attempt: r.attempt,
            pid: r.pid.filter(|p| *p > 0),
            leader_start: r.leader_start,
            cgroup: r.cgroup.as_deref(),
            host_file: hosts_dir(state).join(format!("{host}.lock")),
        });
        if found > 0 {
            tracing::info!(
                "job {}: stopped {found} process(es) left by its dead host {host}",
                r.id
            );
        }
        back.extend(crate::store::with(state, |s| {
            s.requeue(&[(r.id, host.clone())], &format!("host {host} died"))
        })?);
    }
    Ok(back)
}

/// Runs whose host died while its job supervisor lives on: it records their ends (no
/// labhost needs to re-run them; `labhost resume` waits for them).
pub fn carried_on(state: &Path) -> LabResult<Vec<i64>> {
    let mut out = Vec::new();
    for st in [RunStatus::Running, RunStatus::Leased] {
        let runs = crate::store::with(state, |s| s.list(Some(st), None, i64::MAX as usize))?;
        for r in runs {
            use crate::store::RunKind;
            if matches!(r.kind, RunKind::Sweep | RunKind::Cron | RunKind::Remote) {
                continue;
            }
            let Some(h) = r.host.as_deref() else { continue };
            if !job_host_alive(state, h) && super::shim::supervisor_alive(state, h) {
                out.push(r.id);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The end a dead host left in the run folder because the store refused it (see
/// [`JobHost::keep`]): recorded now, so a job that finished is not run again. Returns whether
/// there was one.
fn record_left_end(state: &Path, r: &Run, host: &str) -> LabResult<bool> {
    let p = end_marker(Path::new(&r.run_dir), r.attempt);
    let Ok(body) = std::fs::read(&p) else {
        return Ok(false);
    };
    let Ok(end) = serde_json::from_slice::<supervisor::AttemptEnd>(&body) else {
        tracing::warn!("{}: not an attempt's end: ignored", p.display());
        return Ok(false);
    };
    crate::store::with(state, |s| {
        s.finish_attempt(
            r.id,
            r.attempt,
            host,
            end.start.as_ref(),
            end.status,
            end.exit_code,
            end.error.as_deref(),
        )
    })?;
    tracing::info!(
        "job {}: recorded the end its host {host} left in {}",
        r.id,
        p.display()
    );
    let _ = std::fs::remove_file(&p);
    Ok(true)
}

/// How a host ends: let its jobs finish, or stop them and put them back in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtExit {
    /// Wait for every job this process submitted or runs (Ctrl-C turns it into `Stop`).
    Wait,
    /// Stop the running ones (all of their processes) and put them back in the queue.
    Stop,
}

/// Called when a script (or a command that ran jobs) ends: no job of this host is left with
/// processes and no host. Says on stderr what it does. Returns the jobs it put back.
pub fn at_exit(how: AtExit) -> Vec<i64> {
    let Some(h) = HOST.get() else {
        return Vec::new();
    };
    let stopped = h.finish(how);
    h.supervisor.close();
    h.leave_kept();
    contain::release_slots();
    let _one = CHECKPOINTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = crate::store::with(&h.state, |s| s.checkpoint_truncate()) {
        tracing::debug!("final checkpoint: {}", e.message);
    }
    stopped
}

impl JobHost {
    fn finish(&self, how: AtExit) -> Vec<i64> {
        let cancel = &crate::runtime::ctx().cancel;
        if how == AtExit::Wait {
            let mut said = false;
            loop {
                let seen = ended_count();
                self.poke();
                let n = self.store(|s| s.pending_for(&self.id)).unwrap_or(0);
                if n == 0 {
                    return Vec::new();
                }
                if !said {
                    eprintln!(
                        "waiting for {n} job(s) this script started (Ctrl-C stops them and puts them back in the queue for `labhost resume`)"
                    );
                    said = true;
                }
                if cancel.is_cancelled() || store_failure().is_some() {
                    // Ctrl-C while waiting, or the store refuses writes: stop them.
                    break;
                }
                wait_for_end(seen, Duration::from_millis(100));
            }
        }
        self.stopping.store(true, Ordering::SeqCst);
        let ids: Vec<i64> = {
            let c = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
            // The jobs waiting next in a slot first: each is taken back before the job it
            // waits for ends (which would start it). They never started: put back, not
            // stopped.
            let ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
            for (id, t) in c.iter() {
                if ahead.contains(id) {
                    t.cancel();
                }
            }
            for t in c.values() {
                t.cancel();
            }
            let mut ids: Vec<i64> = c.keys().filter(|i| !ahead.contains(i)).copied().collect();
            ids.sort_unstable();
            ids
        };
        while self.running.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let queued = self.store(|s| s.pending_for(&self.id)).unwrap_or(0);
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            eprintln!(
                "stopped job(s) {} and put them back in the queue{}: `labhost resume` runs them",
                list.join(", "),
                match queued.saturating_sub(ids.len() as i64) {
                    0 => String::new(),
                    n => format!(", beside {n} other queued job(s)"),
                }
            );
        } else if queued > 0 {
            eprintln!("{queued} job(s) stay queued: `labhost resume` runs them");
        }
        ids
    }
}
