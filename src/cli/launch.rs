//! `labhost launch` (hidden): the launcher of a distributed job's ranks on this machine
//! (`jobs::launch`); sweeps of job files with a `distribution:` put it in front of the
//! command.
use clap::Args;

use super::error::{CmdResult, Failure};
use crate::modules::jobs::launch::{self, Layout};

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// pytorch, mpi or tensorflow
    #[arg(long)]
    pub kind: String,
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    #[arg(long, default_value_t = 1)]
    pub per_node: u32,
    #[arg(long, default_value_t = 0)]
    pub ps: u32,
    /// The command each rank runs (after `--`)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Exits with the first failing rank's code, else 0.
pub fn run(a: LaunchArgs) -> CmdResult {
    if !matches!(a.kind.as_str(), "pytorch" | "mpi" | "tensorflow") {
        return Err(Failure::Usage(format!(
            "--kind {}: not one of pytorch, mpi, tensorflow",
            a.kind
        )));
    }
    let layout = Layout {
        kind: a.kind,
        nodes: a.nodes.max(1),
        per_node: a.per_node.max(1),
        ps: a.ps,
    };
    match launch::run(&layout, &a.command)? {
        0 => Ok(()),
        c => Err(Failure::Code(u8::try_from(c).unwrap_or(1))),
    }
}
