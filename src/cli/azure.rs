//! `labhost submit FILE.yml [--wait] [--dry-run]` (to Azure ML) and `labhost azure
//! runs|status|download|cancel`.
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::error::{CmdResult, Failure};
use crate::modules::azure as az;

/// Where the workspace settings come from (every command).
#[derive(Debug, Args, Clone, Default)]
pub struct ConnArgs {
    /// The project settings YAML (default: $LABHOST_AZURE_SETTINGS, else settings.yml from
    /// the working directory up)
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// An AzureConfig setting for this command, over the settings files: `--config
    /// cluster=gpu-2 --config num_nodes=2`
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::config::key_value_arg)]
    pub config: Vec<(String, String)>,
}

impl ConnArgs {
    pub fn request(&self) -> Result<az::config::Request, Failure> {
        let mut args = Map::new();
        for (k, v) in &self.config {
            args.insert(k.clone(), Value::String(v.clone()));
        }
        Ok(az::config::Request {
            settings: self.settings.clone(),
            private: None,
            args,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum AzureVerb {
    /// Jobs of the workspace (all pages), newest first as Azure lists them
    Runs(RunsArgs),
    /// A job's status, studio link and children (a recovery id `experiment:run` or a job name)
    Status(IdArgs),
    /// Download a job's outputs: `outputs/<prefix>/` (prefix stripped), a named output, or
    /// every child's into <dest>/<split index>/
    Download(DownloadArgs),
    /// Ask Azure ML to cancel a job
    Cancel(IdArgs),
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this experiment
    #[arg(long)]
    pub experiment: Option<String>,
    /// Only these statuses (Completed, Failed, Running, …)
    #[arg(long = "status")]
    pub statuses: Vec<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// `experiment:run` (as most_recent_run.txt holds it), a bare hi-ml id, or a job name
    pub id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    pub id: String,
    /// Files under outputs/<PREFIX>/ (default: all of outputs/)
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// A named output instead of outputs/
    #[arg(long, conflicts_with = "children")]
    pub output: Option<String>,
    /// Every child's outputs/<PREFIX>/ into DEST/<split index>/
    #[arg(long)]
    pub children: bool,
    /// Where to put them
    #[arg(long, default_value = ".")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// A job name or recovery id → the run.
fn find(cl: &az::Client, id: &str) -> Result<az::AzureRun, Failure> {
    if id.contains(':') || crate::modules::util::split_recovery_id(id).is_ok() {
        match az::fetch_run(cl, id) {
            Ok(r) => return Ok(r),
            Err(e) if e.kind == "azure.not_found" && !id.contains(':') => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(az::block(cl.run(id))?)
}

fn show(r: &az::AzureRun) {
    println!("{}  {}  {}", r.name, r.job_type, r.status);
    println!("  experiment   {}", r.experiment);
    println!("  recovery id  {}", r.recovery_id);
    if !r.studio_url.is_empty() {
        println!("  studio       {}", r.studio_url);
    }
    if let Some(e) = &r.error {
        println!("  error        {}", crate::redact::apply(e));
    }
    if let Some(b) = r.properties.get("best_child_run_id") {
        println!("  best child   {b}");
    }
}

pub fn run(c: AzureVerb) -> CmdResult {
    match c {
        AzureVerb::Runs(a) => {
            let cl = az::client(&a.conn.request()?)?;
            let runs = az::block(cl.list_jobs(a.experiment.as_deref(), &a.statuses))?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).unwrap_or_default()
                );
                return Ok(());
            }
            let rows = az::runs_table(&runs);
            let mut w = [4, 4, 6, 10];
            for r in &rows {
                for (i, c) in r.iter().take(4).enumerate() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
            println!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  DISPLAY NAME",
                "NAME",
                "TYPE",
                "STATUS",
                "EXPERIMENT",
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            );
            for r in rows {
                println!(
                    "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2],
                    w3 = w[3]
                );
            }
            Ok(())
        }
        AzureVerb::Status(a) => {
            let cl = az::client(&a.conn.request()?)?;
            let r = find(&cl, &a.id)?;
            let rec = az::record(&cl.cfg, &r, "")?;
            if r.is_terminal() {
                // A job submitted without --wait: its results join the store once it ended.
                if let Err(e) = az::import(&cl, rec, &r) {
                    tracing::warn!(
                        "the results of {} were not copied into the local store: {}",
                        r.name,
                        e.message
                    );
                }
            }
            let kids = if r.is_parent_run() {
                az::block(cl.children(&r))?
            } else {
                vec![]
            };
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"run": r, "children": kids}))
                        .unwrap_or_default()
                );
                return Ok(());
            }
            show(&r);
            if !kids.is_empty() {
                let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
                for k in &kids {
                    *counts.entry(k.status.as_str()).or_default() += 1;
                }
                let c: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
                println!("  children     {} ({})", kids.len(), c.join(", "));
            }
            Ok(())
        }
        AzureVerb::Cancel(a) => {
            let cl = az::client(&a.conn.request()?)?;
            let r = find(&cl, &a.id)?;
            az::block(cl.cancel(&r.name))?;
            let r = az::block(cl.run(&r.name))?;
            az::record(&cl.cfg, &r, "")?;
            println!("{}: {}", r.name, r.status);
            Ok(())
        }
        AzureVerb::Download(a) => {
            let cl = az::client(&a.conn.request()?)?;
            let r = find(&cl, &a.id)?;
            if !r.is_terminal() {
                return Err(Failure::Usage(format!(
                    "{} is {}: outputs can be downloaded once it has ended",
                    r.name, r.status
                )));
            }
            let files: Vec<PathBuf> = if a.children {
                az::download_children_outputs(&cl, &r, &a.prefix, &a.dest)?
                    .into_values()
                    .flatten()
                    .collect()
            } else if let Some(o) = &a.output {
                az::block(cl.download_named_output(&r, o, &a.dest))?
            } else {
                az::block(cl.download_outputs_by_prefix(&r, &a.prefix, &a.dest))?
            };
            for f in &files {
                println!("{}", f.display());
            }
            if files.is_empty() {
                eprintln!("note: {} has no files there", r.name);
            }
            Ok(())
        }
    }
}

