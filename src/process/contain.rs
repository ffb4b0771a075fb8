//! Containment: every process a job starts is found and stopped, however it tries to leave
//! (a background `&`, `setsid`, a daemon that double-forks), while its host lives and after
//! its host died.
//!
//! Two modes, chosen once per process (`LABHOST_CONTAINMENT=subreaper` forces the second):
//! - **cgroup v2**: each attempt runs in a cgroup of its own, one of the host's
//!   `<base>/<host>-s<n>` (reused once empty: at most one attempt in each) under the host's
//!   own cgroup (`<base>` = `<own cgroup>/labhost.jobs`). The child moves itself in before
//!   `execve`, so nothing it starts can be outside. Stopping is SIGTERM to every member, then
//!   `cgroup.kill` after the grace; "nothing left" is `populated 0`.
//! - **subreaper**: the host is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so a job's
//!   orphans are re-parented to it instead of init. A job's processes are its process group
//!   plus every child of the host whose environment carries the attempt's token
//!   (`LABHOST_ATTEMPT=<host>:<job>:<attempt>`); stopping signals both until none is left,
//!   reaping the adopted ones.
//!
//! After a host died, [`stop_orphan`] finds an attempt's processes from what the store
//! recorded (cgroup, or leader pid + start time) and from the token in `/proc/*/environ`.
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::group::{
    adopted_children, group_alive, signal_group, signal_pid, stat, with_own_children,
};
use std::time::{Duration, Instant};

use crate::error::{LabError, LabResult};

/// The environment variable that marks every process of an attempt.
pub const ATTEMPT_VAR: &str = "LABHOST_ATTEMPT";

/// How this process contains its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A cgroup v2 per attempt, under `base`.
    Cgroup { base: PathBuf },
    /// Child subreaper + process group + environment token.
    Subreaper,
}

impl Mode {
    pub fn describe(&self) -> String {
        match self {
            Mode::Cgroup { base } => format!("cgroup v2 per job under {}", base.display()),
            Mode::Subreaper => {
                "child subreaper + process group + LABHOST_ATTEMPT token (no writable cgroup v2)"
                    .into()
            }
        }
    }

    /// `cgroup` or `subreaper`, for the host file.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Cgroup { .. } => "cgroup",
            Mode::Subreaper => "subreaper",
        }
    }
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// The mode of this process, chosen on first use (the job host's start). Choosing the
/// subreaper mode makes this process a child subreaper.
pub fn mode() -> &'static Mode {
    MODE.get_or_init(|| {
        let m = match crate::config::force_subreaper() {
            true => Mode::Subreaper,
            false => match cgroup_base(true) {
                Ok(base) => Mode::Cgroup { base },
                Err(why) => {
                    tracing::debug!("jobs are contained without cgroups: {why}");
                    Mode::Subreaper
                }
            },
        };
        if m == Mode::Subreaper {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        m
    })
}

