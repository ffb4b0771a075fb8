//! The data of a report over the store: a sweep's or cross-validation's children, a run, or
//! an experiment's runs, with the objective, the best, the aggregate across folds and the
//! scale of each swept parameter. `labhost report` renders it (HTML, Markdown, JSON, CSV);
//! the dashboard serves it as JSON and draws it with the same chart components.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Run, RunKind, RunStatus, Store};
use crate::error::{LabError, LabResult};

/// A report draws an objective's history with at most this many points per trial (M4).
const CURVE_POINTS: usize = 2000;

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
    /// How each swept parameter is drawn: `log` (a log-scaled distribution), `category` (a
    /// choice) or `linear`, from the sweep's search space (its generator-config tag, as
    /// Azure ML writes it). Parameters not in it are absent.
    pub scales: BTreeMap<String, String>,
}

/// The scale of each parameter of a search space recorded as Azure ML's
/// `_aml_system_generator_config` tag: `{"parameter_space": {"lr": ["loguniform", [..]]}}`.
pub fn scales(generator_config: &str) -> BTreeMap<String, String> {
    let v: Value = serde_json::from_str(generator_config).unwrap_or(Value::Null);
    let Some(space) = v.get("parameter_space").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    space
        .iter()
        .filter_map(|(name, d)| {
            let kind = d.get(0).and_then(Value::as_str)?;
            let scale = match kind {
                "loguniform" | "qloguniform" | "lognormal" | "qlognormal" => "log",
                "choice" => "category",
                _ => "linear",
            };
            Some((name.clone(), scale.to_string()))
        })
        .collect()
}

/// The row of run `r`, whose params and objective history (`(step, value)`) are given (read
/// for all the rows at once).
fn row(
    s: &Store,
    r: &Run,
    params: BTreeMap<String, Value>,
    full: Vec<(i64, f64)>,
    maximize: bool,
) -> LabResult<Row> {
    let metrics = s
        .latest_metrics_of(r.id, r.attempt)?
        .into_iter()
        .map(|m| (m.name, m.value))
        .collect();
    let best = full
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
    let values: Vec<f64> = full.iter().map(|c| c.1).collect();
    let curve = crate::util::m4(&values, CURVE_POINTS)
        .into_iter()
        .map(|i| full[i])
        .collect();
    Ok(Row {
        run_id: r.id,
        name: r.name.clone(),
        kind: r.kind.as_str().into(),
        status: r.status.as_str().into(),
        params,
        metrics,
        best,
        reports: full.len(),
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
pub fn build(s: &Store, target: &str) -> LabResult<Report> {
    s.snapshot(|s| build_in(s, target))
}

fn build_in(s: &Store, target: &str) -> LabResult<Report> {
    {
        let mut scales = BTreeMap::new();
        // The run whose children the rows are (a sweep or a cross-validation).
        let mut parent = None;
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
            if let Some((_, g)) = s
                .tags(id)?
                .into_iter()
                .find(|(k, _)| k == "_aml_system_generator_config")
            {
                scales = self::scales(&g);
            }
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
                parent = Some(id);
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
                &super::search::Filter::default(),
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
        // A sweep's or cross-validation's params and objective history in one query each,
        // not one per trial.
        let mut children = match parent {
            Some(id) => Some((
                s.children_params(id)?,
                match objective.as_deref() {
                    Some(o) => s.children_metrics(id, o)?,
                    None => BTreeMap::new(),
                },
            )),
            None => None,
        };
        let rows = runs
            .iter()
            .map(|r| {
                let (params, points) = match children.as_mut() {
                    Some((params, points)) => (
                        params.remove(&r.id).unwrap_or_default(),
                        points.remove(&r.id).unwrap_or_default(),
                    ),
                    None => (
                        s.params(r.id)?,
                        match objective.as_deref() {
                            Some(o) => s.metrics(r.id, Some(o))?,
                            None => Vec::new(),
                        },
                    ),
                };
                let full = points.into_iter().map(|m| (m.step, m.value)).collect();
                row(s, r, params.into_iter().collect(), full, maximize)
            })
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
            scales,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_scaled_distributions_get_log_axes_and_choices_categorical_ones() {
        let g = r#"{"parameter_space": {"lr": ["loguniform", [-9, -2]], "wd": ["qlognormal", [0, 1, 0.1]],
            "opt": ["choice", [["sgd", "adam"]]], "x": ["uniform", [0, 1]], "n": ["randint", [5]]}}"#;
        let s = super::scales(g);
        let got: Vec<(&str, &str)> = s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("lr", "log"),
                ("n", "linear"),
                ("opt", "category"),
                ("wd", "log"),
                ("x", "linear")
            ]
        );
        assert!(super::scales("not json").is_empty());
    }
}
