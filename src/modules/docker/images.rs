//! Images: list, exists, build (from a context folder), pull, remove.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::{LabError, LabResult};
use crate::runtime::Stream;

use super::*;

#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
}

pub async fn images() -> LabResult<Vec<ImageInfo>> {
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

pub async fn image_exists(r: &str) -> LabResult<bool> {
    let d = connect().await?;
    match d.inspect_image(r).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(engine_err("inspect image", e)),
    }
}

pub async fn remove_image(r: &str) -> LabResult<()> {
    let d = connect().await?;
    d.remove_image(r, Some(RemoveImageOptionsBuilder::default().build()), None)
        .await
        .map(|_| ())
        .map_err(|e| engine_err(&format!("cannot remove image '{r}'"), e))
}

/// A tar of a build context folder (what `docker build` sends).
pub fn context_tar(dir: &Path) -> LabResult<Vec<u8>> {
    if !dir.is_dir() {
        return Err(LabError::new(
            "docker.invalid_argument",
            format!("build context '{}' is not a folder", dir.display()),
        ));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)
        .and_then(|_| b.into_inner())
        .map_err(|e| {
            LabError::new(
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
) -> LabResult<String> {
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
            return Err(LabError::new(
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
pub async fn pull(r: &str, emit: &mut (dyn FnMut(Stream, &str) + Send)) -> LabResult<()> {
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
            LabError::new(
                "docker.pull_failed",
                format!(
                    "cannot pull '{r}': {}",
                    engine_err("", e).message.trim_start_matches(": ")
                ),
            )
        })?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(LabError::new(
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
