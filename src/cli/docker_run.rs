//! `labhost docker-run`: nussl's `run_in_docker` from the command line.
use clap::Args;

use super::error::{CmdResult, Failure};
use crate::modules::docker;

#[derive(Debug, Args)]
pub struct DockerRunArgs {
    /// Container name (sanitised; default derived from the command)
    #[arg(long)]
    pub name: Option<String>,
    /// GPUs: `all`, a count, or device ids `0,1`
    #[arg(long)]
    pub gpus: Option<String>,
    /// Image (default: $DOCKER_IMAGE_NAME)
    #[arg(long)]
    pub image: Option<String>,
    /// Network mode (e.g. `none`, `host`)
    #[arg(long)]
    pub network: Option<String>,
    /// Mount the nussl storage folders (data, cache, artifacts, code)
    #[arg(long)]
    pub storage: bool,
    /// The command (after `--`)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Exits with the container's exit code.
pub fn run(a: DockerRunArgs) -> CmdResult {
    crate::runtime::install_ctrl_c(true);
    let spec = docker::RunSpec {
        image: a.image,
        command: Some(a.command),
        name: a.name,
        network: a.network,
        storage: a.storage.then(crate::modules::experiment::dirs),
        git_commit: crate::modules::git::head_commit(std::path::Path::new(".")),
        gpus: a.gpus.as_deref().map(docker::Gpus::parse),
        auto_remove: true,
        prefix: Some(String::new()),
        ..Default::default()
    };
    let h = crate::runtime::ctx();
    let mut emit = |s: crate::runtime::Stream, l: &str| h.sink.line(s, l);
    let r =
        h.rt.block_on(docker::run(&spec, &mut emit, h.cancel.token()))?;
    match u8::try_from(r.exit_code) {
        Ok(0) => Ok(()),
        Ok(c) => Err(Failure::Code(c)),
        Err(_) => Err(Failure::Code(crate::error::exit::SCRIPT)),
    }
}
