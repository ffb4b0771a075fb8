//! What a job body needs created before it is sent: code
//! snapshots (hashed as azure-ai-ml hashes them, `.amlignore` else `.gitignore`, symlinks not
//! followed, uploaded with Put Blob / Put Block List, confirmed with upload metadata, registered
//! as a code version, skipped when the same hash is already there), local input data, inline
//! environments (registered as environment versions) and `@latest` references.
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest;

use super::blob::{Container, Cred};
use super::client::Client;
use crate::error::{LabError, LabResult};

/// azure-ai-ml's content hash version.
pub const HASH_VERSION: &str = "202208";
/// azure-ai-ml warns above this upload size.
pub const WARN_BYTES: u64 = 100 * 1024 * 1024;
/// The v1 snapshot file limit users know.
pub const WARN_FILES: usize = 2000;

/// A folder (or one file) as it will be uploaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub root: PathBuf,
    /// The folder name the blobs go under (`LocalUpload/<hash>/<dirname>/…`).
    pub dirname: String,
    /// (absolute path, path relative to `root` with `/`), sorted as the hash sorts them.
    pub files: Vec<(PathBuf, String)>,
    pub bytes: u64,
    pub sha256: String,
    /// Symbolic links left out (never followed).
    pub skipped_links: Vec<String>,
    /// `.amlignore`, `.gitignore` or none.
    pub ignore_file: Option<String>,
    /// One file (the snapshot of a file path): `files` holds it alone.
    pub single: bool,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io(p: &Path, e: impl std::fmt::Display) -> LabError {
    LabError::new("azure.code", format!("{}: {e}", p.display()))
}

