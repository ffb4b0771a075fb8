//! `experiment` (nussl `experiment_utils`): an experiment is a folder named by a random key
//! under the artifacts directory, holding the resolved config it ran with.
//!
//! Directories (nussl `runners.config`), from the environment, else these defaults relative to
//! the working directory: `ARTIFACTS_DIRECTORY` (`artifacts/`), `CACHE_DIRECTORY` (`cache/`),
//! `DATA_DIRECTORY` (`data/`), `CODE_DIRECTORY` (the working directory).
pub mod rhai;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{HostError, HostResult};
use crate::modules::yaml;

/// Length of a new experiment key.
pub const KEY_LEN: usize = 16;
/// The config file inside an experiment folder.
pub const CONFIG_FILE: &str = "config.yml";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dirs {
    pub artifacts: String,
    pub cache: String,
    pub dataset: String,
    pub code: String,
}

/// nussl's storage folders as docker mounts them.
pub fn storage_dirs() -> crate::modules::docker::StorageDirs {
    let d = dirs();
    crate::modules::docker::StorageDirs {
        dataset: d.dataset,
        cache: d.cache,
        artifacts: d.artifacts,
        code: d.code,
    }
}

pub fn dirs() -> Dirs {
    let cwd = std::env::current_dir().unwrap_or_default();
    let get = |var: &str, default: PathBuf| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or(default)
            .display()
            .to_string()
    };
    Dirs {
        artifacts: get("ARTIFACTS_DIRECTORY", cwd.join("artifacts")),
        cache: get("CACHE_DIRECTORY", cwd.join("cache")),
        dataset: get("DATA_DIRECTORY", cwd.join("data")),
        code: get("CODE_DIRECTORY", cwd.clone()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub config: Value,
    pub key: String,
    /// The experiment folder.
    pub path: String,
    /// True when this call created the folder.
    pub created: bool,
}

fn info_mut<'a>(config: &'a mut Value, source: &str) -> HostResult<&'a mut Map<String, Value>> {
    let Value::Object(root) = config else {
        return Err(HostError::new(
            "experiment.invalid",
            format!("{source}: an experiment config must be a map"),
        ));
    };
    let info = root
        .entry("info")
        .or_insert_with(|| Value::Object(Map::new()));
    if info.is_null() {
        *info = Value::Object(Map::new());
    }
    match info {
        Value::Object(m) => Ok(m),
        _ => Err(HostError::new(
            "experiment.invalid",
            format!("{source}: 'info' must be a map"),
        )),
    }
}

fn str_field(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Loads a config (with `yaml::load`'s substitution). Without `info.experiment_key` a new
/// key and folder are made and the resolved config is written there; with one, the folder
/// is reopened (and created if it is missing, e.g. on another machine).
pub fn load(path: &Path) -> HostResult<Experiment> {
    let mut config = yaml::load(path, &yaml::LoadOpts::default())?;
    let source = path.display().to_string();
    let info = info_mut(&mut config, &source)?;
    let base = str_field(info, "output_folder").unwrap_or_else(|| dirs().artifacts);
    let (key, new_key) = match str_field(info, "experiment_key") {
        Some(k) => (k, false),
        None => (crate::modules::util::make_random_string(KEY_LEN), true),
    };
    info.insert("experiment_key".into(), Value::String(key.clone()));
    info.insert("output_folder".into(), Value::String(base.clone()));
    let folder = PathBuf::from(&base).join(&key);
    let existed = folder.join(CONFIG_FILE).exists();
    crate::modules::fs::mkdir(&folder)?;
    if new_key || !existed {
        yaml::save(&folder.join(CONFIG_FILE), &config)?;
    }
    Ok(Experiment {
        config,
        key,
        path: folder.display().to_string(),
        created: new_key || !existed,
    })
}

/// Writes `config` to `<output_folder>/<experiment_key>/config.yml`; returns the file.
pub fn save(config: &Value) -> HostResult<PathBuf> {
    let info = config.get("info").and_then(Value::as_object);
    let (Some(key), Some(base)) = (
        info.and_then(|i| str_field(i, "experiment_key")),
        info.and_then(|i| str_field(i, "output_folder")),
    ) else {
        return Err(HostError::new(
            "experiment.invalid",
            "the config has no info.experiment_key / info.output_folder: load it with experiment::load first",
        ));
    };
    let folder = PathBuf::from(base).join(key);
    crate::modules::fs::mkdir(&folder)?;
    let file = folder.join(CONFIG_FILE);
    yaml::save(&file, config)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_key_then_reopen_then_save() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("exp.yml");
        let out = t.path().join("artifacts");
        std::fs::write(
            &cfg,
            format!("info: {{output_folder: '{}'}}\nlr: 0.1\n", out.display()),
        )
        .unwrap();
        let e = load(&cfg).unwrap();
        assert!(e.created);
        assert_eq!(e.key.len(), KEY_LEN);
        let saved = std::fs::read_to_string(PathBuf::from(&e.path).join(CONFIG_FILE)).unwrap();
        assert!(
            saved.contains(&format!("experiment_key: {}", e.key)),
            "{saved}"
        );
        // The saved config has the key: loading it reopens the same folder.
        let again = load(&PathBuf::from(&e.path).join(CONFIG_FILE)).unwrap();
        assert_eq!(
            (again.key.as_str(), again.path.as_str(), again.created),
            (e.key.as_str(), e.path.as_str(), false)
        );
        let mut c = again.config.clone();
        c["lr"] = Value::from(0.01);
        let f = save(&c).unwrap();
        assert!(std::fs::read_to_string(f).unwrap().contains("lr: 0.01"));
        assert_eq!(
            save(&serde_json::json!({"lr": 1})).unwrap_err().kind,
            "experiment.invalid"
        );
        std::fs::write(&cfg, "- 1\n- 2\n").unwrap();
        assert_eq!(load(&cfg).unwrap_err().kind, "experiment.invalid");
    }
}
