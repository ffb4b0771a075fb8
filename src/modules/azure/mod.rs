//! `azure`: Azure ML jobs from labhost — InnerEye's `azure_runner`, `AzureConfig` and
//! `azure_util` rebuilt on the Azure ML v2 REST API with plain reqwest
//!. The same job YAML or `sweep::Sweep` that runs locally is
//! submitted here; submitted jobs are recorded in the run store (kind remote) so `labhost
//! jobs`, `labhost runs` and reports show local and Azure runs side by side.
//!
//! Layers: [`config`] (settings → `AzureConfig`), [`auth`] (token chain + cache), [`client`]
//! (ARM/data-plane HTTP with retries), [`blob`] (SharedKey/SAS/bearer blob REST), [`body`]
//! (YAML → REST body, pure), [`assets`] (code snapshots, environments, data), [`jobs`]
//! (submit, wait, children, downloads, metrics). This file is the blocking facade scripts and
//! the CLI call.
pub mod assets;
pub mod auth;
pub mod blob;
pub mod body;
pub mod client;
pub mod config;
pub mod inputs;
pub mod jobs;
pub mod pipeline;
pub mod pyyaml;
pub mod rhai;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

pub use client::Client;
pub use config::AzureConfig;
pub use jobs::{AzureRun, WaitEnd, WaitOpts};

use crate::error::{LabError, LabResult};
use crate::modules::sweep::{self, Sweep, SweepDoc};
use crate::store::{NewRun, RunKind, RunStatus};

/// The file hi-ml writes the last submitted run's recovery id to.
pub const RECOVERY_FILE: &str = "most_recent_run.txt";

/// Runs a future to completion from a blocking thread (scripts and the CLI never run on the
/// runtime's workers); Ctrl-C cancels it (`cancelled`), as every other native.
pub fn block<T>(f: impl std::future::Future<Output = LabResult<T>>) -> LabResult<T> {
    crate::runtime::block_on(f)?
}

/// One client per configuration, so tokens and workspace discovery are shared by every call
/// of a process.
pub fn client(req: &config::Request) -> LabResult<Arc<Client>> {
    client_for(config::load(req)?)
}

/// [`client`] for a configuration already read (a submit's, from [`prepare`]).
pub fn client_for(cfg: AzureConfig) -> LabResult<Arc<Client>> {
    static CLIENTS: Mutex<Vec<(AzureConfig, Arc<Client>)>> = Mutex::new(Vec::new());
    let mut c = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, cl)) = c.iter().find(|(k, _)| *k == cfg) {
        return Ok(cl.clone());
    }
    cfg.require_workspace()?;
    let cl = Arc::new(Client::new(cfg.clone()));
    c.push((cfg, cl.clone()));
    Ok(cl)
}

/// What is submitted.
pub enum What {
    /// A command, sweep or pipeline job YAML.
    Path(PathBuf),
    /// A sweep (or command job) object (`sweep::new`, `sweep::load`).
    Sweep(Arc<Sweep>),
}

/// `submit` options.
#[derive(Debug, Clone, Default)]
pub struct SubmitOpts {
    pub config: config::Request,
    /// `--set key=value` overrides of the YAML.
    pub sets: Vec<(String, String)>,
    /// The job name (default: `<experiment>_<unix seconds>_<hex>`).
    pub name: Option<String>,
    /// Extra tags (InnerEye `additional_run_tags`).
    pub tags: BTreeMap<String, String>,
    /// The command line recorded in the tag `commandline_args` (secrets redacted).
    pub commandline: String,
}

/// A job ready to send: its name, body (asset markers unresolved) and configuration.
pub struct Submission {
    pub name: String,
    pub experiment: String,
    pub body: Value,
    pub cfg: AzureConfig,
    pub source: String,
}

