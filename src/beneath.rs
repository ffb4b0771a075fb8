//! Paths that come from a client or a file, resolved beneath their root and nowhere else.
//!
//! [`rel_path`] checks the text: relative, no `..`, no backslash or NUL, no over-long names.
//! [`Root`] then opens what it names with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`:
//! the kernel refuses any step — a `..`, an absolute symlink, a symlink whose target climbs
//! out — that would leave the root, whatever was planted in the folder meanwhile. Where
//! `openat2` is missing (Linux before 5.6, or a seccomp filter), each component is opened
//! with `O_NOFOLLOW` from the one before: no symlink is followed at all.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The longest name of one component, and of a whole relative path, that is taken.
pub const MAX_NAME: usize = 255;
pub const MAX_PATH: usize = 1024;

/// `s` as a normalised relative path (components joined by `/`; empty for the root
/// itself), or why it is refused. Empty and `.` components are dropped.
pub fn rel_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        return Err(format!("'{s}' is absolute; artifact paths are relative"));
    }
    if s.contains('\\') {
        return Err(format!("'{s}' contains a backslash"));
    }
    if s.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    if s.len() > MAX_PATH {
        return Err(format!("the path is longer than {MAX_PATH} bytes"));
    }
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("'{s}' climbs out with '..'")),
            c if c.len() > MAX_NAME => {
                return Err(format!("a name in '{s}' is longer than {MAX_NAME} bytes"))
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

/// One entry of a listed folder. A symlink is shown as itself (never followed).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
}

/// A folder everything is opened beneath.
pub struct Root {
    fd: OwnedFd,
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl Root {
    /// Opens `root` (made first when `create`).
    pub fn open(root: &Path, create: bool) -> io::Result<Root> {
        if create {
            std::fs::create_dir_all(root)?;
        }
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid C string; the fd returned is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Root {
            // SAFETY: fd is fresh and ours.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens `rel` (from [`rel_path`]) beneath the root with `flags` (O_CLOEXEC added).
    fn open_at(&self, rel: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { "." } else { rel };
        if !NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            let how = OpenHow {
                flags: (flags | libc::O_CLOEXEC) as u64,
                mode: if flags & libc::O_CREAT != 0 {
                    mode as u64
                } else {
                    0
                },
                resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            };
            let c = cstr(rel)?;
            // SAFETY: `how` and `c` live across the call; the size is the struct's.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if fd >= 0 {
                // SAFETY: fd is fresh and ours.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EPERM) => {
                    NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed)
                }
                _ => return Err(e),
            }
        }
        self.open_walk(rel, flags, mode)
    }

    /// Without openat2: each component from the one before, `O_NOFOLLOW` all the way.
    fn open_walk(&self, rel: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut dir: Option<OwnedFd> = None;
        let at = |d: &Option<OwnedFd>| d.as_ref().map_or(self.fd.as_raw_fd(), |f| f.as_raw_fd());
        for (i, c) in parts.iter().enumerate() {
            if *c == ".." {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            let last = i + 1 == parts.len();
            let f = if last {
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC
            } else {
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
            };
            let name = cstr(c)?;
            // SAFETY: a valid dir fd and C string; the fd returned is owned below.
            let fd = unsafe { libc::openat(at(&dir), name.as_ptr(), f, mode as libc::c_uint) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is fresh and ours.
            dir = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        match dir {
            Some(d) => Ok(d),
            None => {
                // The root itself.
                // SAFETY: a valid fd and a static C string.
                let fd = unsafe {
                    libc::openat(self.fd.as_raw_fd(), c".".as_ptr(), flags | libc::O_CLOEXEC)
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: fd is fresh and ours.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        }
    }

    /// Reads the file `rel`.
    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut f = self.file(rel)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }

    /// Opens the file `rel` for reading (a folder is refused with `EISDIR`).
    pub fn file(&self, rel: &str) -> io::Result<std::fs::File> {
        let f = std::fs::File::from(self.open_at(rel, libc::O_RDONLY, 0)?);
        if f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(f)
    }

    /// Whether `rel` is a folder beneath the root (false when missing or a file).
    pub fn is_dir(&self, rel: &str) -> bool {
        self.open_at(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .is_ok()
    }

    /// Writes the file `rel` (its folders made beneath the root as needed), replacing it.
    pub fn write(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        if rel.is_empty() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        if let Some((dir, _)) = rel.rsplit_once('/') {
            self.make_dirs(dir)?;
        }
        let fd = self.open_at(
            rel,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o644,
        )?;
        std::fs::File::from(fd).write_all(data)
    }

    /// `mkdir -p rel`, each step beneath the root.
    fn make_dirs(&self, rel: &str) -> io::Result<()> {
        let mut done = String::new();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            let parent = self.open_at(&done, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let name = cstr(c)?;
            // SAFETY: a valid dir fd and C string.
            if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
            }
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(c);
        }
        // What exists there must be a folder reached beneath the root.
        self.open_at(&done, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map(|_| ())
    }

    /// The entries of the folder `rel`, sorted by name; none when it does not exist.
    pub fn list(&self, rel: &str) -> io::Result<Vec<Entry>> {
        let fd = match self.open_at(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        // The folder as opened (beneath the root), read through its fd.
        let rd = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // DirEntry::metadata does not follow symlinks.
            let md = e.metadata()?;
            out.push(Entry {
                name,
                is_dir: md.is_dir(),
                size: if md.is_file() { md.len() } else { 0 },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Whether an error is the kernel refusing to leave the root (or to follow a symlink).
pub fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_texts_are_refused_and_plain_ones_normalised() {
        for bad in [
            "/etc/passwd",
            "//etc",
            "a/../../x",
            "..",
            "a\\..\\b",
            "a\0b",
            &"x".repeat(300),
            &"a/".repeat(600),
        ] {
            assert!(rel_path(bad).is_err(), "{bad:?} taken");
        }
        assert_eq!(rel_path("a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(rel_path("").unwrap(), "");
    }

    #[test]
    fn symlinks_planted_in_the_root_do_not_lead_out() {
        let t = std::env::temp_dir().join(format!("labhost-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let root = t.join("root");
        let outside = t.join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::write(root.join("sub/in"), "in").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink("../outside/secret", root.join("up")).unwrap();
        std::os::unix::fs::symlink("sub/in", root.join("inner")).unwrap();
        let r = Root::open(&root, false).unwrap();
        assert_eq!(r.read("sub/in").unwrap(), b"in");
        assert!(r.read("out/secret").is_err());
        assert!(r.read("up").is_err());
        assert!(r.write("out/new", b"x").is_err());
        assert!(r.write("up", b"x").is_err());
        assert!(r.list("out").is_err());
        assert!(!outside.join("new").exists());
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
        // Within the root, a symlink is followed where openat2 is there; never out of it.
        if !NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            assert_eq!(r.read("inner").unwrap(), b"in");
        }
        r.write("a/b/c.txt", b"abc").unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).unwrap(), b"abc");
        let names: Vec<String> = r.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "inner", "out", "sub", "up"]);
        let _ = std::fs::remove_dir_all(&t);
    }
}
