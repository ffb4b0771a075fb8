//! `git`: provenance for every run (InnerEye `GitInformation`, `get_git_tags`,
//! `additional_run_tags`, `create_experiment_name`). libgit2 is vendored; no network.
//!
//! Values given on the command line (`--build_branch`, `--build_source_id`,
//! `--build_source_author`, `--build_source_message`, `--build_source_repository`, as in
//! InnerEye's AzureConfig) take precedence over what the repository says, so a CI build agent
//! with a shallow or missing checkout still tags runs correctly.
pub mod rhai;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{Repository, StatusOptions};
use serde::Serialize;

use crate::error::{LabError, LabResult};

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GitInfo {
    /// The repository's folder name.
    pub repository: String,
    /// Branch name; `None` on a detached HEAD (or an unborn repository without commits).
    pub branch: Option<String>,
    pub is_detached: bool,
    pub commit_id: String,
    /// First line of the commit message.
    pub commit_message: String,
    pub commit_author: String,
    /// Uncommitted changes to tracked files or untracked files (ignored files do not count).
    pub is_dirty: bool,
}

/// Command-line values that win over the repository (InnerEye AzureConfig names).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub build_branch: Option<String>,
    pub build_source_id: Option<String>,
    pub build_source_author: Option<String>,
    pub build_source_message: Option<String>,
    pub build_source_repository: Option<String>,
}

impl Overrides {
    fn complete(&self) -> bool {
        self.build_branch.is_some()
            && self.build_source_id.is_some()
            && self.build_source_author.is_some()
            && self.build_source_message.is_some()
            && self.build_source_repository.is_some()
    }
}

fn open(path: &Path) -> LabResult<Repository> {
    Repository::discover(path).map_err(|e| {
        if e.code() == git2::ErrorCode::NotFound {
            LabError::new(
                "git.not_a_repo",
                format!("'{}' is not inside a git repository", path.display()),
            )
        } else {
            LabError::new(
                "git.error",
                format!(
                    "cannot open the repository at '{}': {}",
                    path.display(),
                    e.message()
                ),
            )
        }
    })
}

fn git_err(what: &str, e: git2::Error) -> LabError {
    LabError::new("git.error", format!("{what}: {}", e.message()))
}

/// Paths with uncommitted changes (tracked changes and untracked files; ignored files not).
pub fn changed_files(repo: &Repository) -> LabResult<Vec<String>> {
    let mut o = StatusOptions::new();
    o.include_untracked(true)
        .include_ignored(false)
        .recurse_untracked_dirs(true);
    let st = repo
        .statuses(Some(&mut o))
        .map_err(|e| git_err("cannot read status", e))?;
    Ok(st
        .iter()
        .filter(|s| {
            s.status() != git2::Status::CURRENT && !s.status().contains(git2::Status::IGNORED)
        })
        .filter_map(|s| s.path().ok().map(str::to_string))
        .collect())
}

