//! Starting processes without `fork`.
//!
//! `std::process::Command` with a `pre_exec` hook (needed for the parent-death signal) must
//! `fork()` the host: the kernel copies the page tables of a multi-threaded process, write-
//! protects them and shoots down the TLBs of the other CPUs, and the parent then takes
//! copy-on-write faults. For 1,000 short jobs that was half of the host's CPU time. This module
//! does what glibc's `posix_spawn` does — `clone(CLONE_VM | CLONE_VFORK)`, so the child runs
//! on the parent's memory until `execve` — plus the three things `posix_spawn` cannot: the
//! parent-death signal, a check that the parent is still there, and a pidfd to learn of the
//! exit by an event.
//!
//! Everything the child needs (paths, argv, envp) is prepared in the parent; the child only
//! makes raw system calls, allocates nothing and cannot panic.
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;

/// A program ready to start: resolved path, argv, envp, working directory.
pub struct Program {
    /// Looked up on PATH (so a failed exec may be a stale cache entry).
    searched: bool,
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
    /// Sent to the child when the thread that started it ends: SIGKILL, or SIGTERM for a
    /// child that is labhost itself ([`Program::labhost`]); 0 for the job supervisor
    /// ([`Program::supervisor`]), which outlives its host in a session of its own.
    death_signal: libc::c_int,
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", s),
        )
    })
}

type ResolveKey = (OsString, Option<OsString>, Option<PathBuf>);

/// Programs found on PATH before (a pool starts the same program thousands of times). An entry
/// that has gone stale makes `execve` fail with ENOENT; `spawn` then looks again.
static RESOLVED: std::sync::Mutex<Option<std::collections::HashMap<ResolveKey, PathBuf>>> =
    std::sync::Mutex::new(None);

fn forget_resolved() {
    *RESOLVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Finds `prog` the way `execvp` would, on the child's `PATH` (relative entries against the
/// child's working directory).
fn resolve(prog: &OsStr, path_var: Option<&OsStr>, cwd: Option<&Path>) -> io::Result<PathBuf> {
    if prog.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(prog));
    }
    let key = (
        prog.to_os_string(),
        path_var.map(OsStr::to_os_string),
        cwd.map(Path::to_path_buf),
    );
    if let Some(p) = RESOLVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(p.clone());
    }
    let found = search(prog, path_var, cwd)?;
    RESOLVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(key, found.clone());
    Ok(found)
}

fn search(prog: &OsStr, path_var: Option<&OsStr>, cwd: Option<&Path>) -> io::Result<PathBuf> {
    let path_var = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let dir = match cwd {
            Some(c) if dir.is_relative() => c.join(dir),
            _ => dir.to_path_buf(),
        };
        let cand = dir.join(prog);
        let Ok(meta) = std::fs::metadata(&cand) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let c = cstr(cand.as_os_str())?;
        // SAFETY: access() on a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Ok(cand);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found on PATH", prog.to_string_lossy()),
    ))
}

