//! Diagnostics: turns rhai parse and runtime errors into `file:line:col` reports with the
//! source line, a caret under the column, a `kind`, the message and the call chain.
//!
//! ```text
//! error[arithmetic]: Division by zero: 1 / 0
//!   --> deep.rhai:1:22
//!    |
//!  1 | fn c(x) { let y = x / 0; y }
//!    |                      ^
//!    = in function 'c', called at deep.rhai:2:11
//! ```
use std::fmt::Write;

use rhai::{EvalAltResult, ParseError, Position};

#[derive(Debug, Clone, PartialEq)]
pub struct Loc {
    pub source: String,
    pub line: usize,
    pub col: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub what: String,
    pub at: Option<Loc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostic {
    pub kind: String,
    pub message: String,
    pub loc: Option<Loc>,
    /// Innermost first: the function the error is in, then its caller, …
    pub chain: Vec<Frame>,
}

fn loc(source: &str, pos: Position) -> Option<Loc> {
    pos.line().map(|line| Loc {
        source: source.to_string(),
        line,
        col: pos.position(),
    })
}

/// A syntax error in `source`.
/// Words Rhai keeps for itself: keywords, and words reserved for the future. A map key or
/// property with one of these names must be quoted (`#{"private": 1}`, `m["private"]`).
pub const RESERVED_WORDS: &[&str] = &[
    "true",
    "false",
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "until",
    "loop",
    "for",
    "in",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "import",
    "export",
    "as",
    "global",
    "fn",
    "private",
    "this",
    "is_shared",
    "is_def_var",
    "is_def_fn",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
    "var",
    "static",
    "shared",
    "goto",
    "exit",
    "match",
    "case",
    "public",
    "protected",
    "use",
    "with",
    "module",
    "package",
    "super",
    "thread",
    "spawn",
    "go",
    "await",
    "async",
    "sync",
    "yield",
    "default",
    "void",
    "null",
    "nil",
];

/// A syntax error in `source` (whose text is `text`). A reserved word used as a map key or
/// property name gets a hint to quote it.
pub fn from_parse(err: &ParseError, source: &str, text: &str) -> Diagnostic {
    let mut message = err.err_type().to_string();
    let pos = err.position();
    if let (Some(l), Some(c)) = (pos.line(), pos.position()) {
        let word: String = text
            .split('\n')
            .nth(l - 1)
            .unwrap_or("")
            .chars()
            .skip(c - 1)
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect();
        let followed_by_colon = text
            .split('\n')
            .nth(l - 1)
            .unwrap_or("")
            .chars()
            .skip(c - 1 + word.chars().count())
            .find(|ch| !ch.is_whitespace())
            == Some(':');
        let about_a_name = message.contains("name of a property")
            || (message.contains("object map literal") && followed_by_colon);
        if about_a_name && RESERVED_WORDS.contains(&word.as_str()) {
            message = format!(
                "`{word}` is a reserved word in Rhai and cannot be a bare map key or property name: quote it (`#{{\"{word}\": …}}`, `m[\"{word}\"]`)"
            );
        }
    }
    Diagnostic {
        kind: "syntax".into(),
        message,
        loc: loc(source, pos),
        chain: Vec::new(),
    }
}

/// A runtime (or compile) error from running `main_source`.
pub fn from_eval(err: &EvalAltResult, main_source: &str) -> Diagnostic {
    let mut frames = Vec::new();
    let mut cur = main_source.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let what = if name.starts_with("anon$") {
                    "in a closure".to_string()
                } else {
                    format!("in function '{name}'")
                };
                frames.push(Frame {
                    what,
                    at: loc(&cur, *pos),
                });
                if !src.is_empty() {
                    cur = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                frames.push(Frame {
                    what: format!("in module '{}'", shown(path)),
                    at: loc(&cur, *pos),
                });
                cur = path.clone();
                e = inner;
            }
            _ => break,
        }
    }
    frames.reverse();
    let (kind, message) = kind_and_message(e);
    Diagnostic {
        kind,
        message,
        loc: loc(&cur, e.position()),
        chain: frames,
    }
}

