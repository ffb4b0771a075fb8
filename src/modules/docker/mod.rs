//! `docker`: experiment containers through the Docker Engine API (bollard): GPUs, mounts,
//! labels, live logs, timeouts and cancellation. Replaces nussl's `DockerRunner` and
//! `run_in_docker`.
//!
//! - Attached runs stream stdout/stderr to the script's output, prefixed with the container
//!   name; a non-zero exit is a value, errors are for engine failures.
//! - Containers run as the invoking user (`uid:gid`) unless `user` says otherwise, so files
//!   written to bind mounts are yours.
//! - `shm_size` defaults to half the machine's memory — what `/dev/shm` gets on the host —
//!   instead of Docker's 64 MiB, which starves PyTorch data loaders (InnerEye's 440g is an
//!   Azure VM value).
//!
//! Layout: `client` (connection, engine errors, ping/version), `spec` (what a container
//! gets: the create body from a [`RunSpec`]), `containers` (attached and detached runs, logs,
//! wait/stop/kill/remove, ps), `output` (line reassembly of the multiplexed stream),
//! `images` (list, build, pull, remove), `names` (container names), `rhai` (the binding).
mod client;
mod containers;
mod images;
pub mod names;
mod output;
pub mod rhai;
mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::DeviceRequest;
use serde::Serialize;

use crate::error::{LabError, LabResult};

pub use client::{bridge_gateway, connect, engine_err, ping, version, VersionInfo};
pub use containers::{
    cleanup, cleanup_blocking, force_remove, kill, logs, ps, remove, run, start_detached, status,
    stop, wait, ContainerInfo,
};
pub use images::{
    build, context_tar, image_exists, images, pull, remove_image, BuildOpts, ImageInfo,
};
pub use spec::{create_body, default_shm_size};

/// Label on every container labhost starts.
pub const LABEL: &str = "labhost";
pub const LABEL_JOB: &str = "labhost.job";
pub const LABEL_COMMIT: &str = "labhost.git_commit";

/// What to give a container: a GPU lease's devices, all GPUs, a count, or device ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Gpus {
    None,
    All,
    Count(i64),
    Ids(Vec<String>),
}

