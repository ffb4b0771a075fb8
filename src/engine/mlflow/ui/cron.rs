//! `/cron`: the schedules this state directory has run — each entry's schedule and time
//! zone, whether a `labhost cron` serves it now, its last fire (scheduled or by hand) with
//! its run and outcome, and its next fire. The cron module sits above the engine: it lends
//! the page its status rows when the process starts ([`lend`]).
use std::sync::OnceLock;

use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::{esc, page};
use crate::error::LabResult;

/// What `labhost cron status --json` prints: one object per entry.
pub type StatusRows = fn() -> LabResult<Vec<Value>>;

static ROWS: OnceLock<StatusRows> = OnceLock::new();

/// Lends the page the cron module's status (the first lender counts).
pub fn lend(rows: StatusRows) {
    let _ = ROWS.set(rows);
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /cron`.
pub(in crate::engine::mlflow) async fn cron() -> Response {
    let rows = match ROWS.get() {
        Some(f) => tokio::task::spawn_blocking(*f).await.ok(),
        None => None,
    };
    let mut h = String::from("<h1>Cron</h1>");
    match rows {
        None => h.push_str("<p class=err>cron status is not available in this process</p>"),
        Some(Err(e)) => h.push_str(&format!("<p class=err>{}</p>", esc(&e.message))),
        Some(Ok(rows)) if rows.is_empty() => {
            h.push_str("<p id=none>no schedule has run with this state directory</p>")
        }
        Some(Ok(rows)) => {
            let mut file = String::new();
            for r in &rows {
                let f = text(&r["file"]);
                if f != file {
                    if !file.is_empty() {
                        h.push_str("</table>");
                    }
                    let by = match r["served_by"].as_u64() {
                        Some(p) => format!("served by labhost cron, pid {p}"),
                        None => "not served: no labhost cron runs it now".into(),
                    };
                    h.push_str(&format!(
                        "<h2>{}</h2><p>{}</p><table class=cron><tr><th>entry</th><th>schedule</th><th>time zone</th><th>last fire</th><th>run</th><th>outcome</th><th>next fire</th></tr>",
                        esc(&f),
                        esc(&by)
                    ));
                    file = f;
                }
                let run = r["last_run"]
                    .as_i64()
                    .map(|i| format!("<a href=\"/runs/{i}\">{i}</a>"))
                    .unwrap_or_else(|| "-".into());
                let outcome = text(&r["outcome"]);
                let class = outcome.split(' ').next().unwrap_or("").to_string();
                h.push_str(&format!(
                    "<tr data-entry=\"{e}\"><td>{e}</td><td>{sc}</td><td>{tz}</td><td>{last}{manual}</td><td>{run}</td><td class=\"{class}\">{outcome}</td><td>{next}</td></tr>",
                    e = esc(&text(&r["entry"])),
                    sc = esc(&text(&r["schedule"])),
                    tz = esc(&text(&r["timezone"])),
                    last = esc(&text(&r["last"])),
                    manual = if r["last_manual"].as_bool() == Some(true) { " (by hand)" } else { "" },
                    class = esc(&class),
                    outcome = esc(&outcome),
                    next = esc(&text(&r["next"])),
                ));
            }
            h.push_str("</table>");
        }
    }
    Html(page("cron", &h)).into_response()
}