impl Program {
    /// `argv[0]` is looked up on the child's `PATH`; the child's environment is this process's
    /// with `env` laid over it.
    pub fn new<I, K, V>(argv: &[OsString], env: I, cwd: Option<&Path>) -> io::Result<Program>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut vars: std::collections::BTreeMap<OsString, OsString> =
            std::env::vars_os().collect();
        for (k, v) in env {
            vars.insert(k.as_ref().to_os_string(), v.as_ref().to_os_string());
        }
        Program::from_vars(argv, vars, cwd)
    }

    fn from_vars(
        argv: &[OsString],
        vars: std::collections::BTreeMap<OsString, OsString>,
        cwd: Option<&Path>,
    ) -> io::Result<Program> {
        let Some(prog) = argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let path_var = vars.get(OsStr::new("PATH")).map(|p| p.as_os_str());
        let path = resolve(prog, path_var, cwd)?;
        let envp = vars
            .into_iter()
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                CString::new(k.into_vec()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the environment")
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Program {
            searched: !prog.as_bytes().contains(&b'/'),
            path: cstr(path.as_os_str())?,
            argv: argv.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?,
            envp,
            cwd: cwd.map(|c| cstr(c.as_os_str())).transpose()?,
            death_signal: libc::SIGKILL,
        })
    }

    /// The job supervisor: this labhost binary with `args`, in a session of its own (no
    /// terminal's Ctrl-C or hang-up reaches it) and without a death signal — it outlives a
    /// host killed with -9, keeps that host's jobs running and records their ends.
    pub fn supervisor(args: &[OsString], env: &[(OsString, OsString)]) -> io::Result<Program> {
        let mut p = Program::labhost(args, env.iter().map(|(k, v)| (k, v)), None)?;
        p.death_signal = 0;
        Ok(p)
    }

    /// The same program with `base` as the environment its `env` was laid over (the job
    /// supervisor starts jobs in its host's environment of the moment, not its own).
    pub fn over_env(
        argv: &[OsString],
        base: &[(OsString, OsString)],
        env: Vec<(OsString, OsString)>,
        cwd: Option<&Path>,
    ) -> io::Result<Program> {
        let mut vars: std::collections::BTreeMap<OsString, OsString> =
            base.iter().cloned().collect();
        vars.extend(env);
        Program::from_vars(argv, vars, cwd)
    }

    /// This labhost binary with `args` (a cron fire's `labhost run`). Its death signal is
    /// SIGTERM, not SIGKILL: a labhost stops its own process groups on SIGTERM (as on
    /// Ctrl-C, with the grace), which a SIGKILL would leave running.
    pub fn labhost<I, K, V>(args: &[OsString], env: I, cwd: Option<&Path>) -> io::Result<Program>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let exe = std::env::current_exe()?;
        let argv: Vec<OsString> = std::iter::once(exe.into_os_string())
            .chain(args.iter().cloned())
            .collect();
        let mut p = Program::new(&argv, env, cwd)?;
        p.death_signal = libc::SIGTERM;
        Ok(p)
    }
}

/// What the child reads; lives on the parent's stack, which the child shares until `execve`.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [RawFd; 3],
    /// `cgroup.procs` of the job's cgroup (the child moves itself in), or -1.
    procs_fd: RawFd,
    /// Fds the job keeps open past exec (its GPU lease's lock files), sorted; all others
    /// above 2 are closed.
    keep: *const RawFd,
    keep_len: usize,
    parent: libc::pid_t,
    /// The parent-death signal (see [`Program::death_signal`]).
    death_signal: libc::c_int,
    /// 0, or the errno of the step that failed (the child writes it, then exits).
    errno: AtomicI32,
    /// Which step failed: 1 chdir, 2 execve, 3 setup.
    stage: AtomicI32,
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive until this child execs or exits (the
    // parent is suspended by CLONE_VFORK). Only async-signal-safe system calls follow.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |stage: i32| -> ! {
            a.errno.store(*libc::__errno_location(), Ordering::SeqCst);
            a.stage.store(stage, Ordering::SeqCst);
            libc::_exit(127)
        };
        // Handlers are the parent's code: reset every caught signal (up to _NSIG; glibc's
        // own two, which sigaction refuses, are left alone) before unblocking.
        let mut sa: libc::sigaction = std::mem::zeroed();
        for sig in 1..NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0 {
                continue;
            }
            let h = sa.sa_sigaction;
            if (h != libc::SIG_DFL && h != libc::SIG_IGN) || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if a.death_signal == 0 {
            // The job supervisor: a session of its own, no death signal.
            if libc::setsid() < 0 {
                fail(3);
            }
        } else {
            // Dies with the host (its spawning thread); the host may already be gone.
            if libc::prctl(libc::PR_SET_PDEATHSIG, a.death_signal) != 0 {
                fail(3);
            }
            if libc::getppid() != a.parent {
                libc::_exit(128 + a.death_signal);
            }
            if libc::setpgid(0, 0) != 0 {
                fail(3);
            }
        }
        // Into the job's cgroup before anything runs: nothing it starts can be outside.
        if a.procs_fd >= 0 && libc::write(a.procs_fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(4);
        }
        for (target, &fd) in a.fds.iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                let fl = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, target) < 0 {
                fail(3);
            }
        }
        // Fds the host inherited without close-on-exec must not leak into the job: close
        // everything above stderr except what the job keeps.
        let keep = std::slice::from_raw_parts(a.keep, a.keep_len);
        let mut lo: libc::c_uint = 3;
        for &k in keep {
            libc::fcntl(k, libc::F_SETFD, 0);
            if k as libc::c_uint > lo {
                libc::syscall(libc::SYS_close_range, lo, k as libc::c_uint - 1, 0);
            }
            lo = k as libc::c_uint + 1;
        }
        libc::syscall(libc::SYS_close_range, lo, libc::c_uint::MAX, 0);
        if !a.cwd.is_null() && libc::chdir(a.cwd) != 0 {
            fail(1);
        }
        // The parent blocked everything (glibc's internal signals included) with the raw
        // call; the job starts with nothing blocked.
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        libc::execve(a.path, a.argv, a.envp);
        fail(2)
    }
}

