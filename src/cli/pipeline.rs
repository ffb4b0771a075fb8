//! `labhost pipeline FILE [--workers N] [--dry-run] [--rerun] [--fail-fast]`.
use std::path::PathBuf;

use clap::Args;

use super::error::{CmdResult, Failure};
use crate::modules::jobs::pipeline;
use crate::modules::jobs::pool::{self, PoolOpts};
use crate::modules::jobs::progress::Progress;
use crate::store::{RunIn, RunStatus};

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline YAML file
    pub file: PathBuf,
    /// Jobs at once, 1 or more (default: the file's num_jobs, else 1)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: Option<u64>,
    /// Print the resolved jobs and stop
    #[arg(long)]
    pub dry_run: bool,
    /// Run every job again, even those that completed before
    #[arg(long)]
    pub rerun: bool,
    /// Cancel what is left after the first job that fails
    #[arg(long)]
    pub fail_fast: bool,
}

pub fn run(a: PipelineArgs) -> CmdResult {
    crate::runtime::install_ctrl_c(true);
    let (specs, num_jobs, file_fail_fast) = pipeline::load(&a.file, a.rerun)?;
    let workers = a.workers.or(num_jobs).unwrap_or(1) as usize;
    if a.dry_run {
        for (i, s) in specs.iter().enumerate() {
            let cmd = s.command.as_ref().map(|c| c.display()).unwrap_or_default();
            println!(
                "{i:>3}  {:<8} gpus={} {}{}",
                match s.run_in.unwrap_or_default() {
                    RunIn::Host => "host",
                    RunIn::Docker => "docker",
                },
                s.num_gpus,
                if s.blocking { "blocking " } else { "" },
                crate::redact::apply(&cmd)
            );
        }
        println!("{} job(s), {workers} at once", specs.len());
        return Ok(());
    }
    let opts = PoolOpts {
        max_workers: Some(workers),
        fail_fast: a.fail_fast || file_fail_fast,
    };
    let cancel = crate::runtime::ctx().cancel.token();
    let label = a.file.display().to_string();
    let mut progress = Progress::new(specs.len(), &label, false);
    let total = specs.len();
    match pool::run(specs, &opts, &mut progress, &cancel) {
        Ok(sum) => {
            crate::engine::at_exit(crate::engine::AtExit::Wait);
            let done = sum.count(RunStatus::Completed);
            let mut failed = Vec::new();
            for (id, st) in sum.ids.iter().zip(&sum.statuses) {
                if *st != Some(RunStatus::Completed) {
                    let st = st.map(|s| s.as_str()).unwrap_or("unknown");
                    failed.push(format!("job {id} {st} (labhost logs {id})"));
                }
            }
            println!("{done} of {total} job(s) completed");
            for f in &failed {
                println!("  {f}");
            }
            if sum.not_submitted > 0 {
                println!(
                    "  {} job(s) not started (--fail-fast stopped after a failure)",
                    sum.not_submitted
                );
            }
            if failed.is_empty() && sum.not_submitted == 0 {
                Ok(())
            } else {
                Err(Failure::Code(crate::error::exit::SCRIPT))
            }
        }
        Err(e) if e.is_cancelled() => {
            crate::engine::at_exit(crate::engine::AtExit::Stop);
            eprintln!(
                "interrupted: the pipeline's jobs stay queued; run it again or `labhost resume`"
            );
            Err(Failure::Code(crate::error::exit::INTERRUPTED))
        }
        Err(e) => Err(e.into()),
    }
}
