//! Azure AD tokens: a provider chain (service principal with a secret, workload identity,
//! managed identity through `IDENTITY_ENDPOINT` or IMDS, `az account get-access-token`), one
//! cache per scope that refreshes 5 minutes before expiry and refreshes once however many
//! callers wait. Tokens and keys never reach logs or errors:
//! every token is registered with `redact` the moment it arrives.
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::blob::percent_encode;
use super::config::AzureConfig;
use crate::error::{LabError, LabResult};

/// A token is refreshed this long before it expires (azure_identity's rule).
pub const REFRESH_EARLY_S: f64 = 300.0;

#[derive(Clone)]
pub struct Token {
    pub secret: String,
    /// Unix seconds.
    pub expires_at: f64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(***, expires_at {})", self.expires_at)
    }
}

/// One way to get a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Client-credentials flow with `APPLICATION_KEY`.
    ServicePrincipal,
    /// `AZURE_FEDERATED_TOKEN_FILE` sent as a client assertion.
    WorkloadIdentity { token_file: String },
    /// App Service / Azure ML compute: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`.
    IdentityEndpoint { endpoint: String, header: String },
    /// Azure VM instance metadata service.
    Imds,
    /// `az account get-access-token`.
    AzureCli,
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::ServicePrincipal => "service principal",
            Source::WorkloadIdentity { .. } => "workload identity",
            Source::IdentityEndpoint { .. } => "managed identity (IDENTITY_ENDPOINT)",
            Source::Imds => "managed identity (IMDS)",
            Source::AzureCli => "Azure CLI",
        }
    }
}

/// The sources to try, in order, for the configured `auth` mode, with why others were left
/// out (for the error when none works).
pub fn chain(cfg: &AzureConfig) -> (Vec<Source>, Vec<String>) {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mode = cfg.auth.as_str();
    let want = |m: &str| mode == "auto" || mode == m;
    if want("service_principal") {
        if cfg.application_key.is_some() {
            out.push(Source::ServicePrincipal);
        } else {
            skipped.push(format!(
                "service principal: no {} secret",
                super::config::APPLICATION_KEY
            ));
        }
    }
    if want("workload_identity") {
        match env("AZURE_FEDERATED_TOKEN_FILE") {
            Some(f) => out.push(Source::WorkloadIdentity { token_file: f }),
            None => skipped.push("workload identity: AZURE_FEDERATED_TOKEN_FILE not set".into()),
        }
    }
    if want("managed_identity") {
        match (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => {
                out.push(Source::IdentityEndpoint { endpoint, header })
            }
            _ => skipped.push("managed identity: IDENTITY_ENDPOINT not set".into()),
        }
        out.push(Source::Imds);
    }
    if want("cli") {
        out.push(Source::AzureCli);
    }
    (out, skipped)
}

/// The token cache and the chain that fills it. Shared by every client of one configuration.
pub struct Auth {
    cfg: Arc<AzureConfig>,
    http: reqwest::Client,
    /// One lock per scope: the first caller refreshes, the others wait and reuse.
    cache: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl Auth {
    pub fn new(cfg: Arc<AzureConfig>, http: reqwest::Client) -> Auth {
        Auth {
            cfg,
            http,
            cache: Default::default(),
        }
    }

    fn slot(&self, scope: &str) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(scope.to_string()).or_default().clone()
    }

    /// A valid token for `scope`, from the cache or fetched (once, however many wait).
    pub async fn token(&self, scope: &str) -> LabResult<String> {
        let slot = self.slot(scope);
        let mut t = slot.lock().await;
        if let Some(tok) = t.as_ref() {
            if tok.expires_at - REFRESH_EARLY_S > crate::clock::unix() {
                return Ok(tok.secret.clone());
            }
        }
        let fresh = self.fetch(scope).await?;
        let s = fresh.secret.clone();
        *t = Some(fresh);
        Ok(s)
    }

    /// Drops the cached token of `scope` (after a 401 `invalid_token`).
    pub async fn invalidate(&self, scope: &str) {
        *self.slot(scope).lock().await = None;
    }

