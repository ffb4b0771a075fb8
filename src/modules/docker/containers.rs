//! Containers: attached and detached runs, logs, wait/stop/kill/remove, listing.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{LabError, LabResult};
use crate::runtime::Stream;

use super::output::Lines;
use super::*;

fn resolve_image(spec: &RunSpec) -> LabResult<String> {
    spec.image
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| {
            std::env::var("DOCKER_IMAGE_NAME")
                .ok()
                .filter(|i| !i.is_empty())
        })
        .ok_or_else(|| {
            LabError::new(
                "docker.no_image",
                "no image given and DOCKER_IMAGE_NAME is not set",
            )
        })
}

/// Creates (not starts) a container; returns (id, name).
async fn create(d: &Docker, spec: &RunSpec) -> LabResult<(String, String)> {
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
) -> LabResult<RunResult> {
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
        _ = timeout => Err(LabError::new("docker.timeout", format!(
            "container '{name}' timed out after {:.1}s and was killed", spec.timeout.unwrap_or_default().as_secs_f64()))),
        _ = cancel.cancelled() => Err(LabError::cancelled()),
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
pub async fn start_detached(spec: &RunSpec, stop_on_exit: bool) -> LabResult<(String, String)> {
    let d = connect().await?;
    let (id, name) = create(&d, spec).await?;
    if let Err(e) = d.start_container(&id, None).await {
        force_remove(&d, &id).await;
        return Err(engine_err(&format!("cannot start container '{name}'"), e));
    }
    if stop_on_exit {
        crate::runtime::at_script_end(cleanup_blocking);
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
    crate::runtime::ctx().rt.block_on(cleanup());
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

pub async fn status(id: &str) -> LabResult<String> {
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
) -> LabResult<String> {
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

pub async fn wait(id: &str) -> LabResult<i64> {
    let d = connect().await?;
    match exit_code(&d, id).await {
        (_, Some(e)) => Err(engine_err("wait", e)),
        (code, None) => Ok(code),
    }
}

pub async fn stop(id: &str, timeout: Duration) -> LabResult<()> {
    let d = connect().await?;
    let opts = StopContainerOptionsBuilder::default()
        .t(timeout.as_secs() as i32)
        .build();
    d.stop_container(id, Some(opts))
        .await
        .map_err(|e| engine_err("stop", e))
}

pub async fn kill(id: &str) -> LabResult<()> {
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

pub async fn remove(id: &str) -> LabResult<()> {
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
pub async fn ps(label: Option<&str>) -> LabResult<Vec<ContainerInfo>> {
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
