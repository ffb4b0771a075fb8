//! MLflow 3 logged models: create, get, finalize, delete, search, tags, params, and the
//! metrics a run logs against a model. Each model is one document (the REST API's
//! `{"info", "data"}` object) with a `deleted` flag; its artifacts are under
//! `<state>/models/<model id>/artifacts`, served by the proxy as
//! `mlflow-artifacts:/<experiment>/models/<model id>/artifacts`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::*;
use crate::store::mlflow::LOGGED_MODEL;
use crate::store::search::{DocFilter, DocVal};

/// A model id as MLflow makes them (`m-` and 32 hex digits), else 400: ids become folder names.
pub(super) fn model_id_ok(id: &str) -> Result<String, ApiError> {
    let hex = id.strip_prefix("m-").unwrap_or("");
    if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_string())
    } else {
        Err(missing(format!("Logged model with ID '{id}' not found.")))
    }
}

pub(super) fn model_dir(state: &Path, id: &str) -> PathBuf {
    state.join("models").join(id).join("artifacts")
}

/// The stored model (404 when missing, or deleted unless `allow_deleted`).
pub(super) fn get_model(s: &Store, id: &str, allow_deleted: bool) -> Result<Value, ApiError> {
    let not_found = || missing(format!("Logged model with ID '{id}' not found."));
    let m = s
        .doc(LOGGED_MODEL, id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if m["deleted"] == json!(true) && !allow_deleted {
        return Err(not_found());
    }
    Ok(m)
}

/// The model as the API shows it (without the stored `deleted` flag).
fn shown(mut m: Value) -> Value {
    if let Some(o) = m.as_object_mut() {
        o.remove("deleted");
    }
    m
}

fn now_ms() -> i64 {
    (crate::clock::unix() * 1000.0) as i64
}

fn pairs(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    v.and_then(|x| x.as_array())
        .into_iter()
        .flatten()
        .map(|t| kv(t, "Tag", 8000).map(|(k, v)| json!({"key": k, "value": v})))
        .collect()
}

/// Sets `list` entries by key (a later value replaces an earlier one).
fn merge(list: &mut Value, new: Vec<Value>) {
    let mut cur: Vec<Value> = list.as_array().cloned().unwrap_or_default();
    for n in new {
        cur.retain(|c| c["key"] != n["key"]);
        cur.push(n);
    }
    *list = Value::Array(cur);
}

pub(super) async fn models_create(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let exp = experiments::experiment_id_of(b.get("experiment_id"))?;
    let name = b
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(run_name);
    let tags = pairs(b.get("tags"))?;
    let params = pairs(b.get("params"))?;
    let model_type = b.get("model_type").cloned().unwrap_or(Value::Null);
    let run = b
        .get("source_run_id")
        .and_then(|v| v.as_str())
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    store(&ctx, move |s| {
        experiments::get_experiment(s, exp)?;
        if let Some(r) = &run {
            let id = r
                .parse::<i64>()
                .map_err(|_| missing(format!("Run with id={r} not found")))?;
            get_run(s, id)?;
        }
        let id = format!("m-{}", crate::util::random_token());
        let t = now_ms();
        let mut info = json!({
            "model_id": id, "experiment_id": exp.to_string(), "name": name,
            "creation_timestamp_ms": t, "last_updated_timestamp_ms": t,
            "artifact_uri": format!("mlflow-artifacts:/{exp}/models/{id}/artifacts"),
            "status": "LOGGED_MODEL_PENDING",
        });
        if !model_type.is_null() {
            info["model_type"] = model_type;
        }
        if let Some(r) = run {
            info["source_run_id"] = json!(r);
        }
        if !tags.is_empty() {
            info["tags"] = json!(tags);
        }
        let mut m = json!({"info": info, "data": {}});
        if !params.is_empty() {
            m["data"]["params"] = json!(params);
        }
        s.put_doc(LOGGED_MODEL, &id, &m).map_err(internal)?;
        Ok(Json(json!({"model": m})))
    })
    .await
}

/// Reads, changes and stores a model; answers `{"model": …}` after the change.
async fn update(
    ctx: &EndpointState,
    id: String,
    f: impl FnOnce(&mut Value) -> Result<(), ApiError> + Send + 'static,
) -> ApiResult {
    let id = model_id_ok(&id)?;
    store(ctx, move |s| {
        let mut m = get_model(s, &id, false)?;
        f(&mut m)?;
        m["info"]["last_updated_timestamp_ms"] = json!(now_ms());
        s.put_doc(LOGGED_MODEL, &id, &m).map_err(internal)?;
        Ok(Json(json!({"model": shown(m)})))
    })
    .await
}

pub(super) async fn models_get(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let id = model_id_ok(&id)?;
    let allow = q.get("allow_deleted").is_some_and(|v| v == "true");
    store(&ctx, move |s| {
        Ok(Json(json!({"model": shown(get_model(s, &id, allow)?)})))
    })
    .await
}

pub(super) async fn models_finalize(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    let status = match b.get("status") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => "LOGGED_MODEL_PENDING".into(),
            Some(2) => "LOGGED_MODEL_READY".into(),
            Some(3) => "LOGGED_MODEL_UPLOAD_FAILED".into(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if ![
        "LOGGED_MODEL_PENDING",
        "LOGGED_MODEL_READY",
        "LOGGED_MODEL_UPLOAD_FAILED",
    ]
    .contains(&status.as_str())
    {
        return Err(invalid("Missing value for required parameter 'status'"));
    }
    update(&ctx, id, move |m| {
        m["info"]["status"] = json!(status);
        Ok(())
    })
    .await
}

pub(super) async fn models_delete(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult {
    update(&ctx, id, |m| {
        m["deleted"] = json!(true);
        Ok(())
    })
    .await
    .map(|_| Json(json!({})))
}

pub(super) async fn models_set_tags(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    let tags = pairs(b.get("tags"))?;
    update(&ctx, id, move |m| {
        merge(&mut m["info"]["tags"], tags);
        Ok(())
    })
    .await
    .map(|_| Json(json!({})))
}

pub(super) async fn models_delete_tag(
    State(ctx): State<EndpointState>,
    axum::extract::Path((id, key)): axum::extract::Path<(String, String)>,
) -> ApiResult {
    update(&ctx, id.clone(), move |m| {
        let tags = m["info"]["tags"].as_array().cloned().unwrap_or_default();
        if !tags.iter().any(|t| t["key"] == json!(key)) {
            return Err(missing(format!(
                "No tag with key '{key}' found for logged model '{id}'"
            )));
        }
        m["info"]["tags"] = tags
            .into_iter()
            .filter(|t| t["key"] != json!(key))
            .collect();
        Ok(())
    })
    .await
    .map(|_| Json(json!({})))
}

pub(super) async fn models_log_params(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    let params = pairs(b.get("params"))?;
    update(&ctx, id, move |m| {
        merge(&mut m["data"]["params"], params);
        Ok(())
    })
    .await
    .map(|_| Json(json!({})))
}

/// Metrics a run logged with a `model_id`: added to that model's metrics too (unknown or
/// deleted models are left alone, as the run's own metric is what matters).
pub(super) fn link_metrics(s: &mut Store, run: i64, metrics: &[Value]) -> Result<(), ApiError> {
    let mut by_model: HashMap<String, Vec<Value>> = HashMap::new();
    for m in metrics {
        if let Some(id) = m
            .get("model_id")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
        {
            let mut x = m.clone();
            x["run_id"] = json!(run.to_string());
            by_model.entry(id.to_string()).or_default().push(x);
        }
    }
    for (id, ms) in by_model {
        let Ok(mut doc) = get_model(s, &id, false) else {
            continue;
        };
        let mut list = doc["data"]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.extend(ms);
        doc["data"]["metrics"] = Value::Array(list);
        s.put_doc(LOGGED_MODEL, &id, &doc).map_err(internal)?;
    }
    Ok(())
}

const NUMERIC_ATTRS: &[&str] = &[
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
];
const ATTRS: &[&str] = &[
    "name",
    "model_id",
    "model_type",
    "status",
    "source_run_id",
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
];

/// A model's value for a filter or sort key.
fn value_of(m: &Value, kind: &str, key: &str) -> Option<DocVal> {
    let info = &m["info"];
    let find = |list: &Value| {
        list.as_array()
            .into_iter()
            .flatten()
            .rfind(|x| x["key"] == json!(key))
            .cloned()
    };
    match kind {
        "metrics" => find(&m["data"]["metrics"])
            .and_then(|x| x["value"].as_f64())
            .map(DocVal::Num),
        "params" => find(&m["data"]["params"])
            .and_then(|x| x["value"].as_str().map(|s| DocVal::Text(s.into()))),
        "tags" => {
            find(&info["tags"]).and_then(|x| x["value"].as_str().map(|s| DocVal::Text(s.into())))
        }
        _ => match key {
            "creation_timestamp" | "creation_time" => {
                info["creation_timestamp_ms"].as_f64().map(DocVal::Num)
            }
            "last_updated_timestamp" | "last_updated_time" => {
                info["last_updated_timestamp_ms"].as_f64().map(DocVal::Num)
            }
            "status" => info["status"]
                .as_str()
                .map(|s| DocVal::Text(s.trim_start_matches("LOGGED_MODEL_").into())),
            k => info[k].as_str().map(|s| DocVal::Text(s.into())),
        },
    }
}

pub(super) async fn models_search(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let exps: Vec<String> = b
        .get("experiment_ids")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        })
        .collect();
    let filter = DocFilter::parse(
        b.get("filter").and_then(|v| v.as_str()).unwrap_or(""),
        |kind, key| kind == "metrics" || (kind == "attributes" && NUMERIC_ATTRS.contains(&key)),
        |key| ATTRS.contains(&key),
    )
    .map_err(|e| invalid(e.message))?;
    // [{"field_name", "ascending"}]; newest first by default.
    let mut order: Vec<(String, bool)> = b
        .get("order_by")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| {
            Some((
                o["field_name"].as_str()?.to_string(),
                o["ascending"].as_bool().unwrap_or(true),
            ))
        })
        .collect();
    if order.is_empty() {
        order.push(("creation_timestamp".into(), false));
    }
    let max = b.get("max_results").and_then(|v| v.as_u64()).unwrap_or(100) as usize;
    let offset = match b.get("page_token").and_then(|v| v.as_str()) {
        Some(t) if !t.is_empty() => offset_of(t)?,
        _ => 0,
    };
    store(&ctx, move |s| {
        let mut models: Vec<Value> = s
            .docs(LOGGED_MODEL)
            .map_err(internal)?
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| m["deleted"] != json!(true))
            .filter(|m| exps.iter().any(|e| m["info"]["experiment_id"] == json!(e)))
            .filter(|m| filter.matches(|kind, key| value_of(m, kind, key)))
            .collect();
        models.sort_by(|a, b| {
            for (field, asc) in &order {
                let (kind, key) = match field.split_once('.') {
                    Some((k, rest)) if ["metrics", "params", "tags", "attributes"].contains(&k) => {
                        (k, rest)
                    }
                    _ => ("attributes", field.as_str()),
                };
                let c = match (value_of(a, kind, key), value_of(b, kind, key)) {
                    (Some(DocVal::Num(x)), Some(DocVal::Num(y))) => x.total_cmp(&y),
                    (Some(DocVal::Text(x)), Some(DocVal::Text(y))) => x.cmp(&y),
                    (Some(_), None) => return std::cmp::Ordering::Less,
                    (None, Some(_)) => return std::cmp::Ordering::Greater,
                    _ => std::cmp::Ordering::Equal,
                };
                let c = if *asc { c } else { c.reverse() };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            std::cmp::Ordering::Equal
        });
        let total = models.len();
        let page: Vec<Value> = models
            .into_iter()
            .skip(offset)
            .take(max)
            .map(shown)
            .collect();
        let mut out = json!({"models": page});
        if offset + max < total {
            out["next_page_token"] = json!(token_of(offset + max));
        }
        Ok(Json(out))
    })
    .await
}
