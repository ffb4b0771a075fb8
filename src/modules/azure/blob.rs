//! Azure Blob storage through `object_store` (Apache Arrow's crate, its `azure` store): Put
//! Blob and multipart (Put Block + Put Block List) uploads with user metadata, List Blobs
//! (paging), Get Blob, and the blob's metadata — authorised with SharedKey (an account key
//! from the datastore's `listSecrets`), a SAS, an AAD bearer token (identity-based
//! datastores), or nothing (a public container). Requests are retried with backoff by the
//! crate. Works against `https://{account}.blob.core.windows.net` and Azurite's path-style
//! `http://127.0.0.1:10000/{account}` alike.
use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use futures_util::StreamExt;
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path as BlobPath;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};

use crate::error::{LabError, LabResult};

/// Files above this go up in blocks (a multipart upload).
pub const SINGLE_PUT_MAX: u64 = 64 * 1024 * 1024;
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;

/// How requests to a container are authorised.
#[derive(Clone)]
pub enum Cred {
    SharedKey {
        account: String,
        key: Vec<u8>,
    },
    /// A SAS query string (with or without `?`).
    Sas(String),
    Bearer(String),
    /// No credential: a public container (anonymous read access).
    Anonymous,
}

impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cred::SharedKey { .. } => "SharedKey(***)",
            Cred::Sas(_) => "Sas(***)",
            Cred::Bearer(_) => "Bearer(***)",
            Cred::Anonymous => "Anonymous",
        })
    }
}

/// A container: its URL (`{account base}/{container}`) and credential. The client is built
/// on first use and shared by clones.
#[derive(Debug, Clone)]
pub struct Container {
    pub url: String,
    pub cred: Cred,
    store: Arc<OnceLock<Arc<MicrosoftAzure>>>,
}

/// One listed blob.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobItem {
    pub name: String,
    pub size: u64,
    /// The blob's ETag (changes whenever its content does).
    pub etag: String,
}

fn err(m: impl std::fmt::Display) -> LabError {
    LabError::new("azure.blob", crate::redact::apply(&m.to_string()))
}

pub use crate::util::percent_encode;