/// Builds a job's REST body from a YAML file or a sweep object, with provenance tags. Touches
/// no network.
pub fn prepare(what: &What, o: &SubmitOpts) -> LabResult<Submission> {
    let cfg = config::load(&o.config)?;
    let (doc, source, base, sweep_obj): (SweepDoc, String, PathBuf, Option<Sweep>) = match what {
        What::Path(p) => {
            let f = sweep::read_doc(p, &o.sets)?;
            let s = if f.doc.kind.as_deref() == Some("pipeline") {
                None
            } else {
                Some(f.resolve()?)
            };
            (f.doc, f.source, f.base, s)
        }
        What::Sweep(s) => (
            s.doc.clone(),
            s.source.clone(),
            s.base_dir.clone(),
            Some((**s).clone()),
        ),
    };
    let project = crate::modules::git::root(&base).or_else(|| Some(base.clone()));
    let git = crate::modules::git::info(&base, &Default::default()).ok();
    let experiment = doc
        .experiment_name
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| {
            let branch = git.as_ref().and_then(|g| g.branch.as_deref());
            if cfg.experiment_name.is_empty() && branch.is_none_or(str::is_empty) {
                // azure-ai-ml's default: the working folder's name, else "Default".
                return default_experiment();
            }
            crate::modules::git::experiment_name(Some(cfg.experiment_name.as_str()), branch)
        });
    let mut tags = match &git {
        Some(g) => crate::modules::git::tags(g, &o.commandline, &o.tags),
        None => {
            let mut t: BTreeMap<String, String> = o
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), crate::redact::apply(v)))
                .collect();
            t.insert("build_user".into(), crate::modules::git::whoami());
            t.insert(
                "commandline_args".into(),
                crate::redact::apply(&o.commandline),
            );
            t
        }
    };
    if !cfg.run_recovery_id.is_empty() {
        tags.insert("run_recovery_id".into(), cfg.run_recovery_id.clone());
    }
    let cx = body::BodyCtx {
        cfg: &cfg,
        source: &source,
        base: &base,
        experiment: experiment.clone(),
        tags,
        project,
    };
    // `sweep::new` maps need not say `type: sweep`: a search space says it.
    let kind = doc.kind.clone().unwrap_or_else(|| {
        if sweep_obj.as_ref().is_some_and(|s| !s.single) {
            "sweep".into()
        } else {
            "command".into()
        }
    });
    let body = match (kind.as_str(), &sweep_obj) {
        ("pipeline", _) => pipeline::pipeline_job(&doc, &cx)?,
        ("sweep", Some(s)) => body::sweep_job(&doc, s, &cx)?,
        ("command", _) => {
            if cfg.hyperdrive {
                return Err(LabError::new("azure.invalid", format!("{source}: hyperdrive: true needs a sweep job (type: sweep) — a command job has no search space")));
            }
            body::command_job(&doc, &cx)?
        }
        (other, _) => {
            return Err(LabError::new(
                "azure.invalid",
                format!(
                    "{source}: job type '{other}' cannot be submitted (command, sweep or pipeline)"
                ),
            ))
        }
    };
    let name = match &o.name {
        Some(n) => {
            let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && n.len() <= 255
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(LabError::new("azure.invalid", format!("job name '{n}': letters, digits, - and _ only, starting with a letter or digit, at most 255")));
            }
            n.clone()
        }
        None => doc
            .name
            .clone()
            .unwrap_or_else(|| jobs::new_job_name(&experiment)),
    };
    let mut body = body;
    if body["properties"]["displayName"].is_null() {
        // azure-ai-ml's default display name: the job's name.
        body["properties"]["displayName"] = name.clone().into();
    }
    Ok(Submission {
        name,
        experiment,
        body,
        cfg,
        source,
    })
}

/// azure-ai-ml's experiment when neither the file, the settings nor a git branch name one:
/// the working folder's name without spaces, else `Default`.
fn default_experiment() -> String {
    std::env::current_dir()
        .ok()
        .and_then(|d| d.file_stem().map(|s| s.to_string_lossy().replace(' ', "")))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "Default".into())
}

/// What `--dry-run` prints: every request submit would send, asset steps described, secrets
/// redacted. No network; the workspace settings are required as for a submit (an error
/// naming each missing key and where to set it, not URLs with empty parts).
pub fn dry_run(p: &Submission) -> LabResult<Value> {
    p.cfg.require_workspace()?;
    let ws = p.cfg.workspace_path();
    let mut steps = Vec::new();
    let mut resolved: Vec<(body::Asset, String)> = Vec::new();
    for a in body::assets(&p.body) {
        let (placeholder, desc) = assets::describe(&a, &ws)?;
        steps.push(desc);
        resolved.push((a, placeholder));
    }
    let mut b = p.body.clone();
    body::replace_assets(&mut b, &|a| {
        resolved
            .iter()
            .find(|(x, _)| x == a)
            .map(|(_, v)| v.clone())
    });
    let b = crate::modules::yaml::redact_value(&b);
    steps.push(json!({"request": {
        "method": "PUT",
        "url": format!("{}{ws}/jobs/{}?api-version={}", p.cfg.arm_url, p.name, p.cfg.api_version),
        "body": b,
    }}));
    Ok(json!({"job": p.name, "experiment": p.experiment, "steps": steps}))
}