impl Gpus {
    /// The `DeviceRequest` docker's `--gpus` would send (never Count together with DeviceIDs).
    pub fn device_requests(&self) -> Option<Vec<DeviceRequest>> {
        let base = DeviceRequest {
            driver: Some("nvidia".into()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        };
        match self {
            Gpus::None => None,
            Gpus::All => Some(vec![DeviceRequest {
                count: Some(-1),
                ..base
            }]),
            Gpus::Count(n) => Some(vec![DeviceRequest {
                count: Some(*n),
                ..base
            }]),
            Gpus::Ids(ids) => Some(vec![DeviceRequest {
                device_ids: Some(ids.clone()),
                ..base
            }]),
        }
    }

    /// `all`, `2`, `0,1` or `GPU-…,GPU-…` (the CLI's `--gpus`).
    pub fn parse(s: &str) -> Gpus {
        let s = s.trim();
        if s.is_empty() {
            Gpus::None
        } else if s == "all" {
            Gpus::All
        } else if let (Ok(n), false) = (s.parse::<i64>(), s.contains(',')) {
            Gpus::Count(n)
        } else {
            Gpus::Ids(s.split(',').map(|x| x.trim().to_string()).collect())
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

impl Volume {
    /// `host:container[:ro|:rw]`; a relative host path is taken from the working directory.
    pub fn parse(spec: &str) -> LabResult<Volume> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => {
                return Err(LabError::new(
                    "docker.invalid_mount",
                    format!("volume '{spec}' is not HOST:CONTAINER[:ro]"),
                ))
            }
        };
        if !matches!(mode, "ro" | "rw") {
            return Err(LabError::new(
                "docker.invalid_mount",
                format!("volume '{spec}': mode must be ro or rw, not '{mode}'"),
            ));
        }
        Volume::new(src, dst, mode == "ro")
    }

    pub fn new(src: &str, dst: &str, read_only: bool) -> LabResult<Volume> {
        if !dst.starts_with('/') {
            return Err(LabError::new(
                "docker.invalid_mount",
                format!("mount target '{dst}' must be an absolute path in the container"),
            ));
        }
        let source = std::env::current_dir().unwrap_or_default().join(src);
        if !source.exists() {
            return Err(LabError::new(
                "docker.invalid_mount",
                format!("mount source '{}' does not exist", source.display()),
            ));
        }
        Ok(Volume {
            source,
            target: dst.to_string(),
            read_only,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Image; `DOCKER_IMAGE_NAME` when empty.
    pub image: Option<String>,
    /// `None`: the image's own command.
    pub command: Option<Vec<String>>,
    pub name: Option<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub volumes: Vec<Volume>,
    /// nussl's mounts of these host folders: dataset → /storage/data, cache →
    /// /storage/cache, artifacts → /storage/artifacts, code → /workspace (also the working
    /// dir). Callers pass `experiment::dirs()`.
    pub storage: Option<crate::modules::experiment::Dirs>,
    /// The commit of the code the container runs (label `labhost.git_commit`); callers pass
    /// `git::head_commit`.
    pub git_commit: Option<String>,
    pub shm_size: Option<u64>,
    pub network: Option<String>,
    /// `host:ip` entries for the container's /etc/hosts (`host-gateway` is the engine's
    /// gateway to the host).
    pub extra_hosts: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub auto_remove: bool,
    pub gpus: Option<Gpus>,
    pub timeout: Option<Duration>,
    /// Text before every streamed line; default `[<name>] `.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunResult {
    pub exit_code: i64,
    pub duration: f64,
    pub id: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_match_the_docker_cli() {
        let all = serde_json::to_value(Gpus::parse("all").device_requests()).unwrap();
        assert_eq!(
            all,
            serde_json::json!([{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}])
        );
        let ids = serde_json::to_value(Gpus::parse("0,1").device_requests()).unwrap();
        assert_eq!(
            ids,
            serde_json::json!([{"Driver": "nvidia", "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]]}])
        );
        assert_eq!(Gpus::parse("2"), Gpus::Count(2));
        assert_eq!(Gpus::parse("GPU-a"), Gpus::Ids(vec!["GPU-a".into()]));
        assert_eq!(Gpus::None.device_requests(), None);
    }

    #[test]
    fn create_body_carries_mounts_labels_user_and_gpus() {
        let t = tempfile::tempdir().unwrap();
        let v = Volume::parse(&format!("{}:/data:ro", t.path().display())).unwrap();
        let spec = RunSpec {
            command: Some(vec!["python".into(), "train.py".into()]),
            volumes: vec![v],
            gpus: Some(Gpus::Ids(vec!["GPU-x".into()])),
            labels: [("exp".to_string(), "e1".to_string())].into(),
            env: [("LR".to_string(), "0.1".to_string())].into(),
            ..Default::default()
        };
        let b = create_body(&spec, "img").unwrap();
        let hc = b.host_config.unwrap();
        let m = &hc.mounts.unwrap()[0];
        assert_eq!(
            (m.target.as_deref(), m.read_only),
            (Some("/data"), Some(true))
        );
        assert_eq!(
            hc.device_requests.unwrap()[0].device_ids,
            Some(vec!["GPU-x".to_string()])
        );
        assert!(hc.shm_size.unwrap() >= 64 << 20);
        let labels = b.labels.unwrap();
        assert_eq!(labels["labhost"], "1");
        assert_eq!(labels["exp"], "e1");
        assert_eq!(b.env.unwrap(), vec!["LR=0.1"]);
        assert!(b.user.unwrap().contains(':'));
    }

    #[test]
    fn bad_volumes_are_clear() {
        assert_eq!(
            Volume::parse("/nope-xyz:/data").unwrap_err().kind,
            "docker.invalid_mount"
        );
        assert!(Volume::parse("/tmp:data")
            .unwrap_err()
            .message
            .contains("absolute path"));
        assert!(Volume::parse("/tmp:/d:rx")
            .unwrap_err()
            .message
            .contains("ro or rw"));
        assert!(Volume::parse("/tmp").is_err());
    }
}
