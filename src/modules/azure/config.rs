//! `AzureConfig` (InnerEye `AzureConfig`): the workspace, cluster and submission settings, read
//! through the settings module — the project settings YAML's `variables:`, then the private
//! settings file's, then command-line options — with the service principal's secret
//! (`APPLICATION_KEY`) read through the secrets module. Every base URL is a setting, so a
//! sovereign cloud or a local fake is a settings change, not a code change.
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{LabError, LabResult};
use crate::modules::{secrets, settings};

/// The settings file labhost reads when none is named (and `$LABHOST_AZURE_SETTINGS` is not
/// set): InnerEye keeps `settings.yml` in the project; labhost looks for it from the working
/// directory up.
pub const SETTINGS_FILE: &str = "settings.yml";
/// The secret holding the service principal's key (InnerEye's name).
pub const APPLICATION_KEY: &str = "APPLICATION_KEY";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AzureConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: String,
    pub tenant_id: String,
    pub application_id: String,
    /// The compute cluster jobs run on (`compute:` of a job YAML wins).
    pub cluster: String,
    /// The datastore holding datasets (default: the workspace's default datastore).
    pub datastore: String,
    pub experiment_name: String,
    /// A free-text tag added to every submitted run (tag `tag`).
    pub tag: String,
    pub num_nodes: u64,
    /// `3.5h`, `2d`, `90m`, `30s` (InnerEye `run_duration_string_to_seconds`).
    pub max_run_duration: String,
    /// `resources.shm_size` when a job sets none (InnerEye used 440g; empty: Azure's default).
    pub docker_shm_size: String,
    pub pip_extra_index_url: String,
    pub wait_for_completion: bool,
    pub run_recovery_id: String,
    pub use_dataset_mount: bool,
    pub hyperdrive: bool,
    /// InnerEye `DatasetParams`: dataset folders on the datastore, their mount points and
    /// local copies (N datasets with 0 or N of each).
    pub azure_dataset_id: String,
    pub extra_azure_dataset_ids: Vec<String>,
    pub dataset_mountpoint: String,
    pub extra_dataset_mountpoints: Vec<String>,
    pub local_dataset: String,
    pub extra_local_dataset_paths: Vec<String>,
    pub api_version: String,
    /// `auto` (service principal, workload identity, managed identity, `az`, in that order),
    /// `service_principal`, `workload_identity`, `managed_identity` or `cli`.
    pub auth: String,
    pub arm_url: String,
    /// The token scope for ARM, the workspace data planes and its MLflow endpoint.
    pub arm_scope: String,
    pub storage_scope: String,
    pub authority_url: String,
    pub imds_url: String,
    /// Overrides the workspace's `discoveryUrl` (run history).
    pub discovery_url: String,
    /// Overrides the blob endpoint of storage accounts: `https://{account}.blob.{suffix}`
    /// normally; a path-style URL such as `http://127.0.0.1:10000/{account}` for Azurite.
    pub blob_url: String,
    /// Overrides the workspace's MLflow tracking URI (an `http(s)://` base).
    pub mlflow_url: String,
    pub studio_url: String,
    /// Local runs: GPUs per process for a job whose `compute:` is the key (`gpu-cluster` or
    /// `azureml:gpu-cluster`), so the same job file gets GPUs here without a local-only key.
    pub local_gpus: std::collections::BTreeMap<String, u32>,
    /// The service principal's key; never serialized.
    #[serde(skip)]
    pub application_key: Option<String>,
    /// Where each value came from, for error messages.
    #[serde(skip)]
    pub sources: Sources,
}

/// The files a configuration was read from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    pub settings: Option<PathBuf>,
    pub private: Option<PathBuf>,
}