fn record_key(cfg: &AzureConfig, name: &str) -> String {
    format!(
        "azure:{}/{}/{}/{name}",
        cfg.subscription_id, cfg.resource_group, cfg.workspace_name
    )
}

/// Maps an Azure status to the store's.
pub fn local_status(s: &str) -> RunStatus {
    match s {
        "Completed" => RunStatus::Completed,
        "Failed" | "NotResponding" => RunStatus::Failed,
        "Canceled" => RunStatus::Cancelled,
        "NotStarted" | "Queued" | "Preparing" | "Provisioning" | "Starting" => RunStatus::Running,
        _ => RunStatus::Running,
    }
}

/// Records (or updates) a remote run in the local store: kind remote, tagged with the job
/// name, status, studio URL and recovery id; closed with the mapped status once terminal.
pub fn record(cfg: &AzureConfig, r: &AzureRun, command: &str) -> LabResult<i64> {
    let key = record_key(cfg, &r.name);
    crate::store::with_current(|st| {
        let exp = st.experiment_id(&r.experiment)?;
        let (run, _) = st.open_record(
            &NewRun {
                key: Some(key.clone()),
                experiment_id: Some(exp),
                ..NewRun::record(RunKind::Remote, &r.name, command)
            },
            None,
        )?;
        for (k, v) in [
            ("azureml.job_name", r.name.as_str()),
            ("azureml.status", r.status.as_str()),
            ("azureml.studio_url", r.studio_url.as_str()),
            ("azureml.recovery_id", r.recovery_id.as_str()),
            ("azureml.job_type", r.job_type.as_str()),
            ("azureml.workspace", cfg.workspace_name.as_str()),
        ] {
            if !v.is_empty() {
                st.set_tag(run.id, k, v)?;
            }
        }
        if r.is_terminal() {
            st.close_record(run.id, local_status(&r.status), r.error.as_deref())?;
        }
        Ok(run.id)
    })
}

/// A submitted job: the run as the service answered, and its local record.
pub struct Submitted {
    pub run: AzureRun,
    pub record_id: i64,
    pub recovery_file: Option<PathBuf>,
}

/// Uploads what the body needs, PUTs the job, records it and writes `most_recent_run.txt`
/// (hi-ml's run recovery file) in the working directory.
pub fn submit(p: &Submission, cl: &Client) -> LabResult<Submitted> {
    let mut body = p.body.clone();
    let run = block(cl.put_job(&p.name, &mut body))?;
    let record_id = record(&cl.cfg, &run, &format!("azure submit {}", p.source))?;
    let recovery_file = std::env::current_dir().ok().map(|d| d.join(RECOVERY_FILE));
    if let Some(f) = &recovery_file {
        if let Err(e) = std::fs::write(f, format!("{}\n", run.recovery_id)) {
            tracing::warn!("cannot write {}: {e}", f.display());
        }
    }
    Ok(Submitted {
        run,
        record_id,
        recovery_file,
    })
}

/// Waits for a job, keeping its local record's status current; once it has ended, its
/// results are copied into the store ([`import`]).
pub fn wait(
    cl: &Client,
    name: &str,
    o: &WaitOpts,
    interrupted: &(dyn Fn() -> bool + Sync),
) -> LabResult<(AzureRun, WaitEnd)> {
    let cfg = cl.cfg.clone();
    let on_status = move |r: &AzureRun| {
        if let Err(e) = record(&cfg, r, "") {
            tracing::warn!("cannot record the status of {}: {}", r.name, e.message);
        }
    };
    // Not through `block`: the wait watches Ctrl-C itself (`interrupted`) and ends with
    // `WaitEnd::Interrupted` and the job's last status, which a dropped future would lose.
    let (r, end) = crate::runtime::ctx()
        .rt
        .block_on(cl.wait(name, o, interrupted, &on_status))?;
    if r.is_terminal() {
        if let Err(e) = record(&cl.cfg, &r, "").and_then(|id| import(cl, id, &r)) {
            tracing::warn!(
                "the results of {} were not copied into the local store: {}",
                r.name,
                e.message
            );
        }
    }
    Ok((r, end))
}