    async fn fetch(&self, scope: &str) -> LabResult<Token> {
        let (sources, mut tried) = chain(&self.cfg);
        for src in &sources {
            match self.fetch_from(src, scope).await {
                Ok(t) => {
                    crate::redact::register(&t.secret);
                    tracing::debug!("azure: token for {scope} from {}", src.name());
                    return Ok(t);
                }
                // A source that is there but refuses (a wrong secret) ends the search: the
                // user configured it and must see its error.
                Err(Fail::Refused(e)) => return Err(e),
                Err(Fail::Unavailable(why)) => tried.push(format!("{}: {why}", src.name())),
            }
        }
        Err(LabError::new(
            "azure.auth",
            format!(
                "no Azure credential worked (auth: {}): {}. Configure a service principal (tenant_id, application_id and the {} secret), or run `az login`",
                self.cfg.auth,
                tried.join("; "),
                super::config::APPLICATION_KEY
            ),
        ))
    }

    async fn fetch_from(&self, src: &Source, scope: &str) -> Result<Token, Fail> {
        let cfg = &self.cfg;
        match src {
            Source::ServicePrincipal => {
                let secret = cfg.require_service_principal().map_err(Fail::Refused)?;
                self.client_credentials(scope, &[("client_secret", secret.to_string())])
                    .await
            }
            Source::WorkloadIdentity { token_file } => {
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    Fail::Refused(LabError::new(
                        "azure.auth",
                        format!("workload identity: cannot read {token_file}: {e}"),
                    ))
                })?;
                crate::redact::register(assertion.trim());
                self.client_credentials(
                    scope,
                    &[
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                        ),
                        ("client_assertion", assertion.trim().to_string()),
                    ],
                )
                .await
            }
            Source::IdentityEndpoint { endpoint, header } => {
                let resource = scope.trim_end_matches("/.default");
                let mut q = vec![("api-version", "2019-08-01"), ("resource", resource)];
                let client = std::env::var("DEFAULT_IDENTITY_CLIENT_ID").unwrap_or_default();
                if !client.is_empty() {
                    q.push(("client_id", &client));
                }
                let r = self
                    .http
                    .get(endpoint)
                    .query(&q)
                    .header("X-IDENTITY-HEADER", header)
                    .send()
                    .await
                    .map_err(|e| Fail::Unavailable(e.without_url().to_string()))?;
                managed_identity_token(r).await
            }
            Source::Imds => {
                let resource = scope.trim_end_matches("/.default");
                let r = self
                    .http
                    .get(&cfg.imds_url)
                    .query(&[("api-version", "2019-08-01"), ("resource", resource)])
                    .header("Metadata", "true")
                    .timeout(std::time::Duration::from_secs(2))
                    .send()
                    .await
                    .map_err(|_| Fail::Unavailable(format!("{} did not answer", cfg.imds_url)))?;
                managed_identity_token(r).await
            }
            Source::AzureCli => az_cli(scope, &cfg.tenant_id).await,
        }
    }

    /// The client-credentials grant (a secret or a federated assertion).
    async fn client_credentials(
        &self,
        scope: &str,
        cred: &[(&str, String)],
    ) -> Result<Token, Fail> {
        let cfg = &self.cfg;
        let tenant = if cfg.tenant_id.is_empty() {
            std::env::var("AZURE_TENANT_ID").unwrap_or_default()
        } else {
            cfg.tenant_id.clone()
        };
        let client = if cfg.application_id.is_empty() {
            std::env::var("AZURE_CLIENT_ID").unwrap_or_default()
        } else {
            cfg.application_id.clone()
        };
        if tenant.is_empty() || client.is_empty() {
            return Err(Fail::Refused(LabError::new(
                "azure.config",
                format!(
                    "tenant_id and application_id are needed to request a token: {}",
                    cfg.where_to_set(if tenant.is_empty() {
                        "tenant_id"
                    } else {
                        "application_id"
                    })
                ),
            )));
        }
        let url = format!("{}/{tenant}/oauth2/v2.0/token", cfg.authority_url);
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", client.clone()),
            ("grant_type", "client_credentials".into()),
            ("scope", scope.to_string()),
        ];
        form.extend(cred.iter().cloned());
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Fail::Refused(LabError::new(
                    "azure.auth",
                    format!("token request to {url}: {}", e.without_url()),
                ))
            })?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let desc = v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no error description");
            let first = desc.lines().next().unwrap_or(desc);
            return Err(Fail::Refused(LabError::new(
                "azure.auth",
                crate::redact::apply(&format!(
                    "Azure AD refused the token request for application {client} in tenant {tenant} ({status}): {first}"
                )),
            )));
        }
        parse_token(&v, "expires_in", true).ok_or_else(|| {
            Fail::Refused(LabError::new(
                "azure.auth",
                format!("{url} answered without access_token/expires_in"),
            ))
        })
    }
}

