//! The job host's MLflow-compatible tracking endpoint (REST 2.0, as `mlflow server` 3.17
//! answers it): a training script that calls
//! `mlflow.log_param / log_metric / set_tag / log_artifact` reports into the run store when
//! it runs as a labhost job, unchanged. Served on 127.0.0.1 and a free port while the host
//! runs; each host job gets `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID` (its run id),
//! `MLFLOW_EXPERIMENT_ID` and `MLFLOW_TRACKING_TOKEN`.
//!
//! Access: loopback clients only, and every request must carry the host's random token
//! (`Authorization: Bearer …`, which the mlflow client sends from `MLFLOW_TRACKING_TOKEN`):
//! other users' processes on the machine cannot write into this user's runs.
//!
//! Metrics land in the same table as `LABHOST_METRICS` lines, so sweep policies see them as
//! they arrive. A client's `runs/update` to FINISHED/FAILED does not decide a job's status
//! (the client marks its run FINISHED from an exit hook even when the process then fails):
//! the host's view of the process does.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::store::{Metric, Run, Store};

mod artifacts;
mod experiments;
mod models;
mod registry;
mod runs;
pub mod ui;
use artifacts::*;
use axum::body::Bytes;
use experiments::*;
use models::*;
use registry::*;
use runs::*;

/// Where this process's endpoint listens, and its token.
static ENDPOINT: OnceLock<(u16, String)> = OnceLock::new();

/// The MLflow variables of a job run by this host: its client reports to this endpoint,
/// into its own run (a job that sets `MLFLOW_TRACKING_URI` itself keeps its own). A
/// container gets the loopback address here; [`container_uri`] rewrites it for its network.
pub fn job_env(
    run: &Run,
    experiment: Option<&str>,
    env: &mut std::collections::BTreeMap<String, String>,
) {
    let Some((port, token)) = endpoint() else {
        return;
    };
    if env.contains_key("MLFLOW_TRACKING_URI") {
        return;
    }
    env.insert(
        "MLFLOW_TRACKING_URI".into(),
        format!("http://127.0.0.1:{port}"),
    );
    env.insert("MLFLOW_TRACKING_TOKEN".into(), token.clone());
    env.insert("MLFLOW_RUN_ID".into(), run.id.to_string());
    env.insert(
        "MLFLOW_EXPERIMENT_ID".into(),
        run.experiment_id.unwrap_or(0).to_string(),
    );
    if let Some(name) = experiment {
        env.insert("MLFLOW_EXPERIMENT_NAME".into(), name.to_string());
    }
}

/// Where a container on `network` reaches this endpoint, and the `/etc/hosts` entries it
/// needs: `network: host` shares the host's loopback; a bridge network (the default) reaches
/// the host at the engine's bridge gateway, where the endpoint then also listens (still
/// token-protected; that address is the host's own, on a network only its containers are
/// on); `none` reaches nothing. `uri` is what [`job_env`] gave; a URI the job set itself is
/// kept.
pub async fn container_uri(uri: &str, network: Option<&str>) -> Option<(String, Vec<String>)> {
    let (port, _) = endpoint()?;
    if uri != format!("http://127.0.0.1:{port}") {
        return Some((uri.to_string(), Vec::new()));
    }
    match network {
        Some("host") => Some((uri.to_string(), Vec::new())),
        Some("none") => None,
        _ => {
            let gw = crate::modules::docker::bridge_gateway().await?;
            let p = gateway_port(gw).await?;
            Some((
                format!("http://host.docker.internal:{p}"),
                vec!["host.docker.internal:host-gateway".into()],
            ))
        }
    }
}

/// The port the endpoint listens on at `ip` (a bridge gateway), listening there first.
async fn gateway_port(ip: std::net::IpAddr) -> Option<u16> {
    static PORTS: tokio::sync::Mutex<Vec<(std::net::IpAddr, u16)>> =
        tokio::sync::Mutex::const_new(Vec::new());
    let mut ports = PORTS.lock().await;
    if let Some((_, p)) = ports.iter().find(|(i, _)| *i == ip) {
        return Some(*p);
    }
    let ctx = EndpointState {
        loopback_only: false,
        ..CONTEXT.get()?.clone()
    };
    let l = match tokio::net::TcpListener::bind((ip, 0)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("tracking endpoint: cannot listen on the bridge gateway {ip}: {e}; containers get no MLflow endpoint");
            return None;
        }
    };
    let port = l.local_addr().ok()?.port();
    tokio::spawn(async move {
        let app = router(ctx).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(l, app).await {
            tracing::warn!("tracking endpoint on the bridge gateway stopped: {e}");
        }
    });
    ports.push((ip, port));
    Some(port)
}

