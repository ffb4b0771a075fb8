//! `labhost report`: one self-contained HTML file (no network at view time: inline CSS, JS
//! and data; charts drawn by the dashboard's components, uPlot and `charts.js`, inlined) for a sweep, a cross-validation, a run or an experiment —
//! a sortable trial table, the best trial, metric curves per trial, parallel coordinates of
//! parameters against the objective, early-termination decisions with their reasons, and the
//! aggregation across folds; or the same data as Markdown, JSON or CSV.
use serde_json::{json, Value};

use crate::error::LabResult;
pub use crate::store::report::{Report, Row};
use crate::store::with_current;

/// The report of run `id` (a sweep or cross-validation: its children; else the run itself)
/// or of experiment `name`: see [`crate::store::report::build`].
pub fn build(target: &str) -> LabResult<Report> {
    with_current(|s| crate::store::report::build(s, target))
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
    PAGE.replace("{{TITLE}}", &title)
        .replace("{{DATA}}", &data)
        .replace("{{HEAD}}", &crate::engine::chart_scripts())
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
.legend{font-size:12px;color:#555} h3{font-size:14px;margin:16px 0 4px}
</style>
{{HEAD}}</head><body>
<h1 id="title"></h1><div id="sub" class="legend"></div>
<h2>Best</h2><div id="best" class="best"></div>
<h2>Trials</h2><table id="trials"><thead></thead><tbody></tbody></table>
<h2>Charts</h2><div id="charts"></div>
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
window.lhSweep = LH.sweep(document.getElementById("charts"), R);
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
