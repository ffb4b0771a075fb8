//! Azure ML pipeline jobs (`type: pipeline`) run locally: each step (a command, a command
//! `component: ./x.yml`, or a sweep) runs through the same sweep runner, in dependency order
//! (a step depends on the steps whose outputs its inputs bind with
//! `${{parent.jobs.<step>.outputs.<name>}}`); `${{parent.inputs.X}}` takes the pipeline's
//! inputs. A step's output is the folder `outputs/<name>` of its run (a sweep step: of its
//! best trial, as Azure hands on the best child's outputs). Independent steps run at the
//! same time, as on Azure, within the job engine's worker and GPU limits; every step is
//! built (and refused) before the first one starts.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::run::{RunOpts, SweepResult, Watcher};
use super::{Origin, Sweep, SweepDoc};
use crate::error::{LabError, LabResult};

/// A pipeline file, parsed; steps in the file's order.
pub struct Pipeline {
    pub source: String,
    pub text: String,
    pub base: PathBuf,
    pub inputs: Map<String, Value>,
    /// The pipeline's outputs: a step output bound to `${{parent.outputs.X}}` takes X's
    /// type and mode.
    pub outputs: Map<String, Value>,
    pub steps: Vec<(String, Map<String, Value>)>,
    /// `settings.default_compute` (or the pipeline's `compute:`): a step's compute target
    /// when it names none.
    pub default_compute: Option<String>,
}

fn err(o: &Origin<'_>, needle: &str, msg: impl std::fmt::Display) -> LabError {
    o.err(needle, msg)
}

/// The pipeline of a job file that was read (`type: pipeline`, its `jobs:` a map of steps).
pub fn from_file(f: super::JobFile) -> LabResult<Pipeline> {
    let o = Origin {
        source: &f.source,
        text: Some(&f.text),
    };
    if !f.is_pipeline() {
        return Err(err(&o, "type:", "not a pipeline job (type: pipeline)"));
    }
    let Some(Value::Object(jobs)) = f.doc.jobs.clone() else {
        return Err(err(&o, "jobs", "a pipeline needs `jobs:`, a map of steps"));
    };
    let mut steps = Vec::new();
    for (name, v) in jobs {
        let Value::Object(m) = v else {
            return Err(err(
                &o,
                &format!("{name}:"),
                format!("jobs.{name} must be a map"),
            ));
        };
        steps.push((name, m));
    }
    let default_compute = f
        .doc
        .settings
        .as_ref()
        .and_then(|s| s.get("default_compute"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(f.doc.compute.clone());
    Ok(Pipeline {
        default_compute,
        inputs: f.doc.inputs.clone(),
        outputs: f.doc.outputs.clone(),
        source: f.source,
        text: f.text,
        base: f.base,
        steps,
    })
}

/// `parent.jobs.<step>.outputs.<name>` bindings in a value (strings anywhere inside).
fn upstream(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => {
            for b in super::bindings(s) {
                let parts: Vec<&str> = b.split('.').collect();
                if parts.len() == 5
                    && parts[0] == "parent"
                    && parts[1] == "jobs"
                    && parts[3] == "outputs"
                {
                    out.push((parts[2].to_string(), parts[4].to_string()));
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| upstream(x, out)),
        Value::Object(m) => m.values().for_each(|x| upstream(x, out)),
        _ => {}
    }
}

/// Replaces `${{parent.…}}` bindings in strings: `parent.inputs.X` and
/// `parent.jobs.S.outputs.O` (from `outputs`, the folders of steps that ran).
fn bind(
    v: &Value,
    p: &Pipeline,
    outputs: &BTreeMap<(String, String), String>,
    o: &Origin<'_>,
) -> LabResult<Value> {
    Ok(match v {
        Value::String(s) if s.contains("${{parent.") => {
            let mut text = s.clone();
            for b in super::bindings(s) {
                let parts: Vec<&str> = b.split('.').collect();
                let val = match parts.as_slice() {
                    // As a job's own input reads (a local path from the pipeline's folder).
                    ["parent", "inputs", x] => p
                        .inputs
                        .get(*x)
                        .map(|v| super::input_value(v, &p.base).text),
                    ["parent", "jobs", step, "outputs", name] => {
                        outputs.get(&(step.to_string(), name.to_string())).cloned()
                    }
                    _ => None,
                };
                let Some(val) = val else {
                    return Err(err(
                        o,
                        &format!("${{{{{b}}}}}"),
                        format!("unknown binding ${{{{{b}}}}}"),
                    ));
                };
                text = text.replace(&format!("${{{{{b}}}}}"), &val);
            }
            Value::String(text)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| bind(x, p, outputs, o))
                .collect::<LabResult<_>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), bind(x, p, outputs, o)?)))
                .collect::<LabResult<_>>()?,
        ),
        other => other.clone(),
    })
}

