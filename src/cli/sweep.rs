//! `labhost sweep FILE.yml|FILE.rhai [--dry-run] [--max-concurrent N] [--seed S] [--set K=V]
//! [--rerun]` and `labhost submit FILE.yml --local`: Azure ML sweep and command job YAML run
//! on the local job engine.
use std::path::PathBuf;

use clap::Args;

use super::error::{CmdResult, Failure};
use crate::error::LabError;
use crate::modules::sweep::{self, run as srun};
use crate::store::RunStatus;

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// An Azure ML sweep, command or pipeline job YAML, or a Rhai script that runs a sweep
    pub file: PathBuf,
    /// Print the planned trials (parameters, command, GPUs) and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Trials at once (overrides limits.max_concurrent_trials)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent: Option<u64>,
    /// Seed for random, sobol and bayesian sampling (part of the sweep's identity)
    #[arg(long)]
    pub seed: Option<u64>,
    /// GPUs each trial leases here (over the file's num_gpus and the settings' local_gpus)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub gpus_per_trial: Option<u32>,
    /// Override a value of the YAML: `--set inputs.A=1 --set limits.max_total_trials=8`
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::config::key_value_arg)]
    pub sets: Vec<(String, String)>,
    /// Start anew, even if this sweep ran (or was interrupted) before
    #[arg(long)]
    pub rerun: bool,
    /// Run the trials that failed before again (same parameters); the others keep their results
    #[arg(long, conflicts_with = "rerun")]
    pub retry_failed: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Script arguments (for a .rhai file)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// An Azure ML command, sweep or pipeline job YAML
    pub file: PathBuf,
    /// Run it on this machine's job engine instead of Azure ML
    #[arg(long)]
    pub local: bool,
    /// Azure ML: wait for the job to end, printing its status changes (exit 1 unless it
    /// completed)
    #[arg(long, conflicts_with = "local")]
    pub wait: bool,
    /// Azure ML, with --wait: give up after this long in Running (Queued does not count):
    /// `90m`, `2h`, or seconds
    #[arg(long, requires = "wait", value_parser = crate::util::duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// Azure ML: the job name (default: <experiment>_<unix seconds>_<hex>)
    #[arg(long, conflicts_with = "local")]
    pub name: Option<String>,
    /// Azure ML: an extra run tag (InnerEye additional_run_tags)
    #[arg(long = "tag", value_name = "KEY=VALUE", conflicts_with = "local", value_parser = crate::config::key_value_arg)]
    pub tags: Vec<(String, String)>,
    #[command(flatten)]
    pub sweep: SubmitSweepArgs,
    #[command(flatten)]
    pub conn: super::azure::ConnArgs,
}

#[derive(Debug, Args)]
pub struct SubmitSweepArgs {
    /// Print what would happen and do nothing: the REST requests Azure ML would receive
    /// (pretty JSON, secrets redacted, no network), or with --local the planned trials
    #[arg(long)]
    pub dry_run: bool,
    /// Override a value of the YAML: `--set inputs.A=1`
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::config::key_value_arg)]
    pub sets: Vec<(String, String)>,
    /// --local: start anew, even if this job ran before
    #[arg(long, requires = "local")]
    pub rerun: bool,
}

pub fn submit(a: SubmitArgs, ctx: &super::Flags) -> CmdResult {
    if !a.local {
        return super::azure::submit(super::azure::Submit {
            file: a.file,
            dry_run: a.sweep.dry_run,
            wait: a.wait,
            timeout: a.timeout,
            sets: a.sweep.sets,
            name: a.name,
            tags: a.tags,
            conn: a.conn,
        });
    }
    run(
        SweepArgs {
            file: a.file,
            dry_run: a.sweep.dry_run,
            max_concurrent: None,
            seed: None,
            gpus_per_trial: None,
            retry_failed: false,
            sets: a.sweep.sets,
            rerun: a.sweep.rerun,
            json: false,
            args: vec![],
        },
        ctx,
    )
}

pub fn run(a: SweepArgs, ctx: &super::Flags) -> CmdResult {
    if a.file.extension().is_some_and(|e| e == "rhai") {
        return run_script(a, ctx);
    }
    if !a.args.is_empty() {
        return Err(Failure::Usage(format!(
            "unexpected argument '{}'",
            a.args[0]
        )));
    }
    // One read, one parse: the file's kind decides the rest.
    let mut f = sweep::JobFile::read(&a.file)?;
    if f.is_pipeline() {
        if !a.sets.is_empty() || a.seed.is_some() || a.max_concurrent.is_some() {
            return Err(Failure::Usage(
                "--set, --seed and --max-concurrent go with a sweep or command job, not a pipeline"
                    .into(),
            ));
        }
        if a.gpus_per_trial.is_some() {
            return Err(Failure::Usage(
                "--gpus-per-trial goes with a sweep or command job; a pipeline's steps get GPUs by their compute (settings.yml: local_gpus: {<compute>: <GPUs per process>})".into(),
            ));
        }
        return run_pipeline(&a, sweep::pipeline::from_file(f)?);
    }
    f.apply(&a.sets, a.seed)?;
    let mut s = f.resolve()?;
    s.gpus_per_trial = a.gpus_per_trial;
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    s.check_local()?;
    if a.dry_run {
        print_plan(&s, a.max_concurrent);
        return Ok(());
    }
    run_sweep(&a, &s)
}

