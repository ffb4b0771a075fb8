//! `labhost gpus`: a gpustat-like table of devices and ledger holders.
use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::error::CmdResult;
use crate::modules::gpu::ledger::{holders_by_uuid, Holder, Ledger};
use crate::modules::gpu::{self, Snapshot};
use crate::util::format_bytes;

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Redraw every SECS seconds until Ctrl-C
    #[arg(long, value_name = "SECS", value_parser = crate::util::duration_arg)]
    pub watch: Option<std::time::Duration>,
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map(|x| format!("{x}{unit}"))
        .unwrap_or_else(|| "-".into())
}

fn holder_text(h: &Holder, now: f64) -> String {
    let job = if h.info.job.is_empty() {
        String::new()
    } else {
        format!(" job {}", h.info.job)
    };
    let slot = if h.slot == 0 {
        String::new()
    } else {
        format!(" slot {}/{}", h.slot, h.info.slots)
    };
    let age = crate::modules::time::format_duration((now - h.info.since).max(0.0));
    format!("pid {}{job}{slot} for {age}", h.info.pid)
}

/// The table as text.
pub fn render(s: &Snapshot, holders: &[Holder]) -> String {
    let mut out = format!("{}\n", gpu::status(s));
    if s.devices.is_empty() {
        return out;
    }
    let now = crate::modules::time::unix();
    let by = holders_by_uuid(holders);
    out += &format!(
        "{:>3}  {:<24} {:>5} {:>5}  {:<19}  {}\n",
        "GPU", "NAME", "TEMP", "UTIL", "MEMORY", "HOLDERS"
    );
    for d in &s.devices {
        let mem = format!(
            "{} / {}",
            format_bytes(d.memory_used),
            format_bytes(d.memory_total)
        );
        let hs = by
            .get(&d.uuid)
            .map(|v| {
                v.iter()
                    .map(|h| holder_text(h, now))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|| "-".into());
        let name: String = d.name.chars().take(24).collect();
        out += &format!(
            "{:>3}  {:<24} {:>5} {:>5}  {:<19}  {hs}\n",
            d.index,
            name,
            opt(d.temperature, "C"),
            opt(d.utilization_gpu, "%"),
            mem
        );
    }
    out
}

pub fn run(a: GpusArgs) -> CmdResult {
    let json = a.json;
    let ledger = Ledger::open()?;
    let once = || {
        let s = gpu::snapshot();
        let holders = ledger.holders();
        if json {
            let v = serde_json::json!({ "snapshot": s, "holders": holders });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", render(&s, &holders));
        }
    };
    let Some(secs) = a.watch else {
        once();
        return Ok(());
    };
    crate::runtime::install_ctrl_c(true);
    let period = secs.max(Duration::from_millis(100));
    let tty = std::io::stdout().is_terminal();
    while !crate::runtime::ctx().cancel.is_cancelled() {
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        once();
        let host = crate::runtime::ctx();
        if host
            .rt
            .block_on(crate::modules::time::sleep(period, host.cancel.token()))
            .is_err()
        {
            break;
        }
    }
    Ok(())
}
