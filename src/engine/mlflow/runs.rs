//! Runs: create, read, update, delete and restore, search, and what a run logs (metrics,
//! params, tags, dataset inputs, model outputs).
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::*;
use crate::store::mlflow::{ACTIVE, DELETED, RUN_INPUTS, RUN_OUTPUTS};

pub(super) fn run_id_of(body: &Value) -> Result<i64, ApiError> {
    let v = body
        .get("run_id")
        .or_else(|| body.get("run_uuid"))
        .ok_or_else(|| invalid("Missing value for required parameter 'run_id'"))?;
    let s = v
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    s.parse::<i64>()
        .map_err(|_| missing(format!("Run with id={s} not found")))
}

pub(super) fn get_run(s: &Store, id: i64) -> Result<Run, ApiError> {
    s.get(id)
        .map_err(|_| missing(format!("Run with id={id} not found")))
}

pub(super) fn status_name(r: &Run) -> &'static str {
    use crate::store::RunStatus::*;
    match r.status {
        Queued | Leased => "SCHEDULED",
        Running => "RUNNING",
        Completed => "FINISHED",
        Failed | TimedOut => "FAILED",
        Cancelled => "KILLED",
    }
}

pub(super) fn ms(t: Option<f64>) -> Value {
    t.map(|x| json!((x * 1000.0) as i64)).unwrap_or(Value::Null)
}

pub(super) fn exp_of(r: &Run) -> i64 {
    r.experiment_id.unwrap_or(0)
}

pub(super) fn run_info(r: &Run) -> Value {
    json!({
        "run_id": r.id.to_string(), "run_uuid": r.id.to_string(),
        "experiment_id": exp_of(r).to_string(), "run_name": r.name,
        "status": status_name(r), "start_time": ms(r.started.or(Some(r.created))), "end_time": ms(r.ended),
        "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp_of(r), r.id),
        "lifecycle_stage": if r.deleted { DELETED } else { ACTIVE },
    })
}

pub(super) fn run_json(s: &Store, r: &Run) -> Result<Value, ApiError> {
    let metrics: Vec<Value> = s
        .latest_metrics(r.id)
        .map_err(internal)?
        .into_iter()
        .map(|m| json!({"key": m.name, "value": wire_value(m.value), "timestamp": (m.ts * 1000.0) as i64, "step": m.step}))
        .collect();
    let params: Vec<Value> = s
        .params(r.id)
        .map_err(internal)?
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            json!({"key": k, "value": text})
        })
        .collect();
    let mut tags: Vec<Value> = s
        .tags(r.id)
        .map_err(internal)?
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    tags.push(json!({"key": "mlflow.runName", "value": r.name}));
    if let Some(p) = r.parent_id {
        if !tags.iter().any(|t| t["key"] == "mlflow.parentRunId") {
            tags.push(json!({"key": "mlflow.parentRunId", "value": p.to_string()}));
        }
    }
    let mut info = run_info(r);
    // MLflow's `user_id` is the client's user, which it also sends as the `mlflow.user` tag
    // (a run made without one, by `MlflowClient.create_run`, is the server's "unknown").
    info["user_id"] = tags
        .iter()
        .find(|t| t["key"] == "mlflow.user")
        .map(|u| u["value"].clone())
        .unwrap_or_else(|| json!("unknown"));
    let key = r.id.to_string();
    let inputs = s
        .doc(RUN_INPUTS, &key)
        .map_err(internal)?
        .unwrap_or(json!({}));
    let outputs = s
        .doc(RUN_OUTPUTS, &key)
        .map_err(internal)?
        .unwrap_or(json!({}));
    Ok(
        json!({"info": info, "data": {"metrics": metrics, "params": params, "tags": tags}, "inputs": inputs, "outputs": outputs}),
    )
}

pub(super) async fn runs_get(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let id = run_id_of(&json!({"run_id": q.get("run_id").or(q.get("run_uuid"))}))?;
    let v = store(&ctx, move |s| {
        let r = get_run(s, id)?;
        run_json(s, &r)
    })
    .await?;
    Ok(Json(json!({"run": v})))
}