/// A copy of `a` for the clone3 path (same pointers; its own result cells).
fn args_for_clone3(a: &ChildArgs) -> ChildArgs {
    ChildArgs {
        path: a.path,
        argv: a.argv,
        envp: a.envp,
        cwd: a.cwd,
        fds: a.fds,
        procs_fd: a.procs_fd,
        keep: a.keep,
        keep_len: a.keep_len,
        parent: a.parent,
        death_signal: a.death_signal,
        errno: AtomicI32::new(0),
        stage: AtomicI32::new(0),
    }
}

/// Signals are numbered 1..NSIG (glibc's `_NSIG`).
const NSIG: libc::c_int = 65;

/// Size of the child's stack (used only until `execve`), plus one guard page below it.
const CHILD_STACK: usize = 64 << 10;

/// The child's stack: an anonymous mapping with a guard page at its low end, so an overflow
/// faults instead of writing over the parent's memory.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = CHILD_STACK + page;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let s = Stack { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(s)
    }

    /// The usable region (above the guard page): `(lowest address, size)`.
    fn region(&self) -> (u64, u64) {
        let guard = (self.len - CHILD_STACK) as u64;
        (self.base as u64 + guard, CHILD_STACK as u64)
    }

    /// The top (stacks grow down), 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping, which is page aligned.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once the child no longer runs on it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// `clone3` is used while the kernel takes it (5.7+ for `CLONE_INTO_CGROUP`).
static NO_CLONE3: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The kernel's `struct clone_args` (up to `cgroup`, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(args)`; the child starts on the stack in `args` and runs `child(arg)`, which never
/// returns (it execs or exits). Returns the child's pid, or `-errno`.
///
/// # Safety
/// As `clone` with `CLONE_VM | CLONE_VFORK`: `arg` and the stack outlive the child's use of
/// them, and `child` only makes async-signal-safe system calls.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3(
    args: &CloneArgs,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // In the child rsp is the new stack's top (16-byte aligned); r12/r13 survive the syscall.
    // SAFETY: the caller keeps `arg` and the stack alive and `child` async-signal-safe (see
    // `# Safety`); the parent's registers other than rax/rcx/r11 are preserved by syscall.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") child,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `clone3` on aarch64: as the x86_64 one.
///
/// # Safety
/// As the x86_64 `clone3`.
#[cfg(target_arch = "aarch64")]
unsafe fn clone3(
    args: &CloneArgs,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: as for x86_64: the caller's contract (`# Safety` there) keeps `arg`, the stack
    // and `child` valid for the child's run.
    unsafe {
        std::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x0, x21",
            "blr x20",
            "mov x8, #93",
            "svc #0",
            "brk #1",
            "2:",
            in("x8") libc::SYS_clone3,
            inlateout("x0") args as *const CloneArgs => ret,
            in("x1") std::mem::size_of::<CloneArgs>(),
            in("x20") child,
            in("x21") arg,
            options(nostack)
        )
    };
    ret
}

/// No `clone3` here: `ENOSYS`, and the caller falls back to `clone`.
///
/// # Safety
/// None needed (it does nothing); `unsafe` to match the other targets.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn clone3(
    _args: &CloneArgs,
    _child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> i64 {
    -i64::from(libc::ENOSYS)
}