/// For each step, the steps whose outputs it binds. A binding to an unknown step is an error.
fn deps(p: &Pipeline) -> LabResult<Vec<Vec<usize>>> {
    let o = Origin {
        source: &p.source,
        text: Some(&p.text),
    };
    let names: Vec<&str> = p.steps.iter().map(|(n, _)| n.as_str()).collect();
    let mut deps: Vec<Vec<usize>> = Vec::new();
    for (name, m) in &p.steps {
        let mut ups = Vec::new();
        upstream(&Value::Object(m.clone()), &mut ups);
        let mut d = Vec::new();
        for (s, _) in ups {
            let i = names.iter().position(|n| *n == s).ok_or_else(|| {
                err(
                    &o,
                    &format!("parent.jobs.{s}."),
                    format!("jobs.{name} binds the outputs of `{s}`, which is not a step"),
                )
            })?;
            if !d.contains(&i) {
                d.push(i);
            }
        }
        deps.push(d);
    }
    Ok(deps)
}

/// The names of the steps step `i` waits for (those whose outputs it binds).
pub fn waits_for(p: &Pipeline, i: usize) -> Vec<String> {
    deps(p)
        .map(|d| d[i].iter().map(|j| p.steps[*j].0.clone()).collect())
        .unwrap_or_default()
}

/// The steps in an order that runs every step after the steps it binds (file order among
/// independent ones). A cycle or a binding to an unknown step is an error.
pub fn order(p: &Pipeline) -> LabResult<Vec<usize>> {
    let deps = deps(p)?;
    let mut done = vec![false; p.steps.len()];
    let mut out = Vec::new();
    while out.len() < p.steps.len() {
        let next = (0..p.steps.len()).find(|i| !done[*i] && deps[*i].iter().all(|d| done[*d]));
        let Some(i) = next else {
            let left: Vec<&str> = (0..p.steps.len())
                .filter(|i| !done[*i])
                .map(|i| p.steps[i].0.as_str())
                .collect();
            return Err(err(
                &Origin {
                    source: &p.source,
                    text: Some(&p.text),
                },
                "jobs",
                format!(
                    "the steps {} bind each other's outputs in a cycle",
                    left.join(", ")
                ),
            ));
        };
        done[i] = true;
        out.push(i);
    }
    Ok(out)
}

/// Every step in run order, built as the run builds it, with each upstream output standing
/// in as `<jobs.S.outputs.O>` (its folder exists only once S ran): what a run would refuse,
/// this refuses, before anything starts. `--dry-run` shows it.
pub fn plan(p: &Pipeline) -> LabResult<Vec<(usize, Sweep)>> {
    let mut outputs: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut out = Vec::new();
    for i in order(p)? {
        let s = step(p, i, &outputs)?;
        // What the run would refuse (a missing code folder, an input it cannot read).
        s.check_local()?;
        let name = &p.steps[i].0;
        for o in &s.outputs {
            outputs.insert(
                (name.clone(), o.clone()),
                format!("<jobs.{name}.outputs.{o}>"),
            );
        }
        out.push((i, s));
    }
    Ok(out)
}

/// Step `i` as a sweep (or command) job, its bindings to upstream outputs resolved.
pub fn step(
    p: &Pipeline,
    i: usize,
    outputs: &BTreeMap<(String, String), String>,
) -> LabResult<Sweep> {
    let o = Origin {
        source: &p.source,
        text: Some(&p.text),
    };
    let (name, m) = &p.steps[i];
    let mut m = m.clone();
    // `outputs: {x: ${{parent.outputs.y}}}`: the step's output x is the pipeline's y, with
    // y's type and mode.
    if let Some(Value::Object(outs)) = m.get_mut("outputs") {
        for v in outs.values_mut() {
            let Value::String(b) = v else { continue };
            let Some(y) = super::bindings(b)
                .into_iter()
                .find_map(|x| x.strip_prefix("parent.outputs.").map(str::to_string))
            else {
                continue;
            };
            let Some(decl) = p.outputs.get(&y) else {
                return Err(err(
                    &o,
                    &format!("parent.outputs.{y}"),
                    format!("jobs.{name} binds ${{{{parent.outputs.{y}}}}}, which is not an output of the pipeline"),
                ));
            };
            *v = if decl.is_object() {
                decl.clone()
            } else {
                Value::Object(Map::new())
            };
        }
    }
    let mut m = match bind(&Value::Object(m), p, outputs, &o)? {
        Value::Object(m) => m,
        _ => unreachable!("bind keeps a map a map"),
    };
    let kind = m
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("command")
        .to_string();
    // The compute target names a cluster; steps run here, with the GPUs the settings'
    // `local_gpus` gives it.
    let compute = m
        .remove("compute")
        .and_then(|c| c.as_str().map(str::to_string))
        .or(p.default_compute.clone());
    if let Some(Value::String(c)) = m.remove("component") {
        if kind != "command" {
            return Err(err(
                &o,
                "component:",
                format!("jobs.{name}: `component` goes with a command step"),
            ));
        }
        // A command component: its command, code, environment and input defaults.
        let path = p.base.join(&c);
        if !path.is_file() {
            return Err(err(
                &o,
                "component:",
                format!("jobs.{name}: component {} does not exist", path.display()),
            ));
        }
        let comp = super::load_component(&path)?;
        m.insert("command".into(), Value::String(comp.command.clone()));
        if let Some(code) = &comp.code {
            let d = path.parent().unwrap_or(&p.base).join(code);
            m.insert("code".into(), Value::String(d.display().to_string()));
        }
        if let Some(env) = &comp.environment {
            m.entry("environment").or_insert(env.clone());
        }
        let inputs = m.entry("inputs").or_insert(Value::Object(Map::new()));
        if let Value::Object(inputs) = inputs {
            for (k, decl) in &comp.inputs {
                if let Some(d) = decl.get("default") {
                    inputs.entry(k.clone()).or_insert(d.clone());
                }
            }
        }
        let outs = m.entry("outputs").or_insert(Value::Object(Map::new()));
        if let Value::Object(outs) = outs {
            for k in comp.outputs.keys() {
                outs.entry(k.clone()).or_insert(Value::Null);
            }
        }
    }
    let mut doc: SweepDoc = serde_json::from_value(Value::Object(m)).map_err(|e| {
        err(
            &o,
            &format!("{name}:"),
            format!("jobs.{name}: {}", super::words(&e.to_string())),
        )
    })?;
    doc.kind = Some(kind);
    if doc.display_name.is_none() {
        doc.display_name = Some(name.clone());
    }
    let mut s = super::resolve(doc, &o, &p.base).map_err(|e| {
        LabError::new(
            &e.kind,
            e.message.replacen(": ", &format!(": jobs.{name}: "), 1),
        )
    })?;
    s.source = format!("{}#{name}", p.source);
    s.compute = compute;
    Ok(s)
}