/// Percent-encodes a blob name for a URL path (each `/`-separated segment).
pub fn encode_path(name: &str) -> String {
    name.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// `{base}/{container}` → (base, account, container): the account from the host
/// (`{account}.blob.…`), or, path-style (Azurite), the base's last segment.
fn split_url(url: &str) -> LabResult<(String, String, String)> {
    let (base, container) = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .filter(|(b, c)| b.contains("://") && !c.is_empty())
        .ok_or_else(|| err(format!("{url}: not a container URL")))?;
    let after = base.split_once("://").map_or(base, |(_, r)| r);
    let account = match after.split_once('/') {
        Some((_, path)) => path.rsplit('/').next().unwrap_or(path),
        None => after.split('.').next().unwrap_or(after),
    };
    Ok((base.into(), account.into(), container.into()))
}

impl Container {
    pub fn new(url: impl Into<String>, cred: Cred) -> Container {
        Container {
            url: url.into(),
            cred,
            store: Arc::default(),
        }
    }

    fn store(&self) -> LabResult<Arc<MicrosoftAzure>> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        let (base, account, container) = split_url(&self.url)?;
        let mut b = MicrosoftAzureBuilder::new()
            .with_account(&account)
            .with_container_name(container)
            .with_allow_http(base.starts_with("http://"))
            .with_endpoint(base);
        b = match &self.cred {
            Cred::SharedKey { key, .. } => {
                b.with_access_key(base64::engine::general_purpose::STANDARD.encode(key))
            }
            Cred::Sas(sas) => b.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?')),
            Cred::Bearer(t) => b.with_bearer_token_authorization(t),
            Cred::Anonymous => b.with_skip_signature(true),
        };
        let s = Arc::new(b.build().map_err(|e| err(format!("{}: {e}", self.url)))?);
        Ok(self.store.get_or_init(|| s).clone())
    }

    fn fail(&self, name: &str, e: object_store::Error) -> LabError {
        let kind = match e {
            object_store::Error::NotFound { .. } => "azure.not_found",
            _ => "azure.blob",
        };
        LabError::new(
            kind,
            crate::redact::apply(&format!("{}/{name}: {e}", self.url)),
        )
    }

    /// Uploads a file as a block blob: one Put Blob, or a multipart upload above
    /// [`SINGLE_PUT_MAX`].
    pub async fn put_file(&self, name: &str, path: &Path) -> LabResult<()> {
        self.put_file_sized(name, path, SINGLE_PUT_MAX, BLOCK_SIZE, &[])
            .await
    }

    /// [`Container::put_file`] with metadata (`x-ms-meta-<k>: v`).
    pub async fn put_file_with_metadata(
        &self,
        name: &str,
        path: &Path,
        meta: &[(&str, &str)],
    ) -> LabResult<()> {
        self.put_file_sized(name, path, SINGLE_PUT_MAX, BLOCK_SIZE, meta)
            .await
    }

    /// [`Container::put_file`] with its thresholds given: files above `single_max` bytes go
    /// up in blocks of `block_size`.
    pub async fn put_file_sized(
        &self,
        name: &str,
        path: &Path,
        single_max: u64,
        block_size: usize,
        meta: &[(&str, &str)],
    ) -> LabResult<()> {
        let size = std::fs::metadata(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?
            .len();
        let attributes = Attributes::from_iter(
            meta.iter()
                .map(|(k, v)| (Attribute::Metadata(k.to_string().into()), v.to_string())),
        );
        let store = self.store()?;
        let at = BlobPath::from(name);
        if size <= single_max {
            let data = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            store
                .put_opts(&at, PutPayload::from(data), opts)
                .await
                .map_err(|e| self.fail(name, e))?;
            return Ok(());
        }
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let opts = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut up = store
            .put_multipart_opts(&at, opts)
            .await
            .map_err(|e| self.fail(name, e))?;
        loop {
            let mut buf = vec![0u8; block_size];
            let mut filled = 0;
            while filled < buf.len() {
                let n = f.read(&mut buf[filled..]).map_err(|e| err(e.to_string()))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if let Err(e) = up.put_part(PutPayload::from(buf)).await {
                let _ = up.abort().await;
                return Err(self.fail(name, e));
            }
        }
        up.complete().await.map_err(|e| self.fail(name, e))?;
        Ok(())
    }

    /// Put Blob (block blob) with `data`.
    pub async fn put(&self, name: &str, data: Vec<u8>) -> LabResult<()> {
        self.store()?
            .put(&BlobPath::from(name), PutPayload::from(data))
            .await
            .map_err(|e| self.fail(name, e))?;
        Ok(())
    }

    /// A blob's metadata (`x-ms-meta-*`, names without the prefix).
    pub async fn metadata(&self, name: &str) -> LabResult<Vec<(String, String)>> {
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        let r = self
            .store()?
            .get_opts(&BlobPath::from(name), opts)
            .await
            .map_err(|e| self.fail(name, e))?;
        Ok(r.attributes
            .iter()
            .filter_map(|(k, v)| match k {
                Attribute::Metadata(k) => Some((k.to_string(), v.to_string())),
                _ => None,
            })
            .collect())
    }

    /// The blob `name` itself, if there is one.
    pub async fn find(&self, name: &str) -> LabResult<Option<BlobItem>> {
        match self.store()?.head(&BlobPath::from(name)).await {
            Ok(m) => Ok(Some(item(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(name, e)),
        }
    }

    /// Every blob whose name starts with `prefix` (all pages).
    pub async fn list(&self, prefix: &str) -> LabResult<Vec<BlobItem>> {
        // The store lists by folder: the folder holding the prefix, filtered.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let store = self.store()?;
        let under = (!folder.is_empty()).then(|| BlobPath::from(folder));
        let mut s = store.list(under.as_ref());
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.fail(prefix, e))?;
            let b = item(m);
            if b.name.starts_with(prefix) {
                out.push(b);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Downloads a blob to `dest` (parent folders made), written to a temporary file first.
    pub async fn get_to(&self, name: &str, dest: &Path) -> LabResult<u64> {
        let r = self
            .store()?
            .get(&BlobPath::from(name))
            .await
            .map_err(|e| self.fail(name, e))?;
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
        }
        let tmp = dest.with_extension("labhost-part");
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
        let mut n = 0u64;
        use std::io::Write;
        let mut body = r.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.fail(name, e))?;
            f.write_all(&chunk).map_err(|e| err(e.to_string()))?;
            n += chunk.len() as u64;
        }
        drop(f);
        std::fs::rename(&tmp, dest).map_err(|e| err(format!("{}: {e}", dest.display())))?;
        Ok(n)
    }
}

fn item(m: object_store::ObjectMeta) -> BlobItem {
    BlobItem {
        name: m.location.to_string(),
        size: m.size,
        etag: m.e_tag.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_urls_name_the_account_either_way() {
        assert_eq!(
            split_url("https://acct.blob.core.windows.net/azureml-blobstore").unwrap(),
            (
                "https://acct.blob.core.windows.net".to_string(),
                "acct".to_string(),
                "azureml-blobstore".to_string()
            )
        );
        assert_eq!(
            split_url("http://127.0.0.1:10000/devstoreaccount1/code").unwrap(),
            (
                "http://127.0.0.1:10000/devstoreaccount1".to_string(),
                "devstoreaccount1".to_string(),
                "code".to_string()
            )
        );
        assert!(split_url("nothing").is_err());
    }

    #[test]
    fn every_credential_builds_a_client() {
        for cred in [
            Cred::SharedKey {
                account: "a".into(),
                key: b"key".to_vec(),
            },
            Cred::Sas("?sv=2021-08-06&sig=abc%3D".into()),
            Cred::Bearer("t".into()),
            Cred::Anonymous,
        ] {
            let c = Container::new("https://a.blob.core.windows.net/c", cred);
            assert!(c.store().is_ok());
            assert!(Arc::ptr_eq(
                &c.store().unwrap(),
                &c.clone().store().unwrap()
            ));
        }
        assert_eq!(format!("{:?}", Cred::Sas("sig=x".into())), "Sas(***)");
    }

    #[test]
    fn blob_names_are_encoded_by_segment() {
        assert_eq!(encode_path("a b/c&d.txt"), "a%20b/c%26d.txt");
    }
}