/// The `kind` a user sees, and the message without rhai's position suffix.
fn kind_and_message(e: &EvalAltResult) -> (String, String) {
    use EvalAltResult as E;
    let plain = |k: &str| (k.to_string(), strip_position(&e.to_string()));
    match e {
        E::ErrorRuntime(v, _) => {
            if let Some(m) = v.read_lock::<rhai::Map>() {
                let kind = m.get("kind").map(|k| k.to_string()).unwrap_or_else(|| "throw".into());
                let msg = m
                    .get("message")
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| format!("{v}"));
                return (kind, msg);
            }
            ("throw".into(), v.to_string())
        }
        E::ErrorParsing(p, _) => ("syntax".into(), p.to_string()),
        E::ErrorFunctionNotFound(sig, _) => (
            "unknown_function".into(),
            format!(
                "no function {} (see `labhost doc` for the functions there are)",
                sig.replace(" (", "(").replace("&str | ImmutableString | String", "string")
            ),
        ),
        E::ErrorVariableNotFound(..) => plain("unknown_variable"),
        E::ErrorPropertyNotFound(..) => plain("unknown_property"),
        E::ErrorModuleNotFound(path, _) => (
            "module_not_found".into(),
            format!(
                "module '{path}' not found (looked in the importing script's folder, LABHOST_PATH and the embedded std/ modules)"
            ),
        ),
        E::ErrorStackOverflow(_) => (
            "stack_overflow".into(),
            format!(
                "too many nested calls (limit {}): unbounded recursion?",
                crate::script::engine::limits::CALL_LEVELS
            ),
        ),
        E::ErrorTerminated(..) => ("interrupted".into(), "interrupted".into()),
        E::ErrorMismatchDataType(..) | E::ErrorMismatchOutputType(..) => plain("type_mismatch"),
        E::ErrorArithmetic(..) => plain("arithmetic"),
        E::ErrorArrayBounds(..) | E::ErrorStringBounds(..) | E::ErrorBitFieldBounds(..) => plain("out_of_bounds"),
        E::ErrorIndexNotFound(..) | E::ErrorIndexingType(..) => plain("index"),
        E::ErrorDataTooLarge(..) | E::ErrorTooManyOperations(..) | E::ErrorTooManyModules(..) | E::ErrorTooManyVariables(..) => plain("limit"),
        E::ErrorAssignmentToConstant(..) | E::ErrorNonPureMethodCallOnConstant(..) => plain("constant"),
        E::ErrorSystem(..) => plain("system"),
        _ => plain("runtime"),
    }
}

/// rhai's Display appends ` (line 3, position 5)`; the report shows that separately.
fn strip_position(s: &str) -> String {
    match s.rfind(" (line ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// Shows a source path relative to the working directory when it is below it.
fn shown(source: &str) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        let cwd = cwd.canonicalize().unwrap_or(cwd);
        if let Ok(rel) = std::path::Path::new(source).strip_prefix(&cwd) {
            return rel.display().to_string();
        }
    }
    source.to_string()
}

pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Renders a diagnostic. `source_text` returns the text of a source name (file path,
/// `<stdlib>/x.rhai`, `<repl>`), or `None` when it cannot be read.
pub fn render(
    d: &Diagnostic,
    source_text: &dyn Fn(&str) -> Option<String>,
    style: &Style,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{} {}",
        style.paint("1;31", "error"),
        style.paint("1", &format!("[{}]:", d.kind)),
        style.paint("1", &crate::redact::apply(&d.message))
    );
    if let Some(l) = &d.loc {
        let col = l.col.map(|c| format!(":{c}")).unwrap_or_default();
        let gutter = l.line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(
            out,
            "{pad}{} {}:{}{col}",
            style.paint("1;34", "-->"),
            shown(&l.source),
            l.line
        );
        // split('\n'), not lines(): a final empty line still counts (rhai-run does the same).
        if let Some(line) =
            source_text(&l.source).and_then(|t| t.split('\n').nth(l.line - 1).map(str::to_string))
        {
            let line = line.trim_end_matches('\r');
            let bar = style.paint("1;34", "|");
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(
                out,
                "{} {bar} {}",
                style.paint("1;34", &l.line.to_string()),
                crate::redact::apply(line)
            );
            if let Some(c) = l.col {
                // Keep tabs so the caret lines up under tab-indented code.
                let lead: String = line
                    .chars()
                    .take(c.saturating_sub(1))
                    .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{pad} {bar} {lead}{}", style.paint("1;31", "^"));
            }
        }
    }
    for f in &d.chain {
        let at = match &f.at {
            Some(l) => format!(
                ", called at {}:{}{}",
                shown(&l.source),
                l.line,
                l.col.map(|c| format!(":{c}")).unwrap_or_default()
            ),
            None => String::new(),
        };
        let gutter = d
            .loc
            .as_ref()
            .map(|l| l.line.to_string().len())
            .unwrap_or(1);
        let _ = writeln!(
            out,
            "{} {} {}{at}",
            " ".repeat(gutter),
            style.paint("1;34", "="),
            f.what
        );
    }
    out
}

/// Reads source text by diagnostic source name: the embedded stdlib or a file on disk.
pub fn read_source(name: &str) -> Option<String> {
    if let Some(t) = crate::script::stdlib::source_text(name) {
        return Some(t.to_string());
    }
    std::fs::read_to_string(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_rhai_position_suffix() {
        assert_eq!(
            strip_position("Division by zero (line 1, position 22)"),
            "Division by zero"
        );
        assert_eq!(strip_position("plain"), "plain");
    }
}
