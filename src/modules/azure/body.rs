//! Job YAML (Azure's CLI v2 schema, as `sweep::SweepDoc` reads it) → the REST body of
//! `PUT {WS}/jobs/{name}`. Building is pure: what needs the network (a local `code` folder to
//! upload, an inline environment to register, a local input folder, an `@latest` asset) is
//! written as an asset marker string, which `submit` resolves and `--dry-run` describes.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::config::AzureConfig;
use crate::error::{LabError, LabResult};
use crate::modules::sweep::{self, SweepDoc, Trial};

/// Marker prefix of an asset the body needs resolved before it is sent.
pub const MARK: &str = "labhost-asset:";

/// What an asset marker stands for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "asset", rename_all = "snake_case")]
pub enum Asset {
    /// A local folder uploaded as a code snapshot → the code version's ARM id.
    Code { path: PathBuf },
    /// An inline environment registered as an anonymous environment version → its ARM id.
    Environment {
        image: String,
        conda: Option<String>,
    },
    /// An environment built by Azure from a Docker build context: the folder uploaded as
    /// azure-ai-ml uploads it, then an anonymous environment version → its ARM id.
    Build {
        context: PathBuf,
        dockerfile: Option<String>,
    },
    /// `azureml:<name>@latest` → the newest version (`kind`: `environments` or `data`).
    Latest { kind: String, name: String },
    /// A local input folder or file uploaded to the default datastore → its `azureml://` URI.
    Data { path: PathBuf },
    /// A pipeline step's component, registered as an anonymous component version named by
    /// a hash of its spec (a second submit registers nothing new) → its ARM id. The spec's
    /// own markers (code, environment) are resolved first.
    Component { spec: Value },
}

impl Asset {
    pub fn mark(&self) -> String {
        format!(
            "{MARK}{}",
            serde_json::to_string(self).expect("assets serialize")
        )
    }

    pub fn parse(s: &str) -> Option<Asset> {
        serde_json::from_str(s.strip_prefix(MARK)?).ok()
    }
}

/// `azureml:<marker>` (a component's code and environment) or a bare marker.
fn marker_of(s: &str) -> Option<Asset> {
    Asset::parse(s.strip_prefix("azureml:").unwrap_or(s))
}