pub fn info(path: &Path, o: &Overrides) -> LabResult<GitInfo> {
    if o.complete() {
        return Ok(GitInfo {
            repository: o.build_source_repository.clone().unwrap_or_default(),
            branch: o.build_branch.clone(),
            is_detached: false,
            commit_id: o.build_source_id.clone().unwrap_or_default(),
            commit_message: o.build_source_message.clone().unwrap_or_default(),
            commit_author: o.build_source_author.clone().unwrap_or_default(),
            is_dirty: false,
        });
    }
    let repo = open(path)?;
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.path().to_path_buf());
    let repository = workdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (branch, detached, commit) = match repo.head() {
        Ok(head) => {
            let detached = repo.head_detached().unwrap_or(false);
            let branch = if detached {
                None
            } else {
                head.shorthand().ok().map(str::to_string)
            };
            (branch, detached, head.peel_to_commit().ok())
        }
        // Unborn branch: a repository without commits.
        Err(_) => (None, false, None),
    };
    let (id, msg, author) = match &commit {
        Some(c) => (
            c.id().to_string(),
            c.summary().ok().flatten().unwrap_or_default().to_string(),
            c.author().name().unwrap_or_default().to_string(),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let is_dirty = !changed_files(&repo)?.is_empty();
    Ok(GitInfo {
        repository: o.build_source_repository.clone().unwrap_or(repository),
        branch: o.build_branch.clone().or(branch),
        is_detached: o.build_branch.is_none() && detached,
        commit_id: o.build_source_id.clone().unwrap_or(id),
        commit_message: o.build_source_message.clone().unwrap_or(msg),
        commit_author: o.build_source_author.clone().unwrap_or(author),
        is_dirty,
    })
}

/// Errors with kind `git.dirty`, listing the changed files, unless the tree is clean.
pub fn require_clean(path: &Path) -> LabResult<()> {
    let repo = open(path)?;
    let changed = changed_files(&repo)?;
    if changed.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = changed.iter().take(20).map(String::as_str).collect();
    let more = if changed.len() > 20 {
        format!(" and {} more", changed.len() - 20)
    } else {
        String::new()
    };
    Err(LabError::new(
        "git.dirty",
        format!(
            "the working tree has uncommitted changes: {}{more}",
            shown.join(", ")
        ),
    ))
}

/// True when `path` is in a repository's index (tracked by git).
pub fn is_tracked(path: &Path) -> bool {
    let Ok(abs) = path.canonicalize() else {
        return false;
    };
    let Ok(repo) = Repository::discover(abs.parent().unwrap_or(&abs)) else {
        return false;
    };
    let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) else {
        return false;
    };
    let Ok(rel) = abs.strip_prefix(&workdir) else {
        return false;
    };
    repo.index().ok().and_then(|i| i.get_path(rel, 0)).is_some()
}

/// InnerEye `get_git_tags` + `additional_run_tags`: the provenance tags of a run. Every value
/// passes through secret redaction (a token on the command line must not become a tag).
pub fn tags(
    info: &GitInfo,
    commandline: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let branch = match (&info.branch, info.is_detached) {
        (Some(b), _) => b.clone(),
        (None, true) => format!("detached@{}", info.commit_id.get(..7).unwrap_or("")),
        (None, false) => String::new(),
    };
    let mut t = BTreeMap::from([
        ("source_repository".to_string(), info.repository.clone()),
        ("source_branch".to_string(), branch),
        ("source_id".to_string(), info.commit_id.clone()),
        (
            "source_dirty".to_string(),
            if info.is_dirty { "True" } else { "False" }.to_string(),
        ),
        ("source_author".to_string(), info.commit_author.clone()),
        ("source_message".to_string(), info.commit_message.clone()),
        ("build_user".to_string(), whoami()),
        ("commandline_args".to_string(), commandline.to_string()),
    ]);
    for (k, v) in extra {
        t.insert(k.clone(), v.clone());
    }
    t.into_iter()
        .map(|(k, v)| (k, crate::redact::apply(&v)))
        .collect()
}

pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid cannot fail.
            format!("uid{}", unsafe { libc::getuid() })
        })
}