/// Reaps `pid` on a thread of its own (a blocking `waitpid` must never run on a tokio
/// worker).
fn reap_later(pid: libc::pid_t) {
    let _ = std::thread::Builder::new()
        .name("labhost-reap".into())
        .spawn(move || {
            // SAFETY: our own child, killed just before.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            super::group::forget_child(pid);
        });
}

/// Kills a child we cannot watch (and its group), and reaps it without blocking the caller.
fn kill_and_reap(pid: libc::pid_t) {
    super::group::signal_group(pid, libc::SIGKILL);
    super::group::signal_pid(pid, libc::SIGKILL);
    // SAFETY: WNOHANG wait on our own child.
    if unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == pid {
        super::group::forget_child(pid);
        return;
    }
    reap_later(pid);
}

/// How this process learns that a child exited: a pidfd per child (Linux 5.3+), or, where
/// `pidfd_open` is missing or blocked (seccomp), SIGCHLD and `waitpid(WNOHANG)` as tokio's
/// process module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitWatch {
    Pidfd,
    Sigchld,
}

static NO_PIDFD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Probes `pidfd_open` on this process (for `labhost status -v`).
pub fn probe_exit_watch() -> ExitWatch {
    // SAFETY: pidfd_open of ourselves; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return ExitWatch::Sigchld;
    }
    // SAFETY: the fd we just got.
    unsafe { libc::close(fd as RawFd) };
    ExitWatch::Pidfd
}

/// A counter bumped on every SIGCHLD this process gets (the fallback exit watch).
fn sigchld() -> tokio::sync::watch::Receiver<u64> {
    static RX: std::sync::OnceLock<tokio::sync::watch::Receiver<u64>> = std::sync::OnceLock::new();
    RX.get_or_init(|| {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(mut sig) => {
                tokio::spawn(async move {
                    while sig.recv().await.is_some() {
                        tx.send_modify(|n| *n += 1);
                    }
                });
            }
            Err(e) => tracing::warn!("cannot watch SIGCHLD: {e}"),
        }
        rx
    })
    .clone()
}

/// A started job process: its own process group (pgid = pid), killed by the kernel when the
/// spawning thread ends.
pub struct Child {
    pub pid: libc::pid_t,
    /// `None`: the SIGCHLD exit watch.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

/// What a job's process gets besides its program: stdio, its cgroup, the fds it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Io<'a> {
    pub stdio: [RawFd; 3],
    /// `cgroup.procs` to join before `execve`, or -1.
    pub cgroup_procs: RawFd,
    /// The same cgroup's directory, for `clone3(CLONE_INTO_CGROUP)` (the child is born in
    /// it: no migration), or -1.
    pub cgroup_dir: RawFd,
    /// Kept open past `execve` (a GPU lease's lock files: the lease lives while any process
    /// of the job does).
    pub keep: &'a [RawFd],
}

impl Io<'_> {
    /// Just stdio.
    pub fn stdio(stdio: [RawFd; 3]) -> Io<'static> {
        Io {
            stdio,
            cgroup_procs: -1,
            cgroup_dir: -1,
            keep: &[],
        }
    }
}

/// Why a start failed: `Cwd` (the working directory), the program itself (`Exec`), joining
/// the job's cgroup (`Contain`), or making or watching the process at all (`Fork`: clone,
/// pidfd — never a fault of the program's, so never reported as a missing command).
#[derive(Debug)]
pub enum SpawnError {
    Cwd(io::Error),
    Exec(io::Error),
    Contain(io::Error),
    Fork(io::Error),
}

impl SpawnError {
    /// The OS error, whichever step failed.
    pub fn into_io(self) -> io::Error {
        match self {
            SpawnError::Cwd(e)
            | SpawnError::Exec(e)
            | SpawnError::Contain(e)
            | SpawnError::Fork(e) => e,
        }
    }
}

/// Starts `p` with stdin/stdout/stderr on `fds`. Must run inside a tokio runtime (the exit is
/// watched through a pidfd registered with it), on a thread that outlives the child.
pub fn spawn(p: &Program, io: &Io<'_>) -> Result<Child, SpawnError> {
    match spawn_once(p, io) {
        Err(SpawnError::Exec(e)) if e.kind() == io::ErrorKind::NotFound && p.searched => {
            // The program moved since it was found: look it up again.
            forget_resolved();
            spawn_once(&p.found_again().map_err(SpawnError::Exec)?, io)
        }
        other => other,
    }
}

