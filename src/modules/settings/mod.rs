//! `settings`: InnerEye's `parse_args_and_add_yaml_variables` / `read_settings_and_merge`:
//! a project settings YAML's `variables:`, overridden by the private settings file, overridden
//! by command-line options — typed by a declared schema.
//!
//! The private settings file is `labhost.private.yml`, found by stepping up from the working
//! directory (or `$LABHOST_PRIVATE_SETTINGS`). It holds `variables:` (settings overrides) and
//! `secrets:` (read by the `secrets` module) and must never be committed: labhost warns when
//! git tracks it or when others can read it.
pub mod rhai;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{LabError, LabResult};
use crate::modules::yaml;

pub const PRIVATE_FILE: &str = "labhost.private.yml";

/// The private settings file: `$LABHOST_PRIVATE_SETTINGS`, else `labhost.private.yml` in the
/// working directory or the nearest parent that has one.
pub fn private_file() -> Option<PathBuf> {
    if let Some(p) = crate::config::private_settings() {
        return Some(p);
    }
    let cwd = std::env::current_dir().ok()?;
    step_up(&cwd, PRIVATE_FILE)
}

/// InnerEye `step_up_directories`: the first `dir/name` that exists, from `start` upwards.
pub fn step_up(start: &Path, name: &str) -> Option<PathBuf> {
    start.ancestors().map(|d| d.join(name)).find(|p| p.exists())
}

/// Warns (once per process and file) when the private file is readable by group or others,
/// or tracked by git.
pub fn check_private_file(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut w = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if w.iter().any(|x| x == p) {
        return;
    }
    w.push(p.to_path_buf());
    if let Ok(m) = std::fs::metadata(p) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} is readable by group or others (mode {:o}): run chmod 600 on it",
                p.display(),
                m.permissions().mode() & 0o777
            );
        }
    }
    if crate::modules::git::is_tracked(p) {
        tracing::warn!(
            "{} is tracked by git: it holds private settings and must not be committed",
            p.display()
        );
    }
}

/// A YAML file's top-level section as a map (`variables:`), with errors naming the file.
/// `substitute`: `${VAR}` / `${a.b}` / `{NAME}` are resolved (InnerEye reads settings as
/// written). A missing section is an error (`settings.no_variables`), as InnerEye's
/// `KeyError`; an empty one (`variables:`) is an empty map.
pub fn read_section(
    path: &Path,
    section: &str,
    substitute: bool,
) -> LabResult<(Map<String, Value>, String)> {
    match read_optional_section(path, section, substitute)? {
        (Some(m), text) => Ok((m, text)),
        (None, _) => Err(LabError::new(
            "settings.no_variables",
            format!("{}: the YAML file must contain a section '{section}' (InnerEye's settings files keep their values under '{section}:')", path.display()),
        )),
    }
}

