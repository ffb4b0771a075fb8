//! The script runner: a file (or text) → a scope with `ARGS`/`OPTS` → evaluation → an
//! [`ScriptOutcome`]. Used by `labhost run` (which cron starts for each script fire), the REPL and
//! pipelines. It prints nothing: the caller shows the outcome.
use std::path::Path;

use rhai::{Dynamic, EvalAltResult, Scope};

use crate::bridge::exit_value;
use crate::error::exit;
use crate::runtime;
use crate::script::{diag, engine};

/// How a script ended.
#[derive(Debug)]
pub enum ScriptOutcome {
    /// It ran to its end, or called `exit(n)`: the exit code, and the text of
    /// `exit("message")` (printed as is, like Python's `sys.exit("message")`).
    Exit { code: u8, message: Option<String> },
    /// Ctrl-C.
    Interrupted,
    /// A syntax or runtime error (uncaught throw included); `text` is the script's text for
    /// the caret line when it is not a file on disk.
    Failed {
        diag: Box<diag::Diagnostic>,
        text: Option<String>,
    },
}

impl ScriptOutcome {
    pub fn ok() -> ScriptOutcome {
        ScriptOutcome::Exit {
            code: exit::OK,
            message: None,
        }
    }
}

/// Reads a script file with clear errors for the usual mistakes. Err = message.
pub fn read_script(path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return Err(format!("'{}' is a directory, not a script", path.display()));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        let why = e.to_string();
        let why = why.split(" (os error").next().unwrap_or(&why).to_string();
        format!("cannot read '{}': {why}", path.display())
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        format!(
            "'{}' is not UTF-8 text: invalid byte at {}:{line}:{col}",
            path.display(),
            path.display()
        )
    })?;
    // A shebang line is allowed; blank it so line numbers stay right.
    Ok(match text.strip_prefix("#!") {
        Some(rest) => match rest.find('\n') {
            Some(i) => rest[i..].to_string(),
            None => String::new(),
        },
        None => text,
    })
}

/// Values the script sees as `ARGS` and `OPTS`.
pub fn script_scope(args: &[String]) -> Scope<'static> {
    use crate::util::OptValue;
    let (pos, opts) = crate::util::split_script_args(args);
    let mut scope = Scope::new();
    let args: rhai::Array = pos.into_iter().map(Dynamic::from).collect();
    let mut map = rhai::Map::new();
    for (k, v) in opts {
        let v = match v {
            OptValue::Int(i) => Dynamic::from(i),
            OptValue::Float(f) => Dynamic::from(f),
            OptValue::Bool(b) => Dynamic::from(b),
            OptValue::Str(s) => Dynamic::from(s),
        };
        map.insert(k.into(), v);
    }
    scope.push_constant("ARGS", args);
    scope.push_constant("OPTS", map);
    scope
}

/// `exit()` → 0, `exit(n)` → n (0–255), `exit("text")` → 1 with the text (Python's
/// `sys.exit("text")`); anything else is an error.
pub fn exit_outcome(v: Dynamic) -> ScriptOutcome {
    let failed = |msg: String| ScriptOutcome::Failed {
        diag: Box::new(diag::Diagnostic {
            kind: "exit".into(),
            message: msg,
            ..Default::default()
        }),
        text: None,
    };
    if v.is_unit() {
        return ScriptOutcome::ok();
    }
    if let Ok(n) = v.as_int() {
        return match u8::try_from(n) {
            Ok(code) => ScriptOutcome::Exit {
                code,
                message: None,
            },
            Err(_) => failed(format!("exit code {n} is out of range (0-255)")),
        };
    }
    if v.is_string() {
        return ScriptOutcome::Exit {
            code: exit::SCRIPT,
            message: Some(v.to_string()),
        };
    }
    failed(format!(
        "exit() takes an integer code or a message, not {}",
        v.type_name()
    ))
}

/// Maps the end of an evaluation to an outcome.
pub fn outcome_of(result: Result<Dynamic, Box<EvalAltResult>>, source: &str) -> ScriptOutcome {
    match result {
        Ok(_) => ScriptOutcome::ok(),
        Err(e) => match *e {
            ref t if exit_value(t).is_some() => exit_outcome(exit_value(t).unwrap_or_default()),
            EvalAltResult::Exit(v, _) => exit_outcome(v),
            EvalAltResult::ErrorTerminated(..) if runtime::ctx().cancel.is_cancelled() => {
                ScriptOutcome::Interrupted
            }
            ref other => ScriptOutcome::Failed {
                diag: Box::new(diag::from_eval(other, source)),
                text: None,
            },
        },
    }
}

/// Compiles and runs `text` (named `source` in diagnostics) with `ARGS`/`OPTS` from `args`.
/// Containers the script started and left are removed before it returns.
pub fn run_text(text: &str, source: &str, args: &[String]) -> ScriptOutcome {
    let engine = engine::build(engine::Options::default());
    let mut scope = script_scope(args);
    let ast = match compile(&engine, &scope, text, source) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    crate::runtime::script_ended();
    let outcome = outcome_of(result, source);
    finish_jobs(&outcome);
    outcome
}

/// Compiles `text` (named `source`) against `scope`'s variables; a syntax error is the
/// script's outcome, with the caret line.
pub fn compile(
    engine: &rhai::Engine,
    scope: &Scope,
    text: &str,
    source: &str,
) -> Result<rhai::AST, ScriptOutcome> {
    let mut ast = engine
        .compile_with_scope(scope, text)
        .map_err(|e| ScriptOutcome::Failed {
            diag: Box::new(diag::from_parse(&e, source, text)),
            text: Some(text.to_string()),
        })?;
    ast.set_source(source);
    Ok(ast)
}

/// What happens to the jobs a script submitted when it ends: after a normal end (or
/// `exit(n)`) they are waited for, with a line saying so; after an error or Ctrl-C (or a
/// Ctrl-C while waiting) the running ones are stopped, all of their processes, and put back
/// in the queue for `labhost resume`. Either way no process of a job outlives its host.
pub fn finish_jobs(outcome: &ScriptOutcome) {
    let how = match outcome {
        ScriptOutcome::Exit { .. } => crate::engine::AtExit::Wait,
        ScriptOutcome::Interrupted | ScriptOutcome::Failed { .. } => crate::engine::AtExit::Stop,
    };
    crate::engine::at_exit(how);
}

/// Reads and runs a script file. `Err` is a message about the file itself (missing, a folder,
/// not UTF-8): a usage error.
pub fn run_file(file: &Path, args: &[String]) -> Result<ScriptOutcome, String> {
    let text = read_script(file)?;
    Ok(run_text(&text, &file.display().to_string(), args))
}

/// Compiles `file` without running it: `Ok(None)` when it compiles.
pub fn check_file(engine: &rhai::Engine, file: &Path) -> Result<Option<ScriptOutcome>, String> {
    let text = read_script(file)?;
    Ok(compile(
        engine,
        &script_scope(&[]),
        &text,
        &file.display().to_string(),
    )
    .err())
}
