//! The GPU reservation ledger: crash-proof and race-free across processes.
//!
//! Files under `<state>/gpu/` (never deleted; holding a lock is what counts):
//! - `<uuid>.0.lock` — the device lock. An exclusive job (`slots_per_gpu: 1`) holds it
//!   `LOCK_EX`; a sharing job holds it `LOCK_SH`, so exclusive and shared users exclude each
//!   other by the kernel's own rules.
//! - `<uuid>.<s>.lock`, s = 1..=k — sharing slots, held `LOCK_EX` by sharing jobs.
//! - `.queue.lock` — waiters line up on it (blocking `flock`, woken by the kernel), so
//!   requests are served roughly first come, first served and only the head polls.
//!
//! The kernel drops a `flock` when its holder dies, so a `kill -9` frees the slot at once.
//! The file a job holds `LOCK_EX` contains a JSON line about the holder (pid, job, since)
//! for `labhost gpus`; it is trusted only while the lock is held.
//!
//! The head of the queue waits on inotify close events in the folder (a release or a dying
//! holder closes its lock file), with a 50 ms fallback tick for changes that make no file
//! event (NVML memory and load, the grace period running out).
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::lease::LeaseInner;
pub use super::lease::{DeviceRequest, Lease, LeasedDevice};
use super::probe::GpuProbe;
use super::select::{reject_reason, select, LedgerView, SelectOpts};
use super::watch::Watch;
use super::{Device, Snapshot};
use crate::error::{LabError, LabResult};

/// Default time after a job starts on a device before its NVML memory reading is trusted.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Fallback re-check interval while waiting (the bound: at most 50 ms).
pub const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HolderInfo {
    pub pid: u32,
    /// `LABHOST_JOB_ID` of the holder, or the `holder` label it gave.
    #[serde(default)]
    pub job: String,
    /// Unix seconds when the slot was taken.
    pub since: f64,
    /// The holder's `slots_per_gpu`.
    pub slots: u32,
}

/// A held slot as `labhost gpus` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Holder {
    pub uuid: String,
    pub slot: u32,
    #[serde(flatten)]
    pub info: HolderInfo,
}

#[derive(Debug, Clone)]
pub struct ReserveOpts {
    pub select: SelectOpts,
    /// Jobs that may share one device (1 = exclusive).
    pub slots_per_gpu: u32,
    /// Wait until the request can be met (default) or fail at once.
    pub wait: bool,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// Label stored with the reservation (defaults to `LABHOST_JOB_ID`).
    pub holder: Option<String>,
}

impl Default for ReserveOpts {
    fn default() -> Self {
        ReserveOpts {
            select: SelectOpts::default(),
            slots_per_gpu: 1,
            wait: true,
            timeout: None,
            grace: grace_from_env(),
            holder: None,
        }
    }
}

/// `LABHOST_GPU_GRACE` (e.g. `30s`) overrides the default grace period.
pub fn grace_from_env() -> Duration {
    crate::config::gpu_grace().unwrap_or(DEFAULT_GRACE)
}

pub struct Ledger {
    dir: PathBuf,
    probe: &'static dyn GpuProbe,
}

enum Held {
    Free,
    Shared,
    Exclusive,
}

fn probe(f: &File) -> Held {
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            match f.try_lock() {
                Ok(()) => {
                    let _ = f.unlock();
                    Held::Free
                }
                Err(_) => Held::Shared,
            }
        }
        Err(_) => Held::Exclusive,
    }
}

fn unix_now() -> f64 {
    crate::clock::unix()
}

fn ledger_err(what: &str, p: &Path, e: std::io::Error) -> LabError {
    LabError::new("gpu.ledger", format!("{what} '{}': {e}", p.display()))
}

/// Open lock files kept across attempts, so the waiting head makes no close events of its own.
#[derive(Default)]
struct Handles {
    files: HashMap<PathBuf, File>,
}

