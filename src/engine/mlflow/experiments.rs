//! Experiments: create (with tags), read, search (filter, order, view type), rename, delete,
//! restore, tags.
use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::*;
use crate::store::mlflow::{ACTIVE, DELETED};
use crate::store::search::View;
use crate::store::Experiment;

pub(super) fn experiment_json(e: &Experiment, tags: &BTreeMap<String, String>) -> Value {
    let mut v = json!({"experiment_id": e.id.to_string(), "name": e.name,
           "artifact_location": format!("mlflow-artifacts:/{}", e.id),
           "lifecycle_stage": e.lifecycle, "creation_time": (e.created * 1000.0) as i64,
           "last_update_time": (e.updated * 1000.0) as i64});
    if !tags.is_empty() {
        v["tags"] = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
    }
    v
}

/// An experiment id from a request (`"3"` or `3`), or 400/404 as MLflow answers.
pub(super) fn experiment_id_of(v: Option<&Value>) -> Result<i64, ApiError> {
    let v = v.ok_or_else(|| invalid("Missing value for required parameter 'experiment_id'"))?;
    let s = v
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    s.parse::<i64>()
        .map_err(|_| missing(format!("No Experiment with id={s} exists")))
}

/// The experiment (deleted ones included), or 404.
pub(super) fn get_experiment(s: &Store, id: i64) -> Result<Experiment, ApiError> {
    s.experiment(id)
        .map_err(|_| missing(format!("No Experiment with id={id} exists")))
}

fn one_json(s: &Store, e: &Experiment) -> Result<Value, ApiError> {
    let tags = s
        .experiment_tags(e.id)
        .map_err(internal)?
        .into_iter()
        .collect();
    Ok(json!({"experiment": experiment_json(e, &tags)}))
}

pub(super) async fn experiments_get(
    State(ctx): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let id = experiment_id_of(q.get("experiment_id").map(|v| json!(v)).as_ref())?;
    store(&ctx, move |s| {
        let e = get_experiment(s, id)?;
        one_json(s, &e).map(Json)
    })
    .await
}

pub(super) async fn experiments_get_by_name(
    State(ctx): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let name = q
        .get("experiment_name")
        .cloned()
        .ok_or_else(|| invalid("Missing value for required parameter 'experiment_name'"))?;
    store(&ctx, move |s| {
        match s.experiment_by_name(&name).map_err(internal)? {
            Some(e) => one_json(s, &e).map(Json),
            None => Err(missing(format!(
                "Could not find experiment with name '{name}'"
            ))),
        }
    })
    .await
}

fn name_of(b: &Value, key: &str) -> Result<String, ApiError> {
    b.get(key)
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("Missing value for required parameter '{key}'")))
}

fn already(name: &str) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        "RESOURCE_ALREADY_EXISTS",
        format!("Experiment '{name}' already exists."),
    )
}

pub(super) async fn experiments_create(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let name = name_of(&b, "name")?;
    let tags = tags_of(&b)?;
    store(&ctx, move |s| {
        match s.create_experiment(&name, &tags).map_err(internal)? {
            Some(id) => Ok(Json(json!({"experiment_id": id.to_string()}))),
            None => Err(already(&name)),
        }
    })
    .await
}

/// The `tags` list of a request as `(key, value)` pairs.
pub(super) fn tags_of(b: &Value) -> Result<Vec<(String, String)>, ApiError> {
    b.get("tags")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .map(|t| kv(t, "Tag", 8000))
        .collect()
}

/// Deleting (`to` = deleted) or restoring an experiment; its runs follow, as MLflow's.
async fn set_lifecycle(ctx: EndpointState, b: Value, to: &'static str) -> ApiResult {
    let id = experiment_id_of(b.get("experiment_id"))?;
    store(&ctx, move |s| {
        let e = get_experiment(s, id)?;
        if to == DELETED && e.id == 0 {
            return Err(invalid("Cannot delete the default experiment '0'. This is an internally reserved experiment."));
        }
        s.set_experiment_lifecycle(id, to).map_err(internal)?;
        Ok(Json(json!({})))
    })
    .await
}

pub(super) async fn experiments_delete(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    set_lifecycle(ctx, b, DELETED).await
}

pub(super) async fn experiments_restore(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    set_lifecycle(ctx, b, ACTIVE).await
}

pub(super) async fn experiments_update(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = experiment_id_of(b.get("experiment_id"))?;
    let name = name_of(&b, "new_name")?;
    store(&ctx, move |s| {
        get_experiment(s, id)?;
        if s.rename_experiment(id, &name).map_err(internal)? {
            Ok(Json(json!({})))
        } else {
            Err(already(&name))
        }
    })
    .await
}

pub(super) async fn experiments_set_tag(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = experiment_id_of(b.get("experiment_id"))?;
    let (k, v) = kv(&b, "Tag", 5000)?;
    store(&ctx, move |s| {
        if get_experiment(s, id)?.lifecycle == DELETED {
            return Err(invalid(format!(
                "The experiment {id} must be in the 'active' state. Current state is deleted."
            )));
        }
        s.set_experiment_tag(id, &k, &v).map_err(internal)?;
        Ok(Json(json!({})))
    })
    .await
}

pub(super) async fn experiments_delete_tag(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let id = experiment_id_of(b.get("experiment_id"))?;
    let k = name_of(&b, "key")?;
    store(&ctx, move |s| {
        get_experiment(s, id)?;
        if s.delete_experiment_tag(id, &k).map_err(internal)? {
            Ok(Json(json!({})))
        } else {
            Err(missing(format!(
                "No tag with name: {k} in experiment with id {id}"
            )))
        }
    })
    .await
}

/// `run_view_type` / `view_type` of a search request (ACTIVE_ONLY when absent).
pub(super) fn view_of(v: Option<&Value>) -> Result<View, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(View::ActiveOnly),
        Some(x) => {
            let s = x
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string());
            View::parse(&s).ok_or_else(|| invalid(format!("Invalid value {s} for view type")))
        }
    }
}

/// The `order_by` strings of a request.
pub(super) fn order_of(b: &Value) -> Vec<String> {
    b.get("order_by")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

pub(super) async fn experiments_search(
    State(ctx): State<EndpointState>,
    Json(b): Json<Value>,
) -> ApiResult {
    let filter = b
        .get("filter")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let view = view_of(b.get("view_type"))?;
    let order = order_of(&b);
    let max = b
        .get("max_results")
        .and_then(|v| v.as_u64())
        .unwrap_or(1000) as usize;
    let offset = match b.get("page_token").and_then(|v| v.as_str()) {
        Some(t) if !t.is_empty() => offset_of(t)?,
        _ => 0,
    };
    store(&ctx, move |s| {
        let all_e = s
            .search_experiments(&filter, view, &order)
            .map_err(|e| invalid(e.message))?;
        let total = all_e.len();
        let page: Vec<Value> = all_e
            .iter()
            .skip(offset)
            .take(max)
            .map(|(e, t)| experiment_json(e, t))
            .collect();
        let mut out = json!({"experiments": page});
        if offset + max < total {
            out["next_page_token"] = json!(token_of(offset + max));
        }
        Ok(Json(out))
    })
    .await
}
