//! The dashboard (first slice): pages over the state directory, served at `/` of the tracking
//! server (`labhost ui`, `labhost track serve`). Server-rendered HTML with a few lines of
//! inline script; nothing is loaded from anywhere else.
//!
//! - `/experiments` — each experiment, its runs, how many run now, the last start.
//! - `/` — every run (or those of `experiment=<id>`): id, kind, status, name, start,
//!   duration, the latest value of the metrics and the params on the page; MLflow's filter
//!   grammar (the parser of `labhost runs`), sort by a column (`order_by` as MLflow writes
//!   it), pages of 100; the columns are chosen from the page's metrics, params and tags
//!   (`columns=metrics.a,tags.b`).
//! - `/runs/<id>` — one run: status and timing, its command and environment (secrets masked),
//!   params, tags, latest metrics, parent and children, the end of `stdout.log` and
//!   `stderr.log`; live: an event stream (`/runs/<id>/events`) pushes its status, metrics
//!   and new log lines as they are recorded (the server looks every 200 ms; the page never
//!   polls). A cancel button (a POST, with the token) stops it. Its `outputs/` and
//!   `artifacts/` are browsed and previewed under `/runs/<id>/files/…` ([`files`]).
//!
//! Access is the endpoint's: loopback clients, and the token when one is set — a browser
//! brings it once as `?token=…`, which is kept in a same-site cookie.
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::EndpointState;

pub mod assets;
pub(super) mod compare;
pub mod cron;
pub(super) mod files;
pub(super) mod queue;
pub(super) mod series;
use crate::store::search::{parse_order, Filter};
use crate::store::{Run, RunKind, RunStatus, Store};

/// The cookie a browser keeps the token in.
pub(super) const COOKIE: &str = "labhost_token";

const PAGE: usize = 100;
/// The run page's script (`run.js`).
const RUN_JS: &str = include_str!("run.js");
/// The most metric points one event carries (the rest follow in the next).
const POINTS_PER_EVENT: usize = 20_000;

/// How much of a log the run page shows at first.
const LOG_TAIL: u64 = 32 * 1024;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    order_by: String,
    #[serde(default)]
    page: usize,
    /// The columns shown, comma-separated: `metrics.<k>`, `params.<k>`, `tags.<k>`; default:
    /// every metric and param of the page's runs.
    columns: Option<String>,
    /// Only the runs of this experiment (its id).
    experiment: Option<i64>,
    token: Option<String>,
}

/// One chosen column of the runs table: `kind` is `metrics`, `params` or `tags` (as the
/// filter grammar names them), `key` the name within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Col {
    kind: &'static str,
    key: String,
}

impl Col {
    fn new(kind: &'static str, key: &str) -> Col {
        Col {
            kind,
            key: key.to_string(),
        }
    }

    fn parse(s: &str) -> Option<Col> {
        let (kind, key) = s.split_once('.')?;
        let kind = ["metrics", "params", "tags"]
            .into_iter()
            .find(|k| *k == kind)?;
        Some(Col::new(kind, key))
    }

    fn id(&self) -> String {
        format!("{}.{}", self.kind, self.key)
    }

    /// How `order_by` names it.
    fn order_key(&self) -> String {
        format!("{}.`{}`", self.kind, self.key)
    }