/// `labhost sweep FILE.rhai [ARGS]`: the script runs the sweep; the YAML flags do not apply.
fn run_script(a: SweepArgs, ctx: &super::Flags) -> CmdResult {
    if a.dry_run || a.max_concurrent.is_some() || a.seed.is_some() || !a.sets.is_empty() || a.rerun
    {
        return Err(Failure::Usage(
            "--dry-run, --max-concurrent, --seed, --set and --rerun go with a YAML file; a script says them itself (s.plan(n), #{rerun: true})".into(),
        ));
    }
    super::script::run(
        super::script::RunArgs {
            file: a.file,
            args: a.args,
        },
        ctx,
    )
}

/// `--dry-run`: each planned trial (parameters, GPUs, command), then the count.
fn print_plan(s: &sweep::Sweep, max_concurrent: Option<u64>) {
    for t in srun::dry_run(s, max_concurrent) {
        println!(
            "{:>4}  {}  {}  {}",
            t.index,
            serde_json::Value::Object(t.params),
            t.placement,
            crate::redact::apply(&t.command)
        );
    }
    if let Ok((n, Some(why))) = s.local_gpus() {
        println!("GPUs per trial: {n} ({why})");
    }
    let conc = max_concurrent.or(s.doc.limits.as_ref().and_then(|l| l.max_concurrent_trials));
    println!(
        "{} trial(s){}{}",
        s.planned(),
        conc.map(|c| format!(", {c} at once")).unwrap_or_default(),
        if srun::seed_of(s).is_none() && !matches!(s.algorithm, sweep::Algorithm::Grid) {
            " (unseeded: the sweep draws its seed when it starts; these use seed 0)"
        } else {
            ""
        }
    );
}

/// Runs (or continues) the sweep with live progress, then prints its table and best trial.
fn run_sweep(a: &SweepArgs, s: &sweep::Sweep) -> CmdResult {
    crate::runtime::install_ctrl_c(true);
    let opts = srun::RunOpts {
        rerun: a.rerun,
        max_concurrent: a.max_concurrent,
        quiet: false,
        key: None,
        retry_failed: a.retry_failed,
        ..Default::default()
    };
    let mut w = srun::Progress::new(s, a.json).announcing();
    let cancel = crate::runtime::ctx().cancel.token();
    match srun::run(s, &opts, &mut w, &cancel) {
        Ok(r) => {
            crate::engine::at_exit(crate::engine::AtExit::Wait);
            print_result(&r, s, a.json)?;
            if r.status == RunStatus::Completed && (!s.single || r.count(RunStatus::Completed) == 1)
            {
                Ok(())
            } else {
                Err(Failure::Code(crate::error::exit::SCRIPT))
            }
        }
        Err(e) if e.is_cancelled() => {
            crate::engine::at_exit(crate::engine::AtExit::Stop);
            eprintln!("interrupted: run the same command again (or `labhost resume`) to continue the sweep");
            Err(Failure::Code(crate::error::exit::INTERRUPTED))
        }
        Err(e) => Err(e.into()),
    }
}

/// The sweep's result: JSON (with `best`), or the trials table, the best trial and where
/// to look further.
fn print_result(r: &srun::SweepResult, s: &sweep::Sweep, json: bool) -> CmdResult {
    if json {
        let mut v =
            serde_json::to_value(r).map_err(|e| LabError::new("internal", e.to_string()))?;
        v["best"] = serde_json::to_value(r.best_row()).unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        failed_hint(
            r.count(RunStatus::Failed) + r.count(RunStatus::TimedOut),
            &s.source,
        );
        return Ok(());
    }
    println!("{}", r.table());
    match r.best_row() {
        Some(b) => println!(
            "best: trial {} (run {}) {} = {} with {}",
            b.trial,
            b.run_id,
            r.metric,
            b.best.unwrap_or(f64::NAN),
            serde_json::Value::Object(b.params.clone())
        ),
        None if !s.single => println!("best: no trial reported {}", r.metric),
        None => {}
    }
    println!(
        "sweep run {} ({}): labhost jobs --parent {}",
        r.sweep_id, r.run_dir, r.sweep_id
    );
    if let Some(p) = &r.report {
        println!("report: {p}");
    }
    failed_hint(
        r.count(RunStatus::Failed) + r.count(RunStatus::TimedOut),
        &s.source,
    );
    Ok(())
}

