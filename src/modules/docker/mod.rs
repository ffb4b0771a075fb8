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
pub mod names;
pub mod rhai;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, HostResult};
use crate::host::Stream;

/// Label on every container labhost starts.
pub const LABEL: &str = "labhost";
pub const LABEL_JOB: &str = "labhost.job";
pub const LABEL_COMMIT: &str = "labhost.git_commit";

fn socket_hint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn unavailable(e: impl std::fmt::Display) -> HostError {
    HostError::new(
        "docker.unavailable",
        format!("cannot reach the Docker engine at {}: {e}", socket_hint()),
    )
}

/// A client for `DOCKER_HOST` (or the local socket), version-negotiated.
pub async fn connect() -> HostResult<Docker> {
    let d = Docker::connect_with_local_defaults().map_err(unavailable)?;
    d.negotiate_version().await.map_err(unavailable)
}

/// Maps engine errors to kinds a script can branch on.
pub fn engine_err(what: &str, e: bollard::errors::Error) -> HostError {
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
                    return HostError::new(
                        "docker.gpu_unavailable",
                        format!("{what}: GPUs requested but the engine has no NVIDIA runtime (install the NVIDIA container toolkit): {message}"),
                    )
                }
                _ => "docker.engine",
            };
            HostError::new(kind, format!("{what}: {message}"))
        }
        E::DockerStreamError { error } => {
            HostError::new("docker.engine", format!("{what}: {error}"))
        }
        E::RequestTimeoutError => HostError::new(
            "docker.engine",
            format!("{what}: the engine did not answer in time"),
        ),
        other => {
            let s = other.to_string();
            if s.contains("connect") || s.contains("No such file") || s.contains("socket") {
                unavailable(s)
            } else {
                HostError::new("docker.engine", format!("{what}: {s}"))
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

pub async fn ping() -> HostResult<()> {
    let d = connect().await?;
    d.ping()
        .await
        .map(|_| ())
        .map_err(|e| engine_err("ping", e))
}

pub async fn version() -> HostResult<VersionInfo> {
    let d = connect().await?;
    let v = d.version().await.map_err(|e| engine_err("version", e))?;
    Ok(VersionInfo {
        version: v.version.unwrap_or_default(),
        api_version: v.api_version.unwrap_or_default(),
        os: v.os.unwrap_or_default(),
        arch: v.arch.unwrap_or_default(),
    })
}

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
    pub fn parse(spec: &str) -> HostResult<Volume> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => {
                return Err(HostError::new(
                    "docker.invalid_mount",
                    format!("volume '{spec}' is not HOST:CONTAINER[:ro]"),
                ))
            }
        };
        if !matches!(mode, "ro" | "rw") {
            return Err(HostError::new(
                "docker.invalid_mount",
                format!("volume '{spec}': mode must be ro or rw, not '{mode}'"),
            ));
        }
        Volume::new(src, dst, mode == "ro")
    }

    pub fn new(src: &str, dst: &str, read_only: bool) -> HostResult<Volume> {
        if !dst.starts_with('/') {
            return Err(HostError::new(
                "docker.invalid_mount",
                format!("mount target '{dst}' must be an absolute path in the container"),
            ));
        }
        let source = std::env::current_dir().unwrap_or_default().join(src);
        if !source.exists() {
            return Err(HostError::new(
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
    /// nussl's mounts: dataset → /storage/data, cache → /storage/cache,
    /// artifacts → /storage/artifacts, code → /workspace (also the working dir).
    pub storage: bool,
    pub shm_size: Option<u64>,
    pub network: Option<String>,
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

/// Half the machine's memory (the host's own /dev/shm default), at least 64 MiB.
pub fn default_shm_size() -> u64 {
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages > 0 && page > 0 {
        ((pages as u64 * page as u64) / 2).max(64 << 20)
    } else {
        2 << 30
    }
}

/// The full create body for a spec: image, command, mounts, GPUs, labels, user.
pub fn create_body(spec: &RunSpec, image: &str) -> HostResult<ContainerCreateBody> {
    let mut mounts: Vec<Mount> = spec
        .volumes
        .iter()
        .map(|v| Mount {
            target: Some(v.target.clone()),
            source: Some(v.source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(v.read_only),
            ..Default::default()
        })
        .collect();
    let mut workdir = spec.workdir.clone();
    if spec.storage {
        let d = crate::modules::experiment::dirs();
        for (host, target) in [
            (&d.dataset, "/storage/data"),
            (&d.cache, "/storage/cache"),
            (&d.artifacts, "/storage/artifacts"),
            (&d.code, "/workspace"),
        ] {
            crate::modules::fs::mkdir(Path::new(host))?;
            mounts.push(Mount {
                target: Some(target.into()),
                source: Some(host.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            });
        }
        workdir.get_or_insert_with(|| "/workspace".into());
    }
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL.into(), "1".into());
    if let Ok(job) = std::env::var("LABHOST_JOB_ID") {
        labels.entry(LABEL_JOB.into()).or_insert(job);
    }
    if let Ok(i) = crate::modules::git::info(Path::new("."), &Default::default()) {
        labels.entry(LABEL_COMMIT.into()).or_insert(i.commit_id);
    }
    let user = spec
        .user
        .clone()
        .unwrap_or_else(|| unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) });
    let host_config = HostConfig {
        mounts: (!mounts.is_empty()).then_some(mounts),
        shm_size: Some(spec.shm_size.unwrap_or_else(default_shm_size) as i64),
        auto_remove: Some(spec.auto_remove),
        network_mode: spec.network.clone(),
        device_requests: spec.gpus.as_ref().and_then(Gpus::device_requests),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: workdir,
        user: Some(user),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

fn resolve_image(spec: &RunSpec) -> HostResult<String> {
    spec.image
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| {
            std::env::var("DOCKER_IMAGE_NAME")
                .ok()
                .filter(|i| !i.is_empty())
        })
        .ok_or_else(|| {
            HostError::new(
                "docker.no_image",
                "no image given and DOCKER_IMAGE_NAME is not set",
            )
        })
}

/// Creates (not starts) a container; returns (id, name).
async fn create(d: &Docker, spec: &RunSpec) -> HostResult<(String, String)> {
    let image = resolve_image(spec)?;
    let name = match &spec.name {
        Some(n) => names::sanitize(n),
        None => names::from_command(spec.command.as_deref().unwrap_or(&[])),
    };
    let body = create_body(spec, &image)?;
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let r = d
        .create_container(Some(opts), body)
        .await
        .map_err(|e| engine_err(&format!("cannot create container '{name}'"), e))?;
    Ok((r.id, name))
}

/// Removes a container, ignoring "already gone".
pub async fn force_remove(d: &Docker, id: &str) {
    let _ = d
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// Splits chunks into lines per stream, so a line is never interleaved with another.
#[derive(Default)]
struct Lines {
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Lines {
    fn push(&mut self, s: Stream, data: &[u8], emit: &mut dyn FnMut(Stream, &str)) {
        let buf = if s == Stream::Out {
            &mut self.out
        } else {
            &mut self.err
        };
        buf.extend_from_slice(data);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            emit(
                s,
                String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'),
            );
        }
    }

    fn flush(&mut self, emit: &mut dyn FnMut(Stream, &str)) {
        for (s, buf) in [(Stream::Out, &mut self.out), (Stream::Err, &mut self.err)] {
            if !buf.is_empty() {
                emit(s, &String::from_utf8_lossy(buf));
                buf.clear();
            }
        }
    }
}

/// Runs a container attached: output streamed to `emit`, exit code returned. A timeout kills
/// the container (`docker.timeout`); cancellation kills it and returns `cancelled`.
///
/// The engine's own auto-remove is not used here: a wait request reaches the engine only when
/// its stream is first polled, and one registered after the container was already removed
/// waits forever. Instead, when the output ends the container has exited: labhost reads the
/// exit code (`not-running` answers at once) and removes the container itself.
pub async fn run(
    spec: &RunSpec,
    emit: &mut (dyn FnMut(Stream, &str) + Send),
    cancel: CancellationToken,
) -> HostResult<RunResult> {
    let d = connect().await?;
    let started = Instant::now();
    let created = RunSpec {
        auto_remove: false,
        ..spec.clone()
    };
    let (id, name) = create(&d, &created).await?;
    let prefix = spec.prefix.clone().unwrap_or_else(|| format!("[{name}] "));
    // Attached before the start, so the stream sees all output. No `logs` replay: with it the
    // engine also sends the log file, and output written while the attach was being set up
    // came twice (seen once in CI: "from-cli\nfrom-cli\n").
    let attach = d
        .attach_container(
            &id,
            Some(
                AttachContainerOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .logs(false)
                    .build(),
            ),
        )
        .await
        .map_err(|e| engine_err("cannot attach", e));
    let mut att = match attach {
        Ok(a) => a,
        Err(e) => {
            force_remove(&d, &id).await;
            return Err(e);
        }
    };
    if let Err(e) = d.start_container(&id, None).await {
        force_remove(&d, &id).await;
        return Err(engine_err(&format!("cannot start container '{name}'"), e));
    }
    let mut lines = Lines::default();
    let mut out = |s: Stream, l: &str| emit(s, &format!("{prefix}{l}"));
    let pump = async {
        while let Some(chunk) = att.output.next().await {
            match chunk {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => {
                    lines.push(Stream::Out, &message, &mut out)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    lines.push(Stream::Err, &message, &mut out)
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The output has ended, so the container has exited: this answers at once.
        exit_code(&d, &id).await.0
    };
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        code = pump => Ok(code),
        _ = timeout => Err(HostError::new("docker.timeout", format!(
            "container '{name}' timed out after {:.1}s and was killed", spec.timeout.unwrap_or_default().as_secs_f64()))),
        _ = cancel.cancelled() => Err(HostError::cancelled()),
    };
    lines.flush(&mut out);
    if outcome.is_err() {
        let _ = d
            .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
            .await;
    }
    if spec.auto_remove {
        force_remove(&d, &id).await;
    }
    outcome.map(|code| RunResult {
        exit_code: code,
        duration: started.elapsed().as_secs_f64(),
        id,
        name,
    })
}

/// Detached containers to stop when the script ends or is interrupted (`stop_on_exit`).
static TO_STOP: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts a container in the background; returns (id, name).
pub async fn start_detached(spec: &RunSpec, stop_on_exit: bool) -> HostResult<(String, String)> {
    let d = connect().await?;
    let (id, name) = create(&d, spec).await?;
    if let Err(e) = d.start_container(&id, None).await {
        force_remove(&d, &id).await;
        return Err(engine_err(&format!("cannot start container '{name}'"), e));
    }
    if stop_on_exit {
        TO_STOP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
    }
    Ok((id, name))
}

/// Kills the detached containers started with `stop_on_exit` (when the script ends, normally
/// or by Ctrl-C). Cheap when there are none.
pub fn cleanup_blocking() {
    if TO_STOP.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    crate::host::ctx().rt.block_on(cleanup());
}

/// Kills the registered detached containers.
pub async fn cleanup() {
    let ids: Vec<String> = std::mem::take(&mut *TO_STOP.lock().unwrap_or_else(|e| e.into_inner()));
    if ids.is_empty() {
        return;
    }
    if let Ok(d) = connect().await {
        for id in ids {
            let _ = d
                .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
                .await;
        }
    }
}

pub async fn status(id: &str) -> HostResult<String> {
    let d = connect().await?;
    let c = d
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| engine_err("inspect", e))?;
    Ok(c.state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default())
}

/// Logs so far (`follow: false`) or until the container stops (`follow: true`, each line
/// sent to `emit` as it comes). `tail`: only the last N lines.
pub async fn logs(
    id: &str,
    follow: bool,
    tail: Option<i64>,
    emit: &mut (dyn FnMut(Stream, &str) + Send),
) -> HostResult<String> {
    let d = connect().await?;
    let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail)
        .build();
    let mut s = d.logs(id, Some(opts));
    let mut all = String::new();
    let mut lines = Lines::default();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| engine_err("logs", e))?;
        let (st, msg) = match chunk {
            bollard::container::LogOutput::StdErr { message } => (Stream::Err, message),
            bollard::container::LogOutput::StdOut { message }
            | bollard::container::LogOutput::Console { message } => (Stream::Out, message),
            _ => continue,
        };
        all.push_str(&String::from_utf8_lossy(&msg));
        if follow {
            lines.push(st, &msg, emit);
        }
    }
    if follow {
        lines.flush(emit);
    }
    Ok(all)
}

/// The exit code of a container once it is not running: `(code, the first engine error)`.
/// A non-zero exit arrives as a wait "error" carrying the code.
async fn exit_code(d: &Docker, id: &str) -> (i64, Option<bollard::errors::Error>) {
    let mut w = d.wait_container(
        id,
        Some(
            WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build(),
        ),
    );
    let (mut code, mut err) = (0, None);
    while let Some(r) = w.next().await {
        match r {
            Ok(x) => code = x.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    (code, err)
}

pub async fn wait(id: &str) -> HostResult<i64> {
    let d = connect().await?;
    match exit_code(&d, id).await {
        (_, Some(e)) => Err(engine_err("wait", e)),
        (code, None) => Ok(code),
    }
}

pub async fn stop(id: &str, timeout: Duration) -> HostResult<()> {
    let d = connect().await?;
    let opts = StopContainerOptionsBuilder::default()
        .t(timeout.as_secs() as i32)
        .build();
    d.stop_container(id, Some(opts))
        .await
        .map_err(|e| engine_err("stop", e))
}

pub async fn kill(id: &str) -> HostResult<()> {
    let d = connect().await?;
    d.kill_container(
        id,
        Some(
            KillContainerOptionsBuilder::default()
                .signal("SIGKILL")
                .build(),
        ),
    )
    .await
    .map_err(|e| engine_err("kill", e))
}

pub async fn remove(id: &str) -> HostResult<()> {
    let d = connect().await?;
    d.remove_container(
        id,
        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
    )
    .await
    .map_err(|e| engine_err("remove", e))
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
}

/// labhost's containers (running or not), optionally only those with `label` (`k` or `k=v`).
pub async fn ps(label: Option<&str>) -> HostResult<Vec<ContainerInfo>> {
    let d = connect().await?;
    let mut labels = vec![format!("{LABEL}=1")];
    labels.extend(label.map(str::to_string));
    let filters: HashMap<String, Vec<String>> = HashMap::from([("label".to_string(), labels)]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = d
        .list_containers(Some(opts))
        .await
        .map_err(|e| engine_err("list containers", e))?;
    Ok(list
        .into_iter()
        .map(|c| ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: c.image.unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            status: c.status.unwrap_or_default(),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
}

pub async fn images() -> HostResult<Vec<ImageInfo>> {
    let d = connect().await?;
    let list = d
        .list_images(Some(ListImagesOptionsBuilder::default().build()))
        .await
        .map_err(|e| engine_err("list images", e))?;
    Ok(list
        .into_iter()
        .map(|i| ImageInfo {
            id: i.id,
            tags: i.repo_tags,
            size: i.size,
        })
        .collect())
}

pub async fn image_exists(r: &str) -> HostResult<bool> {
    let d = connect().await?;
    match d.inspect_image(r).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(engine_err("inspect image", e)),
    }
}

pub async fn remove_image(r: &str) -> HostResult<()> {
    let d = connect().await?;
    d.remove_image(r, Some(RemoveImageOptionsBuilder::default().build()), None)
        .await
        .map(|_| ())
        .map_err(|e| engine_err(&format!("cannot remove image '{r}'"), e))
}

/// A tar of a build context folder (what `docker build` sends).
pub fn context_tar(dir: &Path) -> HostResult<Vec<u8>> {
    if !dir.is_dir() {
        return Err(HostError::new(
            "docker.invalid_argument",
            format!("build context '{}' is not a folder", dir.display()),
        ));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)
        .and_then(|_| b.into_inner())
        .map_err(|e| {
            HostError::new(
                "docker.build_failed",
                format!("cannot pack '{}': {e}", dir.display()),
            )
        })
}

#[derive(Debug, Clone, Default)]
pub struct BuildOpts {
    pub tag: Option<String>,
    pub dockerfile: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub network: Option<String>,
}

/// Builds an image from a context folder, streaming the build output; returns the image id.
pub async fn build(
    dir: &Path,
    o: &BuildOpts,
    emit: &mut (dyn FnMut(Stream, &str) + Send),
) -> HostResult<String> {
    let d = connect().await?;
    let body = context_tar(dir)?;
    let args: HashMap<String, String> = o.build_args.clone().into_iter().collect();
    let mut b = BuildImageOptionsBuilder::default()
        .dockerfile(o.dockerfile.as_deref().unwrap_or("Dockerfile"))
        .rm(true)
        .buildargs(&args);
    if let Some(t) = &o.tag {
        b = b.t(t);
    }
    if let Some(n) = &o.network {
        b = b.networkmode(n);
    }
    let mut s = d.build_image(b.build(), None, Some(bollard::body_full(body.into())));
    let mut id = String::new();
    while let Some(item) = s.next().await {
        let info = item.map_err(|e| engine_err("build failed", e))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(HostError::new(
                "docker.build_failed",
                format!("build of '{}' failed: {err}", dir.display()),
            ));
        }
        if let Some(text) = info.stream {
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                emit(Stream::Out, l);
            }
        }
        if let Some(i) = info.aux.and_then(|a| a.id) {
            id = i;
        }
    }
    Ok(id)
}

/// Pulls an image, reporting each layer's status once; offline it fails with `docker.pull_failed`.
pub async fn pull(r: &str, emit: &mut (dyn FnMut(Stream, &str) + Send)) -> HostResult<()> {
    let d = connect().await?;
    let (image, tag) = match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((i, t)) => (i.to_string(), t.to_string()),
        None => (r.to_string(), "latest".to_string()),
    };
    let opts = CreateImageOptionsBuilder::default()
        .from_image(&image)
        .tag(&tag)
        .build();
    let mut s = d.create_image(Some(opts), None, None);
    let mut last: HashMap<String, String> = HashMap::new();
    while let Some(item) = s.next().await {
        let info = item.map_err(|e| {
            HostError::new(
                "docker.pull_failed",
                format!(
                    "cannot pull '{r}': {}",
                    engine_err("", e).message.trim_start_matches(": ")
                ),
            )
        })?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(HostError::new(
                "docker.pull_failed",
                format!("cannot pull '{r}': {err}"),
            ));
        }
        if let Some(st) = info.status {
            let key = info.id.unwrap_or_default();
            if last.get(&key) != Some(&st) {
                emit(
                    Stream::Err,
                    &if key.is_empty() {
                        st.clone()
                    } else {
                        format!("{key}: {st}")
                    },
                );
                last.insert(key, st);
            }
        }
    }
    Ok(())
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

    #[test]
    fn lines_are_reassembled_per_stream() {
        let mut l = Lines::default();
        let mut got = Vec::new();
        let mut emit = |s: Stream, t: &str| got.push((s, t.to_string()));
        l.push(Stream::Out, b"ab", &mut emit);
        l.push(Stream::Err, b"e1\n", &mut emit);
        l.push(Stream::Out, b"c\nd", &mut emit);
        l.flush(&mut emit);
        assert_eq!(
            got,
            vec![
                (Stream::Err, "e1".into()),
                (Stream::Out, "abc".into()),
                (Stream::Out, "d".into())
            ]
        );
    }
}
