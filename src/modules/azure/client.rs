//! The HTTP client for ARM, the workspace data planes (run history) and the workspace MLflow
//! endpoint: bearer tokens from [`Auth`], `api-version` on every ARM call, 429/503 retried
//! after `Retry-After`, a 401 `invalid_token` retried once with a fresh token, ARM's error
//! body turned into one line that names the call.
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::auth::Auth;
use super::config::AzureConfig;
use crate::error::{LabError, LabResult};

/// Throttled or unavailable answers retried at most this many times.
const MAX_RETRIES: u32 = 6;
/// Longest wait a `Retry-After` is honoured with.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

pub struct Client {
    pub cfg: Arc<AzureConfig>,
    pub http: reqwest::Client,
    pub auth: Arc<Auth>,
    workspace: tokio::sync::OnceCell<Workspace>,
    /// Datastores with key or SAS credentials, by name, with when they were fetched (their
    /// secrets are asked to last an hour; see `Client::datastore`).
    pub(super) datastores:
        std::sync::Mutex<Vec<(Option<String>, std::time::Instant, super::assets::Datastore)>>,
}

/// What the workspace GET tells: where run history and MLflow live.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    /// `{api}` of the discovery document: run history lives under `{api}/history/v1.0`.
    pub api: String,
    /// The MLflow REST base (`…/mlflow/v2.0/subscriptions/…/workspaces/<ws>`).
    pub mlflow: String,
    pub workspace_guid: String,
}

/// An answer: status, body (JSON or Null) and the headers asked for.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub location: Option<String>,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("labhost/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

fn retry_after(h: &reqwest::header::HeaderMap, attempt: u32) -> Duration {
    let parsed = h
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .and_then(crate::util::secs_to_duration)
                .or_else(|| {
                    chrono::DateTime::parse_from_rfc2822(v.trim())
                        .ok()
                        .map(|t| {
                            let d = t.timestamp() as f64 - crate::clock::unix();
                            crate::util::secs_to_duration(d.max(0.0)).unwrap_or_default()
                        })
                })
        });
    parsed
        .unwrap_or_else(|| Duration::from_secs(1 << attempt.min(5)))
        .min(MAX_RETRY_AFTER)
}

/// ARM's `{"error":{"code","message"}}`, run history's `{"error":{…}}` or MLflow's
/// `{"error_code","message"}` as one line.
pub fn error_text(body: &Value, raw: &str) -> String {
    let e = &body["error"];
    if let Some(m) = e["message"].as_str() {
        let code = e["code"].as_str().unwrap_or("");
        let inner = e["details"]
            .as_array()
            .and_then(|d| d.first())
            .and_then(|d| d["message"].as_str())
            .filter(|d| *d != m)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return format!("{code}: {m}{inner}");
    }
    if let Some(m) = body["message"].as_str() {
        return format!("{}: {m}", body["error_code"].as_str().unwrap_or("error"));
    }
    raw.chars().take(300).collect()
}

impl Client {
    pub fn new(cfg: AzureConfig) -> Client {
        let http = http_client();
        let cfg = Arc::new(cfg);
        Client {
            auth: Arc::new(Auth::new(cfg.clone(), http.clone())),
            cfg,
            http,
            workspace: tokio::sync::OnceCell::new(),
            datastores: Default::default(),
        }
    }

