//! `labhost cron FILE [--check | --next N | --once NAME] [--grace S]` and `labhost cron status`.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::error::{CmdResult, Failure};
use crate::modules::cron::{self as cron, daemon};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CronArgs {
    #[command(subcommand)]
    pub sub: Option<CronSub>,
    /// A schedule file (YAML: a list of entries with name, schedule, script, args, timezone,
    /// overlap, catch_up, timeout, env, enabled) or a script that calls cron::schedule
    pub file: Option<PathBuf>,
    /// Validate the file (expressions, keys, time zones, scripts) and show each entry's next fire
    #[arg(long)]
    pub check: bool,
    /// Print the next N fire times of each entry, in its time zone
    #[arg(long, value_name = "N")]
    pub next: Option<usize>,
    /// With --next or --check: count from this instant instead of now (RFC 3339, e.g.
    /// `2026-03-28T13:00:00Z` or `2026-10-24T23:00:00+02:00`), to see what an entry does on
    /// a DST night ahead
    #[arg(long, value_name = "INSTANT", value_parser = instant_arg)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Fire one entry now, its output shown here and kept in its run's logs, and exit with
    /// its outcome
    #[arg(long, value_name = "NAME")]
    pub once: Option<String>,
    /// How long running fires may take to finish after SIGTERM/SIGINT before they are stopped
    /// (`30s`, `2m`, or seconds)
    #[arg(long, default_value = "30s", value_parser = crate::util::duration_arg)]
    pub grace: std::time::Duration,
}

/// An RFC 3339 instant (`--from`).
fn instant_arg(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 instant such as 2026-03-28T13:00:00Z ({e})"))
}

#[derive(Debug, Subcommand)]
pub enum CronSub {
    /// Every entry this state directory has scheduled: last fire, its outcome, next fire
    Status {
        #[arg(long)]
        json: bool,
    },
}

struct Loaded {
    entries: Vec<cron::Entry>,
    functions: Option<daemon::Functions>,
    source: String,
}

fn load(file: &Path) -> Result<Loaded, Failure> {
    let source = file
        .canonicalize()
        .map_err(|e| Failure::Usage(format!("cannot read '{}': {e}", file.display())))?
        .display()
        .to_string();
    if file.extension().is_some_and(|x| x == "rhai") {
        let text = crate::script::run::read_script(file).map_err(Failure::Usage)?;
        let engine = crate::script::engine::build(Default::default());
        let mut scope = crate::script::run::script_scope(&[]);
        let ast = crate::script::run::compile(&engine, &scope, &text, &file.display().to_string())
            .map_err(Failure::Script)?;
        let r = engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, &ast);
        if let Err(e) = r {
            return Err(Failure::Script(crate::script::run::outcome_of(
                Err(e),
                &file.display().to_string(),
            )));
        }
        let defined = cron::rhai::take_defined();
        let fns: Vec<Option<rhai::FnPtr>> = defined.iter().map(|d| d.function.clone()).collect();
        let ast = Arc::new(ast);
        // Each fire calls its function in an engine of its own: `print`/`debug` go to the
        // fire's logs, and the fire's timeout or stop ends it between two operations.
        let functions: daemon::Functions = Arc::new(move |id, io: daemon::FireIo| {
            let Some(Some(f)) = fns.get(id) else {
                return Err(format!("no function {id}"));
            };
            let log = |p: &Path| {
                std::sync::Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .ok(),
                )
            };
            let (out, err) = (Arc::new(log(&io.out)), Arc::new(log(&io.err)));
            let echo = io.echo;
            let mut engine = crate::script::engine::build(Default::default());
            engine.on_print(move |s| {
                use std::io::Write;
                let s = crate::redact::apply(s);
                if let Some(f) = out.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    let _ = writeln!(f, "{s}");
                }
                if echo {
                    println!("{s}");
                }
            });
            engine.on_debug(move |s, _, _| {
                use std::io::Write;
                let s = crate::redact::apply(s);
                if let Some(f) = err.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    let _ = writeln!(f, "{s}");
                }
                if echo {
                    eprintln!("{s}");
                }
            });
            let stop = io.stop.clone();
            engine.on_progress(move |_| {
                (stop.load(std::sync::atomic::Ordering::SeqCst) != 0
                    || crate::runtime::ctx().cancel.is_cancelled())
                .then(|| "stopped".into())
            });
            f.call::<rhai::Dynamic>(&engine, &ast, ())
                .map(|_| ())
                .map_err(|e| crate::redact::apply(&e.to_string()))
        });
        Ok(Loaded {
            entries: defined.into_iter().map(|d| d.entry).collect(),
            functions: Some(functions),
            source,
        })
    } else {
        Ok(Loaded {
            entries: cron::load(file)?,
            functions: None,
            source,
        })
    }
}