impl Handles {
    fn get(&mut self, p: &Path) -> LabResult<&File> {
        if !self.files.contains_key(p) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|e| ledger_err("cannot open lock file", p, e))?;
            self.files.insert(p.to_path_buf(), f);
        }
        Ok(&self.files[p])
    }

    fn take(&mut self, p: &Path) -> Option<File> {
        self.files.remove(p)
    }
}

impl Ledger {
    /// The ledger in this process's state dir.
    pub fn open() -> LabResult<Ledger> {
        Ledger::at(crate::state::dir()?.join("gpu"), super::probe::current())
    }

    /// A ledger in `dir` that judges devices by `probe`'s snapshots.
    pub fn at(dir: PathBuf, probe: &'static dyn GpuProbe) -> LabResult<Ledger> {
        std::fs::create_dir_all(&dir).map_err(|e| ledger_err("cannot create", &dir, e))?;
        Ok(Ledger { dir, probe })
    }

    fn path(&self, uuid: &str, slot: u32) -> PathBuf {
        self.dir.join(format!("{uuid}.{slot}.lock"))
    }

    fn read_info(p: &Path) -> Option<HolderInfo> {
        let text = std::fs::read_to_string(p).ok()?;
        serde_json::from_str(text.lines().next()?).ok()
    }

