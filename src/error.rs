//! Error kinds shared by every module API and the process exit codes.
use std::fmt;

/// Process exit codes (documented in the README).
pub mod exit {
    pub const OK: u8 = 0;
    /// The script failed: syntax error, runtime error, uncaught throw.
    pub const SCRIPT: u8 = 1;
    /// Bad command line or unreadable script file.
    pub const USAGE: u8 = 2;
    /// Interrupted by Ctrl-C / SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// Every error kind a [`LabError`] carries (and a script's `catch (e)` sees as `e.kind`), with
/// what it means. `labhost doc errors` and the README list them. Every kind is exit code 1
/// when it ends a command, except `cancelled` (130) and `usage` / `config.invalid` (2).
/// A kind written `<module>.<io>` stands for the I/O family [`io_err`] makes: `not_found`,
/// `permission_denied`, `already_exists`, `is_a_directory`, `not_a_directory`,
/// `directory_not_empty`, `invalid_data`, `io`.
pub const KINDS: &[(&str, &str)] = &[
    (
        "cancelled",
        "Ctrl-C / SIGINT / SIGTERM stopped the work (not catchable)",
    ),
    ("usage", "a bad command line or flag value"),
    (
        "config.invalid",
        "a LABHOST_* (or AZUREML_*) environment variable has a bad value",
    ),
    ("internal", "a bug in labhost: please report it"),
    (
        "invalid_argument",
        "a native got an argument or option it cannot use",
    ),
    (
        "invalid_size",
        "a byte size that does not parse (`10GiB`, `512MiB`)",
    ),
    ("check", "`labhost check` found files that do not compile"),
    ("assert", "`assert` / `assert_eq` failed"),
    ("fs.<io>", "a file operation failed"),
    ("fs.invalid_pattern", "a glob pattern that does not parse"),
    (
        "env.invalid_name",
        "an environment variable name with `=` or NUL",
    ),
    ("json.parse", "text that is not JSON"),
    ("json.dump", "a value that JSON cannot hold"),
    (
        "time.invalid_duration",
        "a duration that is negative, NaN, infinite or malformed",
    ),
    ("sh.not_found", "the command's program is not on PATH"),
    (
        "sh.permission_denied",
        "the command's program is not executable",
    ),
    (
        "sh.invalid_cwd",
        "the command's working directory does not exist",
    ),
    ("sh.spawn", "the command could not be started"),
    ("sh.wait", "the command's exit could not be read"),
    (
        "sh.timeout",
        "the command ran past its timeout and was stopped",
    ),
    (
        "yaml.parse",
        "YAML that does not parse (with file:line:col)",
    ),
    ("yaml.dump", "a value that YAML cannot hold"),
    (
        "yaml.unset_variable",
        "`${VAR}` of an unset environment variable, without default",
    ),
    (
        "yaml.missing_key",
        "`${a.b}` of a key the document does not have",
    ),
    ("yaml.cycle", "`${a}` references that refer to each other"),
    ("yaml.unterminated", "a `${` without its `}`"),
    (
        "yaml.conflict",
        "`unflatten` of keys that are both a value and a map",
    ),
    (
        "settings.invalid",
        "a settings file that is not a map of variables",
    ),
    (
        "settings.no_variables",
        "a settings file without its `variables:` map",
    ),
    (
        "settings.type",
        "a setting of the wrong type for its schema",
    ),
    (
        "settings.unknown",
        "a setting the schema does not have (with fail_on_unknown)",
    ),
    (
        "secrets.missing",
        "a secret in neither the private file nor the environment",
    ),
    ("git.not_a_repo", "the folder is not in a git repository"),
    ("git.dirty", "`require_clean` found uncommitted changes"),
    ("git.error", "libgit2 failed to read the repository"),
    (
        "experiment.invalid",
        "an experiment folder or config that cannot be used",
    ),
    (
        "util.invalid_recovery_id",
        "an Azure recovery id that is not `experiment:run`",
    ),
    ("util.missing_tag", "a run without the tag asked for"),
    (
        "gpu.unavailable",
        "no GPU can be read (no driver, or NVML failed)",
    ),
    (
        "gpu.unsatisfiable",
        "more GPUs asked for than the machine has",
    ),
    ("gpu.busy", "no GPU free and `wait: false`"),
    ("gpu.timeout", "no GPU became free within the timeout"),
    ("gpu.ledger", "the GPU ledger's lock files cannot be used"),
    (
        "docker.<io>",
        "a file docker needed (a build context) could not be read",
    ),
    ("docker.unavailable", "no Docker engine answers"),
    ("docker.engine", "the Docker engine refused a request"),
    ("docker.not_found", "no such container"),
    ("docker.image_not_found", "no such image"),
    ("docker.no_image", "no image given and no DOCKER_IMAGE_NAME"),
    ("docker.conflict", "a container name already in use"),
    (
        "docker.invalid_mount",
        "a mount whose source does not exist or is not absolute",
    ),
    (
        "docker.invalid_argument",
        "a container spec the engine cannot take",
    ),
    (
        "docker.gpu_unavailable",
        "GPUs asked for where the engine has no NVIDIA runtime",
    ),
    (
        "docker.build_failed",
        "an image build failed (its last output line is in the message)",
    ),
    ("docker.pull_failed", "an image pull failed"),
    (
        "docker.timeout",
        "a container ran past its timeout and was stopped",
    ),
    ("jobs", "the job engine could not be started"),
    (
        "jobs.<io>",
        "a run folder or log file could not be made or read",
    ),
    ("jobs.not_found", "no job with that id"),
    (
        "jobs.invalid_spec",
        "a job spec that cannot run (empty command, bad field)",
    ),
    (
        "jobs.invalid_cwd",
        "a job's working directory does not exist",
    ),
    (
        "jobs.unknown_dependency",
        "`after:` names a job that does not exist",
    ),
    ("jobs.spawn", "a job's process could not be started"),
    (
        "jobs.launch",
        "a distributed job's ranks could not be started (labhost launch)",
    ),
    (
        "jobs.containment",
        "a job's cgroup could not be made or joined",
    ),
    ("jobs.gpu", "a job's GPUs could not be booked"),
    ("jobs.store", "the state database failed"),
    ("jobs.wait", "a job's exit could not be read"),
    (
        "pipeline.invalid",
        "a pipeline file that cannot run (with file:line:col)",
    ),
    ("sweep.<io>", "a sweep file could not be read"),
    (
        "sweep.invalid",
        "a sweep spec or YAML that cannot run (with file:line:col)",
    ),
    (
        "sweep.snapshot",
        "the code folder is too large to snapshot (LABHOST_SNAPSHOT_MAX_MB)",
    ),
    (
        "sweep.input",
        "a remote input (https, wasbs, abfss, azureml) that could not be read or downloaded",
    ),
    (
        "sweep.exhausted",
        "the search space has no more distinct points",
    ),
    ("track", "the tracking store failed"),
    (
        "track.<io>",
        "an artifact or report file could not be read or written",
    ),
    (
        "track.invalid",
        "a metric, param or tag that cannot be logged",
    ),
    (
        "track.invalid_filter",
        "a filter or order-by that MLflow's grammar does not take",
    ),
    (
        "track.not_found",
        "no run, experiment or artifact by that name",
    ),
    ("track.push", "an MLflow server refused a pushed run"),
    (
        "track.serve",
        "the MLflow-compatible endpoint could not listen",
    ),
    ("state.<io>", "the state directory could not be made"),
    (
        "cron.invalid",
        "a schedule entry that cannot run (with file:line:col)",
    ),
    (
        "cron.state",
        "the cron state file could not be read or written",
    ),
    (
        "azure.config",
        "a missing or bad Azure setting (names where it would come from)",
    ),
    (
        "azure.auth",
        "no token: every credential source failed or refused",
    ),
    ("azure.http", "Azure could not be reached"),
    (
        "azure.api",
        "Azure ML refused a request (its code and message)",
    ),
    ("azure.not_found", "no such job, run, output or blob"),
    ("azure.invalid", "a job file or body Azure ML cannot take"),
    ("azure.code", "a `code:` folder that cannot be snapshotted"),
    ("azure.blob", "a blob upload or download failed"),
    (
        "azure.import",
        "an ended Azure job could not be copied into the local store",
    ),
    ("azure.missing_tag", "a run without the tag asked for"),
    (
        "azure.offline",
        "an Azure-only call in an offline run context",
    ),
    ("azure.timeout", "a wait ran past its timeout"),
];

/// True when `kind` is in [`KINDS`] (directly, or as a member of a `<module>.<io>` family).
pub fn is_known_kind(kind: &str) -> bool {
    const IO: &[&str] = &[
        "not_found",
        "permission_denied",
        "already_exists",
        "is_a_directory",
        "not_a_directory",
        "directory_not_empty",
        "invalid_data",
        "io",
    ];
    KINDS.iter().any(|(k, _)| {
        *k == kind
            || k.strip_suffix(".<io>").is_some_and(|m| {
                kind.split_once('.')
                    .is_some_and(|(km, rest)| km == m && IO.contains(&rest))
            })
    })
}

/// The process exit code an error of `kind` ends a command with.
pub fn exit_code_of(kind: &str) -> u8 {
    match kind {
        CANCELLED => exit::INTERRUPTED,
        "usage" | "config.invalid" => exit::USAGE,
        _ => exit::SCRIPT,
    }
}

/// An error from a module's typed API. `kind` is machine readable (`fs.not_found`,
/// `sh.timeout`, …) and becomes `e.kind` in a script's `catch (e)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabError {
    pub kind: String,
    pub message: String,
}

