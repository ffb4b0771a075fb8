//! `labhost repl`: rustyline editor with multi-line input (a Validator asks the parser
//! whether the statement is complete), completion of modules, functions and variables,
//! history in the state dir, and `:` commands. Variables and functions persist between
//! inputs; Ctrl-C cancels the running statement, Ctrl-D exits.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Scope, AST};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper, Highlighter, Hinter};

use crate::bridge::exit_value;
use crate::error::exit;
use crate::runtime;
use crate::script::{diag, doc, engine};

pub const PROMPT: &str = "labhost> ";

const COMMANDS: &[(&str, &str)] = &[
    (":help", "this help"),
    (
        ":functions",
        "list functions: `:functions fs` for one module",
    ),
    (
        ":vars",
        "variables defined so far, with their types and values",
    ),
    (
        ":load",
        "`:load FILE` runs a script here; its variables and functions stay",
    ),
    (":quit", "leave (Ctrl-D does too)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "return", "throw", "try",
    "catch", "import", "export", "as", "break", "continue", "switch", "true", "false", "private",
];

#[derive(Helper, Hinter, Highlighter)]
struct ReplHelper {
    engine: Arc<Engine>,
    /// Native module name → function names.
    modules: BTreeMap<String, Vec<String>>,
    globals: Vec<String>,
    /// Variables and script functions defined so far (updated after every input).
    defined: Arc<Mutex<Vec<String>>>,
}

/// True when a parse error means "the statement goes on": it sits at the very end of the
/// input and is an unexpected end, a missing closing token or an unterminated string.
pub fn is_incomplete(err: &rhai::ParseError, input: &str) -> bool {
    let at_end = {
        let lines: Vec<&str> = input.split('\n').collect();
        let last = lines.len();
        let pos = err.position();
        match (pos.line(), pos.position()) {
            (None, _) => true,
            (Some(l), col) => {
                l >= last && col.is_none_or(|c| c > lines[last - 1].trim_end().chars().count())
            }
        }
    };
    match err.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::MissingToken(..) => at_end,
        ParseErrorType::BadInput(rhai::LexError::UnterminatedString) => true,
        ParseErrorType::BadInput(rhai::LexError::UnexpectedInput(s)) if s.starts_with('`') => true,
        _ => false,
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || input.trim_start().starts_with(':') {
            return Ok(ValidationResult::Valid(None));
        }
        match self.engine.compile(input) {
            Err(e) if is_incomplete(&e, input) => Ok(ValidationResult::Incomplete),
            _ => Ok(ValidationResult::Valid(None)),
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == ':')
            .last()
            .map(|(i, _)| i)
            .unwrap_or(pos);
        let word = &before[start..];
        Ok((start, self.candidates(word, start == 0)))
    }
}

impl ReplHelper {
    fn candidates(&self, word: &str, line_start: bool) -> Vec<Pair> {
        let pair = |s: String| Pair {
            display: s.clone(),
            replacement: s,
        };
        let mut out: Vec<String> = Vec::new();
        if line_start && word.starts_with(':') {
            out.extend(
                COMMANDS
                    .iter()
                    .map(|(c, _)| c.to_string())
                    .filter(|c| c.starts_with(word)),
            );
        } else if let Some((m, partial)) = word.rsplit_once("::") {
            if let Some(fns) = self.modules.get(m) {
                out.extend(
                    fns.iter()
                        .filter(|f| f.starts_with(partial))
                        .map(|f| format!("{m}::{f}")),
                );
            }
        } else if !word.is_empty() {
            out.extend(
                self.modules
                    .keys()
                    .filter(|m| m.starts_with(word))
                    .map(|m| format!("{m}::")),
            );
            let defined = self
                .defined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            out.extend(
                defined
                    .into_iter()
                    .chain(self.globals.iter().cloned())
                    .chain(KEYWORDS.iter().map(|k| k.to_string()))
                    .filter(|n| n.starts_with(word)),
            );
        }
        out.sort();
        out.dedup();
        out.into_iter().map(pair).collect()
    }
}

