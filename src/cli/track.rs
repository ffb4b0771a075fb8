//! `labhost runs [--experiment E] [--filter F] [--order-by O]... [--limit N] [--json]` and
//! `labhost track serve [--port P] [--token T]`.
use clap::{Args, Subcommand};

use super::error::{CmdResult, Failure};
use crate::modules::track;

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this experiment
    #[arg(long)]
    pub experiment: Option<String>,
    /// MLflow's filter grammar: "metrics.acc > 0.9 and params.lr = '0.1'"
    #[arg(long, default_value = "")]
    pub filter: String,
    /// "metrics.acc DESC", "attributes.start_time" (repeatable)
    #[arg(long = "order-by")]
    pub order_by: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A sweep, cross-validation or run id, or an experiment name
    pub target: String,
    /// Where to write it (default: report.html for html; stdout for the others)
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    #[arg(long, value_parser = ["html", "md", "json", "csv"], default_value = "html")]
    pub format: String,
}

pub fn report(a: ReportArgs) -> CmdResult {
    use crate::modules::track::report as rep;
    let r = rep::build(&a.target)?;
    let text = match a.format.as_str() {
        "md" => rep::markdown(&r),
        "json" => rep::to_json(&r),
        "csv" => rep::csv(&r),
        _ => rep::html(&r),
    };
    let out = a
        .out
        .or_else(|| (a.format == "html").then(|| "report.html".into()));
    match out {
        Some(p) => {
            crate::modules::fs::write_atomic(&p, text.as_bytes())?;
            println!("{}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TrackVerb {
    /// Copy runs (params, tags, metric histories, artifacts, parent links) to a real MLflow
    /// server; a second push adds only what is new
    Push {
        /// The server, e.g. http://127.0.0.1:5000
        #[arg(long)]
        to: String,
        /// Only the runs of this experiment (default: the RUNs given, else all)
        #[arg(long)]
        experiment: Option<String>,
        /// Bearer token for the server (MLFLOW_TRACKING_TOKEN)
        #[arg(long, env = "MLFLOW_TRACKING_TOKEN")]
        token: Option<String>,
        /// Run ids (a sweep's trials come with it)
        runs: Vec<i64>,
    },
    /// Serve the state directory's runs over MLflow's REST API (any MLflow client or tool),
    /// with the dashboard at `/`
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port (default 5000, MLflow's)
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Address to listen on (default 127.0.0.1: this machine only). Any other address
    /// lets other machines in and needs a token
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Require this bearer token from clients (MLFLOW_TRACKING_TOKEN on their side).
    /// Without it, a random token is made (kept in <state>/track-serve.token, readable
    /// by you only, and reused next time) and its `export` line printed once
    #[arg(long, env = crate::config::TRACK_TOKEN_VAR, conflicts_with = "no_token")]
    token: Option<String>,
    /// Serve without a token (loopback only): any local user's process may read and
    /// write your runs
    #[arg(long)]
    no_token: bool,
}

pub fn runs(a: RunsArgs) -> CmdResult {
    let q = track::Query {
        experiment: a.experiment,
        filter: a.filter,
        order_by: a.order_by,
        limit: Some(a.limit),
    };
    let rs = track::runs(&q)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rs).unwrap_or_default());
        return Ok(());
    }
    println!("{}", track::runs_table(&rs, true));
    Ok(())
}

pub fn run(c: TrackVerb) -> CmdResult {
    match c {
        TrackVerb::Push {
            to,
            experiment,
            token,
            runs,
        } => {
            crate::runtime::install_ctrl_c(true);
            let ids = push_ids(experiment.as_deref(), &runs)?;
            let h = crate::runtime::ctx();
            let r =
                h.rt.block_on(crate::modules::track::push::push(&to, &ids, token))?;
            println!(
                "{} run(s): {} created, {} already there; {} metric point(s), {} param(s), {} artifact(s) sent",
                ids.len(),
                r.runs_created,
                r.runs_found,
                r.metrics,
                r.params,
                r.artifacts
            );
            Ok(())
        }
        TrackVerb::Serve(a) => serve(a),
    }
}

/// `labhost ui` and `labhost track serve`: the MLflow endpoint with the dashboard at `/`.
pub fn serve(a: ServeArgs) -> CmdResult {
    let ServeArgs {
        port,
        host,
        token,
        no_token,
    } = a;
    if no_token && !host.is_loopback() {
        return Err(Failure::Usage(format!(
            "--host {host} lets other machines in: it needs a token (drop --no-token)"
        )));
    }
    crate::runtime::install_ctrl_c(true);
    let state = crate::state::dir()?;
    let token = match (token, no_token) {
        (_, true) => None,
        (Some(t), _) => Some(t),
        (None, false) => Some(serve_token(&state)?),
    };
    let addr = std::net::SocketAddr::new(host, port);
    eprintln!(
        "serving {} on http://{addr} (MLFLOW_TRACKING_URI); Ctrl-C stops",
        state.display()
    );
    // The token goes in the address once; the browser keeps it in a cookie.
    println!(
        "dashboard: http://{addr}/{}",
        token
            .as_deref()
            .map(|t| format!("?token={t}"))
            .unwrap_or_default()
    );
    let h = crate::runtime::ctx();
    let token_ctl = h.cancel.token();
    let r = h.rt.block_on(async move {
        tokio::select! {
            r = crate::engine::mlflow::serve(addr, state, token) => r,
            _ = token_ctl.cancelled() => Ok(()),
        }
    });
    r.map_err(Failure::from)
}

/// The token of `labhost track serve` when none is given: the one kept in
/// `<state>/track-serve.token` (mode 0600), or a new random one written there. Its `export`
/// line is printed (stdout) so a shell can take it.
fn serve_token(state: &std::path::Path) -> Result<String, Failure> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let f = state.join("track-serve.token");
    let kept = std::fs::metadata(&f).ok().filter(|m| {
        // SAFETY: getuid has no preconditions.
        m.is_file() && m.permissions().mode() & 0o077 == 0 && m.uid() == unsafe { libc::getuid() }
    });
    let token = match kept.and_then(|_| std::fs::read_to_string(&f).ok()) {
        Some(t) if t.trim().len() >= 32 => t.trim().to_string(),
        _ => {
            let t = crate::util::random_token();
            let _ = std::fs::create_dir_all(state);
            let _ = std::fs::remove_file(&f);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&f)
                .map_err(|e| {
                    Failure::Host(crate::error::io_err("track", "cannot write", &f, &e))
                })?;
            out.write_all(format!("{t}\n").as_bytes()).map_err(|e| {
                Failure::Host(crate::error::io_err("track", "cannot write", &f, &e))
            })?;
            t
        }
    };
    println!("export MLFLOW_TRACKING_TOKEN={token}");
    eprintln!(
        "clients need MLFLOW_TRACKING_TOKEN (above; kept in {})",
        f.display()
    );
    Ok(token)
}

/// The runs a push sends: those named (with their children), an experiment's, or all.
fn push_ids(experiment: Option<&str>, runs: &[i64]) -> Result<Vec<i64>, Failure> {
    let q = track::Query {
        experiment: experiment.map(str::to_string),
        ..Default::default()
    };
    let all = track::runs(&q)?;
    if runs.is_empty() {
        return Ok(all.iter().map(|r| r.id).collect());
    }
    let mut out: Vec<i64> = Vec::new();
    for id in runs {
        track::run(*id)?;
        out.push(*id);
        out.extend(
            all.iter()
                .filter(|r| r.parent_id == Some(*id))
                .map(|r| r.id),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
