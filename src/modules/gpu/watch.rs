//! How the head of the ledger's queue sleeps: inotify close events in the ledger folder.
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// inotify on the ledger folder: wakes the waiting head when any lock file is closed (a
/// release, or a holder's death). Falls back to plain sleeping if inotify is unavailable.
pub(super) struct Watch {
    fd: Option<std::os::fd::OwnedFd>,
}

impl Watch {
    /// One watch per folder for the life of the process: closing an inotify fd costs the
    /// kernel an RCU grace period (milliseconds), far more than a reservation.
    pub(super) fn shared(dir: &Path) -> Arc<Watch> {
        static W: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Watch>>>> =
            std::sync::OnceLock::new();
        let mut m = W
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(Watch::new(dir)))
            .clone()
    }

    pub(super) fn new(dir: &Path) -> Self {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the fd is owned by OwnedFd from here on.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            if fd < 0 {
                return Watch { fd: None };
            }
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut c = dir.as_os_str().as_bytes().to_vec();
            c.push(0);
            let w = libc::inotify_add_watch(
                fd,
                c.as_ptr().cast(),
                libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE,
            );
            if w < 0 {
                return Watch { fd: None };
            }
            Watch { fd: Some(owned) }
        }
    }

    pub(super) fn wait(&self, max: Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(max);
            return;
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; then drain the non-blocking fd into a local buffer.
        unsafe {
            if libc::poll(&mut p, 1, max.as_millis().min(i32::MAX as u128) as i32) > 0 {
                let mut buf = [0u8; 4096];
                while libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) > 0 {}
            }
        }
    }
}