/// The schema: every key with its default (the default's type is the key's type).
pub fn schema() -> Map<String, Value> {
    let authority = std::env::var("AZURE_AUTHORITY_HOST")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://login.microsoftonline.com".into());
    json!({
        "subscription_id": "", "resource_group": "", "workspace_name": "", "tenant_id": "",
        "application_id": "", "cluster": "", "datastore": "", "experiment_name": "", "tag": "",
        "num_nodes": 1, "max_run_duration": "", "docker_shm_size": "",
        "pip_extra_index_url": "", "wait_for_completion": false, "run_recovery_id": "",
        "use_dataset_mount": false, "hyperdrive": false,
        "azure_dataset_id": "", "extra_azure_dataset_ids": [""], "dataset_mountpoint": "",
        "extra_dataset_mountpoints": [""], "local_dataset": "", "extra_local_dataset_paths": [""],
        "api_version": "2024-10-01", "auth": "auto",
        "arm_url": "https://management.azure.com",
        "arm_scope": "https://management.azure.com/.default",
        "storage_scope": "https://storage.azure.com/.default",
        "authority_url": authority,
        "imds_url": "http://169.254.169.254/metadata/identity/oauth2/token",
        "discovery_url": "", "blob_url": "", "mlflow_url": "",
        "studio_url": "https://ml.azure.com",
        "local_gpus": {},
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// Where a configuration is read from.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The project settings YAML; `None`: `settings.yml` from the working directory up, if any.
    pub settings: Option<PathBuf>,
    /// The private settings file; `None`: `labhost.private.yml` as the settings module finds it.
    pub private: Option<PathBuf>,
    /// Command-line values (`--cluster=x`), highest precedence. Unknown keys are errors.
    pub args: Map<String, Value>,
}

/// Reads the configuration. Only types are checked here; [`AzureConfig::require_workspace`]
/// names what is missing when a call needs it.
pub fn load(req: &Request) -> LabResult<AzureConfig> {
    let settings_file = match &req.settings {
        Some(p) => {
            if !p.exists() {
                return Err(LabError::new(
                    "azure.config",
                    format!("settings file {} does not exist", p.display()),
                ));
            }
            Some(p.clone())
        }
        None => match crate::config::azure_settings() {
            Some(p) => Some(p),
            None => std::env::current_dir()
                .ok()
                .and_then(|d| settings::step_up(&d, SETTINGS_FILE)),
        },
    };
    let private = req.private.clone().or_else(settings::private_file);
    // A private file may hold only `secrets:` (the service principal's key): then it has no
    // settings to give.
    let skip_private = match &private {
        Some(p) if p.exists() => settings::read_optional_section(p, "variables", true)?
            .0
            .is_none(),
        _ => false,
    };
    let parsed = settings::parse(&settings::Request {
        schema: schema(),
        yaml: settings_file.clone(),
        private: private.clone(),
        args: req.args.clone(),
        fail_on_unknown: true,
        substitute: true,
        skip_private,
    })
    .map_err(|e| LabError::new("azure.config", e.message))?;
    let a = &parsed.args;
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |k: &str| -> Vec<String> {
        a.get(k)
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let b = |k: &str| a.get(k).and_then(Value::as_bool).unwrap_or(false);
    let private = private.filter(|p| p.exists());
    let application_key =
        secrets::lookup(APPLICATION_KEY, private.as_deref())?.filter(|k| !k.is_empty());
    let trim = |u: String| u.trim_end_matches('/').to_string();
    let cfg = AzureConfig {
        subscription_id: s("subscription_id"),
        resource_group: s("resource_group"),
        workspace_name: s("workspace_name"),
        tenant_id: s("tenant_id"),
        application_id: s("application_id"),
        cluster: s("cluster"),
        datastore: s("datastore"),
        experiment_name: s("experiment_name"),
        tag: s("tag"),
        num_nodes: a.get("num_nodes").and_then(Value::as_u64).unwrap_or(1),
        max_run_duration: s("max_run_duration"),
        docker_shm_size: s("docker_shm_size"),
        pip_extra_index_url: s("pip_extra_index_url"),
        wait_for_completion: b("wait_for_completion"),
        run_recovery_id: s("run_recovery_id"),
        use_dataset_mount: b("use_dataset_mount"),
        hyperdrive: b("hyperdrive"),
        azure_dataset_id: s("azure_dataset_id"),
        extra_azure_dataset_ids: list("extra_azure_dataset_ids"),
        dataset_mountpoint: s("dataset_mountpoint"),
        extra_dataset_mountpoints: list("extra_dataset_mountpoints"),
        local_dataset: s("local_dataset"),
        extra_local_dataset_paths: list("extra_local_dataset_paths"),
        api_version: s("api_version"),
        auth: s("auth"),
        arm_url: trim(s("arm_url")),
        arm_scope: s("arm_scope"),
        storage_scope: s("storage_scope"),
        authority_url: trim(s("authority_url")),
        imds_url: s("imds_url"),
        discovery_url: trim(s("discovery_url")),
        blob_url: trim(s("blob_url")),
        mlflow_url: trim(s("mlflow_url")),
        studio_url: trim(s("studio_url")),
        local_gpus: local_gpus(a.get("local_gpus"), settings_file.as_deref())?,
        application_key,
        sources: Sources {
            settings: settings_file,
            private,
        },
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `local_gpus: {compute: GPUs per process}`, each a whole number.
fn local_gpus(
    v: Option<&Value>,
    file: Option<&std::path::Path>,
) -> LabResult<std::collections::BTreeMap<String, u32>> {
    let mut out = std::collections::BTreeMap::new();
    for (k, n) in v.and_then(Value::as_object).into_iter().flatten() {
        let Some(g) = n.as_u64().filter(|g| *g <= 1024) else {
            let at = file.map_or("settings".into(), |f| f.display().to_string());
            return Err(LabError::new(
                "azure.config",
                format!("{at}: local_gpus.{k}: {n} is not a whole number of GPUs per process"),
            ));
        };
        out.insert(k.clone(), g as u32);
    }
    Ok(out)
}

impl AzureConfig {
    /// GPUs per process `local_gpus` gives a job on `compute` (`azureml:` prefix or not).
    pub fn local_gpus_for(&self, compute: &str) -> Option<(String, u32)> {
        let bare = compute.strip_prefix("azureml:").unwrap_or(compute);
        [
            compute.to_string(),
            bare.to_string(),
            format!("azureml:{bare}"),
        ]
        .into_iter()
        .find_map(|k| self.local_gpus.get(&k).map(|n| (k, *n)))
    }

    /// Where a missing key would be set, for error messages.
    pub fn where_to_set(&self, key: &str) -> String {
        let files = match (&self.sources.settings, &self.sources.private) {
            (Some(s), Some(p)) => format!("{} or {}", s.display(), p.display()),
            (Some(s), None) => format!("{} or {}", s.display(), settings::PRIVATE_FILE),
            (None, Some(p)) => format!("{SETTINGS_FILE} or {}", p.display()),
            (None, None) => format!(
                "{SETTINGS_FILE} or {} (neither was found)",
                settings::PRIVATE_FILE
            ),
        };
        format!("set '{key}:' under 'variables:' in {files}, or pass --{key}=…")
    }

    fn missing(&self, keys: &[&str]) -> LabError {
        LabError::new(
            "azure.config",
            format!(
                "{} not set: {}",
                keys.join(", "),
                keys.iter()
                    .map(|k| self.where_to_set(k))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    }

    /// Checks the values that have a shape (URLs, durations, the auth mode).
    fn validate(&self) -> LabResult<()> {
        for (k, v) in [
            ("arm_url", &self.arm_url),
            ("authority_url", &self.authority_url),
            ("imds_url", &self.imds_url),
            ("studio_url", &self.studio_url),
            ("discovery_url", &self.discovery_url),
            ("blob_url", &self.blob_url),
            ("mlflow_url", &self.mlflow_url),
        ] {
            if !(v.is_empty() || v.starts_with("https://") || v.starts_with("http://")) {
                return Err(LabError::new(
                    "azure.config",
                    format!(
                        "{k}: '{v}' is not an http(s):// URL ({})",
                        self.where_to_set(k)
                    ),
                ));
            }
        }
        if !matches!(
            self.auth.as_str(),
            "auto" | "service_principal" | "workload_identity" | "managed_identity" | "cli"
        ) {
            return Err(LabError::new(
                "azure.config",
                format!(
                    "auth: '{}' is not one of auto, service_principal, workload_identity, managed_identity, cli",
                    self.auth
                ),
            ));
        }
        if self.num_nodes == 0 {
            return Err(LabError::new(
                "azure.config",
                "num_nodes must be at least 1",
            ));
        }
        self.max_run_seconds()?;
        self.datasets()?;
        Ok(())
    }

    /// An error naming each of `fields` that is empty and where it would come from.
    fn require(&self, fields: &[(&str, &String)]) -> LabResult<()> {
        let missing: Vec<&str> = fields
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.missing(&missing))
        }
    }

    /// The workspace coordinates every call needs; the error names each missing one and
    /// where it would come from.
    pub fn require_workspace(&self) -> LabResult<()> {
        self.require(&[
            ("subscription_id", &self.subscription_id),
            ("resource_group", &self.resource_group),
            ("workspace_name", &self.workspace_name),
        ])
    }

    /// What a service principal needs; the error names the missing keys and the secret.
    pub fn require_service_principal(&self) -> LabResult<&str> {
        self.require(&[
            ("tenant_id", &self.tenant_id),
            ("application_id", &self.application_id),
        ])?;
        self.application_key.as_deref().ok_or_else(|| {
            let f: Option<&Path> = self.sources.private.as_deref();
            secrets::missing(&[APPLICATION_KEY.to_string()], f)
        })
    }

    /// `{WS}`: the workspace's ARM path.
    pub fn workspace_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.workspace_name
        )
    }

    /// `max_run_duration` in seconds (`None` when unset): InnerEye's
    /// `run_duration_string_to_seconds` (`3.5h`, `2d`, `90m`).
    pub fn max_run_seconds(&self) -> LabResult<Option<u64>> {
        crate::modules::util::run_duration_string_to_seconds(&self.max_run_duration)
            .map(|s| s.map(|s| s.max(0) as u64))
            .map_err(|e| {
                LabError::new(
                    "azure.config",
                    format!(
                        "max_run_duration: '{}': {}",
                        self.max_run_duration, e.message
                    ),
                )
            })
    }

    /// InnerEye `create_dataset_configs`: N dataset ids with 0 or N mount points and 0 or N
    /// local paths; no ids and no mount points → none.
    pub fn datasets(&self) -> LabResult<Vec<Dataset>> {
        let join = |first: &str, rest: &[String]| -> Vec<String> {
            std::iter::once(first.to_string())
                .chain(rest.iter().cloned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let ids = join(&self.azure_dataset_id, &self.extra_azure_dataset_ids);
        let mounts = join(&self.dataset_mountpoint, &self.extra_dataset_mountpoints);
        let locals = join(&self.local_dataset, &self.extra_local_dataset_paths);
        create_dataset_configs(
            &ids,
            &mounts,
            &locals,
            &self.datastore,
            self.use_dataset_mount,
        )
    }
}

/// A dataset a job reads: a folder on a datastore.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    pub name: String,
    pub mountpoint: String,
    pub local: String,
    pub datastore: String,
    pub use_mounting: bool,
}

/// InnerEye `create_dataset_configs`, with its validation.
pub fn create_dataset_configs(
    ids: &[String],
    mounts: &[String],
    locals: &[String],
    datastore: &str,
    use_mounting: bool,
) -> LabResult<Vec<Dataset>> {
    let (na, nm, nl) = (ids.len(), mounts.len(), locals.len());
    if na == 0 && nm == 0 {
        return Ok(vec![]);
    }
    if na == 0 || !(nl == 0 || nl == na) || !(nm == 0 || nm == na) {
        return Err(LabError::new(
            "azure.config",
            format!("invalid dataset setup: {na} azure dataset(s), {nm} mount point(s), {nl} local dataset(s). You need to specify N entries in azure_dataset_id + extra_azure_dataset_ids and a matching number (or none) of dataset_mountpoint + extra_dataset_mountpoints and local_dataset + extra_local_dataset_paths"),
        ));
    }
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| Dataset {
            name: id.clone(),
            mountpoint: mounts.get(i).cloned().unwrap_or_default(),
            local: locals.get(i).cloned().unwrap_or_default(),
            datastore: datastore.to_string(),
            use_mounting,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_configs_are_validated_as_innereye_does() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            create_dataset_configs(&[], &[], &v(&["l"]), "", false).unwrap(),
            vec![]
        );
        let d =
            create_dataset_configs(&v(&["a", "b"]), &[], &v(&["/x", "/y"]), "ds", true).unwrap();
        assert_eq!(
            (
                d[1].name.as_str(),
                d[1].local.as_str(),
                d[1].mountpoint.as_str()
            ),
            ("b", "/y", "")
        );
        assert!(create_dataset_configs(&v(&["a", "b"]), &v(&["/m"]), &[], "", false).is_err());
        assert!(create_dataset_configs(&v(&["a"]), &[], &v(&["/x", "/y"]), "", false).is_err());
        assert!(create_dataset_configs(&[], &v(&["/m"]), &[], "", false).is_err());
    }

    #[test]
    fn missing_workspace_fields_name_where_they_come_from() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("settings.yml");
        std::fs::write(&f, "variables:\n  subscription_id: sub\n  cluster: gpu\n").unwrap();
        let private = t.path().join("p.yml");
        std::fs::write(&private, "variables: {}\n").unwrap();
        let c = load(&Request {
            settings: Some(f.clone()),
            private: Some(private.clone()),
            args: Map::new(),
        })
        .unwrap();
        assert_eq!(c.cluster, "gpu");
        let e = c.require_workspace().unwrap_err();
        assert!(e.message.starts_with("resource_group, workspace_name not set: set 'resource_group:' under 'variables:' in"), "{}", e.message);
        assert!(e.message.contains("settings.yml"), "{}", e.message);
        let mut args = Map::new();
        args.insert("clustre".into(), "x".into());
        let e = load(&Request {
            settings: Some(f),
            private: Some(private),
            args,
        })
        .unwrap_err();
        assert!(e.message.contains("--clustre"), "{}", e.message);
    }
}