struct Session {
    engine: Arc<Engine>,
    scope: Scope<'static>,
    lib: AST,
    color: bool,
    defined: Arc<Mutex<Vec<String>>>,
}

enum Flow {
    Continue,
    Quit(u8),
}

impl Session {
    fn refresh_names(&self) {
        let mut names: Vec<String> = self.scope.iter().map(|(n, _, _)| n.to_string()).collect();
        names.extend(self.lib.iter_functions().map(|f| f.name.to_string()));
        *self.defined.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }

    fn report(&self, err: &EvalAltResult, source: &str, input: &str) {
        let d = diag::from_eval(err, source);
        let text = |s: &str| {
            if s == "<repl>" {
                Some(input.to_string())
            } else {
                diag::read_source(s)
            }
        };
        eprint!(
            "{}",
            diag::render(&d, &text, &diag::Style { color: self.color })
        );
    }

    /// Compiles and runs `input` (source name `source`), keeping variables and functions.
    fn eval(&mut self, input: &str, source: &str) -> Flow {
        runtime::ctx().cancel.reset();
        let mut ast = match self.engine.compile_with_scope(&self.scope, input) {
            Ok(a) => a,
            Err(e) => {
                let d = diag::from_parse(&e, source, input);
                eprint!(
                    "{}",
                    diag::render(
                        &d,
                        &|_| Some(input.to_string()),
                        &diag::Style { color: self.color }
                    )
                );
                return Flow::Continue;
            }
        };
        ast.set_source(source);
        let merged = self.lib.merge(&ast);
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &merged);
        self.lib = merged;
        self.lib.clear_statements();
        self.refresh_names();
        match result {
            Ok(v) if v.is_unit() => {}
            Ok(v) => runtime::ctx().sink.print(&format!("=> {v:?}")),
            Err(e) => match *e {
                ref t if exit_value(t).is_some() => {
                    let code =
                        match crate::script::run::exit_outcome(exit_value(t).unwrap_or_default()) {
                            crate::script::run::ScriptOutcome::Exit { code, message } => {
                                if let Some(m) = message {
                                    eprintln!("{}", crate::redact::apply(&m));
                                }
                                code
                            }
                            crate::script::run::ScriptOutcome::Failed { diag: d, .. } => {
                                eprint!(
                                    "{}",
                                    diag::render(&d, &|_| None, &diag::Style { color: self.color })
                                );
                                exit::SCRIPT
                            }
                            crate::script::run::ScriptOutcome::Interrupted => exit::INTERRUPTED,
                        };
                    return Flow::Quit(code);
                }
                EvalAltResult::ErrorTerminated(..) if runtime::ctx().cancel.is_cancelled() => {
                    eprintln!("interrupted")
                }
                ref other => self.report(other, source, input),
            },
        }
        Flow::Continue
    }

    fn command(&mut self, line: &str, modules: &BTreeMap<String, Vec<String>>) -> Flow {
        let mut parts = line.split_whitespace();
        let cmd = parts.next().unwrap_or("");
        let arg = parts.next();
        match cmd {
            ":quit" | ":q" | ":exit" => return Flow::Quit(exit::OK),
            ":help" | ":h" => {
                println!(
                    "Type Rhai statements; an unfinished statement continues on the next line."
                );
                println!("Tab completes modules (fs::), functions and variables. Ctrl-C cancels, Ctrl-D exits.");
                for (c, what) in COMMANDS {
                    println!("  {c:<12} {what}");
                }
                println!(
                    "Modules: {}",
                    modules.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            ":vars" => {
                for (name, constant, value) in self.scope.iter() {
                    let kw = if constant { "const" } else { "let" };
                    println!("{kw} {name}: {} = {value:?}", value.type_name());
                }
            }
            ":functions" | ":fns" => self.list_functions(arg),
            ":load" => match arg {
                None => eprintln!("usage: :load FILE"),
                Some(f) => match crate::script::run::read_script(std::path::Path::new(f)) {
                    Ok(text) => return self.eval(&text, f),
                    Err(msg) => eprintln!("error: {msg}"),
                },
            },
            other => eprintln!("unknown command {other} (:help lists them)"),
        }
        Flow::Continue
    }

    fn list_functions(&self, module: Option<&str>) {
        let docs = doc::collect();
        match module {
            Some(m) => match docs
                .iter()
                .find(|d| d.name == m || d.name == format!("std/{m}"))
            {
                Some(d) => {
                    for f in &d.functions {
                        let first = f.doc.lines().next().unwrap_or("");
                        println!("{}  — {first}", f.signature);
                    }
                }
                None => eprintln!("no module '{m}'"),
            },
            None => {
                for d in &docs {
                    println!("{} ({} functions)", d.name, d.functions.len());
                }
                let mine: Vec<String> = self
                    .lib
                    .iter_functions()
                    .map(|f| format!("{}({})", f.name, f.params.join(", ")))
                    .collect();
                if !mine.is_empty() {
                    println!("defined here: {}", mine.join(", "));
                }
            }
        }
    }
}

fn history_path() -> Option<PathBuf> {
    crate::state::dir().ok().map(|d| d.join("repl_history"))
}

pub fn run(color: bool) -> u8 {
    crate::runtime::install_ctrl_c(false);
    let engine = Arc::new(engine::build(engine::Options { repl: true }));
    let docs = doc::collect();
    let mut modules = BTreeMap::new();
    let mut globals = Vec::new();
    for d in &docs {
        let names: Vec<String> = d
            .functions
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| !n.contains('$'))
            .collect();
        if d.name == "global" {
            globals = names;
        } else if d.kind == "native" {
            modules.insert(d.name.clone(), names);
        }
    }
    let defined = Arc::new(Mutex::new(Vec::new()));
    let helper = ReplHelper {
        engine: engine.clone(),
        modules: modules.clone(),
        globals,
        defined: defined.clone(),
    };
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .max_history_size(10_000)
        .and_then(|b| Ok(b.history_ignore_dups(true)?.build()));
    let config = config.unwrap_or_default();
    let mut rl: Editor<ReplHelper, rustyline::history::DefaultHistory> =
        match Editor::with_config(config) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return exit::SCRIPT;
            }
        };
    rl.set_helper(Some(helper));
    let hist = history_path();
    if let Some(h) = &hist {
        let _ = rl.load_history(h);
    }
    let mut session = Session {
        engine,
        scope: crate::script::run::script_scope(&[]),
        lib: AST::empty(),
        color,
        defined,
    };
    session.refresh_names();
    println!(
        "labhost {} — :help for help, Ctrl-D to exit",
        env!("CARGO_PKG_VERSION")
    );
    let code = loop {
        match rl.readline(PROMPT) {
            Ok(line) => {
                if line.trim().is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line.as_str());
                if let Some(h) = &hist {
                    let _ = rl.save_history(h);
                }
                let flow = if line.trim_start().starts_with(':') {
                    session.command(line.trim(), &modules)
                } else {
                    session.eval(&line, "<repl>")
                };
                if let Flow::Quit(c) = flow {
                    break c;
                }
            }
            Err(ReadlineError::Interrupted) => {
                println!("^C");
            }
            Err(ReadlineError::Eof) => break exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                break exit::SCRIPT;
            }
        }
    };
    if let Some(h) = &hist {
        let _ = rl.save_history(h);
    }
    // Jobs submitted in the session: waited for, or (Ctrl-C) stopped and re-queued.
    crate::runtime::ctx().cancel.reset();
    crate::engine::at_exit(crate::engine::AtExit::Wait);
    code
}
