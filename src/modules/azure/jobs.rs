//! Jobs: submit (body + assets + PUT), get, wait (status transitions, backoff, timeout from
//! Running), cancel (with its long-running operation), list, rerun, child runs from run
//! history, output downloads and metrics through the workspace MLflow endpoint.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::Client;
use crate::error::{LabError, LabResult};

/// Terminal statuses (azure-ai-ml `_run_history_constants`).
pub const TERMINAL: &[&str] = &["Completed", "Failed", "Canceled", "NotResponding", "Paused"];

pub fn is_terminal(s: &str) -> bool {
    TERMINAL.contains(&s)
}

/// A job or a child run, as ARM or run history describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AzureRun {
    /// The job name (= run id = MLflow run id).
    pub name: String,
    pub experiment: String,
    pub status: String,
    pub display_name: String,
    pub job_type: String,
    pub parent: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    pub studio_url: String,
    /// `experiment:name` (hi-ml's run recovery id).
    pub recovery_id: String,
    /// The job's outputs as ARM gives them (`default`, named outputs with their URIs).
    pub outputs: Value,
    pub error: Option<String>,
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl AzureRun {
    /// From an ARM job (`GET {WS}/jobs/{name}`).
    pub fn from_job(v: &Value) -> AzureRun {
        let p = &v["properties"];
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let experiment = p["experimentName"]
            .as_str()
            .unwrap_or("Default")
            .to_string();
        let error = p["error"]["message"]
            .as_str()
            .or(p["error"]["error"]["message"].as_str())
            .map(str::to_string);
        AzureRun {
            recovery_id: format!("{experiment}:{name}"),
            studio_url: p["services"]["Studio"]["endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            status: p["status"].as_str().unwrap_or("Unknown").to_string(),
            display_name: p["displayName"].as_str().unwrap_or(&name).to_string(),
            job_type: p["jobType"].as_str().unwrap_or_default().to_string(),
            parent: None,
            tags: str_map(&p["tags"]),
            properties: str_map(&p["properties"]),
            outputs: p["outputs"].clone(),
            error,
            name,
            experiment,
        }
    }

    /// From a run-history run (`…/runs/{id}/children`).
    pub fn from_history(v: &Value, experiment: &str) -> AzureRun {
        let name = v["runId"].as_str().unwrap_or_default().to_string();
        AzureRun {
            recovery_id: format!("{experiment}:{name}"),
            studio_url: String::new(),
            status: v["status"].as_str().unwrap_or("Unknown").to_string(),
            display_name: v["displayName"].as_str().unwrap_or(&name).to_string(),
            job_type: v["runType"].as_str().unwrap_or_default().to_string(),
            parent: v["parentRunId"].as_str().map(str::to_string),
            tags: str_map(&v["tags"]),
            properties: str_map(&v["properties"]),
            outputs: Value::Null,
            error: v["error"]["error"]["message"].as_str().map(str::to_string),
            name,
            experiment: experiment.to_string(),
        }
    }

    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }

    /// InnerEye `is_parent_run`: a sweep (HyperDrive) or pipeline, whose work is its children.
    pub fn is_parent_run(&self) -> bool {
        matches!(self.job_type.as_str(), "Sweep" | "Pipeline")
            || self
                .properties
                .get("runTemplate")
                .is_some_and(|t| t == "HyperDrive")
            || self
                .properties
                .get("azureml.runsource")
                .is_some_and(|t| t == "hyperdrive")
    }

    /// InnerEye `get_cross_validation_split_index`: the tag `cross_validation_split_index`,
    /// else that key (or `crossval_index`) in the `hyperparameters` tag; -1 when neither.
    pub fn cross_validation_split_index(&self) -> i64 {
        if let Some(i) = self
            .tags
            .get("cross_validation_split_index")
            .and_then(|v| v.parse().ok())
        {
            return i;
        }
        let hp: Value = self
            .tags
            .get("hyperparameters")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or(Value::Null);
        for k in ["cross_validation_split_index", "crossval_index"] {
            match &hp[k] {
                Value::Number(n) => return n.as_i64().unwrap_or(-1),
                Value::String(s) => return s.parse().unwrap_or(-1),
                _ => {}
            }
        }
        -1
    }

    pub fn is_cross_validation_child_run(&self) -> bool {
        self.cross_validation_split_index() >= 0
    }

    /// InnerEye `is_ensemble_run`: tagged `is_ensemble: True`.
    pub fn is_ensemble_run(&self) -> bool {
        self.tags
            .get("is_ensemble")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// InnerEye `tag_values_all_distinct`: every run has a different value of `tag`; a run
/// without the tag is an error (InnerEye's `KeyError`), as in `util::tag_values_all_distinct`.
pub fn tag_values_all_distinct(runs: &[AzureRun], tag: &str) -> LabResult<bool> {
    let mut seen = std::collections::HashSet::new();
    for r in runs {
        let v = r.tags.get(tag).ok_or_else(|| {
            LabError::new(
                "azure.missing_tag",
                format!("run {} has no tag '{tag}'", r.name),
            )
        })?;
        if !seen.insert(v) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A job name in hi-ml's shape `<experiment>_<unix seconds>_<8 hex>`: valid for ARM
/// (`^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$`) and a bare recovery id that names its experiment.
pub fn new_job_name(experiment: &str) -> String {
    let mut e = crate::modules::git::to_azure_friendly_string(experiment);
    if !e.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        e = format!("job{e}");
    }
    e.truncate(200);
    format!(
        "{e}_{}_{:08x}",
        crate::clock::unix() as u64,
        fastrand::u32(..)
    )
}

/// `wait` options.
#[derive(Debug, Clone)]
pub struct WaitOpts {
    /// Give up (and cancel the job when `cancel_on_timeout`) after this long in Running.
    pub timeout: Option<Duration>,
    /// First poll interval (doubles up to `poll_max`).
    pub poll: Duration,
    pub poll_max: Duration,
    pub cancel_on_timeout: bool,
    pub quiet: bool,
}

impl Default for WaitOpts {
    fn default() -> Self {
        // Checked at start (`config::check`): a bad value never reaches here.
        let env = |k: &str, d: u64| {
            crate::config::azure_seconds(k)
                .ok()
                .flatten()
                .unwrap_or(Duration::from_secs(d))
        };
        WaitOpts {
            timeout: None,
            poll: env("AZUREML_RUN_POLLING_INTERVAL_MIN", 2),
            poll_max: env("AZUREML_RUN_POLLING_INTERVAL_MAX", 60),
            cancel_on_timeout: false,
            quiet: false,
        }
    }
}

/// How a wait ended short of a terminal status.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitEnd {
    Terminal,
    TimedOut,
    Interrupted,
}

impl Client {
    pub fn job_url(&self, name: &str) -> String {
        self.ws_url(&format!("/jobs/{name}"))
    }

    pub async fn get_job(&self, name: &str) -> LabResult<Value> {
        self.get(&self.job_url(name)).await
    }

    /// The job; a failed one's error comes from run history (`GET …/runs/{name}`), where
    /// Azure ML keeps it (ARM's job has no error field).
    pub async fn run(&self, name: &str) -> LabResult<AzureRun> {
        let mut r = AzureRun::from_job(&self.get_job(name).await?);
        if r.status == "Failed" && r.error.is_none() {
            if let Ok(url) = self.history_url(&format!("/runs/{name}")).await {
                if let Ok(h) = self.get(&url).await {
                    r.error = h["error"]["error"]["message"]
                        .as_str()
                        .or(h["error"]["message"].as_str())
                        .map(str::to_string);
                }
            }
        }
        Ok(r)
    }

    /// PUTs a body (assets resolved) as job `name`.
    pub async fn put_job(&self, name: &str, body: &mut Value) -> LabResult<AzureRun> {
        self.resolve_assets(body).await?;
        let v = self.put(&self.job_url(name), body).await?;
        Ok(AzureRun::from_job(&v))
    }

    /// Requests cancellation and follows the long-running operation (202 + Location) until
    /// the service accepts it.
    pub async fn cancel(&self, name: &str) -> LabResult<()> {
        let a = self
            .call(
                Method::POST,
                &self.ws_url(&format!("/jobs/{name}/cancel")),
                None,
            )
            .await?;
        if a.status == 202 {
            if let Some(loc) = a.location {
                for _ in 0..60 {
                    let r = self.call(Method::GET, &loc, None).await?;
                    if r.status != 202 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok(())
    }

    /// Every job of the workspace (all pages), optionally of one experiment and statuses.
    pub async fn list_jobs(
        &self,
        experiment: Option<&str>,
        statuses: &[String],
    ) -> LabResult<Vec<AzureRun>> {
        let mut url = self.ws_url("/jobs?listViewType=ActiveOnly");
        let mut out = Vec::new();
        loop {
            let v = self.get(&url).await?;
            for j in v["value"].as_array().into_iter().flatten() {
                let r = AzureRun::from_job(j);
                if experiment.is_some_and(|e| e != r.experiment) {
                    continue;
                }
                if !statuses.is_empty()
                    && !statuses.iter().any(|s| s.eq_ignore_ascii_case(&r.status))
                {
                    continue;
                }
                out.push(r);
            }
            match v["nextLink"].as_str() {
                Some(n) if !n.is_empty() => url = n.to_string(),
                _ => return Ok(out),
            }
        }
    }

    /// The children of a run from run history (all pages, oldest first).
    pub async fn children(&self, parent: &AzureRun) -> LabResult<Vec<AzureRun>> {
        let base = self
            .history_url(&format!("/runs/{}/children", parent.name))
            .await?;
        let mut url = base.clone();
        let mut out = Vec::new();
        loop {
            let v = self.get(&url).await?;
            for c in v["value"].as_array().into_iter().flatten() {
                out.push(AzureRun::from_history(c, &parent.experiment));
            }
            if let Some(n) = v["nextLink"].as_str().filter(|n| !n.is_empty()) {
                url = n.to_string();
            } else if let Some(t) = v["continuationToken"].as_str().filter(|t| !t.is_empty()) {
                url = format!(
                    "{base}?$continuationtoken={}",
                    super::blob::percent_encode(t)
                );
            } else {
                return Ok(out);
            }
        }
    }

    /// Polls until the job is terminal, printing each status change; the timeout clock
    /// starts when the job reaches Running (Queued can last long).
    pub async fn wait(
        &self,
        name: &str,
        o: &WaitOpts,
        interrupted: &(dyn Fn() -> bool + Sync),
        on_status: &(dyn Fn(&AzureRun) + Sync),
    ) -> LabResult<(AzureRun, WaitEnd)> {
        let mut poll = o.poll;
        let mut last = String::new();
        let mut running_since: Option<std::time::Instant> = None;
        loop {
            let r = self.run(name).await?;
            if r.status != last {
                on_status(&r);
                if !o.quiet {
                    let was = if last.is_empty() {
                        String::new()
                    } else {
                        format!("{last} → ")
                    };
                    eprintln!("{name}: {was}{}", r.status);
                }
                if last.is_empty() || r.status == "Running" {
                    poll = o.poll;
                }
                last = r.status.clone();
            }
            if r.is_terminal() {
                return Ok((r, WaitEnd::Terminal));
            }
            if r.status == "Running" && running_since.is_none() {
                running_since = Some(std::time::Instant::now());
            }
            if let (Some(t), Some(s)) = (o.timeout, running_since) {
                if s.elapsed() >= t {
                    if o.cancel_on_timeout {
                        self.cancel(name).await?;
                    }
                    return Ok((r, WaitEnd::TimedOut));
                }
            }
            let step = Duration::from_millis(50).min(poll);
            let until = std::time::Instant::now() + poll;
            while std::time::Instant::now() < until {
                if interrupted() {
                    return Ok((r, WaitEnd::Interrupted));
                }
                tokio::time::sleep(step).await;
            }
            poll = (poll.mul_f64(1.5)).min(o.poll_max);
        }
    }

    /// hi-ml's retry: GET the job, drop what the service sets (status, services, outputs'
    /// system URIs, read-only ids), PUT it under a new name.
    pub async fn rerun(&self, name: &str) -> LabResult<AzureRun> {
        let v = self.get_job(name).await?;
        let mut p = v["properties"].clone();
        let Some(m) = p.as_object_mut() else {
            return Err(LabError::new(
                "azure.api",
                format!("job {name} has no properties"),
            ));
        };
        for k in [
            "status",
            "services",
            "componentId",
            "parentJobName",
            "notificationSetting",
        ] {
            m.remove(k);
        }
        if let Some(Value::Object(outs)) = m.get_mut("outputs") {
            outs.remove("default");
        }
        if let Some(Value::Object(props)) = m.get_mut("properties") {
            props.retain(|k, _| {
                !k.starts_with("azureml.")
                    && !k.starts_with("_azureml")
                    && k != "runTemplate"
                    && k != "best_child_run_id"
                    && !k.starts_with("ContentSnapshotId")
            });
        }
        if let Some(Value::Object(tags)) = m.get_mut("tags") {
            tags.retain(|k, _| !k.starts_with("_aml_system"));
            tags.insert("labhost.rerun_of".into(), name.into());
        }
        let exp = m
            .get("experimentName")
            .and_then(Value::as_str)
            .unwrap_or("Default")
            .to_string();
        let new = new_job_name(&exp);
        let mut body = json!({"properties": p});
        let r = self.put_job(&new, &mut body).await?;
        Ok(r)
    }

    /// Where a run's default artifacts live: (datastore, path prefix without a trailing `/`).
    fn default_artifacts(run: &AzureRun) -> (String, String) {
        let uri = run.outputs["default"]["uri"].as_str().unwrap_or("");
        if let Some((ds, path)) = parse_azureml_uri(uri) {
            return (ds, path.trim_end_matches('/').to_string());
        }
        (
            "workspaceartifactstore".into(),
            format!("ExperimentRun/dcid.{}", run.name),
        )
    }

    /// Downloads every blob under `prefix` of a datastore to `dest` (the prefix stripped).
    pub async fn download_prefix(
        &self,
        datastore: &str,
        prefix: &str,
        dest: &Path,
    ) -> LabResult<Vec<PathBuf>> {
        let ds = self.datastore(Some(datastore)).await?;
        let items = ds.blob.list(prefix).await?;
        let mut out = Vec::new();
        for it in items {
            let Some(rest) = it.name.strip_prefix(prefix) else {
                continue;
            };
            let rest = rest.trim_start_matches('/');
            if rest.is_empty() || rest.split('/').any(|s| s == ".." || s.is_empty()) {
                continue;
            }
            let to = dest.join(rest);
            ds.blob.get_to(&it.name, &to).await?;
            out.push(to);
        }
        Ok(out)
    }

    /// InnerEye `download_run_outputs_by_prefix`: every file under `outputs/<prefix>/` of the
    /// run, saved under `dest` with that prefix stripped (`outputs/foo/bar.csv` →
    /// `dest/bar.csv`; `outputs/foo.txt` is not under `foo/` and is skipped).
    pub async fn download_outputs_by_prefix(
        &self,
        run: &AzureRun,
        prefix: &str,
        dest: &Path,
    ) -> LabResult<Vec<PathBuf>> {
        let (ds, base) = Self::default_artifacts(run);
        let p = prefix.trim_matches('/');
        let full = if p.is_empty() {
            format!("{base}/outputs/")
        } else {
            format!("{base}/outputs/{p}/")
        };
        self.download_prefix(&ds, &full, dest).await
    }

    /// InnerEye `download_run_output_file`: `outputs/<path>` of the run saved as
    /// `dest/<file name>`; returns that path.
    pub async fn download_output_file(
        &self,
        run: &AzureRun,
        path: &str,
        dest: &Path,
    ) -> LabResult<PathBuf> {
        let (ds_name, base) = Self::default_artifacts(run);
        let ds = self.datastore(Some(&ds_name)).await?;
        let blob = format!("{base}/outputs/{}", path.trim_start_matches('/'));
        let name = Path::new(path)
            .file_name()
            .ok_or_else(|| LabError::new("azure.invalid", format!("'{path}' names no file")))?;
        let to = dest.join(name);
        ds.blob.get_to(&blob, &to).await.map_err(|e| {
            LabError::new(
                e.kind.clone(),
                format!(
                    "unable to download file 'outputs/{}' from run {}: {}",
                    path.trim_start_matches('/'),
                    run.name,
                    e.message
                ),
            )
        })?;
        Ok(to)
    }

    /// A named output: its URI when the job has one, else the places Azure puts it
    /// (`azureml/<job>/<name>/`, then `dataset/<job>/<name>/` on the default datastore).
    pub async fn download_named_output(
        &self,
        run: &AzureRun,
        output: &str,
        dest: &Path,
    ) -> LabResult<Vec<PathBuf>> {
        if let Some((ds, path)) = run.outputs[output]["uri"]
            .as_str()
            .and_then(parse_azureml_uri)
        {
            return self
                .download_prefix(&ds, &format!("{}/", path.trim_end_matches('/')), dest)
                .await;
        }
        let ds = self.datastore(None).await?;
        for p in [
            format!("azureml/{}/{output}/", run.name),
            format!("dataset/{}/{output}/", run.name),
        ] {
            let got = self.download_prefix(&ds.name, &p, dest).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Err(LabError::new(
            "azure.not_found",
            format!("run {} has no files for output '{output}'", run.name),
        ))
    }

    /// The MLflow run id of a job: its name, or (on a workspace whose MLflow ids differ) the
    /// run of that name in its experiment.
    async fn mlflow_run(&self, run: &AzureRun) -> LabResult<Value> {
        let ws = self.workspace().await?;
        let base = format!("{}/api/2.0/mlflow", ws.mlflow);
        match self
            .call(
                Method::GET,
                &format!("{base}/runs/get?run_id={}", run.name),
                None,
            )
            .await
        {
            Ok(a) => return Ok(a.body["run"].clone()),
            Err(e)
                if e.kind == "azure.not_found"
                    || e.message.contains("RESOURCE_DOES_NOT_EXIST")
                    || e.message.contains("INVALID_PARAMETER_VALUE") => {}
            Err(e) => return Err(e),
        }
        let exp = self
            .call(
                Method::GET,
                &format!(
                    "{base}/experiments/get-by-name?experiment_name={}",
                    super::blob::percent_encode(&run.experiment)
                ),
                None,
            )
            .await?
            .body;
        let id = exp["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let found = self
            .call(
                Method::POST,
                &format!("{base}/runs/search"),
                Some(&json!({
                    "experiment_ids": [id],
                    "filter": format!("attributes.run_name = '{}'", run.name.replace('\'', "\\'")),
                    "max_results": 1,
                })),
            )
            .await?
            .body;
        found["runs"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| {
                LabError::new(
                    "azure.not_found",
                    format!("the workspace's MLflow has no run for job {}", run.name),
                )
            })
    }

    /// The latest value of each metric a run logged (MLflow `runs/get`).
    pub async fn metrics(&self, run: &AzureRun) -> LabResult<BTreeMap<String, f64>> {
        let r = self.mlflow_run(run).await?;
        Ok(r["data"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some((
                    m["key"].as_str()?.to_string(),
                    m["value"].as_f64().unwrap_or(f64::NAN),
                ))
            })
            .collect())
    }

    /// Every value of one metric, in logging order (MLflow `metrics/get-history`, all pages).
    pub async fn metric_history(&self, run: &AzureRun, key: &str) -> LabResult<Vec<(i64, f64)>> {
        let r = self.mlflow_run(run).await?;
        let id = r["info"]["run_id"]
            .as_str()
            .unwrap_or(&run.name)
            .to_string();
        Ok(self
            .history_of(&id, key)
            .await?
            .into_iter()
            .map(|m| (m.step, m.value))
            .collect())
    }

    /// Every metric's whole history (steps, values, times), for copying a run's results into
    /// the local store.
    pub async fn histories(&self, run: &AzureRun) -> LabResult<Vec<crate::store::Metric>> {
        let r = self.mlflow_run(run).await?;
        let id = r["info"]["run_id"]
            .as_str()
            .unwrap_or(&run.name)
            .to_string();
        let mut out = Vec::new();
        for m in r["data"]["metrics"].as_array().into_iter().flatten() {
            if let Some(key) = m["key"].as_str() {
                out.extend(self.history_of(&id, key).await?);
            }
        }
        Ok(out)
    }

    /// `metrics/get-history` of an MLflow run id, all pages.
    async fn history_of(&self, id: &str, key: &str) -> LabResult<Vec<crate::store::Metric>> {
        let ws = self.workspace().await?;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut url = format!(
                "{}/api/2.0/mlflow/metrics/get-history?run_id={id}&metric_key={}",
                ws.mlflow,
                super::blob::percent_encode(key)
            );
            if !token.is_empty() {
                url.push_str(&format!(
                    "&page_token={}",
                    super::blob::percent_encode(&token)
                ));
            }
            let v = self.call(Method::GET, &url, None).await?.body;
            for m in v["metrics"].as_array().into_iter().flatten() {
                out.push(crate::store::Metric {
                    name: key.to_string(),
                    value: m["value"].as_f64().unwrap_or(f64::NAN),
                    step: m["step"].as_i64().unwrap_or(0),
                    ts: m["timestamp"].as_f64().map(|t| t / 1000.0).unwrap_or(0.0),
                });
            }
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(out),
            }
        }
    }
}

/// `azureml://datastores/<ds>/paths/<p>` (or `…/<ds>/<p>` as `outputs.default` writes it).
pub fn parse_azureml_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("azureml://datastores/")?;
    let (ds, path) = rest.split_once('/')?;
    let path = path.strip_prefix("paths/").unwrap_or(path);
    Some((ds.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_bare_recovery_ids_of_their_experiment() {
        let n = new_job_name("feature/x-y");
        let (e, r) = crate::modules::util::split_recovery_id(&n).unwrap();
        assert_eq!((e.as_str(), r.as_str()), ("feature_x_y", n.as_str()));
    }

    #[test]
    fn runs_read_cross_validation_and_ensemble_tags() {
        let c = AzureRun::from_history(
            &json!({"runId": "p_3", "status": "Completed", "tags": {"hyperparameters": "{\"crossval_index\": \"2\"}"}}),
            "e",
        );
        assert_eq!(c.cross_validation_split_index(), 2);
        assert!(c.is_cross_validation_child_run());
        let p = AzureRun::from_job(
            &json!({"name": "p", "properties": {"jobType": "Sweep", "status": "Running", "experimentName": "e", "tags": {"is_ensemble": "True"}}}),
        );
        assert!(p.is_parent_run() && p.is_ensemble_run() && !p.is_cross_validation_child_run());
        assert_eq!(p.recovery_id, "e:p");
        assert!(tag_values_all_distinct(&[c.clone(), p.clone()], "hyperparameters").is_err());
        assert!(!tag_values_all_distinct(&[c.clone(), c], "hyperparameters").unwrap());
        assert_eq!(
            parse_azureml_uri("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.j"),
            Some((
                "workspaceartifactstore".into(),
                "ExperimentRun/dcid.j".into()
            ))
        );
        assert_eq!(
            parse_azureml_uri("azureml://datastores/ws/paths/a/b/"),
            Some(("ws".into(), "a/b/".into()))
        );
    }
}
