//! `labhost report`: one self-contained HTML file (no network at view time: inline CSS, JS
//! and data, SVG drawn in the page) for a sweep, a cross-validation, a run or an experiment —
//! a sortable trial table, the best trial, metric curves per trial, parallel coordinates of
//! parameters against the objective, early-termination decisions with their reasons, and the
//! aggregation across folds; or the same data as Markdown, JSON or CSV.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::store::with_current;
use crate::store::{Run, RunKind, RunStatus};

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub run_id: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub params: BTreeMap<String, Value>,
    /// Latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// Best report of the objective (by the goal), when there is one.
    pub best: Option<f64>,
    pub reports: usize,
    pub duration: Option<f64>,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
    /// The objective's history: `[step, value]`.
    pub curve: Vec<(i64, f64)>,
}

/// What a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    /// `sweep`, `cross-validation`, `run` or `experiment`.
    pub what: String,
    pub objective: Option<String>,
    pub goal: String,
    pub rows: Vec<Row>,
    /// Index into `rows` of the best.
    pub best: Option<usize>,
    /// Per metric across rows: mean, std (sample), min, max (a cross-validation's folds).
    pub aggregate: BTreeMap<String, [f64; 4]>,
    pub parameters: Vec<String>,
}

fn row(
    s: &crate::store::Store,
    r: &Run,
    objective: Option<&str>,
    maximize: bool,
) -> LabResult<Row> {
    let f = s.found(r.clone())?;
    let params: BTreeMap<String, Value> = s.params(r.id)?.into_iter().collect();
    let curve: Vec<(i64, f64)> = match objective {
        Some(o) => s
            .metrics(r.id, Some(o))?
            .into_iter()
            .map(|m| (m.step, m.value))
            .collect(),
        None => Vec::new(),
    };
    let best = curve
        .iter()
        .map(|c| c.1)
        .filter(|v| !v.is_nan())
        .reduce(|a, b| {
            if (maximize && b > a) || (!maximize && b < a) {
                b
            } else {
                a
            }
        });
    Ok(Row {
        run_id: r.id,
        name: r.name.clone(),
        kind: r.kind.as_str().into(),
        status: r.status.as_str().into(),
        params,
        metrics: f.metrics,
        best,
        reports: curve.len(),
        duration: r.started.zip(r.ended).map(|(a, b)| b - a),
        reason: r.cancel_reason.clone().or_else(|| {
            (r.status != RunStatus::Completed)
                .then(|| r.error.clone())
                .flatten()
        }),
        curve,
    })
}