/// The endpoint's state (for more listeners).
static CONTEXT: OnceLock<EndpointState> = OnceLock::new();

/// `(port, token)` of this process's endpoint, once started.
pub fn endpoint() -> Option<&'static (u16, String)> {
    ENDPOINT.get()
}

#[derive(Clone)]
struct EndpointState {
    state: PathBuf,
    token: Option<String>,
    /// Refuse clients that are not on this machine (`labhost track serve --host` lifts it,
    /// with a token).
    loopback_only: bool,
}

/// Starts the endpoint on the runtime (once per process); `LABHOST_MLFLOW=off` leaves it off.
pub fn start(state: &Path) -> LabResult<()> {
    if ENDPOINT.get().is_some() || crate::config::mlflow_off() {
        return Ok(());
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LabError::new("track.serve", format!("cannot listen on 127.0.0.1: {e}")))?;
    l.set_nonblocking(true)
        .map_err(|e| LabError::new("track.serve", e.to_string()))?;
    let port = l
        .local_addr()
        .map_err(|e| LabError::new("track.serve", e.to_string()))?
        .port();
    let token = crate::util::random_token();
    if ENDPOINT.set((port, token.clone())).is_err() {
        return Ok(());
    }
    let ctx = EndpointState {
        state: state.to_path_buf(),
        token: Some(token),
        loopback_only: true,
    };
    let _ = CONTEXT.set(ctx.clone());
    let rt = &crate::runtime::ctx().rt;
    rt.spawn(async move {
        let Ok(l) = tokio::net::TcpListener::from_std(l) else {
            return;
        };
        let app = router(ctx).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(l, app).await {
            tracing::warn!("tracking endpoint stopped: {e}");
        }
    });
    Ok(())
}

/// Where a dashboard serving `state` says it is: `<state>/dashboard`, locked while it serves.
fn dashboard_file(state: &Path) -> PathBuf {
    state.join("dashboard")
}

/// Says that a dashboard serves `state` at `url` (without its token), for as long as the
/// returned file is kept open. `None` when another one already says so (the first stays).
fn announce_dashboard(state: &Path, url: &str) -> Option<std::fs::File> {
    use std::io::Write;
    let p = dashboard_file(state);
    std::fs::create_dir_all(state).ok()?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .ok()?;
    f.try_lock().ok()?;
    f.set_len(0).ok()?;
    f.write_all(url.as_bytes()).ok()?;
    Some(f)
}

/// The address of the dashboard serving `state`, while one does: what sweeps print as
/// their live page (`<url>/runs/<id>`).
pub fn dashboard_url(state: &Path) -> Option<String> {
    let p = dashboard_file(state);
    if !super::job_host::lock_held(&p) {
        return None;
    }
    let url = std::fs::read_to_string(p).ok()?;
    let url = url.trim();
    (!url.is_empty()).then(|| url.to_string())
}

/// Serves the endpoint on `addr` until the process ends (`labhost track serve`); `token`:
/// required from clients when given. Clients on other machines are refused unless `addr`
/// is not a loopback address (the caller requires a token then).
pub async fn serve(addr: SocketAddr, state: PathBuf, token: Option<String>) -> LabResult<()> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| LabError::new("track.serve", format!("cannot listen on {addr}: {e}")))?;
    let _announced = l
        .local_addr()
        .ok()
        .and_then(|a| announce_dashboard(&state, &format!("http://{a}")));
    let ctx = EndpointState {
        state,
        token,
        loopback_only: addr.ip().is_loopback(),
    };
    let app = router(ctx).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(l, app)
        .await
        .map_err(|e| LabError::new("track.serve", e.to_string()))
}

