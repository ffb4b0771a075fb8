//! `util`: InnerEye `azure_util` / `parser_util` helpers, with InnerEye's semantics (the
//! table tests use the examples from InnerEye's docs). Where labhost differs it says so.
pub mod rhai;

use std::path::{Path, PathBuf};

use crate::error::{LabError, LabResult};

/// `run_duration_string_to_seconds`: `"3.5h"` → 12600, `""` → None. InnerEye takes one
/// number and one unit (s, m, h, d); labhost also takes `1h30m`, `250ms` and bare seconds.
/// Like InnerEye the result is whole seconds (truncated).
pub fn run_duration_string_to_seconds(s: &str) -> LabResult<Option<i64>> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::util::parse_duration(s)?.as_secs() as i64))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `split_recovery_id`: `experiment:run` → (experiment, run); a bare Azure run id
/// `<experiment>_<digits>_<hex>` or `<experiment>_<digits>` → (experiment, id).
pub fn split_recovery_id(id: &str) -> LabResult<(String, String)> {
    let id = id.trim();
    let parts: Vec<&str> = id.split(':').collect();
    match parts.len() {
        2 => return Ok((parts[0].to_string(), parts[1].to_string())),
        n if n > 2 => {
            return Err(LabError::new(
                "util.invalid_recovery_id",
                format!(
                    "recovery_id must be in the format 'experiment_name:run_id', but got: {id}"
                ),
            ))
        }
        _ => {}
    }
    let bad = || {
        LabError::new(
            "util.invalid_recovery_id",
            format!("the recovery ID was not in the expected format: {id}"),
        )
    };
    if !id.chars().all(is_word) {
        return Err(bad());
    }
    let segs: Vec<&str> = id.split('_').collect();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let hex = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    // ^(\w+)_\d+_[0-9a-f]+$ : the last two segments are forced (they cannot hold '_').
    if segs.len() >= 3 && hex(segs[segs.len() - 1]) && digits(segs[segs.len() - 2]) {
        let exp = segs[..segs.len() - 2].join("_");
        if !exp.is_empty() {
            return Ok((exp, id.to_string()));
        }
    }
    // ^(\w+)_\d+$
    if segs.len() >= 2 && digits(segs[segs.len() - 1]) {
        let exp = segs[..segs.len() - 1].join("_");
        if !exp.is_empty() {
            return Ok((exp, id.to_string()));
        }
    }
    Err(bad())
}

/// `to_azure_friendly_container_path`: backslashes become `/`, runs of `/` collapse.
pub fn to_azure_friendly_container_path(p: &str) -> String {
    let s = p.replace('\\', "/");
    let mut out = String::new();
    for c in s.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

pub fn strip_prefix(s: &str, prefix: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_string()
}

/// `step_up_directories`: the path and each of its parents, up to the root.
pub fn step_up_directories(p: &Path) -> Vec<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    abs.ancestors().map(Path::to_path_buf).collect()
}

/// `make_random_string`: `n` characters from A–Z, a–z, 0–9 (nussl's alphabet), from the
/// kernel's random source.
pub fn make_random_string(n: usize) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut buf = vec![0u8; n];
    // SAFETY: getrandom fills the buffer we own; on failure fall back to the clock.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), n, 0) };
    if got != n as isize {
        let mut x = crate::modules::gpu::ledger_seed() | 1;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    // 248 = 62 * 4: reject the top bytes so every character is equally likely.
    let mut out = String::with_capacity(n);
    let mut i = 0;
    while out.len() < n {
        let b = if i < buf.len() {
            buf[i]
        } else {
            (crate::modules::gpu::ledger_seed() >> 3) as u8
        };
        i += 1;
        if b < 248 {
            out.push(ABC[(b % 62) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_durations_like_inner_eye() {
        assert_eq!(run_duration_string_to_seconds("3.5h").unwrap(), Some(12600));
        assert_eq!(run_duration_string_to_seconds("2d").unwrap(), Some(172800));
        assert_eq!(run_duration_string_to_seconds("10m").unwrap(), Some(600));
        assert_eq!(run_duration_string_to_seconds("90s").unwrap(), Some(90));
        assert_eq!(run_duration_string_to_seconds("").unwrap(), None);
        assert!(run_duration_string_to_seconds("3.5x").is_err());
    }

    #[test]
    fn recovery_ids_like_inner_eye() {
        let s = split_recovery_id;
        assert_eq!(s("foo:bar").unwrap(), ("foo".into(), "bar".into()));
        assert_eq!(
            s("foo_bar_123").unwrap(),
            ("foo_bar".into(), "foo_bar_123".into())
        );
        assert_eq!(
            s("user_branch_abcde12_123").unwrap(),
            (
                "user_branch_abcde12".into(),
                "user_branch_abcde12_123".into()
            )
        );
        assert_eq!(
            s("refactor_1605532785_0b2c8d6e").unwrap(),
            ("refactor".into(), "refactor_1605532785_0b2c8d6e".into())
        );
        for bad in ["a:b:c", "foo", "foo-bar_1x", "_123"] {
            assert_eq!(
                s(bad).unwrap_err().kind,
                "util.invalid_recovery_id",
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_prefixes_and_random_strings() {
        assert_eq!(to_azure_friendly_container_path("a\\b//c/d"), "a/b/c/d");
        assert_eq!(strip_prefix("refs/heads/main", "refs/heads/"), "main");
        assert_eq!(strip_prefix("main", "refs/heads/"), "main");
        let ups = step_up_directories(Path::new("/a/b"));
        assert_eq!(
            ups,
            vec![
                PathBuf::from("/a/b"),
                PathBuf::from("/a"),
                PathBuf::from("/")
            ]
        );
        let r = make_random_string(20);
        assert_eq!(r.len(), 20);
        assert!(r.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(r, make_random_string(20));
    }
}
