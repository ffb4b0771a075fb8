//! Command-line definitions (clap derive). Parsing only: `app` does the work.
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile and run a script. The script sees ARGS (positional arguments) and OPTS
    /// (a map of --key=value and --flag options, typed int/float/bool/string)
    Run {
        /// The script file
        file: PathBuf,
        /// Arguments for the script (`--` ends option parsing)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compile scripts without running them; report every error found
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Interactive shell: multi-line input, completion, history
    Repl,
    /// API reference of the native modules and std/ modules, from their metadata
    Doc {
        /// Only this module (fs, sh, std/helpers, …)
        module: Option<String>,
        #[arg(long, value_enum, default_value_t = DocFormat::Md)]
        format: DocFormat,
    },
    /// GPUs: memory, load, temperature and which labhost job holds which slot
    Gpus {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds until Ctrl-C
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// Run a command in a container (nussl `run_in_docker`), streaming its output; exits with
    /// the container's exit code
    DockerRun {
        /// Container name (sanitised; default derived from the command)
        #[arg(long)]
        name: Option<String>,
        /// GPUs: `all`, a count, or device ids `0,1`
        #[arg(long)]
        gpus: Option<String>,
        /// Image (default: $DOCKER_IMAGE_NAME)
        #[arg(long)]
        image: Option<String>,
        /// Network mode (e.g. `none`, `host`)
        #[arg(long)]
        network: Option<String>,
        /// Mount the nussl storage folders (data, cache, artifacts, code)
        #[arg(long)]
        storage: bool,
        /// The command (after `--`)
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Jobs in the state store, newest first
    Jobs {
        /// Only jobs with this status (queued, running, completed, failed, cancelled, timed_out)
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A job's output (stdout; --stderr for stderr)
    Logs {
        id: i64,
        /// Keep printing until the job ends
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        stderr: bool,
    },
    /// Cancel jobs (a running one is killed by the host running it)
    Cancel {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Running and queued jobs, GPUs and their holders
    Status,
    /// Re-queue the jobs of hosts that died and run every unfinished job to the end
    Resume {
        /// Jobs at once (default: CPUs)
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Run a nussl-style pipeline file (a list of jobs: script/command, config, args, num_gpus,
    /// blocking, run_in) on the job engine. Running it again skips what completed.
    Pipeline {
        /// The pipeline YAML file
        file: PathBuf,
        /// Jobs at once (default: the file's num_jobs, else 1)
        #[arg(long)]
        workers: Option<usize>,
        /// Print the resolved jobs and stop
        #[arg(long)]
        dry_run: bool,
        /// Run every job again, even those that completed before
        #[arg(long)]
        rerun: bool,
        /// Cancel what is left after the first job that fails
        #[arg(long)]
        fail_fast: bool,
    },
    /// Print shell completions
    Completions { shell: clap_complete::Shell },
}
