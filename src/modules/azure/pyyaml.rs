//! The conda file as azure-ai-ml sends it: PyYAML's `yaml.dump(doc, sort_keys=True)` of the
//! parsed document. The text matters beyond looks: the anonymous environment's version is a
//! hash of it, and Azure builds one image per version, so the same environment submitted by
//! labhost and by the SDK must hash alike (tests/azure_sdk compares both).
use serde_json::Value;

/// PyYAML's block-style dump (sorted keys, 2-space indent, sequences inside mappings not
/// indented) of a document of mappings, sequences and scalars.
pub fn dump(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(_) | Value::Array(_) => node(v, 0, &mut out),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push_str("\n...\n");
        }
    }
    out
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

/// Writes a collection whose first line starts at column `indent` (the caller wrote nothing
/// on that line yet).
fn node(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(&format!("{}{{}}\n", pad(indent))),
        Value::Array(a) if a.is_empty() => out.push_str(&format!("{}[]\n", pad(indent))),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                out.push_str(&pad(indent));
                entry(k, &m[k], indent, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                out.push_str(&pad(indent));
                item(x, indent, out);
            }
        }
        s => {
            out.push_str(&pad(indent));
            out.push_str(&scalar_text(s));
            out.push('\n');
        }
    }
}

/// `key: value` at `indent` (the indent is written).
fn entry(k: &str, v: &Value, indent: usize, out: &mut String) {
    out.push_str(&scalar_text(&Value::String(k.to_string())));
    out.push(':');
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            node(v, indent + 2, out);
        }
        // PyYAML does not indent a block sequence under a mapping key.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            node(v, indent, out);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        s => {
            out.push(' ');
            out.push_str(&scalar_text(s));
            out.push('\n');
        }
    }
}

/// `- value` at `indent` (the indent is written).
fn item(v: &Value, indent: usize, out: &mut String) {
    out.push_str("- ");
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad(indent + 2));
                }
                entry(k, &m[k], indent + 2, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad(indent + 2));
                }
                item(x, indent + 2, out);
            }
        }
        Value::Object(_) => out.push_str("{}\n"),
        Value::Array(_) => out.push_str("[]\n"),
        s => {
            out.push_str(&scalar_text(s));
            out.push('\n');
        }
    }
}

/// A scalar as PyYAML writes it: plain where it reads back as the same string, else in
/// single quotes.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => float_text(f),
            _ => n.to_string(),
        },
        Value::String(s) => {
            if plain_ok(s) {
                s.clone()
            } else if s.chars().any(|c| c.is_control()) {
                // PyYAML double-quotes what has control characters (JSON's escapes agree
                // for the common ones: \t, \n).
                Value::String(s.clone()).to_string()
            } else {
                format!("'{}'", s.replace('\'', "''"))
            }
        }
        other => other.to_string(),
    }
}

/// Python's `repr(float)` as PyYAML writes it (`1.0`, `0.001`, `1.0e-05`, `.inf`, `.nan`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let r = format!("{f:?}");
    if r.contains('e') {
        // Rust `1e-5` → Python `1e-05` → PyYAML `1.0e-05`.
        let (m, e) = r.split_once('e').unwrap_or((&r, "0"));
        let m = if m.contains('.') {
            m.to_string()
        } else {
            format!("{m}.0")
        };
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    r
}

/// Whether PyYAML would write `s` plain: it must not read back as another type (PyYAML's
/// resolvers: bool, null, int, float, timestamp) nor start or end with what YAML reads as
/// syntax.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.trim() != s || s.chars().any(|c| c.is_control()) {
        return false;
    }
    const WORDS: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) || is_int(s) || is_float(s) || looks_like_date(s) {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    if "?:-".contains(first) {
        // An indicator only when followed by a space.
        if second.is_none_or(|c| c == ' ') {
            return false;
        }
    } else if ",[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    !(s.contains(": ") || s.contains(" #") || s.ends_with(':'))
}

fn sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    s.chars().all(f)
}

/// `[0-9][0-9_]*` at the start: how many bytes.
fn digits_run(s: &str) -> usize {
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return 0;
    }
    s.find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len())
}

/// `(:[0-5]?[0-9])+` exactly.
fn sexagesimal_tail(s: &str) -> bool {
    !s.is_empty()
        && s.split(':').skip(1).all(|p| {
            (p.len() == 1 && all(p, |c| c.is_ascii_digit()))
                || (p.len() == 2 && p.as_bytes()[0] <= b'5' && all(p, |c| c.is_ascii_digit()))
        })
        && s.starts_with(':')
}