impl Program {
    /// The same program, its path looked up on its `PATH` again.
    fn found_again(&self) -> io::Result<Program> {
        let argv0 = OsStr::from_bytes(self.argv[0].as_bytes());
        let path_var = self
            .envp
            .iter()
            .find_map(|kv| kv.as_bytes().strip_prefix(b"PATH=").map(OsStr::from_bytes));
        let cwd = self
            .cwd
            .as_ref()
            .map(|c| Path::new(OsStr::from_bytes(c.as_bytes())));
        let path = resolve(argv0, path_var, cwd)?;
        Ok(Program {
            searched: false,
            path: cstr(path.as_os_str())?,
            argv: self.argv.clone(),
            envp: self.envp.clone(),
            cwd: self.cwd.clone(),
            death_signal: self.death_signal,
        })
    }
}

/// One start: the child is cloned into its setup (`child_main`), which reports a failure
/// before `execve` through `args`; then its exit is watched.
fn spawn_once(p: &Program, io: &Io<'_>) -> Result<Child, SpawnError> {
    let argv = null_terminated(&p.argv);
    let envp = null_terminated(&p.envp);
    let mut keep: Vec<RawFd> = io.keep.iter().copied().filter(|&k| k > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let args = ChildArgs {
        path: p.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: p.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        fds: io.stdio,
        // Born in the cgroup by clone3, the child does not move itself (see clone_child).
        procs_fd: io.cgroup_procs,
        keep: keep.as_ptr(),
        keep_len: keep.len(),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        death_signal: p.death_signal,
        errno: AtomicI32::new(0),
        stage: AtomicI32::new(0),
    };
    // The subreaper's reaper must not take this child before it is registered.
    let guard = super::group::spawn_guard();
    let pid = clone_child(&args, io.cgroup_dir)?;
    super::group::own_child(pid);
    drop(guard);
    setup_failure(pid, &args)?;
    watch_exit(pid)
}

/// `items` as a C array of pointers ending in NULL (they borrow from `items`).
fn null_terminated(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Clones the child onto this thread's reusable stack, born in `cgroup_dir` when it is an
/// open cgroup directory and clone3 can (else the child moves itself in through
/// `args.procs_fd`). Returns once the child has exec'd or failed its setup (CLONE_VFORK).
fn clone_child(args: &ChildArgs, cgroup_dir: RawFd) -> Result<libc::pid_t, SpawnError> {
    // One stack per spawning thread, reused (CLONE_VFORK suspends the thread until the child
    // execs, so it is never used twice at once); mapping one per job costs TLB shootdowns.
    thread_local! {
        static STACK: std::cell::RefCell<Option<Stack>> = const { std::cell::RefCell::new(None) };
    }
    let (top, region) = STACK
        .with(|s| {
            let mut s = s.borrow_mut();
            if s.is_none() {
                *s = Some(Stack::new()?);
            }
            let stack = s.as_ref().expect("made above");
            Ok::<_, io::Error>((stack.top(), stack.region()))
        })
        .map_err(SpawnError::Fork)?;
    let into_cgroup = cgroup_dir >= 0 && !NO_CLONE3.load(Ordering::Relaxed);
    // SAFETY: the stack outlives the child's use of it (CLONE_VFORK suspends this thread until
    // the child execs or exits); every signal, glibc's own included, is blocked around clone
    // (the raw call, as posix_spawn does) so no handler of this process runs on the child's
    // stack before the child resets them.
    unsafe {
        let all: u64 = !0;
        let mut old: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        );
        let mut result = None;
        if into_cgroup {
            // Its errors are the cgroup's (gone: ENOENT/ENODEV; not a leaf: EBUSY).
            result =
                clone_into_cgroup(args, cgroup_dir, region).map(|r| r.map_err(SpawnError::Contain));
        }
        let result = result.unwrap_or_else(|| {
            let pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                args as *const ChildArgs as *mut libc::c_void,
            );
            if pid < 0 {
                Err(SpawnError::Fork(io::Error::last_os_error()))
            } else {
                Ok(pid)
            }
        });
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        result
    }
}

