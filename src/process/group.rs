//! Process groups: which children are ours, whether a group still has a live process, and
//! the one way a group is signalled and stopped (SIGTERM, then SIGKILL after the grace).
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Children this process started itself (job leaders, `sh::run` commands): the subreaper's
/// reaper never takes them. A spawner holds [`spawn_guard`] from before the spawn until the
/// pid is recorded with [`own_child`]; the reaper holds the barrier exclusively while it
/// looks, so it never sees a child of ours that is not recorded yet.
static BARRIER: RwLock<()> = RwLock::new(());
static OWN: std::sync::Mutex<Option<HashSet<i32>>> = std::sync::Mutex::new(None);

/// Held while a child is started and recorded.
pub struct SpawnGuard {
    _g: std::sync::RwLockReadGuard<'static, ()>,
}

/// Call before starting a child; record it with [`own_child`] before dropping the guard.
pub fn spawn_guard() -> SpawnGuard {
    SpawnGuard {
        _g: BARRIER.read().unwrap_or_else(|e| e.into_inner()),
    }
}

/// Records a child this process started.
pub fn own_child(pid: i32) {
    OWN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(pid);
}

/// Forgets a child once it has been reaped.
pub fn forget_child(pid: i32) {
    if let Some(s) = OWN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&pid);
    }
}

/// Children of this process's main thread: where the kernel re-parents the orphans of a
/// subreaper (its first live thread, the main one). Job leaders are children of the worker
/// threads that started them and are not listed.
pub(super) fn adopted_children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `(state, pgid, start time)` from `/proc/<pid>/stat`.
pub fn stat(pid: i32) -> Option<(char, i32, i64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); pgrp is field 5, starttime field 22.
    Some((
        f.first()?.chars().next()?,
        f.get(2)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// Is any process of group `pgid` alive? Zombies do not count: an orphan's zombie may wait a
/// long time for init to reap it, and `killpg(pgid, 0)` still finds it.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only tests for existence; pgid > 0.
    if unsafe { libc::killpg(pgid, 0) } != 0 {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    procs.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(stat)
            .is_some_and(|(state, pgrp, _)| pgrp == pgid && state != 'Z')
    })
}

/// The start time of a process (clock ticks since boot), to tell it from a recycled pid.
pub fn start_time(pid: i32) -> Option<i64> {
    stat(pid).map(|s| s.2)
}

/// Children of ours as recorded, read while no spawner is between its spawn and its record
/// (the subreaper's reaper looks at its children under this).
pub(super) fn with_own_children<T>(f: impl FnOnce(&HashSet<i32>) -> T) -> T {
    let _barrier = BARRIER.write().unwrap_or_else(|e| e.into_inner());
    let own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    static EMPTY: std::sync::OnceLock<HashSet<i32>> = std::sync::OnceLock::new();
    f(own
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(HashSet::new)))
}

/// Sends `sig` to every process of group `pgid`. A pgid of 0 or less is never signalled:
/// `killpg(0, …)` would hit labhost's own group.
pub fn signal_group(pgid: i32, sig: libc::c_int) {
    if pgid > 0 {
        // SAFETY: killpg takes plain integers; pgid > 0 names a group we made.
        unsafe { libc::killpg(pgid, sig) };
    }
}

/// Sends `sig` to one process (pid > 0 only).
pub fn signal_pid(pid: i32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill takes plain integers; pid > 0 names one process.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Stops the group a child of ours leads: SIGTERM to the group, SIGKILL to what is left
/// after `grace`. `reap` is called on every round (a zombie leader keeps its group, and so
/// its pgid, in use). Returns once no process of the group is left.
pub async fn stop_group(pgid: i32, grace: Duration, reap: &mut (dyn FnMut() + Send)) {
    if pgid <= 0 {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        reap();
        if !group_alive(pgid) {
            return;
        }
        if Instant::now() >= deadline {
            signal_group(pgid, libc::SIGKILL);
            if Instant::now() >= deadline + Duration::from_secs(10) {
                tracing::warn!(
                    "process group {pgid}: processes left after SIGKILL (uninterruptible?)"
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