enum Fail {
    Unavailable(String),
    Refused(LabError),
}

/// `{access_token, expires_in}` (relative) or `{access_token, expires_on}` (unix, maybe a
/// string).
fn parse_token(v: &Value, field: &str, relative: bool) -> Option<Token> {
    let secret = v["access_token"]
        .as_str()
        .or(v["accessToken"].as_str())?
        .to_string();
    let n = match &v[field] {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.parse::<f64>().ok()?,
        _ => return None,
    };
    let expires_at = if relative {
        crate::clock::unix() + n
    } else {
        n
    };
    crate::redact::register(&secret);
    Some(Token { secret, expires_at })
}

async fn managed_identity_token(r: reqwest::Response) -> Result<Token, Fail> {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(Fail::Unavailable(format!(
            "{status}: {}",
            v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("")
        )));
    }
    parse_token(&v, "expires_on", false)
        .or_else(|| parse_token(&v, "expires_in", true))
        .ok_or_else(|| Fail::Unavailable("the answer had no access_token".into()))
}

async fn az_cli(scope: &str, tenant: &str) -> Result<Token, Fail> {
    let mut argv: Vec<String> = [
        "az",
        "account",
        "get-access-token",
        "-o",
        "json",
        "--scope",
        scope,
    ]
    .map(String::from)
    .to_vec();
    if !tenant.is_empty() {
        argv.extend(["--tenant".to_string(), tenant.to_string()]);
    }
    let cmd = crate::command::Command::Argv(argv);
    let opts = crate::modules::sh::RunOpts::default();
    let out = match crate::modules::sh::run(&cmd, &opts, None, crate::runtime::ctx().cancel.token())
        .await
    {
        Ok(o) => o,
        Err(e) if e.kind == "sh.not_found" => {
            return Err(Fail::Unavailable("`az` is not installed".into()))
        }
        Err(e) => return Err(Fail::Unavailable(e.message)),
    };
    if out.code != 0 {
        let line = out
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Fail::Unavailable(format!(
            "`az account get-access-token` failed: {}",
            crate::redact::apply(line.trim())
        )));
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| Fail::Unavailable(format!("`az` printed no JSON: {e}")))?;
    parse_token(&v, "expires_on", false).ok_or_else(|| {
        Fail::Unavailable("`az` printed no accessToken/expires_on (Azure CLI ≥ 2.54 needed)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_from_every_source_shape() {
        let t = parse_token(
            &serde_json::json!({"access_token": "tok-aad-1", "expires_in": 3599}),
            "expires_in",
            true,
        )
        .unwrap();
        assert!(t.expires_at > crate::clock::unix() + 3500.0);
        let t = parse_token(
            &serde_json::json!({"access_token": "tok-mi-1", "expires_on": "1900000000"}),
            "expires_on",
            false,
        )
        .unwrap();
        assert_eq!(t.expires_at, 1_900_000_000.0);
        let t = parse_token(
            &serde_json::json!({"accessToken": "tok-cli-1", "expires_on": 1900000001}),
            "expires_on",
            false,
        )
        .unwrap();
        assert_eq!(format!("{t:?}"), "Token(***, expires_at 1900000001)");
        assert_eq!(crate::redact::apply("x tok-cli-1 y"), "x *** y");
        assert_eq!(
            percent_encode("https://a.b/.default"),
            "https%3A%2F%2Fa.b%2F.default"
        );
    }
}