/// The folder of output `name` of a step that ran.
fn output_dir(r: &SweepResult, name: &str) -> LabResult<Option<String>> {
    let row = r.best_row().or_else(|| {
        r.trials
            .iter()
            .find(|t| t.status == crate::store::RunStatus::Completed)
    });
    let Some(row) = row else { return Ok(None) };
    let run = crate::modules::jobs::get(row.run_id)?;
    Ok(Some(
        Path::new(&run.run_dir)
            .join("outputs")
            .join(name)
            .display()
            .to_string(),
    ))
}

/// Whether a step that ran lets the steps after it run: a command completed; a sweep had at
/// least one trial complete.
fn step_ok(s: &Sweep, r: &SweepResult) -> bool {
    use crate::store::RunStatus::Completed;
    r.count(Completed) > 0 && (!s.single || r.trials.iter().all(|t| t.status == Completed))
}

/// What one step's thread hands back.
type Ended = (usize, Sweep, LabResult<SweepResult>);

/// Runs the pipeline: every step is built first (see [`plan`]), then each step starts as
/// soon as the steps it binds have completed, independent ones at the same time (each on
/// its own thread, driving the one job engine). A step that does not complete stops the
/// pipeline (Azure's default, `continue_on_step_failure: false`): no further step starts
/// and the ones running finish. Returns each step that ran with its result, in run order.
pub fn run(
    p: &Pipeline,
    opts: &RunOpts,
    watcher: &(dyn Fn(&Sweep) -> Box<dyn Watcher + Send> + Sync),
    cancel: &CancellationToken,
) -> LabResult<Vec<(String, SweepResult)>> {
    let planned = plan(p)?;
    // Every step's remote inputs are fetched before the first step starts: a bad URI fails
    // the pipeline before it has run anything.
    for (_, s) in &planned {
        s.localized()?;
    }
    let order = planned.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
    let opts = &RunOpts {
        shared_workers: true,
        ..opts.clone()
    };
    let deps = deps(p)?;
    let n = p.steps.len();
    let mut outputs: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut ended: Vec<Option<(Sweep, SweepResult)>> = (0..n).map(|_| None).collect();
    let mut started = vec![false; n];
    let mut stop = false;
    let mut first_err: Option<LabError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Ended>();
        let mut running = 0usize;
        loop {
            for &i in &order {
                if stop || first_err.is_some() || cancel.is_cancelled() {
                    break;
                }
                let ready = deps[i]
                    .iter()
                    .all(|d| ended[*d].as_ref().is_some_and(|(s, r)| step_ok(s, r)));
                if started[i] || !ready {
                    continue;
                }
                started[i] = true;
                let s = match step(p, i, &outputs) {
                    Ok(s) => s,
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                };
                let mut w = watcher(&s);
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    let r = super::run::run(&s, opts, w.as_mut(), cancel);
                    let _ = tx.send((i, s, r));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((i, s, r)) = rx.recv() else { break };
            running -= 1;
            match r {
                Ok(r) => {
                    for o in &s.outputs {
                        match output_dir(&r, o) {
                            Ok(Some(d)) => {
                                outputs.insert((p.steps[i].0.clone(), o.clone()), d);
                            }
                            Ok(None) => {}
                            Err(e) => first_err = first_err.take().or(Some(e)),
                        }
                    }
                    stop |= !step_ok(&s, &r);
                    ended[i] = Some((s, r));
                }
                Err(e) => {
                    // Ctrl-C outranks a step's own error: the pipeline continues on a rerun.
                    if e.is_cancelled() || first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(order
        .into_iter()
        .filter_map(|i| ended[i].take().map(|(_, r)| (p.steps[i].0.clone(), r)))
        .collect())
}
