//! `fs`: files and paths. Writes are atomic (temp file in the same folder + rename), so a
//! crash never leaves a half-written file behind.
pub mod rhai;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, LabError, LabResult};

pub fn read(path: &Path) -> LabResult<String> {
    let bytes = std::fs::read(path).map_err(|e| io_err("fs", "cannot read", path, &e))?;
    String::from_utf8(bytes).map_err(|e| {
        LabError::new(
            "fs.invalid_data",
            format!(
                "cannot read '{}': not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Writes `data` atomically: a temp file beside `path`, fsync, then rename over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> LabResult<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(LabError::new(
            "fs.not_found",
            format!(
                "cannot write '{}': folder '{}' does not exist",
                path.display(),
                parent.display()
            ),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".labhost-tmp-")
        .tempfile_in(&parent)
        .map_err(|e| io_err("fs", "cannot write", path, &e))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| io_err("fs", "cannot write", path, &e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = tmp.as_file().set_permissions(meta.permissions());
    }
    tmp.persist(path)
        .map_err(|e| io_err("fs", "cannot write", path, &e.error))?;
    Ok(())
}

pub fn append(path: &Path, text: &str) -> LabResult<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err("fs", "cannot append to", path, &e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io_err("fs", "cannot append to", path, &e))
}

pub fn mkdir(path: &Path) -> LabResult<()> {
    std::fs::create_dir_all(path).map_err(|e| io_err("fs", "cannot create folder", path, &e))
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveOpts {
    /// Remove a folder and everything in it.
    #[serde(default)]
    pub recursive: bool,
    /// A path that does not exist is not an error.
    #[serde(default)]
    pub missing_ok: bool,
}

pub fn remove(path: &Path, opts: RemoveOpts) -> LabResult<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.missing_ok => return Ok(()),
        Err(e) => return Err(io_err("fs", "cannot remove", path, &e)),
    };
    let r = if meta.is_dir() {
        if opts.recursive {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_dir(path)
        }
    } else {
        std::fs::remove_file(path)
    };
    r.map_err(|e| {
        let mut err = io_err("fs", "cannot remove", path, &e);
        if err.kind == "fs.directory_not_empty" {
            err.message += " (pass #{recursive: true} to remove a folder tree)";
        }
        err
    })
}

/// Entry names of a folder, sorted.
pub fn list(dir: &Path) -> LabResult<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_err("fs", "cannot list", dir, &e))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Paths matching a glob pattern (`**` recurses), sorted.
pub fn glob(pattern: &str) -> LabResult<Vec<String>> {
    let paths = ::glob::glob(pattern).map_err(|e| {
        LabError::new(
            "fs.invalid_pattern",
            format!(
                "invalid glob pattern '{pattern}': {} at character {}",
                e.msg, e.pos
            ),
        )
    })?;
    let mut out: Vec<String> = paths
        .filter_map(|p| p.ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    out.sort();
    Ok(out)
}

/// Copies a file, or a folder recursively. Copying a file onto a folder puts it inside.
pub fn copy(src: &Path, dst: &Path) -> LabResult<()> {
    let meta = std::fs::metadata(src).map_err(|e| io_err("fs", "cannot copy", src, &e))?;
    if meta.is_dir() {
        mkdir(dst)?;
        for name in list(src)? {
            copy(&src.join(&name), &dst.join(&name))?;
        }
        return Ok(());
    }
    let target = if dst.is_dir() {
        dst.join(src.file_name().unwrap_or_default())
    } else {
        dst.to_path_buf()
    };
    std::fs::copy(src, &target)
        .map(|_| ())
        .map_err(|e| io_err("fs", "cannot copy to", &target, &e))
}

pub fn join(parts: &[String]) -> String {
    let mut p = PathBuf::new();
    for part in parts {
        p.push(part);
    }
    p.to_string_lossy().into_owned()
}

pub fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn extension(path: &str) -> String {
    Path::new(path)
        .extension()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(read(&p).unwrap(), "two");
        assert_eq!(list(t.path()).unwrap(), vec!["a.txt"]);
        let e = write_atomic(&t.path().join("missing/b.txt"), b"x").unwrap_err();
        assert_eq!(e.kind, "fs.not_found");
    }

    #[test]
    fn remove_needs_recursive_for_trees() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        mkdir(&d.join("e/f")).unwrap();
        let e = remove(&d, RemoveOpts::default()).unwrap_err();
        assert_eq!(e.kind, "fs.directory_not_empty");
        assert!(e.message.contains("recursive"));
        remove(
            &d,
            RemoveOpts {
                recursive: true,
                missing_ok: false,
            },
        )
        .unwrap();
        assert!(!d.exists());
        assert_eq!(
            remove(&d, RemoveOpts::default()).unwrap_err().kind,
            "fs.not_found"
        );
        remove(
            &d,
            RemoveOpts {
                recursive: false,
                missing_ok: true,
            },
        )
        .unwrap();
    }

    #[test]
    fn non_utf8_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("bin");
        std::fs::write(&p, [b'o', b'k', 0xff]).unwrap();
        let e = read(&p).unwrap_err();
        assert_eq!(e.kind, "fs.invalid_data");
        assert!(e.message.contains("offset 2"), "{}", e.message);
    }
}
