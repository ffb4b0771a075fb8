//! A fake of what Azure ML has no emulator for: Azure AD's
//! token endpoint, ARM's Microsoft.MachineLearningServices workspace (jobs with a status
//! machine, codes, environments, data, datastores + listSecrets) and the run-history data
//! plane (children, paged). It validates request bodies against the shapes of the recorded
//! exchanges (§1) and rejects anything else with ARM's error body, so a wrong body fails a
//! test. Blobs go to a real Azurite and metrics to a real `mlflow server` when the test
//! starts them: completed jobs write their outputs and log their metrics there, as Azure ML
//! would.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const APP: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "fake-sp-secret-Q8x~rT2";
pub const SUB: &str = "0000aaaa-1111-2222-3333-444455556666";
pub const RG: &str = "rg-labhost";
pub const WS_NAME: &str = "ws-labhost";
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const BLOB_CONTAINER: &str = "azureml-blobstore-ws";
pub const ARTIFACT_CONTAINER: &str = "azureml";

pub fn ws_path() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS_NAME}")
}

#[derive(Default)]
pub struct Job {
    pub v: Value,
    pub gets: u32,
    pub cancel: bool,
    pub done: bool,
    pub children: Vec<Value>,
}

#[derive(Default)]
pub struct State {
    pub url: String,
    pub azurite: Option<String>,
    pub mlflow: Option<String>,
    pub tokens: Vec<String>,
    /// Scopes of the token requests, in order.
    pub token_scopes: Vec<String>,
    /// `METHOD path` of every ARM / data-plane request, with its time.
    pub requests: Vec<(String, std::time::Instant)>,
    /// The next this-many ARM requests answer 429 with Retry-After: 1.
    pub throttle: u32,
    /// Every token issued so far stops being valid once this many requests were served (the
    /// next call gets 401 invalid_token).
    pub expire_after: Option<usize>,
    pub jobs: BTreeMap<String, Job>,
    pub order: Vec<String>,
    pub codes: BTreeMap<String, Value>,
    pub envs: BTreeMap<String, Value>,
    /// Anonymous component versions (pipeline steps), `name/version` → the version.
    pub components: BTreeMap<String, Value>,
    /// Bodies the fake refused (what and why).
    pub rejected: Vec<String>,
    pub page_size: usize,
}

pub struct Fake {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Fake {
    /// Starts the fake on a free loopback port. `azurite`: Azurite's blob base URL
    /// (`http://127.0.0.1:P/devstoreaccount1`); `mlflow`: an mlflow server's URL.
    pub fn start(azurite: Option<String>, mlflow: Option<String>) -> Fake {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            url: url.clone(),
            azurite: azurite.clone(),
            mlflow,
            page_size: 2,
            ..Default::default()
        }));
        if let Some(a) = &azurite {
            create_containers(a, &[BLOB_CONTAINER, ARTIFACT_CONTAINER], false);
        }
        let st = state.clone();
        let app = axum::Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
            let st = st.clone();
            async move { handle(st, m, u, h, b).await }
        });
        rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake {
            url,
            state,
            rt: Some(rt),
        }
    }

    /// A settings file (InnerEye's `variables:`) pointing every base URL at the fakes.
    pub fn settings_yaml(&self, extra: &str) -> String {
        let st = self.state.lock().unwrap();
        let blob = st
            .azurite
            .as_ref()
            .map(|a| format!("  blob_url: {}\n", a.replace(AZURITE_ACCOUNT, "{account}")))
            .unwrap_or_default();
        format!(
            "variables:\n  subscription_id: {SUB}\n  resource_group: {RG}\n  workspace_name: {WS_NAME}\n  tenant_id: {TENANT}\n  application_id: {APP}\n  cluster: cpu-cluster\n  arm_url: {u}\n  authority_url: {u}\n  imds_url: {u}/imds-not-here\n{blob}{extra}",
            u = self.url
        )
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
}

pub fn container(azurite: &str, name: &str) -> labhost::modules::azure::blob::Container {
    use base64::Engine as _;
    labhost::modules::azure::blob::Container::new(
        format!("{azurite}/{name}"),
        labhost::modules::azure::blob::Cred::SharedKey {
            account: AZURITE_ACCOUNT.into(),
            key: base64::engine::general_purpose::STANDARD
                .decode(AZURITE_KEY)
                .unwrap(),
        },
    )
}

