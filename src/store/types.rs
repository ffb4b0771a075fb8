//! The types every reader and writer of the run store shares: statuses, kinds, the stored
//! spec of a job, and the rows.
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::Command;

/// Where a run is in its life:
///
/// ```text
/// queued ──claim──▶ leased ──▶ running ──▶ completed | failed | cancelled | timed_out
///    ▲                 │            │
///    └─── retry (not_before) / orphan re-queue (host died) ───┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Leased,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Leased,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
    ];
    /// The statuses a run ends in.
    pub const FINISHED: [RunStatus; 4] = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Leased => "leased",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
        }
    }

    /// Ended: completed, failed, cancelled or timed out.
    pub fn is_finished(self) -> bool {
        Self::FINISHED.contains(&self)
    }

    /// Ended without completing.
    pub fn is_unsuccessful(self) -> bool {
        self.is_finished() && self != RunStatus::Completed
    }

    /// Held by a host (leased or running).
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Leased | RunStatus::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status '{s}' (one of {})",
                    RunStatus::ALL.map(|x| x.as_str()).join(", ")
                )
            })
    }
}

/// What a run is: a job, a pipeline or sweep (parents), a trial of a sweep, a fold of a
/// cross-validation, a cron firing, or a run recorded from a remote service (Azure ML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    #[default]
    Job,
    Pipeline,
    Sweep,
    Trial,
    Fold,
    Cron,
    Remote,
}

impl RunKind {
    pub const ALL: [RunKind; 7] = [
        RunKind::Job,
        RunKind::Pipeline,
        RunKind::Sweep,
        RunKind::Trial,
        RunKind::Fold,
        RunKind::Cron,
        RunKind::Remote,
    ];

    /// Runs the queue never runs: the process that drives them records their start and end
    /// (a sweep's parent run, a cron firing, a remote run).
    pub fn is_record(self) -> bool {
        matches!(self, RunKind::Sweep | RunKind::Cron | RunKind::Remote)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Job => "job",
            RunKind::Pipeline => "pipeline",
            RunKind::Sweep => "sweep",
            RunKind::Trial => "trial",
            RunKind::Fold => "fold",
            RunKind::Cron => "cron",
            RunKind::Remote => "remote",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunKind::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown run kind '{s}' (one of {})",
                    RunKind::ALL.map(|x| x.as_str()).join(", ")
                )
            })
    }
}

macro_rules! sql_text_enum {
    ($t:ty) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(
                    self.as_str().as_bytes(),
                )))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                s.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}
sql_text_enum!(RunStatus);
sql_text_enum!(RunKind);

/// Where a job's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunIn {
    #[default]
    Host,
    Docker,
}

/// What the job host needs to run a job, as stored in `runs.spec` and the run folder's
/// `spec.json` (secrets masked). Written by the submitter (`jobs::to_new_run`), read by the
/// host, the supervisor and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredSpec {
    pub command: Command,
    /// The working directory (absolute; the submitter's when the spec named none).
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub num_gpus: u32,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "is_host")]
    pub run_in: RunIn,
    /// `run_in: docker`: the image (default: `DOCKER_IMAGE_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `run_in: docker`: more bind mounts, `host:/path[:ro]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// `run_in: docker`: the network mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Azure ML's job runtime contract: the job runs in its own copy of `cwd` (the run
    /// folder's `wd/`, files hard-linked) whose `outputs/` and `logs/` are the run folder's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_cwd: bool,
    /// The most each of `stdout.log` and `stderr.log` keeps, in bytes (the latest output;
    /// see `engine::joblog`); `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_limit: Option<u64>,
}

fn is_host(r: &RunIn) -> bool {
    *r == RunIn::Host
}

impl StoredSpec {
    /// The spec with every registered secret masked (`***`): what is written to the database
    /// and the run folder.
    pub fn masked(&self) -> StoredSpec {
        let m = crate::redact::apply;
        StoredSpec {
            command: match &self.command {
                Command::Shell(c) => Command::Shell(m(c)),
                Command::Argv(a) => Command::Argv(a.iter().map(|x| m(x)).collect()),
            },
            cwd: self.cwd.as_deref().map(m),
            env: self.env.iter().map(|(k, v)| (m(k), m(v))).collect(),
            image: self.image.as_deref().map(m),
            mounts: self.mounts.iter().map(|x| m(x)).collect(),
            network: self.network.as_deref().map(m),
            ..self.clone()
        }
    }
}

