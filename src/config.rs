//! Configuration from the environment: every `LABHOST_*` variable labhost reads is read here
//! and nowhere else, and listed in [`VARS`] (the README's table is checked against it).
//! [`check`] validates them all once at start, so a bad value is a clear error naming the
//! variable (exit 2), never a silent default or a panic later.
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{LabError, LabResult};

/// Every variable labhost reads, with what it does.
pub const VARS: &[(&str, &str)] = &[
    ("LABHOST_HOME", "the state directory (else `.labhost/` found like git, else the XDG state dir)"),
    ("LABHOST_PATH", "folders (colon separated) searched by `import` after the script's own"),
    ("LABHOST_LOG", "a tracing filter for labhost's own logs (e.g. `labhost=debug`)"),
    ("LABHOST_WORKERS", "how many jobs one labhost runs at once (default: the number of CPUs)"),
    ("LABHOST_KILL_GRACE", "the time between SIGTERM and SIGKILL when labhost stops a process group (a duration; default 3s)"),
    ("LABHOST_BUSY_TIMEOUT", "how long a write waits for another process's lock on the state database before it fails (a duration; default 30s)"),
    ("LABHOST_LOG_LIMIT", "the most a job's stdout.log or stderr.log keeps when its spec sets no `log_limit` (a size like `100MiB`; default: unlimited)"),
    ("LABHOST_GPU_GRACE", "how long a released GPU is kept from the next job (a duration; default 0s)"),
    ("LABHOST_FAKE_GPUS", "stand-in GPUs instead of NVML, e.g. `4x24GiB`"),
    ("LABHOST_CONTAINMENT", "`subreaper` forces containment without cgroups"),
    ("LABHOST_MLFLOW", "`off` leaves the embedded MLflow endpoint for jobs off"),
    ("LABHOST_TRACK_TOKEN", "the token of `labhost track serve` (same as `--token`)"),
    ("LABHOST_PRIVATE_SETTINGS", "the private settings file (else `labhost.private.yml` found upwards)"),
    ("LABHOST_AZURE_SETTINGS", "the Azure settings file (else `settings.yml` found upwards)"),
    ("LABHOST_SNAPSHOT_MAX_MB", "the largest code folder a sweep snapshots, in MB (default 2048)"),
    ("LABHOST_MPIRUN", "the `mpirun` that runs `distribution: mpi` jobs (default: `mpirun` on PATH, if any; `off`: labhost's own launcher)"),
    ("LABHOST_JOB_ID", "set by labhost in a job's environment: the job's id (a script inside a job logs to it)"),
];