/// PyYAML's int resolver.
fn is_int(s: &str) -> bool {
    let t = sign(s);
    if let Some(b) = t.strip_prefix("0b") {
        return !b.is_empty() && all(b, |c| c == '0' || c == '1' || c == '_');
    }
    if let Some(h) = t.strip_prefix("0x") {
        return !h.is_empty() && all(h, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if t == "0" {
        return true;
    }
    if let Some(o) = t.strip_prefix('0') {
        return all(o, |c| ('0'..='7').contains(&c) || c == '_');
    }
    let n = digits_run(t);
    n > 0 && (n == t.len() || sexagesimal_tail(&t[n..]))
}

/// PyYAML's float resolver (a float needs a dot; the exponent needs a sign).
fn is_float(s: &str) -> bool {
    let exp_ok = |e: &str| {
        e.is_empty()
            || (e.len() > 2
                && e.starts_with(['e', 'E'])
                && e[1..].starts_with(['-', '+'])
                && all(&e[2..], |c| c.is_ascii_digit()))
    };
    let frac = |r: &str| -> Option<usize> {
        let r = r.strip_prefix('.')?;
        Some(
            1 + r
                .find(|c: char| !(c.is_ascii_digit() || c == '_'))
                .unwrap_or(r.len()),
        )
    };
    if let Some(rest) = s.strip_prefix('.') {
        let n = digits_run(rest);
        if n > 0 && exp_ok(&rest[n..]) {
            return true;
        }
    }
    let t = sign(s);
    if matches!(t, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let n = digits_run(t);
    if n == 0 {
        return false;
    }
    let rest = &t[n..];
    if let Some(f) = frac(rest) {
        return exp_ok(&rest[f..]);
    }
    // [0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
    match rest.rfind('.') {
        Some(dot) => {
            sexagesimal_tail(&rest[..dot])
                && all(&rest[dot + 1..], |c| c.is_ascii_digit() || c == '_')
        }
        None => false,
    }
}

/// PyYAML's timestamp resolver: `2002-12-14` and the date-time forms.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && s[5..].starts_with(|c: char| c.is_ascii_digit())
        && s[5..]
            .split(['-', 'T', 't', ' ', ':', '.', 'Z', '+'])
            .all(|p| all(p, |c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_conda_file_dumps_as_pyyaml_dumps_it() {
        let doc = json!({
            "name": "env", "channels": ["conda-forge", "defaults"],
            "dependencies": ["python=3.10", "pip", {"pip": ["scikit-learn==1.5.0", "mlflow"]}],
        });
        assert_eq!(
            dump(&doc),
            "channels:\n- conda-forge\n- defaults\ndependencies:\n- python=3.10\n- pip\n- pip:\n  - scikit-learn==1.5.0\n  - mlflow\nname: env\n"
        );
    }

    #[test]
    fn strings_that_read_back_as_other_types_are_quoted() {
        for (s, want) in [
            ("3.10", "'3.10'"),
            ("true", "'true'"),
            ("No", "'No'"),
            ("12", "'12'"),
            ("1e5", "1e5"),
            ("1e+5", "1e+5"),
            ("2024-01-02", "'2024-01-02'"),
            ("a: b", "'a: b'"),
            ("-e .", "-e ."),
            ("y", "y"),
            ("1_000", "'1_000'"),
            ("1:30", "'1:30'"),
            ("0x1F", "'0x1F'"),
            (".5", "'.5'"),
            ("a #b", "'a #b'"),
            ("x:", "'x:'"),
            ("~", "'~'"),
            ("@x", "'@x'"),
            (
                "git+https://github.com/a/b.git@main#egg=x",
                "git+https://github.com/a/b.git@main#egg=x",
            ),
            ("torch==2.1.0+cu118", "torch==2.1.0+cu118"),
            ("--extra-index-url", "--extra-index-url"),
            ("it's", "it's"),
            ("*x", "'*x'"),
            ("", "''"),
            ("python>=3.8", "python>=3.8"),
        ] {
            assert_eq!(scalar_text(&json!(s)), want, "{s}");
        }
        assert_eq!(scalar_text(&json!(1e-5)), "1.0e-05");
        assert_eq!(scalar_text(&json!(0.5)), "0.5");
        assert_eq!(scalar_text(&json!("a\tb")), "\"a\\tb\"");
    }
}
