//! `sweep`: Azure ML sweep jobs ("HyperDrive") run locally on the job engine, written as a
//! script (`sweep::new(#{…})`) or as the unchanged CLI v2 YAML (`sweep::load`, `labhost sweep
//! FILE.yml`). One object, [`Sweep`], for both: parsed and validated here with Azure's rules
//!, sampled by `sampler`, judged by `policy`, run by `run`.
pub mod pipeline;
pub mod policy;
pub mod rhai;
pub mod run;
pub mod sampler;
pub mod space;
pub mod study;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LabError, LabResult};
use crate::util::Seconds;
pub use policy::Policy;
pub use sampler::{Params, Space};
pub use space::{Dist, RawDist};

/// Azure's cap on `max_total_trials`.
pub const MAX_TRIALS: u64 = 1000;
/// Azure's default sweep timeout: 60 days.
pub const DEFAULT_TIMEOUT_S: f64 = 5_184_000.0;

/// `sampling_algorithm`: `random` | `grid` | `bayesian`, or `{type, seed, rule}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A string or a map, for `sampling_algorithm` (`"random"` ≡ `{type: random}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SamplingField(pub Sampling);

impl<'de> Deserialize<'de> for SamplingField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SamplingField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"random\", \"grid\", \"bayesian\" or a map with `type`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SamplingField, E> {
                Ok(SamplingField(Sampling {
                    kind: s.to_string(),
                    ..Default::default()
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<SamplingField, A::Error> {
                Sampling::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(SamplingField)
            }
        }
        d.deserialize_any(V)
    }
}

/// `objective`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub goal: String,
    #[serde(alias = "primary_metric_name")]
    pub primary_metric: String,
}

/// `limits` (InnerEye's `max_total_runs` / `max_concurrent_runs` are aliases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(alias = "max_total_runs", skip_serializing_if = "Option::is_none")]
    pub max_total_trials: Option<u64>,
    #[serde(alias = "max_concurrent_runs", skip_serializing_if = "Option::is_none")]
    pub max_concurrent_trials: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secs")]
    pub timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secs")]
    pub trial_timeout: Option<Seconds>,
}

