//! Wiring: logging, colour, Ctrl-C, and dispatch of each subcommand.
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use rhai::{Dynamic, EvalAltResult, Scope};

use crate::cli::{Cli, ColorChoice, Command};
use crate::error::exit;
use crate::host;
use crate::modules::prelude::rhai::exit_value;
use crate::script::{diag, doc, engine, repl};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(&cli);
    let color = use_color(cli.color);
    let code = match cli.command {
        Command::Run { file, args } => run_file(&file, &args, color),
        Command::Check { files } => check_files(&files, color),
        Command::Repl => repl::run(color),
        Command::Doc { module, format } => doc::print(module.as_deref(), format),
        Command::Jobs {
            status,
            json,
            limit,
        } => crate::jobs::cli::jobs(status.as_deref(), json, limit),
        Command::Logs { id, follow, stderr } => crate::jobs::cli::logs(id, follow, stderr),
        Command::Cancel { ids } => crate::jobs::cli::cancel(&ids),
        Command::Status => crate::jobs::cli::status(),
        Command::Resume { workers } => crate::jobs::cli::resume(workers),
        Command::Pipeline {
            file,
            workers,
            dry_run,
            rerun,
            fail_fast,
        } => crate::jobs::pipeline::cli(&file, workers, dry_run, rerun, fail_fast),
        Command::Gpus { json, watch } => crate::modules::gpu::cli::gpus(json, watch),
        Command::DockerRun {
            name,
            gpus,
            image,
            network,
            storage,
            command,
        } => docker_run(name, gpus, image, network, storage, command, color),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "labhost",
                &mut std::io::stdout(),
            );
            exit::OK
        }
    };
    ExitCode::from(code)
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LABHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = use_color(cli.color);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(cli.verbose > 0);
    let _ = if cli.verbose > 0 {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// `--color` wins; `auto` means a terminal on stderr and no `NO_COLOR`.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

/// First Ctrl-C cancels the running script (exit 130); a second one exits at once.
/// `hard_exit: false` (REPL) only cancels, so the prompt comes back.
pub fn install_ctrl_c(hard_exit: bool) {
    let h = host::ctx();
    let _guard = h.rt.enter();
    let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    else {
        return;
    };
    h.rt.spawn(async move {
        while sig.recv().await.is_some() {
            let c = &host::ctx().cancel;
            if hard_exit && c.is_cancelled() {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            c.cancel();
        }
    });
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

fn usage_error(msg: &str, color: bool) -> u8 {
    if color {
        eprintln!("\x1b[1;31merror\x1b[0m: {msg}");
    } else {
        eprintln!("error: {msg}");
    }
    exit::USAGE
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

/// The message of a script error (the `message` of a `#{kind, message}` map, else its text).
pub fn error_message(err: &EvalAltResult) -> String {
    diag::from_eval(err, "").message
}

pub fn report(err: &EvalAltResult, source: &str, color: bool) {
    let d = diag::from_eval(err, source);
    eprint!(
        "{}",
        diag::render(&d, &diag::read_source, &diag::Style { color })
    );
}

/// Maps the end of a script to an exit code, printing what the user must see.
pub fn finish(result: Result<Dynamic, Box<EvalAltResult>>, source: &str, color: bool) -> u8 {
    crate::modules::docker::cleanup_blocking();
    match result {
        Ok(_) => exit::OK,
        Err(e) => match *e {
            ref t if exit_value(t).is_some() => exit_code_of(exit_value(t).unwrap_or_default()),
            EvalAltResult::Exit(v, _) => exit_code_of(v),
            EvalAltResult::ErrorTerminated(..) if host::ctx().cancel.is_cancelled() => {
                eprintln!("interrupted");
                exit::INTERRUPTED
            }
            ref other => {
                report(other, source, color);
                exit::SCRIPT
            }
        },
    }
}

/// `exit()` → 0, `exit(n)` → n (0–255), `exit("text")` prints the text and exits 1
/// (Python's `sys.exit("text")`), anything else is an error.
pub fn exit_code_of(v: Dynamic) -> u8 {
    if v.is_unit() {
        return exit::OK;
    }
    if let Ok(n) = v.as_int() {
        if let Ok(code) = u8::try_from(n) {
            return code;
        }
        eprintln!("error: exit code {n} is out of range (0-255)");
        return exit::SCRIPT;
    }
    if v.is_string() {
        eprintln!("{}", crate::redact::apply(&v.to_string()));
        return exit::SCRIPT;
    }
    eprintln!(
        "error: exit() takes an integer code or a message, not {}",
        v.type_name()
    );
    exit::SCRIPT
}

fn run_file(file: &Path, args: &[String], color: bool) -> u8 {
    let text = match read_script(file) {
        Ok(t) => t,
        Err(msg) => return usage_error(&msg, color),
    };
    install_ctrl_c(true);
    let engine = engine::build(engine::Options::default());
    let mut scope = script_scope(args);
    let source = file.display().to_string();
    let mut ast = match engine.compile_with_scope(&scope, &text) {
        Ok(a) => a,
        Err(e) => {
            let d = diag::from_parse(&e, &source);
            eprint!(
                "{}",
                diag::render(&d, &|_| Some(text.clone()), &diag::Style { color })
            );
            return exit::SCRIPT;
        }
    };
    ast.set_source(source.as_str());
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    finish(result, &source, color)
}

fn docker_run(
    name: Option<String>,
    gpus: Option<String>,
    image: Option<String>,
    network: Option<String>,
    storage: bool,
    command: Vec<String>,
    color: bool,
) -> u8 {
    use crate::modules::docker;
    install_ctrl_c(true);
    let spec = docker::RunSpec {
        image,
        command: Some(command),
        name,
        network,
        storage,
        gpus: gpus.as_deref().map(docker::Gpus::parse),
        auto_remove: true,
        prefix: Some(String::new()),
        ..Default::default()
    };
    let h = host::ctx();
    let mut emit = |s: crate::host::Stream, l: &str| h.sink.line(s, l);
    match h
        .rt
        .block_on(docker::run(&spec, &mut emit, h.cancel.token()))
    {
        Ok(r) => u8::try_from(r.exit_code).unwrap_or(exit::SCRIPT),
        Err(e) if e.is_cancelled() => {
            eprintln!("interrupted");
            exit::INTERRUPTED
        }
        Err(e) => {
            let tag = if color {
                format!("\x1b[1;31merror\x1b[0m[{}]", e.kind)
            } else {
                format!("error[{}]", e.kind)
            };
            eprintln!("{tag}: {}", crate::redact::apply(&e.message));
            exit::SCRIPT
        }
    }
}

fn check_files(files: &[std::path::PathBuf], color: bool) -> u8 {
    let engine = engine::build(engine::Options::default());
    let scope = script_scope(&[]);
    let mut failed = 0;
    for f in files {
        let source = f.display().to_string();
        let text = match read_script(f) {
            Ok(t) => t,
            Err(msg) => {
                eprintln!("error: {msg}");
                failed += 1;
                continue;
            }
        };
        if let Err(e) = engine.compile_with_scope(&scope, &text) {
            let d = diag::from_parse(&e, &source);
            eprint!(
                "{}",
                diag::render(&d, &|_| Some(text.clone()), &diag::Style { color })
            );
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} file(s) failed to compile", files.len());
        exit::SCRIPT
    } else {
        eprintln!("{} file(s) ok", files.len());
        exit::OK
    }
}