pub(super) async fn runs_update(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let status = b.get("status").and_then(|v| v.as_str()).map(str::to_string);
    if let Some(st) = &status {
        if !["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"].contains(&st.as_str()) {
            return Err(invalid(format!(
                "Invalid value {st} for parameter 'status'"
            )));
        }
    }
    let name = b
        .get("run_name")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let end = b.get("end_time").and_then(|v| v.as_i64());
    let info = store(&ctx, move |s| {
        let r = get_run(s, id)?;
        // A record run a client created is the client's to close; a job's status is the host's.
        if r.kind == crate::store::RunKind::Remote {
            if let Some(st) = status.as_deref() {
                let to = match st {
                    "FINISHED" => Some(crate::store::RunStatus::Completed),
                    "FAILED" => Some(crate::store::RunStatus::Failed),
                    "KILLED" => Some(crate::store::RunStatus::Cancelled),
                    _ => None,
                };
                if let Some(to) = to {
                    s.close_record(id, to, None).map_err(internal)?;
                } else if st == "RUNNING" && r.status.is_finished() {
                    s.reopen_record(id).map_err(internal)?;
                }
            }
            // As MLflow: the end time is the client's, kept when it sends none.
            if status.is_some() || end.is_some() {
                let kept = end.map(|e| e as f64 / 1000.0).or(r.ended);
                s.set_run_end(id, kept).map_err(internal)?;
            }
        }
        if let Some(n) = name {
            s.rename(id, &n).map_err(internal)?;
        }
        Ok(run_info(&get_run(s, id)?))
    })
    .await?;
    Ok(Json(json!({"run_info": info})))
}

pub(super) fn key_ok(k: &str) -> Result<(), ApiError> {
    if k.is_empty() || k.len() > 250 || k.contains("..") || k.starts_with('/') {
        return Err(invalid(format!(
            "Invalid key '{k}': keys are 1 to 250 characters, no '..' or leading '/'"
        )));
    }
    Ok(())
}

pub(super) fn metric_of(m: &Value) -> Result<Metric, ApiError> {
    let key = m
        .get("key")
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid("Missing value for required parameter 'key'"))?;
    key_ok(key)?;
    let value = match m.get("value") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) if ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) => {
            s.parse::<f64>().unwrap_or(f64::NAN)
        }
        Some(other) => {
            return Err(invalid(format!(
                "Invalid value {other} for parameter 'value' supplied: must be a number"
            )))
        }
        None => return Err(invalid("Missing value for required parameter 'value'")),
    };
    let ts = m
        .get("timestamp")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| invalid("Missing value for required parameter 'timestamp'"))?;
    let step = match m.get("step") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| invalid(format!("Invalid value {v} for parameter 'step' supplied")))?,
    };
    Ok(Metric {
        name: key.to_string(),
        value,
        step,
        ts: ts as f64 / 1000.0,
    })
}

/// The metrics of a request that name a logged model, as the model keeps them.
fn model_linked(ms: &[Value]) -> Vec<Value> {
    ms.iter()
        .filter(|m| {
            m.get("model_id")
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty())
        })
        .map(|m| {
            let mut x = json!({});
            for k in [
                "key",
                "value",
                "timestamp",
                "step",
                "dataset_name",
                "dataset_digest",
                "model_id",
            ] {
                if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
                    x[k] = v.clone();
                }
            }
            if x.get("step").is_none() {
                x["step"] = json!(0);
            }
            x
        })
        .collect()
}

/// A generated run name, as MLflow makes one for a run created without: `adjective-noun-N`.
pub(super) fn run_name() -> String {
    const ADJ: &[&str] = &[
        "able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "gentle",
        "glad", "grand", "keen", "kind", "lively", "lucky", "merry", "neat", "nimble", "proud",
        "quick", "quiet", "rare", "sharp", "shy", "smart", "steady", "swift", "warm", "wise",
    ];
    const NOUN: &[&str] = &[
        "ant", "bass", "bear", "bee", "crab", "crane", "deer", "dove", "eel", "finch", "fox",
        "frog", "goat", "hare", "hawk", "jay", "lark", "lynx", "mole", "moth", "newt", "owl",
        "panda", "seal", "shrew", "snail", "swan", "toad", "vole", "wren",
    ];
    format!(
        "{}-{}-{}",
        ADJ[fastrand::usize(..ADJ.len())],
        NOUN[fastrand::usize(..NOUN.len())],
        fastrand::u16(..1000)
    )
}

