//! `yaml`: parse, load (with environment substitution and in-document interpolation), dump,
//! save, and the nussl/InnerEye dictionary helpers (`deep_update`, `flatten`, `unflatten`).
//!
//! The document model is `serde_json::Value` with insertion-ordered maps, so a config loaded
//! and saved from Rust keeps its key order. Script values are Rhai object maps, which are
//! sorted: a config that passes through a script comes out with keys in alphabetical order.
//!
//! Substitution on `load` (string values only):
//! - `{DATA_DIRECTORY}`-style names from a list (nussl `modify_yml_with_env`; default list
//!   DATA_DIRECTORY, CACHE_DIRECTORY, ARTIFACTS_DIRECTORY, NUSSL_DIRECTORY);
//! - `${VAR}` and `${VAR:-default}` for any environment variable;
//! - `${a.b.c}` (OmegaConf style) for another value of the same document; a reference that
//!   is the whole string keeps the referenced value's type. `${name}` without a dot is a
//!   document reference when `name` is a top-level key, else an environment variable.
//! - `$${` is a literal `${`.
//!
//! An unset variable without default, a reference to a missing key, an unterminated `${` and an
//! interpolation cycle are errors that name the file, line and column.
pub mod rhai;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{LabError, LabResult};

/// nussl's `modify_yml_with_env` list.
pub const DEFAULT_ENV_VARS: &[&str] = &[
    "DATA_DIRECTORY",
    "CACHE_DIRECTORY",
    "ARTIFACTS_DIRECTORY",
    "NUSSL_DIRECTORY",
];

fn parse_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    // `yes`/`on` stay strings: only true/false are booleans (YAML 1.2).
    o.strict_booleans = true;
    o
}

/// Parses YAML text. `source` names the text in errors (`config.yml:3:5: …`).
pub fn parse(text: &str, source: &str) -> LabResult<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    parse_as(text, source, "yaml.parse")
}

/// Parses YAML text straight into a typed value (unknown keys and wrong types are errors at
/// their `source:line:col`), with error kind `kind`.
pub fn parse_as<T: serde::de::DeserializeOwned>(
    text: &str,
    source: &str,
    kind: &str,
) -> LabResult<T> {
    serde_saphyr::from_str_with_options::<T>(text, parse_options()).map_err(|e| {
        let at = match e.location() {
            Some(l) => format!("{source}:{}:{}", l.line(), l.column()),
            None => source.to_string(),
        };
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or(&msg).trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        // saphyr repeats the position as "line 4 column 11: "; the prefix above says it.
        let first = match first.split_once(": ") {
            Some((pos, rest)) if pos.starts_with("line ") && pos.contains(" column ") => rest,
            _ => first,
        }
        .to_string();
        let first = unknown_key(&first).unwrap_or(first);
        let caret = e
            .location()
            .map(|l| caret_at(text, l.line() as usize, l.column() as usize))
            .unwrap_or_default();
        LabError::new(kind, format!("{at}: {first}{caret}"))
    })
}

/// serde's "unknown field `x`, expected one of a, b, …" as "unknown key `x` (did you mean
/// `y`?)", or with the keys listed when none is close.
fn unknown_key(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest
        .split_once("expected one of ")
        .map(|(_, l)| l.split(", ").map(|k| k.trim_matches('`')).collect())
        .or_else(|| {
            rest.split_once("expected ")
                .map(|(_, k)| vec![k.trim_matches('`')])
        })
        .unwrap_or_default();
    Some(match crate::util::did_you_mean(key, &known) {
        Some(s) => format!("unknown key `{key}` (did you mean `{s}`?)"),
        None if known.is_empty() => format!("unknown key `{key}`"),
        None => format!(
            "unknown key `{key}`; the keys here are: {}",
            known.join(", ")
        ),
    })
}

/// The source line `line` (1-based) with a caret under `column` (1-based) and the rest of
/// the word there, as script errors show them.
fn caret_at(text: &str, line: usize, column: usize) -> String {
    let Some(src) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let start = column.saturating_sub(1);
    let word = src
        .chars()
        .skip(start)
        .take_while(|c| !c.is_whitespace() && *c != ':')
        .count()
        .max(1);
    let n = line.to_string();
    format!(
        "\n {n} | {src}\n {} | {}{}",
        " ".repeat(n.len()),
        " ".repeat(start),
        "^".repeat(word)
    )
}

pub fn dump(v: &Value) -> LabResult<String> {
    serde_saphyr::to_string(v)
        .map_err(|e| LabError::new("yaml.dump", format!("cannot write YAML: {e}")))
}

