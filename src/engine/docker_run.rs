//! `run_in: "docker"`: one attempt of a job in a container (run folder and working
//! directory mounted at their own paths, the job's env, the invoking uid:gid, the GPU lease by
//! UUID, logs into the run folder, metrics tailed, timeout and cancel remove it).
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::error::LabResult;
use crate::store::{Metric, RunStatus};

use super::metrics::MetricsTail;
use super::supervisor::{AttemptEnd, DockerLaunch, Launch, METRICS_POLL};

/// `run_in: "docker"`: the job's command in a container named `labhost-<state>-job-<id>`
/// (`<state>` a hash of the state directory: two projects' job 2 are two containers; one
/// left by a host of this state that died is removed first, so an attempt never runs beside
/// a stale one), with the
/// run folder and working directory mounted at their own paths, the job's env, its GPU lease
/// passed as device requests by UUID, output into the run folder's logs, metrics tailed as
/// for host jobs; timeout and cancel kill and remove the container.
pub(super) async fn run_docker(
    l: &Launch,
    d: &DockerLaunch,
    mut out: Box<dyn std::io::Write + Send>,
    mut err: Box<dyn std::io::Write + Send>,
    started: &mut (dyn FnMut(&crate::store::Started) + Send),
    metrics: &mut (dyn FnMut(Vec<Metric>) + Send),
    cancel: CancellationToken,
) -> LabResult<AttemptEnd> {
    use crate::modules::docker;
    use std::io::Write;
    let state = l
        .run_dir
        .parent()
        .and_then(|runs| runs.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let name = format!(
        "labhost-{}-job-{}",
        &crate::util::fnv(&state)[..8],
        l.job_id
    );
    let _ = docker::remove(&name).await;
    let metrics_path = l.run_dir.join("metrics.jsonl");
    let mut env = l.env.clone();
    let gpus = env.get("LABHOST_GPU_UUIDS").map(|u| {
        docker::Gpus::Ids(
            u.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
    });
    if gpus.is_some() {
        // Host indices mean nothing in the container: the runtime renumbers the devices.
        env.remove("CUDA_VISIBLE_DEVICES");
    }
    env.insert("LABHOST_JOB_ID".into(), l.job_id.to_string());
    env.insert("LABHOST_RUN_DIR".into(), l.run_dir.display().to_string());
    env.insert("LABHOST_METRICS".into(), metrics_path.display().to_string());
    // The MLflow endpoint as the container reaches it (or not at all on `network: none`).
    let mut extra_hosts = Vec::new();
    if let Some(uri) = env.get("MLFLOW_TRACKING_URI").cloned() {
        match super::mlflow::container_uri(&uri, d.network.as_deref()).await {
            Some((u, hosts)) => {
                env.insert("MLFLOW_TRACKING_URI".into(), u);
                extra_hosts = hosts;
            }
            None => {
                for k in [
                    "MLFLOW_TRACKING_URI",
                    "MLFLOW_TRACKING_TOKEN",
                    "MLFLOW_RUN_ID",
                ] {
                    env.remove(k);
                }
            }
        }
    }
    let dir = |p: &Path| p.display().to_string();
    let mut volumes = vec![docker::Volume::new(
        &dir(&l.run_dir),
        &dir(&l.run_dir),
        false,
    )?];
    if let Some(cwd) = &l.cwd {
        if cwd != &l.run_dir {
            volumes.push(docker::Volume::new(&dir(cwd), &dir(cwd), false)?);
        }
    }
    for m in &d.mounts {
        volumes.push(docker::Volume::parse(m)?);
    }
    let command = l.command.argv();
    let spec = docker::RunSpec {
        image: d.image.clone(),
        command: Some(command),
        name: Some(name),
        env,
        workdir: l.cwd.as_deref().map(dir),
        volumes,
        network: d.network.clone(),
        extra_hosts,
        labels: [
            ("labhost.job".to_string(), l.job_id.to_string()),
            ("labhost.state".to_string(), state),
        ]
        .into(),
        git_commit: l.cwd.as_deref().and_then(crate::modules::git::head_commit),
        auto_remove: true,
        gpus,
        timeout: l.timeout,
        prefix: Some(String::new()),
        ..Default::default()
    };
    started(&crate::store::Started {
        pid: 0,
        at: crate::clock::unix(),
        leader_start: None,
        cgroup: None,
        gpus: crate::store::Started::gpus_of(&l.env),
    });
    let mut emit = |s: crate::runtime::Stream, line: &str| {
        let f = match s {
            crate::runtime::Stream::Out => &mut out,
            crate::runtime::Stream::Err => &mut err,
        };
        let _ = writeln!(f, "{line}");
    };
    let mut tail = MetricsTail::new(metrics_path);
    let mut tick = tokio::time::interval(METRICS_POLL);
    let run = docker::run(&spec, &mut emit, cancel);
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tick.tick() => {
                tail.pump(metrics);
            }
        }
    };
    tail.pump(metrics);
    let outcome = |status: RunStatus, exit_code: Option<i64>, error: Option<String>| AttemptEnd {
        status,
        exit_code,
        error,
        start: None,
    };
    match result {
        Ok(r) if r.exit_code == 0 => Ok(outcome(RunStatus::Completed, Some(0), None)),
        Ok(r) => Ok(outcome(
            RunStatus::Failed,
            Some(r.exit_code),
            Some(format!("exit {}", r.exit_code)),
        )),
        Err(e) if e.kind == "docker.timeout" => {
            Ok(outcome(RunStatus::TimedOut, None, Some(e.message)))
        }
        Err(e) if e.is_cancelled() => Ok(outcome(
            RunStatus::Cancelled,
            None,
            Some("cancelled".into()),
        )),
        Err(e) => Err(e),
    }
}
