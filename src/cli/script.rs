//! `labhost run`, `check`, `repl`, `doc`.
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::error::{script as script_result, CmdResult, Failure};
use super::Flags;
use crate::script::{doc as docs, engine, repl as shell, run as runner};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script file
    pub file: PathBuf,
    /// Arguments for the script (`--` ends option parsing)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Md,
    Json,
}

#[derive(Debug, Args)]
pub struct DocArgs {
    /// Only this module (fs, sh, std/helpers, …)
    pub module: Option<String>,
    #[arg(long, value_enum, default_value_t = DocFormat::Md)]
    pub format: DocFormat,
}

pub fn run(a: RunArgs, _ctx: &Flags) -> CmdResult {
    let text = runner::read_script(&a.file).map_err(Failure::Usage)?;
    crate::runtime::install_ctrl_c(true);
    script_result(runner::run_text(
        &text,
        &a.file.display().to_string(),
        &a.args,
    ))
}

pub fn check(a: CheckArgs, ctx: &Flags) -> CmdResult {
    let engine = engine::build(engine::Options::default());
    let mut failed = 0;
    for f in &a.files {
        let bad = match runner::check_file(&engine, f) {
            Ok(None) => None,
            Ok(Some(outcome)) => Some(Failure::Script(outcome)),
            Err(msg) => Some(Failure::Host(crate::error::LabError::new("check", msg))),
        };
        if let Some(b) = bad {
            super::error::report(b, ctx.color);
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} file(s) failed to compile", a.files.len());
        Err(Failure::Code(crate::error::exit::SCRIPT))
    } else {
        eprintln!("{} file(s) ok", a.files.len());
        Ok(())
    }
}

pub fn repl(ctx: &Flags) -> CmdResult {
    match shell::run(ctx.color) {
        0 => Ok(()),
        c => Err(Failure::Code(c)),
    }
}

pub fn doc(a: DocArgs) -> CmdResult {
    if a.module.as_deref() == Some("errors") {
        return doc_errors(a.format);
    }
    let mods = docs::select(a.module.as_deref()).map_err(Failure::Usage)?;
    match a.format {
        DocFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&mods).unwrap_or_default()
        ),
        DocFormat::Md => print!("{}", docs::to_markdown(&mods)),
    }
    Ok(())
}

/// `labhost doc errors`: every error kind, what it means and its exit code.
fn doc_errors(format: DocFormat) -> CmdResult {
    use crate::error::{exit_code_of, KINDS};
    match format {
        DocFormat::Json => {
            let rows: Vec<serde_json::Value> = KINDS
                .iter()
                .map(|(k, m)| serde_json::json!({"kind": k, "meaning": m, "exit_code": exit_code_of(k)}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        DocFormat::Md => {
            println!("| kind | meaning | exit code |\n| --- | --- | --- |");
            for (k, m) in KINDS {
                println!("| `{k}` | {m} | {} |", exit_code_of(k));
            }
        }
    }
    Ok(())
}