/// The mode a job host would choose here, without choosing it (for `labhost status -v`).
pub fn probe() -> Mode {
    if let Some(m) = MODE.get() {
        return m.clone();
    }
    if crate::config::force_subreaper() {
        return Mode::Subreaper;
    }
    match cgroup_base(false) {
        Ok(base) => Mode::Cgroup { base },
        Err(_) => Mode::Subreaper,
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
/// systems).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// `<mount><own cgroup>/labhost.jobs`, created (and checked) when `create`.
fn cgroup_base(create: bool) -> Result<PathBuf, String> {
    let mount = cgroup2_mount().ok_or("no cgroup v2 mount")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is not in the cgroup v2 hierarchy")?;
    let base = mount
        .join(path.trim_start_matches('/'))
        .join("labhost.jobs");
    if !create {
        let parent = base.parent().unwrap_or(&base);
        let c = std::ffi::CString::new(parent.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: access() on a NUL-terminated path that lives across the call.
        return if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
            Ok(base)
        } else {
            Err(format!("{} is not writable", parent.display()))
        };
    }
    match std::fs::create_dir(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
    }
    // A probe group proves that groups can be made and processes moved (the child moves
    // itself: the parent's write access to cgroup.procs is what it needs).
    let probe = base.join(format!("probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .open(probe.join("cgroup.procs"))
        .map(|_| ())
        .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", probe.display()));
    let _ = std::fs::remove_dir(&probe);
    ok.map(|_| base)
}

/// Empty cgroups of this host with their `cgroup.procs` open, reused by the next attempt
/// (making and removing a cgroup per job costs more than the job's own start).
static SLOTS: std::sync::Mutex<Vec<Slot>> = std::sync::Mutex::new(Vec::new());

/// A cgroup with its `cgroup.procs` and its directory open.
struct Slot {
    dir: PathBuf,
    procs: OwnedFd,
    dir_fd: OwnedFd,
}
static NEXT_SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A free cgroup of this host: `<base>/<host>-s<n>`. At most one attempt is in it at a time,
/// so after the host died everything in its groups is its attempts' and can be killed.
fn take_slot(base: &Path, host: &str) -> LabResult<Slot> {
    if let Some(s) = SLOTS.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return Ok(s);
    }
    let n = NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Named for the host and for this process, which owns it: a host's job supervisor
    // outlives its host and goes on starting the attempts it was sent.
    let dir = base.join(format!("{}s{n}-{}", host_prefix(host), std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cg_err("cannot create", &dir, e)),
    }
    let p = dir.join("cgroup.procs");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| cg_err("cannot open", &p, e))?;
    let d = std::fs::File::open(&dir).map_err(|e| cg_err("cannot open", &dir, e))?;
    Ok(Slot {
        dir,
        procs: f.into(),
        dir_fd: d.into(),
    })
}

/// Removes this host's free cgroups (it is exiting; a running attempt's group stays).
pub fn release_slots() {
    for slot in SLOTS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = std::fs::remove_dir(&slot.dir);
    }
}

/// The process that made a slot cgroup, from its name `<hostname>-<pid>-<nanos>-s<n>-<owner>`
/// (the host's job supervisor, or the host itself when it runs jobs in-process); a name
/// without an owner (made by an older labhost) is owned by its host, `<pid>`.
fn slot_owner(name: &str) -> Option<i32> {
    let parts: Vec<&str> = name.split('-').collect();
    match parts.as_slice() {
        [.., _, slot, owner] if slot.starts_with('s') && !owner.starts_with('s') => {
            owner.parse().ok()
        }
        [.., pid, _, slot] if slot.starts_with('s') => pid.parse().ok(),
        _ => None,
    }
}

/// Removes the empty cgroups that processes which are gone left under this process's base
/// (a host killed with -9 cannot remove its own). A group is dead when the process that made
/// it no longer runs — not merely its host: the host's job supervisor lives on after it and
/// starts the attempts it was sent in its groups (removing one under it made its next
/// clone3 fail, and the trial was reported as "command not found"). A populated group is
/// left to the orphan recovery of the host's state directory.
pub fn sweep_dead_groups() {
    let Mode::Cgroup { base } = mode() else {
        return;
    };
    let Ok(dir) = std::fs::read_dir(base) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = slot_owner(&name) else {
            continue;
        };
        if pid as u32 == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if e.path().is_dir() && !populated(&e.path()) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Names of a host's cgroups start with this.
fn host_prefix(host: &str) -> String {
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-")
}

/// The cgroups of `host` under `base` (every one of them, after its death, holds only its
/// attempts' processes).
fn host_cgroups(base: &Path, host: &str) -> Vec<PathBuf> {
    let prefix = host_prefix(host);
    std::fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The token of an attempt: `<host>:<job>:<attempt>`.
pub fn token(host: &str, job: i64, attempt: i64) -> String {
    format!("{host}:{job}:{attempt}")
}

/// True when `/proc/<pid>/environ` holds `ATTEMPT_VAR=token`.
fn carries(pid: i32, needle: &[u8]) -> bool {
    let mut buf = Vec::new();
    match File::open(format!("/proc/{pid}/environ")) {
        Ok(mut f) => {
            if f.read_to_end(&mut buf).is_err() {
                return false;
            }
        }
        Err(_) => return false,
    }
    buf.split(|&b| b == 0).any(|kv| kv == needle)
}

fn needle(token: &str) -> Vec<u8> {
    format!("{ATTEMPT_VAR}={token}").into_bytes()
}

/// Reaps zombie children this process did not start itself (orphans re-parented to the
/// subreaper that have died).
pub fn reap_adopted() {
    if MODE.get() != Some(&Mode::Subreaper) {
        return;
    }
    with_own_children(|own| {
        for pid in adopted_children() {
            if own.contains(&pid) {
                continue;
            }
            if stat(pid).is_some_and(|s| s.0 == 'Z') {
                // SAFETY: WNOHANG wait on a zombie child of ours that no one else waits for.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
        }
    });
}

/// Subreaper mode: the live processes re-parented to this process that are not children it
/// started — orphans of its jobs, whatever environment they carry (a daemon that cleared
/// its environment has no token). Empty in cgroup mode (cgroups hold them).
pub fn strays() -> Vec<i32> {
    if MODE.get() != Some(&Mode::Subreaper) {
        return Vec::new();
    }
    with_own_children(|own| {
        adopted_children()
            .into_iter()
            .filter(|p| !own.contains(p) && stat(*p).is_some_and(|s| s.0 != 'Z'))
            .collect()
    })
}

/// Stops strays (see [`strays`]) while `idle()` says no job of this process runs (so every
/// one of them is an ended job's): SIGTERM to each and the group it leads, SIGKILL after
/// `grace`, until none is left. Their own children, re-parented here as they die, follow.
pub async fn stop_strays(grace: Duration, idle: &(dyn Fn() -> bool + Sync)) {
    let start = Instant::now();
    let mut termed: HashSet<i32> = HashSet::new();
    loop {
        reap_adopted();
        if !idle() {
            return;
        }
        let left = strays();
        if left.is_empty() || start.elapsed() > grace + Duration::from_secs(10) {
            return;
        }
        let kill = start.elapsed() >= grace;
        for p in left {
            if kill || termed.insert(p) {
                let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
                signal_pid(p, sig);
                // SAFETY: getpgid takes a plain pid and only reads.
                if unsafe { libc::getpgid(p) } == p {
                    signal_group(p, sig);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The attempts running in this process: `(pgid, cgroup, token)` by token, for
/// [`kill_all_now`].
static LIVE: std::sync::Mutex<Vec<(i32, Option<PathBuf>, String)>> =
    std::sync::Mutex::new(Vec::new());

/// SIGKILLs every process of every attempt this process runs, without waiting (the process
/// is about to exit at once, e.g. a second Ctrl-C). The next host re-queues the runs.
pub fn kill_all_now() {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (pgid, cgroup, token) in live {
        let a = Attempt {
            token,
            procs: None,
            dir_fd: None,
            cgroup,
            seen_empty: AtomicBool::new(false),
        };
        a.kill_now(pgid);
    }
}

/// One attempt's containment.
pub struct Attempt {
    pub token: String,
    /// `cgroup.procs` of the attempt's cgroup, which the child writes itself into (where
    /// `clone3` cannot start it inside).
    procs: Option<OwnedFd>,
    /// The cgroup's directory, for `clone3(CLONE_INTO_CGROUP)`.
    dir_fd: Option<OwnedFd>,
    pub cgroup: Option<PathBuf>,
    /// [`Attempt::any_left`] read the cgroup empty: it stays so (nothing is left to fork
    /// into it), and [`Attempt::cleanup`] does not read it again.
    seen_empty: AtomicBool,
}

fn cg_err(what: &str, p: &Path, e: std::io::Error) -> LabError {
    LabError::new("jobs.containment", format!("{what} {}: {e}", p.display()))
}

impl Attempt {
    /// Prepares the containment of attempt `attempt` of job `job` on `host`.
    pub fn new(host: &str, job: i64, attempt: i64) -> LabResult<Attempt> {
        let token = token(host, job, attempt);
        match mode() {
            Mode::Subreaper => Ok(Attempt {
                token,
                procs: None,
                dir_fd: None,
                cgroup: None,
                seen_empty: AtomicBool::new(false),
            }),
            Mode::Cgroup { base } => {
                let slot = take_slot(base, host)?;
                Ok(Attempt {
                    token,
                    procs: Some(slot.procs),
                    dir_fd: Some(slot.dir_fd),
                    cgroup: Some(slot.dir),
                    seen_empty: AtomicBool::new(false),
                })
            }
        }
    }

    /// Registers the started attempt for [`kill_all_now`] (until it is dropped).
    pub fn started(&self, pgid: i32) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((
            pgid,
            self.cgroup.clone(),
            self.token.clone(),
        ));
    }

    /// The cgroup's directory fd (for `clone3`); -1 without a cgroup.
    pub fn dir_fd(&self) -> RawFd {
        self.dir_fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// The fd the child writes `0` into (itself) before `execve`; -1 without a cgroup.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Members of the attempt's cgroup, or (subreaper) the host's children that carry the
    /// token.
    fn members(&self) -> Vec<i32> {
        match &self.cgroup {
            Some(dir) => read_pids(&dir.join("cgroup.procs")),
            None => {
                let n = needle(&self.token);
                adopted_children()
                    .into_iter()
                    .filter(|&p| stat(p).is_some_and(|s| s.0 != 'Z') && carries(p, &n))
                    .collect()
            }
        }
    }

    /// Is any process of the attempt left besides a (reaped or zombie) leader `pgid`?
    pub fn any_left(&self, pgid: i32) -> bool {
        match &self.cgroup {
            Some(dir) => {
                let left = events_populated(dir, self.dir_fd.as_ref()).unwrap_or(false);
                if !left {
                    self.seen_empty.store(true, Ordering::SeqCst);
                }
                left
            }
            None => {
                reap_adopted();
                group_alive(pgid) || !self.members().is_empty()
            }
        }
    }

    /// Signals the leader's process group (and, with SIGKILL, the whole cgroup).
    fn signal_group(&self, pgid: i32, sig: libc::c_int) {
        signal_group(pgid, sig);
        if sig == libc::SIGKILL {
            if let Some(dir) = &self.cgroup {
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            }
        }
    }

    /// Signals one member of the attempt (and, for a member that made its own group with
    /// setsid, that group).
    fn signal_member(&self, p: i32, pgid: i32, sig: libc::c_int) {
        signal_pid(p, sig);
        // SAFETY: getpgid takes a plain pid and only reads.
        if self.cgroup.is_none() && unsafe { libc::getpgid(p) } == p && p != pgid {
            signal_group(p, sig);
        }
    }

    fn signal(&self, pgid: i32, sig: libc::c_int) {
        self.signal_group(pgid, sig);
        for p in self.members() {
            self.signal_member(p, pgid, sig);
        }
    }

    /// Stops every process of the attempt: SIGTERM once to each (members that appear later,
    /// re-parented orphans, get theirs when they do), then SIGKILL after `grace`.
    /// `reap_leader` is called on every round (the leader is our child: a zombie leader keeps
    /// its group). Returns when nothing of the attempt is left (or after 10 s more of SIGKILL).
    pub async fn stop(&self, pgid: i32, grace: Duration, reap_leader: &mut (dyn FnMut() + Send)) {
        let start = Instant::now();
        let mut termed: HashSet<i32> = HashSet::new();
        self.signal_group(pgid, libc::SIGTERM);
        loop {
            reap_leader();
            if !self.any_left(pgid) {
                return;
            }
            if start.elapsed() >= grace {
                self.signal(pgid, libc::SIGKILL);
                if start.elapsed() > grace + Duration::from_secs(10) {
                    tracing::warn!(
                        "attempt {}: processes left after SIGKILL (uninterruptible?)",
                        self.token
                    );
                    return;
                }
            } else {
                for p in self.members() {
                    if termed.insert(p) {
                        self.signal_member(p, pgid, libc::SIGTERM);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops everything at once with SIGKILL, without waiting (the host is exiting).
    pub fn kill_now(&self, pgid: i32) {
        self.signal(pgid, libc::SIGKILL);
    }

    /// Gives the attempt's (empty) cgroup back for the next attempt of this host (done when
    /// the attempt is dropped, on every path).
    fn cleanup(&mut self) {
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| l.2 != self.token);
        if let (Some(dir), Some(procs), Some(dir_fd)) =
            (self.cgroup.take(), self.procs.take(), self.dir_fd.take())
        {
            let empty = self.seen_empty.load(Ordering::SeqCst)
                || events_populated(&dir, Some(&dir_fd)) == Some(false);
            if !empty {
                // Something survived SIGKILL (uninterruptible), or the group is gone: it is
                // not reused (a removed group would fail every later start in it).
                return;
            }
            SLOTS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Slot { dir, procs, dir_fd });
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn read_pids(p: &Path) -> Vec<i32> {
    std::fs::read_to_string(p)
        .map(|s| {
            s.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `populated 1` in the cgroup's `cgroup.events` (a missing group is empty).
fn populated(dir: &Path) -> bool {
    events_populated(dir, None).unwrap_or(false)
}

/// Whether the cgroup's `cgroup.events` says `populated 1`; `None` when it cannot be read
/// (the group is gone). Opened beneath the group's open directory `dir_fd` when there is
/// one, and read at once (a few dozen bytes): an attempt's end reads it on the way to the
/// next start.
fn events_populated(dir: &Path, dir_fd: Option<&OwnedFd>) -> Option<bool> {
    let mut f = match dir_fd {
        Some(d) => {
            // SAFETY: `d` is an open directory and the name a NUL-terminated literal.
            let fd = unsafe {
                libc::openat(
                    d.as_raw_fd(),
                    c"cgroup.events".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return None;
            }
            // SAFETY: `fd` was just opened here and nothing else owns it.
            unsafe { File::from_raw_fd(fd) }
        }
        None => File::open(dir.join("cgroup.events")).ok()?,
    };
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).ok()?;
    Some(buf[..n].split(|b| *b == b'\n').any(|l| l == b"populated 1"))
}

/// What a host writes into its lock file: how to find its jobs' processes after it died.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JobHostInfo {
    pub pid: u32,
    pub containment: String,
    #[serde(default)]
    pub cgroup_base: Option<PathBuf>,
}

/// Writes this host's [`JobHostInfo`] into its (locked) host file.
pub fn write_host_info(f: &mut File) -> std::io::Result<()> {
    let m = mode();
    let info = JobHostInfo {
        pid: std::process::id(),
        containment: m.name().into(),
        cgroup_base: match m {
            Mode::Cgroup { base } => Some(base.clone()),
            Mode::Subreaper => None,
        },
    };
    f.set_len(0)?;
    f.write_all(serde_json::to_string(&info).unwrap_or_default().as_bytes())?;
    f.flush()
}

/// What the attempt of a dead host left, as recorded.
pub struct Orphan<'a> {
    pub host: &'a str,
    pub job: i64,
    pub attempt: i64,
    pub pid: Option<i64>,
    pub leader_start: Option<i64>,
    pub cgroup: Option<&'a str>,
    /// The dead host's lock file (its [`JobHostInfo`]).
    pub host_file: PathBuf,
}

/// Stops every process of an attempt whose host died: its cgroup (recorded, or derived from
/// the host file), its process group (checked against the leader's start time, so a recycled
/// pid is never hit), and any process carrying its token. Returns when none is left (or after
/// 10 s), with how many processes were found.
pub fn stop_orphan(o: &Orphan<'_>) -> usize {
    let info: JobHostInfo = std::fs::read_to_string(&o.host_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    // The recorded group, and every group of the dead host (an attempt that died before its
    // start was recorded is in one of them).
    let mut cgroups: Vec<PathBuf> = o.cgroup.map(PathBuf::from).into_iter().collect();
    if let Some(b) = info.cgroup_base.as_deref() {
        cgroups.extend(host_cgroups(b, o.host));
    }
    let needle = needle(&token(o.host, o.job, o.attempt));
    let find = || -> Vec<i32> {
        let mut found: HashSet<i32> = HashSet::new();
        for dir in &cgroups {
            found.extend(read_pids(&dir.join("cgroup.procs")));
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found.into_iter().collect();
        };
        let me = std::process::id() as i32;
        for e in procs.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Some((state, pgrp, start)) = stat(pid) else {
                continue;
            };
            if state == 'Z' {
                continue;
            }
            let in_group = match (o.pid, o.leader_start) {
                (Some(leader), Some(t0)) => i64::from(pgrp) == leader && start >= t0,
                _ => false,
            };
            if in_group || carries(pid, &needle) {
                found.insert(pid);
            }
        }
        found.into_iter().collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut total: HashSet<i32> = HashSet::new();
    loop {
        let pids = find();
        if pids.is_empty() {
            break;
        }
        total.extend(&pids);
        for dir in &cgroups {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        // Each is a process of the dead host's attempt (cgroup member, group member started
        // after its leader, or carrying its token).
        for p in pids {
            signal_pid(p, libc::SIGKILL);
        }
        reap_adopted();
        if Instant::now() > deadline {
            tracing::warn!("processes of job {} survived SIGKILL", o.job);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for dir in &cgroups {
        let _ = std::fs::remove_dir(dir);
    }
    total.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_owned_by_the_process_that_made_it() {
        assert_eq!(slot_owner("box-1234-99887766-s3-5678"), Some(5678));
        // Made by an older labhost: its host's pid.
        assert_eq!(slot_owner("box-1234-99887766-s3"), Some(1234));
        assert_eq!(slot_owner("my-box-1234-99887766-s12-42"), Some(42));
        assert_eq!(slot_owner("labhost.slice"), None);
    }

    /// A host that died leaves its job supervisor starting attempts in the host's slot
    /// groups: the next host's sweep of dead groups leaves them alone while the process that
    /// made them lives, and a group removed under an attempt is never handed out again.
    #[test]
    fn slot_groups_outlive_their_host_not_their_maker() {
        if !matches!(mode(), Mode::Cgroup { .. }) {
            eprintln!(
                "skipped: no writable cgroup v2 here ({})",
                mode().describe()
            );
            return;
        }
        // A host id whose pid cannot run (above any pid_max).
        let host = "unit-2147483000-1";
        let a = Attempt::new(host, 1, 1).unwrap();
        let dir = a.cgroup.clone().unwrap();
        drop(a);
        sweep_dead_groups();
        assert!(
            dir.is_dir(),
            "{} removed while its maker runs",
            dir.display()
        );

        let slots = |d: &Path| {
            SLOTS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| s.dir == d)
        };
        // Take slots until this group comes back, then remove it under its attempt.
        let mut held = Vec::new();
        let a = loop {
            assert!(
                held.len() < 64,
                "{} never came back from the pool",
                dir.display()
            );
            let a = Attempt::new(host, 2, 1).unwrap();
            if a.cgroup.as_deref() == Some(dir.as_path()) {
                break a;
            }
            held.push(a);
        };
        std::fs::remove_dir(&dir).unwrap();
        drop(a);
        assert!(!slots(&dir), "a removed group went back to the pool");
        drop(held);
    }

    #[test]
    fn stat_reads_fields_past_a_command_with_spaces() {
        let (state, pgrp, start) = stat(std::process::id() as i32).unwrap();
        assert!("RS".contains(state), "{state}");
        // SAFETY: getpgrp has no preconditions.
        assert_eq!(pgrp, unsafe { libc::getpgrp() });
        assert!(start > 0);
        assert_eq!(stat(i32::MAX), None);
    }

    #[test]
    fn the_token_and_cgroup_name_of_an_attempt() {
        assert_eq!(token("box-1-2", 7, 3), "box-1-2:7:3");
        assert_eq!(host_prefix("my.box-1"), "my_box-1-");
    }

    #[test]
    fn pgid_0_is_never_signalled_and_never_alive() {
        // killpg(0, …) would hit this test's own process group: the test binary would die.
        assert!(!group_alive(0));
        let a = Attempt {
            token: "no-such-token".into(),
            procs: None,
            dir_fd: None,
            cgroup: None,
            seen_empty: AtomicBool::new(false),
        };
        a.kill_now(0);
        a.signal(0, libc::SIGTERM);
        assert!(!a.any_left(0));
    }
}
