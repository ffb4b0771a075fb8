//! `labhost jobs`, `logs`, `cancel`, `status`, `resume`: the job engine from the command line.
use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::error::{CmdResult, Failure};
use crate::modules::time::{format_duration, unix};
use crate::store::{Run, RunStatus, Store};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs with this status (queued, leased, running, completed, failed, cancelled,
    /// timed_out)
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// Only the children of this run (a sweep's trials)
    #[arg(long)]
    pub parent: Option<i64>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub id: i64,
    /// Keep printing until the job ends
    #[arg(short, long)]
    pub follow: bool,
    #[arg(long)]
    pub stderr: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[arg(required = true)]
    pub ids: Vec<i64>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Jobs at once (default: CPUs)
    #[arg(long)]
    pub workers: Option<usize>,
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
}

fn open() -> Result<Store, Failure> {
    Ok(crate::state::dir().and_then(|d| Store::open(&d))?)
}

fn age(ts: Option<f64>) -> String {
    match ts {
        Some(t) => format_duration((unix() - t).max(0.0)) + " ago",
        None => "-".into(),
    }
}

fn row(r: &Run) -> String {
    let took = match (r.started, r.ended) {
        (Some(s), Some(e)) => format_duration((e - s).max(0.0)),
        (Some(s), None) => format_duration((unix() - s).max(0.0)),
        _ => "-".into(),
    };
    let cmd: String = r.spec.command.display().chars().take(40).collect();
    let mut line = format!(
        "{:>6}  {:<10} {:>4}  {:>5}  {:<8} {:<14} {:<16} {}",
        r.id,
        r.status,
        r.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        r.attempt,
        took,
        age(Some(r.created)),
        r.name.chars().take(16).collect::<String>(),
        cmd
    );
    // Why it did not complete: the cancel reason, else the error.
    if r.status.is_unsuccessful() {
        if let Some(why) = r.reason().filter(|w| !w.is_empty()) {
            line += &format!("\n{:>8}{}", "↳ ", crate::redact::apply(why));
        }
    }
    line
}

pub fn list(a: JobsArgs) -> CmdResult {
    let runs = open()?.list(a.status, a.parent, a.limit)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<10} {:>4}  {:>5}  {:<8} {:<14} {:<16} COMMAND",
        "ID", "STATUS", "EXIT", "TRIES", "TOOK", "CREATED", "NAME"
    );
    for r in &runs {
        let _ = writeln!(out, "{}", row(r));
    }
    Ok(())
}