/// clone3 with CLONE_INTO_CGROUP: the child is born in the job's cgroup, with no migration
/// afterwards (which costs the kernel a write lock on every thread group of the machine).
/// `None` where clone3 cannot (an older kernel, a seccomp profile): the caller clones the old
/// way and the child moves itself in; that is remembered.
///
/// # Safety
/// As `clone_child`: every signal blocked, `region` a stack nobody else uses until the child
/// has exec'd or exited.
unsafe fn clone_into_cgroup(
    args: &ChildArgs,
    cgroup_dir: RawFd,
    region: (u64, u64),
) -> Option<io::Result<libc::pid_t>> {
    let mut a = args_for_clone3(args);
    a.procs_fd = -1;
    let cl = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: region.0,
        stack_size: region.1,
        cgroup: cgroup_dir as u64,
        ..Default::default()
    };
    // SAFETY: the caller's contract; `a` lives until the child has exec'd (CLONE_VFORK).
    let r = unsafe { clone3(&cl, child_main, &a as *const ChildArgs as *mut libc::c_void) };
    if r >= 0 {
        args.errno
            .store(a.errno.load(Ordering::SeqCst), Ordering::SeqCst);
        args.stage
            .store(a.stage.load(Ordering::SeqCst), Ordering::SeqCst);
        Some(Ok(r as libc::pid_t))
    } else if matches!(
        -r as i32,
        libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM
    ) {
        NO_CLONE3.store(true, Ordering::Relaxed);
        None
    } else {
        Some(Err(io::Error::from_raw_os_error(-r as i32)))
    }
}

/// The child's setup failed before `execve` (it said so in `args`): reaped, and the failure
/// told by the stage it reached.
fn setup_failure(pid: libc::pid_t, args: &ChildArgs) -> Result<(), SpawnError> {
    let errno = args.errno.load(Ordering::SeqCst);
    if errno == 0 {
        return Ok(());
    }
    let mut st = 0;
    // SAFETY: reaping our own child, which has exited (it never got past setup).
    unsafe { libc::waitpid(pid, &mut st, 0) };
    super::group::forget_child(pid);
    let e = io::Error::from_raw_os_error(errno);
    Err(match args.stage.load(Ordering::SeqCst) {
        1 => SpawnError::Cwd(e),
        4 => SpawnError::Contain(e),
        _ => SpawnError::Exec(e),
    })
}

/// The started child, its exit watched through a pidfd registered with the runtime, or
/// through SIGCHLD where there are no pidfds. A child that cannot be watched is killed.
fn watch_exit(pid: libc::pid_t) -> Result<Child, SpawnError> {
    // Dropped on an error: a child nobody watches is killed and reaped (see Drop).
    let mut child = Child {
        pid,
        pidfd: None,
        status: None,
    };
    if NO_PIDFD.load(Ordering::Relaxed) {
        return Ok(child);
    }
    // SAFETY: pidfd_open on our own unreaped child; the fd is owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EACCES)
        ) {
            // No pidfd here (old kernel, seccomp): SIGCHLD from now on.
            tracing::debug!("pidfd_open: {e}; watching exits through SIGCHLD");
            NO_PIDFD.store(true, Ordering::Relaxed);
            let _ = sigchld();
            return Ok(child);
        }
        return Err(SpawnError::Fork(e));
    }
    // SAFETY: fd is a fresh pidfd we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: the AsyncFd owns the fd, so it stays open for as long as it is registered.
    child.pidfd =
        Some(unsafe { AsyncFd::register(owned) }.map_err(|e| SpawnError::Fork(e.into()))?);
    Ok(child)
}

fn reap(pid: libc::pid_t, status: &mut Option<ExitStatus>) -> io::Result<Option<ExitStatus>> {
    if status.is_some() {
        return Ok(*status);
    }
    let mut st = 0;
    // SAFETY: WNOHANG wait on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == pid {
        *status = Some(ExitStatus::from_raw(st));
        super::group::forget_child(pid);
    }
    Ok(*status)
}