/// A metric value as the real server answers it: NaN as protobuf JSON's `"NaN"`, ±Inf as
/// ±f64::MAX (MLflow's SQL store keeps infinities as ±1.7976931348623157e308); JSON has no
/// NaN or infinity, and a `null` reads back as 0.0 in the client.
pub(super) fn wire_value(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { f64::MAX } else { f64::MIN })
    } else {
        json!(v)
    }
}

pub(super) fn kv(v: &Value, what: &str, max: usize) -> Result<(String, String), ApiError> {
    let k = v.get("key").and_then(|x| x.as_str()).ok_or_else(|| {
        invalid(format!(
            "Missing value for required parameter 'key' of a {what}"
        ))
    })?;
    key_ok(k)?;
    let val = match v.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            return Err(invalid(format!(
                "Missing value for required parameter 'value' of {what} '{k}'"
            )))
        }
        Some(other) => other.to_string(),
    };
    if val.len() > max {
        return Err(invalid(format!(
            "{what} '{k}' had length {}, which exceeded length limit of {max}",
            val.len()
        )));
    }
    Ok((k.to_string(), val))
}

pub(super) async fn write(
    ctx: &EndpointState,
    id: i64,
    ms: Vec<Metric>,
    ps: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    linked: Vec<Value>,
) -> ApiResult {
    store(ctx, move |s| {
        get_run(s, id)?;
        match s.log_batch(id, &ms, &ps, &tags).map_err(internal)? {
            Ok(()) => {
                if !linked.is_empty() {
                    link_metrics(s, id, &linked)?;
                }
                Ok(Json(json!({})))
            }
            Err(k) => Err(invalid(format!("Changing param values is not allowed. Param with key='{k}' was already logged with a different value"))),
        }
    })
    .await
}

pub(super) async fn log_metric(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let m = metric_of(&b)?;
    write(
        &ctx,
        id,
        vec![m],
        vec![],
        vec![],
        model_linked(std::slice::from_ref(&b)),
    )
    .await
}

pub(super) async fn log_parameter(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let p = kv(&b, "Param", 6000)?;
    write(&ctx, id, vec![], vec![p], vec![], vec![]).await
}

pub(super) async fn set_tag(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    let t = kv(&b, "Tag", 8000)?;
    write(&ctx, id, vec![], vec![], vec![t], vec![]).await
}

pub(super) async fn delete_tag(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let k = b
        .get("key")
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid("Missing value for required parameter 'key'"))?
        .to_string();
    store(&ctx, move |s| {
        get_run(s, id)?;
        if s.delete_tag(id, &k).map_err(internal)? {
            Ok(Json(json!({})))
        } else {
            Err(missing(format!(
                "No tag with name: {k} in run with id {id}"
            )))
        }
    })
    .await
}

pub(super) async fn log_inputs(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let datasets = b
        .get("datasets")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let models = b
        .get("models")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for d in &datasets {
        for k in ["name", "digest"] {
            if d["dataset"][k].as_str().is_none_or(str::is_empty) {
                return Err(invalid(format!(
                    "Missing value for required parameter 'dataset.{k}'"
                )));
            }
        }
    }
    store(&ctx, move |s| {
        get_run(s, id)?;
        let key = id.to_string();
        let mut doc = s
            .doc(RUN_INPUTS, &key)
            .map_err(internal)?
            .unwrap_or(json!({}));
        // A dataset logged again (same name, digest and tags) is not added twice.
        for d in datasets {
            let list = doc["dataset_inputs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let same = |x: &Value| {
                x["dataset"]["name"] == d["dataset"]["name"]
                    && x["dataset"]["digest"] == d["dataset"]["digest"]
            };
            if !list.iter().any(same) {
                let mut list = list;
                list.push(d);
                doc["dataset_inputs"] = Value::Array(list);
            }
        }
        // Model inputs are accepted and not kept: the real server returns none either.
        let _ = models;
        s.put_doc(RUN_INPUTS, &key, &doc).map_err(internal)?;
        Ok(Json(json!({})))
    })
    .await
}