/// After a sweep with failed trials: how to run them again.
fn failed_hint(failed: usize, source: &str) {
    if failed > 0 {
        let file = crate::util::shell_quote(source.split('#').next().unwrap_or(source));
        eprintln!(
            "{failed} trial(s) failed: `labhost sweep {file} --retry-failed` runs them again (`--rerun` starts the sweep anew)"
        );
    }
}

/// `type: pipeline`: every step built first, then each as soon as the steps it binds are
/// done, independent ones at the same time.
fn run_pipeline(a: &SweepArgs, p: sweep::pipeline::Pipeline) -> CmdResult {
    use crate::modules::sweep::pipeline;
    if a.dry_run {
        print_pipeline_plan(&p, &pipeline::plan(&p)?);
        return Ok(());
    }
    crate::runtime::install_ctrl_c(true);
    let opts = srun::RunOpts {
        rerun: a.rerun,
        retry_failed: a.retry_failed,
        ..Default::default()
    };
    let cancel = crate::runtime::ctx().cancel.token();
    let quiet = a.json;
    let bars = indicatif::MultiProgress::new();
    let make = |s: &sweep::Sweep| -> Box<dyn srun::Watcher + Send> {
        let name = s.doc.display_name.as_deref().unwrap_or("step");
        for n in &s.notes {
            eprintln!("note: {name}: {n}");
        }
        Box::new(srun::Progress::step(s, quiet, name, &bars))
    };
    match pipeline::run(&p, &opts, &make, &cancel) {
        Ok(results) => {
            crate::engine::at_exit(crate::engine::AtExit::Wait);
            if print_pipeline_result(&p, &results, a.json) {
                Ok(())
            } else {
                Err(Failure::Code(crate::error::exit::SCRIPT))
            }
        }
        Err(e) if e.is_cancelled() => {
            crate::engine::at_exit(crate::engine::AtExit::Stop);
            eprintln!("interrupted: run the same command again to continue the pipeline");
            Err(Failure::Code(crate::error::exit::INTERRUPTED))
        }
        Err(e) => Err(e.into()),
    }
}

/// A pipeline's `--dry-run`: each step in run order as the run would build it (its command
/// with inputs bound; an upstream output as `<jobs.S.outputs.O>`), and what it waits for.
fn print_pipeline_plan(p: &sweep::pipeline::Pipeline, plan: &[(usize, sweep::Sweep)]) {
    for (i, s) in plan {
        let (name, m) = &p.steps[*i];
        let kind = if s.single { "command" } else { "sweep" };
        let cmd = if s.single {
            s.command_for(&Default::default())
        } else {
            s.trial.command.clone()
        };
        let after = sweep::pipeline::waits_for(p, *i);
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("  (after {})", after.join(", "))
        };
        let from = m
            .get("component")
            .or(m.get("trial"))
            .map(|c| format!("  [{}]", sweep::value_text(c)))
            .unwrap_or_default();
        println!(
            "{name}  {kind}{from}{after}\n  {}",
            crate::redact::apply(cmd.trim())
        );
        if let Ok((n, Some(why))) = s.local_gpus() {
            println!("  GPUs per trial: {n} ({why})");
        }
        for n in &s.notes {
            println!("  note: {n}");
        }
    }
    println!(
        "{} step(s), in this order; independent steps run at the same time",
        plan.len()
    );
}

/// Each step's outcome (JSON, or a line a step, then the steps that did not run). True when
/// every step ran and succeeded (a sweep step: at least one trial completed).
fn print_pipeline_result(
    p: &sweep::pipeline::Pipeline,
    results: &[(String, srun::SweepResult)],
    json: bool,
) -> bool {
    let mut ok = results.len() == p.steps.len();
    let mut out = serde_json::Map::new();
    for (name, r) in results {
        let done = r.count(RunStatus::Completed);
        ok &= done == r.trials.len() || (done > 0 && r.trials.len() > 1);
        if json {
            out.insert(name.clone(), serde_json::to_value(r).unwrap_or_default());
        } else {
            println!(
                "{name}: {done} of {} run(s) completed (run {}: labhost jobs --parent {})",
                r.trials.len(),
                r.sweep_id,
                r.sweep_id
            );
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap_or_default()
        );
    }
    for (name, _) in p
        .steps
        .iter()
        .filter(|(n, _)| !results.iter().any(|(r, _)| r == n))
    {
        println!("{name}: not run (an earlier step did not complete)");
    }
    ok
}