impl Child {
    /// Reaps the process if it has exited (never blocks).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        reap(self.pid, &mut self.status)
    }

    /// Waits for the exit, woken by the pidfd, or by SIGCHLD where there is none (no
    /// polling either way).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let Some(pidfd) = &self.pidfd else {
            let mut rx = sigchld();
            loop {
                rx.borrow_and_update();
                if let Some(s) = reap(self.pid, &mut self.status)? {
                    return Ok(s);
                }
                if rx.changed().await.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        loop {
            if let Some(s) = reap(self.pid, &mut self.status)? {
                return Ok(s);
            }
            let mut g = pidfd.readable().await?;
            if let Some(s) = reap(self.pid, &mut self.status)? {
                return Ok(s);
            }
            g.clear_ready();
        }
    }

    /// Stops the child's process group (SIGTERM, SIGKILL after `grace`: see
    /// [`super::stop_group`]) and returns the leader's exit status.
    pub async fn stop(&mut self, grace: std::time::Duration) -> io::Result<ExitStatus> {
        let pid = self.pid;
        let status = &mut self.status;
        super::group::stop_group(pid, grace, &mut || {
            let _ = reap(pid, status);
        })
        .await;
        self.wait().await
    }

    /// The raw pidfd, or -1 under the SIGCHLD watch (tests).
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_ref().map_or(-1, |p| p.get_ref().as_raw_fd())
    }
}