/// Copies an ended job's results into the local store once (tag `azureml.imported`), so
/// `labhost report ID`, `labhost runs` and `track::runs` show an Azure sweep as they show a
/// local one: the sweep's objective (params `primary_metric`, `goal`), each child as a
/// finished trial run under the job's record (params = its hyperparameters, tags
/// `azureml.job_name` and `hyperparameters`, metric histories from the workspace's MLflow), a
/// command job's own metric histories. Metrics that cannot be read (no MLflow endpoint) are
/// left out with a warning. Returns how many child runs were copied.
pub fn import(cl: &Client, record_id: i64, run: &AzureRun) -> LabResult<usize> {
    let done = crate::store::with_current(|st| st.tags(record_id))?
        .iter()
        .any(|(k, v)| k == "azureml.imported" && v == "true");
    if done {
        return Ok(0);
    }
    let mut warned = false;
    let mut metrics_of = |r: &AzureRun| -> Vec<crate::store::Metric> {
        match block(cl.histories(r)) {
            Ok(m) => m,
            Err(e) => {
                if !warned {
                    tracing::warn!("metrics of {} not copied: {}", r.name, e.message);
                    warned = true;
                }
                vec![]
            }
        }
    };
    let job = block(cl.get_job(&run.name))?;
    let mut copied = 0;
    if run.is_parent_run() {
        let obj = &job["properties"]["objective"];
        let goal = obj["goal"].as_str().unwrap_or("").to_lowercase();
        let params: Vec<(String, String)> = [
            (
                "primary_metric",
                obj["primaryMetric"].as_str().unwrap_or(""),
            ),
            ("goal", goal.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::store::with_current(|st| st.log_batch(record_id, &[], &params, &[]))?.map_err(
            |k| LabError::new("azure.import", format!("run {record_id} has another {k}")),
        )?;
        for child in block(cl.children(run))? {
            let ms = metrics_of(&child);
            let hp_text = child
                .tags
                .get("hyperparameters")
                .cloned()
                .unwrap_or_default();
            let hp: serde_json::Map<String, Value> =
                serde_json::from_str(&hp_text).unwrap_or_default();
            let n = NewRun {
                parent_id: Some(record_id),
                key: Some(record_key(&cl.cfg, &child.name)),
                params: hp.into_iter().collect(),
                tags: vec![
                    ("azureml.job_name".into(), child.name.clone()),
                    ("azureml.status".into(), child.status.clone()),
                    ("hyperparameters".into(), hp_text),
                ],
                ..NewRun::record(
                    RunKind::Trial,
                    &child.name,
                    &format!("azure child of {}", run.name),
                )
            };
            crate::store::with_current(|st| {
                st.record_finished(&n, local_status(&child.status), &ms)
            })?;
            copied += 1;
        }
    } else {
        let ms = metrics_of(run);
        crate::store::with_current(|st| st.add_metrics(record_id, &ms))?;
    }
    crate::store::with_current(|st| st.set_tag(record_id, "azureml.imported", "true"))?;
    Ok(copied)
}

/// `fetch_run(recovery_id)`: the job of an `experiment:run` (or bare hi-ml) id.
pub fn fetch_run(cl: &Client, recovery_id: &str) -> LabResult<AzureRun> {
    let (exp, name) = crate::modules::util::split_recovery_id(recovery_id)?;
    let r = block(cl.run(&name))?;
    if r.experiment != exp && recovery_id.contains(':') {
        tracing::warn!(
            "run {name} belongs to experiment {}, not {exp}",
            r.experiment
        );
    }
    Ok(r)
}

/// `fetch_child_runs(run, #{status, expected_splits})`: the children (optionally of one
/// status); a count other than `expected_splits` (when > 0) is warned about, as InnerEye does.
pub fn fetch_child_runs(
    cl: &Client,
    run: &AzureRun,
    status: Option<&str>,
    expected_splits: i64,
) -> LabResult<Vec<AzureRun>> {
    let mut kids = block(cl.children(run))?;
    if let Some(s) = status {
        kids.retain(|k| k.status.eq_ignore_ascii_case(s));
    }
    if expected_splits > 0 && kids.len() as i64 != expected_splits {
        tracing::warn!(
            "the expected number of child runs was {expected_splits}; fetched only {}",
            kids.len()
        );
    }
    Ok(kids)
}

/// Per-child downloads for a cross-validation: every child's `outputs/<prefix>/` into
/// `<dest>/<split index>/` (hi-ml `download_files_from_hyperdrive_children`; children with no
/// split index go under their run name).
pub fn download_children_outputs(
    cl: &Client,
    run: &AzureRun,
    prefix: &str,
    dest: &Path,
) -> LabResult<BTreeMap<String, Vec<PathBuf>>> {
    let kids = block(cl.children(run))?;
    let mut out = BTreeMap::new();
    for k in kids {
        let i = k.cross_validation_split_index();
        let folder = if i >= 0 {
            i.to_string()
        } else {
            k.name.clone()
        };
        let got = block(cl.download_outputs_by_prefix(&k, prefix, &dest.join(&folder)))?;
        out.insert(folder, got);
    }
    Ok(out)
}

/// The Azure ML run a script runs in, from the environment Azure ML sets (InnerEye
/// `get_run_context_or_default`), or an offline context when it runs anywhere else.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunContext {
    pub offline: bool,
    pub run_id: String,
    pub experiment: String,
    pub workspace: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub parent_run_id: Option<String>,
    pub mlflow_tracking_uri: Option<String>,
    /// InnerEye `is_running_on_azure_agent`: an Azure DevOps build agent (`AGENT_OS` set).
    pub on_azure_agent: bool,
}

pub fn run_context() -> RunContext {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let on_azure_agent = env("AGENT_OS").is_some();
    match env("AZUREML_RUN_ID") {
        Some(id) => RunContext {
            offline: false,
            run_id: id,
            experiment: env("AZUREML_ARM_PROJECT_NAME")
                .or(env("MLFLOW_EXPERIMENT_NAME"))
                .unwrap_or_default(),
            workspace: env("AZUREML_ARM_WORKSPACE_NAME").unwrap_or_default(),
            subscription_id: env("AZUREML_ARM_SUBSCRIPTION").unwrap_or_default(),
            resource_group: env("AZUREML_ARM_RESOURCEGROUP").unwrap_or_default(),
            parent_run_id: env("AZUREML_ROOT_RUN_ID")
                .filter(|p| Some(p) != env("AZUREML_RUN_ID").as_ref()),
            mlflow_tracking_uri: env("MLFLOW_TRACKING_URI"),
            on_azure_agent,
        },
        None => RunContext {
            offline: true,
            // azureml-core's offline runs are named `OfflineRun_<uuid>`; a labhost job's run
            // id keeps it traceable.
            run_id: format!(
                "OfflineRun_{}",
                env("LABHOST_RUN_ID").unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)))
            ),
            experiment: env("MLFLOW_EXPERIMENT_NAME").unwrap_or_default(),
            workspace: String::new(),
            subscription_id: String::new(),
            resource_group: String::new(),
            parent_run_id: None,
            mlflow_tracking_uri: env("MLFLOW_TRACKING_URI"),
            on_azure_agent,
        },
    }
}

/// InnerEye `is_offline_run_context`.
pub fn is_offline_run_id(id: &str) -> bool {
    id.starts_with("OfflineRun_")
}

/// Jobs of the workspace as rows for `labhost azure runs`.
pub fn runs_table(runs: &[AzureRun]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.job_type.clone(),
                r.status.clone(),
                r.experiment.clone(),
                r.display_name.clone(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_context_when_not_in_azure_ml() {
        let c = run_context();
        if std::env::var("AZUREML_RUN_ID").is_err() {
            assert!(c.offline && is_offline_run_id(&c.run_id));
        }
        assert_eq!(local_status("Canceled"), RunStatus::Cancelled);
        assert_eq!(local_status("NotResponding"), RunStatus::Failed);
        assert_eq!(local_status("Queued"), RunStatus::Running);
    }
}