/// Writes YAML atomically. Registered secrets are masked in what is written (in the values,
/// before serialising, so the file stays valid YAML: `***` alone would be an alias).
pub fn save(path: &Path, v: &Value) -> LabResult<()> {
    let text = dump(&redact_value(v))?;
    crate::modules::fs::write_atomic(path, text.as_bytes())
}

/// A copy of `v` with registered secrets masked in every key and string.
pub fn redact_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(crate::redact::apply(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (crate::redact::apply(k), redact_value(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// `{NAME}` substitution for these names (nussl).
    pub env_vars: Vec<String>,
    /// `${VAR}` / `${VAR:-default}` from the environment.
    pub env: bool,
    /// `${a.b.c}` references inside the document.
    pub interpolate: bool,
    /// Values for `${NAME}` that win over the environment (e.g. `EXPERIMENT_KEY`).
    pub vars: std::collections::BTreeMap<String, String>,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            env_vars: DEFAULT_ENV_VARS.iter().map(|s| s.to_string()).collect(),
            env: true,
            interpolate: true,
            vars: Default::default(),
        }
    }
}

/// Reads, parses and resolves a YAML file.
pub fn load(path: &Path, opts: &LoadOpts) -> LabResult<Value> {
    let text = crate::modules::fs::read(path)
        .map_err(|e| LabError::new(e.kind.replace("fs.", "yaml."), e.message))?;
    let source = path.display().to_string();
    let doc = parse(&text, &source)?;
    resolve(&doc, &text, &source, opts)
}

/// Applies substitution and interpolation to a parsed document (`text` locates errors).
pub fn resolve(doc: &Value, text: &str, source: &str, opts: &LoadOpts) -> LabResult<Value> {
    let mut r = Resolver {
        root: doc,
        text,
        source,
        opts,
        stack: Vec::new(),
        cache: HashMap::new(),
    };
    match doc {
        // Top-level values resolve through their own path, so a cycle reads from where it starts.
        Value::Object(m) if opts.interpolate => {
            let mut out = Map::new();
            for (k, v) in m {
                let resolved = if k.contains(['.', '[']) {
                    r.value(v)?
                } else {
                    r.lookup(k, k)?
                };
                out.insert(k.clone(), resolved);
            }
            Ok(Value::Object(out))
        }
        _ => r.value(doc),
    }
}

struct Resolver<'a> {
    root: &'a Value,
    text: &'a str,
    source: &'a str,
    opts: &'a LoadOpts,
    stack: Vec<String>,
    cache: HashMap<String, Value>,
}

enum Piece {
    Text(String),
    Env {
        name: String,
        default: Option<String>,
        raw: String,
    },
    Ref {
        path: String,
        raw: String,
    },
}

fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl Resolver<'_> {
    /// `source:line:col` of the first occurrence of `needle` in the text.
    fn at(&self, needle: &str) -> String {
        locate(self.text, self.source, needle)
    }

    fn err(&self, kind: &str, needle: &str, msg: String) -> LabError {
        LabError::new(kind, format!("{}: {msg}", self.at(needle)))
    }

    fn value(&mut self, v: &Value) -> LabResult<Value> {
        Ok(match v {
            Value::String(s) => self.string(s)?,
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.value(x)).collect::<LabResult<_>>()?)
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.value(x)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn pieces(&self, s: &str) -> LabResult<Vec<Piece>> {
        let mut out = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("$${") {
                text.push_str("${");
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix("${") {
                let Some(end) = r.find('}') else {
                    return Err(self.err(
                        "yaml.unterminated",
                        rest,
                        format!("unterminated '${{' in \"{s}\""),
                    ));
                };
                let inner = &r[..end];
                let raw = format!("${{{inner}}}");
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                if let Some((name, default)) = inner.split_once(":-") {
                    out.push(Piece::Env {
                        name: name.trim().into(),
                        default: Some(default.into()),
                        raw,
                    });
                } else {
                    let name = inner.trim();
                    let top_level_key = self.root.get(name).is_some();
                    if is_var_name(name) && !(self.opts.interpolate && top_level_key) {
                        out.push(Piece::Env {
                            name: name.into(),
                            default: None,
                            raw,
                        });
                    } else {
                        out.push(Piece::Ref {
                            path: name.into(),
                            raw,
                        });
                    }
                }
                rest = &r[end + 1..];
                continue;
            }
            if let Some(r) = rest.strip_prefix('{') {
                if let Some(end) = r.find('}') {
                    let name = &r[..end];
                    if self.opts.env_vars.iter().any(|v| v == name) {
                        if !text.is_empty() {
                            out.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        out.push(Piece::Env {
                            name: name.into(),
                            default: None,
                            raw: format!("{{{name}}}"),
                        });
                        rest = &r[end + 1..];
                        continue;
                    }
                }
            }
            let ch = rest.chars().next().expect("non-empty");
            text.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        Ok(out)
    }

    fn string(&mut self, s: &str) -> LabResult<Value> {
        if !s.contains('{') {
            return Ok(Value::String(s.to_string()));
        }
        let pieces = self.pieces(s)?;
        // A lone reference keeps the type of what it points at.
        if let [Piece::Ref { path, raw }] = pieces.as_slice() {
            return self.lookup(path, raw);
        }
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(&t),
                Piece::Env { name, default, raw } => {
                    if let Some(v) = self.opts.vars.get(&name) {
                        out.push_str(v);
                        continue;
                    }
                    if !self.opts.env && !self.opts.env_vars.contains(&name) {
                        out.push_str(&raw);
                        continue;
                    }
                    match (std::env::var(&name), default) {
                        (Ok(v), _) => out.push_str(&v),
                        (Err(_), Some(d)) => out.push_str(&d),
                        (Err(_), None) => {
                            return Err(self.err(
                                "yaml.unset_variable",
                                &raw,
                                format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
                            ))
                        }
                    }
                }
                Piece::Ref { path, raw } => match self.lookup(&path, &raw)? {
                    Value::String(v) => out.push_str(&v),
                    Value::Null => out.push_str("null"),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }

    fn lookup(&mut self, path: &str, raw: &str) -> LabResult<Value> {
        if !self.opts.interpolate {
            return Ok(Value::String(raw.to_string()));
        }
        if let Some(v) = self.cache.get(path) {
            return Ok(v.clone());
        }
        if let Some(i) = self.stack.iter().position(|p| p == path) {
            let mut cycle: Vec<&str> = self.stack[i..].iter().map(String::as_str).collect();
            cycle.push(path);
            return Err(self.err(
                "yaml.cycle",
                raw,
                format!("interpolation cycle: {}", cycle.join(" -> ")),
            ));
        }
        let node = get_path(self.root, path)
            .ok_or_else(|| {
                self.err(
                    "yaml.missing_key",
                    raw,
                    format!("'{path}' is not a key of this document"),
                )
            })?
            .clone();
        self.stack.push(path.to_string());
        let v = self.value(&node);
        self.stack.pop();
        let v = v?;
        self.cache.insert(path.to_string(), v.clone());
        Ok(v)
    }
}

/// `source:line:col` of the first occurrence of `needle` in `text` (else just `source`):
/// how errors about values point into a file after parsing has dropped the positions.
pub fn locate(text: &str, source: &str, needle: &str) -> String {
    match text.find(needle) {
        Some(i) => locate_at(text, source, i),
        None => source.to_string(),
    }
}

/// `source:line:col` of byte offset `at` in `text`.
pub fn locate_at(text: &str, source: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    format!("{source}:{line}:{col}")
}

/// `a.b.0.c` or `a.b[0].c`.
pub fn get_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let norm = path.replace('[', ".").replace(']', "");
    let mut cur = v;
    for part in norm.split('.').filter(|p| !p.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Recursive merge: maps merge key by key, anything else in `overrides` replaces.
pub fn deep_update(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_update(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// nussl `flatten`: `{a: {b: 1}}` → `{a_b: 1}` with `sep = "_"`. Arrays stay values.
pub fn flatten(v: &Value, sep: &str) -> Map<String, Value> {
    fn go(prefix: &str, v: &Value, sep: &str, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}{sep}{k}")
                    };
                    go(&key, x, sep, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = Map::new();
    go("", v, sep, &mut out);
    out
}

/// The inverse of `flatten`: `{a_b: 1}` → `{a: {b: 1}}`. A key that is both a value and a
/// prefix (`a: 1`, `a_b: 2`) is an error.
pub fn unflatten(m: &Map<String, Value>, sep: &str) -> LabResult<Value> {
    let mut root = Value::Object(Map::new());
    for (k, v) in m {
        let parts: Vec<&str> = if sep.is_empty() {
            vec![k.as_str()]
        } else {
            k.split(sep).collect()
        };
        let mut cur = &mut root;
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let Value::Object(map) = cur else {
                return Err(LabError::new(
                    "yaml.conflict",
                    format!(
                        "key '{k}': '{}' is a value, not a map",
                        parts[..i].join(sep)
                    ),
                ));
            };
            if last {
                if map.contains_key(*p) {
                    return Err(LabError::new(
                        "yaml.conflict",
                        format!("key '{k}' is also a prefix of other keys"),
                    ));
                }
                map.insert(p.to_string(), v.clone());
                break;
            }
            cur = map
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load_text(text: &str) -> LabResult<Value> {
        let doc = parse(text, "cfg.yml")?;
        resolve(&doc, text, "cfg.yml", &LoadOpts::default())
    }

    #[test]
    fn anchors_merge_keys_and_strict_booleans() {
        let v = load_text(
            "base: &b {lr: 0.1, opt: adam}\nexp:\n  <<: *b\n  lr: 0.01\nflag: yes\non: true\n",
        )
        .unwrap();
        assert_eq!(v["exp"], json!({"lr": 0.01, "opt": "adam"}));
        assert_eq!(v["flag"], json!("yes"));
        assert_eq!(v["on"], json!(true));
    }

    #[test]
    fn parse_errors_have_file_line_col() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n", "cfg.yml").unwrap_err();
        assert_eq!(e.kind, "yaml.parse");
        assert!(e.message.starts_with("cfg.yml:"), "{}", e.message);
        assert!(!e.message.contains("error: line"), "{}", e.message);
        let e = parse("a: 1\n  b: 2\n", "x.yml").unwrap_err();
        assert!(e.message.starts_with("x.yml:2:"), "{}", e.message);
    }

    #[test]
    fn env_substitution_nussl_and_shell_style() {
        std::env::set_var("LABHOST_T_DATA", "/mnt/data");
        std::env::set_var("DATA_DIRECTORY", "/data");
        let v = load_text("a: '{DATA_DIRECTORY}/train'\nb: ${LABHOST_T_DATA}/x\nc: ${LABHOST_T_UNSET:-fallback}\nd: '{OTHER}'\ne: $${LITERAL}\n").unwrap();
        assert_eq!(
            v,
            json!({"a": "/data/train", "b": "/mnt/data/x", "c": "fallback", "d": "{OTHER}", "e": "${LITERAL}"})
        );
        let e = load_text("x: 1\ny: ok\npath: ${LABHOST_T_SURELY_UNSET}/a\n").unwrap_err();
        assert_eq!(e.kind, "yaml.unset_variable");
        assert!(
            e.message
                .starts_with("cfg.yml:3:7: environment variable LABHOST_T_SURELY_UNSET is not set"),
            "{}",
            e.message
        );
    }

    #[test]
    fn interpolation_keeps_types_and_detects_cycles() {
        let v = load_text("model: {width: 64, depth: 3}\nname: mlp-${model.width}x${model.depth}\nw: ${model.width}\nlayers: ['${w}', '${model.depth}']\nm2: ${model}\n").unwrap();
        assert_eq!(v["name"], json!("mlp-64x3"));
        assert_eq!(v["w"], json!(64));
        assert_eq!(v["layers"], json!([64, 3]));
        assert_eq!(v["m2"], json!({"width": 64, "depth": 3}));
        let e = load_text("a: ${b}\nb: ${c.d}\nc: {d: '${a}'}\n").unwrap_err();
        assert_eq!(e.kind, "yaml.cycle");
        assert!(
            e.message
                .contains("interpolation cycle: a -> b -> c.d -> a"),
            "{}",
            e.message
        );
        let e = load_text("a: 1\nb: ${nope.x}\n").unwrap_err();
        assert_eq!(e.kind, "yaml.missing_key");
        assert!(e.message.starts_with("cfg.yml:2:4:"), "{}", e.message);
        let e = load_text("a: 1\nb: \"${oops\"\n").unwrap_err();
        assert_eq!(e.kind, "yaml.unterminated");
        assert!(e.message.starts_with("cfg.yml:2:5:"), "{}", e.message);
    }

    #[test]
    fn deep_update_flatten_unflatten() {
        let mut base = json!({"train": {"lr": 0.1, "epochs": 10}, "name": "a"});
        deep_update(&mut base, &json!({"train": {"lr": 0.01}, "seed": 1}));
        assert_eq!(
            base,
            json!({"train": {"lr": 0.01, "epochs": 10}, "name": "a", "seed": 1})
        );
        let flat = flatten(&base, "_");
        assert_eq!(
            Value::Object(flat.clone()),
            json!({"train_lr": 0.01, "train_epochs": 10, "name": "a", "seed": 1})
        );
        assert_eq!(unflatten(&flat, "_").unwrap(), base);
        let bad: Map<String, Value> = serde_json::from_value(json!({"a": 1, "a_b": 2})).unwrap();
        assert_eq!(unflatten(&bad, "_").unwrap_err().kind, "yaml.conflict");
    }

    #[test]
    fn dump_keeps_key_order() {
        let v = parse("zeta: 1\nalpha: {x: 2, b: 3}\n", "t").unwrap();
        assert_eq!(dump(&v).unwrap(), "zeta: 1\nalpha:\n  x: 2\n  b: 3\n");
    }
}
