//! What a container gets: the create body of a [`RunSpec`].
use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use crate::error::LabResult;

use super::*;

/// Half the machine's memory (the host's own /dev/shm default), at least 64 MiB.
pub fn default_shm_size() -> u64 {
    // SAFETY: sysconf takes an integer name and has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages > 0 && page > 0 {
        ((pages as u64 * page as u64) / 2).max(64 << 20)
    } else {
        2 << 30
    }
}

/// The full create body for a spec: image, command, mounts, GPUs, labels, user.
pub fn create_body(spec: &RunSpec, image: &str) -> LabResult<ContainerCreateBody> {
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
    if let Some(d) = &spec.storage {
        for (host, target) in [
            (&d.dataset, "/storage/data"),
            (&d.cache, "/storage/cache"),
            (&d.artifacts, "/storage/artifacts"),
            (&d.code, "/workspace"),
        ] {
            std::fs::create_dir_all(host).map_err(|e| {
                crate::error::io_err("docker", "cannot create", Path::new(host), &e)
            })?;
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
    if let Some(job) = crate::config::job_id() {
        labels.entry(LABEL_JOB.into()).or_insert(job);
    }
    if let Some(c) = &spec.git_commit {
        labels.entry(LABEL_COMMIT.into()).or_insert(c.clone());
    }
    let user = spec
        .user
        .clone()
        // SAFETY: getuid and getgid cannot fail and have no preconditions.
        .unwrap_or_else(|| unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) });
    let host_config = HostConfig {
        mounts: (!mounts.is_empty()).then_some(mounts),
        shm_size: Some(spec.shm_size.unwrap_or_else(default_shm_size) as i64),
        auto_remove: Some(spec.auto_remove),
        network_mode: spec.network.clone(),
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
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