fn secs<S: serde::Serializer>(v: &Option<Seconds>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.0.subsec_nanos() == 0 => s.serialize_u64(x.0.as_secs()),
        Some(x) => s.serialize_f64(x.0.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The trial: a command job (inline), or `./component.yml` (a command component).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_deterministic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    /// A component's input declarations (`{type, default, optional}`), whose defaults apply.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inputs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
    #[serde(default)]
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, crate::util::Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Local: GPUs each trial leases from the job host.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_gpus: u32,
    /// Local: `"host"` (default) or `"docker"` (an inline `environment.image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_in: Option<crate::store::RunIn>,
    /// Local: run a failed trial again up to this many times (default 0: failures are
    /// recorded, not retried, as on Azure).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Local: copy `code` once per sweep into its run folder (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The trial field: inline, or a path to a component YAML (relative to the sweep file).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TrialField {
    Path(String),
    Inline(Box<Trial>),
}

impl<'de> Deserialize<'de> for TrialField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TrialField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map (command, code, environment, …) or the path of a component YAML")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TrialField, E> {
                Ok(TrialField::Path(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<TrialField, A::Error> {
                Trial::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(|t| TrialField::Inline(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A sweep (or command) job document: Azure's CLI v2 YAML schema, and what `sweep::new` takes.
/// Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SweepDoc {
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_settings: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inputs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_algorithm: Option<SamplingField>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub search_space: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_termination: Option<Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial: Option<TrialField>,
    // A command job's own keys (`type: command`): the job is its own single trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, crate::util::Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Value>,
    // A pipeline job's keys (`type: pipeline`): read so the file parses; not run here yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

/// How trials are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    Grid,
    /// `seed: None` → drawn from the OS when the sweep starts, and recorded.
    Random {
        seed: Option<u64>,
        sobol: bool,
    },
    Bayesian {
        seed: Option<u64>,
    },
}

/// A validated sweep: what `run` runs and `azure::submit` will send.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The document as written (after `--set`), for `to_yaml` and the identity.
    pub doc: SweepDoc,
    /// Where it came from: a file path, or `script:<file>` / `repl`.
    pub source: String,
    /// Relative `code` and input paths resolve against this folder.
    pub base_dir: PathBuf,
    pub space: Space,
    pub algorithm: Algorithm,
    pub maximize: bool,
    pub metric: String,
    pub max_total: u64,
    pub max_concurrent: u64,
    pub timeout: std::time::Duration,
    pub trial_timeout: Option<std::time::Duration>,
    pub policy: Option<Policy>,
    /// The trial with a component's fields merged in.
    pub trial: Trial,
    /// Input values (sweep inputs over component defaults), as the command sees them.
    pub inputs: BTreeMap<String, InputValue>,
    pub outputs: Vec<String>,
    /// The outputs of type `uri_file`: a file path (its folder made), not a folder.
    pub file_outputs: Vec<String>,
    /// Notes for the user (an `azureml:` environment recorded, not used locally, …).
    pub notes: Vec<String>,
    /// `type: command`: one trial, no search space.
    pub single: bool,
    /// What each child run is: a trial, or a fold of a cross-validation.
    pub child_kind: crate::store::RunKind,
    /// The compute target the file names (a pipeline step's own, else the pipeline's
    /// default): what the settings' `local_gpus` is keyed by.
    pub compute: Option<String>,
    /// GPUs per trial from the command line (`--gpus-per-trial`), over everything else.
    pub gpus_per_trial: Option<u32>,
}

/// An input as the trial command sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputValue {
    pub text: String,
    /// A remote URI (`azureml:`, `wasbs://`, `https://`): downloaded when the run starts
    /// (see [`inputs`]).
    pub remote: bool,
    /// The declared type (`uri_file`, `uri_folder`, `string`, …), where one is given.
    pub kind: Option<String>,
}

/// Where an error points: a file and its text (positions found by key), or a script call.
pub struct Origin<'a> {
    pub source: &'a str,
    pub text: Option<&'a str>,
}

impl Origin<'_> {
    /// `file:line:col` of the first `needle` in the text, else the source.
    pub fn at(&self, needle: &str) -> String {
        match self.text {
            Some(t) if !needle.is_empty() => crate::modules::yaml::locate(t, self.source, needle),
            _ => self.source.to_string(),
        }
    }

    fn err(&self, needle: &str, msg: impl std::fmt::Display) -> LabError {
        LabError::new("sweep.invalid", format!("{}: {msg}", self.at(needle)))
    }

    /// An error at `key:` inside the block that starts at `anchor` (a search-space
    /// parameter's `type:`), else at the anchor.
    fn err_within(&self, anchor: &str, key: &str, msg: impl std::fmt::Display) -> LabError {
        let pos = self.text.and_then(|t| {
            let i = t.find(anchor)?;
            let j = t[i..].find(&format!("{key}:"))?;
            Some((t, i + j))
        });
        match pos {
            Some((t, p)) => LabError::new(
                "sweep.invalid",
                format!(
                    "{}: {msg}",
                    crate::modules::yaml::locate_at(t, self.source, p)
                ),
            ),
            None => self.err(anchor, msg),
        }
    }
}

/// What the Azure module, which sits above this one, lends local runs: remote inputs
/// (`https://`, `wasbs://`, `abfss://`, `azureml:`) checked and fetched through its clients
/// into the input cache, and GPUs per process for a `compute:` from its settings'
/// `local_gpus`. Lent once when the process starts; unlent, remote inputs reach the command
/// as written and no compute gets GPUs.
pub struct Workspace {
    pub check_inputs: fn(&Sweep) -> LabResult<()>,
    pub localized: fn(&Sweep) -> LabResult<Option<Sweep>>,
    pub gpus_per_process: GpusFor,
}

/// GPUs per process for a compute target, and where that is said.
pub type GpusFor = fn(&str) -> LabResult<Option<(u32, String)>>;

static WORKSPACE: std::sync::OnceLock<Workspace> = std::sync::OnceLock::new();

/// Lends local runs the workspace's services (the first lender counts).
pub fn lend(w: Workspace) {
    let _ = WORKSPACE.set(w);
}

/// Reads a sweep or command job YAML (Azure's schema, unchanged). `sets` are `--set
/// inputs.A=1` style overrides (dotted path = YAML value).
pub fn load(path: &Path, sets: &[(String, String)]) -> LabResult<Sweep> {
    let f = read_doc(path, sets)?;
    f.resolve()
}

/// A job YAML as read, before validation: the document (after `--set`), its text and name,
/// and the folder its relative paths resolve against. A pipeline stops here; a sweep or
/// command job goes on to [`JobFile::resolve`].
pub struct JobFile {
    pub doc: SweepDoc,
    pub text: String,
    pub source: String,
    pub base: PathBuf,
}

/// Reads a job YAML and applies `sets` (see [`load`]).
pub fn read_doc(path: &Path, sets: &[(String, String)]) -> LabResult<JobFile> {
    let mut f = JobFile::read(path)?;
    f.apply(sets, None)?;
    Ok(f)
}

impl JobFile {
    /// Reads and parses a job YAML (unknown keys and wrong types with line:column), once.
    pub fn read(path: &Path) -> LabResult<JobFile> {
        let text = crate::modules::fs::read(path)
            .map_err(|e| LabError::new("sweep.invalid", e.message))?;
        let source = path.display().to_string();
        let doc = parse_doc(&text, &source)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let base = base.canonicalize().unwrap_or(base);
        Ok(JobFile {
            doc,
            text,
            source,
            base,
        })
    }

    /// `type: pipeline`.
    pub fn is_pipeline(&self) -> bool {
        self.doc.kind.as_deref() == Some("pipeline")
    }

    /// Applies `--set KEY=VALUE` overrides, then `--seed` (a sweep's sampling seed, whether
    /// `sampling_algorithm` is a string, a map or left to its default `random`).
    pub fn apply(&mut self, sets: &[(String, String)], seed: Option<u64>) -> LabResult<()> {
        apply_sets(&mut self.doc, sets, &self.source)?;
        let Some(seed) = seed else { return Ok(()) };
        if self.doc.kind.as_deref() != Some("sweep") {
            return Err(LabError::new(
                "sweep.invalid",
                format!(
                    "{}: --seed goes with a sweep job (type: sweep); this is a {} job",
                    self.source,
                    self.doc.kind.as_deref().unwrap_or("command")
                ),
            ));
        }
        self.doc
            .sampling_algorithm
            .get_or_insert_with(|| {
                SamplingField(Sampling {
                    kind: "random".into(),
                    ..Default::default()
                })
            })
            .0
            .seed = Some(seed);
        Ok(())
    }

    /// Validates it with Azure's rules (errors at `file:line:col`).
    pub fn resolve(&self) -> LabResult<Sweep> {
        let origin = Origin {
            source: &self.source,
            text: Some(&self.text),
        };
        resolve(self.doc.clone(), &origin, &self.base)
    }
}

/// Parses YAML text into the document (unknown keys and wrong types with line:column).
pub fn parse_doc(text: &str, source: &str) -> LabResult<SweepDoc> {
    crate::modules::yaml::parse_as(text, source, "sweep.invalid")
}

/// Reads a command component YAML (`trial: ./train.yml`, `component: ./x.yml`).
pub fn load_component(path: &Path) -> LabResult<Trial> {
    let text =
        crate::modules::fs::read(path).map_err(|e| LabError::new("sweep.invalid", e.message))?;
    crate::modules::yaml::parse_as(&text, &path.display().to_string(), "sweep.invalid")
}

/// `--set a.b=v`: the value is read as YAML (`1` a number, `x` a string).
pub fn apply_sets(doc: &mut SweepDoc, sets: &[(String, String)], source: &str) -> LabResult<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut v =
        serde_json::to_value(&*doc).map_err(|e| LabError::new("internal", e.to_string()))?;
    for (path, raw) in sets {
        let val = crate::modules::yaml::parse(raw, "--set")?;
        let mut cur = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, p) in parts.iter().enumerate() {
            let obj = cur.as_object_mut().ok_or_else(|| {
                LabError::new(
                    "sweep.invalid",
                    format!("--set {path}: `{}` is not a map", parts[..i].join(".")),
                )
            })?;
            if i + 1 == parts.len() {
                obj.insert(p.to_string(), val.clone());
                break;
            }
            cur = obj
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    *doc = serde_json::from_value(v)
        .map_err(|e| LabError::new("sweep.invalid", format!("{source}: after --set: {e}")))?;
    Ok(())
}

fn goal_max(goal: &str) -> Option<bool> {
    match goal.to_ascii_lowercase().as_str() {
        "maximize" => Some(true),
        "minimize" => Some(false),
        _ => None,
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// The trial of a document: its own command (a command job) or its `trial:` (inline, or a
/// component file relative to `base`), each with Azure's rules on which keys go where.
fn trial_of(doc: &SweepDoc, o: &Origin<'_>, base: &Path, single: bool) -> LabResult<Trial> {
    Ok(if single {
        for (k, here) in [
            ("trial", doc.trial.is_some()),
            ("search_space", !doc.search_space.is_empty()),
            ("sampling_algorithm", doc.sampling_algorithm.is_some()),
            ("objective", doc.objective.is_some()),
            ("early_termination", doc.early_termination.is_some()),
        ] {
            if here {
                return Err(o.err(
                    &format!("{k}:"),
                    format!("`{k}` goes with type: sweep, not a command job"),
                ));
            }
        }
        let Some(command) = doc.command.clone() else {
            return Err(o.err("", "a command job needs `command`"));
        };
        Trial {
            command,
            code: doc.code.clone(),
            environment: doc.environment.clone(),
            environment_variables: doc.environment_variables.clone(),
            distribution: doc.distribution.clone(),
            resources: doc.resources.clone(),
            ..Default::default()
        }
    } else {
        for (k, here) in [
            ("command", doc.command.is_some()),
            ("code", doc.code.is_some()),
            ("environment", doc.environment.is_some()),
        ] {
            if here {
                return Err(o.err(
                    &format!("{k}:"),
                    format!("a sweep's `{k}` goes under `trial:`"),
                ));
            }
        }
        match doc.trial.clone() {
            None => return Err(o.err("", "a sweep needs `trial` (a command, or ./component.yml)")),
            Some(TrialField::Inline(t)) => *t,
            Some(TrialField::Path(p)) => {
                let path = base.join(&p);
                if !path.is_file() {
                    return Err(o.err(
                        "trial:",
                        format!("trial: component {} does not exist", path.display()),
                    ));
                }
                let mut t = load_component(&path)?;
                // The component's code is relative to the component file.
                if let Some(c) = &t.code {
                    if !is_remote(c) {
                        let d = path.parent().unwrap_or(base).join(c);
                        t.code = Some(d.display().to_string());
                    }
                }
                t
            }
        }
    })
}

/// How a document samples (`sampling_algorithm`, random by default), with Azure's rules on
/// which expressions each algorithm takes.
fn algorithm_of(doc: &SweepDoc, space: &Space, o: &Origin<'_>) -> LabResult<Algorithm> {
    let sampling = doc
        .sampling_algorithm
        .clone()
        .map(|s| s.0)
        .unwrap_or(Sampling {
            kind: "random".into(),
            ..Default::default()
        });
    Ok(match sampling.kind.to_ascii_lowercase().as_str() {
        "grid" => {
            if sampling.seed.is_some() || sampling.rule.is_some() {
                return Err(o.err("sampling_algorithm", "grid sampling takes no seed or rule"));
            }
            if let Some((n, d)) = space.0.iter().find(|(_, d)| !matches!(d, Dist::Choice(_))) {
                return Err(o.err(
                    &format!("{n}:"),
                    format!(
                        "grid sampling needs choice expressions only; `{n}` is {}",
                        d.kind()
                    ),
                ));
            }
            Algorithm::Grid
        }
        "random" => {
            let sobol = match sampling
                .rule
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("random") => false,
                Some("sobol") => true,
                Some(r) => {
                    return Err(o.err(
                        "rule:",
                        format!("`rule` must be random or sobol, got \"{r}\""),
                    ))
                }
            };
            Algorithm::Random {
                seed: sampling.seed,
                sobol,
            }
        }
        "bayesian" => {
            if sampling.rule.is_some() {
                return Err(o.err("rule:", "bayesian sampling takes no rule"));
            }
            if let Some((n, d)) = space.0.iter().find(|(_, d)| !d.bayesian_ok()) {
                return Err(o.err(
                    &format!("{n}:"),
                    format!(
                        "bayesian sampling supports choice, uniform and quniform only; `{n}` is {}",
                        d.kind()
                    ),
                ));
            }
            if doc.early_termination.is_some() {
                return Err(o.err(
                    "early_termination",
                    "bayesian sampling does not support early termination (Azure: use no policy)",
                ));
            }
            Algorithm::Bayesian {
                seed: sampling.seed,
            }
        }
        k => {
            return Err(o.err(
                "sampling_algorithm",
                format!(
                    "`sampling_algorithm` must be random, grid or bayesian, got \"{k}\"{}",
                    crate::util::did_you_mean(k, &["random", "grid", "bayesian"])
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default()
                ),
            ))
        }
    })
}

/// `(maximize, primary metric)` of a document's objective (none for a command job).
fn objective_of(doc: &SweepDoc, single: bool, o: &Origin<'_>) -> LabResult<(bool, String)> {
    Ok(match &doc.objective {
        Some(ob) => {
            let m = goal_max(&ob.goal).ok_or_else(|| {
                o.err(
                    "goal:",
                    format!(
                        "objective.goal must be minimize or maximize, got \"{}\"",
                        ob.goal
                    ),
                )
            })?;
            if ob.primary_metric.trim().is_empty() {
                return Err(o.err("primary_metric", "objective.primary_metric is empty"));
            }
            (m, ob.primary_metric.clone())
        }
        None if single => (false, String::new()),
        None => return Err(o.err("", "a sweep needs `objective: {goal, primary_metric}`")),
    })
}

/// A document's limits, checked.
struct CheckedLimits {
    max_total: u64,
    max_concurrent: u64,
    timeout: std::time::Duration,
    trial_timeout: Option<std::time::Duration>,
}

/// A document's `limits` (and `early_termination`) with Azure's bounds.
fn limits_of(doc: &SweepDoc, o: &Origin<'_>) -> LabResult<CheckedLimits> {
    let lim = doc.limits.clone().unwrap_or_default();
    let max_total = lim.max_total_trials.unwrap_or(MAX_TRIALS);
    if !(1..=MAX_TRIALS).contains(&max_total) {
        return Err(o.err(
            "max_total_trials",
            format!("limits.max_total_trials must be 1 to {MAX_TRIALS}, got {max_total}"),
        ));
    }
    let max_concurrent = lim.max_concurrent_trials.unwrap_or(max_total);
    if max_concurrent == 0 {
        return Err(o.err(
            "max_concurrent_trials",
            "limits.max_concurrent_trials must be at least 1",
        ));
    }
    let timeout = lim
        .timeout
        .map(|s| s.0)
        .unwrap_or(std::time::Duration::from_secs_f64(DEFAULT_TIMEOUT_S));
    if timeout.is_zero() {
        return Err(o.err("timeout", "limits.timeout must be more than 0"));
    }
    if lim.trial_timeout.is_some_and(|t| t.0.is_zero()) {
        return Err(o.err("trial_timeout", "limits.trial_timeout must be more than 0"));
    }
    let trial_timeout = lim.trial_timeout.map(|s| s.0);
    if let Some(p) = &doc.early_termination {
        p.validate()
            .map_err(|e| o.err("early_termination", format!("early_termination: {e}")))?;
    }
    Ok(CheckedLimits {
        max_total,
        max_concurrent,
        timeout,
        trial_timeout,
    })
}

/// Every `${{…}}` binding in the trial's command names a search-space parameter, an input
/// or an output.
fn check_bindings(
    command: &str,
    space: &Space,
    inputs: &BTreeMap<String, InputValue>,
    outputs: &[String],
    o: &Origin<'_>,
) -> LabResult<()> {
    for b in bindings(command) {
        let ok = match b.split_once('.') {
            Some(("search_space", n)) => space.0.iter().any(|(x, _)| x == n),
            // A component's inputs named like search-space parameters take their values
            // (how Azure feeds a sweep step's parameters to its component).
            Some(("inputs", n)) => inputs.contains_key(n) || space.0.iter().any(|(x, _)| x == n),
            Some(("outputs", n)) => outputs.iter().any(|x| x == n),
            // The job's own name (each trial's run name here).
            None => b == "name",
            _ => false,
        };
        if !ok {
            let what = match b.split_once('.') {
                Some(("search_space", n)) => format!("`{n}` is not in search_space"),
                Some(("inputs", n)) => format!("`{n}` is not an input"),
                Some(("outputs", n)) => format!("`{n}` is not an output"),
                _ => {
                    "bindings are ${{search_space.X}}, ${{inputs.X}}, ${{outputs.X}} and ${{name}}"
                        .into()
                }
            };
            return Err(o.err(
                &format!("${{{{{b}}}}}"),
                format!("unknown binding ${{{{{b}}}}}: {what}"),
            ));
        }
    }
    Ok(())
}

/// Validates a document with Azure's rules and resolves it (component file, inputs, space).
pub fn resolve(doc: SweepDoc, o: &Origin<'_>, base: &Path) -> LabResult<Sweep> {
    let kind = doc.kind.clone().unwrap_or_else(|| {
        if doc.trial.is_some() || !doc.search_space.is_empty() {
            "sweep".into()
        } else {
            "command".into()
        }
    });
    let mut notes = Vec::new();
    let single = match kind.as_str() {
        "sweep" => false,
        "command" => true,
        "pipeline" => {
            return Err(o.err("type:", "a pipeline job is not a sweep: run it with `labhost sweep FILE` or `labhost submit FILE --local`"))
        }
        k => return Err(o.err("type:", format!("`type` must be sweep or command, got \"{k}\""))),
    };
    let mut trial = trial_of(&doc, o, base, single)?;
    if trial.command.trim().is_empty() {
        return Err(o.err("command:", "the trial needs a `command`"));
    }
    if trial.kind.as_deref().is_some_and(|k| k != "command") {
        return Err(o.err("type:", "a trial must be a command (component)"));
    }
    let space = parse_space(&doc.search_space, o)?;
    if !single && space.0.is_empty() {
        return Err(o.err("search_space", "a sweep needs a non-empty `search_space`"));
    }
    let algorithm = algorithm_of(&doc, &space, o)?;
    let (maximize, metric) = objective_of(&doc, single, o)?;
    let limits = limits_of(&doc, o)?;
    // Inputs: sweep inputs over the component's defaults.
    let mut inputs = BTreeMap::new();
    let declared = |k: &str| {
        let d = trial.inputs.get(k)?.get("type")?.as_str()?;
        Some(d.to_string())
    };
    for (k, decl) in &trial.inputs {
        if let Some(def) = decl.get("default") {
            inputs.insert(k.clone(), input_value(def, base));
        }
    }
    for (k, v) in &doc.inputs {
        inputs.insert(k.clone(), input_value(v, base));
    }
    for (k, v) in inputs.iter_mut() {
        v.kind = v.kind.take().or_else(|| declared(k));
        if v.remote {
            notes.push(format!(
                "input `{k}` is remote ({}): downloaded when the run starts (once, into the input cache) and handed over as a local path",
                v.text
            ));
        }
    }
    let mut outputs: Vec<String> = doc.outputs.keys().cloned().collect();
    for k in trial.outputs.keys() {
        if !outputs.contains(k) {
            outputs.push(k.clone());
        }
    }
    check_bindings(&trial.command, &space, &inputs, &outputs, o)?;
    let file_outputs: Vec<String> = outputs
        .iter()
        .filter(|n| {
            doc.outputs
                .get(*n)
                .or_else(|| trial.outputs.get(*n))
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                == Some("uri_file")
        })
        .cloned()
        .collect();
    match &trial.environment {
        Some(Value::String(e)) => notes.push(format!(
            "environment {e} is recorded, not used: trials run on this host's own environment"
        )),
        Some(Value::Object(m)) if m.contains_key("image") && trial.run_in != Some(crate::store::RunIn::Docker) => {
            notes.push(format!(
                "environment image {} is recorded; trials run on the host (run_in: docker runs them in it)",
                m["image"].as_str().unwrap_or("?")
            ))
        }
        _ => {}
    }
    if trial.run_in == Some(crate::store::RunIn::Docker)
        && trial
            .environment
            .as_ref()
            .is_none_or(|e| e.get("image").is_none())
    {
        return Err(o.err(
            "run_in",
            "run_in: docker needs an inline `environment: {image: …}`",
        ));
    }
    if let Some(Value::String(c)) = trial.code.as_ref().map(|c| Value::String(c.clone())) {
        if is_remote(&c) {
            return Err(o.err(
                "code:",
                format!("code {c} is remote: a local sweep needs a local folder"),
            ));
        }
    }
    trial.snapshot = trial.snapshot.or(Some(true));
    let compute = doc.compute.clone();
    Ok(Sweep {
        doc,
        source: o.source.to_string(),
        base_dir: base.to_path_buf(),
        space,
        algorithm,
        maximize,
        metric,
        max_total: if single { 1 } else { limits.max_total },
        max_concurrent: limits.max_concurrent,
        timeout: limits.timeout,
        trial_timeout: limits.trial_timeout,
        policy: None,
        trial,
        inputs,
        outputs,
        file_outputs,
        notes,
        single,
        child_kind: crate::store::RunKind::Trial,
        compute,
        gpus_per_trial: None,
    }
    .with_policy())
}

/// InnerEye's cross-validation parameter (hi-ml `create_crossval_hyperparam_args_v2`).
pub const CV_INDEX: &str = "cross_validation_split_index";
/// InnerEye's argument naming the number of folds.
pub const CV_SPLITS: &str = "number_of_cross_validation_splits";

/// A cross-validation as InnerEye runs it on Azure: a grid sweep over `choice(0..splits)` of
/// `cross_validation_split_index`, every fold a child run (kind fold) given
/// `--cross_validation_split_index=i --number_of_cross_validation_splits=N` (and the same as
/// environment variables `CROSS_VALIDATION_SPLIT_INDEX`, `NUMBER_OF_CROSS_VALIDATION_SPLITS`).
pub fn cross_validation(
    trial: Trial,
    splits: u32,
    primary_metric: &str,
    max_concurrent: Option<u64>,
    base: &Path,
    source: &str,
) -> LabResult<Sweep> {
    if splits < 2 {
        return Err(LabError::new(
            "sweep.invalid",
            format!("{source}: splits must be at least 2, got {splits}"),
        ));
    }
    let mut t = trial;
    t.command = format!(
        "{} --{CV_INDEX}=${{{{search_space.{CV_INDEX}}}}} --{CV_SPLITS}={splits}",
        t.command.trim_end()
    );
    t.environment_variables.insert(
        "NUMBER_OF_CROSS_VALIDATION_SPLITS".into(),
        crate::util::Text(splits.to_string()),
    );
    let mut space = Map::new();
    space.insert(
        CV_INDEX.into(),
        serde_json::json!({"type": "choice", "values": (0..splits).collect::<Vec<_>>()}),
    );
    let doc = SweepDoc {
        kind: Some("sweep".into()),
        display_name: Some("cross_validation".into()),
        trial: Some(TrialField::Inline(Box::new(t))),
        sampling_algorithm: Some(SamplingField(Sampling {
            kind: "grid".into(),
            ..Default::default()
        })),
        search_space: space,
        objective: Some(Objective {
            goal: "minimize".into(),
            primary_metric: primary_metric.into(),
        }),
        limits: Some(Limits {
            max_total_trials: Some(u64::from(splits)),
            max_concurrent_trials: Some(max_concurrent.unwrap_or(u64::from(splits))),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut s = resolve(doc, &Origin { source, text: None }, base)?;
    s.child_kind = crate::store::RunKind::Fold;
    Ok(s)
}

/// A search space from its map form (`name → {type, …}`), in the map's order.
pub fn parse_space(m: &Map<String, Value>, o: &Origin<'_>) -> LabResult<Space> {
    let mut space = Vec::new();
    for (name, v) in m {
        if !valid_name(name) {
            return Err(o.err(&format!("{name}:"), format!("search_space: `{name}` is not a valid parameter name (letters, digits, _; not starting with a digit)")));
        }
        let raw: RawDist = serde_json::from_value(v.clone()).map_err(|e| {
            o.err(
                &format!("{name}:"),
                format!("search_space.{name}: {}", words(&e.to_string())),
            )
        })?;
        let d = raw.to_dist().map_err(|e| {
            // A bad type points at its own line (where the did-you-mean applies).
            let msg = format!("search_space.{name}: {e}");
            match e.to_string().starts_with("`type`") {
                true => o.err_within(&format!("{name}:"), "type", msg),
                false => o.err(&format!("{name}:"), msg),
            }
        })?;
        space.push((name.clone(), d));
    }
    Ok(Space(space))
}

impl Sweep {
    fn with_policy(mut self) -> Self {
        self.policy = self.doc.early_termination.clone();
        self
    }

    /// The sweep as Azure's YAML (what `sweep::load` reads back to the same sweep).
    pub fn to_yaml(&self) -> LabResult<String> {
        let mut doc = self.doc.clone();
        if !self.single && doc.kind.is_none() {
            doc.kind = Some("sweep".into());
        }
        let v = serde_json::to_value(&doc).map_err(|e| LabError::new("internal", e.to_string()))?;
        crate::modules::yaml::dump(&crate::modules::yaml::redact_value(&v))
    }

    /// How many trials the sweep plans: `max_total_trials`, or the grid if smaller.
    pub fn planned(&self) -> u64 {
        match self.algorithm {
            Algorithm::Grid => self.space.grid_size().unwrap_or(0).min(self.max_total),
            _ => self.max_total,
        }
    }

    /// What running the sweep here needs besides a valid document — its `code:` folder, and
    /// remote inputs it can read (see [`Workspace`]) — checked the same way by
    /// `--dry-run` and the run, the error pointing at the key.
    pub fn check_local(&self) -> LabResult<()> {
        if let Some(w) = WORKSPACE.get() {
            (w.check_inputs)(self)?;
        }
        self.local_gpus()?;
        let Some(code) = self.trial.code.as_deref().filter(|c| !c.contains(':')) else {
            return Ok(());
        };
        let dir = self.base_dir.join(code);
        if dir.is_dir() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.source).ok();
        let o = Origin {
            source: &self.source,
            text: text.as_deref(),
        };
        Err(o.err(
            "code:",
            format!("the code folder {} does not exist", dir.display()),
        ))
    }

    /// GPUs each trial leases on this machine, and what said so: `--gpus-per-trial`, else
    /// the file's local key `num_gpus`, else the settings' `local_gpus` entry for the job's
    /// `compute:` (GPUs per process × the distribution's processes), else none.
    pub fn local_gpus(&self) -> LabResult<(u32, Option<String>)> {
        if let Some(n) = self.gpus_per_trial {
            return Ok((n, Some(format!("--gpus-per-trial {n}"))));
        }
        if self.trial.num_gpus > 0 {
            let n = self.trial.num_gpus;
            return Ok((n, Some(format!("num_gpus: {n} in the file"))));
        }
        let lent = WORKSPACE.get().zip(self.compute.as_deref());
        let Some((per, mut why)) = lent
            .map(|(w, c)| (w.gpus_per_process)(c))
            .transpose()?
            .flatten()
        else {
            return Ok((0, None));
        };
        let procs = crate::modules::jobs::launch::Layout::of(
            self.trial.distribution.as_ref(),
            self.trial.resources.as_ref(),
        )
        .map_or(1, |l| l.ranks());
        why.push_str(&format!(": {per} per process"));
        if procs > 1 {
            why.push_str(&format!(" × {procs} processes"));
        }
        Ok((per * procs, Some(why)))
    }

    /// The sweep with its remote inputs fetched and replaced by local paths (see
    /// [`Workspace`]); `None` when nothing changes.
    pub fn localized(&self) -> LabResult<Option<Sweep>> {
        match WORKSPACE.get() {
            Some(w) if self.inputs.values().any(|v| v.remote) => (w.localized)(self),
            _ => Ok(None),
        }
    }

    /// The sweep's identity: its resolved document and where it came from. Running the same
    /// file or script again continues the same sweep.
    pub fn identity(&self) -> String {
        let doc = serde_json::to_string(&self.doc).unwrap_or_default();
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.text))
            .collect();
        // The file itself, however its path is spelt (relative, absolute, through a
        // symlink): a sweep is what the file says, wherever it is run from.
        let source = std::fs::canonicalize(&self.source)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| self.source.clone());
        crate::util::fnv(&format!("{}\n{}\n{}", source, doc, inputs.join("\n")))
    }

    /// The trial command with `${{search_space.X}}`, `${{inputs.X}}` and `${{outputs.X}}`
    /// substituted verbatim, as Azure does (outputs are folders in the trial's run folder).
    pub fn command_for(&self, params: &Params) -> String {
        let mut out = String::new();
        let mut rest = self.trial.command.as_str();
        while let Some(i) = rest.find("${{") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 3..];
            let Some(j) = after.find("}}") else {
                out.push_str(&rest[i..]);
                rest = "";
                break;
            };
            let b = after[..j].trim();
            let val = match b.split_once('.') {
                Some(("search_space", n)) => params.get(n).map(value_text),
                Some(("inputs", n)) => params
                    .get(n)
                    .map(value_text)
                    .or_else(|| self.inputs.get(n).map(|v| v.text.clone())),
                Some(("outputs", n)) => Some(format!("\"$LABHOST_RUN_DIR/outputs/{n}\"")),
                _ => None,
            };
            // Verbatim, as Azure substitutes (a command that quotes `'${{…}}'` itself works).
            match val {
                Some(v) => out.push_str(&v),
                None => out.push_str(&rest[i..i + 3 + j + 2]),
            }
            rest = &after[j + 2..];
        }
        out.push_str(rest);
        let out = self.launched(out);
        let used: Vec<&String> = self
            .outputs
            .iter()
            .filter(|n| self.trial.command.contains(&format!("outputs.{n}")))
            .collect();
        if used.is_empty() {
            return out;
        }
        // Azure makes output folders (a `uri_file` output's folder) before the command runs.
        let dirs: Vec<String> = used
            .iter()
            .map(|n| {
                if self.file_outputs.contains(n) {
                    "\"$LABHOST_RUN_DIR/outputs\"".to_string()
                } else {
                    format!("\"$LABHOST_RUN_DIR/outputs/{n}\"")
                }
            })
            .collect();
        format!("mkdir -p {} && {out}", dirs.join(" "))
    }

    /// A trial with a `distribution:` of more than one process runs as its ranks, one job to
    /// the engine: under the real `mpirun` for `mpi` when installed, else labhost's launcher
    /// (`labhost launch`); in a container (whose image has no labhost) under a shell script.
    fn launched(&self, cmd: String) -> String {
        let layout = crate::modules::jobs::launch::Layout::of(
            self.trial.distribution.as_ref(),
            self.trial.resources.as_ref(),
        );
        let Some(l) = layout else {
            return cmd;
        };
        // In a container: the ranks under a shell script (the image has no labhost).
        if self.trial.run_in == Some(crate::store::RunIn::Docker) {
            return match l.container_script(&cmd) {
                Ok(script) => script,
                Err(e) => format!("echo {} >&2; exit 1", crate::util::shell_quote(&e.message)),
            };
        }
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        // An MPI job under the real mpirun when one is installed (as Azure ML launches it):
        // all ranks on this machine, one job to the engine; mpirun stops the world when a
        // rank fails.
        if let Some(mpirun) = (l.kind == "mpi").then(crate::config::mpirun).flatten() {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            return format!(
                "exec {} -np {} --oversubscribe{} sh -c {}",
                q(&mpirun.display().to_string()),
                l.ranks(),
                if root { " --allow-run-as-root" } else { "" },
                q(&cmd)
            );
        }
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "labhost".into());
        let args: Vec<String> = l.args().iter().map(|a| q(a)).collect();
        format!(
            "exec {} launch {} -- sh -c {}",
            q(&exe),
            args.join(" "),
            q(&cmd)
        )
    }
}

