//! `labhost track push --to URL`: copies runs to a real MLflow tracking server over its REST
//! API — params, tags, full metric histories with steps and timestamps, artifacts (run
//! folder's `artifacts/` and `outputs/`, through the server's mlflow-artifacts proxy),
//! status and times, and parent links as `mlflow.parentRunId` — idempotently: each pushed
//! run carries the tag `labhost.source` (this state directory and the local run id), a run
//! pushed before is found by it and only what it lacks is sent (a second push adds nothing).
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::store::with_current;
use crate::store::{Run, RunStatus};

/// What a push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Pushed {
    pub runs_created: usize,
    pub runs_found: usize,
    pub metrics: usize,
    pub params: usize,
    pub artifacts: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

fn err(m: impl std::fmt::Display) -> LabError {
    LabError::new("track.push", m.to_string())
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        query: &[(&str, String)],
    ) -> LabResult<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| err(format!("{url}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| err(format!("{url}: {e}")))?;
        if !status.is_success() {
            return Err(err(format!(
                "{url}: {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> LabResult<Value> {
        self.call(reqwest::Method::POST, path, Some(&body), &[])
            .await
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> LabResult<Value> {
        self.call(reqwest::Method::GET, path, None, query).await
    }

    /// The server's experiment id for `name`, created if missing.
    async fn experiment(&self, name: &str) -> LabResult<String> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        let mut req = self.http.get(&url).query(&[("experiment_name", name)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| err(format!("{url}: {e}")))?;
        if resp.status().is_success() {
            let v: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
            return Ok(v["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or("0")
                .to_string());
        }
        let v = self
            .post("experiments/create", json!({"name": name}))
            .await?;
        Ok(v["experiment_id"].as_str().unwrap_or("0").to_string())
    }
}

fn mlflow_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Completed => "FINISHED",
        RunStatus::Failed | RunStatus::TimedOut => "FAILED",
        RunStatus::Cancelled => "KILLED",
        RunStatus::Running | RunStatus::Leased => "RUNNING",
        RunStatus::Queued => "SCHEDULED",
    }
}

/// A run's files as MLflow artifact paths: `artifacts/x` is the artifact `x` (MLflow's
/// artifact root), `outputs/x` stays `outputs/x`.
fn files(run_dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    super::run_files(run_dir)
        .into_iter()
        .map(|(rel, p)| {
            (
                rel.strip_prefix("artifacts/")
                    .map(str::to_string)
                    .unwrap_or(rel),
                p,
            )
        })
        .collect()
}

/// Pushes runs `ids` (parents first) to the server at `to`. Pushing again adds only what the
/// server does not have yet: the run is found by its `labhost.source` tag, params it has are
/// skipped, metric histories are appended past the server's, artifacts it lists are skipped.
pub async fn push(to: &str, ids: &[i64], token: Option<String>) -> LabResult<Pushed> {
    let c = Client {
        http: reqwest::Client::new(),
        base: to.trim_end_matches('/').to_string(),
        token,
    };
    let state = crate::state::dir()?
        .canonicalize()
        .unwrap_or(crate::state::dir()?);
    let source = format!("{}:{}", crate::util::hostname_or_local(), state.display());
    // Local data first (parents before children, so links can be mapped).
    let mut runs: Vec<Run> = with_current(|s| ids.iter().map(|i| s.get(*i)).collect())?;
    runs.sort_by_key(|r| (r.parent_id.is_some(), r.id));
    let mut done = Pushed::default();
    let mut remote: HashMap<i64, String> = HashMap::new();
    for r in runs {
        let (params, tags, metrics, exp_name) = with_current(|s| {
            let exp = match r.experiment_id {
                Some(e) => s.experiment(e)?.name,
                None => "Default".to_string(),
            };
            Ok((s.params(r.id)?, s.tags(r.id)?, s.metrics(r.id, None)?, exp))
        })?;
        let exp = c.experiment(&exp_name).await?;
        let parent = r.parent_id.and_then(|p| remote.get(&p)).cloned();
        let rid = c
            .remote_run(&r, &exp, &format!("{source}#{}", r.id), parent, &mut done)
            .await?;
        remote.insert(r.id, rid.clone());
        let have = c.get("runs/get", &[("run_id", rid.clone())]).await?;
        done.params += c.push_params(&rid, &have, &params).await?;
        c.push_tags(&rid, &tags).await?;
        done.metrics += c.push_metrics(&rid, &metrics).await?;
        done.artifacts += c.push_artifacts(&rid, &have, Path::new(&r.run_dir)).await?;
        if r.status.is_finished()
            && have["run"]["info"]["status"].as_str() != Some(mlflow_status(r.status))
        {
            c.post(
                "runs/update",
                json!({"run_id": rid, "status": mlflow_status(r.status), "end_time": r.ended.map(|e| (e * 1000.0) as i64)}),
            )
            .await?;
        }
    }
    Ok(done)
}

impl Client {
    /// The server's run for local run `r` (found by its `labhost.source` tag `mark`, else
    /// created under `exp`, a child of `parent` when given).
    async fn remote_run(
        &self,
        r: &Run,
        exp: &str,
        mark: &str,
        parent: Option<String>,
        done: &mut Pushed,
    ) -> LabResult<String> {
        let found = self
            .post(
                "runs/search",
                json!({"experiment_ids": [exp], "filter": format!("tags.`labhost.source` = '{}'", mark.replace('\'', "")), "max_results": 1}),
            )
            .await?;
        if let Some(x) = found["runs"].as_array().and_then(|a| a.first()) {
            done.runs_found += 1;
            return Ok(x["info"]["run_id"].as_str().unwrap_or_default().to_string());
        }
        let mut t = vec![
            json!({"key": "labhost.source", "value": mark}),
            json!({"key": "labhost.kind", "value": r.kind.as_str()}),
        ];
        if let Some(p) = parent {
            t.push(json!({"key": "mlflow.parentRunId", "value": p}));
        }
        let v = self
            .post(
                "runs/create",
                json!({"experiment_id": exp, "run_name": r.name, "start_time": (r.started.unwrap_or(r.created) * 1000.0) as i64, "tags": t}),
            )
            .await?;
        done.runs_created += 1;
        Ok(v["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Logs the params the server's run (`have`) does not have yet; returns how many.
    async fn push_params(
        &self,
        rid: &str,
        have: &Value,
        params: &[(String, Value)],
    ) -> LabResult<usize> {
        let have_params: HashMap<String, String> = have["run"]["data"]["params"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    p["key"].as_str().unwrap_or("").to_string(),
                    p["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let new_params: Vec<Value> = params
            .iter()
            .filter(|(k, _)| !have_params.contains_key(k))
            .map(|(k, v)| json!({"key": k, "value": text(v)}))
            .collect();
        for chunk in new_params.chunks(100) {
            self.post("runs/log-batch", json!({"run_id": rid, "params": chunk}))
                .await?;
        }
        Ok(new_params.len())
    }

    /// Sets every tag (tags may change; the parent link was set when the run was made).
    async fn push_tags(&self, rid: &str, tags: &[(String, String)]) -> LabResult<()> {
        let tag_list: Vec<Value> = tags
            .iter()
            .filter(|(k, _)| k != "mlflow.parentRunId")
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        for chunk in tag_list.chunks(100) {
            self.post("runs/log-batch", json!({"run_id": rid, "tags": chunk}))
                .await?;
        }
        Ok(())
    }

    /// Appends the metric points past what the server has (per key, the server's history is
    /// a prefix of ours: pushes append); returns how many.
    async fn push_metrics(&self, rid: &str, metrics: &[crate::store::Metric]) -> LabResult<usize> {
        let mut by_key: BTreeMap<String, Vec<&crate::store::Metric>> = BTreeMap::new();
        for m in metrics {
            by_key.entry(m.name.clone()).or_default().push(m);
        }
        let mut new_metrics = Vec::new();
        for (k, ms) in &by_key {
            let h = self
                .get(
                    "metrics/get-history",
                    &[("run_id", rid.to_string()), ("metric_key", k.clone())],
                )
                .await?;
            let n = h["metrics"].as_array().map(Vec::len).unwrap_or(0);
            for m in ms.iter().skip(n) {
                new_metrics.push(json!({"key": k, "value": m.value, "timestamp": (m.ts * 1000.0) as i64, "step": m.step}));
            }
        }
        for chunk in new_metrics.chunks(1000) {
            self.post("runs/log-batch", json!({"run_id": rid, "metrics": chunk}))
                .await?;
        }
        Ok(new_metrics.len())
    }

    /// Uploads the run folder's files the server does not list yet, through its artifact
    /// proxy (where the run's `artifact_uri` is `mlflow-artifacts:/…`); returns how many.
    async fn push_artifacts(&self, rid: &str, have: &Value, run_dir: &Path) -> LabResult<usize> {
        let uri = have["run"]["info"]["artifact_uri"].as_str().unwrap_or("");
        let Some(path) = uri.strip_prefix("mlflow-artifacts:/") else {
            return Ok(0);
        };
        let listed = self
            .get("artifacts/list", &[("run_id", rid.to_string())])
            .await
            .unwrap_or(Value::Null);
        let mut present: Vec<String> = Vec::new();
        fn collect(v: &Value, out: &mut Vec<String>) {
            for f in v["files"].as_array().cloned().unwrap_or_default() {
                if let Some(p) = f["path"].as_str() {
                    out.push(p.to_string());
                }
            }
        }
        collect(&listed, &mut present);
        if present.iter().any(|p| p == "outputs") {
            let sub = self
                .get(
                    "artifacts/list",
                    &[("run_id", rid.to_string()), ("path", "outputs".into())],
                )
                .await
                .unwrap_or(Value::Null);
            collect(&sub, &mut present);
        }
        let mut sent = 0;
        for (rel, file) in files(run_dir) {
            if present.contains(&rel) {
                continue;
            }
            let data = std::fs::read(&file)
                .map_err(|e| crate::error::io_err("track", "cannot read", &file, &e))?;
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{}/{rel}",
                self.base,
                path.trim_matches('/')
            );
            let mut req = self.http.put(&url).body(data);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| err(format!("{url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(err(format!("{url}: {}", resp.status())));
            }
            sent += 1;
        }
        Ok(sent)
    }
}
