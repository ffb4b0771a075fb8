//! The state directory: `$LABHOST_HOME`, else `.labhost/` found by stepping up from the
//! working directory (like git), else `.labhost/` created at the enclosing project root
//! (the nearest folder with `.git`), else the XDG state dir (`~/.local/state/labhost`).
use std::path::{Path, PathBuf};

use crate::error::{io_err, LabResult};

/// Where the state directory is, without creating it.
pub fn locate(cwd: &Path) -> PathBuf {
    if let Some(h) = crate::config::home() {
        return h;
    }
    for dir in cwd.ancestors() {
        let candidate = dir.join(".labhost");
        if candidate.is_dir() {
            return candidate;
        }
    }
    for dir in cwd.ancestors() {
        if dir.join(".git").exists() {
            return dir.join(".labhost");
        }
    }
    xdg_state_home().join("labhost")
}

fn xdg_state_home() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state"),
        None => std::env::temp_dir(),
    }
}

/// The state directory for this process, created if missing.
pub fn dir() -> LabResult<PathBuf> {
    // Asked for per job (and per wait): remembered while LABHOST_HOME and the cwd stay put.
    type Key = (Option<std::ffi::OsString>, PathBuf);
    static LAST: std::sync::Mutex<Option<(Key, PathBuf)>> = std::sync::Mutex::new(None);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let key = (crate::config::home_raw(), cwd);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, d)) = last.as_ref() {
        if *k == key && d.is_dir() {
            return Ok(d.clone());
        }
    }
    let d = locate(&key.1);
    if d.to_str().is_none() {
        return Err(crate::error::LabError::new(
            "config.invalid",
            format!(
                "the state directory {} is not a valid UTF-8 path (labhost records its paths as text): set LABHOST_HOME",
                d.to_string_lossy()
            ),
        ));
    }
    std::fs::create_dir_all(&d).map_err(|e| io_err("state", "cannot create state dir", &d, &e))?;
    *last = Some((key, d.clone()));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_enclosing_dot_labhost_then_git_root() {
        // LABHOST_HOME would short-circuit; these assertions only hold without it.
        if crate::config::home().is_some() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(t.path().join("a/.git")).unwrap();
        assert_eq!(locate(&deep), t.path().join("a/.labhost"));
        std::fs::create_dir_all(t.path().join("a/b/.labhost")).unwrap();
        assert_eq!(locate(&deep), t.path().join("a/b/.labhost"));
    }
}
