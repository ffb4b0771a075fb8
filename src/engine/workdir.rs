//! Azure ML's job runtime contract on this machine: a job runs in its own copy of its code
//! folder (`<run folder>/wd`), whose `outputs/` and `logs/` are links to the run folder's
//! `outputs/` and `logs/` — what the job writes to `./outputs` is the run's artifacts, as
//! Azure uploads a job's `./outputs`, and no two trials of a sweep share a working folder.
//! Files are hard links to the snapshot (a copy where the file system refuses a link), so a
//! thousand trials of a large code folder cost a thousand directory trees, not the data.
use std::path::Path;

use crate::error::{io_err, LabResult};

/// The working folder of a job that runs in its own copy of `src`: made once (a retry or a
/// resumed attempt keeps it), returned.
pub fn prepare(src: &Path, run_dir: &Path) -> LabResult<std::path::PathBuf> {
    let wd = run_dir.join("wd");
    let done = run_dir.join(".wd-done");
    for d in ["outputs", "logs"] {
        let p = run_dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| io_err("jobs", "cannot create", &p, &e))?;
    }
    if done.exists() {
        return Ok(wd);
    }
    if wd.exists() {
        // A copy cut short (the host died while making it): start it again.
        std::fs::remove_dir_all(&wd).map_err(|e| io_err("jobs", "cannot remove", &wd, &e))?;
    }
    std::fs::create_dir_all(&wd).map_err(|e| io_err("jobs", "cannot create", &wd, &e))?;
    link_tree(src, &wd, true)?;
    for d in ["outputs", "logs"] {
        let link = wd.join(d);
        std::os::unix::fs::symlink(Path::new("..").join(d), &link)
            .map_err(|e| io_err("jobs", "cannot link", &link, &e))?;
    }
    std::fs::write(&done, b"").map_err(|e| io_err("jobs", "cannot write", &done, &e))?;
    Ok(wd)
}

/// `dst` as a copy of `src`: folders made, files hard-linked (copied across file systems),
/// symbolic links kept as links. At the top, the snapshot's marker and any `outputs/` or
/// `logs/` of the code folder are left out (the run's own take their place).
fn link_tree(src: &Path, dst: &Path, top: bool) -> LabResult<()> {
    let rd = std::fs::read_dir(src).map_err(|e| io_err("jobs", "cannot read", src, &e))?;
    for entry in rd {
        let entry = entry.map_err(|e| io_err("jobs", "cannot read", src, &e))?;
        let name = entry.file_name();
        if top
            && matches!(
                name.to_str(),
                Some("outputs" | "logs" | ".labhost-snapshot-done")
            )
        {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let ty = entry
            .file_type()
            .map_err(|e| io_err("jobs", "cannot read", &from, &e))?;
        if ty.is_dir() {
            std::fs::create_dir(&to).map_err(|e| io_err("jobs", "cannot create", &to, &e))?;
            link_tree(&from, &to, false)?;
        } else if ty.is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(|e| io_err("jobs", "cannot read", &from, &e))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| io_err("jobs", "cannot link", &to, &e))?;
        } else if ty.is_file() && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| io_err("jobs", "cannot copy", &from, &e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_gets_its_own_copy_with_the_runs_outputs_and_logs() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("code");
        std::fs::create_dir_all(src.join("pkg")).unwrap();
        std::fs::create_dir_all(src.join("outputs")).unwrap();
        std::fs::write(src.join("train.py"), "print(1)").unwrap();
        std::fs::write(src.join("pkg/m.py"), "x = 1").unwrap();
        std::fs::write(src.join("outputs/stale.txt"), "old").unwrap();
        std::os::unix::fs::symlink("train.py", src.join("link.py")).unwrap();
        let run = t.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let wd = prepare(&src, &run).unwrap();
        assert_eq!(
            std::fs::read_to_string(wd.join("pkg/m.py")).unwrap(),
            "x = 1"
        );
        assert_eq!(
            std::fs::read_link(wd.join("link.py")).unwrap(),
            Path::new("train.py")
        );
        // ./outputs is the run's, without the code folder's own outputs.
        std::fs::write(wd.join("outputs/world.txt"), "w").unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("outputs/world.txt")).unwrap(),
            "w"
        );
        assert!(!run.join("outputs/stale.txt").exists());
        assert!(wd.join("logs").is_dir());
        // Writing a file in the copy does not touch the code folder's tree.
        std::fs::write(wd.join("new.txt"), "n").unwrap();
        assert!(!src.join("new.txt").exists());
        // Made once: a second call keeps what the job wrote.
        assert_eq!(prepare(&src, &run).unwrap(), wd);
        assert!(wd.join("new.txt").exists());
    }
}