    /// Every slot held right now, with who holds it.
    pub fn holders(&self) -> Vec<Holder> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".lock") else {
                continue;
            };
            let Some((uuid, slot)) = stem.rsplit_once('.') else {
                continue;
            };
            let Ok(slot) = slot.parse::<u32>() else {
                continue;
            };
            let Ok(f) = File::open(e.path()) else {
                continue;
            };
            if let Held::Exclusive = probe(&f) {
                if let Some(info) = Ledger::read_info(&e.path()) {
                    out.push(Holder {
                        uuid: uuid.to_string(),
                        slot,
                        info,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.uuid.as_str(), a.slot).cmp(&(b.uuid.as_str(), b.slot)));
        out
    }

    /// Which devices are full or were taken within `grace`, for a request of `k` slots.
    fn view(
        &self,
        s: &Snapshot,
        k: u32,
        grace: Duration,
        h: &mut Handles,
    ) -> LabResult<LedgerView> {
        let mut v = LedgerView::default();
        let now = unix_now();
        let young =
            |p: &Path| Ledger::read_info(p).is_some_and(|i| now - i.since < grace.as_secs_f64());
        for d in &s.devices {
            let p0 = self.path(&d.uuid, 0);
            let dev = probe(h.get(&p0)?);
            let full = match (dev, k) {
                (Held::Exclusive, _) => {
                    if young(&p0) {
                        v.young.insert(d.uuid.clone());
                    }
                    true
                }
                (Held::Free, _) => false,
                (Held::Shared, 1) => true,
                (Held::Shared, _) => {
                    let mut held = 0;
                    for slot in 1..=k {
                        let p = self.path(&d.uuid, slot);
                        if let Held::Exclusive = probe(h.get(&p)?) {
                            held += 1;
                            if young(&p) {
                                v.young.insert(d.uuid.clone());
                            }
                        }
                    }
                    held >= k
                }
            };
            if full {
                v.full.insert(d.uuid.clone());
            }
        }
        Ok(v)
    }

    fn write_info(p: &Path, info: &HolderInfo) {
        if let Ok(mut f) = OpenOptions::new().write(true).truncate(true).open(p) {
            let _ = writeln!(f, "{}", serde_json::to_string(info).unwrap_or_default());
        }
    }

    /// Takes one device: returns the files now held, or None if someone was faster.
    fn take_device(
        &self,
        d: &Device,
        k: u32,
        info: &HolderInfo,
        h: &mut Handles,
    ) -> LabResult<Option<(u32, Vec<File>)>> {
        let p0 = self.path(&d.uuid, 0);
        if k == 1 {
            if h.get(&p0)?.try_lock().is_err() {
                return Ok(None);
            }
            let f = h.take(&p0).expect("just opened");
            Ledger::write_info(&p0, info);
            return Ok(Some((0, vec![f])));
        }
        if h.get(&p0)?.try_lock_shared().is_err() {
            return Ok(None);
        }
        for slot in 1..=k {
            let p = self.path(&d.uuid, slot);
            match h.get(&p)?.try_lock() {
                Ok(()) => {
                    let dev = h.take(&p0).expect("just opened");
                    let f = h.take(&p).expect("just opened");
                    Ledger::write_info(&p, info);
                    return Ok(Some((slot, vec![dev, f])));
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(ledger_err("cannot lock", &p, e)),
            }
        }
        let _ = h.get(&p0)?.unlock();
        Ok(None)
    }

    /// One attempt: all `n` devices or none.
    fn try_once(
        &self,
        n: usize,
        o: &ReserveOpts,
        h: &mut Handles,
    ) -> LabResult<Result<Lease, String>> {
        let snap = self.probe.snapshot();
        if let Some(e) = &snap.error {
            return Err(LabError::new("gpu.unavailable", format!("no GPUs: {e}")));
        }
        let possible = snap
            .devices
            .iter()
            .filter(|d| {
                !o.select
                    .exclude
                    .iter()
                    .any(|x| *x == d.index.to_string() || *x == d.uuid)
            })
            .count();
        if n > possible {
            return Err(LabError::new(
                "gpu.unsatisfiable",
                format!("{n} GPU(s) requested but this machine has {possible} that may be used ({} in all)", snap.devices.len()),
            ));
        }
        let view = self.view(&snap, o.slots_per_gpu, o.grace, h)?;
        let sel = SelectOpts {
            limit: usize::MAX,
            ..o.select.clone()
        };
        let seed = u64::from(std::process::id()) ^ (unix_now() * 1e6) as u64;
        let candidates = select(&snap, &view, &sel, seed);
        let info = HolderInfo {
            pid: std::process::id(),
            job: o
                .holder
                .clone()
                .or_else(crate::config::job_id)
                .unwrap_or_default(),
            since: unix_now(),
            slots: o.slots_per_gpu,
        };
        let mut got: Vec<LeasedDevice> = Vec::new();
        let mut files = Vec::new();
        for idx in candidates {
            if got.len() == n {
                break;
            }
            let d = snap
                .devices
                .iter()
                .find(|d| d.index == idx)
                .expect("selected from snapshot");
            if let Some((slot, fs)) = self.take_device(d, o.slots_per_gpu, &info, h)? {
                got.push(LeasedDevice {
                    index: d.index,
                    uuid: d.uuid.clone(),
                    name: d.name.clone(),
                    slot,
                });
                files.extend(fs);
            }
        }
        if got.len() < n {
            drop(files); // all or nothing
            let why: Vec<String> = snap
                .devices
                .iter()
                .map(|d| {
                    let r = reject_reason(d, &view, &o.select).unwrap_or_else(|| "free".into());
                    format!(
                        "GPU{} {}: {r}",
                        d.index,
                        crate::util::format_bytes(d.memory_total)
                    )
                })
                .collect();
            return Ok(Err(why.join("; ")));
        }
        Ok(Ok(Lease {
            inner: Arc::new(LeaseInner {
                devices: got,
                files: Mutex::new(files),
            }),
        }))
    }

    /// Reserves `n` devices. Waits (FIFO across processes, event-driven) unless `wait` is
    /// false; `timeout` bounds the wait; cancellation returns `cancelled`.
    pub fn reserve(
        &self,
        n: usize,
        o: &ReserveOpts,
        cancel: &CancellationToken,
    ) -> LabResult<Lease> {
        if o.slots_per_gpu == 0 {
            return Err(LabError::new(
                "invalid_argument",
                "slots_per_gpu must be at least 1",
            ));
        }
        if n == 0 {
            return Ok(Lease {
                inner: Arc::new(LeaseInner {
                    devices: Vec::new(),
                    files: Mutex::new(Vec::new()),
                }),
            });
        }
        let started = Instant::now();
        let deadline = o.timeout.map(|t| started + t);
        let mut h = Handles::default();
        let what = |why: &str| {
            format!(
                "{n} GPU(s) (slots_per_gpu {}, max_load {}, max_memory {}{}): {why}",
                o.slots_per_gpu,
                o.select.max_load,
                o.select.max_memory,
                o.select
                    .min_free_memory
                    .map(|m| format!(", min_free_memory {}", crate::util::format_bytes(m)))
                    .unwrap_or_default()
            )
        };
        if !o.wait {
            return match self.try_once(n, o, &mut h)? {
                Ok(lease) => Ok(lease),
                Err(why) => Err(LabError::new(
                    "gpu.busy",
                    format!("cannot reserve {}", what(&why)),
                )),
            };
        }
        let _queue = self.join_queue(deadline, cancel)?;
        let mut watch = None;
        loop {
            let why = match self.try_once(n, o, &mut h)? {
                Ok(lease) => return Ok(lease),
                Err(why) => why,
            };
            if cancel.is_cancelled() {
                return Err(LabError::cancelled());
            }
            let mut wait = TICK;
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Err(LabError::new(
                        "gpu.timeout",
                        format!(
                            "waited {:.1}s for {}",
                            started.elapsed().as_secs_f64(),
                            what(&why)
                        ),
                    ));
                }
                wait = wait.min(d - now);
            }
            watch
                .get_or_insert_with(|| Watch::shared(&self.dir))
                .wait(wait);
        }
    }

    /// Waits for our turn: a blocking `flock` on `.queue.lock` in a helper thread (the kernel
    /// wakes it), while this thread watches the deadline and cancellation.
    fn join_queue(&self, deadline: Option<Instant>, cancel: &CancellationToken) -> LabResult<File> {
        let p = self.dir.join(".queue.lock");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| ledger_err("cannot open", &p, e))?;
        if f.try_lock().is_ok() {
            return Ok(f);
        }
        let waiter = f
            .try_clone()
            .map_err(|e| ledger_err("cannot open", &p, e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = waiter.lock();
            if tx.send(r.is_ok()).is_err() {
                // Nobody waits any more (timeout or Ctrl-C): give the turn away.
                let _ = waiter.unlock();
            }
        });
        loop {
            match rx.recv_timeout(TICK) {
                Ok(true) => return Ok(f),
                Ok(false) => {
                    return Err(LabError::new(
                        "gpu.ledger",
                        format!("cannot lock '{}'", p.display()),
                    ))
                }
                Err(_) => {}
            }
            if cancel.is_cancelled() {
                return Err(LabError::cancelled());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LabError::new(
                    "gpu.timeout",
                    "timed out waiting in the GPU queue behind other requests".to_string(),
                ));
            }
        }
    }
}

