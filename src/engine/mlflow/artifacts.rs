//! Artifacts of runs and logged models through the proxy (`mlflow-artifacts`),
//! `artifacts/list` and `logged-models/<id>/artifacts/directories`, every path resolved beneath
//! its root ([`crate::beneath`]). A run's artifacts are `<run folder>/artifacts`; a logged
//! model's are `<state>/models/<model id>/artifacts`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::*;

/// Whose artifacts a path names.
pub(super) enum Owner {
    Run(i64),
    Model(String),
}

/// `<exp>/<run>/artifacts/<rel>` or `<exp>/models/<model id>/artifacts/<rel>` → (owner, rel):
/// `rel` relative and normalised (see [`crate::beneath::rel_path`]), else 400.
pub(super) fn proxy_path(p: &str) -> Result<(Owner, String), ApiError> {
    let p = p.trim_start_matches('/');
    let bad = || {
        invalid(format!(
            "Invalid artifact path '{p}': want <experiment>/<run>/artifacts/<path> or <experiment>/models/<model>/artifacts/<path>"
        ))
    };
    let parts: Vec<&str> = p.splitn(5, '/').collect();
    if parts.len() >= 4 && parts[1] == "models" && parts[3] == "artifacts" {
        let id = model_id_ok(parts[2])?;
        let rel = safe_rel(parts.get(4).copied().unwrap_or(""))?;
        return Ok((Owner::Model(id), rel));
    }
    let parts: Vec<&str> = p.splitn(4, '/').collect();
    if parts.len() < 3 || parts[2] != "artifacts" {
        return Err(bad());
    }
    let id: i64 = parts[1]
        .parse()
        .map_err(|_| missing(format!("Run with id={} not found", parts[1])))?;
    let rel = safe_rel(parts.get(3).copied().unwrap_or(""))?;
    Ok((Owner::Run(id), rel))
}

/// A client's artifact path, relative and normalised, or 400 saying why.
pub(super) fn safe_rel(rel: &str) -> Result<String, ApiError> {
    crate::beneath::rel_path(rel).map_err(|why| invalid(format!("Invalid artifact path: {why}")))
}

/// The artifact folder of `owner` (404 when the run or model does not exist).
pub(super) fn owner_dir(s: &Store, state: &Path, owner: &Owner) -> Result<PathBuf, ApiError> {
    match owner {
        Owner::Run(id) => Ok(Path::new(&get_run(s, *id)?.run_dir).join("artifacts")),
        Owner::Model(id) => {
            get_model(s, id, true)?;
            Ok(model_dir(state, id))
        }
    }
}

/// A folder opened for resolving beneath it (made when `create`).
fn root(d: &Path, create: bool) -> Result<crate::beneath::Root, ApiError> {
    crate::beneath::Root::open(d, create)
        .map_err(|e| internal(crate::error::io_err("track", "cannot open", d, &e)))
}

/// An I/O error under the artifact root: leaving the root is a 400, a missing file a 404.
pub(super) fn artifact_err(rel: &str, e: std::io::Error) -> ApiError {
    if crate::beneath::is_escape(&e) {
        invalid(format!(
            "Invalid artifact path '{rel}': it leads out of the artifacts folder (a symlink)"
        ))
    } else if e.kind() == std::io::ErrorKind::NotFound {
        missing(format!("File {rel} not found"))
    } else {
        internal(LabError::new("track", format!("{rel}: {e}")))
    }
}

pub(super) async fn artifact_put(
    State(ctx): State<EndpointState>,
    axum::extract::Path(p): axum::extract::Path<String>,
    body: Bytes,
) -> ApiResult {
    let (owner, rel) = proxy_path(&p)?;
    if rel.is_empty() {
        return Err(invalid("an artifact needs a file path"));
    }
    let state = ctx.state.clone();
    store(&ctx, move |s| {
        let d = owner_dir(s, &state, &owner)?;
        root(&d, true)?
            .write(&rel, &body)
            .map_err(|e| artifact_err(&rel, e))?;
        Ok(Json(json!({})))
    })
    .await
}

pub(super) async fn artifact_get(
    State(ctx): State<EndpointState>,
    axum::extract::Path(p): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (owner, rel) = proxy_path(&p)?;
    let state = ctx.state.clone();
    store(&ctx, move |s| {
        let d = owner_dir(s, &state, &owner)?;
        let root = root(&d, false).map_err(|_| missing(format!("File {rel} not found")))?;
        let data = root.read(&rel).map_err(|e| artifact_err(&rel, e))?;
        Ok((
            StatusCode::OK,
            [("content-disposition", "attachment")],
            data,
        )
            .into_response())
    })
    .await
}

/// The folder `rel` beneath `d` as MLflow's `files` (paths prefixed with `rel` when
/// `prefix_with_rel`, as `artifacts/list` gives them).
fn list_dir(d: &Path, rel: &str, prefix_with_rel: bool) -> Result<Vec<Value>, ApiError> {
    let Ok(root) = root(d, false) else {
        return Ok(Vec::new());
    };
    let entries = match root.list(rel) {
        Ok(e) => e,
        // MLflow lists a missing folder (or a file) as empty.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(20) => return Ok(Vec::new()),
        Err(e) => return Err(artifact_err(rel, e)),
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let path = if prefix_with_rel && !rel.is_empty() {
                format!("{rel}/{}", e.name)
            } else {
                e.name
            };
            if e.is_dir {
                json!({"path": path, "is_dir": true})
            } else {
                json!({"path": path, "is_dir": false, "file_size": e.size})
            }
        })
        .collect())
}

pub(super) async fn artifacts_list(
    State(ctx): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let id = run_id_of(&json!({"run_id": q.get("run_id").or(q.get("run_uuid"))}))?;
    let rel = safe_rel(q.get("path").map(String::as_str).unwrap_or(""))?;
    let state = ctx.state.clone();
    store(&ctx, move |s| {
        let r = get_run(s, id)?;
        let d = owner_dir(s, &state, &Owner::Run(id))?;
        let files = list_dir(&d, &rel, true)?;
        let mut out = json!({
            "root_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp_of(&r), r.id),
        });
        if !files.is_empty() {
            out["files"] = Value::Array(files);
        }
        Ok(Json(out))
    })
    .await
}

pub(super) async fn artifacts_proxy_list(
    State(ctx): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (owner, rel) = proxy_path(q.get("path").map(String::as_str).unwrap_or(""))?;
    let state = ctx.state.clone();
    store(&ctx, move |s| {
        let d = owner_dir(s, &state, &owner)?;
        let files = list_dir(&d, &rel, false)?;
        Ok(Json(if files.is_empty() {
            json!({})
        } else {
            json!({ "files": files })
        }))
    })
    .await
}

/// `logged-models/<id>/artifacts/directories?artifact_directory_path=…`.
pub(super) async fn model_artifacts_list(
    State(ctx): State<EndpointState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let id = model_id_ok(&id)?;
    let rel = safe_rel(
        q.get("artifact_directory_path")
            .map(String::as_str)
            .unwrap_or(""),
    )?;
    let state = ctx.state.clone();
    store(&ctx, move |s| {
        let m = get_model(s, &id, false)?;
        let files = list_dir(&model_dir(&state, &id), &rel, true)?;
        let mut out = json!({"root_uri": m["info"]["artifact_uri"]});
        if !files.is_empty() {
            out["files"] = Value::Array(files);
        }
        Ok(Json(out))
    })
    .await
}
