//! A pipeline job's body as azure-ai-ml sends it: every step becomes an anonymous component
//! version (registered before the job, named by a hash of its spec) and a node in the
//! pipeline node format (`type`, `componentId`, snake_case keys, `${{parent.…}}` bindings as
//! literal values); the component's inputs and outputs take their types from what they bind
//! to. Checked field by field against the SDK by tests/azure_sdk.
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::body::{self, Asset, BodyCtx, DATA_TYPES};
use crate::error::LabResult;
use crate::modules::sweep::{self, SweepDoc};

/// The pipeline job's body.
pub fn pipeline_job(doc: &SweepDoc, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut m = body::base(doc, "Pipeline", cx)?;
    m.insert("inputs".into(), body::inputs(&doc.inputs, cx)?);
    m.insert("outputs".into(), body::outputs(&doc.outputs, cx)?);
    m.insert("settings".into(), settings(doc, cx)?);
    let Some(Value::Object(jobs)) = &doc.jobs else {
        return Err(body::invalid(
            cx.source,
            "a pipeline needs `jobs:`, a map of steps",
        ));
    };
    let p = Parent { doc, jobs };
    let mut nodes = Map::new();
    for (name, step) in jobs {
        let Value::Object(step) = step else {
            return Err(body::invalid(
                cx.source,
                format!("jobs.{name} must be a map"),
            ));
        };
        let node = match step
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("command")
        {
            "command" => command_node(name, step, &p, cx)?,
            "sweep" => sweep_node(name, step, &p, cx)?,
            other => {
                return Err(body::invalid(
                    cx.source,
                    format!("jobs.{name}: step type '{other}' is not one of command, sweep"),
                ))
            }
        };
        nodes.insert(name.clone(), node);
    }
    m.insert("jobs".into(), nodes.into());
    Ok(json!({"properties": m}))
}

/// `settings:` with the compute and datastore as ARM ids.
fn settings(doc: &SweepDoc, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let mut out = Map::new();
    if let Some(Value::Object(s)) = &doc.settings {
        for (k, v) in s {
            let v = match (k.as_str(), v) {
                ("default_compute", Value::String(c)) => body::compute_id(Some(c), cx)?
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                ("default_datastore", Value::String(d)) if !d.starts_with("/subscriptions/") => {
                    format!(
                        "{}/datastores/{}",
                        cx.cfg.workspace_path(),
                        d.strip_prefix("azureml:").unwrap_or(d)
                    )
                    .into()
                }
                _ => v.clone(),
            };
            out.insert(k.clone(), v);
        }
    }
    out.insert("_source".into(), "YAML.JOB".into());
    Ok(Value::Object(out))
}

/// The pipeline's inputs and outputs and its steps: what a binding's type comes from.
struct Parent<'a> {
    doc: &'a SweepDoc,
    jobs: &'a Map<String, Value>,
}

impl Parent<'_> {
    /// The component input a binding (`${{parent.inputs.x}}`,
    /// `${{parent.jobs.s.outputs.y}}`) stands for: its type.
    fn binding_type(&self, b: &str, cx: &BodyCtx<'_>) -> Option<Value> {
        let inner = b.trim().strip_prefix("${{")?.strip_suffix("}}")?.trim();
        let parts: Vec<&str> = inner.split('.').collect();
        match parts.as_slice() {
            ["parent", "inputs", x] => Some(match self.doc.inputs.get(*x)? {
                Value::Object(o) => {
                    json!({"type": o.get("type").and_then(Value::as_str).unwrap_or("uri_folder")})
                }
                scalar => json!({"type": literal_type(scalar)}),
            }),
            ["parent", "jobs", step, "outputs", y] => {
                let s = self.jobs.get(*step)?;
                let declared = s
                    .get("outputs")
                    .and_then(|o| o.get(*y))
                    .cloned()
                    .or_else(|| {
                        // A step from a component file declares its outputs there.
                        let c = s.get("component").or_else(|| s.get("trial"))?.as_str()?;
                        let (comp, _) = component_file(c, cx).ok()?;
                        comp.get("outputs")?.get(*y).cloned()
                    });
                let ty = declared
                    .as_ref()
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("uri_folder");
                Some(json!({"type": ty}))
            }
            _ => None,
        }
    }

    /// A step output bound to `${{parent.outputs.x}}`: the pipeline output's type and mode.
    fn output_of(&self, b: &str) -> Option<Value> {
        let inner = b.trim().strip_prefix("${{")?.strip_suffix("}}")?.trim();
        let x = inner.strip_prefix("parent.outputs.")?;
        let o = self.doc.outputs.get(x)?;
        let mut r = json!({"type": o.get("type").and_then(Value::as_str).unwrap_or("uri_folder")});
        if let Some(mode) = o.get("mode").filter(|m| m.is_string()) {
            r["mode"] = mode.clone();
        }
        Some(r)
    }
}