/// [`read_section`] for a section that may be missing (`None`).
pub fn read_optional_section(
    path: &Path,
    section: &str,
    substitute: bool,
) -> LabResult<(Option<Map<String, Value>>, String)> {
    let text = crate::modules::fs::read(path)
        .map_err(|e| LabError::new(e.kind.replace("fs.", "settings."), e.message))?;
    let src = path.display().to_string();
    let doc = yaml::parse(&text, &src)?;
    let doc = if substitute {
        yaml::resolve(&doc, &text, &src, &yaml::LoadOpts::default())?
    } else {
        doc
    };
    match doc.get(section) {
        None => Ok((None, text)),
        Some(Value::Null) => Ok((Some(Map::new()), text)),
        Some(Value::Object(m)) => Ok((Some(m.clone()), text)),
        Some(other) => Err(LabError::new(
            "settings.invalid",
            format!(
                "{}: '{section}:' must be a map of name: value, not {}",
                yaml::locate(&text, &src, &format!("{section}:")),
                type_name(other)
            ),
        )),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

/// Coerces `v` to the type of the schema default `like`; Err = what was expected.
pub fn coerce(v: &Value, like: &Value) -> Result<Value, String> {
    let want = type_name(like);
    let s = v.as_str().map(str::trim);
    let ok = match (like, v) {
        (Value::Null, _) => Some(v.clone()),
        (Value::Bool(_), Value::Bool(_)) => Some(v.clone()),
        (Value::Bool(_), _) => match s.map(str::to_ascii_lowercase).as_deref() {
            Some("true" | "yes" | "1") => Some(Value::Bool(true)),
            Some("false" | "no" | "0") => Some(Value::Bool(false)),
            _ => None,
        },
        (Value::Number(n), _) if n.is_i64() || n.is_u64() => match v {
            Value::Number(x) if x.is_i64() || x.is_u64() => Some(v.clone()),
            Value::Number(x) => x
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| Value::from(f as i64)),
            Value::String(t) => t.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        },
        (Value::Number(_), _) => match v {
            Value::Number(x) => x.as_f64().map(Value::from),
            Value::String(t) => t.trim().parse::<f64>().ok().map(Value::from),
            _ => None,
        },
        (Value::String(_), Value::String(_)) => Some(v.clone()),
        (Value::String(_), Value::Number(_) | Value::Bool(_)) => Some(Value::String(v.to_string())),
        (Value::Array(items), Value::Array(_)) if items.is_empty() => Some(v.clone()),
        (Value::Array(items), Value::Array(vs)) => vs
            .iter()
            .map(|x| coerce(x, &items[0]).ok())
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        (Value::Array(items), Value::String(t)) => {
            let parts: Vec<Value> = t
                .split(',')
                .map(|p| Value::String(p.trim().to_string()))
                .collect();
            match items.first() {
                None => Some(Value::Array(parts)),
                Some(first) => parts
                    .iter()
                    .map(|x| coerce(x, first).ok())
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array),
            }
        }
        (Value::Object(_), Value::Object(_)) => Some(v.clone()),
        _ => None,
    };
    ok.ok_or_else(|| format!("expected {want}, got {} {}", type_name(v), v))
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Key → default; the default's type is the key's type.
    pub schema: Map<String, Value>,
    /// Project settings YAML (its `variables:` section).
    pub yaml: Option<PathBuf>,
    /// Private settings; `None` = look for `labhost.private.yml`.
    pub private: Option<PathBuf>,
    /// Command-line values (`--key=value`), already split.
    pub args: Map<String, Value>,
    pub fail_on_unknown: bool,
    /// Read no private settings file (its caller found it holds only `secrets:`).
    pub skip_private: bool,
    /// Resolve `${…}` in the settings files (off: InnerEye reads them as written).
    pub substitute: bool,
}

/// InnerEye's `ParserResult`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parsed {
    /// Every schema key with its final value: default < project YAML < private < command line.
    pub args: Map<String, Value>,
    /// Command-line values for schema keys.
    pub overrides: Map<String, Value>,
    /// Command-line keys not in the schema.
    pub unknown: Vec<String>,
    pub known_from_yaml: Map<String, Value>,
    pub unknown_from_yaml: Map<String, Value>,
}