    /// `{arm}{WS}{path}?api-version=…` (`path` may carry its own query).
    pub fn ws_url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}{}{path}{sep}api-version={}",
            self.cfg.arm_url,
            self.cfg.workspace_path(),
            self.cfg.api_version
        )
    }

    /// One call with the ARM-scope token; JSON in and out. Retries as the module doc says.
    pub async fn call(&self, method: Method, url: &str, body: Option<&Value>) -> LabResult<Answer> {
        self.call_scoped(method, url, body, &self.cfg.arm_scope.clone())
            .await
    }

    pub async fn call_scoped(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        scope: &str,
    ) -> LabResult<Answer> {
        let mut attempt = 0;
        let mut reauth = false;
        // What the user sees of the call: the path without host or query.
        let shown = {
            let no_query = url.split('?').next().unwrap_or(url);
            let path = no_query
                .split_once("://")
                .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
                .unwrap_or(no_query);
            format!("{method} {path}")
        };
        loop {
            let token = self.auth.token(scope).await?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            if let Some(b) = body {
                req = req.json(b);
            } else if method == Method::POST {
                req = req.header("Content-Length", "0");
            }
            let r = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < 2 && (e.is_connect() || e.is_timeout()) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(LabError::new(
                        "azure.http",
                        format!("{shown}: {}", e.without_url()),
                    ))
                }
            };
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            if (status == 429 || status == 503) && attempt < MAX_RETRIES {
                let wait = retry_after(&headers, attempt);
                tracing::info!(
                    "azure: {shown} answered {status}; retrying in {:.0} s (Retry-After)",
                    wait.as_secs_f64()
                );
                attempt += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == 401 && !reauth {
                let www = headers
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if www.contains("invalid_token") {
                    reauth = true;
                    self.auth.invalidate(scope).await;
                    continue;
                }
            }
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let raw = r.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            if !(200..300).contains(&status) {
                let kind = match status {
                    404 => "azure.not_found",
                    401 | 403 => "azure.auth",
                    429 => "azure.throttled",
                    _ => "azure.api",
                };
                return Err(LabError::new(
                    kind,
                    crate::redact::apply(&format!("{shown}: {status} {}", error_text(&body, &raw))),
                ));
            }
            return Ok(Answer {
                status,
                body,
                location,
            });
        }
    }

    pub async fn get(&self, url: &str) -> LabResult<Value> {
        Ok(self.call(Method::GET, url, None).await?.body)
    }

    pub async fn put(&self, url: &str, body: &Value) -> LabResult<Value> {
        Ok(self.call(Method::PUT, url, Some(body)).await?.body)
    }

    pub async fn post(&self, url: &str, body: Option<&Value>) -> LabResult<Answer> {
        self.call(Method::POST, url, body).await
    }

    /// The workspace's data-plane locations, fetched once.
    pub async fn workspace(&self) -> LabResult<Workspace> {
        self.workspace
            .get_or_try_init(|| async {
                self.cfg.require_workspace()?;
                let v = self.get(&self.ws_url("")).await?;
                let p = &v["properties"];
                let api = if !self.cfg.discovery_url.is_empty() {
                    self.discover(&self.cfg.discovery_url).await?
                } else if let Some(d) = p["discoveryUrl"].as_str() {
                    self.discover(d).await?
                } else {
                    return Err(LabError::new(
                        "azure.api",
                        "the workspace has no discoveryUrl (set discovery_url)",
                    ));
                };
                let mlflow = if !self.cfg.mlflow_url.is_empty() {
                    self.cfg.mlflow_url.clone()
                } else {
                    mlflow_base(p["mlFlowTrackingUri"].as_str().unwrap_or(""))
                };
                Ok(Workspace {
                    id: v["id"].as_str().unwrap_or_default().to_string(),
                    api,
                    mlflow,
                    workspace_guid: p["workspaceId"].as_str().unwrap_or_default().to_string(),
                })
            })
            .await
            .cloned()
    }

    async fn discover(&self, url: &str) -> LabResult<String> {
        let r =
            self.http.get(url).send().await.map_err(|e| {
                LabError::new("azure.http", format!("GET {url}: {}", e.without_url()))
            })?;
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["api"]
            .as_str()
            .map(|s| s.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                LabError::new(
                    "azure.api",
                    format!("the discovery document at {url} has no 'api' location"),
                )
            })
    }

    /// `{api}/history/v1.0{WS}{path}`.
    pub async fn history_url(&self, path: &str) -> LabResult<String> {
        let ws = self.workspace().await?;
        Ok(format!(
            "{}/history/v1.0{}{path}",
            ws.api,
            self.cfg.workspace_path()
        ))
    }
}

/// azureml-mlflow `get_mlflow_tracking_uri_v2`: `azureml://host/mlflow/v1.0/…` →
/// `https://host/mlflow/v2.0/…`.
pub fn mlflow_base(uri: &str) -> String {
    let u = match uri.strip_prefix("azureml://") {
        Some(rest) => format!("https://{rest}"),
        None => uri.to_string(),
    };
    u.replacen("/mlflow/v1.0/", "/mlflow/v2.0/", 1)
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_uri_becomes_the_v2_https_base() {
        assert_eq!(
            mlflow_base("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"),
            "https://westeurope.api.azureml.ms/mlflow/v2.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
        );
        assert_eq!(
            mlflow_base("http://127.0.0.1:5000/"),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn arm_and_mlflow_errors_read_as_one_line() {
        let v = serde_json::json!({"error": {"code": "UserError", "message": "bad compute", "details": [{"message": "cluster x not found"}]}});
        assert_eq!(
            error_text(&v, ""),
            "UserError: bad compute (cluster x not found)"
        );
        let v = serde_json::json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"});
        assert_eq!(error_text(&v, ""), "RESOURCE_DOES_NOT_EXIST: no run");
    }

    #[test]
    fn retry_after_reads_seconds_and_falls_back_to_backoff() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h, 0), Duration::from_secs(3));
        h.insert(reqwest::header::RETRY_AFTER, "9999".parse().unwrap());
        assert_eq!(retry_after(&h, 0), MAX_RETRY_AFTER);
        assert_eq!(retry_after(&Default::default(), 2), Duration::from_secs(4));
    }
}
