//! `secrets` (InnerEye `SecretsHandling`): a secret comes from the private settings file's
//! `secrets:` section (names match case-insensitively), else from the environment (the name
//! upper-cased). Every value read is registered with `redact`, so it is written as `***` in
//! script output, logs, error messages, YAML saved by labhost, experiment folders and run tags.
pub mod rhai;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{LabError, LabResult};
use crate::modules::settings;

/// Reads the `secrets:` section of a private settings file (names upper-cased).
fn from_file(p: &Path) -> LabResult<BTreeMap<String, String>> {
    settings::check_private_file(p);
    let (m, _) = settings::read_optional_section(p, "secrets", true)?;
    let m = m.unwrap_or_default();
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k.to_uppercase(), v)
        })
        .collect())
}

/// Looks a secret up; `Ok(None)` when it is nowhere.
pub fn lookup(name: &str, file: Option<&Path>) -> LabResult<Option<String>> {
    let key = name.to_uppercase();
    let mut found = None;
    if let Some(p) = file.filter(|p| p.exists()) {
        found = from_file(p)?.remove(&key);
    }
    if found.is_none() {
        found = std::env::var(&key).ok();
    }
    if let Some(v) = &found {
        crate::redact::register(v);
    }
    Ok(found)
}

/// Where a missing secret was looked for, for the error message.
pub fn missing(names: &[String], file: Option<&Path>) -> LabError {
    let f = match file {
        Some(p) => format!("the secrets: section of {}", p.display()),
        None => format!("a {} file (none found)", settings::PRIVATE_FILE),
    };
    let envs: Vec<String> = names.iter().map(|n| n.to_uppercase()).collect();
    LabError::new(
        "secrets.missing",
        format!(
            "secret(s) {} not found in {f} nor in the environment ({})",
            names.join(", "),
            envs.join(", ")
        ),
    )
}

/// All of `names`, or one error listing every missing one.
pub fn get_many(names: &[String], file: Option<&Path>) -> LabResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut absent = Vec::new();
    for n in names {
        match lookup(n, file)? {
            Some(v) => {
                out.insert(n.clone(), v);
            }
            None => absent.push(n.clone()),
        }
    }
    if absent.is_empty() {
        Ok(out)
    } else {
        Err(missing(&absent, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_first_then_environment_and_values_are_registered() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("p.yml");
        std::fs::write(&f, "secrets:\n  datasets_key: from-file-value-123\n").unwrap();
        std::env::set_var("LABHOST_T_SECRET_ENV", "from-env-value-456");
        assert_eq!(
            lookup("DATASETS_KEY", Some(&f)).unwrap().as_deref(),
            Some("from-file-value-123")
        );
        assert_eq!(
            lookup("labhost_t_secret_env", Some(&f)).unwrap().as_deref(),
            Some("from-env-value-456")
        );
        assert_eq!(
            crate::redact::apply("a from-file-value-123 b from-env-value-456"),
            "a *** b ***"
        );
        let e = get_many(
            &["datasets_key".into(), "nope_a".into(), "nope_b".into()],
            Some(&f),
        )
        .unwrap_err();
        assert_eq!(e.kind, "secrets.missing");
        assert!(
            e.message.contains("nope_a, nope_b not found")
                && e.message.contains("(NOPE_A, NOPE_B)"),
            "{}",
            e.message
        );
    }
}