/// Creates containers in Azurite with Microsoft's own storage client (azure-storage-blob,
/// from the azure-ai-ml venv tests/run-all.sh makes): labhost itself never creates one.
/// `public`: anyone may list and read it (`public_access="container"`).
pub fn create_containers(azurite: &str, names: &[&str], public: bool) {
    let py = std::env::var("LABHOST_TEST_AZURE_SDK_PYTHON")
        .expect("LABHOST_TEST_AZURE_SDK_PYTHON (tests/run-all.sh installs azure-ai-ml)");
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={azurite};"
    );
    let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\nfrom azure.core.exceptions import ResourceExistsError\ns = BlobServiceClient.from_connection_string(sys.argv[1])\nfor n in sys.argv[3:]:\n    try:\n        s.create_container(n, public_access=sys.argv[2] or None)\n    except ResourceExistsError:\n        pass\n";
    let access = if public { "container" } else { "" };
    let out = std::process::Command::new(py)
        .args(["-c", script, &conn, access])
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "creating containers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn arm_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": code, "message": msg, "details": [], "additionalInfo": []}}),
        ),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    fn dec(s: &str) -> String {
        let b = s.replace('+', " ");
        let bytes = b.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(x) = u8::from_str_radix(&b[i + 1..i + 3], 16) {
                    out.push(x);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

fn query(u: &Uri) -> HashMap<String, String> {
    form(u.query().unwrap_or("").as_bytes())
}

async fn handle(st: Arc<Mutex<State>>, m: Method, u: Uri, h: HeaderMap, b: Bytes) -> Response {
    let path = u.path().to_string();
    // Azure AD.
    if path == format!("/{TENANT}/oauth2/v2.0/token") && m == Method::POST {
        let f = form(&b);
        let ct = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut s = st.lock().unwrap();
        s.token_scopes
            .push(f.get("scope").cloned().unwrap_or_default());
        if ct != "application/x-www-form-urlencoded"
            || f.get("grant_type").map(String::as_str) != Some("client_credentials")
            || !f.get("scope").is_some_and(|s| s.ends_with("/.default"))
        {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request", "error_description": "AADSTS900144: The request body must contain the following parameter: 'grant_type'."}))).into_response();
        }
        if f.get("client_id").map(String::as_str) != Some(APP) {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unauthorized_client", "error_description": format!("AADSTS700016: Application with identifier '{}' was not found in the directory.\r\nTrace ID: 1", f.get("client_id").cloned().unwrap_or_default())}))).into_response();
        }
        if f.get("client_secret").map(String::as_str) != Some(SECRET) {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: 2\r\nCorrelation ID: 3", "error_codes": [7000215]}))).into_response();
        }
        let tok = format!("fake-access-token-{}-{}", s.tokens.len(), fastrand::u64(..));
        s.tokens.push(tok.clone());
        return ok(
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}),
        );
    }
    if path == "/discovery" {
        let s = st.lock().unwrap();
        return ok(
            json!({"api": s.url, "history": s.url, "experimentation": s.url, "hyperdrive": s.url, "catalog": s.url}),
        );
    }
    // Everything else needs a valid bearer token.
    {
        let mut s = st.lock().unwrap();
        s.requests
            .push((format!("{m} {path}"), std::time::Instant::now()));
        let tok = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if s.expire_after == Some(s.requests.len() - 1) {
            s.expire_after = None;
            s.tokens.clear();
        }
        if !s.tokens.iter().any(|t| t == tok) {
            let mut r = arm_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            );
            r.headers_mut().insert("www-authenticate", "Bearer authorization_uri=\"https://login.microsoftonline.com/x\", error=\"invalid_token\", error_description=\"The access token is invalid\"".parse().unwrap());
            return r;
        }
        if s.throttle > 0 {
            s.throttle -= 1;
            let mut r = arm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Rate limit exceeded",
            );
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
    }
    let ws = ws_path();
    if let Some(rest) = path.strip_prefix(&format!("/history/v1.0{ws}/runs/")) {
        if let Some(parent) = rest.strip_suffix("/children") {
            let s = st.lock().unwrap();
            let Some(j) = s.jobs.get(parent) else {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("run {parent} not found"),
                );
            };
            let skip: usize = query(&u)
                .get("$continuationtoken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let page: Vec<Value> = j
                .children
                .iter()
                .skip(skip)
                .take(s.page_size)
                .cloned()
                .collect();
            let mut v = json!({"value": page});
            if skip + s.page_size < j.children.len() {
                v["continuationToken"] = (skip + s.page_size).to_string().into();
            }
            return ok(v);
        }
    }
    if let Some(id) = path.strip_prefix(&format!("/history/v1.0{ws}/runs/")) {
        // A run as run history has it: a failed run's error lives here, not in ARM's job.
        let s = st.lock().unwrap();
        let Some(j) = s.jobs.get(id) else {
            return arm_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("run {id} not found"),
            );
        };
        let p = &j.v["properties"];
        let mut v = json!({"runId": id, "status": p["status"], "experimentId": "e0", "tags": p["tags"], "properties": p["properties"]});
        if p["status"] == "Failed" {
            v["error"] = json!({"error": {"code": "UserError", "message": "Execution failed. User process 'python' exited with status code 1: ValueError: loss is nan"}});
        }
        return ok(v);
    }
    if path.starts_with("/history/") {
        return arm_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such run-history route",
        );
    }
    let q = query(&u);
    if !q.contains_key("api-version") {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let Some(rest) = path.strip_prefix(&ws) else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("no resource at {path}"),
        );
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let body: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
    match (m.as_str(), parts.as_slice()) {
        ("GET", []) => {
            let s = st.lock().unwrap();
            ok(
                json!({"id": ws, "name": WS_NAME, "type": "Microsoft.MachineLearningServices/workspaces", "properties": {
                "discoveryUrl": format!("{}/discovery", s.url),
                // Without an mlflow server: this fake, which has no MLflow routes (404).
                "mlFlowTrackingUri": s.mlflow.clone().unwrap_or_else(|| format!("{}/mlflow/v1.0{ws}", s.url)),
                "workspaceId": "aaaabbbb-cccc-dddd-eeee-ffff00001111"}}),
            )
        }
        ("GET", ["datastores"]) => ok(json!({"value": [datastore("workspaceblobstore")]})),
        ("GET", ["datastores", name]) => match *name {
            "workspaceblobstore" | "workspaceartifactstore" => ok(datastore(name)),
            _ => arm_error(
                StatusCode::NOT_FOUND,
                "UserError",
                &format!("datastore {name} not found"),
            ),
        },
        ("POST", ["datastores", _, "listSecrets"]) => {
            ok(json!({"secretsType": "AccountKey", "key": AZURITE_KEY}))
        }
        ("GET", ["codes", name, "versions", ver]) => {
            let s = st.lock().unwrap();
            match s.codes.get(&format!("{name}/{ver}")) {
                Some(v) => ok(v.clone()),
                None => arm_error(
                    StatusCode::NOT_FOUND,
                    "UserError",
                    &format!("code {name}:{ver} not found"),
                ),
            }
        }
        ("PUT", ["codes", name, "versions", ver]) => {
            let azurite = st.lock().unwrap().azurite.clone();
            let p = &body["properties"];
            let uri = p["codeUri"].as_str().unwrap_or("");
            let hash = p["properties"]["hash_sha256"].as_str().unwrap_or("");
            let want = format!(
                "{}/{BLOB_CONTAINER}/LocalUpload/{hash}/",
                azurite.clone().unwrap_or_default()
            );
            let mut why = None;
            if p["isAnonymous"] != json!(true)
                || p["properties"]["hash_version"] != json!("202208")
                || hash.len() != 64
            {
                why = Some("codes PUT: isAnonymous true, properties.hash_sha256 (64 hex) and hash_version 202208 are required".to_string());
            } else if !uri.starts_with(&want) {
                why = Some(format!("codes PUT: codeUri {uri} is not under {want}"));
            } else if let Some(a) = &azurite {
                let prefix = uri
                    .strip_prefix(&format!("{a}/{BLOB_CONTAINER}/"))
                    .unwrap_or("")
                    .to_string()
                    + "/";
                let items = container(a, BLOB_CONTAINER)
                    .list(&prefix)
                    .await
                    .unwrap_or_default();
                if items.is_empty() {
                    why = Some(format!("codes PUT: nothing was uploaded under {prefix}"));
                }
            }
            if let Some(w) = why {
                return reject(&st, w);
            }
            register(&st, "codes", name, ver, p)
        }
        ("PUT", ["environments", name, "versions", ver]) => {
            let p = &body["properties"];
            let built = p["build"]["contextUri"].is_string();
            if !(p["image"].is_string() || built)
                || !(p["condaFile"].is_null() || p["condaFile"].is_string())
            {
                return reject(&st, "environments PUT: properties.image (string) or build.contextUri is required; condaFile is a string".into());
            }
            register(&st, "environments", name, ver, p)
        }
        ("PUT", ["components", name, "versions", ver]) => {
            let p = &body["properties"];
            let check = check_component_spec(&p["componentSpec"], &st.lock().unwrap());
            if let Err(w) = check {
                return reject(&st, format!("components PUT: {w}"));
            }
            register(&st, "components", name, ver, p)
        }
        // A folder of rows in the workspace's blob store (tests of inputs run here).
        ("GET", ["data", "labhost-rows", "versions", ver]) => ok(json!({
            "id": format!("{ws}/data/labhost-rows/versions/{ver}"), "name": ver,
            "properties": {"dataType": "uri_folder",
                "dataUri": "azureml://datastores/workspaceblobstore/paths/rows/"}})),
        ("GET", [kind @ ("environments" | "data"), name, "versions"]) => {
            let known = matches!(
                (*kind, *name),
                ("environments", "AzureML-sklearn-1.5")
                    | ("environments", "AzureML-acpt-pytorch-2.8-cuda12.6")
                    | ("environments", "labhost-python")
                    | ("environments", "labhost-sklearn")
                    | ("environments", "labhost-torch-gpu")
                    | ("data", "cifar-10-example")
                    | ("data", "labhost-images")
                    | ("data", "labhost-rows")
            );
            if !known {
                return ok(json!({"value": []}));
            }
            let newest = if *kind == "data" { "2" } else { "33" };
            ok(
                json!({"value": [{"id": format!("{ws}/{kind}/{name}/versions/{newest}"), "name": newest}]}),
            )
        }
        ("PUT", ["jobs", name]) => put_job(&st, name, body).await,
        ("GET", ["jobs"]) => {
            let s = st.lock().unwrap();
            let skip: usize = q.get("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = s
                .order
                .iter()
                .rev()
                .skip(skip)
                .take(s.page_size)
                .filter_map(|n| s.jobs.get(n))
                .map(|j| j.v.clone())
                .collect();
            let mut v = json!({"value": page});
            if skip + s.page_size < s.order.len() {
                v["nextLink"] = format!(
                    "{}{ws}/jobs?api-version={}&$skip={}",
                    s.url,
                    q["api-version"],
                    skip + s.page_size
                )
                .into();
            }
            ok(v)
        }
        ("GET", ["jobs", name]) => get_job(&st, name).await,
        ("POST", ["jobs", name, "cancel"]) => {
            let mut s = st.lock().unwrap();
            let url = s.url.clone();
            let Some(j) = s.jobs.get_mut(*name) else {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "UserError",
                    &format!("job {name} not found"),
                );
            };
            j.cancel = true;
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().insert(
                "location",
                format!(
                    "{url}{ws}/operationResults/cancel-{name}?api-version={}",
                    q["api-version"]
                )
                .parse()
                .unwrap(),
            );
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            r
        }
        ("GET", ["operationResults", _]) => (StatusCode::OK, axum::Json(json!({}))).into_response(),
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("the fake has no route for {m} {rest}"),
        ),
    }
}