/// `runs/outputs`: the models a run produced (MLflow 3's `log_outputs`).
pub(super) async fn log_outputs(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = run_id_of(&b)?;
    let models = b
        .get("models")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    store(&ctx, move |s| {
        get_run(s, id)?;
        add_outputs(s, id, models)?;
        Ok(Json(json!({})))
    })
    .await
}

/// Adds `{"model_id", "step"}` entries to a run's outputs (once each).
pub(super) fn add_outputs(s: &mut Store, id: i64, models: Vec<Value>) -> Result<(), ApiError> {
    let key = id.to_string();
    let mut doc = s
        .doc(RUN_OUTPUTS, &key)
        .map_err(internal)?
        .unwrap_or(json!({}));
    let mut list = doc["model_outputs"].as_array().cloned().unwrap_or_default();
    for m in models {
        let m =
            json!({"model_id": m["model_id"], "step": m.get("step").cloned().unwrap_or(json!(0))});
        if !list.iter().any(|x| x["model_id"] == m["model_id"]) {
            list.push(m);
        }
    }
    doc["model_outputs"] = Value::Array(list);
    s.put_doc(RUN_OUTPUTS, &key, &doc).map_err(internal)
}

/// Deleting or restoring a run (its lifecycle; nothing is removed).
async fn set_run_lifecycle(ctx: EndpointState, b: Value, to: &'static str) -> ApiResult {
    let id = run_id_of(&b)?;
    store(&ctx, move |s| {
        get_run(s, id)?;
        s.set_run_lifecycle(id, to).map_err(internal)?;
        Ok(Json(json!({})))
    })
    .await
}

pub(super) async fn runs_delete(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    set_run_lifecycle(ctx, b, DELETED).await
}

pub(super) async fn runs_restore(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    set_run_lifecycle(ctx, b, ACTIVE).await
}

pub(super) async fn log_batch(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    let arr = |k: &str| {
        b.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (m, p, t) = (arr("metrics"), arr("params"), arr("tags"));
    // MLflow's limits (mlflow/utils/validation.py).
    if m.len() > 1000 {
        return Err(invalid(format!(
            "A batch logging request can contain at most 1000 metrics. Got {} metrics.",
            m.len()
        )));
    }
    if p.len() > 100 {
        return Err(invalid(format!(
            "A batch logging request can contain at most 100 params. Got {} params.",
            p.len()
        )));
    }
    if t.len() > 100 {
        return Err(invalid(format!(
            "A batch logging request can contain at most 100 tags. Got {} tags.",
            t.len()
        )));
    }
    if m.len() + p.len() + t.len() > 1000 {
        return Err(invalid(
            "A batch logging request can contain at most 1000 total entities".to_string(),
        ));
    }
    let ms = m.iter().map(metric_of).collect::<Result<Vec<_>, _>>()?;
    let ps = p
        .iter()
        .map(|x| kv(x, "Param", 6000))
        .collect::<Result<Vec<_>, _>>()?;
    let ts = t
        .iter()
        .map(|x| kv(x, "Tag", 8000))
        .collect::<Result<Vec<_>, _>>()?;
    let linked = model_linked(&m);
    write(&ctx, id, ms, ps, ts, linked).await
}

pub(super) async fn get_history(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    let id = run_id_of(&json!({"run_id": q.get("run_id").or(q.get("run_uuid"))}))?;
    let key = q
        .get("metric_key")
        .cloned()
        .ok_or_else(|| invalid("Missing value for required parameter 'metric_key'"))?;
    // Pages of `max_results` (default 25,000, MLflow's) with the same tokens as searches.
    let max = match q.get("max_results") {
        Some(m) => m.parse::<usize>().ok().filter(|m| *m > 0).ok_or_else(|| {
            invalid(format!(
                "Invalid value {m} for parameter 'max_results' supplied"
            ))
        })?,
        None => 25_000,
    };
    let offset = match q.get("page_token").filter(|t| !t.is_empty()) {
        Some(t) => offset_of(t)?,
        None => 0,
    };
    store(&ctx, move |s| {
        get_run(s, id)?;
        let points = s.metric_points(id, &key).map_err(internal)?;
        Ok(history_json(&key, &points, offset, max))
    })
    .await
}

/// `{"metrics": [...], "next_page_token"?}` written straight into one buffer: a long
/// history is most of what this endpoint serves, and a JSON tree per point costs more than
/// the query.
fn history_json(
    key: &str,
    points: &[(f64, i64, f64)],
    offset: usize,
    max: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use std::io::Write;
    let key = serde_json::to_string(key).unwrap_or_default();
    let page = points.iter().skip(offset).take(max);
    let mut buf: Vec<u8> = Vec::with_capacity(64 + points.len().min(max) * (key.len() + 64));
    buf.extend_from_slice(b"{\"metrics\":[");
    for (i, (value, step, ts)) in page.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let _ = write!(buf, "{{\"key\":{key},\"value\":");
        let _ = if value.is_finite() {
            serde_json::to_writer(&mut buf, value)
        } else {
            serde_json::to_writer(&mut buf, &wire_value(*value))
        };
        let _ = write!(
            buf,
            ",\"timestamp\":{},\"step\":{step}}}",
            (ts * 1000.0) as i64
        );
    }
    buf.push(b']');
    if offset + max < points.len() {
        let _ = write!(buf, ",\"next_page_token\":\"{}\"", token_of(offset + max));
    }
    buf.push(b'}');
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        buf,
    )
        .into_response()
}

