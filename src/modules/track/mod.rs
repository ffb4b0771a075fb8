//! `track`: the run store as a tracking server's data — queries with MLflow's filter and
//! order-by grammar, a run's metric histories and artifacts, a comparison table, and logging
//! from a script (into its job's run inside a job, else into a run of its own).
pub mod push;
pub mod report;
pub mod rhai;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{LabError, LabResult};
use crate::store::search::{parse_order, Filter};
use crate::store::with_current;
use crate::store::{Metric, NewRun, RunKind, StoredSpec};

/// `track::runs` / `labhost runs` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// An experiment name (default: all).
    pub experiment: Option<String>,
    /// MLflow's filter grammar: `metrics.acc > 0.9 and params.lr = '0.1'`.
    #[serde(default)]
    pub filter: String,
    /// `["metrics.acc DESC", "attributes.start_time"]`.
    #[serde(default)]
    pub order_by: Vec<String>,
    pub limit: Option<u32>,
}

/// A run as queries show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub experiment_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub run_dir: String,
    /// The latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

fn view(f: crate::store::search::Found) -> RunView {
    RunView {
        id: f.run.id,
        name: f.run.name.clone(),
        kind: f.run.kind.as_str().into(),
        status: f.run.status.as_str().into(),
        experiment_id: f.run.experiment_id,
        parent_id: f.run.parent_id,
        started: f.run.started,
        ended: f.run.ended,
        run_dir: f.run.run_dir.clone(),
        metrics: f.metrics,
        params: f.params,
        tags: f.tags,
    }
}

/// Runs matching a query, best first by `order_by` (newest first otherwise).
pub fn runs(q: &Query) -> LabResult<Vec<RunView>> {
    let filter = Filter::parse(&q.filter)?;
    let order = parse_order(&q.order_by)?;
    with_current(|s| {
        let exps = match &q.experiment {
            Some(name) => match s.experiment_by_name(name)? {
                Some(e) => vec![e.id],
                None => {
                    return Err(LabError::new(
                        "track.not_found",
                        format!("no experiment named '{name}'"),
                    ))
                }
            },
            None => vec![],
        };
        let (page, _) = s.search_runs(
            &exps,
            &filter,
            &order,
            0,
            q.limit.map(|l| l as usize).unwrap_or(usize::MAX >> 1),
        )?;
        Ok(page.into_iter().map(view).collect())
    })
}

/// One run.
pub fn run(id: i64) -> LabResult<RunView> {
    with_current(|s| {
        let r = s
            .get(id)
            .map_err(|_| LabError::new("track.not_found", format!("no run with id {id}")))?;
        Ok(view(s.found(r)?))
    })
}

/// A metric's history (step order).
pub fn metrics(id: i64, key: &str) -> LabResult<Vec<Metric>> {
    with_current(|s| {
        s.get(id)
            .map_err(|_| LabError::new("track.not_found", format!("no run with id {id}")))?;
        s.metrics(id, Some(key))
    })
}

/// Files a run produced: `artifacts/…` (logged through MLflow) and `outputs/…`, relative to
/// its run folder.
pub fn artifacts(id: i64) -> LabResult<Vec<String>> {
    let r = run(id)?;
    Ok(run_files(std::path::Path::new(&r.run_dir))
        .into_iter()
        .map(|(rel, _)| rel)
        .collect())
}

/// The files under a run folder's `artifacts/` and `outputs/` (symlinks not followed):
/// `(path relative to the run folder, full path)`, sorted.
pub fn run_files(run_dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut Vec<(String, std::path::PathBuf)>,
    ) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut es: Vec<_> = rd.flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push((rel.display().to_string(), p.clone()));
            }
        }
    }
    let mut out = Vec::new();
    for d in ["artifacts", "outputs"] {
        walk(run_dir, &run_dir.join(d), &mut out);
    }
    out
}

/// Runs side by side: one row per run, its params and latest metrics as columns.
pub fn compare(ids: &[i64]) -> LabResult<String> {
    let runs: Vec<RunView> = ids.iter().map(|i| run(*i)).collect::<LabResult<_>>()?;
    Ok(runs_table(&runs, false))
}