/// A refused body: recorded, answered with ARM's 400.
fn reject(st: &Arc<Mutex<State>>, why: String) -> Response {
    st.lock().unwrap().rejected.push(why.clone());
    arm_error(StatusCode::BAD_REQUEST, "UserError", &why)
}

/// A registered asset version (`codes` or `environments`), answered as ARM does.
fn register(st: &Arc<Mutex<State>>, kind: &str, name: &str, ver: &str, p: &Value) -> Response {
    let v = json!({"id": format!("{}/{kind}/{name}/versions/{ver}", ws_path()), "name": ver, "properties": p});
    let mut s = st.lock().unwrap();
    let map = match kind {
        "codes" => &mut s.codes,
        "components" => &mut s.components,
        _ => &mut s.envs,
    };
    map.insert(format!("{name}/{ver}"), v.clone());
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn datastore(name: &str) -> Value {
    let container = if name == "workspaceartifactstore" {
        ARTIFACT_CONTAINER
    } else {
        BLOB_CONTAINER
    };
    json!({"id": format!("{}/datastores/{name}", ws_path()), "name": name, "properties": {
        "datastoreType": "AzureBlob", "accountName": AZURITE_ACCOUNT, "containerName": container,
        "endpoint": "core.windows.net", "protocol": "https", "isDefault": name == "workspaceblobstore",
        "credentials": {"credentialsType": "AccountKey"}}})
}

fn iso(s: &str) -> bool {
    let ok = s.starts_with('P')
        && s.len() > 1
        && s.chars()
            .all(|c| c.is_ascii_digit() || "PTDHMS.".contains(c));
    ok && !s.ends_with('T')
}

const INPUT_TYPES: &[&str] = &[
    "literal",
    "uri_file",
    "uri_folder",
    "mltable",
    "custom_model",
    "mlflow_model",
    "triton_model",
];
const INPUT_MODES: &[&str] = &[
    "ReadOnlyMount",
    "ReadWriteMount",
    "Download",
    "Direct",
    "EvalMount",
    "EvalDownload",
];

fn check_env(v: &Value, st: &State, what: &str) -> Result<(), String> {
    let e = v
        .as_str()
        .ok_or(format!("{what}.environmentId is required (a string)"))?;
    let ws = ws_path();
    // `azureml:<name>@latest` as azure-ai-ml sends it (tests/azure_sdk): the service
    // resolves it (curated environments live in the `azureml` registry).
    let latest = e
        .strip_prefix("azureml:")
        .and_then(|r| r.strip_suffix("@latest"))
        .is_some_and(|n| !n.is_empty() && !n.contains([':', '/', '@']));
    let ok = latest
        || (e.starts_with("azureml:") && !e.contains('@') && e.matches(':').count() == 2)
        || e.starts_with("azureml://registries/")
        || (e.starts_with(&format!("{ws}/environments/")) && {
            let rest = e.strip_prefix(&format!("{ws}/environments/")).unwrap();
            let parts: Vec<&str> = rest.split('/').collect();
            parts.len() == 3
                && parts[1] == "versions"
                && (parts[0] != "CliV2AnonymousEnvironment"
                    || st.envs.contains_key(&format!("{}/{}", parts[0], parts[2])))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{what}.environmentId '{e}' is not an environment reference the service accepts (azureml:<name>:<version>, an ARM id of a registered version, azureml://registries/…)"))
    }
}

/// An anonymous component's spec (the YAML form azure-ai-ml registers): a command, the
/// anonymous name, code and environment as `azureml:` references the workspace knows.
fn check_component_spec(c: &Value, st: &State) -> Result<(), String> {
    if c["command"].as_str().is_none_or(|x| x.trim().is_empty()) {
        return Err("componentSpec.command is required".into());
    }
    if c["type"] != "command" || c["name"] != "azureml_anonymous" {
        return Err("componentSpec needs type command and name azureml_anonymous".into());
    }
    let env = c["environment"].as_str().unwrap_or("");
    let env = if env.starts_with("azureml:/subscriptions/") {
        &env["azureml:".len()..]
    } else {
        env
    };
    check_env(&Value::from(env), st, "componentSpec")?;
    if let Some(code) = c.get("code").and_then(Value::as_str) {
        let key = code
            .strip_prefix(&format!("azureml:{}/codes/", ws_path()))
            .map(|r| r.replace("/versions/", "/"));
        if !key.is_some_and(|k| st.codes.contains_key(&k)) {
            return Err(format!(
                "componentSpec.code '{code}' is not a registered code version"
            ));
        }
    }
    Ok(())
}

fn check_component(p: &Value, st: &State, what: &str) -> Result<(), String> {
    if p["command"].as_str().is_none_or(|c| c.trim().is_empty()) {
        return Err(format!("{what}.command is required"));
    }
    check_env(&p["environmentId"], st, what)?;
    if let Some(c) = p.get("codeId").filter(|c| !c.is_null()) {
        let c = c.as_str().unwrap_or("");
        let key = c
            .strip_prefix(&format!("{}/codes/", ws_path()))
            .map(|r| r.replace("/versions/", "/"));
        if !key.is_some_and(|k| st.codes.contains_key(&k)) && !c.starts_with("azureml:") {
            return Err(format!(
                "{what}.codeId '{c}' is not a registered code version"
            ));
        }
    }
    if let Some(ev) = p.get("environmentVariables").filter(|v| !v.is_null()) {
        if !ev
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
        {
            return Err(format!(
                "{what}.environmentVariables must map names to strings"
            ));
        }
    }
    match p.get("distribution") {
        None | Some(Value::Null) => {}
        Some(d) => match d["distributionType"].as_str() {
            Some("PyTorch" | "Mpi") if d["processCountPerInstance"].is_u64() => {}
            Some("TensorFlow") => {}
            _ => return Err(format!("{what}.distribution {d} is not PyTorch/Mpi (processCountPerInstance) or TensorFlow")),
        },
    }
    if let Some(r) = p.get("resources").filter(|r| !r.is_null()) {
        if !r["instanceCount"].is_u64() {
            return Err(format!("{what}.resources.instanceCount must be an integer"));
        }
        for k in r
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if ![
                "instanceCount",
                "instanceType",
                "shmSize",
                "dockerArgs",
                "properties",
                "locations",
                "maxInstanceCount",
            ]
            .contains(&k.as_str())
            {
                return Err(format!("{what}.resources.{k} is not a resources field"));
            }
        }
    }
    Ok(())
}

/// Validates a job body against the shapes Azure ML takes (its REST API, version 2024-10-01).
pub fn validate(body: &Value, st: &State) -> Result<(), String> {
    let p = &body["properties"];
    let Some(m) = p.as_object() else {
        return Err("the body must be {\"properties\": {...}}".into());
    };
    let common = [
        "jobType",
        "displayName",
        "description",
        "experimentName",
        "tags",
        "properties",
        "computeId",
        "identity",
        "services",
        "isArchived",
        "notificationSetting",
        "queueSettings",
        "inputs",
        "outputs",
    ];
    let own: &[&str] = match m.get("jobType").and_then(Value::as_str) {
        Some("Command") => &[
            "command",
            "codeId",
            "environmentId",
            "environmentVariables",
            "distribution",
            "resources",
            "limits",
        ],
        Some("Sweep") => &[
            "samplingAlgorithm",
            "searchSpace",
            "objective",
            "limits",
            "earlyTermination",
            "trial",
        ],
        Some("Pipeline") => &["jobs", "settings"],
        other => {
            return Err(format!(
                "jobType {other:?} is not Command, Sweep or Pipeline"
            ))
        }
    };
    for k in m.keys() {
        if !common.contains(&k.as_str()) && !own.contains(&k.as_str()) {
            return Err(format!(
                "properties.{k} is not a field of a {} job",
                m["jobType"]
            ));
        }
    }
    if !p["experimentName"].is_string() {
        return Err("properties.experimentName must be a string".into());
    }
    for k in ["tags", "properties"] {
        if !p[k].is_null()
            && !p[k]
                .as_object()
                .is_some_and(|t| t.values().all(Value::is_string))
        {
            return Err(format!("properties.{k} must map names to strings"));
        }
    }
    if let Some(c) = p.get("computeId") {
        if !c
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{}/computes/", ws_path())))
        {
            return Err(format!(
                "computeId {c} is not an ARM id of a compute of this workspace"
            ));
        }
    }
    for (k, i) in p["inputs"].as_object().into_iter().flatten() {
        let t = i["jobInputType"].as_str().unwrap_or("");
        if !INPUT_TYPES.contains(&t) {
            return Err(format!(
                "inputs.{k}.jobInputType '{t}' is not one of {INPUT_TYPES:?}"
            ));
        }
        if t == "literal" && !i["value"].is_string() {
            return Err(format!("inputs.{k}: a literal input needs a string value"));
        }
        if t != "literal" {
            if !i["uri"]
                .as_str()
                .is_some_and(|u| !u.starts_with("labhost-asset:") && !u.contains("@latest"))
            {
                return Err(format!(
                    "inputs.{k}.uri {} is not a URI the service resolves",
                    i["uri"]
                ));
            }
            if let Some(mo) = i.get("mode") {
                if !mo.as_str().is_some_and(|mo| INPUT_MODES.contains(&mo)) {
                    return Err(format!(
                        "inputs.{k}.mode {mo} is not one of {INPUT_MODES:?}"
                    ));
                }
            }
        }
    }
    for (k, o) in p["outputs"].as_object().into_iter().flatten() {
        if !o["jobOutputType"].is_string() {
            return Err(format!("outputs.{k}.jobOutputType is required"));
        }
    }
    match m["jobType"].as_str() {
        Some("Command") => {
            check_component(p, st, "properties")?;
            if let Some(l) = p.get("limits") {
                if l["jobLimitsType"] != "Command" || !l["timeout"].as_str().is_some_and(iso) {
                    return Err(format!("limits {l} must be {{jobLimitsType: Command, timeout: <ISO 8601 duration>}}"));
                }
            }
        }
        Some("Sweep") => {
            let sa = &p["samplingAlgorithm"];
            if !matches!(
                sa["samplingAlgorithmType"].as_str(),
                Some("Grid" | "Random" | "Bayesian")
            ) {
                return Err(format!(
                    "samplingAlgorithm {sa} has no samplingAlgorithmType Grid/Random/Bayesian"
                ));
            }
            let Some(space) = p["searchSpace"].as_object().filter(|s| !s.is_empty()) else {
                return Err("searchSpace is required".into());
            };
            for (k, e) in space {
                let ok = match (e[0].as_str(), e[1].as_array()) {
                    (Some("choice"), Some(a)) => a.len() == 1 && a[0].is_array(),
                    (Some("randint"), Some(a)) => a.len() == 1,
                    (Some("uniform" | "loguniform" | "normal" | "lognormal"), Some(a)) => {
                        a.len() == 2
                    }
                    (Some("quniform" | "qloguniform" | "qnormal" | "qlognormal"), Some(a)) => {
                        a.len() == 3
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "searchSpace.{k} {e} is not [type, [args]] (choice: [[values]])"
                    ));
                }
            }
            let o = &p["objective"];
            // The service reads the goal without regard to case: the recorded exchange sent
            // `Maximize`, azure-ai-ml 1.35 sends `maximize` (tests/azure_sdk).
            if !o["goal"].as_str().is_some_and(|g| {
                g.eq_ignore_ascii_case("maximize") || g.eq_ignore_ascii_case("minimize")
            }) || !o["primaryMetric"].is_string()
            {
                return Err(format!(
                    "objective {o} needs goal Maximize/Minimize and primaryMetric"
                ));
            }
            let l = &p["limits"];
            if l["jobLimitsType"] != "Sweep" || !l["maxTotalTrials"].is_u64() {
                return Err(format!(
                    "limits {l} must have jobLimitsType Sweep and maxTotalTrials"
                ));
            }
            for k in ["timeout", "trialTimeout"] {
                if !l[k].is_null() && !l[k].as_str().is_some_and(iso) {
                    return Err(format!("limits.{k} {} is not an ISO 8601 duration", l[k]));
                }
            }
            let et = &p["earlyTermination"];
            if !et.is_null()
                && !matches!(
                    et["policyType"].as_str(),
                    Some("Bandit" | "MedianStopping" | "TruncationSelection")
                )
            {
                return Err(format!("earlyTermination {et} has no known policyType"));
            }
            check_component(&p["trial"], st, "trial")?;
        }
        _ => {
            let Some(jobs) = p["jobs"].as_object().filter(|j| !j.is_empty()) else {
                return Err("a pipeline needs jobs".into());
            };
            // The pipeline node format azure-ai-ml sends (tests/azure_sdk): each step a
            // registered anonymous component and a node with snake_case inputs/outputs.
            for (k, j) in jobs {
                let component = match j["type"].as_str() {
                    Some("command") => &j["componentId"],
                    Some("sweep") => &j["trial"]["componentId"],
                    _ => {
                        return Err(format!(
                            "jobs.{k}.type {} is not command or sweep",
                            j["type"]
                        ))
                    }
                };
                let key = component
                    .as_str()
                    .and_then(|c| c.strip_prefix(&format!("{}/components/", ws_path())))
                    .map(|r| r.replace("/versions/", "/"));
                if !key.is_some_and(|key| st.components.contains_key(&key)) {
                    return Err(format!(
                        "jobs.{k}: componentId {component} is not a registered component version"
                    ));
                }
                for (name, i) in j["inputs"].as_object().into_iter().flatten() {
                    if !i["job_input_type"].is_string() {
                        return Err(format!("jobs.{k}.inputs.{name} needs job_input_type"));
                    }
                }
                for (name, o) in j["outputs"].as_object().into_iter().flatten() {
                    if !(o["job_output_type"].is_string() || o["type"] == "literal") {
                        return Err(format!("jobs.{k}.outputs.{name} needs job_output_type (or type literal with a binding)"));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn put_job(st: &Arc<Mutex<State>>, name: &str, body: Value) -> Response {
    let mut s = st.lock().unwrap();
    let ok_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let check = if ok_name {
        validate(&body, &s)
    } else {
        Err(format!("job name '{name}' is not valid"))
    };
    if let Err(w) = check {
        s.rejected.push(format!("{name}: {w}"));
        return arm_error(StatusCode::BAD_REQUEST, "UserError", &w);
    }
    let ws = ws_path();
    let mut v = json!({"id": format!("{ws}/jobs/{name}"), "name": name, "type": "Microsoft.MachineLearningServices/workspaces/jobs", "properties": body["properties"].clone()});
    let p = &mut v["properties"];
    p["status"] = "NotStarted".into();
    p["services"] = json!({"Studio": {"endpoint": format!("https://ml.azure.com/runs/{name}?wsid={ws}"), "jobServiceType": "Studio"}});
    if p["outputs"].is_null() {
        p["outputs"] = json!({});
    }
    p["outputs"]["default"] = json!({"jobOutputType": "uri_folder", "uri": format!("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{name}"), "mode": "ReadWriteMount"});
    if p["jobType"] == "Sweep" {
        p["properties"]["runTemplate"] = "HyperDrive".into();
        p["properties"]["azureml.runsource"] = "hyperdrive".into();
    }
    let created = !s.jobs.contains_key(name);
    if created {
        s.order.push(name.to_string());
    }
    s.jobs.insert(
        name.to_string(),
        Job {
            v: v.clone(),
            ..Default::default()
        },
    );
    (
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(v),
    )
        .into_response()
}

fn command_of(v: &Value) -> String {
    let p = &v["properties"];
    p["command"]
        .as_str()
        .or(p["trial"]["command"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The trials a fake sweep runs: choice lists crossed (other expressions give their first
/// argument), up to `max`; a random sweep runs `max`, going round the grid.
fn trials(space: &Value, max: usize, grid: bool) -> Vec<serde_json::Map<String, Value>> {
    let mut out = vec![serde_json::Map::new()];
    for (k, e) in space.as_object().into_iter().flatten() {
        let vals: Vec<Value> = match e[0].as_str() {
            Some("choice") => e[1][0].as_array().cloned().unwrap_or_default(),
            _ => vec![e[1][0].clone()],
        };
        out = out
            .into_iter()
            .flat_map(|m| {
                vals.iter().map(move |v| {
                    let mut m = m.clone();
                    m.insert(k.clone(), v.clone());
                    m
                })
            })
            .collect();
    }
    if grid {
        out.truncate(max);
        out
    } else {
        (0..max).map(|i| out[i % out.len()].clone()).collect()
    }
}

async fn get_job(st: &Arc<Mutex<State>>, name: &str) -> Response {
    let (finish, v) = {
        let mut s = st.lock().unwrap();
        let Some(j) = s.jobs.get_mut(name) else {
            return arm_error(
                StatusCode::NOT_FOUND,
                "UserError",
                &format!("Job {name} not found"),
            );
        };
        j.gets += 1;
        let cmd = command_of(&j.v);
        let status = j.v["properties"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let next = if ["Completed", "Failed", "Canceled"].contains(&status.as_str()) {
            status.clone()
        } else if j.cancel {
            if status == "CancelRequested" {
                "Canceled".into()
            } else {
                "CancelRequested".into()
            }
        } else {
            match j.gets {
                1 => "Queued".to_string(),
                2 => "Running".to_string(),
                _ if cmd.contains("sleep 3600") => "Running".to_string(),
                _ if cmd.contains("exit 1") => "Failed".to_string(),
                _ => "Completed".to_string(),
            }
        };
        j.v["properties"]["status"] = next.clone().into();
        let finish = next == "Completed" && !j.done;
        if finish {
            j.done = true;
        }
        (finish, j.v.clone())
    };
    if finish {
        complete(st, name, &v).await;
    }
    let v = st.lock().unwrap().jobs[name].v.clone();
    ok(v)
}

/// What a completed job leaves behind: children (a sweep), outputs in Azurite, metrics in
/// mlflow.
async fn complete(st: &Arc<Mutex<State>>, name: &str, v: &Value) {
    let (azurite, mlflow) = {
        let s = st.lock().unwrap();
        (s.azurite.clone(), s.mlflow.clone())
    };
    let p = &v["properties"];
    let exp = p["experimentName"]
        .as_str()
        .unwrap_or("Default")
        .to_string();
    let mut runs: Vec<(String, Option<String>)> = vec![];
    if p["jobType"] == "Sweep" {
        let max = p["limits"]["maxTotalTrials"].as_u64().unwrap_or(1) as usize;
        let mut kids = Vec::new();
        for (i, hp) in trials(
            &p["searchSpace"],
            max,
            p["samplingAlgorithm"]["samplingAlgorithmType"] == "Grid",
        )
        .into_iter()
        .enumerate()
        {
            let child = format!("{name}_{i}");
            let hp_text = serde_json::to_string(&Value::Object(hp)).unwrap();
            kids.push(json!({"runId": child, "parentRunId": name, "status": "Completed", "displayName": child,
                "runType": "azureml.hyperdrive.child", "experimentId": "e0",
                "tags": {"hyperparameters": hp_text, "mlflow.parentRunId": name}, "properties": {}}));
            runs.push((child, Some(name.to_string())));
        }
        let mut s = st.lock().unwrap();
        let ws = ws_path();
        for k in &kids {
            let child = k["runId"].as_str().unwrap().to_string();
            let cv = json!({"id": format!("{ws}/jobs/{child}"), "name": child, "properties": {
                "jobType": "Command", "status": "Completed", "experimentName": exp, "tags": k["tags"].clone(),
                "outputs": {"default": {"jobOutputType": "uri_folder", "uri": format!("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{child}")}}}});
            s.jobs.insert(
                child.clone(),
                Job {
                    v: cv,
                    done: true,
                    ..Default::default()
                },
            );
        }
        let best = kids
            .first()
            .and_then(|k| k["runId"].as_str())
            .unwrap_or("")
            .to_string();
        let j = s.jobs.get_mut(name).unwrap();
        j.children = kids;
        j.v["properties"]["properties"]["best_child_run_id"] = best.into();
    } else if p["jobType"] == "Command" {
        runs.push((name.to_string(), None));
    }
    let http = reqwest::Client::new();
    if let Some(a) = &azurite {
        {
            let art = container(a, ARTIFACT_CONTAINER);
            for (r, _) in &runs {
                let base = format!("ExperimentRun/dcid.{r}/outputs");
                for (f, body) in [
                    ("metrics.csv", "epoch,loss\n0,0.5\n1,0.25\n"),
                    ("checkpoints/best.ckpt", "best"),
                    ("checkpoints/last.ckpt", "last"),
                    ("checkpoints.txt", "not under checkpoints/"),
                ] {
                    art.put(&format!("{base}/{f}"), format!("{body} {r}").into_bytes())
                        .await
                        .unwrap();
                }
            }
            if p["outputs"].get("model").is_some() {
                container(a, BLOB_CONTAINER)
                    .put(
                        &format!("azureml/{name}/model/model.txt"),
                        b"weights".to_vec(),
                    )
                    .await
                    .unwrap();
            }
        }
    }
    if let Some(ml) = &mlflow {
        let api = format!("{ml}/api/2.0/mlflow");
        let e: Value = http
            .get(format!("{api}/experiments/get-by-name"))
            .query(&[("experiment_name", &exp)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let eid = match e["experiment"]["experiment_id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let c: Value = http
                    .post(format!("{api}/experiments/create"))
                    .json(&json!({"name": exp}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                c["experiment_id"].as_str().unwrap().to_string()
            }
        };
        for (r, parent) in &runs {
            let mut tags = vec![json!({"key": "azureml.job", "value": r})];
            if let Some(pn) = parent {
                tags.push(json!({"key": "mlflow.parentRunId", "value": pn}));
            }
            let c: Value = http
                .post(format!("{api}/runs/create"))
                .json(&json!({"experiment_id": eid, "run_name": r, "start_time": 0, "tags": tags}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = c["run"]["info"]["run_id"].as_str().unwrap().to_string();
            for (step, val) in [(0, 0.5), (1, 0.25)] {
                http.post(format!("{api}/runs/log-metric")).json(&json!({"run_id": id, "key": "loss", "value": val, "timestamp": 0, "step": step})).send().await.unwrap();
            }
            http.post(format!("{api}/runs/update"))
                .json(&json!({"run_id": id, "status": "FINISHED", "end_time": 1}))
                .send()
                .await
                .unwrap();
        }
    }
}
