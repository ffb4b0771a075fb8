//! The command line: clap definitions (one file per command), dispatch, and the one error
//! printer ([`error`]). Nothing else in the crate imports this module.
//!
//! To add a command: a file here with its `Args` struct and a `run(args, &Flags) -> CmdResult`
//! handler, a variant in [`Verb`], a line in [`dispatch`].
mod azure;
mod cron;
mod docker_run;
mod error;
mod gpus;
mod jobs;
mod launch;
mod pipeline;
mod script;
mod sweep;
mod track;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use error::{CmdResult, Failure};

#[derive(Debug, Parser)]
#[command(
    name = "labhost",
    version,
    about = "Host Rhai scripts for ML experiment automation",
    long_about = "labhost runs Rhai scripts that drive experiments: files, GPUs, containers, jobs and sweeps.\n\nExit codes: 0 ok, 1 script error, 2 usage error, 130 interrupted."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors in the log output
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to color diagnostics and tables (NO_COLOR is honoured)
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Compile and run a script. The script sees ARGS (positional arguments) and OPTS
    /// (a map of --key=value and --flag options, typed int/float/bool/string)
    Run(script::RunArgs),
    /// Compile scripts without running them; report every error found
    Check(script::CheckArgs),
    /// Interactive shell: multi-line input, completion, history
    Repl,
    /// API reference of the native modules and std/ modules, from their metadata
    Doc(script::DocArgs),
    /// GPUs: memory, load, temperature and which labhost job holds which slot
    Gpus(gpus::GpusArgs),
    /// Run a command in a container (nussl `run_in_docker`), streaming its output; exits with
    /// the container's exit code
    DockerRun(docker_run::DockerRunArgs),
    /// Jobs in the state store, newest first
    Jobs(jobs::JobsArgs),
    /// A job's output (stdout; --stderr for stderr)
    Logs(jobs::LogsArgs),
    /// Cancel jobs (a running one is killed by the host running it)
    Cancel(jobs::CancelArgs),
    /// Running and queued jobs, GPUs and their holders (-v: how jobs are contained and
    /// watched on this machine)
    Status,
    /// Continue the sweeps of hosts that died, re-queue their jobs and run every unfinished
    /// job to the end
    Resume(jobs::ResumeArgs),
    /// Run a nussl-style pipeline file (a list of jobs: script/command, config, args, num_gpus,
    /// blocking, run_in) on the job engine. Running it again skips what completed.
    Pipeline(pipeline::PipelineArgs),
    /// Run an Azure ML sweep YAML (unchanged) or a sweep script on the local job engine:
    /// trials journaled, early termination, best trial and table. Running it again after a
    /// crash continues the same sweep
    Sweep(sweep::SweepArgs),
    /// Submit an Azure ML command, sweep or pipeline job YAML to Azure ML (code uploaded,
    /// environments registered, run tags from git); --local runs it on this machine instead
    Submit(sweep::SubmitArgs),
    /// Azure ML jobs: list, status, download outputs, cancel
    #[command(subcommand)]
    Azure(azure::AzureVerb),
    /// Run a schedule: scripts fired by cron expressions in their time zones, never
    /// overlapping by accident, missed fires caught up after a restart; `cron status` lists
    /// what ran
    Cron(cron::CronArgs),
    /// Runs in the store (jobs, sweeps, trials, MLflow-logged runs) with MLflow's filter and
    /// order-by grammar, their latest metrics and params
    Runs(track::RunsArgs),
    /// The run store as an MLflow tracking server
    #[command(subcommand)]
    Track(track::TrackVerb),
    /// The dashboard in the browser: runs, a run's metrics and logs live (the MLflow
    /// endpoint of `track serve` on the same address); prints its URL
    Ui(track::ServeArgs),
    /// A report of a sweep, cross-validation, run or experiment: one self-contained HTML file
    /// (sortable table, best trial, curves, parallel coordinates, early-termination reasons,
    /// aggregation across folds), or --format md|json|csv
    Report(track::ReportArgs),
    /// Print shell completions
    Completions { shell: clap_complete::Shell },
    /// Run a distributed job's ranks on this machine (what a `distribution:` runs as)
    #[command(hide = true)]
    Launch(launch::LaunchArgs),
}

/// What every handler may need from the global flags.
pub struct Flags {
    pub color: bool,
    /// `-v` given (once or more).
    pub verbose: bool,
}

/// An input file named on the command line that cannot be read is a usage error (exit 2),
/// for every command alike.
fn readable(file: &std::path::Path) -> CmdResult {
    match std::fs::File::open(file) {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = e.to_string();
            let why = why.split(" (os error").next().unwrap_or(&why);
            Err(Failure::Usage(format!(
                "cannot read '{}': {why}",
                file.display()
            )))
        }
    }
}

/// A reader that went away (`labhost jobs | head -1`) ends the output quietly, as for any
/// Unix tool, instead of a panic with a backtrace: Rust's `println!` panics on a broken
/// pipe (SIGPIPE is ignored so that writes fail instead of killing the process).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(crate::error::exit::OK));
        }
        default(info)
    }));
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == crate::engine::shim::ARG) {
        // A job host's supervisor (started by the host, not a command of users).
        return crate::engine::shim::main(&args[1..]);
    }
    quiet_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                crate::error::exit::USAGE
            } else {
                crate::error::exit::OK
            });
        }
    };
    init_logging(&cli);
    crate::modules::azure::inputs::lend();
    crate::modules::cron::lend();
    let ctx = Flags {
        color: use_color(cli.color),
        verbose: cli.verbose > 0,
    };
    if let Err(e) = crate::config::check() {
        return ExitCode::from(error::report(error::Failure::Usage(e.message), ctx.color));
    }
    let code = match dispatch(cli.command, &ctx) {
        // A write the state database refused fails the command, even when a script caught
        // the error.
        Ok(()) => match crate::engine::store_failure() {
            Some(e) => error::report(e.into(), ctx.color),
            None => crate::error::exit::OK,
        },
        Err(f) => error::report(f, ctx.color),
    };
    ExitCode::from(code)
}

fn dispatch(cmd: Verb, ctx: &Flags) -> CmdResult {
    match cmd {
        Verb::Run(a) => script::run(a, ctx),
        Verb::Check(a) => script::check(a, ctx),
        Verb::Repl => script::repl(ctx),
        Verb::Doc(a) => script::doc(a),
        Verb::Gpus(a) => gpus::run(a),
        Verb::DockerRun(a) => docker_run::run(a),
        Verb::Jobs(a) => jobs::list(a),
        Verb::Logs(a) => jobs::logs(a),
        Verb::Cancel(a) => jobs::cancel(a),
        Verb::Status => jobs::status(ctx.verbose),
        Verb::Resume(a) => jobs::resume(a),
        Verb::Pipeline(a) => readable(&a.file).and_then(|()| pipeline::run(a)),
        Verb::Sweep(a) => readable(&a.file).and_then(|()| sweep::run(a, ctx)),
        Verb::Submit(a) => readable(&a.file).and_then(|()| sweep::submit(a, ctx)),
        Verb::Azure(c) => azure::run(c),
        Verb::Cron(a) => cron::run(a),
        Verb::Runs(a) => track::runs(a),
        Verb::Track(c) => track::run(c),
        Verb::Ui(a) => track::serve(a),
        Verb::Report(a) => track::report(a),
        Verb::Launch(a) => launch::run(a),
        Verb::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "labhost",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(crate::config::LOG_VAR)
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
fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}