    fn cell(&self, f: &crate::store::search::Found) -> String {
        let text = |m: &std::collections::BTreeMap<String, String>| {
            esc(m.get(&self.key).map(String::as_str).unwrap_or(""))
        };
        match self.kind {
            "metrics" => f
                .metrics
                .get(&self.key)
                .map(|v| num(*v))
                .unwrap_or_default(),
            "params" => text(&f.params),
            _ => text(&f.tags),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}\
th a{color:inherit}.completed{color:#1a7f37}.failed,.timed_out{color:#cf222e}.cancelled{color:#8250df}\
.running,.leased{color:#0969da}.queued{color:#6e7781}pre{background:#f6f8fa;padding:8px;max-height:24em;overflow:auto}\
input[type=text]{width:40em}.err{color:#cf222e}nav a{margin-right:1em}\
tr.diff td{background:#fff8c5}.legend{font-size:12px;color:#555}";

fn page(title: &str, body: &str) -> String {
    page_with(title, "", body)
}

/// A page whose `<head>` also holds `head` (the charts' scripts: [`assets::HEAD`]).
fn page_with(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{} · labhost</title><link rel=icon href=\"data:,\">\
         <style>{STYLE}</style>{head}</head><body><nav><a href=\"/experiments\">experiments</a><a href=\"/\">runs</a><a href=\"/queue\">queue and GPUs</a><a href=\"/cron\">cron</a></nav>{body}</body></html>",
        esc(title)
    )
}

/// The token a browser brought in the address: kept in a cookie, and the address without it.
fn keep_token(token: Option<&str>, to: String) -> Option<Response> {
    let t = token?;
    let mut r = Redirect::to(&to).into_response();
    let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Some(r)
}

fn fail(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Html(page("error", &format!("<p class=err>{}</p>", esc(msg)))),
    )
        .into_response()
}

fn when(t: Option<f64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

fn took(r: &Run) -> String {
    match (r.started, r.ended) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).max(0.0)),
        (Some(a), None) => format!("{:.1}s…", (crate::clock::unix() - a).max(0.0)),
        _ => String::new(),
    }
}

fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// `GET /`: the runs table.
pub(super) async fn runs(State(ctx): State<EndpointState>, Query(q): Query<ListQuery>) -> Response {
    let back = format!(
        "/?filter={}&order_by={}",
        crate::util::percent_encode(&q.filter),
        crate::util::percent_encode(&q.order_by)
    );
    if let Some(r) = keep_token(q.token.as_deref(), back) {
        return r;
    }
    let filter = match Filter::parse(&q.filter) {
        Ok(f) => f,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("filter: {}", e.message)),
    };
    let order = match parse_order(
        &(!q.order_by.is_empty())
            .then(|| q.order_by.clone())
            .into_iter()
            .collect::<Vec<_>>(),
    ) {
        Ok(o) => o,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("order_by: {}", e.message)),
    };
    let state = ctx.state.clone();
    let offset = q.page * PAGE;
    let experiment = q.experiment;
    let found = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        let exp = match experiment {
            Some(e) => Some(s.experiment(e)?.name),
            None => None,
        };
        let got = s.search_runs(
            &experiment.into_iter().collect::<Vec<_>>(),
            &filter,
            &order,
            offset,
            PAGE,
        )?;
        Ok::<_, crate::error::LabError>((got, exp))
    })
    .await;
    let ((found, next), exp_name) = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) if e.kind == "jobs.not_found" => return fail(StatusCode::NOT_FOUND, &e.message),
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    // What could be shown: the keys of the page's runs (tags but MLflow's own).
    let mut offered: BTreeSet<Col> = BTreeSet::new();
    for f in &found {
        offered.extend(f.metrics.keys().map(|k| Col::new("metrics", k)));
        offered.extend(f.params.keys().map(|k| Col::new("params", k)));
        offered.extend(
            f.tags
                .keys()
                .filter(|k| !k.starts_with("mlflow."))
                .map(|k| Col::new("tags", k)),
        );
    }
    let cols: Vec<Col> = match &q.columns {
        Some(c) => c.split(',').filter_map(Col::parse).collect(),
        None => offered
            .iter()
            .filter(|c| c.kind != "tags")
            .cloned()
            .collect(),
    };
    // What the table's links and its filter form keep besides filter and order: the columns
    // and the experiment (one list for both).
    let keep: Vec<(&str, String)> = q
        .columns
        .iter()
        .map(|c| ("columns", c.clone()))
        .chain(q.experiment.map(|e| ("experiment", e.to_string())))
        .collect();
    let kept: String = keep
        .iter()
        .map(|(k, v)| format!("&amp;{k}={}", crate::util::percent_encode(v)))
        .collect();
    let kept_inputs: String = keep
        .iter()
        .map(|(k, v)| format!("<input type=hidden name={k} value=\"{}\">", esc(v)))
        .collect();
    let sort_link = |key: &str, label: &str| {
        let desc = q.order_by == format!("{key} ASC") || q.order_by == key;
        let o = if desc {
            format!("{key} DESC")
        } else {
            format!("{key} ASC")
        };
        format!(
            "<th><a href=\"/?filter={}&amp;order_by={}{kept}\">{}</a></th>",
            crate::util::percent_encode(&q.filter),
            crate::util::percent_encode(&o),
            esc(label)
        )
    };
    let mut h = match &exp_name {
        Some(n) => format!(
            "<h1>Runs of <span id=experiment>{}</span></h1><p><a href=\"/experiments\">all experiments</a> · <a href=\"/\">all runs</a></p>",
            esc(n)
        ),
        None => "<h1>Runs</h1>".to_string(),
    };
    h.push_str("<form method=get action=\"/\">");
    h.push_str(&format!(
        "<input type=text name=filter id=filter placeholder=\"metrics.acc &gt; 0.9 and params.lr = '0.1'\" value=\"{}\">\
         <input type=hidden name=order_by value=\"{}\">{kept_inputs}<button>filter</button></form>",
        esc(&q.filter),
        esc(&q.order_by),
    ));
    // The column chooser: every key of the page's runs, and whatever was chosen before.
    h.push_str("<details id=columns><summary>columns</summary><p>");
    let chosen: BTreeSet<&Col> = cols.iter().collect();
    for c in offered
        .iter()
        .chain(cols.iter())
        .collect::<BTreeSet<&Col>>()
    {
        h.push_str(&format!(
            "<label><input type=checkbox class=col value=\"{v}\"{on}> {v}</label> ",
            v = esc(&c.id()),
            on = if chosen.contains(c) { " checked" } else { "" }
        ));
    }
    h.push_str("<button id=show-columns type=button>show</button></p></details>");
    h.push_str(
        "<p><button id=compare-selected type=button disabled>compare selected</button></p>\
         <table id=runs><thead><tr><th></th><th>id</th><th>kind</th>",
    );
    h.push_str(&sort_link("attributes.status", "status"));
    h.push_str(&sort_link("attributes.run_name", "name"));
    h.push_str(&sort_link("attributes.start_time", "started"));
    h.push_str("<th>took</th>");
    for c in &cols {
        h.push_str(&sort_link(&c.order_key(), &c.id()));
    }
    h.push_str("</tr></thead><tbody>");
    for f in &found {
        let r = &f.run;
        h.push_str(&format!(
            "<tr><td><input type=checkbox class=pick value={id}></td><td><a href=\"/runs/{id}\">{id}</a></td><td>{kind}</td><td class={st}>{st}</td><td>{name}</td><td>{start}</td><td>{took}</td>",
            id = r.id,
            kind = esc(&format!("{:?}", r.kind).to_lowercase()),
            st = r.status,
            name = esc(&r.name),
            start = when(r.started),
            took = took(r),
        ));
        for c in &cols {
            h.push_str(&format!("<td>{}</td>", c.cell(f)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table><p>");
    let link = |p: usize, label: &str| {
        format!(
            "<a href=\"/?filter={}&amp;order_by={}&amp;page={p}{kept}\">{label}</a> ",
            crate::util::percent_encode(&q.filter),
            crate::util::percent_encode(&q.order_by)
        )
    };
    if q.page > 0 {
        h.push_str(&link(q.page - 1, "← newer"));
    }
    if next.is_some() {
        h.push_str(&link(q.page + 1, "older →"));
    }
    h.push_str(&format!("{} run(s) on this page</p>", found.len()));
    h.push_str(
        "<script>\
const btn = document.getElementById('compare-selected');\
const picked = () => [...document.querySelectorAll('#runs .pick:checked')].map(c => c.value);\
document.getElementById('runs').addEventListener('change', () => { btn.disabled = picked().length < 2; });\
btn.addEventListener('click', () => { location.href = '/compare?runs=' + picked().join(','); });\
document.getElementById('show-columns').addEventListener('click', () => {\
  const u = new URL(location.href);\
  u.searchParams.set('columns', [...document.querySelectorAll('#columns .col:checked')].map(c => c.value).join(','));\
  u.searchParams.delete('page');\
  location.href = u.toString();\
});\
</script>",
    );
    Html(page("runs", &h)).into_response()
}

/// `GET /experiments`: every active experiment with how many runs it has, how many run now
/// and when the last started; each links to its runs.
pub(super) async fn experiments(State(ctx): State<EndpointState>) -> Response {
    let state = ctx.state.clone();
    let got = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        let exps = s.search_experiments("", crate::store::search::View::ActiveOnly, &[])?;
        let stats = s.experiment_stats()?;
        Ok::<_, crate::error::LabError>((exps, stats))
    })
    .await;
    let (exps, stats) = match got {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut h = String::from(
        "<h1>Experiments</h1><table id=experiments><thead><tr><th>name</th><th>id</th><th>runs</th><th>running</th><th>last run</th></tr></thead><tbody>",
    );
    for (e, _) in &exps {
        let (n, running, last) = stats.get(&e.id).copied().unwrap_or((0, 0, None));
        h.push_str(&format!(
            "<tr><td><a href=\"/?experiment={id}\">{name}</a></td><td>{id}</td><td>{n}</td><td>{running}</td><td>{last}</td></tr>",
            id = e.id,
            name = esc(&e.name),
            last = when(last),
        ));
    }
    h.push_str("</tbody></table>");
    Html(page("experiments", &h)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RunQuery {
    token: Option<String>,
}

/// The last `max` bytes of a run's log, from a line start, and the file's length.
fn log_tail(run_dir: &str, name: &str, max: u64) -> (String, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let p = std::path::Path::new(run_dir).join(name);
    let Ok(mut f) = std::fs::File::open(&p) else {
        return (String::new(), 0);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_ok() {
        let _ = f.take(max).read_to_end(&mut buf);
    }
    let mut text = String::from_utf8_lossy(&buf).to_string();
    if from > 0 {
        if let Some(i) = text.find('\n') {
            text = text[i + 1..].to_string();
        }
    }
    (text, from + buf.len() as u64)
}

/// `GET /runs/<id>`: one run.
pub(super) async fn run(
    State(ctx): State<EndpointState>,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<RunQuery>,
) -> Response {
    if let Some(r) = keep_token(q.token.as_deref(), format!("/runs/{id}")) {
        return r;
    }
    let state = ctx.state.clone();
    let got = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        let run = s.get(id)?;
        let params = s.params(id)?;
        let tags = s.tags(id)?;
        let metrics = s.latest_metrics(id)?;
        let mut children = Vec::new();
        let list = s.list(None, Some(id), 10_000)?;
        let (mut params_of, mut gpus_of) = if list.is_empty() {
            Default::default()
        } else {
            (s.children_params(id)?, s.children_tag(id, "labhost.gpus")?)
        };
        for c in list {
            let p = params_of.remove(&c.id).unwrap_or_default();
            let m = s.latest_metrics(c.id)?;
            let gpus = gpus_of.remove(&c.id);
            children.push((c, p, m, gpus));
        }
        children.reverse();
        let budget = max_total(&s, id);
        Ok::<_, crate::error::LabError>((run, params, tags, metrics, children, budget))
    })
    .await;
    let (r, params, tags, metrics, children, sweep_budget) = match got {
        Ok(Ok(x)) => x,
        Ok(Err(e)) if e.kind == "jobs.not_found" || e.message.contains("no run") => {
            return fail(StatusCode::NOT_FOUND, &e.message)
        }
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut h = format!(
        "<h1>Run {id} <span id=status class={st}>{st}</span></h1><p>{kind} <b>{name}</b> · started {start} · took <span id=took>{took}</span>",
        id = r.id,
        st = r.status,
        kind = esc(&format!("{:?}", r.kind).to_lowercase()),
        name = esc(&r.name),
        start = when(r.started),
        took = took(&r),
    );
    if let Some(p) = r.parent_id {
        h.push_str(&format!(" · parent <a href=\"/runs/{p}\">{p}</a>"));
    }
    // A run of Azure ML (`azure::submit`, imported runs): its page in the studio.
    if let Some((_, url)) = tags
        .iter()
        .find(|(k, v)| k == "azureml.studio_url" && v.starts_with("https://"))
    {
        h.push_str(&format!(
            " · <a id=studio href=\"{}\" rel=\"noopener noreferrer\" target=_blank>open in Azure ML studio</a>",
            esc(url)
        ));
    }
    if let Some(why) = r.reason() {
        h.push_str(&format!(" · <span class=err>{}</span>", esc(why)));
    }
    h.push_str("</p>");
    if !r.status.is_finished() {
        h.push_str(&format!(
            "<form method=post action=\"/runs/{id}/cancel\"><button id=cancel>cancel</button></form>"
        ));
    }
    let spec = r.spec.masked();
    h.push_str(&format!(
        "<h2>Command</h2><pre id=command>{}</pre>",
        esc(&spec.command.display())
    ));
    if !spec.env.is_empty() {
        h.push_str("<h2>Environment</h2><table>");
        for (k, v) in &spec.env {
            h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Charts</h2><div id=charts></div>");
    h.push_str(
        "<h2>Metrics</h2><table id=metrics><tr><th>name</th><th>value</th><th>step</th></tr>",
    );
    for m in &metrics {
        h.push_str(&format!(
            "<tr data-name=\"{n}\"><td>{n}</td><td class=v>{v}</td><td class=s>{s}</td></tr>",
            n = esc(&m.name),
            v = num(m.value),
            s = m.step
        ));
    }
    h.push_str("</table>");
    let params: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    for (title, rows) in [("Params", &params), ("Tags", &tags)] {
        if rows.is_empty() {
            continue;
        }
        h.push_str(&format!("<h2>{title}</h2><table>"));
        for (k, v) in rows.iter() {
            h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
        }
        h.push_str("</table>");
    }
    if !children.is_empty() || r.kind == RunKind::Sweep {
        let finished = children.iter().filter(|c| c.0.status.is_finished()).count();
        h.push_str(&format!(
            "<h2>Sweep</h2><p id=limits>{}</p><div id=sweep></div>",
            esc(&limits(&r, sweep_budget, finished, crate::clock::unix()))
        ));
        children_table(&mut h, &children);
    }
    h.push_str(&files::section(r.id, &r.run_dir));
    let (out, out_at) = log_tail(&r.run_dir, "stdout.log", LOG_TAIL);
    let (err, err_at) = log_tail(&r.run_dir, "stderr.log", LOG_TAIL);
    h.push_str(&format!(
        "<h2>stdout</h2><pre id=stdout>{}</pre><h2>stderr</h2><pre id=stderr>{}</pre>",
        esc(&out),
        esc(&err)
    ));
    h.push_str(&format!(
        "<script>const RUN = {id}, LOGS = {{out: {out_at}, err: {err_at}}};</script><script>{RUN_JS}</script>"
    ));
    Html(page_with(&format!("run {id}"), assets::HEAD, &h)).into_response()
}

/// A child run with its params, latest metrics and the GPUs it was given.
type Child = (
    Run,
    Vec<(String, serde_json::Value)>,
    Vec<crate::store::Metric>,
    Option<String>,
);

/// A run's children (a sweep's trials, a cross-validation's folds): how many ended how, and
/// a row each with its params and latest metrics.
fn children_table(h: &mut String, children: &[Child]) {
    let runs: Vec<&Run> = children.iter().map(|c| &c.0).collect();
    h.push_str(&format!(
        "<h2>Children</h2><p id=progress>{}</p>",
        esc(&progress(runs.iter().map(|r| r.status)))
    ));
    let pcols: BTreeSet<&String> = children
        .iter()
        .flat_map(|c| c.1.iter().map(|p| &p.0))
        .collect();
    let mcols: BTreeSet<&String> = children
        .iter()
        .flat_map(|c| c.2.iter().map(|m| &m.name))
        .collect();
    // GPU placement, when any child was given GPUs (CUDA_VISIBLE_DEVICES as it got them).
    let gpu_col = children.iter().any(|c| c.3.is_some());
    h.push_str("<table id=children><thead><tr><th>id</th><th>status</th><th>name</th>");
    if gpu_col {
        h.push_str("<th>GPUs</th>");
    }
    for c in pcols.iter().chain(mcols.iter()) {
        h.push_str(&format!("<th>{}</th>", esc(c)));
    }
    h.push_str("<th>why</th></tr></thead><tbody>");
    for (c, params, metrics, gpus) in children {
        h.push_str(&format!(
            "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td class={st}>{st}</td><td>{}</td>",
            esc(&c.name),
            id = c.id,
            st = c.status
        ));
        if gpu_col {
            h.push_str(&format!(
                "<td class=gpus>{}</td>",
                esc(gpus.as_deref().unwrap_or(""))
            ));
        }
        for p in &pcols {
            let v = params.iter().find(|x| &&x.0 == p).map(|x| match &x.1 {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            h.push_str(&format!("<td>{}</td>", esc(&v.unwrap_or_default())));
        }
        for m in &mcols {
            let v = metrics.iter().find(|x| &&x.name == m).map(|x| num(x.value));
            h.push_str(&format!("<td>{}</td>", v.unwrap_or_default()));
        }
        h.push_str(&format!(
            "<td>{}</td></tr>",
            esc(c
                .reason()
                .filter(|_| c.status != RunStatus::Completed)
                .unwrap_or(""))
        ));
    }
    h.push_str("</tbody></table>");
}

/// `12 completed, 2 running, 1 failed of 20`.
fn progress(statuses: impl Iterator<Item = RunStatus>) -> String {
    let mut counts: Vec<(RunStatus, usize)> = Vec::new();
    let mut total = 0;
    for st in statuses {
        total += 1;
        match counts.iter_mut().find(|c| c.0 == st) {
            Some(c) => c.1 += 1,
            None => counts.push((st, 1)),
        }
    }
    counts.sort_by_key(|c| c.0);
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} of {total}", parts.join(", "))
}

/// A sweep's trial budget: its `_aml_system_max_total_jobs` tag (as Azure ML keeps it).
fn max_total(s: &Store, id: i64) -> Option<u64> {
    s.tags(id)
        .ok()?
        .into_iter()
        .find(|t| t.0 == "_aml_system_max_total_jobs")
        .and_then(|t| t.1.parse().ok())
}

/// What the limits leave of a sweep: `7 of 10 trials left · 9m 12s of the 10m timeout
/// left` (empty without limits; no time once it ended).
fn limits(r: &Run, max_total: Option<u64>, finished: usize, now: f64) -> String {
    let mut parts = Vec::new();
    if let Some(m) = max_total {
        parts.push(format!(
            "{} of {m} trials left",
            m.saturating_sub(finished as u64)
        ));
    }
    if let (Some(t), Some(start), false) = (r.spec.timeout, r.started, r.status.is_finished()) {
        let left = (start + t - now).max(0.0) as u64;
        let hms = match left {
            l if l >= 3600 => format!("{}h {:02}m", l / 3600, l % 3600 / 60),
            l if l >= 60 => format!("{}m {:02}s", l / 60, l % 60),
            l => format!("{l}s"),
        };
        let total = crate::util::secs_to_duration(t)
            .map(crate::util::fmt_duration)
            .unwrap_or_default();
        parts.push(format!("{hms} of the {total} timeout left"));
    }
    parts.join(" · ")
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    out: u64,
    #[serde(default)]
    err: u64,
    /// Metric points after this row (`upto` of `/runs/<id>/series`); default: from now.
    after: Option<i64>,
}

/// New bytes of a log from `at` (at most 64 KiB at once), and where the next read starts.
fn log_since(run_dir: &str, name: &str, at: u64) -> Option<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(std::path::Path::new(run_dir).join(name)).ok()?;
    let len = f.metadata().ok()?.len();
    // A rotated log (log_limit) starts again from 0.
    let at = if len < at { 0 } else { at };
    if len == at {
        return None;
    }
    let mut buf = vec![0u8; ((len - at) as usize).min(64 << 10)];
    let n = f.read_at(&mut buf, at).ok()?;
    buf.truncate(n);
    Some((String::from_utf8_lossy(&buf).to_string(), at + n as u64))
}

/// `GET /runs/<id>/events`: server-sent events of the run as they are recorded: `status`,
/// `metrics` (the latest point of each metric that changed), `log` (new output), `end`.
pub(super) async fn events(
    State(ctx): State<EndpointState>,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let state = ctx.state.clone();
    let stream = futures_util::stream::unfold(
        Watch {
            state,
            store: None,
            id,
            out: q.out,
            err: q.err,
            after: q.after,
            status: None,
            progress: None,
            max_total: None,
            done: false,
            pending: Vec::new(),
        },
        |mut w| async move {
            loop {
                if let Some(e) = w.pending.pop() {
                    return Some((Ok::<_, Infallible>(e), w));
                }
                if w.done {
                    return None;
                }
                w = tokio::task::spawn_blocking(move || {
                    w.look();
                    w
                })
                .await
                .ok()?;
                if w.pending.is_empty() && !w.done {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                w.pending.reverse();
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What an event stream has sent of a run.
struct Watch {
    state: std::path::PathBuf,
    store: Option<Store>,
    id: i64,
    out: u64,
    err: u64,
    status: Option<(RunStatus, String)>,
    /// The last metric row sent (`None`: none yet, start from the newest).
    after: Option<i64>,
    /// The children's progress line last sent (with the limits line).
    progress: Option<String>,
    /// The sweep's trial budget (`_aml_system_max_total_jobs`), read at the first look.
    max_total: Option<Option<u64>>,
    done: bool,
    pending: Vec<Event>,
}

impl Watch {
    fn look(&mut self) {
        // One connection for the stream's life, not one a look.
        if self.store.is_none() {
            self.store = Store::open(&self.state).ok();
        }
        let Some(s) = self.store.take() else {
            self.done = true;
            return;
        };
        self.look_with(&s);
        self.store = Some(s);
    }

    fn look_with(&mut self, s: &Store) {
        let Ok(r) = s.get(self.id) else {
            self.done = true;
            return;
        };
        let json = |v: serde_json::Value| v.to_string();
        self.points(s);
        for (stream, name) in [("stdout", "stdout.log"), ("stderr", "stderr.log")] {
            let at = if stream == "stdout" {
                self.out
            } else {
                self.err
            };
            if let Some((text, next)) = log_since(&r.run_dir, name, at) {
                self.pending.push(
                    Event::default()
                        .event("log")
                        .data(json(serde_json::json!({"stream": stream, "text": text}))),
                );
                if stream == "stdout" {
                    self.out = next;
                } else {
                    self.err = next;
                }
            }
        }
        if let Ok(children) = s.children_states(self.id) {
            if !children.is_empty() {
                let max_total = *self.max_total.get_or_insert_with(|| max_total(s, self.id));
                let p = progress(children.iter().map(|c| c.1));
                let finished = children.iter().filter(|c| c.1.is_finished()).count();
                let lim = limits(&r, max_total, finished, crate::clock::unix());
                let seen = format!("{p}\n{lim}");
                if self.progress.as_deref() != Some(seen.as_str()) {
                    let rows: Vec<serde_json::Value> = children
                        .iter()
                        .map(|(id, status, name)| {
                            serde_json::json!({"id": id, "status": status, "name": name})
                        })
                        .collect();
                    self.pending
                        .push(Event::default().event("progress").data(json(
                            serde_json::json!({"progress": p, "limits": lim, "children": rows}),
                        )));
                    self.progress = Some(seen);
                }
            }
        }
        let now = (r.status, took(&r));
        if self.status.as_ref() != Some(&now) {
            self.pending.push(Event::default().event("status").data(json(
                serde_json::json!({"status": r.status, "took": now.1, "finished": r.status.is_finished()}),
            )));
            self.status = Some(now);
        }
        if r.status.is_finished() {
            self.pending.push(Event::default().event("end").data("{}"));
            self.done = true;
        }
    }
}

impl Watch {
    /// A `points` event of the metric points recorded since the last: `{"name": [[step,
    /// value, ts], …]}`.
    fn points(&mut self, s: &Store) {
        // Up to the newest row now: rows of other runs are walked once, not every look.
        let Ok(upto) = s.metrics_high_water() else {
            return;
        };
        let after = self.after.unwrap_or(upto);
        let Ok(new) = s.metrics_since(self.id, after, upto, POINTS_PER_EVENT) else {
            return;
        };
        self.after = Some(if new.len() == POINTS_PER_EVENT {
            new.last().map_or(upto, |p| p.0)
        } else {
            upto
        });
        if new.is_empty() {
            return;
        }
        let mut by: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for (_, m) in new {
            let p = serde_json::json!([m.step, m.value, m.ts]);
            match by.get_mut(&m.name) {
                Some(serde_json::Value::Array(a)) => a.push(p),
                _ => {
                    by.insert(m.name, serde_json::Value::Array(vec![p]));
                }
            }
        }
        self.pending.push(
            Event::default()
                .event("points")
                .data(serde_json::Value::Object(by).to_string()),
        );
    }
}

/// `GET /runs/<id>/report.json`: what `labhost report <id>` shows, as JSON — a sweep's or
/// cross-validation's trials with the objective, the best and each parameter's scale.
pub(super) async fn report(
    State(ctx): State<EndpointState>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let state = ctx.state.clone();
    let got = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        crate::store::report::build(&s, &id.to_string())
    })
    .await;
    json_reply(got)
}

/// A JSON answer from a store read on a blocking thread: the value, 404 when the run is not
/// there, else 500 with the error.
pub(super) fn json_reply<T: serde::Serialize>(
    got: Result<crate::error::LabResult<T>, tokio::task::JoinError>,
) -> Response {
    match got {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) if e.kind == "track.not_found" || e.message.contains("no run") => {
            (StatusCode::NOT_FOUND, e.message).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `POST /runs/<id>/cancel`: cancels the run (a sweep: its trials too), then back to its page.
pub(super) async fn cancel(
    State(ctx): State<EndpointState>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let state = ctx.state.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut s = Store::open(&state)?;
        let mut ids = vec![id];
        ids.extend(
            s.list(None, Some(id), 100_000)?
                .into_iter()
                .filter(|c| !c.status.is_finished())
                .map(|c| c.id),
        );
        for i in ids {
            s.cancel(i, "cancelled from the dashboard")?;
        }
        Ok::<_, crate::error::LabError>(())
    })
    .await;
    match r {
        Ok(Ok(())) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Ok(Err(e)) => fail(StatusCode::BAD_REQUEST, &e.message),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweeps_limits_say_what_is_left() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (mut r, _) = s.create(&crate::store::test_support::job("sweep")).unwrap();
        r.spec.timeout = Some(600.0);
        r.started = Some(1000.0);
        r.status = RunStatus::Running;
        assert_eq!(
            limits(&r, Some(10), 3, 1000.0 + 48.0),
            "7 of 10 trials left · 9m 12s of the 10m timeout left"
        );
        assert_eq!(limits(&r, None, 3, 5000.0), "0s of the 10m timeout left");
        r.spec.timeout = Some(7200.0);
        assert_eq!(
            limits(&r, Some(2), 5, 1000.0),
            "0 of 2 trials left · 2h 00m of the 2h timeout left"
        );
        r.status = RunStatus::Completed;
        assert_eq!(limits(&r, Some(2), 2, 1000.0), "0 of 2 trials left");
        r.spec.timeout = None;
        assert_eq!(limits(&r, None, 2, 1000.0), "");
    }
}