pub fn parse(req: &Request) -> LabResult<Parsed> {
    let mut yaml_vars: Vec<(Map<String, Value>, String, String)> = Vec::new();
    if let Some(p) = &req.yaml {
        let (m, text) = read_section(p, "variables", req.substitute)?;
        yaml_vars.push((m, text, p.display().to_string()));
    }
    let private = req
        .private
        .clone()
        .or_else(private_file)
        .filter(|p| !req.skip_private && (p.exists() || req.private.is_some()));
    if let Some(p) = &private {
        check_private_file(p);
        let (m, text) = read_section(p, "variables", req.substitute)?;
        yaml_vars.push((m, text, p.display().to_string()));
    }
    let mut args = req.schema.clone();
    let mut known_from_yaml = Map::new();
    let mut unknown_from_yaml = Map::new();
    for (vars, text, src) in &yaml_vars {
        for (k, v) in vars {
            match req.schema.get(k) {
                Some(like) => {
                    let v = coerce(v, like).map_err(|why| {
                        LabError::new(
                            "settings.type",
                            format!(
                                "{}: setting '{k}': {why}",
                                yaml::locate(text, src, &format!("{k}:"))
                            ),
                        )
                    })?;
                    known_from_yaml.insert(k.clone(), v.clone());
                    args.insert(k.clone(), v);
                }
                None => {
                    unknown_from_yaml.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let mut overrides = Map::new();
    let mut unknown = Vec::new();
    for (k, v) in &req.args {
        match req.schema.get(k) {
            Some(like) => {
                let v = coerce(v, like).map_err(|why| {
                    LabError::new("settings.type", format!("--{k}={}: {why}", display(v)))
                })?;
                overrides.insert(k.clone(), v.clone());
                args.insert(k.clone(), v);
            }
            None => unknown.push(k.clone()),
        }
    }
    if req.fail_on_unknown && !unknown.is_empty() {
        let known: Vec<&String> = req.schema.keys().collect();
        return Err(LabError::new(
            "settings.unknown",
            format!(
                "unknown setting(s): {} (known: {})",
                unknown
                    .iter()
                    .map(|u| format!("--{u}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Parsed {
        args,
        overrides,
        unknown,
        known_from_yaml,
        unknown_from_yaml,
    })
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn yaml_then_private_then_cli_with_types() {
        let t = tempfile::tempdir().unwrap();
        let proj = t.path().join("settings.yml");
        std::fs::write(
            &proj,
            "variables:\n  lr: 0.5\n  epochs: '20'\n  cluster: gpu-a\n  extra: 1\n",
        )
        .unwrap();
        let private = t.path().join(PRIVATE_FILE);
        std::fs::write(&private, "variables:\n  cluster: my-own\n").unwrap();
        let req = Request {
            schema: obj(
                json!({"lr": 0.1, "epochs": 10, "cluster": "", "fast": false, "layers": [1]}),
            ),
            yaml: Some(proj),
            private: Some(private),
            args: obj(json!({"epochs": 3, "fast": true, "layers": "64,32", "typo": 1})),
            fail_on_unknown: false,
            substitute: false,
            skip_private: false,
        };
        let p = parse(&req).unwrap();
        assert_eq!(
            Value::Object(p.args),
            json!({"lr": 0.5, "epochs": 3, "cluster": "my-own", "fast": true, "layers": [64, 32]})
        );
        assert_eq!(
            Value::Object(p.overrides),
            json!({"epochs": 3, "fast": true, "layers": [64, 32]})
        );
        assert_eq!(p.unknown, vec!["typo"]);
        assert_eq!(
            Value::Object(p.known_from_yaml),
            json!({"lr": 0.5, "epochs": 20, "cluster": "my-own"})
        );
        assert_eq!(Value::Object(p.unknown_from_yaml), json!({"extra": 1}));
        let e = parse(&Request {
            fail_on_unknown: true,
            ..req.clone()
        })
        .unwrap_err();
        assert_eq!(e.kind, "settings.unknown");
        assert!(
            e.message.starts_with("unknown setting(s): --typo (known:"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_types_and_bad_sections_name_the_place() {
        let t = tempfile::tempdir().unwrap();
        let proj = t.path().join("s.yml");
        std::fs::write(&proj, "variables:\n  lr: 0.5\n  epochs: many\n").unwrap();
        let req = Request {
            schema: obj(json!({"lr": 0.1, "epochs": 10})),
            yaml: Some(proj.clone()),
            private: Some(t.path().join("none.yml")),
            ..Default::default()
        };
        let e = parse(&Request {
            private: None,
            ..req.clone()
        })
        .unwrap_err();
        assert_eq!(e.kind, "settings.type");
        assert!(
            e.message
                .ends_with("s.yml:3:3: setting 'epochs': expected int, got string \"many\""),
            "{}",
            e.message
        );
        std::fs::write(&proj, "variables: [1, 2]\n").unwrap();
        let e = parse(&Request {
            private: None,
            ..req.clone()
        })
        .unwrap_err();
        assert_eq!(e.kind, "settings.invalid");
        assert!(
            e.message.contains("s.yml:1:1: 'variables:' must be a map"),
            "{}",
            e.message
        );
        std::fs::write(&proj, "variables: {}\n").unwrap();
        let e = parse(&Request {
            args: obj(json!({"epochs": 2.5})),
            private: None,
            ..req
        })
        .unwrap_err();
        assert_eq!(e.message, "--epochs=2.5: expected int, got float 2.5");
    }
}