pub fn run(a: CronArgs) -> CmdResult {
    if let Some(CronSub::Status { json }) = a.sub {
        return status(json);
    }
    let Some(file) = a.file else {
        return Err(Failure::Usage(
            "labhost cron needs a schedule file (or `labhost cron status`)".into(),
        ));
    };
    let l = load(&file)?;
    if l.entries.is_empty() {
        return Err(Failure::Usage(format!("{}: no entries", file.display())));
    }
    let now = chrono::Utc::now();
    if a.from.is_some() && !(a.check || a.next.is_some()) {
        return Err(Failure::Usage("--from goes with --next or --check".into()));
    }
    if a.check || a.next.is_some() {
        for e in &l.entries {
            let mut t = a.from.unwrap_or(now);
            let mut times = Vec::new();
            for _ in 0..a.next.unwrap_or(1) {
                match e.schedule.next_after(t) {
                    Some(n) => {
                        times.push(e.schedule.zone.show(n));
                        t = n;
                    }
                    None => break,
                }
            }
            if a.next.is_some() {
                println!(
                    "{} ({}, {}):",
                    e.name,
                    e.schedule.text,
                    e.schedule.zone.name()
                );
                for x in times {
                    println!("  {x}");
                }
            } else {
                println!(
                    "{}  {}  {}  next {}{}",
                    e.name,
                    e.schedule.text,
                    e.schedule.zone.name(),
                    times.first().cloned().unwrap_or_else(|| "never".into()),
                    if e.enabled { "" } else { "  (disabled)" }
                );
            }
        }
        if a.check {
            println!(
                "{}: {} entr{} OK",
                file.display(),
                l.entries.len(),
                if l.entries.len() == 1 { "y" } else { "ies" }
            );
        }
        return Ok(());
    }
    let opts = daemon::Opts {
        source: l.source.clone(),
        grace: a.grace,
        quiet: false,
        functions: l.functions.clone(),
        manual: a.once.is_some(),
    };
    let rt = crate::runtime::ctx().rt.clone();
    if let Some(name) = a.once {
        let Some(e) = l.entries.iter().find(|e| e.name == name).cloned() else {
            let names: Vec<&str> = l.entries.iter().map(|e| e.name.as_str()).collect();
            return Err(Failure::Usage(format!(
                "no entry '{name}' (entries: {})",
                names.join(", ")
            )));
        };
        let fire = cron::Fire {
            entry: 0,
            at: now,
            catch_up: false,
        };
        // Held like a serving cron's: a `labhost cron` started meanwhile sees this fire's
        // process alive and leaves its run alone.
        let _lock = daemon::hold_daemon_lock()?;
        let source = opts.source.clone();
        let end = rt.block_on(daemon::run_fire(e.clone(), fire, opts, Default::default()))?;
        daemon::record_manual(&source, &e, now, end.run_id)?;
        return match end.status {
            crate::store::RunStatus::Completed => Ok(()),
            _ => Err(Failure::Code(1)),
        };
    }
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let _g = rt.enter();
        for kind in [
            tokio::signal::unix::SignalKind::terminate(),
            tokio::signal::unix::SignalKind::interrupt(),
        ] {
            if let Ok(mut sig) = tokio::signal::unix::signal(kind) {
                let stop = stop.clone();
                rt.spawn(async move {
                    if sig.recv().await.is_some() {
                        stop.cancel();
                    }
                });
            }
        }
    }
    rt.block_on(daemon::serve(l.entries, opts, stop))?;
    eprintln!("[cron] stopped");
    Ok(())
}

fn status(json: bool) -> CmdResult {
    let rows = daemon::status_rows()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no schedules have run with this state directory");
        return Ok(());
    }
    let mut file = String::new();
    for r in &rows {
        let f = r["file"].as_str().unwrap_or("");
        if f != file {
            let by = match r["served_by"].as_u64() {
                Some(p) => format!("  (served by labhost cron, pid {p})"),
                None => "  (not served: no labhost cron runs it now)".into(),
            };
            println!("{f}{by}");
            file = f.to_string();
        }
        println!(
            "  {:<16} {:<16} {:<14} last {}{}  run {}  {}  next {}",
            r["entry"].as_str().unwrap_or(""),
            r["schedule"].as_str().unwrap_or(""),
            r["timezone"].as_str().unwrap_or(""),
            r["last"].as_str().unwrap_or("-"),
            if r["last_manual"].as_bool() == Some(true) {
                " (manual)"
            } else {
                ""
            },
            r["last_run"]
                .as_i64()
                .map(|i| i.to_string())
                .unwrap_or("-".into()),
            r["outcome"].as_str().unwrap_or("-"),
            r["next"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}
