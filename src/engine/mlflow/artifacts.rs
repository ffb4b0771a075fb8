//! Artifacts of runs and logged models through the proxy (`mlflow-artifacts`) and
//! `artifacts/list`, every path resolved beneath its root ([`crate::beneath`]).
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::*;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};

/// A run's artifact folder: `<run folder>/artifacts`.
pub(super) fn artifacts_dir(r: &Run) -> PathBuf {
    Path::new(&r.run_dir).join("artifacts")
}

/// `<exp>/<run>/artifacts/<rel>` → (run id, rel): `rel` relative and normalised (see
/// [`crate::beneath::rel_path`]), else 400.
pub(super) fn proxy_path(p: &str) -> Result<(i64, String), ApiError> {
    let parts: Vec<&str> = p.trim_start_matches('/').splitn(4, '/').collect();
    if parts.len() < 3 || parts[2] != "artifacts" {
        return Err(invalid(format!(
            "Invalid artifact path '{p}': want <experiment>/<run>/artifacts/<path>"
        )));
    }
    let id: i64 = parts[1]
        .parse()
        .map_err(|_| missing(format!("Run with id={} not found", parts[1])))?;
    let rel = safe_rel(parts.get(3).copied().unwrap_or(""))?;
    Ok((id, rel))
}

/// A client's artifact path, relative and normalised, or 400 saying why.
pub(super) fn safe_rel(rel: &str) -> Result<String, ApiError> {
    crate::beneath::rel_path(rel).map_err(|why| invalid(format!("Invalid artifact path: {why}")))
}

/// The run's artifact folder, opened for resolving beneath it (made when `create`).
pub(super) fn artifact_root(r: &Run, create: bool) -> Result<crate::beneath::Root, ApiError> {
    let d = artifacts_dir(r);
    crate::beneath::Root::open(&d, create)
        .map_err(|e| internal(crate::error::io_err("track", "cannot open", &d, &e)))
}

/// An I/O error under the artifact root: leaving the root is a 400, a missing file a 404.
pub(super) fn artifact_err(rel: &str, e: std::io::Error) -> ApiError {
    if crate::beneath::is_escape(&e) {
        invalid(format!(
            "Invalid artifact path '{rel}': it leads out of the run's artifacts (a symlink)"
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
    let (id, rel) = proxy_path(&p)?;
    if rel.is_empty() {
        return Err(invalid("an artifact needs a file path"));
    }
    store(&ctx, move |s| {
        let r = get_run(s, id)?;
        artifact_root(&r, true)?
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
    let (id, rel) = proxy_path(&p)?;
    store(&ctx, move |s| {
        let r = get_run(s, id)?;
        let root =
            artifact_root(&r, false).map_err(|_| missing(format!("File {rel} not found")))?;
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

/// The folder `rel` beneath the run's artifacts as MLflow's `files` (paths prefixed with
/// `rel` when `prefix_with_rel`, as `artifacts/list` gives them).
pub(super) fn list_dir(r: &Run, rel: &str, prefix_with_rel: bool) -> Result<Vec<Value>, ApiError> {
    let Ok(root) = artifact_root(r, false) else {
        return Ok(Vec::new());
    };
    let entries = root.list(rel).map_err(|e| artifact_err(rel, e))?;
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
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let id = run_id_of(&json!({"run_id": q.get("run_id").or(q.get("run_uuid"))}))?;
    let rel = safe_rel(q.get("path").map(String::as_str).unwrap_or(""))?;
    store(&ctx, move |s| {
        let r = get_run(s, id)?;
        Ok(Json(json!({
            "root_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp_of(&r), r.id),
            "files": list_dir(&r, &rel, true)?,
        })))
    })
    .await
}

pub(super) async fn artifacts_proxy_list(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let (id, rel) = proxy_path(q.get("path").map(String::as_str).unwrap_or(""))?;
    store(&ctx, move |s| {
        let r = get_run(s, id)?;
        Ok(Json(json!({"files": list_dir(&r, &rel, false)?})))
    })
    .await
}

