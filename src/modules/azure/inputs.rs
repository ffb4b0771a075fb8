//! Remote inputs run here as they run in Azure ML: a job's `https://` file, public blob
//! URIs (`wasbs://`, `abfss://`, `https://<account>.blob.core.windows.net/…`), workspace
//! datastore paths (`azureml://datastores/<name>/paths/<path>`) and data assets
//! (`azureml:<name>:<version>`, `azureml:<name>@latest`) are downloaded when the run starts,
//! into a content-addressed cache under the state directory, and handed to the command as a
//! local path of the right shape: a file, or a folder (never with a trailing slash, so
//! `${{inputs.data}}/x.csv` is a path).
//!
//! The cache (`<state>/cache/inputs/`):
//! - `blobs/<sha256>`: each distinct content once, read-only;
//! - `files/<sha256>/<name>`: a file input under its own name (a hard link to its blob);
//! - `folders/<sha256 of the tree>/…`: a folder input, each file a hard link to its blob;
//! - `sources/<sha256 of the URI>.json`: what was fetched for a URI last (ETag and
//!   Last-Modified of a web file; each blob's ETag and content of a folder), so the next run
//!   revalidates (`If-None-Match`, a listing) and downloads only what changed.
//!
//! A view once made is never changed: a remote file that changes gets a new path, and a job
//! still reading the old one is not disturbed.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::blob::{encode_path, BlobItem, Container, Cred};
use crate::error::{LabError, LabResult};
use crate::modules::sweep::{Origin, Sweep};

/// Where a remote input lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A file on the web (`https://…`, `http://…`).
    Http(String),
    /// A path in a blob container, read anonymously (a public container).
    Storage {
        account: String,
        /// The endpoint suffix (`core.windows.net`).
        suffix: String,
        container: String,
        path: String,
    },
    /// A path in one of the workspace's datastores.
    Datastore { name: String, path: String },
    /// A data asset of the workspace; no version: the newest.
    Asset {
        name: String,
        version: Option<String>,
    },
}

impl Source {
    /// Whether reading it needs the Azure ML workspace (its settings and credentials).
    pub fn needs_workspace(&self) -> bool {
        matches!(self, Source::Datastore { .. } | Source::Asset { .. })
    }
}

/// Reads a remote input's URI. Touches no network.
pub fn parse(uri: &str) -> Result<Source, String> {
    if let Some(rest) = uri.strip_prefix("azureml://") {
        // `azureml://datastores/X/paths/Y`, also in its long form that names the workspace
        // (`azureml://subscriptions/…/workspaces/W/datastores/X/paths/Y`).
        let at = rest
            .find("datastores/")
            .filter(|i| *i == 0 || rest[..*i].ends_with('/'));
        let Some(i) = at else {
            return Err("only `azureml://datastores/<name>/paths/<path>` URIs run here".into());
        };
        let rest = &rest[i + "datastores/".len()..];
        return match rest.split_once("/paths/") {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => {
                Ok(Source::Datastore {
                    name: name.into(),
                    path: path.into(),
                })
            }
            _ => Err("a datastore URI is `azureml://datastores/<name>/paths/<path>`".into()),
        };
    }
    if let Some(rest) = uri.strip_prefix("azureml:") {
        let (name, version) = match (rest.split_once('@'), rest.split_once(':')) {
            (Some((n, "latest")), _) => (n, None),
            (Some((_, label)), _) => {
                return Err(format!(
                    "the label `@{label}` is not known here (use `@latest` or `:<version>`)"
                ))
            }
            (None, Some((n, v))) if !v.is_empty() => (n, Some(v.to_string())),
            _ => {
                return Err(
                    "a data asset is `azureml:<name>:<version>` or `azureml:<name>@latest`".into(),
                )
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("`{name}` is not a data asset name"));
        }
        return Ok(Source::Asset {
            name: name.into(),
            version,
        });
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("not a URI".into());
    };
    match scheme {
        "wasbs" | "wasb" | "abfss" | "abfs" => {
            let (container, rest) = rest.split_once('@').ok_or_else(|| {
                format!("a {scheme} URI is `{scheme}://<container>@<account>.<host>/<path>`")
            })?;
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (account, suffix) = storage_host(host)
                .ok_or_else(|| format!("`{host}` is not a storage account's host"))?;
            Ok(Source::Storage {
                account,
                suffix,
                container: container.into(),
                path: path.into(),
            })
        }
        "https" | "http" => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            match (storage_host(host), path.split_once('/')) {
                (Some((account, suffix)), Some((container, path))) => Ok(Source::Storage {
                    account,
                    suffix,
                    container: container.into(),
                    path: path.into(),
                }),
                _ => Ok(Source::Http(uri.into())),
            }
        }
        other => Err(format!(
            "`{other}://` inputs are not read here (https, wasbs, abfss, azureml)"
        )),
    }
}

