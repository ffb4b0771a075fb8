//! `/compare?runs=3,7,12`: several runs side by side — their params, tags and latest
//! metrics in one table, a row whose values differ marked, and each metric's charts overlaid
//! (one series per run, drawn from `/runs/<id>/series`).
use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{esc, fail, keep_token, num, page_with, when};
use crate::engine::mlflow::EndpointState;
use crate::store::Store;

/// At most this many runs are compared at once.
const MAX_RUNS: usize = 20;

#[derive(Debug, Default, Deserialize)]
pub(in crate::engine::mlflow) struct CompareQuery {
    /// Run ids, comma-separated.
    #[serde(default)]
    runs: String,
    token: Option<String>,
}

/// The page's script: each metric's series of every run, overlaid (`LH.metricChart`).
const COMPARE_JS: &str = r#"
"use strict";
(async function () {
  const holder = document.getElementById("charts");
  const all = await Promise.all(RUNS.map(id => fetch("/runs/" + id + "/series").then(r => r.json())));
  const names = [...new Set(all.flatMap(d => d.series.map(s => s.name)))].sort();
  window.lhCharts = {};
  for (const name of names) {
    const series = [];
    all.forEach((d, i) => { const s = d.series.find(s => s.name === name); if (s) series.push({...s, name: "run " + RUNS[i]}); });
    const c = LH.metricChart(holder, series, {title: name});
    c.box.dataset.name = name;
    window.lhCharts[name] = c;
  }
  if (!names.length) holder.textContent = "no metrics";
})();
"#;

/// `GET /compare?runs=…`.
pub(in crate::engine::mlflow) async fn compare(
    State(ctx): State<EndpointState>,
    Query(q): Query<CompareQuery>,
) -> Response {
    if let Some(r) = keep_token(
        q.token.as_deref(),
        format!("/compare?runs={}", crate::util::percent_encode(&q.runs)),
    ) {
        return r;
    }
    let mut ids: Vec<i64> = Vec::new();
    for part in q.runs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<i64>() {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(_) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    &format!("runs: '{part}' is not a run id"),
                )
            }
        }
    }
    if ids.len() < 2 || ids.len() > MAX_RUNS {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("compare takes 2 to {MAX_RUNS} run ids: /compare?runs=3,7"),
        );
    }
    let state = ctx.state.clone();
    let got = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        ids.iter()
            .map(|&id| {
                let r = s.get(id)?;
                let params: Vec<(String, String)> = s
                    .params(id)?
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect();
                let metrics: Vec<(String, String)> = s
                    .latest_metrics(id)?
                    .into_iter()
                    .map(|m| (m.name, num(m.value)))
                    .collect();
                let tags: Vec<(String, String)> = s
                    .tags(id)?
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("_aml_system") && !k.starts_with("mlflow."))
                    .collect();
                Ok::<_, crate::error::LabError>((r, params, metrics, tags))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    let runs = match got {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.message.contains("no run") || e.kind == "jobs.not_found" => {
            return fail(StatusCode::NOT_FOUND, &e.message)
        }
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut h = String::from("<h1>Compare</h1><table id=compare><thead><tr><th></th>");
    for (r, ..) in &runs {
        h.push_str(&format!(
            "<th><a href=\"/runs/{id}\">run {id}</a> <span class={st}>{st}</span><br>{name}<br>{start}</th>",
            id = r.id,
            st = r.status,
            name = esc(&r.name),
            start = when(r.started)
        ));
    }
    h.push_str("</tr></thead><tbody>");
    type Pick = fn(
        &(
            crate::store::Run,
            Vec<(String, String)>,
            Vec<(String, String)>,
            Vec<(String, String)>,
        ),
    ) -> &Vec<(String, String)>;
    let sections: [(&str, Pick); 3] = [
        ("params", |x| &x.1),
        ("metrics", |x| &x.2),
        ("tags", |x| &x.3),
    ];
    for (section, pick) in sections {
        let keys: BTreeSet<&String> = runs
            .iter()
            .flat_map(|r| pick(r).iter().map(|kv| &kv.0))
            .collect();
        if keys.is_empty() {
            continue;
        }
        h.push_str(&format!(
            "<tr><th colspan={}>{section}</th></tr>",
            runs.len() + 1
        ));
        for k in keys {
            let vals: Vec<Option<&String>> = runs
                .iter()
                .map(|r| pick(r).iter().find(|kv| &kv.0 == k).map(|kv| &kv.1))
                .collect();
            let differs = vals.iter().any(|v| *v != vals[0]);
            h.push_str(&format!(
                "<tr class=\"{}\" data-key=\"{section}.{}\"><td>{}</td>",
                if differs { "diff" } else { "same" },
                esc(k),
                esc(k)
            ));
            for v in vals {
                h.push_str(&format!(
                    "<td>{}</td>",
                    esc(v.map(String::as_str).unwrap_or(""))
                ));
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</tbody></table><p class=legend>rows that differ are marked</p><h2>Charts</h2><div id=charts></div>");
    let list: Vec<String> = runs.iter().map(|r| r.0.id.to_string()).collect();
    h.push_str(&format!(
        "<script>const RUNS = [{}];</script><script>{COMPARE_JS}</script>",
        list.join(",")
    ));
    Html(page_with("compare", super::assets::HEAD, &h)).into_response()
}
