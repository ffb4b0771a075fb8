//! The engine connection and its errors.

use bollard::Docker;
use serde::Serialize;

use crate::error::{LabError, LabResult};

fn socket_hint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn unavailable(e: impl std::fmt::Display) -> LabError {
    LabError::new(
        "docker.unavailable",
        format!("cannot reach the Docker engine at {}: {e}", socket_hint()),
    )
}

/// A client for `DOCKER_HOST` (or the local socket), version-negotiated.
pub async fn connect() -> LabResult<Docker> {
    let d = Docker::connect_with_local_defaults().map_err(unavailable)?;
    d.negotiate_version().await.map_err(unavailable)
}

/// Maps engine errors to kinds a script can branch on.
pub fn engine_err(what: &str, e: bollard::errors::Error) -> LabError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 if message.contains("No such image") || message.contains("pull access denied") => "docker.image_not_found",
                404 => "docker.not_found",
                409 => "docker.conflict",
                400 if message.contains("mount") || message.contains("volume") || message.contains("bind") => "docker.invalid_mount",
                400 => "docker.invalid_argument",
                500 if message.contains("could not select device driver") => {
                    return LabError::new(
                        "docker.gpu_unavailable",
                        format!("{what}: GPUs requested but the engine has no NVIDIA runtime (install the NVIDIA container toolkit): {message}"),
                    )
                }
                _ => "docker.engine",
            };
            LabError::new(kind, format!("{what}: {message}"))
        }
        E::DockerStreamError { error } => {
            LabError::new("docker.engine", format!("{what}: {error}"))
        }
        E::RequestTimeoutError => LabError::new(
            "docker.engine",
            format!("{what}: the engine did not answer in time"),
        ),
        other => {
            let s = other.to_string();
            if s.contains("connect") || s.contains("No such file") || s.contains("socket") {
                unavailable(s)
            } else {
                LabError::new("docker.engine", format!("{what}: {s}"))
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
}

pub async fn ping() -> LabResult<()> {
    let d = connect().await?;
    d.ping()
        .await
        .map(|_| ())
        .map_err(|e| engine_err("ping", e))
}

pub async fn version() -> LabResult<VersionInfo> {
    let d = connect().await?;
    let v = d.version().await.map_err(|e| engine_err("version", e))?;
    Ok(VersionInfo {
        version: v.version.unwrap_or_default(),
        api_version: v.api_version.unwrap_or_default(),
        os: v.os.unwrap_or_default(),
        arch: v.arch.unwrap_or_default(),
    })
}

/// The gateway address of the engine's default bridge network (how its containers reach
/// the host), if it has one.
pub async fn bridge_gateway() -> Option<std::net::IpAddr> {
    let d = connect().await.ok()?;
    let n = d.inspect_network("bridge", None).await.ok()?;
    n.ipam?
        .config?
        .into_iter()
        .find_map(|c| c.gateway?.parse().ok())
}