/// `<account>.blob.<suffix>` or `<account>.dfs.<suffix>` → (account, suffix).
fn storage_host(host: &str) -> Option<(String, String)> {
    let (account, rest) = host.split_once('.')?;
    let suffix = rest
        .strip_prefix("blob.")
        .or_else(|| rest.strip_prefix("dfs."))?;
    (!account.is_empty() && suffix.contains('.')).then(|| (account.into(), suffix.into()))
}

/// The name a downloaded file keeps: the URI's last segment, percent-decoded, or `input`.
pub fn file_name(uri: &str) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let name = percent_decode(last);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        "input".into()
    } else {
        name
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn input_err(s: &Sweep, name: &str, uri: &str, msg: impl std::fmt::Display) -> LabError {
    let text = std::fs::read_to_string(&s.source).ok();
    let o = Origin {
        source: &s.source,
        text: text.as_deref(),
    };
    LabError::new(
        "sweep.input",
        crate::redact::apply(&format!(
            "{}: input `{name}` ({uri}): {msg}",
            o.at(&format!("{name}:"))
        )),
    )
}

/// Checks every remote input without touching the network (what `--dry-run` and the run
/// both check): its URI can be read here, and workspace inputs have a workspace configured.
pub fn check(s: &Sweep) -> LabResult<()> {
    for (k, v) in s.inputs.iter().filter(|(_, v)| v.remote) {
        let src = parse(&v.text).map_err(|m| input_err(s, k, &v.text, m))?;
        if src.needs_workspace() {
            let cfg = super::config::load(&Default::default());
            cfg.and_then(|c| c.require_workspace()).map_err(|e| {
                input_err(
                    s,
                    k,
                    &v.text,
                    format!(
                        "it is read through the Azure ML workspace, and {}",
                        e.message
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// What was fetched in this process, by state folder and URI: a sweep's trials and a
/// pipeline's steps ask once.
static SEEN: Mutex<Vec<((PathBuf, String), PathBuf)>> = Mutex::new(Vec::new());

/// The sweep with its remote inputs downloaded (or found in the cache) and replaced by
/// their local paths; `None` when it has none. Errors name the input and its URI.
pub fn localized(s: &Sweep) -> LabResult<Option<Sweep>> {
    if !s.inputs.values().any(|v| v.remote) {
        return Ok(None);
    }
    check(s)?;
    let cache = Cache::open()?;
    let mut out = s.clone();
    for (k, v) in out.inputs.iter_mut().filter(|(_, v)| v.remote) {
        let memo = (cache.root.clone(), v.text.clone());
        let seen = SEEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(m, _)| *m == memo)
            .map(|(_, p)| p.clone());
        let path = match seen {
            Some(p) => p,
            None => {
                let folder = v.kind.as_deref().map(|t| t != "uri_file");
                let p = super::block(cache.fetch(&v.text, folder)).map_err(|e| {
                    match e.is_cancelled() {
                        true => e,
                        false => input_err(s, k, &v.text, e.message),
                    }
                })?;
                SEEN.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((memo, p.clone()));
                p
            }
        };
        tracing::debug!("input {k}: {} → {}", v.text, path.display());
        v.text = path.display().to_string();
        v.remote = false;
    }
    Ok(Some(out))
}

/// What `sources/<sha of the URI>.json` remembers.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified: Option<String>,
    /// A file's content (its blob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha: Option<String>,
    /// A listed container path: each blob's name → (ETag, content).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    blobs: BTreeMap<String, (String, String)>,
}

struct Cache {
    root: PathBuf,
    http: reqwest::Client,
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn io(what: &str, p: &Path, e: std::io::Error) -> LabError {
    crate::error::io_err("sweep", what, p, &e)
}

impl Cache {
    fn open() -> LabResult<Cache> {
        let root = crate::state::dir()?.join("cache").join("inputs");
        for d in ["blobs", "files", "folders", "sources", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| io("cannot create", &p, e))?;
        }
        Ok(Cache {
            root,
            http: super::client::http_client(),
        })
    }

    fn record_path(&self, uri: &str) -> PathBuf {
        self.root
            .join("sources")
            .join(format!("{}.json", sha_hex(uri.as_bytes())))
    }

    fn record(&self, uri: &str) -> Record {
        std::fs::read(self.record_path(uri))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, uri: &str, r: &Record) -> LabResult<()> {
        let p = self.record_path(uri);
        let tmp = self.tmp();
        let text = serde_json::to_vec_pretty(r).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|e| io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("cannot write", &p, e))
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            crate::util::random_token()
        ))
    }

    fn blob(&self, sha: &str) -> PathBuf {
        self.root.join("blobs").join(sha)
    }

    fn has(&self, sha: Option<&str>) -> Option<String> {
        sha.filter(|s| self.blob(s).is_file()).map(str::to_string)
    }

    /// Moves a downloaded file into `blobs/` under its content's hash (read-only).
    fn keep(&self, tmp: &Path) -> LabResult<String> {
        use std::io::Read;
        let mut h = Sha256::new();
        let mut f = std::fs::File::open(tmp).map_err(|e| io("cannot read", tmp, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| io("cannot read", tmp, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let sha: String = h.finalize().iter().map(|x| format!("{x:02x}")).collect();
        let dst = self.blob(&sha);
        if dst.is_file() {
            let _ = std::fs::remove_file(tmp);
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o444));
            std::fs::rename(tmp, &dst).map_err(|e| io("cannot write", &dst, e))?;
        }
        Ok(sha)
    }

    /// Links (or copies) blob `sha` to `dst`, which must not exist yet.
    fn link(&self, sha: &str, dst: &Path) -> LabResult<()> {
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|e| io("cannot create", p, e))?;
        }
        let src = self.blob(sha);
        std::fs::hard_link(&src, dst)
            .or_else(|_| std::fs::copy(&src, dst).map(|_| ()))
            .map_err(|e| io("cannot write", dst, e))
    }

    /// `files/<sha>/<name>`: blob `sha` under the name `name`.
    fn file_view(&self, sha: &str, name: &str) -> LabResult<PathBuf> {
        let dst = self.root.join("files").join(sha).join(name);
        if !dst.is_file() {
            let tmp = self.tmp();
            self.link(sha, &tmp)?;
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p).map_err(|e| io("cannot create", p, e))?;
            }
            std::fs::rename(&tmp, &dst).map_err(|e| io("cannot write", &dst, e))?;
        }
        Ok(dst)
    }

    /// `folders/<tree sha>`: a folder of the given files (relative name → blob).
    fn folder_view(&self, files: &BTreeMap<String, String>) -> LabResult<PathBuf> {
        let tree: String = files.iter().map(|(n, s)| format!("{n}\0{s}\n")).collect();
        let dst = self.root.join("folders").join(sha_hex(tree.as_bytes()));
        if dst.is_dir() {
            return Ok(dst);
        }
        let tmp = self.tmp();
        std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        for (name, sha) in files {
            self.link(sha, &tmp.join(name))?;
        }
        if std::fs::rename(&tmp, &dst).is_err() {
            // Another process made the same view first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(dst)
    }

    /// The local path of `uri`; `folder`: what the input's type says it is, if it says.
    async fn fetch(&self, uri: &str, folder: Option<bool>) -> LabResult<PathBuf> {
        match parse(uri).map_err(|m| LabError::new("sweep.input", m))? {
            Source::Http(u) => self.web_file(&u, uri).await,
            Source::Storage {
                account,
                suffix,
                container,
                path,
            } => {
                let base = account_url(&account, &suffix);
                let c = Container::new(format!("{base}/{container}"), Cred::Anonymous);
                match self.blobs(&c, &path, uri, folder).await {
                    // A container that lets anyone read blobs but not list them.
                    Err(e) if folder != Some(true) && e.kind != "sweep.input" => {
                        let u = format!("{}/{}", c.url, encode_path(path.trim_matches('/')));
                        self.web_file(&u, uri).await
                    }
                    r => r,
                }
            }
            Source::Datastore { name, path } => {
                let cl = workspace()?;
                let d = cl.datastore(Some(&name)).await?;
                self.blobs(&d.blob, &path, uri, folder).await
            }
            Source::Asset { name, version } => {
                let cl = workspace()?;
                let version = match version {
                    Some(v) => v,
                    None => {
                        let newest = cl.latest("data", &name).await?;
                        newest.rsplit(':').next().unwrap_or_default().to_string()
                    }
                };
                let v = cl
                    .get(&cl.ws_url(&format!("/data/{name}/versions/{version}")))
                    .await?;
                let p = &v["properties"];
                let inner = p["dataUri"].as_str().unwrap_or_default().to_string();
                let folder = match p["dataType"].as_str() {
                    Some("uri_file") => Some(false),
                    Some(_) => Some(true),
                    None => folder,
                };
                match parse(&inner) {
                    Ok(Source::Asset { .. }) | Err(_) => Err(LabError::new(
                        "sweep.input",
                        format!("data asset {name}:{version} points at `{inner}`, which cannot be read here"),
                    )),
                    Ok(_) => Box::pin(self.fetch(&inner, folder)).await,
                }
            }
        }
    }

    /// A file on the web, revalidated against what was fetched last.
    async fn web_file(&self, url: &str, uri: &str) -> LabResult<PathBuf> {
        let rec = self.record(uri);
        let have = self.has(rec.sha.as_deref());
        let mut req = self.http.get(url);
        if have.is_some() {
            if let Some(e) = &rec.etag {
                req = req.header("If-None-Match", e);
            }
            if let Some(m) = &rec.modified {
                req = req.header("If-Modified-Since", m);
            }
        }
        // The error already names the input's URI; a blob URL built from it is shown.
        let shown = match url == uri {
            true => "GET".to_string(),
            false => format!("GET {}", url.split('?').next().unwrap_or(url)),
        };
        let mut r = req.send().await.map_err(|e| {
            LabError::new("sweep.input", format!("GET {shown}: {}", e.without_url()))
        })?;
        let name = file_name(url);
        if r.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(sha) = have {
                return self.file_view(&sha, &name);
            }
        }
        if !r.status().is_success() {
            return Err(LabError::new(
                "sweep.input",
                format!("GET {shown}: {}", r.status()),
            ));
        }
        let header = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, modified) = (header("etag"), header("last-modified"));
        let tmp = self.tmp();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot write", &tmp, e))?;
            while let Some(chunk) = r.chunk().await.map_err(|e| {
                LabError::new("sweep.input", format!("GET {shown}: {}", e.without_url()))
            })? {
                f.write_all(&chunk)
                    .map_err(|e| io("cannot write", &tmp, e))?;
            }
        }
        let sha = self.keep(&tmp)?;
        self.save(
            uri,
            &Record {
                etag,
                modified,
                sha: Some(sha.clone()),
                ..Default::default()
            },
        )?;
        self.file_view(&sha, &name)
    }

    /// A blob or a folder of blobs in a container: listed, and only blobs whose ETag changed
    /// since the last fetch downloaded.
    async fn blobs(
        &self,
        c: &Container,
        path: &str,
        uri: &str,
        folder: Option<bool>,
    ) -> LabResult<PathBuf> {
        let p = path.trim_matches('/');
        // A folder by its type or a trailing slash; else a blob of that name if there is one.
        let maybe_file = folder != Some(true) && !p.is_empty() && !path.ends_with('/');
        let exact = match maybe_file {
            true => c.find(p).await?,
            false => None,
        };
        let rec = self.record(uri);
        let mut fresh = Record::default();
        if let Some(b) = &exact {
            let sha = self.blob_content(c, b, &rec).await?;
            fresh
                .blobs
                .insert(b.name.clone(), (b.etag.clone(), sha.clone()));
            self.save(uri, &fresh)?;
            return self.file_view(&sha, &file_name(&b.name));
        }
        if folder == Some(false) {
            return Err(LabError::new(
                "sweep.input",
                format!("no blob named `{p}` in {} (the input is a uri_file)", c.url),
            ));
        }
        let under = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        let mut files = BTreeMap::new();
        for b in c.list(&under).await? {
            let rel = &b.name[under.len()..];
            if rel.is_empty() || rel.ends_with('/') {
                continue; // a folder marker
            }
            if rel
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
            {
                return Err(LabError::new(
                    "sweep.input",
                    format!("the blob `{}` cannot be a file in a folder", b.name),
                ));
            }
            let sha = self.blob_content(c, &b, &rec).await?;
            fresh
                .blobs
                .insert(b.name.clone(), (b.etag.clone(), sha.clone()));
            files.insert(rel.to_string(), sha);
        }
        if files.is_empty() {
            return Err(LabError::new(
                "sweep.input",
                format!("nothing is stored under `{p}` in {}", c.url),
            ));
        }
        self.save(uri, &fresh)?;
        self.folder_view(&files)
    }

    /// The content of a listed blob: the cached one when its ETag is the one recorded.
    async fn blob_content(&self, c: &Container, b: &BlobItem, rec: &Record) -> LabResult<String> {
        if let Some((etag, sha)) = rec.blobs.get(&b.name) {
            if *etag == b.etag && !etag.is_empty() && self.blob(sha).is_file() {
                return Ok(sha.clone());
            }
        }
        let tmp = self.tmp();
        c.get_to(&b.name, &tmp).await?;
        self.keep(&tmp)
    }
}

