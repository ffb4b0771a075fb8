//! `labhost jobs`, `labhost logs`, `labhost cancel`, `labhost status`.
use std::io::Write;
use std::time::Duration;

use super::store::{Run, Store};
use crate::error::exit;

fn open() -> Result<Store, u8> {
    crate::state::dir()
        .and_then(|d| Store::open(&d))
        .map_err(|e| {
            eprintln!("error[{}]: {}", e.kind, e.message);
            exit::SCRIPT
        })
}

fn age(ts: Option<f64>) -> String {
    match ts {
        Some(t) => {
            crate::modules::time::format_duration((crate::modules::time::unix() - t).max(0.0))
                + " ago"
        }
        None => "-".into(),
    }
}

fn row(r: &Run) -> String {
    let took = match (r.started, r.ended) {
        (Some(s), Some(e)) => crate::modules::time::format_duration((e - s).max(0.0)),
        (Some(s), None) => {
            crate::modules::time::format_duration((crate::modules::time::unix() - s).max(0.0))
        }
        _ => "-".into(),
    };
    let cmd = match &r.spec["command"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let cmd: String = cmd.chars().take(40).collect();
    format!(
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
    )
}

pub fn jobs(status: Option<&str>, json: bool, limit: usize) -> u8 {
    let store = match open() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let runs = match store.list(status, None, limit) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error[{}]: {}", e.kind, e.message);
            return exit::SCRIPT;
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return exit::OK;
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<10} {:>4}  {:>5}  {:<8} {:<14} {:<16} COMMAND",
        "ID", "STATUS", "EXIT", "TRIES", "TOOK", "CREATED", "NAME"
    );
    for r in &runs {
        let _ = writeln!(out, "{}", row(r));
    }
    exit::OK
}

pub fn logs(id: i64, follow: bool, stderr: bool) -> u8 {
    let store = match open() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let run = match store.get(id) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error[{}]: {}", e.kind, e.message);
            return exit::USAGE;
        }
    };
    let path =
        std::path::Path::new(&run.run_dir).join(if stderr { "stderr.log" } else { "stdout.log" });
    let mut offset = 0usize;
    if follow {
        crate::app::install_ctrl_c(true);
    }
    loop {
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.len() > offset {
                let _ = std::io::stdout().write_all(&bytes[offset..]);
                let _ = std::io::stdout().flush();
                offset = bytes.len();
            }
        }
        if !follow || crate::host::ctx().cancel.is_cancelled() {
            return exit::OK;
        }
        match store.get(id) {
            Ok(r) if super::store::FINISHED.contains(&r.status.as_str()) => {
                if let Ok(bytes) = std::fs::read(&path) {
                    let _ = std::io::stdout().write_all(&bytes[offset.min(bytes.len())..]);
                }
                return exit::OK;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn cancel(ids: &[i64]) -> u8 {
    let mut store = match open() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut code = exit::OK;
    for id in ids {
        match store.cancel(*id) {
            Ok(s) => println!("{id}: {s}"),
            Err(e) => {
                eprintln!("error[{}]: {}", e.kind, e.message);
                code = exit::SCRIPT;
            }
        }
    }
    code
}

/// `labhost resume`: re-queues the jobs of hosts that died, adopts every job nobody runs, and
/// runs them all to the end.
pub fn resume(workers: Option<usize>) -> u8 {
    crate::app::install_ctrl_c(true);
    let host = match super::host::get() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error[{}]: {}", e.kind, e.message);
            return exit::SCRIPT;
        }
    };
    if let Some(w) = workers {
        host.set_workers(w);
    }
    let store = match open() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut last = -1;
    loop {
        host.poke();
        let n = match store.pending_for(&host.id) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error[{}]: {}", e.kind, e.message);
                return exit::SCRIPT;
            }
        };
        if n != last {
            eprintln!("{n} job(s) left");
            last = n;
        }
        if n == 0 {
            return exit::OK;
        }
        if crate::host::ctx().cancel.is_cancelled() {
            eprintln!("interrupted");
            return exit::INTERRUPTED;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status() -> u8 {
    let store = match open() {
        Ok(s) => s,
        Err(c) => return c,
    };
    for st in ["running", "leased", "queued"] {
        let runs = store.list(Some(st), None, 1000).unwrap_or_default();
        println!("{st}: {}", runs.len());
        for r in runs.iter().take(20) {
            println!("  {}", row(r));
        }
    }
    let snap = crate::modules::gpu::snapshot();
    let holders = crate::modules::gpu::ledger::Ledger::open()
        .map(|l| l.holders())
        .unwrap_or_default();
    print!("{}", crate::modules::gpu::cli::render(&snap, &holders));
    exit::OK
}