/// The report of run `id` (a sweep or cross-validation: its children; else the run itself)
/// or of experiment `name`.
pub fn build(target: &str) -> LabResult<Report> {
    with_current(|s| {
        let (title, what, runs, objective, maximize) = if let Ok(id) = target.parse::<i64>() {
            let r = s
                .get(id)
                .map_err(|_| LabError::new("track.not_found", format!("no run with id {id}")))?;
            let p: BTreeMap<String, Value> = s.params(id)?.into_iter().collect();
            let objective = p
                .get("primary_metric")
                .and_then(|v| v.as_str())
                .filter(|x| !x.is_empty())
                .map(str::to_string);
            let maximize = p.get("goal").and_then(|v| v.as_str()) == Some("maximize");
            let mut kids = s.list(None, Some(id), usize::MAX >> 1)?;
            kids.reverse();
            if kids.is_empty() {
                (
                    format!("run {id} {}", r.name),
                    "run".to_string(),
                    vec![r],
                    objective,
                    maximize,
                )
            } else {
                let what = if kids.iter().any(|k| k.kind == RunKind::Fold) {
                    "cross-validation"
                } else {
                    "sweep"
                };
                (
                    format!("{what} {id} {}", r.name),
                    what.to_string(),
                    kids,
                    objective,
                    maximize,
                )
            }
        } else {
            let e = s.experiment_by_name(target)?.ok_or_else(|| {
                LabError::new(
                    "track.not_found",
                    format!("no run id or experiment named '{target}'"),
                )
            })?;
            let (page, _) = s.search_runs(
                &[e.id],
                &crate::store::search::Filter::default(),
                &[],
                0,
                usize::MAX >> 1,
            )?;
            let mut runs: Vec<Run> = page
                .into_iter()
                .map(|f| f.run)
                .filter(|r| r.parent_id.is_none())
                .collect();
            runs.reverse();
            (
                format!("experiment {target}"),
                "experiment".to_string(),
                runs,
                None,
                false,
            )
        };
        let rows = runs
            .iter()
            .map(|r| row(s, r, objective.as_deref(), maximize))
            .collect::<LabResult<Vec<_>>>()?;
        let best = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.best.map(|b| (i, b)))
            .reduce(|a, b| {
                if (maximize && b.1 > a.1) || (!maximize && b.1 < a.1) {
                    b
                } else {
                    a
                }
            })
            .map(|x| x.0);
        let mut parameters: Vec<String> =
            rows.iter().flat_map(|r| r.params.keys().cloned()).collect();
        parameters.sort();
        parameters.dedup();
        let mut aggregate = BTreeMap::new();
        if what == "cross-validation" {
            let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &rows {
                for (k, v) in &r.metrics {
                    by.entry(k.clone()).or_default().push(*v);
                }
            }
            for (k, xs) in by {
                let n = xs.len() as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let std = if xs.len() > 1 {
                    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                } else {
                    0.0
                };
                let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
                let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                aggregate.insert(k, [mean, std, min, max]);
            }
        }
        Ok(Report {
            title,
            what,
            objective,
            goal: if maximize { "maximize" } else { "minimize" }.into(),
            rows,
            best,
            aggregate,
            parameters,
        })
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn num(x: f64) -> String {
    format!("{}", (x * 1e6).round() / 1e6)
}

/// The columns every text format shares.
fn columns(r: &Report) -> (Vec<String>, Vec<String>) {
    let mut metrics: Vec<String> = r
        .rows
        .iter()
        .flat_map(|x| x.metrics.keys().cloned())
        .collect();
    metrics.sort();
    metrics.dedup();
    (r.parameters.clone(), metrics)
}

/// CSV: one line per row (RFC 4180 quoting).
pub fn csv(r: &Report) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let (ps, ms) = columns(r);
    let mut out = vec![{
        let mut h = vec!["run_id".to_string(), "name".into(), "status".into()];
        h.extend(ps.iter().map(|p| format!("params.{p}")));
        h.extend(ms.iter().map(|m| format!("metrics.{m}")));
        h.extend([
            "best".into(),
            "reports".into(),
            "duration_s".into(),
            "reason".into(),
        ]);
        h.join(",")
    }];
    for x in &r.rows {
        let mut l = vec![x.run_id.to_string(), q(&x.name), x.status.clone()];
        l.extend(
            ps.iter()
                .map(|p| q(&x.params.get(p).map(cell).unwrap_or_default())),
        );
        l.extend(
            ms.iter()
                .map(|m| x.metrics.get(m).map(|v| num(*v)).unwrap_or_default()),
        );
        l.push(x.best.map(num).unwrap_or_default());
        l.push(x.reports.to_string());
        l.push(x.duration.map(|d| format!("{d:.3}")).unwrap_or_default());
        l.push(q(x.reason.as_deref().unwrap_or("")));
        out.push(l.join(","));
    }
    out.join("\n") + "\n"
}

/// Markdown: a heading, the best row, the table, the aggregate.
pub fn markdown(r: &Report) -> String {
    let (ps, ms) = columns(r);
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!("# {}\n\n", r.title);
    if let (Some(b), Some(o)) = (r.best, &r.objective) {
        let x = &r.rows[b];
        out.push_str(&format!(
            "Best: run {} ({}) {o} = {} ({})\n\n",
            x.run_id,
            x.name,
            x.best.map(num).unwrap_or_default(),
            r.goal
        ));
    }
    let mut head = vec!["run".to_string(), "name".into(), "status".into()];
    head.extend(ps.iter().cloned());
    head.extend(ms.iter().cloned());
    head.push("reason".into());
    out.push_str(&format!(
        "| {} |\n|{}|\n",
        head.join(" | "),
        vec!["---"; head.len()].join("|")
    ));
    for x in &r.rows {
        let mut l = vec![x.run_id.to_string(), esc(&x.name), x.status.clone()];
        l.extend(
            ps.iter()
                .map(|p| esc(&x.params.get(p).map(cell).unwrap_or_default())),
        );
        l.extend(
            ms.iter()
                .map(|m| x.metrics.get(m).map(|v| num(*v)).unwrap_or_default()),
        );
        l.push(esc(x.reason.as_deref().unwrap_or("")));
        out.push_str(&format!("| {} |\n", l.join(" | ")));
    }
    if !r.aggregate.is_empty() {
        out.push_str("\n| metric | mean | std | min | max |\n|---|---|---|---|---|\n");
        for (k, a) in &r.aggregate {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                esc(k),
                num(a[0]),
                num(a[1]),
                num(a[2]),
                num(a[3])
            ));
        }
    }
    out
}