/// Every asset marker in a body, in order of appearance, without repeats; a component's own
/// markers come before it.
pub fn assets(v: &Value) -> Vec<Asset> {
    fn walk(v: &Value, out: &mut Vec<Asset>) {
        match v {
            Value::String(s) => {
                if let Some(a) = marker_of(s) {
                    if let Asset::Component { spec } = &a {
                        walk(spec, out);
                    }
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// Replaces each asset marker by `f(asset)` (`azureml:<marker>` by `azureml:` + it).
pub fn replace_assets(v: &mut Value, f: &dyn Fn(&Asset) -> Option<String>) {
    match v {
        Value::String(s) => {
            let prefixed = s.starts_with("azureml:");
            if let Some(r) = marker_of(s).and_then(|a| f(&a)) {
                *s = if prefixed { format!("azureml:{r}") } else { r };
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_assets(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| replace_assets(x, f)),
        _ => {}
    }
}

pub(super) fn invalid(source: &str, msg: impl std::fmt::Display) -> LabError {
    LabError::new("azure.invalid", format!("{source}: {msg}"))
}

/// What goes into a body besides the document.
pub struct BodyCtx<'a> {
    pub cfg: &'a AzureConfig,
    /// Where the document came from (errors name it).
    pub source: &'a str,
    /// Relative paths resolve against this folder.
    pub base: &'a Path,
    pub experiment: String,
    /// Provenance and user tags (already redacted).
    pub tags: BTreeMap<String, String>,
    /// The project folder whose `environment.yml` joins an inline environment's conda file.
    pub project: Option<PathBuf>,
}

impl<'a> BodyCtx<'a> {
    /// The same context with paths resolving against `base` (a component or environment
    /// file's folder); tags and provenance stay with the job.
    pub fn at(&self, base: &'a Path) -> BodyCtx<'a> {
        BodyCtx {
            cfg: self.cfg,
            source: self.source,
            base,
            experiment: self.experiment.clone(),
            tags: BTreeMap::new(),
            project: self.project.clone(),
        }
    }
}

/// `5400` seconds → `PT1H30M` (isodate's `duration_isoformat`, which azure-ai-ml sends).
pub fn iso_duration(secs: u64) -> String {
    if secs == 0 {
        return "PT0S".into();
    }
    let (d, rem) = (secs / 86400, secs % 86400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if h + m + s > 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

fn pascal(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Remote as the sweep module reads paths, or an ARM id.
fn is_remote(p: &str) -> bool {
    sweep::is_remote(p) || p.starts_with("/subscriptions/")
}

/// `azureml:<name>@latest` → the name.
fn latest_name(p: &str) -> Option<&str> {
    p.strip_prefix("azureml:")?.strip_suffix("@latest")
}

pub(super) fn input_mode(m: &str, source: &str) -> LabResult<&'static str> {
    Ok(match m {
        "ro_mount" | "mount" => "ReadOnlyMount",
        "rw_mount" => "ReadWriteMount",
        "download" => "Download",
        "direct" => "Direct",
        "eval_mount" => "EvalMount",
        "eval_download" => "EvalDownload",
        other => {
            return Err(invalid(
                source,
                format!("input mode '{other}' is not one of ro_mount, rw_mount, download, direct, eval_mount, eval_download"),
            ))
        }
    })
}

pub(super) fn output_mode(m: &str, source: &str) -> LabResult<&'static str> {
    Ok(match m {
        "rw_mount" | "mount" => "ReadWriteMount",
        "upload" => "Upload",
        "direct" => "Direct",
        other => {
            return Err(invalid(
                source,
                format!("output mode '{other}' is not one of rw_mount, upload, direct"),
            ))
        }
    })
}

const LITERAL_TYPES: &[&str] = &["string", "number", "integer", "boolean"];
pub(super) const DATA_TYPES: &[&str] = &[
    "uri_file",
    "uri_folder",
    "mltable",
    "custom_model",
    "mlflow_model",
    "triton_model",
];

/// `inputs:` → REST inputs (`jobInputType` literal / uri_folder / …).
pub fn inputs(m: &Map<String, Value>, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut out = Map::new();
    for (k, v) in m {
        let rest = match v {
            Value::Null => continue,
            Value::Object(o) => {
                let ty = o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("uri_folder");
                if LITERAL_TYPES.contains(&ty) {
                    match o.get("value").or_else(|| o.get("default")) {
                        Some(x) => {
                            json!({"jobInputType": "literal", "value": sweep::value_text(x)})
                        }
                        None => continue,
                    }
                } else if DATA_TYPES.contains(&ty) {
                    let Some(path) = o.get("path").and_then(Value::as_str) else {
                        return Err(invalid(
                            cx.source,
                            format!("inputs.{k}: a {ty} input needs a path"),
                        ));
                    };
                    let uri = if let Some(name) = latest_name(path) {
                        Asset::Latest {
                            kind: "data".into(),
                            name: name.into(),
                        }
                        .mark()
                    } else if is_remote(path) {
                        arm_asset_id(path, "data", cx)
                    } else {
                        let p = cx.base.join(path);
                        if !p.exists() {
                            return Err(invalid(
                                cx.source,
                                format!("inputs.{k}: local path {} does not exist", p.display()),
                            ));
                        }
                        Asset::Data { path: p }.mark()
                    };
                    let mut r = json!({"jobInputType": ty, "uri": uri});
                    if let Some(mode) = o.get("mode").and_then(Value::as_str) {
                        r["mode"] = input_mode(mode, cx.source)?.into();
                    }
                    r
                } else {
                    return Err(invalid(
                        cx.source,
                        format!(
                            "inputs.{k}: type '{ty}' is not one of {}",
                            [LITERAL_TYPES, DATA_TYPES].concat().join(", ")
                        ),
                    ));
                }
            }
            scalar => json!({"jobInputType": "literal", "value": sweep::value_text(scalar)}),
        };
        out.insert(k.clone(), rest);
    }
    Ok(Value::Object(out))
}

/// `outputs:` → REST outputs.
pub fn outputs(m: &Map<String, Value>, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut out = Map::new();
    for (k, v) in m {
        let mut r = json!({"jobOutputType": "uri_folder"});
        if let Value::Object(o) = v {
            if let Some(t) = o.get("type").and_then(Value::as_str) {
                if !DATA_TYPES.contains(&t) {
                    return Err(invalid(
                        cx.source,
                        format!(
                            "outputs.{k}: type '{t}' is not one of {}",
                            DATA_TYPES.join(", ")
                        ),
                    ));
                }
                r["jobOutputType"] = t.into();
            }
            if let Some(mode) = o.get("mode").and_then(Value::as_str) {
                r["mode"] = output_mode(mode, cx.source)?.into();
            }
            if let Some(p) = o.get("path").and_then(Value::as_str) {
                r["uri"] = p.into();
            }
            if let Some(n) = o.get("name").and_then(Value::as_str) {
                r["assetName"] = n.into();
            }
            if let Some(v) = o.get("version").filter(|v| !v.is_null()) {
                r["assetVersion"] = sweep::value_text(v).into();
            }
        } else if let Value::String(s) = v {
            // `${{parent.outputs.x}}` in a pipeline step: a binding, sent as written.
            r["uri"] = s.clone().into();
        }
        out.insert(k.clone(), r);
    }
    Ok(Value::Object(out))
}

fn distribution(v: &Option<Value>, cfg: &AzureConfig, source: &str) -> LabResult<Value> {
    let Some(Value::Object(d)) = v else {
        // InnerEye's multi-node training: one process per node; Azure's PyTorch
        // distribution sets MASTER_ADDR/MASTER_PORT/NODE_RANK as
        // `set_environment_variables_for_multi_node` did.
        if cfg.num_nodes > 1 {
            return Ok(json!({"distributionType": "PyTorch", "processCountPerInstance": 1}));
        }
        return Ok(Value::Null);
    };
    let n = |k: &str| d.get(k).and_then(Value::as_u64);
    Ok(match d.get("type").and_then(Value::as_str).unwrap_or("") {
        "pytorch" => {
            json!({"distributionType": "PyTorch", "processCountPerInstance": n("process_count_per_instance").unwrap_or(1)})
        }
        "mpi" => {
            json!({"distributionType": "Mpi", "processCountPerInstance": n("process_count_per_instance").unwrap_or(1)})
        }
        "tensorflow" => {
            let mut t = json!({"distributionType": "TensorFlow", "parameterServerCount": n("parameter_server_count").unwrap_or(0)});
            if let Some(w) = n("worker_count") {
                t["workerCount"] = w.into();
            }
            t
        }
        other => {
            return Err(invalid(
                source,
                format!("distribution.type '{other}' is not one of pytorch, mpi, tensorflow"),
            ))
        }
    })
}

/// `resources:` → REST resources, as azure-ai-ml sends them: absent when the file gives none
/// (and the settings ask for no more than one node and no shm size), else with `properties`.
fn resources(v: &Option<Value>, cfg: &AzureConfig, source: &str) -> LabResult<Value> {
    let mut r = Map::new();
    if let Some(v) = v {
        let Value::Object(m) = v else {
            return Err(invalid(source, "resources must be a map"));
        };
        for (k, x) in m {
            let key = match k.as_str() {
                "instance_count" => "instanceCount",
                "instance_type" => "instanceType",
                "shm_size" => "shmSize",
                "docker_args" => "dockerArgs",
                "properties" => "properties",
                "locations" => "locations",
                "max_instance_count" => "maxInstanceCount",
                other => return Err(invalid(source, format!("resources.{other} is not a resources key (instance_count, instance_type, shm_size, docker_args, properties, locations)"))),
            };
            r.insert(key.into(), x.clone());
        }
    }
    if !r.contains_key("instanceCount") && cfg.num_nodes > 1 {
        r.insert("instanceCount".into(), cfg.num_nodes.into());
    }
    if !r.contains_key("shmSize") && !cfg.docker_shm_size.is_empty() {
        r.insert("shmSize".into(), cfg.docker_shm_size.clone().into());
    }
    if r.is_empty() {
        return Ok(Value::Null);
    }
    r.entry("properties").or_insert_with(|| json!({}));
    Ok(Value::Object(r))
}

/// `azureml:<name>:<version>` of `kind` (`environments`, `data`) → its ARM id in the
/// workspace, as azure-ai-ml sends it; anything else unchanged.
fn arm_asset_id(s: &str, kind: &str, cx: &BodyCtx<'_>) -> String {
    match s.strip_prefix("azureml:").and_then(|r| r.split_once(':')) {
        Some((name, ver))
            if !name.is_empty() && !ver.is_empty() && !name.contains('/') && !ver.contains('/') =>
        {
            format!("{}/{kind}/{name}/versions/{ver}", cx.cfg.workspace_path())
        }
        _ => s.to_string(),
    }
}

/// The environment: an `azureml:` reference, an ARM id, or an inline `{image, conda_file}`.
pub(super) fn environment(v: &Option<Value>, cx: &BodyCtx<'_>) -> LabResult<Value> {
    match v {
        None => Err(invalid(cx.source, "environment is required to submit a job to Azure ML (an azureml:<name>:<version> reference, or image + conda_file)")),
        // `@latest` goes as written (curated environments live in the `azureml` registry,
        // not the workspace: the service resolves them, as it does for azure-ai-ml).
        Some(Value::String(s)) if s.starts_with("file:") => environment_file(s, cx),
        Some(Value::String(s)) => Ok(arm_asset_id(s, "environments", cx).into()),
        Some(Value::Object(m)) => {
            if let Some(b) = m.get("build") {
                let Some(path) = b.get("path").and_then(Value::as_str) else {
                    return Err(invalid(cx.source, "environment.build needs `path` (the Docker build context folder)"));
                };
                let context = cx.base.join(path);
                if !context.is_dir() {
                    return Err(invalid(cx.source, format!("environment.build.path: {} is not a folder", context.display())));
                }
                let dockerfile = b.get("dockerfile_path").and_then(Value::as_str).map(str::to_string);
                return Ok(Asset::Build { context, dockerfile }.mark().into());
            }
            let Some(image) = m.get("image").and_then(Value::as_str) else {
                return Err(invalid(cx.source, "an inline environment needs `image`"));
            };
            let conda = match m.get("conda_file") {
                None => None,
                Some(Value::String(p)) => Some(conda_text(&cx.base.join(p), cx)?),
                Some(Value::Object(_)) => {
                    let inline = crate::modules::yaml::dump(m.get("conda_file").unwrap_or(&Value::Null))?;
                    Some(merge_project_conda(&inline, cx)?)
                }
                Some(_) => return Err(invalid(cx.source, "environment.conda_file must be a path or a map")),
            };
            let conda = conda.map(|c| sdk_conda(&c)).transpose()?;
            Ok(Asset::Environment { image: image.into(), conda }.mark().into())
        }
        Some(_) => Err(invalid(cx.source, "environment must be a string or a map")),
    }
}

/// The conda file as azure-ai-ml sends it: parsed, then written by PyYAML with sorted keys
/// (the anonymous environment's version hashes this text).
fn sdk_conda(text: &str) -> LabResult<String> {
    let v = crate::modules::yaml::parse(text, "conda_file")?;
    Ok(super::pyyaml::dump(&v))
}

/// `environment: file:./env.yml`: an environment YAML (image and conda file relative to it),
/// registered as an anonymous environment as azure-ai-ml does.
fn environment_file(s: &str, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let path = cx.base.join(s.trim_start_matches("file:"));
    let text = crate::modules::fs::read(&path)
        .map_err(|e| invalid(cx.source, format!("environment: {}", e.message)))?;
    let v = crate::modules::yaml::parse(&text, &path.display().to_string())?;
    let base = path.parent().unwrap_or(cx.base).to_path_buf();
    let sub = cx.at(&base);
    environment(&Some(v), &sub)
}

fn conda_text(p: &Path, cx: &BodyCtx<'_>) -> LabResult<String> {
    let text = crate::modules::fs::read(p)
        .map_err(|e| invalid(cx.source, format!("environment.conda_file: {}", e.message)))?;
    merge_project_conda(&text, cx)
}

/// InnerEye `get_all_environment_files` + `merge_conda_files`: the project's
/// `environment.yml` (when there is one and it is not the base file itself) joins the base
/// conda file — channels and dependencies in order without repeats, `pip:` lists merged.
fn merge_project_conda(base: &str, cx: &BodyCtx<'_>) -> LabResult<String> {
    let Some(project) = cx.project.as_ref().map(|p| p.join("environment.yml")) else {
        return Ok(base.to_string());
    };
    let Ok(extra) = std::fs::read_to_string(&project) else {
        return Ok(base.to_string());
    };
    if extra == base {
        return Ok(base.to_string());
    }
    let b = crate::modules::yaml::parse(base, "conda_file")?;
    let e = crate::modules::yaml::parse(&extra, &project.display().to_string())?;
    crate::modules::yaml::dump(&merge_conda(&b, &e))
}

/// Two conda environment documents merged (the first one's name wins).
pub fn merge_conda(a: &Value, b: &Value) -> Value {
    fn union(x: &Value, y: &Value) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for v in x
            .as_array()
            .into_iter()
            .flatten()
            .chain(y.as_array().into_iter().flatten())
        {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        out
    }
    let pip = |v: &Value| -> Value {
        v["dependencies"]
            .as_array()
            .and_then(|d| d.iter().find_map(|x| x.get("pip").cloned()))
            .unwrap_or(Value::Array(vec![]))
    };
    let plain = |v: &Value| -> Value {
        Value::Array(
            v["dependencies"]
                .as_array()
                .map(|d| d.iter().filter(|x| !x.is_object()).cloned().collect())
                .unwrap_or_default(),
        )
    };
    let mut deps = union(&plain(a), &plain(b));
    let pips = union(&pip(a), &pip(b));
    if !pips.is_empty() {
        deps.push(json!({"pip": pips}));
    }
    let mut out = Map::new();
    if let Some(n) = a.get("name").or_else(|| b.get("name")) {
        out.insert("name".into(), n.clone());
    }
    let channels = union(&a["channels"], &b["channels"]);
    if !channels.is_empty() {
        out.insert("channels".into(), channels.into());
    }
    out.insert("dependencies".into(), deps.into());
    Value::Object(out)
}

pub(super) fn compute_id(doc_compute: Option<&str>, cx: &BodyCtx<'_>) -> LabResult<Option<String>> {
    let c = doc_compute
        .map(str::to_string)
        .or_else(|| Some(cx.cfg.cluster.clone()).filter(|c| !c.is_empty()));
    Ok(match c {
        None => None,
        Some(c) if c == "local" || c == "azureml:local" => {
            return Err(invalid(cx.source, "compute: local runs on this machine: use `labhost submit --local` (or `labhost sweep`), not Azure ML"))
        }
        Some(c) if c.starts_with("/subscriptions/") => Some(c),
        Some(c) => Some(format!(
            "{}/computes/{}",
            cx.cfg.workspace_path(),
            c.strip_prefix("azureml:").unwrap_or(&c)
        )),
    })
}

pub(super) fn code(c: &Option<String>, cx: &BodyCtx<'_>) -> LabResult<Value> {
    Ok(match c {
        None => Value::Null,
        Some(c) if is_remote(c) => c.clone().into(),
        Some(c) => {
            let p = cx.base.join(c);
            if !p.exists() {
                return Err(invalid(
                    cx.source,
                    format!("code: {} does not exist", p.display()),
                ));
            }
            Asset::Code { path: p }.mark().into()
        }
    })
}

fn identity(v: &Option<Value>, source: &str) -> LabResult<Value> {
    Ok(
        match v
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
        {
            None => Value::Null,
            Some("user_identity") => json!({"identityType": "UserIdentity"}),
            Some("managed") | Some("managed_identity") => json!({"identityType": "Managed"}),
            Some("aml_token") => json!({"identityType": "AMLToken"}),
            Some(o) => {
                return Err(invalid(
                    source,
                    format!("identity.type '{o}' is not one of user_identity, managed, aml_token"),
                ))
            }
        },
    )
}

fn string_map<T: std::fmt::Display>(m: impl IntoIterator<Item = (String, T)>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k, Value::String(v.to_string())))
            .collect(),
    )
}

/// The common fields of every job type.
pub(super) fn base(
    doc: &SweepDoc,
    job_type: &str,
    cx: &BodyCtx<'_>,
) -> LabResult<Map<String, Value>> {
    let mut tags: BTreeMap<String, String> = cx.tags.clone();
    for (k, v) in &doc.tags {
        tags.insert(k.clone(), crate::redact::apply(&sweep::value_text(v)));
    }
    if !cx.cfg.tag.is_empty() {
        tags.insert("tag".into(), cx.cfg.tag.clone());
    }
    let mut m = Map::new();
    m.insert("jobType".into(), job_type.into());
    if let Some(d) = doc.display_name.as_ref().or(doc.name.as_ref()) {
        m.insert("displayName".into(), d.clone().into());
    }
    m.insert("experimentName".into(), cx.experiment.clone().into());
    if let Some(d) = &doc.description {
        m.insert("description".into(), d.clone().into());
    }
    m.insert("tags".into(), string_map(tags));
    m.insert(
        "properties".into(),
        string_map(
            doc.properties
                .iter()
                .map(|(k, v)| (k.clone(), sweep::value_text(v))),
        ),
    );
    if let Some(c) = compute_id(doc.compute.as_deref(), cx)? {
        m.insert("computeId".into(), c.into());
    }
    let id = identity(&doc.identity, cx.source)?;
    if !id.is_null() {
        m.insert("identity".into(), id);
    }
    if let Some(Value::Object(q)) = &doc.queue_settings {
        if let Some(t) = q.get("job_tier").and_then(Value::as_str) {
            m.insert("queueSettings".into(), json!({"jobTier": pascal(t)}));
        }
    }
    m.insert("isArchived".into(), false.into());
    Ok(m)
}

fn env_vars(e: &BTreeMap<String, crate::util::Text>, cfg: &AzureConfig) -> Value {
    let mut m: BTreeMap<String, String> = e.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    if !cfg.pip_extra_index_url.is_empty() {
        m.entry("PIP_EXTRA_INDEX_URL".into())
            .or_insert_with(|| cfg.pip_extra_index_url.clone());
    }
    string_map(m)
}

/// InnerEye `azure_dataset_id` & co. as inputs `INPUT_0`, `INPUT_1`, … (hi-ml's names), each a
/// folder on the datastore, mounted or downloaded, passed to the script as `--INPUT_i=…`.
fn dataset_inputs(cx: &BodyCtx<'_>, inputs: &mut Value, command: &mut String) -> LabResult<()> {
    let sets = cx.cfg.datasets()?;
    for (i, d) in sets.iter().enumerate() {
        let store = if d.datastore.is_empty() {
            "workspaceblobstore"
        } else {
            &d.datastore
        };
        let name = format!("INPUT_{i}");
        inputs[&name] = json!({
            "jobInputType": "uri_folder",
            "uri": format!("azureml://datastores/{store}/paths/{}/", d.name.trim_matches('/')),
            "mode": if d.use_mounting { "ReadOnlyMount" } else { "Download" },
        });
        if !command.contains(&format!("inputs.{name}")) {
            command.push_str(&format!(" --{name}=${{{{inputs.{name}}}}}"));
        }
    }
    Ok(())
}

fn trial_of(doc: &SweepDoc, cx: &BodyCtx<'_>) -> LabResult<Trial> {
    match &doc.trial {
        Some(sweep::TrialField::Inline(t)) => Ok((**t).clone()),
        Some(sweep::TrialField::Path(p)) => sweep::load_component(&cx.base.join(p)),
        None => Err(invalid(cx.source, "a sweep job needs `trial`")),
    }
}

/// A command job's body.
pub fn command_job(doc: &SweepDoc, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut m = base(doc, "Command", cx)?;
    let mut command = doc.command.clone().unwrap_or_default();
    if command.trim().is_empty() {
        return Err(invalid(cx.source, "command is required"));
    }
    let mut ins = inputs(&doc.inputs, cx)?;
    dataset_inputs(cx, &mut ins, &mut command)?;
    m.insert("command".into(), command.into());
    let c = code(&doc.code, cx)?;
    if !c.is_null() {
        m.insert("codeId".into(), c);
    }
    m.insert("environmentId".into(), environment(&doc.environment, cx)?);
    m.insert(
        "environmentVariables".into(),
        env_vars(&doc.environment_variables, cx.cfg),
    );
    m.insert("inputs".into(), ins);
    m.insert("outputs".into(), outputs(&doc.outputs, cx)?);
    m.insert(
        "distribution".into(),
        distribution(&doc.distribution, cx.cfg, cx.source)?,
    );
    m.insert(
        "resources".into(),
        resources(&doc.resources, cx.cfg, cx.source)?,
    );
    let timeout = doc
        .limits
        .as_ref()
        .and_then(|l| l.timeout.as_ref())
        .map(|t| t.0.as_secs())
        .or(cx.cfg.max_run_seconds()?);
    if let Some(t) = timeout {
        m.insert(
            "limits".into(),
            json!({"jobLimitsType": "Command", "timeout": iso_duration(t)}),
        );
    }
    Ok(json!({"properties": m}))
}

/// A sweep job's body (`s` is the validated sweep of the same document).
pub fn sweep_job(doc: &SweepDoc, s: &sweep::Sweep, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut m = base(doc, "Sweep", cx)?;
    let trial = trial_of(doc, cx)?;
    let mut command = trial.command.clone();
    // Sweep inputs over the component's declared defaults.
    let mut ins_doc = Map::new();
    for (k, v) in &trial.inputs {
        if let Some(d) = v.get("default") {
            ins_doc.insert(k.clone(), d.clone());
        }
    }
    for (k, v) in &doc.inputs {
        ins_doc.insert(k.clone(), v.clone());
    }
    let mut ins = inputs(&ins_doc, cx)?;
    dataset_inputs(cx, &mut ins, &mut command)?;
    m.insert("inputs".into(), ins);
    let mut outs = doc.outputs.clone();
    for (k, v) in &trial.outputs {
        outs.entry(k.clone()).or_insert(v.clone());
    }
    m.insert("outputs".into(), outputs(&outs, cx)?);
    let sampling = match &s.algorithm {
        sweep::Algorithm::Grid => json!({"samplingAlgorithmType": "Grid"}),
        sweep::Algorithm::Random { seed, sobol } => {
            let mut r = json!({"samplingAlgorithmType": "Random"});
            if *sobol {
                r["rule"] = "sobol".into();
            }
            if let Some(seed) = seed {
                r["seed"] = (*seed).into();
            }
            r
        }
        sweep::Algorithm::Bayesian { .. } => json!({"samplingAlgorithmType": "Bayesian"}),
    };
    m.insert("samplingAlgorithm".into(), sampling);
    let mut space = Map::new();
    for (name, d) in &s.space.0 {
        space.insert(name.clone(), d.to_rest());
    }
    m.insert("searchSpace".into(), space.into());
    m.insert(
        "objective".into(),
        json!({"goal": if s.maximize { "maximize" } else { "minimize" }, "primaryMetric": s.metric}),
    );
    let l = doc.limits.clone().unwrap_or_default();
    let mut limits = json!({"jobLimitsType": "Sweep", "maxTotalTrials": s.max_total});
    if let Some(c) = l.max_concurrent_trials {
        limits["maxConcurrentTrials"] = c.into();
    }
    if let Some(t) = l.timeout {
        limits["timeout"] = iso_duration(t.0.as_secs()).into();
    } else if let Some(t) = cx.cfg.max_run_seconds()? {
        limits["timeout"] = iso_duration(t).into();
    }
    if let Some(t) = l.trial_timeout {
        limits["trialTimeout"] = iso_duration(t.0.as_secs()).into();
    }
    m.insert("limits".into(), limits);
    let policy = match &s.policy {
        None => Value::Null,
        Some(p) => {
            let mut r = json!({
                "policyType": match p.kind.as_str() {
                    "bandit" => "Bandit",
                    "median_stopping" => "MedianStopping",
                    _ => "TruncationSelection",
                },
                "evaluationInterval": p.evaluation_interval,
                "delayEvaluation": p.delay_evaluation,
            });
            if p.kind == "bandit" {
                // azure-ai-ml sends both, the one not given as 0.
                r["slackFactor"] = p.slack_factor.unwrap_or(0.0).into();
                r["slackAmount"] = p.slack_amount.unwrap_or(0.0).into();
            }
            if let Some(t) = p.truncation_percentage {
                r["truncationPercentage"] = t.into();
            }
            r
        }
    };
    m.insert("earlyTermination".into(), policy);
    let mut t = Map::new();
    t.insert("command".into(), command.into());
    let c = code(&trial.code, cx)?;
    if !c.is_null() {
        t.insert("codeId".into(), c);
    }
    t.insert("environmentId".into(), environment(&trial.environment, cx)?);
    t.insert(
        "environmentVariables".into(),
        env_vars(&trial.environment_variables, cx.cfg),
    );
    t.insert(
        "distribution".into(),
        distribution(&trial.distribution, cx.cfg, cx.source)?,
    );
    let res = resources(&trial.resources, cx.cfg, cx.source)?;
    if !res.is_null() {
        // azure-ai-ml puts the trial's resources on the sweep job as well.
        m.insert("resources".into(), res.clone());
    }
    t.insert("resources".into(), res);
    m.insert("trial".into(), t.into());
    Ok(json!({"properties": m}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_isodate_writes_them() {
        assert_eq!(iso_duration(300), "PT5M");
        assert_eq!(iso_duration(7200), "PT2H");
        assert_eq!(iso_duration(5_184_000), "P60D");
        assert_eq!(iso_duration(93_784), "P1DT2H3M4S");
        assert_eq!(iso_duration(12600), "PT3H30M");
    }

    #[test]
    fn conda_files_merge_channels_dependencies_and_pip() {
        let a = json!({"name": "base", "channels": ["defaults"], "dependencies": ["python=3.9", {"pip": ["torch"]}]});
        let b = json!({"name": "proj", "channels": ["conda-forge", "defaults"], "dependencies": ["python=3.9", "numpy", {"pip": ["torch", "hi-ml"]}]});
        assert_eq!(
            merge_conda(&a, &b),
            json!({"name": "base", "channels": ["defaults", "conda-forge"], "dependencies": ["python=3.9", "numpy", {"pip": ["torch", "hi-ml"]}]})
        );
    }

    #[test]
    fn asset_markers_round_trip_and_are_found_once() {
        let a = Asset::Latest {
            kind: "data".into(),
            name: "cifar".into(),
        };
        let mut v = json!({"x": a.mark(), "y": [a.mark(), "plain"]});
        assert_eq!(assets(&v), vec![a.clone()]);
        replace_assets(&mut v, &|x| {
            (x == &a).then(|| "azureml:cifar:3".to_string())
        });
        assert_eq!(
            v,
            json!({"x": "azureml:cifar:3", "y": ["azureml:cifar:3", "plain"]})
        );
    }
}