/// The text a value has on a command line (strings bare, numbers as JSON writes them).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// A path that names something in Azure or on the web (`azureml:…`, `wasbs://…`,
/// `https://…`), not a local file.
pub fn is_remote(p: &str) -> bool {
    p.starts_with("azureml:") || p.contains("://")
}

pub(super) fn input_value(v: &Value, base: &Path) -> InputValue {
    let (text, remote) = match v {
        Value::Object(m) => {
            let p = m
                .get("path")
                .or_else(|| m.get("value"))
                .or_else(|| m.get("default"))
                .map(value_text)
                .unwrap_or_default();
            if is_remote(&p) {
                (p, true)
            } else if m.contains_key("path") {
                let p = p.strip_prefix("file:").unwrap_or(&p);
                (base.join(p).display().to_string(), false)
            } else {
                (p, false)
            }
        }
        other => (value_text(other), false),
    };
    InputValue {
        text,
        remote,
        kind: v.get("type").and_then(Value::as_str).map(str::to_string),
    }
}

/// The `${{…}}` bindings of a command, in order.
pub fn bindings(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cmd;
    while let Some(i) = rest.find("${{") {
        let after = &rest[i + 3..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim().to_string());
        rest = &after[j + 2..];
    }
    out
}

/// serde's words → ours ("unknown field `x`, expected one of …" → "unknown key `x` …").
fn words(e: &str) -> String {
    if let Some(rest) = e.strip_prefix("unknown field `") {
        if let Some((name, _)) = rest.split_once('`') {
            let keys = [
                "type",
                "values",
                "upper",
                "min_value",
                "max_value",
                "mu",
                "sigma",
                "q",
            ];
            return format!(
                "unknown key `{name}`{}",
                crate::util::did_you_mean(name, &keys)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_else(|| format!(" (keys: {})", keys.join(", ")))
            );
        }
    }
    if e.starts_with("missing field `type`") {
        return "needs `type` (choice, randint, uniform, …)".into();
    }
    e.replace("invalid type: ", "").replace("field", "key")
}

#[cfg(test)]
mod tests;