/// Ledger helpers for `labhost gpus`: which held slots belong to each device.
pub fn holders_by_uuid(holders: &[Holder]) -> HashMap<String, Vec<Holder>> {
    let mut m: HashMap<String, Vec<Holder>> = HashMap::new();
    for h in holders {
        m.entry(h.uuid.clone()).or_default().push(h.clone());
    }
    m
}

/// UUIDs of devices with any holder.
pub fn busy_uuids(holders: &[Holder]) -> HashSet<String> {
    holders.iter().map(|h| h.uuid.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::gpu::probe::FakeProbe;

    fn ledger(spec: &str) -> (tempfile::TempDir, Ledger) {
        let t = tempfile::tempdir().unwrap();
        let probe: &'static FakeProbe = Box::leak(Box::new(FakeProbe::new(spec)));
        let l = Ledger::at(t.path().join("gpu"), probe).unwrap();
        (t, l)
    }

    fn now_opts() -> ReserveOpts {
        ReserveOpts {
            wait: false,
            grace: Duration::ZERO,
            ..Default::default()
        }
    }

    #[test]
    fn exclusive_and_shared_users_exclude_each_other() {
        let (_t, l) = ledger("1x24GiB");
        let c = CancellationToken::new();
        let shared = ReserveOpts {
            slots_per_gpu: 2,
            ..now_opts()
        };
        let a = l.reserve(1, &shared, &c).unwrap();
        assert_eq!(a.devices()[0].slot, 1);
        // An exclusive request must not join a shared device…
        assert_eq!(l.reserve(1, &now_opts(), &c).unwrap_err().kind, "gpu.busy");
        let b = l.reserve(1, &shared, &c).unwrap();
        assert_eq!(b.devices()[0].slot, 2);
        // …and a third sharer does not fit in two slots.
        assert_eq!(l.reserve(1, &shared, &c).unwrap_err().kind, "gpu.busy");
        drop(a);
        drop(b);
        let x = l.reserve(1, &now_opts(), &c).unwrap();
        assert_eq!(l.reserve(1, &shared, &c).unwrap_err().kind, "gpu.busy");
        assert_eq!(l.holders().len(), 1);
        assert_eq!(l.holders()[0].info.pid, std::process::id());
        drop(x);
        assert!(l.holders().is_empty());
    }

    #[test]
    fn all_or_nothing_and_unsatisfiable() {
        let (_t, l) = ledger("2x24GiB");
        let c = CancellationToken::new();
        let one = l.reserve(1, &now_opts(), &c).unwrap();
        // Two are wanted, one is free: nothing is taken.
        assert_eq!(l.reserve(2, &now_opts(), &c).unwrap_err().kind, "gpu.busy");
        assert_eq!(l.holders().len(), 1);
        assert_eq!(
            l.reserve(3, &now_opts(), &c).unwrap_err().kind,
            "gpu.unsatisfiable"
        );
        drop(one);
        assert_eq!(l.reserve(2, &now_opts(), &c).unwrap().indices(), vec![0, 1]);
    }

    #[test]
    fn grace_period_hides_a_fresh_devices_memory() {
        let (_t, l) = ledger("2x24GiB");
        let c = CancellationToken::new();
        let shared = ReserveOpts {
            slots_per_gpu: 2,
            grace: Duration::from_secs(3600),
            ..now_opts()
        };
        let a = l.reserve(1, &shared, &c).unwrap();
        assert_eq!(a.indices(), vec![0]);
        // Device 0's memory is not trusted yet: the next sharer goes to device 1.
        let b = l.reserve(1, &shared, &c).unwrap();
        assert_eq!(b.indices(), vec![1]);
        // Without memory criteria the fresh device is fine.
        let no_mem = ReserveOpts {
            select: SelectOpts {
                max_memory: 1.0,
                ..Default::default()
            },
            ..shared.clone()
        };
        assert_eq!(l.reserve(1, &no_mem, &c).unwrap().indices(), vec![0]);
    }

    #[test]
    fn waiting_times_out_with_a_description_and_wakes_on_release() {
        let (_t, l) = ledger("1x24GiB");
        let c = CancellationToken::new();
        let held = l.reserve(1, &now_opts(), &c).unwrap();
        let o = ReserveOpts {
            wait: true,
            timeout: Some(Duration::from_millis(150)),
            ..now_opts()
        };
        let e = l.reserve(1, &o, &c).unwrap_err();
        assert_eq!(e.kind, "gpu.timeout");
        assert!(
            e.message.contains("GPU0 24.0GiB: all slots reserved"),
            "{}",
            e.message
        );
        let l2 = Ledger::at(l.dir.clone(), l.probe).unwrap();
        let waiter = std::thread::spawn(move || {
            let o = ReserveOpts {
                wait: true,
                timeout: Some(Duration::from_secs(20)),
                grace: Duration::ZERO,
                ..Default::default()
            };
            l2.reserve(1, &o, &CancellationToken::new())
                .map(|l| l.indices())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        assert_eq!(waiter.join().unwrap().unwrap(), vec![0]);
    }

    #[test]
    fn cancellation_stops_a_wait() {
        let (_t, l) = ledger("1x24GiB");
        let held = l
            .reserve(1, &now_opts(), &CancellationToken::new())
            .unwrap();
        let c = CancellationToken::new();
        let c2 = c.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c2.cancel();
        });
        let o = ReserveOpts {
            wait: true,
            ..now_opts()
        };
        assert!(l.reserve(1, &o, &c).unwrap_err().is_cancelled());
        drop(held);
    }
}