/// JSON: the report's data.
pub fn to_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

/// The HTML page: data embedded as JSON (`</` escaped), drawn by inline script.
pub fn html(r: &Report) -> String {
    let data = serde_json::to_string(&json!(r))
        .unwrap_or_default()
        .replace("</", "<\\/");
    let title = r.title.replace('&', "&amp;").replace('<', "&lt;");
    PAGE.replace("{{TITLE}}", &title).replace("{{DATA}}", &data)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.best{background:#eef8ee;border:1px solid #9c9;padding:8px 12px;border-radius:6px;display:inline-block}
table{border-collapse:collapse;margin-top:8px} th,td{border:1px solid #ccd;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f2f4f8;cursor:pointer;user-select:none} th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
tr.best-row td{background:#eef8ee} tr.cancelled td{color:#777} td.reason{white-space:normal;max-width:520px}
svg{background:#fbfbfd;border:1px solid #dde} .legend{font-size:12px;color:#555}
</style></head><body>
<h1 id="title"></h1><div id="sub" class="legend"></div>
<h2>Best</h2><div id="best" class="best"></div>
<h2>Trials</h2><table id="trials"><thead></thead><tbody></tbody></table>
<h2>Objective per report</h2><svg id="curves" width="760" height="320"></svg>
<h2>Parallel coordinates</h2><svg id="parallel" width="760" height="320"></svg>
<h2>Early termination</h2><ul id="decisions"></ul>
<div id="aggregate-block"><h2>Across folds</h2><table id="aggregate"><thead></thead><tbody></tbody></table></div>
<script>
"use strict";
const R = {{DATA}};
const el = (t, a, txt) => { const e = document.createElement(t); for (const k in (a||{})) e.setAttribute(k, a[k]); if (txt !== undefined) e.textContent = txt; return e; };
const fmt = v => (v === null || v === undefined) ? "" : (typeof v === "number" ? String(Math.round(v * 1e6) / 1e6) : String(v));
document.getElementById("title").textContent = R.title;
document.getElementById("sub").textContent = R.rows.length + " run(s)" + (R.objective ? " · objective " + R.objective + " (" + R.goal + ")" : "");
const bestRow = R.best === null ? null : R.rows[R.best];
document.getElementById("best").textContent = bestRow ? ("run " + bestRow.run_id + " " + bestRow.name + ": " + R.objective + " = " + fmt(bestRow.best) + " with " + R.parameters.map(p => p + "=" + fmt(bestRow.params[p])).join(", ")) : "no run reported the objective";
const metrics = [...new Set(R.rows.flatMap(r => Object.keys(r.metrics)))].sort();
const cols = [["run", r => r.run_id], ["name", r => r.name], ["status", r => r.status]]
  .concat(R.parameters.map(p => [p, r => r.params[p]]))
  .concat(R.objective ? [["best " + R.objective, r => r.best]] : [])
  .concat(metrics.map(m => [m, r => r.metrics[m]]))
  .concat([["reports", r => r.reports], ["seconds", r => r.duration], ["reason", r => r.reason]]);
const thead = document.querySelector("#trials thead"), tbody = document.querySelector("#trials tbody");
const hr = el("tr"); cols.forEach(([n], i) => { const th = el("th", {"data-col": i}, n); th.addEventListener("click", () => sortBy(i)); hr.appendChild(th); }); thead.appendChild(hr);
let order = R.rows.map((_, i) => i), sortCol = null, asc = true;
function render() {
  tbody.textContent = "";
  for (const i of order) {
    const r = R.rows[i], tr = el("tr", {"data-run": r.run_id});
    if (i === R.best) tr.className = "best-row"; else if (r.status === "cancelled") tr.className = "cancelled";
    cols.forEach(([n, f]) => tr.appendChild(el("td", n === "reason" ? {class: "reason"} : {}, fmt(f(r)))));
    tbody.appendChild(tr);
  }
  document.querySelectorAll("#trials th").forEach((th, i) => th.className = i === sortCol ? (asc ? "sorted-asc" : "sorted-desc") : "");
}
function sortBy(c) {
  asc = sortCol === c ? !asc : true; sortCol = c;
  const f = cols[c][1];
  order.sort((a, b) => { const x = f(R.rows[a]), y = f(R.rows[b]);
    if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
    const d = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
    return asc ? d : -d; });
  render();
}
render();
const NS = "http://www.w3.org/2000/svg";
const sv = (t, a) => { const e = document.createElementNS(NS, t); for (const k in a) e.setAttribute(k, a[k]); return e; };
const hue = i => "hsl(" + ((i * 137) % 360) + ",60%,45%)";
(function curves() {
  const svg = document.getElementById("curves"), W = 760, H = 320, P = 40;
  const pts = R.rows.flatMap(r => r.curve); if (!pts.length) { svg.appendChild(sv("text", {x: 20, y: 30})).textContent = "no reports of the objective"; return; }
  const n = Math.max(...R.rows.map(r => r.curve.length)), ys = pts.map(p => p[1]);
  const y0 = Math.min(...ys), y1 = Math.max(...ys), sy = v => H - P - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (H - 2 * P), sx = k => P + (n <= 1 ? 0 : k / (n - 1)) * (W - 2 * P);
  svg.appendChild(sv("line", {x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#99a"}));
  svg.appendChild(sv("text", {x: 4, y: P, "font-size": 11})).textContent = fmt(y1);
  svg.appendChild(sv("text", {x: 4, y: H - P, "font-size": 11})).textContent = fmt(y0);
  R.rows.forEach((r, i) => { if (!r.curve.length) return;
    const pl = sv("polyline", {fill: "none", stroke: hue(i), "stroke-width": i === R.best ? 3 : 1.5, points: r.curve.map((p, k) => sx(k) + "," + sy(p[1])).join(" ")});
    pl.appendChild(sv("title", {})).textContent = "run " + r.run_id; svg.appendChild(pl); });
})();
(function parallel() {
  const svg = document.getElementById("parallel"), W = 760, H = 320, P = 40;
  const axes = R.parameters.concat(R.objective ? ["best " + R.objective] : []);
  if (axes.length < 2) { svg.appendChild(sv("text", {x: 20, y: 30})).textContent = "fewer than two axes"; return; }
  const val = (r, a) => a.startsWith("best ") && R.objective && a === "best " + R.objective ? r.best : r.params[a];
  const scales = axes.map(a => { const vs = R.rows.map(r => val(r, a)).filter(v => v !== null && v !== undefined);
    const nums = vs.every(v => typeof v === "number");
    if (nums) { const lo = Math.min(...vs), hi = Math.max(...vs); return v => hi === lo ? 0.5 : (v - lo) / (hi - lo); }
    const cats = [...new Set(vs.map(String))].sort(); return v => cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1); });
  const x = i => P + i * (W - 2 * P) / (axes.length - 1), y = t => H - P - t * (H - 2 * P);
  axes.forEach((a, i) => { svg.appendChild(sv("line", {x1: x(i), y1: P, x2: x(i), y2: H - P, stroke: "#99a"})); svg.appendChild(sv("text", {x: x(i) - 20, y: H - P + 16, "font-size": 11})).textContent = a; });
  R.rows.forEach((r, k) => { const ps = []; axes.forEach((a, i) => { const v = val(r, a); if (v !== null && v !== undefined) ps.push(x(i) + "," + y(scales[i](v))); });
    const pl = sv("polyline", {fill: "none", stroke: hue(k), "stroke-opacity": r.status === "cancelled" ? 0.35 : 0.9, "stroke-width": k === R.best ? 3 : 1.2, points: ps.join(" ")});
    pl.appendChild(sv("title", {})).textContent = "run " + r.run_id; svg.appendChild(pl); });
})();
(function decisions() {
  const ul = document.getElementById("decisions"), rs = R.rows.filter(r => r.reason);
  if (!rs.length) ul.appendChild(el("li", {}, "none: every run ran to its end"));
  rs.forEach(r => ul.appendChild(el("li", {}, "run " + r.run_id + " (" + r.name + "): " + r.reason)));
})();
(function aggregate() {
  const keys = Object.keys(R.aggregate); if (!keys.length) { document.getElementById("aggregate-block").style.display = "none"; return; }
  const t = document.getElementById("aggregate"), h = el("tr"); ["metric", "mean", "std", "min", "max"].forEach(c => h.appendChild(el("th", {}, c))); t.tHead.appendChild(h);
  keys.forEach(k => { const tr = el("tr"); tr.appendChild(el("td", {}, k)); R.aggregate[k].forEach(v => tr.appendChild(el("td", {}, fmt(v)))); t.tBodies[0].appendChild(tr); });
})();
</script></body></html>
"##;
