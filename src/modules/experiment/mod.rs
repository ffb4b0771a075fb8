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

use crate::error::{LabError, LabResult};
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

fn info_mut<'a>(config: &'a mut Value, source: &str) -> LabResult<&'a mut Map<String, Value>> {
    let Value::Object(root) = config else {
        return Err(LabError::new(
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
        _ => Err(LabError::new(
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

/// `experiment::load` options.
#[derive(Debug, Clone, Default)]
pub struct LoadOpts {
    /// nussl's `{NAME}` names substituted from the environment (default: DATA_DIRECTORY,
    /// CACHE_DIRECTORY, ARTIFACTS_DIRECTORY, NUSSL_DIRECTORY).
    pub env_vars: Option<Vec<String>>,
    /// Reopen the experiment with this key (instead of the file's, or a new one).
    pub key: Option<String>,
}

/// The name nussl's configs use for the key: `info.experiment_key: ${EXPERIMENT_KEY}`.
pub const KEY_VAR: &str = "EXPERIMENT_KEY";

/// Loads an experiment config the way nussl's `load_experiment` does.
///
/// The key is `opts.key`, else the file's `info.experiment_key` when it is a real key, else
/// (missing, empty, or still `${EXPERIMENT_KEY}`) a new random one. The file is then read
/// with `${EXPERIMENT_KEY}` set to the key (so `output_folder`, `model_path` and every other
/// path built from it point inside the one experiment folder) and `EXPERIMENT_KEY` is set in
/// the environment for what runs next, as nussl does. The experiment folder is
/// `info.output_folder` when its last part is the key (nussl's
/// `${ARTIFACTS_DIRECTORY}/…/${EXPERIMENT_KEY}`), else `<output_folder>/<key>`; with no
/// `output_folder`, `$ARTIFACTS_DIRECTORY/<key>`. A new experiment, or one whose folder has no
/// `config.yml` yet (e.g. on another machine), gets the resolved config saved there; reopening
/// one reads, and writes nothing.
pub fn load(path: &Path, opts: &LoadOpts) -> LabResult<Experiment> {
    let source = path.display().to_string();
    let text = crate::modules::fs::read(path)
        .map_err(|e| LabError::new(e.kind.replace("fs.", "experiment."), e.message))?;
    let raw = yaml::parse(&text, &source)?;
    let raw_key = raw
        .get("info")
        .and_then(|i| i.get("experiment_key"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.contains("${") && !k.contains('{'))
        .map(str::to_string);
    let (key, new_key) = match (&opts.key, raw_key) {
        (Some(k), _) if !k.is_empty() => (k.clone(), false),
        (_, Some(k)) => (k, false),
        _ => (crate::modules::util::make_random_string(KEY_LEN), true),
    };
    let mut lo = yaml::LoadOpts::default();
    if let Some(v) = &opts.env_vars {
        lo.env_vars = v.clone();
    }
    lo.vars.insert(KEY_VAR.into(), key.clone());
    let mut config = yaml::resolve(&raw, &text, &source, &lo)?;
    let info = info_mut(&mut config, &source)?;
    let base = str_field(info, "output_folder").unwrap_or_else(|| dirs().artifacts);
    info.insert("experiment_key".into(), Value::String(key.clone()));
    info.insert("output_folder".into(), Value::String(base.clone()));
    let folder = folder_of(&base, &key);
    // nussl sets it for the training that runs next.
    std::env::set_var(KEY_VAR, &key);
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

/// The experiment folder: `output_folder` itself when it ends with the key (nussl's
/// `…/${EXPERIMENT_KEY}`), else `<output_folder>/<key>`.
fn folder_of(output_folder: &str, key: &str) -> PathBuf {
    if Path::new(output_folder)
        .file_name()
        .is_some_and(|n| n == key)
    {
        PathBuf::from(output_folder)
    } else {
        PathBuf::from(output_folder).join(key)
    }
}

/// Writes `config` to `<output_folder>/<experiment_key>/config.yml`; returns the file.
pub fn save(config: &Value) -> LabResult<PathBuf> {
    let info = config.get("info").and_then(Value::as_object);
    let (Some(key), Some(base)) = (
        info.and_then(|i| str_field(i, "experiment_key")),
        info.and_then(|i| str_field(i, "output_folder")),
    ) else {
        return Err(LabError::new(
            "experiment.invalid",
            "the config has no info.experiment_key / info.output_folder: load it with experiment::load first",
        ));
    };
    let folder = folder_of(&base, &key);
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
        let e = load(&cfg, &LoadOpts::default()).unwrap();
        assert!(e.created);
        assert_eq!(e.key.len(), KEY_LEN);
        let saved = std::fs::read_to_string(PathBuf::from(&e.path).join(CONFIG_FILE)).unwrap();
        assert!(
            saved.contains(&format!("experiment_key: {}", e.key)),
            "{saved}"
        );
        // The saved config has the key: loading it reopens the same folder.
        let again = load(
            &PathBuf::from(&e.path).join(CONFIG_FILE),
            &LoadOpts::default(),
        )
        .unwrap();
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
        assert_eq!(
            load(&cfg, &LoadOpts::default()).unwrap_err().kind,
            "experiment.invalid"
        );
    }
}