/// A run to record.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub parent_id: Option<i64>,
    pub kind: RunKind,
    pub name: String,
    /// Idempotency key: a second run with a key that exists returns the existing run.
    pub key: Option<String>,
    /// The resolved spec (secrets already masked).
    pub spec: StoredSpec,
    pub priority: i64,
    pub max_retries: i64,
    /// Seconds before the first retry; doubles each attempt.
    pub backoff: f64,
    pub depends_on: Vec<i64>,
    pub params: Vec<(String, Value)>,
    pub tags: Vec<(String, String)>,
    /// The submitting host: only it runs the job while it lives (`None`: any host).
    pub owner: Option<String>,
    /// With a `key` whose run ended without completing (failed, cancelled, timed out): queue
    /// that run again instead of returning it (a re-run pipeline retries what failed).
    pub retry_failed: bool,
    /// The experiment the run belongs to (`Store::experiment_id`).
    pub experiment_id: Option<i64>,
}

impl NewRun {
    /// A run that is recorded rather than run by the queue (a sweep, a study and its told
    /// trials, a client's or a script's own run): `kind` and `name`, a spec whose command says
    /// what made it, no retries; the caller sets the rest with struct update syntax.
    pub fn record(kind: RunKind, name: &str, command: &str) -> NewRun {
        NewRun {
            kind,
            name: name.to_string(),
            spec: StoredSpec {
                command: crate::command::Command::Shell(command.to_string()),
                ..Default::default()
            },
            backoff: 1.0,
            ..Default::default()
        }
    }
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub kind: RunKind,
    pub name: String,
    pub key: Option<String>,
    pub spec: StoredSpec,
    pub status: RunStatus,
    pub priority: i64,
    pub attempt: i64,
    pub max_retries: i64,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Why it was cancelled ("cancelled by policy: bandit …", "cancelled by labhost cancel").
    pub cancel_reason: Option<String>,
    pub run_dir: String,
    pub created: f64,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub experiment_id: Option<i64>,
    /// The attempt's leader start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub leader_start: Option<i64>,
    /// The attempt's cgroup, when it runs in one.
    pub cgroup: Option<String>,
    /// Deleted by an MLflow client (`runs/delete`): hidden from searches until restored.
    pub deleted: bool,
    /// The retries it was given after failing, since it was last submitted (of
    /// `max_retries`); an attempt stopped and run again is not one.
    pub retries: i64,
}

/// The start of an attempt, as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The leader's pid, which is also the process group id.
    pub pid: i64,
    pub at: f64,
    pub leader_start: Option<i64>,
    pub cgroup: Option<String>,
    /// The GPUs leased to it: `(CUDA_VISIBLE_DEVICES, their UUIDs)`, as the job was given
    /// them; kept as the tags `labhost.gpus` and `labhost.gpu_uuids` (the sweep page's GPU
    /// placement).
    #[serde(default)]
    pub gpus: Option<(String, String)>,
}

impl Started {
    /// The GPUs a launch environment names (none when it has no `LABHOST_GPU_UUIDS`).
    pub fn gpus_of(env: &std::collections::BTreeMap<String, String>) -> Option<(String, String)> {
        let uuids = env.get("LABHOST_GPU_UUIDS")?;
        Some((
            env.get("CUDA_VISIBLE_DEVICES").cloned().unwrap_or_default(),
            uuids.clone(),
        ))
    }
}

impl Run {
    /// A cancel was asked for while it ran; its host has not stopped it yet.
    pub fn cancel_requested(&self) -> bool {
        self.cancel_reason.is_some() && !self.status.is_finished()
    }

    /// What to show for an ended run that did not complete: the cancel reason, else the
    /// recorded error.
    pub fn reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref().or(self.error.as_deref())
    }
}

/// One point of a metric's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default)]
    pub step: i64,
    #[serde(default)]
    pub ts: f64,
}

/// An experiment: a named group of runs (MLflow's experiments map onto it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub id: i64,
    pub name: String,
    pub created: f64,
    pub artifact_location: String,
    pub lifecycle: String,
    /// Last rename, tag or lifecycle change (`created` until one).
    pub updated: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_kinds_round_trip_as_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in RunKind::ALL {
            assert_eq!(k.as_str().parse::<RunKind>().unwrap(), k);
        }
        assert!("finished"
            .parse::<RunStatus>()
            .unwrap_err()
            .contains("timed_out"));
        assert!(RunStatus::TimedOut.is_finished() && !RunStatus::Leased.is_finished());
    }

    #[test]
    fn stored_specs_of_earlier_versions_still_read() {
        let old = r#"{"command":["true"],"cwd":"/tmp","env":{"A":"1"},"num_gpus":0,"timeout":null,
                      "run_in":"docker","image":"x","mounts":["/a:/b"],"network":null}"#;
        let s: StoredSpec = serde_json::from_str(old).unwrap();
        assert_eq!(s.run_in, RunIn::Docker);
        assert_eq!(s.mounts, vec!["/a:/b".to_string()]);
        let host: StoredSpec = serde_json::from_str(r#"{"command":"echo"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&host).unwrap(),
            r#"{"command":"echo","cwd":null,"env":{},"num_gpus":0,"timeout":null}"#
        );
    }
}