/// The blob endpoint of an account: the settings' `blob_url` (Azurite, a sovereign cloud),
/// else `https://<account>.blob.<suffix>`.
fn account_url(account: &str, suffix: &str) -> String {
    let custom = super::config::load(&Default::default())
        .map(|c| c.blob_url)
        .unwrap_or_default();
    if custom.is_empty() {
        format!("https://{account}.blob.{suffix}")
    } else {
        custom.replace("{account}", account)
    }
}

fn workspace() -> LabResult<std::sync::Arc<super::client::Client>> {
    super::client(&Default::default())
}

/// GPUs per process the settings' `local_gpus` gives a job on `compute`, and where that is
/// said (`settings.yml: local_gpus.gpu-cluster`).
pub fn gpus_per_process(compute: &str) -> LabResult<Option<(u32, String)>> {
    let cfg = super::config::load(&Default::default())?;
    let file = cfg
        .sources
        .settings
        .as_ref()
        .map_or("settings".into(), |f| f.display().to_string());
    Ok(cfg
        .local_gpus_for(compute)
        .map(|(key, n)| (n, format!("{file}: local_gpus.{key}"))))
}

/// What this module lends local sweeps (see [`crate::modules::sweep::lend`]).
pub fn lend() {
    crate::modules::sweep::lend(crate::modules::sweep::Workspace {
        check_inputs: check,
        localized,
        gpus_per_process,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_source() {
        assert_eq!(
            parse("wasbs://tables@labhostsamples.blob.core.windows.net/flowers/iris.csv"),
            Ok(Source::Storage {
                account: "labhostsamples".into(),
                suffix: "core.windows.net".into(),
                container: "tables".into(),
                path: "flowers/iris.csv".into()
            })
        );
        assert_eq!(
            parse("abfss://lake@acct.dfs.core.chinacloudapi.cn/raw/"),
            Ok(Source::Storage {
                account: "acct".into(),
                suffix: "core.chinacloudapi.cn".into(),
                container: "lake".into(),
                path: "raw/".into()
            })
        );
        assert_eq!(
            parse("https://acct.blob.core.windows.net/c/a/b.csv"),
            Ok(Source::Storage {
                account: "acct".into(),
                suffix: "core.windows.net".into(),
                container: "c".into(),
                path: "a/b.csv".into()
            })
        );
        assert_eq!(
            parse("https://example.org/data/x.csv?v=2"),
            Ok(Source::Http("https://example.org/data/x.csv?v=2".into()))
        );
        assert_eq!(
            parse("azureml://datastores/workspaceblobstore/paths/rows/"),
            Ok(Source::Datastore {
                name: "workspaceblobstore".into(),
                path: "rows/".into()
            })
        );
        assert_eq!(
            parse(
                "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/ds/paths/a.csv"
            ),
            Ok(Source::Datastore {
                name: "ds".into(),
                path: "a.csv".into()
            })
        );
        assert_eq!(
            parse("azureml:rows:3"),
            Ok(Source::Asset {
                name: "rows".into(),
                version: Some("3".into())
            })
        );
        assert_eq!(
            parse("azureml:rows@latest"),
            Ok(Source::Asset {
                name: "rows".into(),
                version: None
            })
        );
        assert!(parse("azureml:rows@prod").unwrap_err().contains("@prod"));
        assert!(parse("s3://bucket/x").unwrap_err().contains("s3://"));
        assert!(parse("wasbs://nocontainer.blob.core.windows.net/x").is_err());
        assert!(parse("azureml://jobs/abc/outputs/x").is_err());
    }

    #[test]
    fn a_downloaded_file_keeps_a_safe_name() {
        assert_eq!(file_name("https://h/a/iris%5Fv2.csv?sig=x"), "iris_v2.csv");
        assert_eq!(file_name("https://h/a/"), "input");
        assert_eq!(file_name("https://h/a/%2e%2e"), "input");
        assert_eq!(file_name("https://h/a/b%2Fc"), "input");
        assert_eq!(file_name("https://h/%E2%9C%93.txt"), "✓.txt");
        assert_eq!(file_name("https://h/50%"), "50%");
    }
}