/// Python's type name of a YAML scalar, as the SDK infers a component input's type.
fn literal_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        _ => "string",
    }
}

fn is_binding(s: &str) -> bool {
    s.trim_start().starts_with("${{")
}

/// A step's `inputs:` → (node inputs, component inputs).
fn step_inputs(
    m: Option<&Value>,
    p: &Parent<'_>,
    cx: &BodyCtx<'_>,
) -> LabResult<(Map<String, Value>, Map<String, Value>)> {
    let (mut node, mut comp) = (Map::new(), Map::new());
    let Some(Value::Object(m)) = m else {
        return Ok((node, comp));
    };
    for (k, v) in m {
        match v {
            Value::Null => continue,
            Value::String(s) if is_binding(s) => {
                node.insert(k.clone(), json!({"value": s, "job_input_type": "literal"}));
                if let Some(t) = p.binding_type(s, cx) {
                    comp.insert(k.clone(), t);
                }
            }
            Value::Object(o)
                if o.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| DATA_TYPES.contains(&t)) =>
            {
                let one: Map<String, Value> = [(k.clone(), v.clone())].into_iter().collect();
                let rest = body::inputs(&one, cx)?;
                let r = &rest[k];
                let mut n = json!({"uri": r["uri"], "job_input_type": r["jobInputType"]});
                let mut c = json!({"type": r["jobInputType"]});
                if let Some(mode) = o.get("mode").and_then(Value::as_str) {
                    n["mode"] = body::input_mode(mode, cx.source)?.into();
                    c["mode"] = mode.into();
                }
                node.insert(k.clone(), n);
                comp.insert(k.clone(), c);
            }
            other => {
                // A scalar, or a typed literal (`{type: integer, value: 3}`).
                let (val, ty) = match other {
                    Value::Object(o) => {
                        let val = o
                            .get("value")
                            .or_else(|| o.get("default"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        let ty = o.get("type").and_then(Value::as_str).map(str::to_string);
                        let ty = ty.unwrap_or_else(|| literal_type(&val).to_string());
                        (val, ty)
                    }
                    scalar => (scalar.clone(), literal_type(scalar).to_string()),
                };
                let text = sweep::value_text(&val);
                node.insert(
                    k.clone(),
                    json!({"value": text, "job_input_type": "literal"}),
                );
                comp.insert(k.clone(), json!({"type": ty, "default": text}));
            }
        }
    }
    Ok((node, comp))
}

/// A step's `outputs:` → (node outputs, component outputs).
fn step_outputs(
    m: Option<&Value>,
    p: &Parent<'_>,
    cx: &BodyCtx<'_>,
) -> LabResult<(Map<String, Value>, Map<String, Value>)> {
    let (mut node, mut comp) = (Map::new(), Map::new());
    let Some(Value::Object(m)) = m else {
        return Ok((node, comp));
    };
    for (k, v) in m {
        match v {
            Value::String(s) if is_binding(s) => {
                node.insert(k.clone(), json!({"value": s, "type": "literal"}));
                comp.insert(
                    k.clone(),
                    p.output_of(s)
                        .unwrap_or_else(|| json!({"type": "uri_folder"})),
                );
            }
            Value::Object(o) => {
                let ty = o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("uri_folder");
                if !DATA_TYPES.contains(&ty) {
                    return Err(body::invalid(
                        cx.source,
                        format!(
                            "outputs.{k}: type '{ty}' is not one of {}",
                            DATA_TYPES.join(", ")
                        ),
                    ));
                }
                let mut n = json!({"job_output_type": ty});
                let mut c = json!({"type": ty});
                if let Some(mode) = o.get("mode").and_then(Value::as_str) {
                    n["mode"] = body::output_mode(mode, cx.source)?.into();
                    c["mode"] = mode.into();
                }
                node.insert(k.clone(), n);
                comp.insert(k.clone(), c);
            }
            _ => {
                node.insert(k.clone(), json!({"job_output_type": "uri_folder"}));
                comp.insert(k.clone(), json!({"type": "uri_folder"}));
            }
        }
    }
    Ok((node, comp))
}

/// `azureml:<ARM id>` for what a component names: code and environment.
fn component_ref(v: Value) -> Value {
    match v {
        Value::String(s) if s.starts_with("/subscriptions/") || s.starts_with(body::MARK) => {
            format!("azureml:{s}").into()
        }
        other => other,
    }
}

/// The spec fields of a component that say how it runs: code and environment as references.
fn runtime_fields(
    spec: &mut Map<String, Value>,
    code: Option<&Value>,
    env: Option<&Value>,
    cx: &BodyCtx<'_>,
) -> LabResult<()> {
    if let Some(c) = code.and_then(Value::as_str) {
        let c = c.strip_prefix("file:").unwrap_or(c).to_string();
        spec.insert("code".into(), component_ref(body::code(&Some(c), cx)?));
    }
    if let Some(e) = env {
        spec.insert(
            "environment".into(),
            component_ref(body::environment(&Some(e.clone()), cx)?),
        );
    }
    Ok(())
}

/// A component YAML named by a step (`component:` or a sweep's `trial:`, with or without
/// `file:`): its document and its folder.
fn component_file(c: &str, cx: &BodyCtx<'_>) -> LabResult<(Value, PathBuf)> {
    let path = cx.base.join(c.strip_prefix("file:").unwrap_or(c));
    let text = crate::modules::fs::read(&path).map_err(|e| {
        body::invalid(
            cx.source,
            format!("component {}: {}", path.display(), e.message),
        )
    })?;
    let v = crate::modules::yaml::parse(&text, &path.display().to_string())?;
    if !v.is_object() {
        return Err(body::invalid(
            cx.source,
            format!("component {}: not a map", path.display()),
        ));
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((v, dir))
}

/// A component file's spec as the SDK registers it: as written, with code and environment
/// resolved against its folder, input defaults as text, the anonymous name and version.
fn file_spec(c: &str, source: &str, cx: &BodyCtx<'_>) -> LabResult<Value> {
    let (doc, dir) = component_file(c, cx)?;
    let fcx = cx.at(&dir);
    let mut spec = doc.as_object().cloned().unwrap_or_default();
    let (code, env) = (spec.remove("code"), spec.remove("environment"));
    runtime_fields(&mut spec, code.as_ref(), env.as_ref(), &fcx)?;
    if let Some(Value::Object(ins)) = spec.get_mut("inputs") {
        for v in ins.values_mut() {
            if let Some(d) = v.get_mut("default") {
                *d = sweep::value_text(d).into();
            }
        }
    }
    spec.insert("name".into(), "azureml_anonymous".into());
    spec.insert("version".into(), "1".into());
    spec.entry("is_deterministic").or_insert(true.into());
    spec.entry("type").or_insert("command".into());
    spec.insert("_source".into(), source.into());
    Ok(Value::Object(spec))
}

/// The node fields a step carries for itself: compute, resources, distribution, env vars.
fn node_runtime(
    node: &mut Map<String, Value>,
    step: &Map<String, Value>,
    cx: &BodyCtx<'_>,
) -> LabResult<()> {
    if let Some(c) = step.get("compute").and_then(Value::as_str) {
        if let Some(id) = body::compute_id(Some(c), cx)? {
            node.insert("computeId".into(), id.into());
        }
    }
    if let Some(r) = step.get("resources").filter(|r| !r.is_null()) {
        node.insert("resources".into(), r.clone());
    }
    if let Some(Value::Object(d)) = step.get("distribution") {
        let mut d = d.clone();
        let ty = d
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_default();
        let rest = match ty.as_str() {
            "pytorch" => "PyTorch",
            "mpi" => "Mpi",
            "tensorflow" => "TensorFlow",
            other => {
                return Err(body::invalid(
                    cx.source,
                    format!("distribution.type '{other}' is not one of pytorch, mpi, tensorflow"),
                ))
            }
        };
        d.insert("distribution_type".into(), rest.into());
        node.insert("distribution".into(), Value::Object(d));
    }
    if let Some(Value::Object(e)) = step.get("environment_variables") {
        if !e.is_empty() {
            node.insert("environment_variables".into(), Value::Object(e.clone()));
        }
    }
    Ok(())
}

fn command_node(
    name: &str,
    step: &Map<String, Value>,
    p: &Parent<'_>,
    cx: &BodyCtx<'_>,
) -> LabResult<Value> {
    let (node_in, comp_in) = step_inputs(step.get("inputs"), p, cx)?;
    let (node_out, comp_out) = step_outputs(step.get("outputs"), p, cx)?;
    let spec = match step.get("component").and_then(Value::as_str) {
        Some(c) => file_spec(c, "YAML.JOB", cx)?,
        None => {
            let command = step
                .get("command")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if command.trim().is_empty() {
                return Err(body::invalid(
                    cx.source,
                    format!("jobs.{name}: command is required"),
                ));
            }
            let mut spec = Map::new();
            spec.insert("command".into(), command.into());
            runtime_fields(&mut spec, step.get("code"), step.get("environment"), cx)?;
            if step.get("environment").is_none() {
                return Err(body::invalid(
                    cx.source,
                    format!("jobs.{name}: environment is required to submit a step to Azure ML"),
                ));
            }
            for k in ["resources", "distribution"] {
                if let Some(v) = step.get(k).filter(|v| !v.is_null()) {
                    spec.insert(k.into(), v.clone());
                }
            }
            spec.insert("name".into(), "azureml_anonymous".into());
            spec.insert("version".into(), "1".into());
            spec.insert("is_deterministic".into(), true.into());
            if !comp_in.is_empty() {
                spec.insert("inputs".into(), comp_in.into());
            }
            if !comp_out.is_empty() {
                spec.insert("outputs".into(), comp_out.into());
            }
            spec.insert("type".into(), "command".into());
            spec.insert("_source".into(), "YAML.JOB".into());
            Value::Object(spec)
        }
    };
    let mut node = Map::new();
    node_common(&mut node, name, "command", (node_in, node_out), step, cx)?;
    node.insert("_source".into(), "YAML.JOB".into());
    node.insert(
        "componentId".into(),
        Asset::Component { spec }.mark().into(),
    );
    Ok(Value::Object(node))
}

/// What every node carries: its name and type, inputs and outputs (when any), and its own
/// compute, resources, distribution and environment variables.
fn node_common(
    node: &mut Map<String, Value>,
    name: &str,
    kind: &str,
    (ins, outs): (Map<String, Value>, Map<String, Value>),
    step: &Map<String, Value>,
    cx: &BodyCtx<'_>,
) -> LabResult<()> {
    node.insert("name".into(), name.into());
    node.insert("type".into(), kind.into());
    if !ins.is_empty() {
        node.insert("inputs".into(), ins.into());
    }
    if !outs.is_empty() {
        node.insert("outputs".into(), outs.into());
    }
    node_runtime(node, step, cx)
}

/// A sweep step: its trial component registered, the sweep settings in the node format.
fn sweep_node(
    name: &str,
    step: &Map<String, Value>,
    p: &Parent<'_>,
    cx: &BodyCtx<'_>,
) -> LabResult<Value> {
    let Some(trial) = step.get("trial").and_then(Value::as_str) else {
        return Err(body::invalid(
            cx.source,
            format!("jobs.{name}: a sweep step needs `trial:` (a component file)"),
        ));
    };
    let spec = file_spec(trial, "YAML.COMPONENT", cx)?;
    let (node_in, _) = step_inputs(step.get("inputs"), p, cx)?;
    let (node_out, _) = step_outputs(step.get("outputs"), p, cx)?;
    let mut node = Map::new();
    for k in ["limits", "sampling_algorithm", "objective", "search_space"] {
        if let Some(v) = step.get(k).filter(|v| !v.is_null()) {
            node.insert(k.into(), v.clone());
        }
    }
    if let Some(Value::Object(o)) = node.get_mut("objective") {
        if let Some(Value::String(g)) = o.get_mut("goal") {
            *g = g.to_ascii_lowercase();
        }
    }
    if let Some(Value::Object(e)) = step.get("early_termination") {
        let mut e = e.clone();
        let ty = e
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_default();
        let policy = match ty.as_str() {
            "bandit" => "Bandit",
            "median_stopping" => "MedianStopping",
            "truncation_selection" => "TruncationSelection",
            other => return Err(body::invalid(cx.source, format!("jobs.{name}.early_termination.type '{other}' is not one of bandit, median_stopping, truncation_selection"))),
        };
        e.entry("delay_evaluation").or_insert(0.into());
        e.insert("policy_type".into(), policy.into());
        node.insert("early_termination".into(), Value::Object(e));
    }
    node_common(&mut node, name, "sweep", (node_in, node_out), step, cx)?;
    node.insert("_source".into(), "YAML.COMPONENT".into());
    node.insert(
        "trial".into(),
        json!({"componentId": Asset::Component { spec }.mark()}),
    );
    Ok(Value::Object(node))
}

/// The anonymous component version of a spec: a UUID-shaped hash of its canonical JSON (keys
/// sorted), so the same step registers the same version.
pub fn component_version(spec: &Value) -> String {
    use sha2::Digest;
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), canonical(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let h = sha2::Sha256::digest(canonical(spec).to_string().as_bytes());
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}
