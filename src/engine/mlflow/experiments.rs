//! Experiments: create (with tags), read, search, rename, delete, restore, tags.
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::*;

pub(super) fn experiment_json(e: &crate::store::Experiment) -> Value {
    json!({"experiment_id": e.id.to_string(), "name": e.name,
           "artifact_location": format!("mlflow-artifacts:/{}", e.id),
           "lifecycle_stage": "active", "creation_time": (e.created * 1000.0) as i64,
           "last_update_time": (e.created * 1000.0) as i64, "tags": []})
}

pub(super) async fn experiments_get(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let id = q.get("experiment_id").cloned().unwrap_or_default();
    store(&ctx, move |s| {
        let n: i64 = id
            .parse()
            .map_err(|_| missing(format!("No Experiment with id={id} exists")))?;
        let e = s
            .experiment(n)
            .map_err(|_| missing(format!("No Experiment with id={id} exists")))?;
        Ok(Json(json!({"experiment": experiment_json(&e)})))
    })
    .await
}

pub(super) async fn experiments_get_by_name(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let name = q
        .get("experiment_name")
        .cloned()
        .ok_or_else(|| invalid("Missing value for required parameter 'experiment_name'"))?;
    store(&ctx, move |s| {
        match s.experiment_by_name(&name).map_err(internal)? {
            Some(e) => Ok(Json(json!({"experiment": experiment_json(&e)}))),
            None => Err(missing(format!(
                "Could not find experiment with name '{name}'"
            ))),
        }
    })
    .await
}

pub(super) async fn experiments_create(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let name = b
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("Missing value for required parameter 'name'"))?
        .to_string();
    store(&ctx, move |s| {
        if s.experiment_by_name(&name).map_err(internal)?.is_some() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "RESOURCE_ALREADY_EXISTS",
                format!("Experiment '{name}' already exists."),
            ));
        }
        let id = s.experiment_id(&name).map_err(internal)?;
        Ok(Json(json!({"experiment_id": id.to_string()})))
    })
    .await
}

pub(super) async fn experiments_search(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let filter = b
        .get("filter")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
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
            .search_experiments(&filter)
            .map_err(|e| invalid(e.message))?;
        let total = all_e.len();
        let page: Vec<Value> = all_e
            .iter()
            .skip(offset)
            .take(max)
            .map(experiment_json)
            .collect();
        let mut out = json!({"experiments": page});
        if offset + max < total {
            out["next_page_token"] = json!(token_of(offset + max));
        }
        Ok(Json(out))
    })
    .await
}