fn router(ctx: EndpointState) -> Router {
    let api = "/api/2.0/mlflow";
    Router::new()
        .route("/", get(ui::runs))
        .route("/experiments", get(ui::experiments))
        .route("/runs/{id}", get(ui::run))
        .route("/runs/{id}/events", get(ui::events))
        .route("/runs/{id}/series", get(ui::series::series))
        .route("/runs/{id}/files/{root}", get(ui::files::files_top))
        .route("/runs/{id}/files/{root}/{*path}", get(ui::files::files_in))
        .route("/runs/{id}/raw/{root}/{*path}", get(ui::files::raw))
        .route("/compare", get(ui::compare::compare))
        .route("/queue", get(ui::queue::queue))
        .route("/cron", get(ui::cron::cron))
        .route("/queue/events", get(ui::queue::events))
        .route("/runs/{id}/report.json", get(ui::report))
        .route("/static/{name}", get(ui::assets::serve))
        .route("/runs/{id}/cancel", post(ui::cancel))
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { "3.17.2" }))
        .route(&format!("{api}/experiments/get"), get(experiments_get))
        .route(
            &format!("{api}/experiments/get-by-name"),
            get(experiments_get_by_name),
        )
        .route(
            &format!("{api}/experiments/create"),
            post(experiments_create),
        )
        .route(&format!("{api}/runs/get"), get(runs_get))
        .route(&format!("{api}/runs/search"), post(runs_search))
        .route(
            &format!("{api}/experiments/search"),
            post(experiments_search),
        )
        .route(&format!("{api}/runs/create"), post(runs_create))
        .route(&format!("{api}/runs/update"), post(runs_update))
        .route(&format!("{api}/runs/log-metric"), post(log_metric))
        .route(&format!("{api}/runs/log-parameter"), post(log_parameter))
        .route(&format!("{api}/runs/log-batch"), post(log_batch))
        .route(&format!("{api}/runs/set-tag"), post(set_tag))
        .route(&format!("{api}/runs/delete-tag"), post(delete_tag))
        .route(&format!("{api}/runs/log-inputs"), post(log_inputs))
        .route(&format!("{api}/runs/outputs"), post(log_outputs))
        .route(&format!("{api}/runs/delete"), post(runs_delete))
        .route(&format!("{api}/runs/restore"), post(runs_restore))
        .route(
            &format!("{api}/experiments/delete"),
            post(experiments_delete),
        )
        .route(
            &format!("{api}/experiments/restore"),
            post(experiments_restore),
        )
        .route(
            &format!("{api}/experiments/update"),
            post(experiments_update),
        )
        .route(
            &format!("{api}/experiments/set-experiment-tag"),
            post(experiments_set_tag),
        )
        .route(
            &format!("{api}/experiments/delete-experiment-tag"),
            post(experiments_delete_tag),
        )
        .route(&format!("{api}/metrics/get-history"), get(get_history))
        .route(&format!("{api}/artifacts/list"), get(artifacts_list))
        .route(&format!("{api}/logged-models"), post(models_create))
        .route(&format!("{api}/logged-models/search"), post(models_search))
        .route(
            &format!("{api}/logged-models/{{model_id}}"),
            get(models_get).patch(models_finalize).delete(models_delete),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags"),
            patch(models_set_tags),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags/{{key}}"),
            delete(models_delete_tag),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/params"),
            post(models_log_params),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/artifacts/directories"),
            get(model_artifacts_list),
        )
        .route(&format!("{api}/registered-models/create"), post(rm_create))
        .route(&format!("{api}/registered-models/get"), get(rm_get))
        .route(&format!("{api}/registered-models/rename"), post(rm_rename))
        .route(&format!("{api}/registered-models/update"), patch(rm_update))
        .route(
            &format!("{api}/registered-models/delete"),
            delete(rm_delete),
        )
        .route(&format!("{api}/registered-models/search"), get(rm_search))
        .route(
            &format!("{api}/registered-models/get-latest-versions"),
            post(rm_latest).get(rm_latest),
        )
        .route(
            &format!("{api}/registered-models/set-tag"),
            post(rm_set_tag),
        )
        .route(
            &format!("{api}/registered-models/delete-tag"),
            delete(rm_delete_tag),
        )
        .route(
            &format!("{api}/registered-models/alias"),
            post(alias_set).delete(alias_delete).get(alias_get),
        )
        .route(&format!("{api}/model-versions/create"), post(mv_create))
        .route(&format!("{api}/model-versions/get"), get(mv_get))
        .route(&format!("{api}/model-versions/update"), patch(mv_update))
        .route(
            &format!("{api}/model-versions/transition-stage"),
            post(mv_transition),
        )
        .route(&format!("{api}/model-versions/delete"), delete(mv_delete))
        .route(&format!("{api}/model-versions/search"), get(mv_search))
        .route(
            &format!("{api}/model-versions/get-download-uri"),
            get(mv_download_uri),
        )
        .route(&format!("{api}/model-versions/set-tag"), post(mv_set_tag))
        .route(
            &format!("{api}/model-versions/delete-tag"),
            delete(mv_delete_tag),
        )
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/api/2.0/mlflow/traces", any(traces))
        .route("/api/2.0/mlflow/traces/{*rest}", any(traces))
        .route("/api/3.0/mlflow/traces", any(traces))
        .route("/api/3.0/mlflow/traces/{*rest}", any(traces))
        // MLflow's 1 MB request limit for the JSON API; artifacts may be any size.
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .merge(
            Router::new()
                .route(
                    "/api/2.0/mlflow-artifacts/artifacts/{*path}",
                    get(artifact_get).put(artifact_put),
                )
                .route(
                    "/api/2.0/mlflow-artifacts/artifacts",
                    get(artifacts_proxy_list),
                )
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// An MLflow error: `{"error_code", "message"}` with its HTTP status.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error_code": self.1, "message": self.2})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", m.into())
}