impl LabError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        LabError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The one kind that is not an error but a stop: the user pressed Ctrl-C.
    pub fn cancelled() -> Self {
        LabError::new(CANCELLED, "cancelled")
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == CANCELLED
    }
}

/// Kind used for cancellation; the bridge turns it into a non-catchable termination.
pub const CANCELLED: &str = "cancelled";

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LabError {}

/// Shorthand result for module APIs.
pub type LabResult<T> = Result<T, LabError>;

/// Maps an I/O error on `path` to a kinded error in module `m` (`fs.not_found`, …).
pub fn io_err(m: &str, what: &str, path: &std::path::Path, e: &std::io::Error) -> LabError {
    use std::io::ErrorKind as K;
    let k = match e.kind() {
        K::NotFound => "not_found",
        K::PermissionDenied => "permission_denied",
        K::AlreadyExists => "already_exists",
        K::IsADirectory => "is_a_directory",
        K::NotADirectory => "not_a_directory",
        K::DirectoryNotEmpty => "directory_not_empty",
        K::InvalidData => "invalid_data",
        _ => "io",
    };
    LabError::new(
        format!("{m}.{k}"),
        format!("{what} '{}': {}", path.display(), strip_os_code(e)),
    )
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn strip_os_code(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind the code raises — `LabError::new("…")`, `host_err(ctx, "…")`,
    /// `io_err("m", …)` and the kinds chosen at run time in yaml, docker and blob — is in
    /// [`KINDS`], and every entry of `KINDS` is raised somewhere.
    #[test]
    fn every_kind_raised_is_registered_and_every_registered_kind_is_raised() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut raised = std::collections::BTreeSet::new();
        let quoted = |t: &str| -> Option<String> {
            let t = t.trim_start();
            let t = t.strip_prefix("format!(").unwrap_or(t).trim_start();
            let t = t.strip_prefix('"')?;
            Some(t[..t.find('"')?].to_string())
        };
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") || p.ends_with("error.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for (needle, io) in [
                    ("LabError::new(", false),
                    ("host_err(", false),
                    ("io_err(", true),
                ] {
                    for (i, _) in text.match_indices(needle) {
                        let mut rest = &text[i + needle.len()..];
                        if needle == "host_err(" {
                            let Some(c) = rest.find(',') else { continue };
                            rest = &rest[c + 1..];
                        }
                        if let Some(k) = quoted(rest) {
                            if k.chars()
                                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                                && !k.is_empty()
                            {
                                raised.insert(if io { format!("{k}.io") } else { k });
                            }
                        }
                    }
                }
                let dynamic = ["yaml/mod.rs", "docker/client.rs", "azure/blob.rs"];
                if dynamic.iter().any(|f| p.ends_with(f)) {
                    for part in text.split('"').skip(1).step_by(2) {
                        let m = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
                        if part
                            .strip_prefix(m)
                            .and_then(|r| r.strip_prefix('.'))
                            .is_some_and(|r| {
                                !r.is_empty()
                                    && r.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            })
                        {
                            raised.insert(part.to_string());
                        }
                    }
                }
            }
        }
        let unknown: Vec<&String> = raised.iter().filter(|k| !is_known_kind(k)).collect();
        assert!(
            unknown.is_empty(),
            "kinds raised but not in error::KINDS: {unknown:?}"
        );
        let unused: Vec<&str> = KINDS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != "usage" && *k != CANCELLED)
            .filter(|k| {
                !raised.iter().any(|r| {
                    r == k
                        || k.strip_suffix(".<io>").is_some_and(|m| {
                            r.starts_with(&format!("{m}."))
                                && is_known_kind(r)
                                && !KINDS.iter().any(|(x, _)| x == r)
                        })
                })
            })
            .collect();
        assert!(
            unused.is_empty(),
            "kinds in error::KINDS that nothing raises: {unused:?}"
        );
        assert!(raised.len() > 60, "found only {} kinds", raised.len());
    }

    #[test]
    fn families_and_exit_codes() {
        assert!(is_known_kind("fs.not_found") && is_known_kind("jobs.permission_denied"));
        assert!(!is_known_kind("fs.bogus") && !is_known_kind("nope"));
        assert_eq!(exit_code_of("cancelled"), 130);
        assert_eq!(exit_code_of("config.invalid"), 2);
        assert_eq!(exit_code_of("sh.timeout"), 1);
    }
}