/// InnerEye `to_azure_friendly_string`: runs of non-word characters become one `_`.
pub fn to_azure_friendly_string(x: &str) -> String {
    let mut out = String::new();
    for c in x.chars() {
        let c = if c.is_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// InnerEye `create_experiment_name`: the given name, else the branch (without
/// `refs/heads/`), made Azure-friendly; else `<user>_<yyyymmdd_hhmmss>`.
pub fn experiment_name(given: Option<&str>, branch: Option<&str>) -> String {
    if let Some(g) = given.filter(|g| !g.is_empty()) {
        return g.to_string();
    }
    match branch.filter(|b| !b.is_empty()) {
        Some(b) => to_azure_friendly_string(b.strip_prefix("refs/heads/").unwrap_or(b)),
        None => format!(
            "{}_{}",
            whoami(),
            chrono::Local::now().format("%Y%m%d_%H%M%S")
        ),
    }
}

/// The repository root containing `path`, if any.
pub fn root(path: &Path) -> Option<PathBuf> {
    Repository::discover(path)
        .ok()?
        .workdir()
        .map(Path::to_path_buf)
}

/// The commit id of HEAD of the repository containing `path`, if there is one (for labels and
/// run records; no error outside a repository).
pub fn head_commit(path: &Path) -> Option<String> {
    info(path, &Overrides::default()).ok().map(|i| i.commit_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sh(dir: &Path, cmd: &str) {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    }

    pub fn repo() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        sh(
            t.path(),
            "git init -q -b main && git config user.email a@b.c && git config user.name 'Ada Lovelace' \
             && echo '*.log' > .gitignore && echo x > a.txt && git add . && git commit -q -m 'first commit' -m 'body'",
        );
        t
    }

    #[test]
    fn info_of_a_clean_repo_and_dirty_detection() {
        let t = repo();
        let i = info(t.path(), &Overrides::default()).unwrap();
        assert_eq!(i.branch.as_deref(), Some("main"));
        assert_eq!(i.commit_message, "first commit");
        assert_eq!(i.commit_author, "Ada Lovelace");
        assert_eq!(i.commit_id.len(), 40);
        assert!(!i.is_dirty);
        std::fs::write(t.path().join("run.log"), "ignored").unwrap();
        assert!(
            !info(t.path(), &Overrides::default()).unwrap().is_dirty,
            "ignored files made it dirty"
        );
        std::fs::write(t.path().join("a.txt"), "changed").unwrap();
        std::fs::write(t.path().join("new.txt"), "new").unwrap();
        assert!(info(t.path(), &Overrides::default()).unwrap().is_dirty);
        let e = require_clean(t.path()).unwrap_err();
        assert_eq!(e.kind, "git.dirty");
        assert!(
            e.message.contains("a.txt")
                && e.message.contains("new.txt")
                && !e.message.contains("run.log"),
            "{}",
            e.message
        );
    }

    #[test]
    fn detached_head_outside_repo_and_overrides() {
        let t = repo();
        sh(t.path(), "git checkout -q --detach HEAD");
        let i = info(t.path(), &Overrides::default()).unwrap();
        assert_eq!(i.branch, None);
        assert!(i.is_detached);
        let tg = tags(&i, "labhost run x", &BTreeMap::new());
        assert_eq!(
            tg["source_branch"],
            format!("detached@{}", &i.commit_id[..7])
        );
        let o = Overrides {
            build_branch: Some("release/1.2".into()),
            ..Default::default()
        };
        let i = info(t.path(), &o).unwrap();
        assert_eq!(i.branch.as_deref(), Some("release/1.2"));
        assert!(!i.is_detached);
        let out = tempfile::tempdir().unwrap();
        let e = info(out.path(), &Overrides::default()).unwrap_err();
        assert_eq!(e.kind, "git.not_a_repo");
        let full = Overrides {
            build_branch: Some("b".into()),
            build_source_id: Some("abc".into()),
            build_source_author: Some("ci".into()),
            build_source_message: Some("m".into()),
            build_source_repository: Some("r".into()),
        };
        assert_eq!(info(out.path(), &full).unwrap().commit_id, "abc");
    }

    #[test]
    fn tracked_files_and_names() {
        let t = repo();
        assert!(is_tracked(&t.path().join("a.txt")));
        std::fs::write(t.path().join("b.txt"), "").unwrap();
        assert!(!is_tracked(&t.path().join("b.txt")));
        assert_eq!(
            to_azure_friendly_string("user/feature-x.2"),
            "user_feature_x_2"
        );
        assert_eq!(
            experiment_name(None, Some("refs/heads/ant/my-branch")),
            "ant_my_branch"
        );
        assert_eq!(experiment_name(Some("given"), Some("b")), "given");
        assert!(experiment_name(None, None).starts_with(&format!("{}_", whoami())));
    }
}