fn missing(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", m.into())
}

fn internal(e: LabError) -> ApiError {
    tracing::warn!("mlflow endpoint: internal error: {}", e.message);
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        e.message,
    )
}

/// What the client asks before it decides how to log (MLflow 3's `server-info`): a store
/// without workspaces, trace archival, multipart or presigned uploads.
async fn server_info() -> Json<Value> {
    Json(json!({
        "store_type": null, "workspaces_enabled": false, "trace_archival_enabled": false,
        "multipart_uploads_enabled": false, "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false, "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false},
    }))
}

/// Traces (MLflow's GenAI tracing) are not kept here: a clear error the client shows.
async fn traces() -> ApiError {
    ApiError(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED",
        "traces (MLflow GenAI tracing) are not supported by labhost's tracking endpoint; use a real mlflow server for tracing".into(),
    )
}

/// Loopback clients only (unless served beyond it); the token when one is set. Every
/// request is logged at debug level: method, path, status, time.
async fn guard(
    State(ctx): State<EndpointState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = std::time::Instant::now();
    let r = match admit(&ctx, peer, &headers, req.uri().query()) {
        Some(refused) => refused.into_response(),
        None => next.run(req).await,
    };
    tracing::debug!(
        "mlflow endpoint: {method} {path} {} {:.1} ms",
        r.status().as_u16(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    r
}

/// Why a request is refused before it is handled, if it is.
fn admit(
    ctx: &EndpointState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<ApiError> {
    if ctx.loopback_only && !peer.ip().is_loopback() {
        return Some(ApiError(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "only loopback clients".into(),
        ));
    }
    if let Some(t) = &ctx.token {
        let ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| v == t)
            // A browser on the dashboard: the token it brought once, then its cookie.
            || query.is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.strip_prefix("token=").is_some_and(|v| v == t))
            })
            || headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .any(|c| c.trim().strip_prefix(ui::COOKIE).and_then(|c| c.strip_prefix('=')) == Some(t.as_str()));
        if !ok {
            return Some(ApiError(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "a valid MLFLOW_TRACKING_TOKEN is required".into(),
            ));
        }
    }
    None
}

/// Runs `f` on the store off the async threads.
async fn store<T: Send + 'static>(
    ctx: &EndpointState,
    f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = ctx.state.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = None;
        let r = crate::store::with(&state, |s| {
            out = Some(f(s));
            Ok(())
        });
        match (r, out) {
            (_, Some(x)) => x,
            (Err(e), None) => Err(internal(e)),
            (Ok(()), None) => Err(internal(LabError::new("internal", "no result"))),
        }
    })
    .await
    .map_err(|e| internal(LabError::new("internal", e.to_string())))?
}

/// Paging tokens: base64 of `{"offset": n}`, as MLflow's (opaque to clients).
fn token_of(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

fn offset_of(token: &str) -> Result<usize, ApiError> {
    use base64::Engine as _;
    let bad = || invalid(format!("Invalid page token '{token}'"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("offset")
        .and_then(|o| o.as_u64())
        .map(|o| o as usize)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_tokens_are_base64_json_offsets_as_mlflows() {
        // MLflow's own token for offset 2.
        assert_eq!(super::token_of(2), "eyJvZmZzZXQiOiAyfQ==");
        for n in [0, 7, 1000, 123456] {
            assert_eq!(super::offset_of(&super::token_of(n)).ok(), Some(n));
        }
        assert!(super::offset_of("!!").is_err());
    }
}