pub fn logs(a: LogsArgs) -> CmdResult {
    let store = open()?;
    let run = store.get(a.id).map_err(|e| Failure::Usage(e.message))?;
    let path =
        std::path::Path::new(&run.run_dir).join(if a.stderr { "stderr.log" } else { "stdout.log" });
    let mut offset = 0usize;
    if a.follow {
        crate::runtime::install_ctrl_c(true);
    }
    let print_new = |offset: &mut usize| {
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.len() > *offset {
                let _ = std::io::stdout().write_all(&bytes[*offset..]);
                let _ = std::io::stdout().flush();
                *offset = bytes.len();
            }
        }
    };
    // A job that ended without output and without completing (a bad cwd, a missing program,
    // a container that did not start, a cancel before it ran): say why, exit 1.
    let why_not = |r: &Run, printed: usize| -> CmdResult {
        match r.reason() {
            Some(why) if printed == 0 && r.status.is_unsuccessful() => {
                eprintln!(
                    "job {} {}{}: {}",
                    r.id,
                    r.status,
                    if r.started.is_none() {
                        " before it started"
                    } else {
                        ""
                    },
                    crate::redact::apply(why)
                );
                Err(Failure::Code(crate::error::exit::SCRIPT))
            }
            _ => Ok(()),
        }
    };
    loop {
        print_new(&mut offset);
        if !a.follow {
            return why_not(&run, offset);
        }
        if crate::runtime::ctx().cancel.is_cancelled() {
            return Err(Failure::Interrupted);
        }
        match store.get(a.id) {
            Ok(r) if r.status.is_finished() => {
                print_new(&mut offset);
                return why_not(&r, offset);
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Asks for each cancel, then waits until every job has ended (a running job ends once its
/// host has stopped all of its processes; the jobs of a dead host are stopped here), and
/// prints how each ended.
pub fn cancel(a: CancelArgs) -> CmdResult {
    let state = crate::state::dir()?;
    let mut store = open()?;
    let mut failed = false;
    let mut waiting = Vec::new();
    for id in &a.ids {
        match store.cancel(*id, "cancelled by labhost cancel") {
            Ok(s) if s.is_finished() => println!("{id}: {s}"),
            Ok(_) => waiting.push(*id),
            Err(e) => {
                super::error::report(Failure::Host(e), false);
                failed = true;
            }
        }
    }
    let deadline = std::time::Instant::now() + crate::process::grace() + Duration::from_secs(30);
    while !waiting.is_empty() {
        // Jobs of hosts that died have no one to stop them: this process does.
        crate::engine::recover_orphans(&state, "")?;
        let mut left = Vec::new();
        for id in waiting {
            let r = store.get(id)?;
            if r.status.is_finished() {
                println!("{id}: {}", r.status);
            } else {
                left.push(id);
            }
        }
        waiting = left;
        if !waiting.is_empty() {
            if std::time::Instant::now() > deadline {
                for id in &waiting {
                    eprintln!("{id}: its host has not stopped it yet (cancel requested)");
                }
                return Err(Failure::Code(crate::error::exit::SCRIPT));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if failed {
        return Err(Failure::Code(crate::error::exit::SCRIPT));
    }
    Ok(())
}

/// `labhost resume`: re-queues the jobs of hosts that died, adopts every job nobody runs, and
/// runs them all to the end.
pub fn resume(a: ResumeArgs) -> CmdResult {
    crate::runtime::install_ctrl_c(true);
    let host = crate::engine::job_host()?;
    if let Some(w) = a.workers {
        host.set_workers(w);
    }
    // Sweeps whose driver died: continue each (its trials run on this host meanwhile).
    for (id, key, s) in crate::modules::sweep::run::orphaned_sweeps()? {
        eprintln!("continuing sweep {id} ({})", s.source);
        let opts = crate::modules::sweep::run::RunOpts {
            key: Some(key),
            ..Default::default()
        };
        let mut w = crate::modules::sweep::run::Progress::new(&s, false);
        match crate::modules::sweep::run::run(
            &s,
            &opts,
            &mut w,
            &crate::runtime::ctx().cancel.token(),
        ) {
            Ok(r) => eprintln!(
                "sweep {id}: {} of {} trials completed",
                r.count(RunStatus::Completed),
                r.trials.len()
            ),
            Err(e) if e.is_cancelled() => {
                crate::engine::at_exit(crate::engine::AtExit::Stop);
                return Err(Failure::Interrupted);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let store = open()?;
    let state = crate::state::dir()?;
    let mut last = -1;
    let mut said_carried = false;
    loop {
        host.poke();
        // Runs of a dead host whose job supervisor lives on are waited for, not re-run.
        let carried = crate::engine::carried_on(&state)?;
        if !carried.is_empty() && !said_carried {
            let ids: Vec<String> = carried.iter().map(|i| i.to_string()).collect();
            eprintln!(
                "job(s) {} run on under the job supervisor of their dead host: waiting for their ends",
                ids.join(", ")
            );
            said_carried = true;
        }
        let n = store.pending_for(&host.id)? + carried.len() as i64;
        if n != last {
            eprintln!("{n} job(s) left");
            last = n;
        }
        if n == 0 {
            crate::engine::at_exit(crate::engine::AtExit::Wait);
            return Ok(());
        }
        if crate::runtime::ctx().cancel.is_cancelled() {
            crate::engine::at_exit(crate::engine::AtExit::Stop);
            return Err(Failure::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status(verbose: bool) -> CmdResult {
    let store = open()?;
    if verbose {
        use crate::process::{contain, spawn};
        println!("containment: {}", contain::probe().describe());
        println!(
            "exit watch: {}",
            match spawn::probe_exit_watch() {
                spawn::ExitWatch::Pidfd => "pidfd (an event per job process)",
                spawn::ExitWatch::Sigchld =>
                    "SIGCHLD + waitpid(WNOHANG) (pidfd_open is not available here)",
            }
        );
    }
    let state = crate::state::dir()?;
    // A run whose host died: nothing drives it until a labhost picks it up.
    let gone = |r: &Run| {
        r.host
            .as_deref()
            .filter(|h| !crate::engine::job_host_alive(&state, h))
            .map(str::to_string)
    };
    let (mut orphaned, mut supervised) = (0, 0);
    for st in [RunStatus::Running, RunStatus::Leased, RunStatus::Queued] {
        let runs = store.list(Some(st), None, 1000)?;
        println!("{st}: {}", runs.len());
        for (i, r) in runs.iter().enumerate() {
            let host_gone = (st != RunStatus::Queued).then(|| gone(r)).flatten();
            // Its job supervisor outlived the host: it runs on and records its end.
            let job = !matches!(
                r.kind,
                crate::store::RunKind::Sweep
                    | crate::store::RunKind::Cron
                    | crate::store::RunKind::Remote
            );
            let lives_on = job
                && host_gone
                    .as_deref()
                    .is_some_and(|h| crate::engine::supervisor_alive(&state, h));
            supervised += usize::from(lives_on);
            orphaned += usize::from(host_gone.is_some() && !lives_on);
            if i < 20 {
                match host_gone {
                    Some(h) if lives_on => println!(
                        "  {}  (host {h} gone: its job supervisor runs it on and records its end)",
                        row(r)
                    ),
                    Some(h) => println!("  {}  (host {h} gone)", row(r)),
                    None => println!("  {}", row(r)),
                }
            }
        }
    }
    if supervised > 0 {
        println!(
            "{supervised} run(s) go on without their host: their job supervisor records them (`labhost cancel` stops one)"
        );
    }
    if orphaned > 0 {
        println!(
            "{orphaned} run(s) whose host is gone: `labhost resume` continues them (any labhost that runs jobs picks them up)"
        );
    }
    // The latest runs that did not complete, with why.
    let mut ended: Vec<Run> = Vec::new();
    for st in [RunStatus::Cancelled, RunStatus::Failed, RunStatus::TimedOut] {
        ended.extend(store.list(Some(st), None, 5)?);
    }
    ended.sort_by_key(|r| std::cmp::Reverse(r.id));
    if !ended.is_empty() {
        println!("recently ended without completing:");
        for r in ended.iter().take(5) {
            println!("  {}", row(r).replace('\n', "\n  "));
        }
    }
    let snap = crate::modules::gpu::snapshot();
    let holders = crate::modules::gpu::ledger::Ledger::open()
        .map(|l| l.holders())
        .unwrap_or_default();
    print!("{}", super::gpus::render(&snap, &holders));
    Ok(())
}
