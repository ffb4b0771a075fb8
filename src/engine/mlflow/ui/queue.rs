//! `/queue`: what this state directory's labhosts are doing now — the GPUs (load, memory,
//! temperature, who holds each slot, from the ledger) and the running, leased and queued
//! jobs. Live: `/queue/events` pushes the page's content again whenever it changes (the
//! server looks every 500 ms; nothing is sent while nothing changes).
use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};

use super::{esc, page, took};
use crate::engine::mlflow::EndpointState;
use crate::modules::gpu::{self, ledger::Ledger};
use crate::store::{RunStatus, Store};

/// At most this many jobs of each status are listed.
const SHOWN: usize = 500;

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The page's content: the GPUs table and the jobs tables.
fn content(state: &Path) -> String {
    let mut h = String::from("<h2>GPUs</h2>");
    let snap = gpu::snapshot();
    let holders = Ledger::at(state.join("gpu"), gpu::probe::current())
        .map(|l| l.holders())
        .unwrap_or_default();
    if snap.devices.is_empty() {
        h.push_str(&format!("<p id=gpus>{}</p>", esc(&gpu::status(&snap))));
    } else {
        h.push_str(&format!(
            "<p>{}</p><table id=gpus><tr><th>#</th><th>name</th><th>load</th><th>memory</th><th>°C</th><th>held by</th></tr>",
            esc(&gpu::status(&snap))
        ));
        for d in &snap.devices {
            let held: Vec<String> = holders
                .iter()
                .filter(|x| x.uuid == d.uuid)
                .map(
                    |x| match x.info.job.trim_start_matches("job ").parse::<i64>() {
                        Ok(id) => {
                            format!("<a href=\"/runs/{id}\">job {id}</a> (pid {})", x.info.pid)
                        }
                        Err(_) if x.info.job.is_empty() => format!("pid {}", x.info.pid),
                        Err(_) => format!("{} (pid {})", esc(&x.info.job), x.info.pid),
                    },
                )
                .collect();
            h.push_str(&format!(
                "<tr data-uuid=\"{uuid}\"><td>{i}</td><td>{name}</td><td>{load}</td><td>{used} / {total}</td><td>{temp}</td><td class=held>{held}</td></tr>",
                uuid = esc(&d.uuid),
                i = d.index,
                name = esc(&d.name),
                load = d.utilization_gpu.map(|u| format!("{u}%")).unwrap_or_default(),
                used = mib(d.memory_used),
                total = mib(d.memory_total),
                temp = d.temperature.map(|t| t.to_string()).unwrap_or_default(),
                held = if held.is_empty() { "free".to_string() } else { held.join(", ") },
            ));
        }
        h.push_str("</table>");
    }
    let Ok(s) = Store::open(state) else {
        h.push_str("<p class=err>the state database cannot be opened</p>");
        return h;
    };
    for st in [RunStatus::Running, RunStatus::Leased, RunStatus::Queued] {
        let runs = s.list(Some(st), None, SHOWN).unwrap_or_default();
        h.push_str(&format!(
            "<h2>{st}: <span id={st}-count>{}</span></h2>",
            runs.len()
        ));
        if runs.is_empty() {
            continue;
        }
        h.push_str(&format!(
            "<table id={st}><tr><th>id</th><th>kind</th><th>name</th><th>host</th><th>took</th><th>parent</th></tr>"
        ));
        for r in &runs {
            h.push_str(&format!(
                "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{kind}</td><td>{name}</td><td>{host}</td><td>{took}</td><td>{parent}</td></tr>",
                id = r.id,
                kind = r.kind.as_str(),
                name = esc(&r.name),
                host = esc(r.host.as_deref().unwrap_or("")),
                took = took(r),
                parent = r
                    .parent_id
                    .map(|p| format!("<a href=\"/runs/{p}\">{p}</a>"))
                    .unwrap_or_default(),
            ));
        }
        h.push_str("</table>");
    }
    h
}

/// `GET /queue`.
pub(in crate::engine::mlflow) async fn queue(State(ctx): State<EndpointState>) -> Response {
    let state = ctx.state.clone();
    let body = tokio::task::spawn_blocking(move || content(&state))
        .await
        .unwrap_or_default();
    Html(page(
        "queue",
        &format!(
            "<h1>Queue and GPUs</h1><div id=queue>{body}</div><script>\
const es = new EventSource('/queue/events');\
es.addEventListener('html', e => {{ document.getElementById('queue').innerHTML = JSON.parse(e.data); }});\
</script>"
        ),
    ))
    .into_response()
}

/// `GET /queue/events`: the page's content each time it changes.
pub(in crate::engine::mlflow) async fn events(State(ctx): State<EndpointState>) -> Response {
    let state = ctx.state.clone();
    let stream = futures_util::stream::unfold(
        (state, String::new(), true),
        |(state, last, first)| async move {
            loop {
                if !first {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let st = state.clone();
                let now = tokio::task::spawn_blocking(move || content(&st))
                    .await
                    .ok()?;
                if now != last || first {
                    let ev = Event::default()
                        .event("html")
                        .data(serde_json::Value::String(now.clone()).to_string());
                    return Some((Ok::<_, Infallible>(ev), (state, now, false)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