/// The variable's value when it is set and not empty.
fn var(name: &str) -> Option<String> {
    debug_assert!(
        VARS.iter().any(|(n, _)| *n == name),
        "{name} is not in VARS"
    );
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable's value as a path when it is set and not empty.
fn var_path(name: &str) -> Option<PathBuf> {
    debug_assert!(
        VARS.iter().any(|(n, _)| *n == name),
        "{name} is not in VARS"
    );
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn duration(name: &str) -> LabResult<Option<Duration>> {
    var(name)
        .map(|v| {
            crate::util::parse_duration(&v).map_err(|e| {
                LabError::new(
                    "config.invalid",
                    format!("environment variable {name}: {}", e.message),
                )
            })
        })
        .transpose()
}

/// Validates every variable that has a format; the first bad one is the error.
pub fn check() -> LabResult<()> {
    if let Some(h) = var_path("LABHOST_HOME").filter(|h| h.to_str().is_none()) {
        // Run folders are recorded as text: a path that is not text would be two places.
        return Err(LabError::new(
            "config.invalid",
            format!(
                "environment variable LABHOST_HOME: {} is not valid UTF-8 (labhost records its paths as text)",
                h.to_string_lossy()
            ),
        ));
    }
    duration("LABHOST_KILL_GRACE")?;
    duration("LABHOST_BUSY_TIMEOUT")?;
    log_limit()?;
    duration("LABHOST_GPU_GRACE")?;
    workers()?;
    snapshot_max_mb()?;
    azure_seconds("AZUREML_RUN_POLLING_INTERVAL_MIN")?;
    azure_seconds("AZUREML_RUN_POLLING_INTERVAL_MAX")?;
    if let Some(m) = var("LABHOST_CONTAINMENT") {
        if m != "subreaper" && m != "auto" {
            return Err(LabError::new(
                "config.invalid",
                format!(
                    "environment variable LABHOST_CONTAINMENT: '{m}' is not one of subreaper, auto"
                ),
            ));
        }
    }
    if let Some(m) = var("LABHOST_MLFLOW") {
        if m != "off" && m != "on" {
            return Err(LabError::new(
                "config.invalid",
                format!("environment variable LABHOST_MLFLOW: '{m}' is not one of off, on"),
            ));
        }
    }
    Ok(())
}

pub fn home() -> Option<PathBuf> {
    var_path("LABHOST_HOME")
}

/// The raw `LABHOST_HOME` (set or not), for caches keyed on it.
pub fn home_raw() -> Option<std::ffi::OsString> {
    std::env::var_os("LABHOST_HOME")
}

pub fn import_path() -> Vec<PathBuf> {
    var_path("LABHOST_PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| !d.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The name of the log filter variable (read by tracing's `EnvFilter`).
pub const LOG_VAR: &str = "LABHOST_LOG";

/// The name of the track token variable (read by clap for `--token`).
pub const TRACK_TOKEN_VAR: &str = "LABHOST_TRACK_TOKEN";

/// `LABHOST_WORKERS`: a whole number ≥ 1, when set.
pub fn workers() -> LabResult<Option<usize>> {
    var("LABHOST_WORKERS")
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(LabError::new(
                "config.invalid",
                format!("environment variable LABHOST_WORKERS: '{w}' is not a whole number of at least 1"),
            )),
        })
        .transpose()
}

/// `LABHOST_SNAPSHOT_MAX_MB`: a whole number of MB, at least 1.
pub fn snapshot_max_mb() -> LabResult<Option<u64>> {
    var("LABHOST_SNAPSHOT_MAX_MB")
        .map(|w| match w.trim().parse::<u64>() {
            Ok(n) if (1..1 << 40).contains(&n) => Ok(n),
            _ => Err(LabError::new(
                "config.invalid",
                format!("environment variable LABHOST_SNAPSHOT_MAX_MB: '{w}' is not a whole number of MB of at least 1"),
            )),
        })
        .transpose()
}

/// The `mpirun` for `distribution: mpi` jobs: `LABHOST_MPIRUN` (a path or a name on PATH),
/// else `mpirun` on PATH; `None` when there is none or the variable is `off`.
pub fn mpirun() -> Option<PathBuf> {
    let want = var("LABHOST_MPIRUN");
    let name = match want.as_deref() {
        Some("off") => return None,
        Some(p) => p.to_string(),
        None => "mpirun".into(),
    };
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(&name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn kill_grace() -> Option<Duration> {
    duration("LABHOST_KILL_GRACE").ok().flatten()
}

/// `LABHOST_LOG_LIMIT`: the default cap of a job's logs, in bytes.
pub fn log_limit() -> LabResult<Option<u64>> {
    var("LABHOST_LOG_LIMIT")
        .map(|v| {
            crate::util::parse_bytes(&v).map_err(|e| {
                LabError::new(
                    "config.invalid",
                    format!("environment variable LABHOST_LOG_LIMIT: {}", e.message),
                )
            })
        })
        .transpose()
}

pub fn busy_timeout() -> Option<Duration> {
    duration("LABHOST_BUSY_TIMEOUT").ok().flatten()
}

pub fn gpu_grace() -> Option<Duration> {
    duration("LABHOST_GPU_GRACE").ok().flatten()
}

pub fn fake_gpus() -> Option<String> {
    var("LABHOST_FAKE_GPUS")
}

/// `LABHOST_CONTAINMENT=subreaper`.
pub fn force_subreaper() -> bool {
    var("LABHOST_CONTAINMENT").as_deref() == Some("subreaper")
}

/// `LABHOST_MLFLOW=off`.
pub fn mlflow_off() -> bool {
    var("LABHOST_MLFLOW").as_deref() == Some("off")
}

pub fn private_settings() -> Option<PathBuf> {
    var_path("LABHOST_PRIVATE_SETTINGS")
}

pub fn azure_settings() -> Option<PathBuf> {
    var_path("LABHOST_AZURE_SETTINGS")
}

/// The job this process runs inside (set by labhost in every job's environment).
pub fn job_id() -> Option<String> {
    var("LABHOST_JOB_ID")
}

/// Splits `KEY=VALUE` (the key trimmed and not empty; the value may hold `=`). `what` names
/// the flag or field in the error (`--set`, `--tag`, …).
pub fn key_value(text: &str, what: &str) -> LabResult<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(LabError::new(
            "usage",
            format!("{what} takes KEY=VALUE, got '{text}'"),
        )),
    }
}

/// [`key_value`] as a clap value parser (`--set`, `--tag`, `--config`).
pub fn key_value_arg(text: &str) -> Result<(String, String), String> {
    key_value(text, "the flag").map_err(|e| e.message)
}

/// A number of seconds from a variable Azure ML's SDK reads (`AZUREML_RUN_POLLING_INTERVAL_*`):
/// `Ok(None)` when unset, an error for anything but a positive, finite number.
pub fn azure_seconds(name: &str) -> LabResult<Option<Duration>> {
    let Some(v) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    v.trim()
        .parse::<f64>()
        .ok()
        .and_then(crate::util::secs_to_duration)
        .filter(|d| !d.is_zero())
        .map(Some)
        .ok_or_else(|| {
            LabError::new(
                "config.invalid",
                format!("environment variable {name}: '{v}' is not a positive number of seconds"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals() {
        assert_eq!(
            key_value("a.b=x=y", "--set").unwrap(),
            ("a.b".to_string(), "x=y".to_string())
        );
        assert_eq!(key_value(" k =", "--tag").unwrap(), ("k".into(), "".into()));
        let e = key_value("novalue", "--set").unwrap_err();
        assert_eq!(e.message, "--set takes KEY=VALUE, got 'novalue'");
        assert!(key_value("=v", "--set").is_err());
    }

    #[test]
    fn the_readme_lists_every_variable() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for (name, _) in VARS {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{name} is not in the README"
            );
        }
    }

    #[test]
    fn no_file_but_this_one_reads_a_labhost_variable() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut bad = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("config.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, l) in text.lines().enumerate() {
                        let code = l.split("//").next().unwrap_or("");
                        if (code.contains("env::var(\"LABHOST_")
                            || code.contains("env::var_os(\"LABHOST_"))
                            && !code.contains("set_var")
                        {
                            bad.push(format!("{}:{}", p.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(
            bad.is_empty(),
            "LABHOST_* read outside src/config.rs: {bad:?}"
        );
    }
}