/// `labhost submit FILE.yml` to Azure ML.
pub struct Submit {
    pub file: PathBuf,
    pub dry_run: bool,
    pub wait: bool,
    pub timeout: Option<std::time::Duration>,
    pub sets: Vec<(String, String)>,
    pub name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub conn: ConnArgs,
}

pub fn submit(a: Submit) -> CmdResult {
    let sets = a.sets.clone();
    let tags: std::collections::BTreeMap<String, String> = a.tags.iter().cloned().collect();
    let req = a.conn.request()?;
    let o = az::SubmitOpts {
        config: req,
        sets,
        name: a.name.clone(),
        tags,
        commandline: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let p = az::prepare(&az::What::Path(a.file.clone()), &o)?;
    if a.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&az::dry_run(&p)?).unwrap_or_default()
        );
        return Ok(());
    }
    let cl = az::client_for(p.cfg.clone())?;
    let s = az::submit(&p, &cl)?;
    println!("{}", s.run.name);
    eprintln!(
        "submitted {} to {} (experiment {})",
        s.run.name, p.cfg.workspace_name, s.run.experiment
    );
    if !s.run.studio_url.is_empty() {
        eprintln!("  studio       {}", s.run.studio_url);
    }
    eprintln!(
        "  recovery id  {}{}",
        s.run.recovery_id,
        s.recovery_file
            .map(|f| format!(" (in {})", f.display()))
            .unwrap_or_default()
    );
    if !(a.wait || p.cfg.wait_for_completion) {
        return Ok(());
    }
    crate::runtime::install_ctrl_c(false);
    let opts = az::WaitOpts {
        timeout: a.timeout,
        ..Default::default()
    };
    let interrupted = || crate::runtime::ctx().cancel.is_cancelled();
    let (r, end) = az::wait(&cl, &s.run.name, &opts, &interrupted)?;
    match end {
        az::WaitEnd::Terminal => {
            show(&r);
            match r.status.as_str() {
                "Completed" => Ok(()),
                _ => Err(Failure::Code(1)),
            }
        }
        az::WaitEnd::TimedOut => {
            eprintln!(
                "{} is still {} after {:.0} s in Running; it goes on (labhost azure cancel {})",
                r.name,
                r.status,
                a.timeout.unwrap_or_default().as_secs_f64(),
                r.recovery_id
            );
            Err(Failure::Code(1))
        }
        az::WaitEnd::Interrupted => {
            let cancel = if std::io::stdin().is_terminal() {
                eprint!("\nCancel {} on Azure ML too? [y/N] ", r.name);
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                line.trim().eq_ignore_ascii_case("y")
            } else {
                false
            };
            if cancel {
                // The Ctrl-C that ended the wait is handled; a second one stops this request.
                crate::runtime::ctx().cancel.reset();
                az::block(cl.cancel(&r.name))?;
                eprintln!("cancellation of {} requested", r.name);
            } else {
                eprintln!("{} goes on: labhost azure status {}", r.name, r.recovery_id);
            }
            Err(Failure::Interrupted)
        }
    }
}