impl Drop for Child {
    /// A child still running when its handle is dropped is killed with its group and reaped
    /// (off this thread, which may be a tokio worker).
    fn drop(&mut self) {
        if self.status.is_none() && self.pid > 0 {
            kill_and_reap(self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::process::tests::rt;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn child_gets_its_own_group_env_cwd_and_stdio() {
        let t = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(t.path().join("out")).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = Program::new(
            &argv(&[
                "sh",
                "-c",
                "echo $$ $(cut -d' ' -f5 /proc/$$/stat) $LH_X; pwd; exit 4",
            ]),
            [("LH_X", "value")],
            Some(t.path()),
        )
        .unwrap();
        let st = rt().block_on(async {
            let mut c = spawn(
                &p,
                &Io::stdio([null.as_raw_fd(), out.as_raw_fd(), out.as_raw_fd()]),
            )
            .unwrap();
            c.wait().await.unwrap()
        });
        assert_eq!(st.code(), Some(4));
        let text = std::fs::read_to_string(t.path().join("out")).unwrap();
        let mut lines = text.lines();
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first[0], first[1], "the child leads its own process group");
        assert_eq!(first[2], "value");
        assert_eq!(
            Path::new(lines.next().unwrap()).canonicalize().unwrap(),
            t.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn missing_programs_and_working_dirs_are_told_apart() {
        let err = Program::new(&argv(&["no-such-program-xyz"]), [("A", "b")], None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let p = Program::new(
            &argv(&["true"]),
            [("A", "b")],
            Some(Path::new("/no/such/dir")),
        )
        .unwrap();
        let r = rt().block_on(async { spawn(&p, &Io::stdio([0, 1, 2])).map(|_| ()) });
        assert!(matches!(r, Err(SpawnError::Cwd(e)) if e.kind() == io::ErrorKind::NotFound));
        let p = Program::new(&argv(&["/no/such/program"]), [("A", "b")], None).unwrap();
        let r = rt().block_on(async { spawn(&p, &Io::stdio([0, 1, 2])).map(|_| ()) });
        assert!(matches!(r, Err(SpawnError::Exec(e)) if e.kind() == io::ErrorKind::NotFound));
    }

    #[test]
    fn dropping_a_running_child_kills_its_group() {
        let t = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(t.path().join("pids")).unwrap();
        let p = Program::new(
            &argv(&["sh", "-c", "sleep 30 & echo $!; sleep 30"]),
            [("A", "b")],
            None,
        )
        .unwrap();
        rt().block_on(async {
            let c = spawn(&p, &Io::stdio([0, out.as_raw_fd(), 2])).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_to_string(t.path().join("pids"))
                .unwrap()
                .is_empty()
            {
                assert!(std::time::Instant::now() < deadline);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            drop(c);
        });
        let grandchild: i32 = std::fs::read_to_string(t.path().join("pids"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was reparented and killed; give init a moment to reap it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // SAFETY: signal 0 only checks for existence.
        while unsafe { libc::kill(grandchild, 0) } == 0 {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if stat.contains(") Z") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// `SigBlk` of `/proc/<pid>/status` as written by the child shell.
    #[test]
    fn the_child_starts_unblocked_with_only_stdio_and_the_fds_it_keeps() {
        let t = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(t.path().join("out")).unwrap();
        // An fd this process holds without close-on-exec, and one the job keeps.
        let path = std::ffi::CString::new(t.path().join("leak").to_str().unwrap()).unwrap();
        // SAFETY: plain open(2) without O_CLOEXEC on purpose; closed below.
        let leaked = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600) };
        let kept = std::fs::File::create(t.path().join("kept")).unwrap();
        assert!(leaked > 2);
        let p = Program::new(
            &argv(&[
                "sh",
                "-c",
                // Builtins only: dash blocks every signal around each fork, so a forked
                // `grep` could read the shell's mask inside that window.
                "while read -r l; do case $l in SigBlk*) echo \"$l\";; esac; done < /proc/$$/status; ls /proc/$$/fd > fds.txt",
            ]),
            [("A", "b")],
            Some(t.path()),
        )
        .unwrap();
        // The spawning thread blocks a signal: the job must not inherit that.
        // SAFETY: signal mask of this test thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let keep = [kept.as_raw_fd()];
        let st = rt().block_on(async {
            let mut c = spawn(
                &p,
                &Io {
                    stdio: [0, out.as_raw_fd(), 2],
                    cgroup_procs: -1,
                    cgroup_dir: -1,
                    keep: &keep,
                },
            )
            .unwrap();
            c.wait().await.unwrap()
        });
        // SAFETY: our own fd.
        unsafe { libc::close(leaked) };
        assert!(st.success());
        let text = std::fs::read_to_string(t.path().join("out")).unwrap();
        assert!(text.starts_with("SigBlk:\t0000000000000000\n"), "{text}");
        let fds: Vec<i32> = std::fs::read_to_string(t.path().join("fds.txt"))
            .unwrap()
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert!(fds.contains(&kept.as_raw_fd()), "kept fd closed: {fds:?}");
        assert!(
            !fds.contains(&leaked),
            "inherited fd {leaked} leaked: {fds:?}"
        );
        assert!(
            fds.iter()
                .all(|&f| f <= 2 || f == kept.as_raw_fd() || f >= 10),
            "{fds:?}"
        );
    }

    #[test]
    fn the_childs_stack_has_a_guard_page_below_it() {
        let s = Stack::new().unwrap();
        let base = s.base as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let region = |addr: usize| {
            maps.lines()
                .find(|l| {
                    let (range, _) = l.split_once(' ').unwrap();
                    let (a, b) = range.split_once('-').unwrap();
                    let (a, b) = (
                        usize::from_str_radix(a, 16).unwrap(),
                        usize::from_str_radix(b, 16).unwrap(),
                    );
                    a <= addr && addr < b
                })
                .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        };
        assert_eq!(region(base).as_deref(), Some("---p"), "guard page");
        assert_eq!(region(s.top() as usize - 16).as_deref(), Some("rw-p"));
    }

    #[test]
    fn a_child_whose_exit_cannot_be_watched_is_killed_and_reaped() {
        // What spawn does when the pidfd cannot be registered: kill the child's group and
        // reap it off the calling thread. Nothing of it may be left, not even a zombie.
        let p = Program::new(&argv(&["sleep", "30"]), [("LH_UNWATCHED", "1")], None).unwrap();
        let pid = rt().block_on(async {
            let c = spawn(&p, &Io::stdio([0, 1, 2])).unwrap();
            let pid = c.pid;
            // Not reaped by the handle: as if it had never been watched.
            std::mem::forget(c);
            pid
        });
        kill_and_reap(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // SAFETY: signal 0 only checks for existence; once reaped the pid is gone.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the unwatched child {pid} was not reaped"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