/// Runs as a table: id, (kind,) status, name, then every param and every latest metric as
/// columns (`long`: the kind too, and `params.` / `metrics.` in the headers, as `labhost
/// runs` shows them).
pub fn runs_table(runs: &[RunView], long: bool) -> String {
    let cols = |f: &dyn Fn(&RunView) -> Vec<String>| {
        let mut c: Vec<String> = runs.iter().flat_map(f).collect();
        c.sort();
        c.dedup();
        c
    };
    let pcols = cols(&|r| r.params.keys().cloned().collect());
    let mcols = cols(&|r| r.metrics.keys().cloned().collect());
    let (pp, mp) = if long {
        ("params.", "metrics.")
    } else {
        ("", "")
    };
    let mut head = vec![if long { "ID" } else { "run" }.to_string()];
    if long {
        head.push("KIND".into());
    }
    head.extend([
        if long { "STATUS" } else { "status" }.to_string(),
        if long { "NAME" } else { "name" }.to_string(),
    ]);
    head.extend(pcols.iter().map(|p| format!("{pp}{p}")));
    head.extend(mcols.iter().map(|m| format!("{mp}{m}")));
    let mut rows = vec![head];
    for r in runs {
        let mut row = vec![r.id.to_string()];
        if long {
            row.push(r.kind.clone());
        }
        row.extend([r.status.clone(), r.name.clone()]);
        row.extend(
            pcols
                .iter()
                .map(|k| r.params.get(k).cloned().unwrap_or_else(|| "-".into())),
        );
        row.extend(mcols.iter().map(|k| {
            r.metrics
                .get(k)
                .map(|v| format!("{}", (v * 1e6).round() / 1e6))
                .unwrap_or_else(|| "-".into())
        }));
        rows.push(row);
    }
    table(&rows)
}

/// The widest a table cell is shown: longer values (a 50 MB metric name, a pasted log line)
/// end in "…" instead of stretching every row.
pub const MAX_CELL: usize = 80;

fn cell(x: &str) -> std::borrow::Cow<'_, str> {
    if x.chars().count() <= MAX_CELL {
        return x.into();
    }
    let mut c: String = x.chars().take(MAX_CELL - 1).collect();
    c.push('…');
    c.into()
}

/// Left-aligned columns two spaces apart (cells cut at [`MAX_CELL`] characters).
pub fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> = rows
        .iter()
        .map(|r| r.iter().map(|x| cell(x)).collect())
        .collect();
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let w: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map(|x| x.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(c, x)| format!("{x:<w$}", w = w[c]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

static OWN_RUN: OnceLock<i64> = OnceLock::new();

/// The run a script logs into: its job's (`LABHOST_JOB_ID`) inside a job, else one of its
/// own (kind remote, named after the script), made on first use.
pub fn current_run(script: &str) -> LabResult<i64> {
    if let Some(id) = crate::config::job_id().and_then(|v| v.parse::<i64>().ok()) {
        return Ok(id);
    }
    if let Some(id) = OWN_RUN.get() {
        return Ok(*id);
    }
    let n = NewRun {
        spec: StoredSpec {
            command: crate::command::Command::Shell(format!("labhost run {script}")),
            cwd: std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string()),
            ..Default::default()
        },
        tags: vec![("mlflow.source.name".into(), script.to_string())],
        ..NewRun::record(RunKind::Remote, script, "")
    };
    let (r, _) = with_current(|s| s.open_record(&n, None))?;
    Ok(*OWN_RUN.get_or_init(|| r.id))
}

/// Logs into the current run (see [`current_run`]): metrics, params (immutable, as MLflow's)
/// and tags.
pub fn log(
    script: &str,
    ms: &[Metric],
    ps: &[(String, String)],
    tags: &[(String, String)],
) -> LabResult<i64> {
    let id = current_run(script)?;
    match with_current(|s| s.log_batch(id, ms, ps, tags))? {
        Ok(()) => Ok(id),
        Err(k) => Err(LabError::new(
            "track.invalid",
            format!("param `{k}` was logged already with another value (params do not change)"),
        )),
    }
}

/// A param value as text (MLflow params are strings).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_cuts_long_cells_instead_of_panicking() {
        // Wider than `format!` can pad (u16::MAX): this panicked in `labhost runs`.
        let long = "n".repeat(100_000);
        let t = super::table(&[vec!["name".into(), "value".into()], vec![long, "1".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].chars().count() < 100, "{}", lines[1].len());
        assert!(lines[1].contains("n…  1"), "{}", lines[1]);
    }
}