pub(super) async fn runs_create(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let exp = b
        .get("experiment_id")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|i| i.to_string()))
        })
        .unwrap_or_else(|| "0".into());
    let name = b
        .get("run_name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let tags: Vec<(String, String)> = b
        .get("tags")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| kv(t, "Tag", 8000))
        .collect::<Result<_, _>>()?;
    // As MLflow: the request's name, else the `mlflow.runName` tag, else a generated one.
    let name = Some(name)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            tags.iter()
                .find(|(k, v)| k == "mlflow.runName" && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(run_name);
    store(&ctx, move |s| {
        let e: i64 = exp
            .parse()
            .map_err(|_| missing(format!("No Experiment with id={exp} exists")))?;
        if e != 0 {
            s.experiment(e)
                .map_err(|_| missing(format!("No Experiment with id={exp} exists")))?;
        }
        let parent = tags
            .iter()
            .find(|(k, _)| k == "mlflow.parentRunId")
            .and_then(|(_, v)| v.parse::<i64>().ok());
        let n = crate::store::NewRun {
            parent_id: parent,
            tags: tags.clone(),
            experiment_id: (e != 0).then_some(e),
            ..crate::store::NewRun::record(
                crate::store::RunKind::Remote,
                &name,
                "mlflow client run",
            )
        };
        let (r, _) = s.open_record(&n, None).map_err(internal)?;
        Ok(Json(json!({"run": run_json(s, &r)?})))
    })
    .await
}

pub(super) async fn runs_search(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let exps: Vec<i64> = b
        .get("experiment_ids")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
                .parse::<i64>()
        })
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("experiment_ids must be experiment ids"))?;
    let mut filter =
        crate::store::search::Filter::parse(b.get("filter").and_then(|v| v.as_str()).unwrap_or(""))
            .map_err(|e| invalid(e.message))?;
    filter.view = view_of(b.get("run_view_type"))?;
    let order: Vec<String> = b
        .get("order_by")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let order = crate::store::search::parse_order(&order).map_err(|e| invalid(e.message))?;
    let max = b
        .get("max_results")
        .and_then(|v| v.as_u64())
        .unwrap_or(1000) as usize;
    if max > 50000 {
        return Err(invalid(format!(
            "Invalid value {max} for parameter 'max_results' supplied. It must be at most 50000"
        )));
    }
    let offset = match b.get("page_token").and_then(|v| v.as_str()) {
        Some(t) if !t.is_empty() => offset_of(t)?,
        _ => 0,
    };
    store(&ctx, move |s| {
        let (page, next) = s
            .search_runs(&exps, &filter, &order, offset, max)
            .map_err(internal)?;
        let runs = page
            .iter()
            .map(|f| run_json(s, &f.run))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = json!({"runs": runs});
        if let Some(n) = next {
            out["next_page_token"] = json!(token_of(n));
        }
        Ok(Json(out))
    })
    .await
}
