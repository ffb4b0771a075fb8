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

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::store::{Metric, Run, Store};

/// Where this process's endpoint listens, and its token.
static ENDPOINT: OnceLock<(u16, String)> = OnceLock::new();

/// The MLflow variables of a job run by this host: its client reports to this endpoint,
/// into its own run (a job that sets `MLFLOW_TRACKING_URI` itself keeps its own; a container
/// cannot reach the host's loopback).
pub fn job_env(
    run: &Run,
    experiment: Option<&str>,
    env: &mut std::collections::BTreeMap<String, String>,
) {
    let Some((port, token)) = endpoint() else {
        return;
    };
    if run.spec.run_in == crate::store::RunIn::Docker || env.contains_key("MLFLOW_TRACKING_URI") {
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

/// Serves the endpoint on `addr` until the process ends (`labhost track serve`); `token`:
/// required from clients when given. Clients on other machines are refused unless `addr`
/// is not a loopback address (the caller requires a token then).
pub async fn serve(addr: SocketAddr, state: PathBuf, token: Option<String>) -> LabResult<()> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| LabError::new("track.serve", format!("cannot listen on {addr}: {e}")))?;
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
        .route(&format!("{api}/metrics/get-history"), get(get_history))
        .route(&format!("{api}/artifacts/list"), get(artifacts_list))
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
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        e.message,
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
    let r = match admit(&ctx, peer, &headers) {
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
fn admit(ctx: &EndpointState, peer: SocketAddr, headers: &HeaderMap) -> Option<ApiError> {
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
            .is_some_and(|v| v == t);
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

fn run_id_of(body: &Value) -> Result<i64, ApiError> {
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

fn get_run(s: &Store, id: i64) -> Result<Run, ApiError> {
    s.get(id)
        .map_err(|_| missing(format!("Run with id={id} not found")))
}

fn status_name(r: &Run) -> &'static str {
    use crate::store::RunStatus::*;
    match r.status {
        Queued | Leased => "SCHEDULED",
        Running => "RUNNING",
        Completed => "FINISHED",
        Failed | TimedOut => "FAILED",
        Cancelled => "KILLED",
    }
}

fn ms(t: Option<f64>) -> Value {
    t.map(|x| json!((x * 1000.0) as i64)).unwrap_or(Value::Null)
}

fn exp_of(r: &Run) -> i64 {
    r.experiment_id.unwrap_or(0)
}

fn run_info(r: &Run) -> Value {
    json!({
        "run_id": r.id.to_string(), "run_uuid": r.id.to_string(),
        "experiment_id": exp_of(r).to_string(), "run_name": r.name,
        "status": status_name(r), "start_time": ms(r.started.or(Some(r.created))), "end_time": ms(r.ended),
        "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts", exp_of(r), r.id),
        "lifecycle_stage": "active",
    })
}

fn run_json(s: &Store, r: &Run) -> Result<Value, ApiError> {
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
    Ok(
        json!({"info": run_info(r), "data": {"metrics": metrics, "params": params, "tags": tags}, "inputs": {}, "outputs": {}}),
    )
}

async fn runs_get(
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

async fn runs_update(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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
                }
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

fn key_ok(k: &str) -> Result<(), ApiError> {
    if k.is_empty() || k.len() > 250 || k.contains("..") || k.starts_with('/') {
        return Err(invalid(format!(
            "Invalid key '{k}': keys are 1 to 250 characters, no '..' or leading '/'"
        )));
    }
    Ok(())
}

fn metric_of(m: &Value) -> Result<Metric, ApiError> {
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

/// A generated run name, as MLflow makes one for a run created without: `adjective-noun-N`.
fn run_name() -> String {
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
fn wire_value(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { f64::MAX } else { f64::MIN })
    } else {
        json!(v)
    }
}

fn kv(v: &Value, what: &str, max: usize) -> Result<(String, String), ApiError> {
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

async fn write(
    ctx: &EndpointState,
    id: i64,
    ms: Vec<Metric>,
    ps: Vec<(String, String)>,
    tags: Vec<(String, String)>,
) -> ApiResult {
    store(ctx, move |s| {
        get_run(s, id)?;
        match s.log_batch(id, &ms, &ps, &tags).map_err(internal)? {
            Ok(()) => Ok(Json(json!({}))),
            Err(k) => Err(invalid(format!("Changing param values is not allowed. Param with key='{k}' was already logged with a different value"))),
        }
    })
    .await
}

async fn log_metric(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    let m = metric_of(&b)?;
    write(&ctx, id, vec![m], vec![], vec![]).await
}

async fn log_parameter(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    let p = kv(&b, "Param", 6000)?;
    write(&ctx, id, vec![], vec![p], vec![]).await
}

async fn set_tag(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    let t = kv(&b, "Tag", 8000)?;
    write(&ctx, id, vec![], vec![], vec![t]).await
}

async fn delete_tag(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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

async fn log_inputs(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
    let id = run_id_of(&b)?;
    store(&ctx, move |s| get_run(s, id).map(|_| Json(json!({})))).await
}

async fn log_batch(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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
    write(&ctx, id, ms, ps, ts).await
}

async fn get_history(
    State(ctx): State<EndpointState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
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
        let all_m = s.metrics(id, Some(&key)).map_err(internal)?;
        let total = all_m.len();
        let ms: Vec<Value> = all_m
            .into_iter()
            .skip(offset)
            .take(max)
            .map(|m| json!({"key": m.name, "value": wire_value(m.value), "timestamp": (m.ts * 1000.0) as i64, "step": m.step}))
            .collect();
        let mut out = json!({"metrics": ms});
        if offset + max < total {
            out["next_page_token"] = json!(token_of(offset + max));
        }
        Ok(Json(out))
    })
    .await
}

fn experiment_json(e: &crate::store::Experiment) -> Value {
    json!({"experiment_id": e.id.to_string(), "name": e.name,
           "artifact_location": format!("mlflow-artifacts:/{}", e.id),
           "lifecycle_stage": "active", "creation_time": (e.created * 1000.0) as i64,
           "last_update_time": (e.created * 1000.0) as i64, "tags": []})
}

async fn experiments_get(
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

async fn experiments_get_by_name(
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

async fn experiments_create(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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

async fn runs_create(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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

/// A run's artifact folder: `<run folder>/artifacts`.
fn artifacts_dir(r: &Run) -> PathBuf {
    Path::new(&r.run_dir).join("artifacts")
}

/// `<exp>/<run>/artifacts/<rel>` → (run id, rel): `rel` relative and normalised (see
/// [`crate::beneath::rel_path`]), else 400.
fn proxy_path(p: &str) -> Result<(i64, String), ApiError> {
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
fn safe_rel(rel: &str) -> Result<String, ApiError> {
    crate::beneath::rel_path(rel).map_err(|why| invalid(format!("Invalid artifact path: {why}")))
}

/// The run's artifact folder, opened for resolving beneath it (made when `create`).
fn artifact_root(r: &Run, create: bool) -> Result<crate::beneath::Root, ApiError> {
    let d = artifacts_dir(r);
    crate::beneath::Root::open(&d, create)
        .map_err(|e| internal(crate::error::io_err("track", "cannot open", &d, &e)))
}

/// An I/O error under the artifact root: leaving the root is a 400, a missing file a 404.
fn artifact_err(rel: &str, e: std::io::Error) -> ApiError {
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

async fn artifact_put(
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

async fn artifact_get(
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
fn list_dir(r: &Run, rel: &str, prefix_with_rel: bool) -> Result<Vec<Value>, ApiError> {
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

async fn artifacts_list(
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

async fn artifacts_proxy_list(
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

async fn runs_search(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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
    let filter =
        crate::store::search::Filter::parse(b.get("filter").and_then(|v| v.as_str()).unwrap_or(""))
            .map_err(|e| invalid(e.message))?;
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

async fn experiments_search(State(ctx): State<EndpointState>, Json(b): Json<Value>) -> ApiResult {
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