/// Lists and hashes a folder as azure-ai-ml's `get_content_hash` does: sha256 over the file
/// count, then `#<relpath>#<size>` per file sorted by lower-cased path, then the contents in
/// the same order. `.amlignore` (else `.gitignore`) files are honoured in every folder; `.git`
/// and labhost's `.labhost` are never uploaded; symbolic links are skipped, not followed.
pub fn snapshot(path: &Path) -> LabResult<Snapshot> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    let (root, single) = if meta.is_file() {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            Some(path.to_path_buf()),
        )
    } else {
        (path.to_path_buf(), None)
    };
    let root = root.canonicalize().map_err(|e| io(&root, e))?;
    let dirname = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "code".into());
    let ignore_file = [".amlignore", ".gitignore"]
        .into_iter()
        .find(|f| root.join(f).exists())
        .map(str::to_string);
    let mut files = Vec::new();
    let mut skipped_links = Vec::new();
    let mut wb = ignore::WalkBuilder::new(&root);
    wb.standard_filters(false).hidden(false).follow_links(false);
    if let Some(f) = &ignore_file {
        wb.add_custom_ignore_filename(f);
    }
    wb.filter_entry(|e| {
        !(e.depth() > 0
            && e.file_type().is_some_and(|t| t.is_dir())
            && matches!(e.file_name().to_str(), Some(".git" | ".labhost")))
    });
    for entry in wb.build() {
        let entry = entry.map_err(|e| LabError::new("azure.code", e.to_string()))?;
        let ft = entry.file_type();
        let rel = entry
            .path()
            .strip_prefix(&root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace('\\', "/");
        if ft.is_some_and(|t| t.is_symlink()) {
            skipped_links.push(rel);
            continue;
        }
        if !ft.is_some_and(|t| t.is_file()) {
            continue;
        }
        if let Some(s) = &single {
            if entry.path() != s.as_path() && entry.path() != s.canonicalize().unwrap_or_default() {
                continue;
            }
        }
        files.push((entry.path().to_path_buf(), rel));
    }
    files.sort_by_key(|(_, r)| r.to_lowercase());
    let mut h = sha2::Sha256::new();
    h.update(files.len().to_string().as_bytes());
    let mut bytes = 0;
    for (p, rel) in &files {
        let n = std::fs::metadata(p).map_err(|e| io(p, e))?.len();
        bytes += n;
        h.update(format!("#{rel}#").as_bytes());
        h.update(n.to_string().as_bytes());
    }
    for (p, _) in &files {
        use std::io::Read;
        let mut f = std::fs::File::open(p).map_err(|e| io(p, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| io(p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(Snapshot {
        root,
        dirname,
        files,
        bytes,
        sha256: hex(&h.finalize()),
        skipped_links,
        ignore_file,
        single: single.is_some(),
    })
}

impl Snapshot {
    /// Warnings a user should see before a long upload.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.bytes > WARN_BYTES {
            w.push(format!(
                "{}: {} MB to upload (more than 100 MB): list what the job does not need in {} (or use azcopy for data)",
                self.root.display(),
                self.bytes / (1024 * 1024),
                self.ignore_file.as_deref().unwrap_or(".amlignore")
            ));
        }
        if self.files.len() > WARN_FILES {
            w.push(format!(
                "{}: {} files to upload (more than {WARN_FILES})",
                self.root.display(),
                self.files.len()
            ));
        }
        if !self.skipped_links.is_empty() {
            w.push(format!(
                "{}: {} symbolic link(s) not uploaded (links are not followed): {}",
                self.root.display(),
                self.skipped_links.len(),
                self.skipped_links
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        w
    }

    /// The blob folder: `LocalUpload/<hash>/<dirname>`.
    pub fn prefix(&self) -> String {
        format!("LocalUpload/{}/{}", self.sha256, self.dirname)
    }

    /// azure-ai-ml's *object* hash (`get_object_hash`, what it names uploads of data and
    /// build contexts by; code uses the content hash in `sha256`): sha256 seeded with its
    /// fixed phrase, then each folder's entries sorted by lower-cased path, each entry's name
    /// followed by its bytes (a file) or its own entries (a folder). Only what the snapshot
    /// holds counts (links are not followed, unlike the SDK).
    pub fn object_hash(&self) -> String {
        use std::collections::BTreeSet;
        let files: BTreeSet<&Path> = self.files.iter().map(|(p, _)| p.as_path()).collect();
        let mut h = sha2::Sha256::new();
        h.update(b"Initialize for october 2021 AML CLI version");
        if self.single {
            if let Some(Ok(b)) = self.files.first().map(|(p, _)| std::fs::read(p)) {
                h.update(&b);
            }
        } else {
            object_hash_dir(&self.root, &files, &mut h);
        }
        hex(&h.finalize())
    }

    /// `LocalUpload/<object hash>/<dirname>`: where azure-ai-ml puts data and build contexts
    /// (a single file goes straight under `LocalUpload/<object hash>/`). `hash` is
    /// [`Snapshot::object_hash`], which reads every file: callers compute it once.
    pub fn object_prefix(&self, hash: &str) -> String {
        if self.single {
            format!("LocalUpload/{hash}")
        } else {
            format!("LocalUpload/{hash}/{}", self.dirname)
        }
    }

    /// The anonymous code asset's name: the hash as a UUID (stable, so a second submit of the
    /// same code finds the version the first registered).
    pub fn asset_name(&self) -> String {
        let h = &self.sha256;
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A datastore as the workspace describes it, with a credential for its container.
#[derive(Debug, Clone)]
pub struct Datastore {
    pub name: String,
    pub account: String,
    pub container: String,
    pub blob: Container,
}

impl Client {
    /// The datastore `name` (`None`: the workspace's default) with a credential: the account
    /// key or SAS from `listSecrets`, or an AAD storage token for identity-based ones. A key
    /// or SAS is reused for 45 minutes (it is asked to last an hour), so downloading the
    /// outputs of many children asks for it once.
    pub async fn datastore(&self, name: Option<&str>) -> LabResult<Datastore> {
        const REUSE: std::time::Duration = std::time::Duration::from_secs(45 * 60);
        let key = name.map(str::to_string);
        {
            let mut c = self.datastores.lock().unwrap_or_else(|e| e.into_inner());
            c.retain(|(_, at, _)| at.elapsed() < REUSE);
            if let Some((_, _, d)) = c.iter().find(|(k, _, _)| *k == key) {
                return Ok(d.clone());
            }
        }
        let d = self.fetch_datastore(name).await?;
        if !matches!(d.blob.cred, Cred::Bearer(_)) {
            let mut c = self.datastores.lock().unwrap_or_else(|e| e.into_inner());
            c.push((key, std::time::Instant::now(), d.clone()));
        }
        Ok(d)
    }

    async fn fetch_datastore(&self, name: Option<&str>) -> LabResult<Datastore> {
        let v = match name {
            Some(n) => self.get(&self.ws_url(&format!("/datastores/{n}"))).await?,
            None => {
                let list = self.get(&self.ws_url("/datastores?isDefault=true")).await?;
                match list["value"].as_array().and_then(|a| a.first()) {
                    Some(d) => d.clone(),
                    None => {
                        self.get(&self.ws_url("/datastores/workspaceblobstore"))
                            .await?
                    }
                }
            }
        };
        let name = v["name"]
            .as_str()
            .unwrap_or("workspaceblobstore")
            .to_string();
        let p = &v["properties"];
        if p["datastoreType"]
            .as_str()
            .is_some_and(|t| t != "AzureBlob")
        {
            return Err(LabError::new(
                "azure.api",
                format!("datastore {name} is {}, not AzureBlob", p["datastoreType"]),
            ));
        }
        let account = p["accountName"].as_str().unwrap_or_default().to_string();
        let container = p["containerName"].as_str().unwrap_or_default().to_string();
        let base = if self.cfg.blob_url.is_empty() {
            format!(
                "{}://{account}.blob.{}",
                p["protocol"].as_str().unwrap_or("https"),
                p["endpoint"].as_str().unwrap_or("core.windows.net")
            )
        } else {
            self.cfg.blob_url.replace("{account}", &account)
        };
        let cred = if p["credentials"]["credentialsType"].as_str() == Some("None") {
            Cred::Bearer(self.auth.token(&self.cfg.storage_scope).await?)
        } else {
            let s = self
                .post(
                    &self.ws_url(&format!("/datastores/{name}/listSecrets")),
                    Some(&json!({"expirableSecret": true, "expireAfterHours": 1})),
                )
                .await?
                .body;
            match (
                s["secretsType"].as_str(),
                s["key"].as_str(),
                s["sasToken"].as_str(),
            ) {
                (_, Some(key), _) => {
                    crate::redact::register(key);
                    use base64::Engine as _;
                    let key = base64::engine::general_purpose::STANDARD
                        .decode(key)
                        .map_err(|_| {
                            LabError::new(
                                "azure.api",
                                format!("datastore {name}: the account key is not base64"),
                            )
                        })?;
                    Cred::SharedKey {
                        account: account.clone(),
                        key,
                    }
                }
                (_, None, Some(sas)) => {
                    crate::redact::register(sas);
                    Cred::Sas(sas.to_string())
                }
                _ => Cred::Bearer(self.auth.token(&self.cfg.storage_scope).await?),
            }
        };
        Ok(Datastore {
            blob: Container::new(format!("{base}/{container}"), cred),
            name,
            account,
            container,
        })
    }

    /// Uploads a snapshot under `prefix` (`LocalUpload/<hash>/<dirname>`) unless a completed
    /// upload is there (the first blob carries `upload_status: completed`). Returns the
    /// folder's blob URL and whether anything was uploaded.
    pub async fn upload_snapshot(
        &self,
        snap: &Snapshot,
        ds: &Datastore,
        meta_name: &str,
        prefix: &str,
    ) -> LabResult<(String, bool)> {
        let folder_url = format!("{}/{prefix}", ds.blob.url);
        let Some((_, first)) = snap.files.first() else {
            return Err(LabError::new(
                "azure.code",
                format!(
                    "{}: nothing to upload (every file is ignored)",
                    snap.root.display()
                ),
            ));
        };
        let indicator = format!("{prefix}/{first}");
        if let Ok(m) = ds.blob.metadata(&indicator).await {
            if m.iter()
                .any(|(k, v)| k == "upload_status" && v == "completed")
            {
                return Ok((folder_url, false));
            }
        }
        for w in snap.warnings() {
            tracing::warn!("{w}");
        }
        // Every file, then the first again with the metadata that says the upload is
        // complete (what the SDK checks before uploading again).
        for (p, rel) in snap.files.iter().skip(1) {
            ds.blob.put_file(&format!("{prefix}/{rel}"), p).await?;
        }
        let first_path = &snap.files[0].0;
        ds.blob
            .put_file_with_metadata(
                &indicator,
                first_path,
                &[
                    ("upload_status", "completed"),
                    ("name", meta_name),
                    ("version", "1"),
                ],
            )
            .await?;
        Ok((folder_url, true))
    }

    /// A code snapshot as a code version (`{WS}/codes/<hash uuid>/versions/1`): found by
    /// name and hash when registered before, else uploaded and registered.
    pub async fn code_version(&self, path: &Path) -> LabResult<String> {
        let snap = snapshot(path)?;
        let name = snap.asset_name();
        let url = self.ws_url(&format!("/codes/{name}/versions/1"));
        match self.get(&url).await {
            Ok(v)
                if v["properties"]["properties"]["hash_sha256"].as_str() == Some(&snap.sha256) =>
            {
                if let Some(id) = v["id"].as_str() {
                    tracing::info!(
                        "code {}: unchanged (hash {}), not uploaded again",
                        snap.root.display(),
                        &snap.sha256[..12]
                    );
                    return Ok(id.to_string());
                }
            }
            Ok(_) => {}
            Err(e) if e.kind == "azure.not_found" => {}
            Err(e) => return Err(e),
        }
        let ds = self.datastore(None).await?;
        let (uri, _) = self
            .upload_snapshot(&snap, &ds, &name, &snap.prefix())
            .await?;
        let v = self
            .put(
                &url,
                &json!({"properties": {
                    "codeUri": uri,
                    "isAnonymous": true,
                    "properties": {"hash_sha256": snap.sha256, "hash_version": HASH_VERSION},
                }}),
            )
            .await?;
        v["id"].as_str().map(str::to_string).ok_or_else(|| {
            LabError::new(
                "azure.api",
                format!("PUT codes/{name}: the answer has no id"),
            )
        })
    }

    /// A local input uploaded to the default datastore: its `azureml://` URI.
    pub async fn data_uri(&self, path: &Path) -> LabResult<String> {
        let snap = snapshot(path)?;
        let ds = self.datastore(None).await?;
        let prefix = snap.object_prefix(&snap.object_hash());
        self.upload_snapshot(&snap, &ds, &snap.asset_name(), &prefix)
            .await?;
        let single = std::fs::metadata(path)
            .map(|m| m.is_file())
            .unwrap_or(false);
        Ok(if single {
            format!(
                "azureml://datastores/{}/paths/{}/{}",
                ds.name,
                prefix,
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        } else {
            format!("azureml://datastores/{}/paths/{}/", ds.name, prefix)
        })
    }

    /// An inline environment as an anonymous environment version (azure-ai-ml's name
    /// `CliV2AnonymousEnvironment`, version = a hash of its definition).
    pub async fn environment_version(&self, image: &str, conda: Option<&str>) -> LabResult<String> {
        let ver = anonymous_env_version(&[Some(image), conda]);
        let mut props = json!({"image": image, "isAnonymous": true, "isArchived": false});
        if let Some(c) = conda {
            props["condaFile"] = c.into();
        }
        self.register_anonymous_env(&ver, props).await
    }

    /// A Docker build context uploaded as azure-ai-ml uploads it (`LocalUpload/<hash>/<dir>/`)
    /// and registered as an anonymous environment that Azure builds.
    pub async fn build_environment(
        &self,
        context: &Path,
        dockerfile: Option<&str>,
    ) -> LabResult<String> {
        let snap = snapshot(context)?;
        let ds = self.datastore(None).await?;
        let hash = snap.object_hash();
        let (uri, _) = self
            .upload_snapshot(&snap, &ds, &snap.asset_name(), &snap.object_prefix(&hash))
            .await?;
        let ver = anonymous_env_version(&[Some(&hash), dockerfile]);
        let mut build = json!({"contextUri": format!("{}/", uri.trim_end_matches('/'))});
        if let Some(d) = dockerfile {
            build["dockerfilePath"] = d.into();
        }
        self.register_anonymous_env(
            &ver,
            json!({"build": build, "isAnonymous": true, "isArchived": false}),
        )
        .await
    }

    /// A step's component as an anonymous component version (azure-ai-ml's
    /// `azureml_anonymous`), named by a hash of its spec → its ARM id.
    pub async fn component_version(&self, spec: &Value) -> LabResult<String> {
        let ver = super::pipeline::component_version(spec);
        let v = self
            .put(
                &self.ws_url(&format!("/components/azureml_anonymous/versions/{ver}")),
                &json!({"properties": {"componentSpec": spec, "isAnonymous": true, "isArchived": false, "properties": {}, "tags": {}}}),
            )
            .await?;
        Ok(v["id"].as_str().map(str::to_string).unwrap_or_else(|| {
            format!(
                "{}/components/azureml_anonymous/versions/{ver}",
                self.cfg.workspace_path()
            )
        }))
    }

    async fn register_anonymous_env(&self, ver: &str, props: Value) -> LabResult<String> {
        let v = self
            .put(
                &self.ws_url(&format!(
                    "/environments/CliV2AnonymousEnvironment/versions/{ver}"
                )),
                &json!({"properties": props}),
            )
            .await?;
        Ok(v["id"].as_str().map(str::to_string).unwrap_or_else(|| {
            format!(
                "{}/environments/CliV2AnonymousEnvironment/versions/{ver}",
                self.cfg.workspace_path()
            )
        }))
    }

    /// The newest version of an environment or data asset (azure-ai-ml resolves `@latest`
    /// the same way: list, newest first, one).
    pub async fn latest(&self, kind: &str, name: &str) -> LabResult<String> {
        let v = self
            .get(&self.ws_url(&format!(
                "/{kind}/{name}/versions?$orderBy=createdtime%20desc&$top=1"
            )))
            .await?;
        let first = v["value"]
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| {
                LabError::new(
                    "azure.not_found",
                    format!("azureml:{name}@latest: the workspace has no {kind} asset '{name}'"),
                )
            })?;
        let version = first["name"].as_str().unwrap_or_default();
        Ok(match kind {
            "data" => format!("azureml:{name}:{version}"),
            _ => first["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(format!("azureml:{name}:{version}")),
        })
    }

    /// Resolves every asset marker of a body (uploads, registrations, lookups).
    pub async fn resolve_assets(&self, body: &mut Value) -> LabResult<()> {
        use super::body::Asset;
        let mut done: Vec<(Asset, String)> = Vec::new();
        for a in super::body::assets(body) {
            let v = match &a {
                Asset::Code { path } => self.code_version(path).await?,
                Asset::Data { path } => self.data_uri(path).await?,
                Asset::Environment { image, conda } => {
                    self.environment_version(image, conda.as_deref()).await?
                }
                Asset::Build {
                    context,
                    dockerfile,
                } => {
                    self.build_environment(context, dockerfile.as_deref())
                        .await?
                }
                Asset::Latest { kind, name } => self.latest(kind, name).await?,
                Asset::Component { spec } => {
                    // Its code and environment came earlier in the list: resolved above.
                    let mut spec = spec.clone();
                    super::body::replace_assets(&mut spec, &|x| {
                        done.iter().find(|(y, _)| y == x).map(|(_, v)| v.clone())
                    });
                    self.component_version(&spec).await?
                }
            };
            done.push((a, v));
        }
        super::body::replace_assets(body, &|a| {
            done.iter().find(|(x, _)| x == a).map(|(_, v)| v.clone())
        });
        Ok(())
    }
}

fn object_hash_dir(dir: &Path, files: &std::collections::BTreeSet<&Path>, h: &mut sha2::Sha256) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort_by_key(|p| p.to_string_lossy().to_lowercase());
    for p in entries {
        let is_dir = p.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
        let held = if is_dir {
            files.iter().any(|f| f.starts_with(&p))
                || (!matches!(
                    p.file_name().and_then(|n| n.to_str()),
                    Some(".git" | ".labhost")
                ) && std::fs::read_dir(&p)
                    .map(|mut r| r.next().is_none())
                    .unwrap_or(false))
        } else {
            files.contains(p.as_path())
        };
        if !held {
            continue;
        }
        h.update(p.file_name().unwrap_or_default().as_encoded_bytes());
        if is_dir {
            object_hash_dir(&p, files, h);
        } else if let Ok(b) = std::fs::read(&p) {
            h.update(&b);
        }
    }
}

/// azure-ai-ml's anonymous environment version (`Environment._generate_anonymous_name_version`):
/// Python's `h.join(x)` on strings puts `h` between the characters of `x`, so the parts'
/// sha256 hex digests are folded left that way, then hashed once more. Parts that are `None`
/// are skipped. The same environment then has the same version whoever submits it, and Azure
/// builds its image once.
pub fn anonymous_env_version(parts: &[Option<&str>]) -> String {
    let sha = |s: &str| hex(&sha2::Sha256::digest(s.as_bytes()));
    let mut acc = String::new();
    for p in parts.iter().flatten() {
        let h = sha(p);
        acc = if acc.is_empty() {
            h
        } else {
            let sep = acc;
            let chars: Vec<String> = h.chars().map(String::from).collect();
            chars.join(&sep)
        };
    }
    sha(&acc)
}

/// How `--dry-run` shows an asset (no network): what would be uploaded or looked up.
pub fn describe(a: &super::body::Asset, ws: &str) -> LabResult<(String, Value)> {
    use super::body::Asset;
    Ok(match a {
        Asset::Code { path } => {
            let s = snapshot(path)?;
            let name = s.asset_name();
            (
                format!("{ws}/codes/{name}/versions/1"),
                json!({
                    "upload": format!("{} file(s), {} bytes from {} to <default datastore>/{}/", s.files.len(), s.bytes, s.root.display(), s.prefix()),
                    "ignore_file": s.ignore_file,
                    "warnings": s.warnings(),
                    "request": {"method": "PUT", "path": format!("{ws}/codes/{name}/versions/1"), "body": {"properties": {
                        "codeUri": format!("https://<account>.blob.core.windows.net/<container>/{}", s.prefix()),
                        "isAnonymous": true,
                        "properties": {"hash_sha256": s.sha256, "hash_version": HASH_VERSION}}}},
                }),
            )
        }
        Asset::Data { path } => {
            let s = snapshot(path)?;
            (
                format!(
                    "azureml://datastores/workspaceblobstore/paths/{}/",
                    s.object_prefix(&s.object_hash())
                ),
                json!({"upload": format!("{} file(s), {} bytes from {}", s.files.len(), s.bytes, s.root.display())}),
            )
        }
        Asset::Environment { image, conda } => {
            let ver = anonymous_env_version(&[Some(image), conda.as_deref()]);
            let path = format!("{ws}/environments/CliV2AnonymousEnvironment/versions/{ver}");
            (
                path.clone(),
                json!({"request": {"method": "PUT", "path": path,
                       "body": {"properties": {"image": image, "condaFile": conda, "isAnonymous": true, "isArchived": false}}}}),
            )
        }
        Asset::Build {
            context,
            dockerfile,
        } => {
            let s = snapshot(context)?;
            let hash = s.object_hash();
            let ver = anonymous_env_version(&[Some(&hash), dockerfile.as_deref()]);
            let path = format!("{ws}/environments/CliV2AnonymousEnvironment/versions/{ver}");
            (
                path.clone(),
                json!({"upload": format!("{} file(s), {} bytes from {}", s.files.len(), s.bytes, s.root.display()),
                       "request": {"method": "PUT", "path": path,
                       "body": {"properties": {"build": {"contextUri": format!("<datastore>/{}/", s.object_prefix(&hash)), "dockerfilePath": dockerfile}, "isAnonymous": true, "isArchived": false}}}}),
            )
        }
        Asset::Component { spec } => {
            let path = format!(
                "{ws}/components/azureml_anonymous/versions/<hash of the spec with its code and environment ids>"
            );
            (
                path.clone(),
                json!({"request": {"method": "PUT", "path": path,
                       "body": {"properties": {"componentSpec": spec, "isAnonymous": true, "isArchived": false, "properties": {}, "tags": {}}}}}),
            )
        }
        Asset::Latest { kind, name } => (
            format!("azureml:{name}@latest"),
            json!({"lookup": format!("GET {ws}/{kind}/{name}/versions (newest first)")}),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_honours_amlignore_skips_links_and_hashes_stably() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join("train.py"), "print(1)\n").unwrap();
        std::fs::write(src.join("B.txt"), "b").unwrap();
        std::fs::write(src.join("sub/a.py"), "a").unwrap();
        std::fs::write(src.join("big.ckpt"), "x").unwrap();
        std::fs::write(src.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(src.join(".gitignore"), "B.txt\n").unwrap();
        std::fs::write(src.join(".amlignore"), "*.ckpt\n").unwrap();
        std::os::unix::fs::symlink(t.path(), src.join("venv")).unwrap();
        let s = snapshot(&src).unwrap();
        let rels: Vec<&str> = s.files.iter().map(|(_, r)| r.as_str()).collect();
        // .amlignore wins over .gitignore: B.txt stays, *.ckpt goes; .git never; the link
        // is skipped, not followed.
        assert_eq!(
            rels,
            vec![".amlignore", ".gitignore", "B.txt", "sub/a.py", "train.py"]
        );
        assert_eq!(s.skipped_links, vec!["venv"]);
        assert_eq!(s.ignore_file.as_deref(), Some(".amlignore"));
        // The hash: count, then #path#size sorted by lower-cased path, then contents.
        let mut h = sha2::Sha256::new();
        h.update(b"5");
        for (p, n) in [
            (".amlignore", 7),
            (".gitignore", 6),
            ("B.txt", 1),
            ("sub/a.py", 1),
            ("train.py", 9),
        ] {
            h.update(format!("#{p}#{n}").as_bytes());
        }
        for c in ["*.ckpt\n", "B.txt\n", "b", "a", "print(1)\n"] {
            h.update(c.as_bytes());
        }
        assert_eq!(s.sha256, hex(&h.finalize()));
        assert_eq!(s.prefix(), format!("LocalUpload/{}/src", s.sha256));
        assert!(s.warnings()[0].contains("1 symbolic link(s) not uploaded"));
        std::fs::write(src.join("train.py"), "print(2)\n").unwrap();
        assert_ne!(snapshot(&src).unwrap().sha256, s.sha256);
    }
}
