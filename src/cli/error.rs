//! The one error printer: every command's failure goes through [`report`], which picks the
//! exit code, colours the `error[kind]` header, shows `file:line:col` with a caret for script
//! errors, and masks secrets.
use crate::error::{exit, LabError};
use crate::script::diag;
use crate::script::run::ScriptOutcome;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad command line or unreadable input file: exit 2.
    Usage(String),
    /// A module or store error (`error[kind]: message`): exit 1.
    Host(LabError),
    /// A script's outcome that is not a plain success (error, interrupt, `exit(n)`).
    Script(ScriptOutcome),
    /// Ctrl-C: "interrupted", exit 130.
    Interrupted,
    /// Already shown to the user (e.g. a table of failed jobs): just this exit code.
    Code(u8),
}

impl From<LabError> for Failure {
    fn from(e: LabError) -> Self {
        if e.is_cancelled() {
            Failure::Interrupted
        } else {
            Failure::Host(e)
        }
    }
}

/// What a command handler returns: `Ok(())` is exit 0.
pub type CmdResult = Result<(), Failure>;

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints `f` (secrets masked) and returns the process exit code.
pub fn report(f: Failure, color: bool) -> u8 {
    let red = |t: &str| paint(color, "1;31", t);
    match f {
        Failure::Usage(msg) => {
            eprintln!("{}: {}", red("error"), crate::redact::apply(&msg));
            exit::USAGE
        }
        Failure::Host(e) => {
            eprintln!(
                "{}: {}",
                red(&format!("error[{}]", e.kind)),
                crate::redact::apply(&e.message)
            );
            crate::error::exit_code_of(&e.kind)
        }
        Failure::Interrupted => {
            eprintln!("interrupted");
            exit::INTERRUPTED
        }
        Failure::Code(c) => c,
        Failure::Script(o) => match o {
            ScriptOutcome::Exit { code, message } => {
                if let Some(m) = message {
                    eprintln!("{}", crate::redact::apply(&m));
                }
                code
            }
            ScriptOutcome::Interrupted => report(Failure::Interrupted, color),
            ScriptOutcome::Failed { diag: d, text } => {
                let read = |name: &str| text.clone().or_else(|| diag::read_source(name));
                eprint!("{}", diag::render(&d, &read, &diag::Style { color }));
                exit::SCRIPT
            }
        },
    }
}

/// A script outcome as a command result.
pub fn script(o: ScriptOutcome) -> CmdResult {
    match o {
        ScriptOutcome::Exit {
            code: 0,
            message: None,
        } => Ok(()),
        other => Err(Failure::Script(other)),
    }
}
