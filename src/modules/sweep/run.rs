//! Running a sweep on the local job engine with Azure's semantics: a parent run (kind sweep)
//! and one child run (kind trial) per trial, each trial's parameters journaled in the store
//! (the trial's queued run with its params) before it can start, at most
//! `max_concurrent_trials` at once, a new trial the moment one ends (woken by the job host),
//! the policy judging reports of the primary metric as they arrive, `timeout` and
//! `trial_timeout` enforced. The same sweep run again (same document, same source) continues:
//! trials already drawn keep their numbers and parameters, finished ones are not run again,
//! TPE is rebuilt from the journaled results.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::policy::{Evaluator, Trial as PolicyTrial};
use super::{Algorithm, Params, Sweep};
use crate::command::Command;
use crate::error::{LabError, LabResult};
use crate::modules::jobs::{self, JobSpec};
use crate::store::{NewRun, Run, RunKind, RunStatus, StoredSpec};
use crate::util::{Seconds, Text};

/// How to run a sweep (not part of its identity).
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// Start anew even if this sweep ran before.
    pub rerun: bool,
    /// Overrides `limits.max_concurrent_trials`.
    pub max_concurrent: Option<u64>,
    pub quiet: bool,
    /// Continue the sweep recorded under this key (`labhost resume`) rather than the one
    /// the document's identity names.
    pub key: Option<String>,
    /// The job engine's workers are shared with other sweeps running at the same time (a
    /// pipeline's steps): their number is left alone, and at most the sweep's concurrency of
    /// its trials are queued or running at once.
    pub shared_workers: bool,
    /// Run the trials that failed before again (as new attempts, same parameters); the
    /// others keep their results.
    pub retry_failed: bool,
}

/// One trial as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub trial: u64,
    pub run_id: i64,
    pub params: Params,
    pub status: RunStatus,
    /// The last report of the primary metric.
    pub last: Option<f64>,
    /// The best report (what Azure ranks by).
    pub best: Option<f64>,
    pub reports: usize,
    pub duration: Option<f64>,
    pub reason: Option<String>,
}

/// How a sweep ended.
#[derive(Debug, Clone, Serialize)]
pub struct SweepResult {
    pub sweep_id: i64,
    pub status: RunStatus,
    pub metric: String,
    pub goal: String,
    pub seed: Option<u64>,
    pub trials: Vec<TrialRow>,
    /// Index into `trials` of the best one.
    #[serde(skip)]
    pub best: Option<usize>,
    pub best_child_run_id: Option<i64>,
    pub run_dir: String,
    /// The HTML report written when the sweep ended (`<run folder>/report.html`).
    pub report: Option<String>,
}

impl SweepResult {
    pub fn best_row(&self) -> Option<&TrialRow> {
        self.best.map(|i| &self.trials[i])
    }

    pub fn count(&self, s: RunStatus) -> usize {
        self.trials.iter().filter(|t| t.status == s).count()
    }

    /// The trial table as text (one row per trial, params as columns).
    pub fn table(&self) -> String {
        let names: Vec<String> = self
            .trials
            .first()
            .map(|t| t.params.keys().cloned().collect())
            .unwrap_or_default();
        let mut rows: Vec<Vec<String>> = vec![{
            let mut h = vec!["trial".to_string(), "run".into()];
            h.extend(names.iter().cloned());
            h.extend([
                "status".into(),
                format!("best {}", self.metric),
                "last".into(),
                "reports".into(),
                "time".into(),
                "note".into(),
            ]);
            h
        }];
        for (i, t) in self.trials.iter().enumerate() {
            let mut r = vec![
                format!("{}{}", t.trial, if Some(i) == self.best { "*" } else { "" }),
                t.run_id.to_string(),
            ];
            for n in &names {
                r.push(t.params.get(n).map(short).unwrap_or_default());
            }
            r.push(t.status.as_str().into());
            r.push(t.best.map(num).unwrap_or_else(|| "-".into()));
            r.push(t.last.map(num).unwrap_or_else(|| "-".into()));
            r.push(t.reports.to_string());
            r.push(
                t.duration
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_else(|| "-".into()),
            );
            r.push(t.reason.clone().unwrap_or_default());
            rows.push(r);
        }
        crate::modules::track::table(&rows)
    }
}

/// The last non-empty line of a run's `stderr.log` (read from its last 4 KiB), secrets
/// masked.
fn last_stderr_line(run_dir: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(Path::new(run_dir).join("stderr.log")).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(crate::redact::apply(line))
}

fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn short(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() => format!("{}", (x * 1e6).round() / 1e6),
        _ => super::value_text(v),
    }
}

/// Where a sweep stands: trials ended (of which failed or timed out, and cancelled) and
/// running.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub done: usize,
    pub running: usize,
    pub failed: usize,
    pub cancelled: usize,
}

/// Told where the sweep stands after every look (a progress bar, a line, nothing).
pub trait Watcher {
    fn update(&mut self, c: Counts, planned: u64, best: Option<(u64, f64)>, last: bool);
    /// A trial was cancelled by the policy or a limit.
    fn cancelled(&mut self, _trial: u64, _reason: &str) {}
    /// The sweep's record is open: a new sweep (`before` is `None`), or one that ran before,
    /// with where its trials stood.
    fn started(&mut self, _sweep_id: i64, _planned: u64, _before: Option<Counts>) {}
}

/// Shows nothing.
pub struct Quiet;
impl Watcher for Quiet {
    fn update(&mut self, _: Counts, _: u64, _: Option<(u64, f64)>, _: bool) {}
}

/// The sweep's key in the store: `sweep:<identity>`; trials are `<key>/<index>`.
pub fn key_of(s: &Sweep) -> String {
    format!("sweep:{}", s.identity())
}

/// The trial's parameters for `index`: from the journal, else drawn. TPE knows the finished
/// trials' results (`obs`) and the trials still running (`pending`).
fn draw(s: &Sweep, seed: u64, index: u64, obs: &[(Params, f64)], pending: &[Params]) -> Params {
    match s.algorithm {
        Algorithm::Grid => s.space.grid_point(index),
        Algorithm::Random { sobol: false, .. } => s.space.random_point(seed, index),
        Algorithm::Random { sobol: true, .. } => s.space.sobol_point(seed, index),
        Algorithm::Bayesian { .. } => {
            s.space
                .tpe_point_pending(seed, index, obs, pending, !s.maximize)
        }
    }
}

/// One planned trial of a dry run: its parameters, the GPUs it would lease and its command.
pub struct PlannedTrial {
    pub index: u64,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `cpu`, `gpu 0,1`, or why no GPU is free.
    pub placement: String,
    pub command: String,
}

/// What `labhost sweep FILE --dry-run` shows: every planned trial (seed 0 when unseeded) and
/// where it would run: the GPUs (by index) each of the trials running at once would lease,
/// first free first, as the job host's ledger hands them out on an idle machine.
pub fn dry_run(s: &Sweep, max_concurrent: Option<u64>) -> Vec<PlannedTrial> {
    let seed = seed_of(s).unwrap_or(0);
    let gpus = s.local_gpus().map_or(s.trial.num_gpus, |g| g.0) as usize;
    let conc = max_concurrent
        .or(s.doc.limits.as_ref().and_then(|l| l.max_concurrent_trials))
        .unwrap_or(s.planned())
        .max(1) as usize;
    let snap = crate::modules::gpu::snapshot();
    let devices: Vec<u32> = snap.devices.iter().map(|d| d.index).collect();
    // GPU trials at once: as many as the devices hold (CPU trials: the limit).
    let at_once = devices
        .len()
        .checked_div(gpus)
        .map_or(conc, |n| conc.min(n));
    plan(s, s.planned(), seed)
        .into_iter()
        .map(|(i, p)| {
            let placement = if gpus == 0 {
                "cpu".to_string()
            } else if at_once == 0 {
                format!(
                    "gpus={gpus} (none free: {})",
                    crate::modules::gpu::status(&snap)
                )
            } else {
                let slot = i as usize % at_once;
                let ids: Vec<String> = devices[slot * gpus..slot * gpus + gpus]
                    .iter()
                    .map(|d| d.to_string())
                    .collect();
                format!("gpu {}", ids.join(","))
            };
            PlannedTrial {
                index: i,
                command: s.command_for(&p),
                params: p,
                placement,
            }
        })
        .collect()
}

/// The planned trials without running anything: `(index, params)`. For bayesian sampling only
/// the first (random) trials can be known in advance; later ones are shown as drawn by TPE.
pub fn plan(s: &Sweep, n: u64, seed: u64) -> Vec<(u64, Params)> {
    (0..n.min(s.planned()))
        .map(|i| (i, draw(s, seed, i, &[], &[])))
        .collect()
}

/// The seed a sweep uses: the document's, else `fallback`.
pub fn seed_of(s: &Sweep) -> Option<u64> {
    match s.algorithm {
        Algorithm::Grid => None,
        Algorithm::Random { seed, .. } | Algorithm::Bayesian { seed } => seed,
    }
}

fn experiment_name(s: &Sweep) -> String {
    s.doc.experiment_name.clone().unwrap_or_else(|| {
        // Azure CLI's default: the name of the working directory.
        std::env::current_dir()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "Default".into())
    })
}

/// Copies `src` into `dst` once (files and folders; symlinks are copied as links, never
/// followed; `.git` and what `.amlignore` / `.gitignore` name at the top are skipped). The
/// state directory and `dst` itself are never part of it, wherever they are (a state folder
/// inside the code folder would otherwise copy itself into itself); a snapshot larger than
/// `LABHOST_SNAPSHOT_MAX_MB` stops before anything is copied.
fn snapshot(src: &Path, dst: &Path) -> LabResult<()> {
    if dst.join(".labhost-snapshot-done").exists() {
        return Ok(());
    }
    let plan = SnapshotPlan::new(src, dst)?;
    let (files, bytes) = plan.measure(src, true)?;
    let max = crate::config::snapshot_max_mb()?.unwrap_or(2048);
    if bytes > max << 20 {
        return Err(LabError::new(
            "sweep.snapshot",
            format!(
                "the code folder {} is {} MB in {files} files, more than the {max} MB a snapshot may copy: name what to leave out in its .amlignore, point `code:` at a smaller folder, or raise LABHOST_SNAPSHOT_MAX_MB",
                src.display(),
                bytes >> 20
            ),
        ));
    }
    plan.copy(src, dst, true)?;
    std::fs::write(dst.join(".labhost-snapshot-done"), b"").map_err(|e| snap_err(e, dst))
}

fn snap_err(e: std::io::Error, p: &Path) -> LabError {
    crate::error::io_err("sweep", "cannot snapshot", p, &e)
}

/// What a snapshot leaves out: names at the top (`.git`, `.amlignore`, `.gitignore`) and
/// folders anywhere (the state directory, the snapshot's own destination).
struct SnapshotPlan {
    ignore: Vec<String>,
    skip_dirs: Vec<PathBuf>,
}

impl SnapshotPlan {
    fn new(src: &Path, dst: &Path) -> LabResult<SnapshotPlan> {
        let mut ignore: Vec<String> = vec![".git".into()];
        for f in [".amlignore", ".gitignore"] {
            if let Ok(t) = std::fs::read_to_string(src.join(f)) {
                ignore.extend(
                    t.lines()
                        .map(|l| l.trim().trim_matches('/').to_string())
                        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('*')),
                );
            }
        }
        let mut skip_dirs = Vec::new();
        if let Ok(st) = crate::state::dir() {
            skip_dirs.push(st.canonicalize().unwrap_or(st));
        }
        // The destination does not exist yet: its canonical parent and its name.
        if let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) {
            let parent = parent
                .canonicalize()
                .unwrap_or_else(|_| parent.to_path_buf());
            skip_dirs.push(parent.join(name));
        }
        Ok(SnapshotPlan { ignore, skip_dirs })
    }

    /// The entries of `dir` that go into the snapshot.
    fn entries(&self, dir: &Path, top: bool) -> LabResult<Vec<std::fs::DirEntry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| snap_err(e, dir))? {
            let e = e.map_err(|e| snap_err(e, dir))?;
            if top
                && self
                    .ignore
                    .iter()
                    .any(|i| *i == e.file_name().to_string_lossy())
            {
                continue;
            }
            let ft = e.file_type().map_err(|x| snap_err(x, &e.path()))?;
            if ft.is_dir() {
                let p = e.path();
                let canon = p.canonicalize().unwrap_or(p);
                if self.skip_dirs.contains(&canon) {
                    continue;
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    /// (files, bytes) the snapshot of `dir` would copy.
    fn measure(&self, dir: &Path, top: bool) -> LabResult<(u64, u64)> {
        let (mut files, mut bytes) = (0, 0);
        for e in self.entries(dir, top)? {
            let ft = e.file_type().map_err(|x| snap_err(x, &e.path()))?;
            if ft.is_dir() {
                let (f, b) = self.measure(&e.path(), false)?;
                files += f;
                bytes += b;
            } else {
                files += 1;
                if !ft.is_symlink() {
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Ok((files, bytes))
    }

    fn copy(&self, src: &Path, dst: &Path, top: bool) -> LabResult<()> {
        std::fs::create_dir_all(dst).map_err(|e| snap_err(e, dst))?;
        for e in self.entries(src, top)? {
            let (from, to) = (e.path(), dst.join(e.file_name()));
            let ft = e.file_type().map_err(|e| snap_err(e, &from))?;
            if ft.is_symlink() {
                let target = std::fs::read_link(&from).map_err(|e| snap_err(e, &from))?;
                let _ = std::fs::remove_file(&to);
                std::os::unix::fs::symlink(target, &to).map_err(|e| snap_err(e, &to))?;
            } else if ft.is_dir() {
                self.copy(&from, &to, false)?;
            } else {
                std::fs::copy(&from, &to).map_err(|e| snap_err(e, &from))?;
            }
        }
        Ok(())
    }
}

/// The trial's working directory: the code snapshot, the code folder, or the sweep's folder.
fn workdir(s: &Sweep, sweep_dir: &Path) -> LabResult<PathBuf> {
    let Some(code) = &s.trial.code else {
        return Ok(s.base_dir.clone());
    };
    s.check_local()?;
    let src = s.base_dir.join(code);
    if s.trial.snapshot == Some(false) {
        return Ok(src);
    }
    let dst = sweep_dir.join("snapshot");
    snapshot(&src, &dst)?;
    Ok(dst)
}

/// Runs the sweep and waits for it. Ctrl-C (the token) returns `cancelled`; the host's exit
/// handling then stops the trials and puts them back, and running the sweep again continues.
pub fn run(
    s: &Sweep,
    opts: &RunOpts,
    watcher: &mut dyn Watcher,
    cancel: &CancellationToken,
) -> LabResult<SweepResult> {
    let key = opts.key.clone().unwrap_or_else(|| key_of(s));
    // Remote inputs become local paths before anything is recorded (the identity keeps the
    // URIs): a download that fails leaves no run behind.
    let mut local = s.localized()?;
    let (gpus, _) = s.local_gpus()?;
    if gpus != s.trial.num_gpus {
        local.get_or_insert_with(|| s.clone()).trial.num_gpus = gpus;
    }
    let s = local.as_ref().unwrap_or(s);
    if opts.rerun {
        crate::store::with_current(|st| st.retire_key(&key))?;
    }
    let exp_name = experiment_name(s);
    let exp = crate::store::with_current(|st| st.experiment_id(&exp_name))?;
    let display = s
        .doc
        .display_name
        .clone()
        .or(s.doc.name.clone())
        .or_else(|| {
            // A sweep file without a name is called after the file (not every one "sweep").
            std::path::Path::new(&s.source)
                .file_stem()
                .filter(|_| !s.source.contains(':'))
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sweep".into());
    let given_seed = seed_of(s);
    let fresh_seed = given_seed.unwrap_or_else(|| fastrand::u64(..) >> 1);
    let mut tags = vec![
        ("runTemplate".to_string(), "HyperDrive".to_string()),
        ("azureml.runsource".into(), "hyperdrive".into()),
        ("source".into(), s.source.clone()),
        (
            "_aml_system_generator_config".into(),
            json!({"parameter_space": s.space.0.iter().map(|(n, d)| (n.clone(), d.to_rest())).collect::<serde_json::Map<_, _>>()}).to_string(),
        ),
        (
            "_aml_system_primary_metric_config".into(),
            json!({"name": s.metric, "goal": if s.maximize {"maximize"} else {"minimize"}}).to_string(),
        ),
        ("_aml_system_max_total_jobs".into(), s.planned().to_string()),
    ];
    for (k, v) in &s.doc.tags {
        tags.push((k.clone(), super::value_text(v)));
    }
    let parent_spec = StoredSpec {
        command: Command::Shell(format!(
            "labhost sweep {}",
            crate::util::shell_quote(&s.source)
        )),
        cwd: Some(s.base_dir.display().to_string()),
        timeout: Some(s.timeout.as_secs_f64()),
        ..Default::default()
    };
    let mut params: Vec<(String, Value)> = vec![
        (
            "sampling".into(),
            json!(match s.algorithm {
                Algorithm::Grid => "grid",
                Algorithm::Random { sobol: true, .. } => "sobol",
                Algorithm::Random { .. } => "random",
                Algorithm::Bayesian { .. } => "bayesian",
            }),
        ),
        ("primary_metric".into(), json!(s.metric)),
        (
            "goal".into(),
            json!(if s.maximize { "maximize" } else { "minimize" }),
        ),
        ("max_total_trials".into(), json!(s.max_total)),
    ];
    if s.algorithm != Algorithm::Grid {
        params.push(("seed".into(), json!(fresh_seed)));
    }
    let me = crate::engine::job_host()?.id.clone();
    let (parent, created) = crate::store::with_current(|st| {
        st.open_record(
            &NewRun {
                key: Some(key.clone()),
                spec: parent_spec,
                params,
                tags,
                experiment_id: Some(exp),
                ..NewRun::record(RunKind::Sweep, &display, "")
            },
            Some(&me),
        )
    })?;
    let before = match created {
        true => None,
        false => Some(recorded_counts(parent.id)?),
    };
    watcher.started(parent.id, s.planned(), before);
    // The seed: the one recorded when the sweep first started (an unseeded sweep draws one).
    let seed = if created {
        fresh_seed
    } else {
        crate::store::with_current(|st| st.params(parent.id))?
            .into_iter()
            .find(|(k, _)| k == "seed")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(fresh_seed)
    };
    let sweep_dir = PathBuf::from(&parent.run_dir);
    std::fs::create_dir_all(&sweep_dir)
        .map_err(|e| crate::error::io_err("sweep", "cannot create", &sweep_dir, &e))?;
    let _ = std::fs::write(sweep_dir.join("sweep.yml"), s.to_yaml()?);
    let cwd = match workdir(s, &sweep_dir) {
        Ok(c) => c,
        Err(e) => {
            // Nothing ran: the sweep's record says why instead of staying `running`.
            let _ = crate::store::with_current(|st| {
                st.close_record(parent.id, crate::store::RunStatus::Failed, Some(&e.message))
            });
            return Err(e);
        }
    };
    let trials = SweepRun {
        s,
        parent: &parent,
        seed,
        key: &key,
        exp,
        cwd: &cwd,
        display: &display,
    };
    let result = drive(trials, opts, watcher, cancel);
    let status = match &result {
        Ok(r) if r.status == RunStatus::Cancelled => RunStatus::Cancelled,
        Ok(r) if r.trials.is_empty() || r.count(RunStatus::Completed) > 0 || r.best.is_some() => {
            RunStatus::Completed
        }
        Ok(_) => RunStatus::Failed,
        Err(e) if e.kind == crate::error::CANCELLED => return result,
        Err(_) => RunStatus::Failed,
    };
    let r = result?;
    crate::store::with_current(|st| {
        if let Some(b) = r.best_child_run_id {
            st.set_tag(parent.id, "best_child_run_id", &b.to_string())?;
        }
        st.set_tag(parent.id, "_aml_system_all_jobs_generated", "true")?;
        st.close_record(
            parent.id,
            status,
            (status == RunStatus::Failed).then_some("no trial completed"),
        )
    })?;
    // The report people look at, next to the sweep's files.
    let page = std::path::Path::new(&r.run_dir).join("report.html");
    let report = match crate::modules::track::report::build(&parent.id.to_string()) {
        Ok(rep) => crate::modules::fs::write_atomic(
            &page,
            crate::modules::track::report::html(&rep).as_bytes(),
        )
        .ok()
        .map(|_| page.display().to_string()),
        Err(e) => {
            tracing::warn!("no report: {}", e.message);
            None
        }
    };
    Ok(SweepResult {
        status,
        report,
        ..r
    })
}

/// What every trial of one sweep run shares: the sweep, its record, and where and under
/// which names its trials run.
struct SweepRun<'a> {
    s: &'a Sweep,
    parent: &'a Run,
    seed: u64,
    /// The sweep's identity; trial `i` is the job keyed `<key>/<i>`.
    key: &'a str,
    exp: i64,
    cwd: &'a Path,
    display: &'a str,
}

impl SweepRun<'_> {
    /// The job of trial `i` with parameters `p`.
    fn trial_spec(&self, i: u64, p: &Params) -> JobSpec {
        let s = self.s;
        let hp = Value::Object(p.clone()).to_string();
        let mut env: BTreeMap<String, Text> = s.trial.environment_variables.clone();
        env.insert("LABHOST_SWEEP_ID".into(), Text(self.parent.id.to_string()));
        env.insert("LABHOST_TRIAL".into(), Text(i.to_string()));
        let mut tags: BTreeMap<String, Text> = BTreeMap::new();
        tags.insert("hyperparameters".into(), Text(hp));
        tags.insert(
            "mlflow.parentRunId".into(),
            Text(self.parent.id.to_string()),
        );
        tags.insert("trial".into(), Text(i.to_string()));
        if s.child_kind == RunKind::Fold {
            let k = p
                .get(super::CV_INDEX)
                .map(super::value_text)
                .unwrap_or_default();
            env.insert("CROSS_VALIDATION_SPLIT_INDEX".into(), Text(k.clone()));
            tags.insert(super::CV_INDEX.into(), Text(k));
        }
        let image = s
            .trial
            .environment
            .as_ref()
            .and_then(|e| e.get("image"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let name = format!("{}_{i}", self.display);
        // `${{name}}`: the job's name, as Azure substitutes it: a command job's own, a
        // sweep trial's run.
        let job_name = if s.single { self.display } else { &name };
        JobSpec {
            command: Some(Command::Shell(
                s.command_for(p).replace("${{name}}", job_name),
            )),
            cwd: Some(self.cwd.display().to_string()),
            env,
            num_gpus: s.trial.num_gpus,
            name: Some(name),
            tags,
            params: p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            timeout: s.trial_timeout.map(Seconds),
            retries: s.trial.retries,
            key: Some(format!("{}/{i}", self.key)),
            parent: Some(self.parent.id),
            run_in: s.trial.run_in,
            image: if s.trial.run_in == Some(crate::store::RunIn::Docker) {
                image
            } else {
                None
            },
            kind: s.child_kind,
            experiment_id: Some(self.exp),
            // A code snapshot: each trial runs in its own copy, with `outputs/` and `logs/`.
            own_cwd: s.trial.code.is_some() && s.trial.snapshot != Some(false),
            ..Default::default()
        }
    }

    /// Trials recorded before (a resumed sweep), by index, with their swept parameters.
    fn journal(&self) -> LabResult<BTreeMap<u64, (Run, Params)>> {
        let mut journal = BTreeMap::new();
        // One read transaction, the params of all trials in one query (a resumed sweep of
        // 10,000 trials read them trial by trial).
        crate::store::with_current(|st| {
            st.snapshot(|st| {
                let mut params = st.children_params(self.parent.id)?;
                for r in st.list(None, Some(self.parent.id), usize::MAX >> 1)? {
                    let Some(i) = r
                        .key
                        .as_deref()
                        .and_then(|k| k.rsplit('/').next())
                        .and_then(|x| x.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    let p = self.s.space.swept(params.remove(&r.id).unwrap_or_default());
                    journal.insert(i, (r, p));
                }
                Ok(())
            })
        })?;
        Ok(journal)
    }
}

/// The state of a running sweep: which trials are drawn, queued, running and done, and what
/// the early-termination policy has seen. [`drive`] turns its crank: stop at the deadline,
/// fill the slots, wait, collect what ended, judge, show.
struct Driver<'a> {
    run: SweepRun<'a>,
    planned: u64,
    /// Trials at once (the job host's workers).
    concurrent: usize,
    /// TPE: each trial is drawn knowing every result so far, one at a time.
    adaptive: bool,
    /// How many trials may be queued ahead of the free slots.
    window: usize,
    deadline: Instant,
    journal: BTreeMap<u64, (Run, Params)>,
    evaluator: Option<Evaluator>,
    /// Run id → trial index of the trials submitted and not ended.
    in_flight: BTreeMap<i64, u64>,
    /// Trial index → run id of every trial submitted (or found in the journal).
    ids: BTreeMap<u64, i64>,
    done: HashSet<i64>,
    /// TPE: the done trials whose results it has not read yet.
    untold: Vec<i64>,
    /// Early termination: the done trials whose last reports it has not read yet.
    unjudged: Vec<i64>,
    /// TPE: what it knows of the done trials, read once each: their run ids in order and,
    /// at the same places, `(coordinates, best value)`.
    told_ids: Vec<i64>,
    told: Vec<(Vec<f64>, f64)>,
    cancelled_by_us: HashSet<i64>,
    retry_failed: bool,
    next: u64,
    stop_submitting: bool,
    /// The objective's values per run, as the progress shows them.
    histories: BTreeMap<i64, Vec<f64>>,
    /// The last store event looked at.
    cursor: i64,
    counts: Counts,
    last_look: Instant,
    /// When the sweep's own record was last looked at for a cancel request.
    request_look: Instant,
    /// Why the sweep was asked to stop (`labhost cancel`, the dashboard), once it was.
    cancelled: Option<String>,
}

impl<'a> Driver<'a> {
    fn new(run: SweepRun<'a>, opts: &RunOpts) -> LabResult<Driver<'a>> {
        let s = run.s;
        let planned = s.planned();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(2);
        let concurrent = opts
            .max_concurrent
            .or(s.doc.limits.as_ref().and_then(|l| l.max_concurrent_trials))
            .unwrap_or(planned.min(cpus))
            .max(1) as usize;
        if !opts.shared_workers {
            jobs::set_workers(concurrent)?;
        }
        let journal = run.journal()?;
        let started = Instant::now()
            - crate::util::secs_to_duration(
                (crate::clock::unix() - run.parent.started.unwrap_or(crate::clock::unix()))
                    .max(0.0),
            )
            .unwrap_or_default();
        // Trials whose parameters do not depend on results are queued ahead of the free
        // slots (the job host runs `concurrent` at once), so a slot is refilled by the worker
        // that frees it, in the same transaction; TPE waits for results and draws one at a
        // time.
        let adaptive = matches!(s.algorithm, Algorithm::Bayesian { .. });
        Ok(Driver {
            planned,
            concurrent,
            adaptive,
            window: if adaptive || opts.shared_workers {
                concurrent
            } else {
                concurrent * 2 + 64
            },
            deadline: started + s.timeout,
            journal,
            evaluator: s.policy.clone().map(|p| Evaluator::new(p, s.maximize)),
            in_flight: BTreeMap::new(),
            ids: BTreeMap::new(),
            done: HashSet::new(),
            untold: Vec::new(),
            unjudged: Vec::new(),
            told_ids: Vec::new(),
            told: Vec::new(),
            cancelled_by_us: HashSet::new(),
            retry_failed: opts.retry_failed,
            next: 0,
            stop_submitting: false,
            histories: BTreeMap::new(),
            cursor: crate::store::with_current(|st| st.last_event_id())?,
            counts: Counts::default(),
            last_look: Instant::now() - Duration::from_secs(1),
            request_look: Instant::now(),
            cancelled: None,
            run,
        })
    }

    /// Cancels `id` (trial `i`) for `why`, and tells the watcher.
    fn cancel(&mut self, id: i64, why: &str, watcher: &mut dyn Watcher) -> LabResult<()> {
        crate::engine::job_host()?.cancel(id, why)?;
        self.cancelled_by_us.insert(id);
        if let Some(i) = self.in_flight.get(&id) {
            watcher.cancelled(*i, why);
        }
        Ok(())
    }

    /// A cancel of the sweep itself (`labhost cancel <sweep>`, the dashboard's button), looked
    /// for every 200 ms: no more trials, and those not ended are cancelled with its reason.
    fn stop_on_request(&mut self, watcher: &mut dyn Watcher) -> LabResult<()> {
        if self.cancelled.is_some() || self.request_look.elapsed() < Duration::from_millis(200) {
            return Ok(());
        }
        self.request_look = Instant::now();
        let me = crate::store::with_current(|st| st.get(self.run.parent.id))?;
        let Some(why) = me.cancel_reason.filter(|_| !me.status.is_finished()) else {
            return Ok(());
        };
        self.stop_submitting = true;
        let ids: Vec<i64> = self.in_flight.keys().rev().copied().collect();
        for id in ids {
            self.cancel(id, &why, watcher)?;
        }
        self.cancelled = Some(why);
        Ok(())
    }

    /// At the sweep's deadline: no more trials, and those not ended are cancelled.
    fn stop_at_deadline(&mut self, watcher: &mut dyn Watcher) -> LabResult<()> {
        if Instant::now() < self.deadline || self.stop_submitting {
            return Ok(());
        }
        self.stop_submitting = true;
        let why = format!(
            "cancelled: the sweep's timeout ({}) was reached",
            crate::util::fmt_duration(self.run.s.timeout)
        );
        // Queued ones first (newest first), so no worker freed by a cancel starts one.
        let ids: Vec<i64> = self.in_flight.keys().rev().copied().collect();
        for id in ids {
            self.cancel(id, &why, watcher)?;
        }
        Ok(())
    }

    /// Draws and submits the next trials into the free slots, in index order (TPE sees every
    /// result so far); trials the journal has as ended are counted, not run again. True when
    /// something was submitted.
    fn fill_slots(&mut self) -> LabResult<bool> {
        let s = self.run.s;
        let mut batch: Vec<JobSpec> = Vec::new();
        let mut batch_idx: Vec<u64> = Vec::new();
        // Queued ahead: topped up in batches once half the lookahead has run.
        let top_up = self.adaptive || self.in_flight.len() <= self.concurrent + self.window / 4;
        while !self.stop_submitting
            && top_up
            && self.next < self.planned
            && (self.in_flight.len() + batch.len()) < self.window
        {
            let i = self.next;
            self.next += 1;
            let retry = |r: &Run| {
                self.retry_failed && matches!(r.status, RunStatus::Failed | RunStatus::TimedOut)
            };
            let params = match self.journal.get(&i) {
                Some((r, _)) if r.status.is_finished() && !retry(r) => {
                    let (id, status) = (r.id, r.status);
                    self.ids.insert(i, id);
                    self.mark_done(id);
                    tally(&mut self.counts, status);
                    continue;
                }
                Some((_, p)) => p.clone(),
                None if self.adaptive => self.tpe_draw(i)?,
                None => draw(s, self.run.seed, i, &[], &[]),
            };
            let mut spec = self.run.trial_spec(i, &params);
            spec.retry_failed = self.retry_failed;
            batch.push(spec);
            batch_idx.push(i);
            // TPE draws each trial knowing the results so far: one at a time.
            if self.adaptive {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(false);
        }
        let runs = jobs::submit_many(&batch)?;
        for (r, i) in runs.into_iter().zip(batch_idx) {
            self.ids.insert(i, r.id);
            if r.status.is_finished() {
                self.mark_done(r.id);
            } else {
                self.in_flight.insert(r.id, i);
            }
        }
        Ok(true)
    }

    /// True when nothing runs and nothing more will be submitted.
    fn over(&self) -> bool {
        self.in_flight.is_empty() && (self.next >= self.planned || self.stop_submitting)
    }

    /// Waits until a job ends (woken at once), or a short while when a policy must look at
    /// metrics, or until the deadline.
    fn wait_for_ends(&self) {
        let seen = crate::engine::ended_count();
        let wait = if self.evaluator.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        };
        let wait = wait.min(
            self.deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        );
        let looked = Instant::now();
        crate::engine::wait_for_end(seen, wait);
        // With trials queued ahead, the workers refill the slots themselves: look at most
        // every 20 ms (each look is a query and maybe a transaction).
        if !self.adaptive && self.in_flight.len() > self.concurrent {
            let next_look = looked + Duration::from_millis(20);
            let now = Instant::now();
            if now < next_look {
                std::thread::sleep(next_look - now);
            }
        }
    }

    /// Trial `id` ended: TPE and the early-termination policy each read its result once.
    fn mark_done(&mut self, id: i64) {
        if !self.done.insert(id) {
            return;
        }
        if self.adaptive {
            self.untold.push(id);
        }
        if self.evaluator.is_some() {
            self.unjudged.push(id);
        }
    }

    /// TPE's draw of trial `index`, knowing every done trial's result and the running
    /// trials' parameters. A done trial's result is read once, when first needed: reading
    /// them all for each draw made a 1,000-trial sweep spend 16 s in its draws.
    fn tpe_draw(&mut self, index: u64) -> LabResult<Params> {
        let s = self.run.s;
        let untold = std::mem::take(&mut self.untold);
        let read = crate::store::with_current(|st| {
            untold
                .iter()
                .map(|&id| {
                    let vals: Vec<f64> = st
                        .metric_points(id, &s.metric)?
                        .into_iter()
                        .map(|p| p.0)
                        .collect();
                    let Some(v) = best_of(s.maximize, &vals) else {
                        return Ok((id, None));
                    };
                    let p: Params = st.params(id)?.into_iter().collect();
                    Ok((id, s.space.coords(&p).map(|c| (c, v))))
                })
                .collect::<LabResult<Vec<_>>>()
        })?;
        for (id, known) in read {
            if let Some(known) = known {
                // In run order, as TPE weighs them (older first).
                let at = self.told_ids.partition_point(|x| *x < id);
                self.told_ids.insert(at, id);
                self.told.insert(at, known);
            }
        }
        let running: Vec<i64> = self.in_flight.keys().copied().collect();
        let pending: Vec<Vec<f64>> = swept_params(s, &running)?
            .iter()
            .filter_map(|p| s.space.coords(p))
            .collect();
        Ok(s.space
            .tpe_point_at(self.run.seed, index, &self.told, &pending, !s.maximize))
    }

    /// Which trials ended: the transitions recorded since the last look.
    fn collect_ended(&mut self) -> LabResult<()> {
        let events = crate::store::with_current(|st| st.events_since(self.cursor))?;
        for (ev, run, status) in events {
            self.cursor = ev;
            if status.is_finished() && self.in_flight.remove(&run).is_some() {
                self.mark_done(run);
                tally(&mut self.counts, status);
            }
        }
        Ok(())
    }

    /// The early-termination policy's look at the running trials' reports: the ones it
    /// stops are cancelled with its reason. Only the reports that can have changed are read:
    /// the running trials', and once more those of each trial that ended since the last look
    /// (reading every trial's at each look made a long sweep's driver read all its points
    /// ten times a second).
    fn judge(&mut self, watcher: &mut dyn Watcher) -> LabResult<()> {
        if self.evaluator.is_none() || (self.in_flight.is_empty() && self.unjudged.is_empty()) {
            return Ok(());
        }
        let s = self.run.s;
        let mut ids: Vec<i64> = self.in_flight.keys().copied().collect();
        ids.append(&mut self.unjudged);
        let read = crate::store::with_current(|st| {
            ids.iter()
                .map(|&id| {
                    let pts = st.metric_points(id, &s.metric)?;
                    Ok((id, pts.into_iter().map(|p| p.0).collect::<Vec<f64>>()))
                })
                .collect::<LabResult<Vec<_>>>()
        })?;
        for (id, reports) in read {
            if reports.is_empty() {
                self.histories.remove(&id);
            } else {
                self.histories.insert(id, reports);
            }
        }
        let trials: BTreeMap<i64, PolicyTrial> = self
            .histories
            .iter()
            .map(|(id, reports)| {
                (
                    *id,
                    PolicyTrial {
                        reports,
                        running: self.in_flight.contains_key(id)
                            && !self.cancelled_by_us.contains(id),
                    },
                )
            })
            .collect();
        let stops = match self.evaluator.as_mut() {
            Some(ev) => ev.decide(&trials),
            None => Vec::new(),
        };
        for (id, why) in stops {
            self.cancel(id, &why, watcher)?;
        }
        Ok(())
    }

    /// Tells the watcher where the sweep stands, at most every 100 ms.
    fn show(&mut self, watcher: &mut dyn Watcher) -> LabResult<()> {
        if self.last_look.elapsed() < Duration::from_millis(100) {
            return Ok(());
        }
        self.last_look = Instant::now();
        let s = self.run.s;
        if self.evaluator.is_none() {
            // Only each trial's best is shown: one aggregate query, not the histories.
            self.histories = crate::store::with_current(|st| {
                st.children_best(self.run.parent.id, &s.metric, s.maximize)
            })?
            .into_iter()
            .map(|(k, v)| (k, vec![v]))
            .collect();
        }
        let best = best_so_far(s, &self.ids, &self.histories);
        self.counts.done = self.done.len();
        self.counts.running = self.in_flight.len().min(self.concurrent);
        watcher.update(self.counts, self.planned, best, false);
        Ok(())
    }

    /// The sweep's result, shown to the watcher one last time.
    fn finish(mut self, watcher: &mut dyn Watcher) -> LabResult<SweepResult> {
        // A cancel that came between two looks (they are 200 ms apart) and whose trial
        // cancels ended the sweep before the driver looked: still a cancelled sweep.
        if self.cancelled.is_none() {
            let me = crate::store::with_current(|st| st.get(self.run.parent.id))?;
            self.cancelled = me.cancel_reason.filter(|_| !me.status.is_finished());
        }
        let mut r = result(self.run.s, self.run.parent, self.run.seed, &self.ids)?;
        if self.cancelled.is_some() {
            r.status = RunStatus::Cancelled;
        }
        let best = r.best_row().map(|t| (t.trial, t.best.unwrap_or(f64::NAN)));
        self.counts.done = self.done.len();
        self.counts.running = 0;
        watcher.update(self.counts, self.planned, best, true);
        Ok(r)
    }
}

/// Runs the sweep's trials to the end (or the deadline, or Ctrl-C): see [`Driver`].
fn drive(
    run: SweepRun<'_>,
    opts: &RunOpts,
    watcher: &mut dyn Watcher,
    cancel: &CancellationToken,
) -> LabResult<SweepResult> {
    let mut d = Driver::new(run, opts)?;
    loop {
        if cancel.is_cancelled() {
            return Err(LabError::cancelled());
        }
        // The job host takes no more work: the trials' ends would not be recorded.
        if let Some(e) = crate::engine::store_failure() {
            return Err(e);
        }
        d.stop_at_deadline(watcher)?;
        d.stop_on_request(watcher)?;
        if d.fill_slots()? {
            continue;
        }
        if d.over() {
            break;
        }
        d.wait_for_ends();
        d.collect_ended()?;
        d.judge(watcher)?;
        d.show(watcher)?;
    }
    d.finish(watcher)
}

fn tally(c: &mut Counts, st: RunStatus) {
    match st {
        RunStatus::Failed | RunStatus::TimedOut => c.failed += 1,
        RunStatus::Cancelled => c.cancelled += 1,
        _ => {}
    }
}

fn best_so_far(
    s: &Sweep,
    ids: &BTreeMap<u64, i64>,
    h: &BTreeMap<i64, Vec<f64>>,
) -> Option<(u64, f64)> {
    let mut best: Option<(u64, f64)> = None;
    for (i, id) in ids {
        let Some(v) = h.get(id).and_then(|xs| best_of(s.maximize, xs)) else {
            continue;
        };
        if best.is_none_or(|(_, b)| better(s.maximize, v, b)) {
            best = Some((*i, v));
        }
    }
    best
}

fn better(maximize: bool, a: f64, b: f64) -> bool {
    if maximize {
        a > b
    } else {
        a < b
    }
}

fn best_of(maximize: bool, xs: &[f64]) -> Option<f64> {
    xs.iter()
        .copied()
        .filter(|x| !x.is_nan())
        .reduce(|a, b| if better(maximize, b, a) { b } else { a })
}

/// The swept parameters of runs `ids` (trials still running, for TPE's constant liar).
fn swept_params(s: &Sweep, ids: &[i64]) -> LabResult<Vec<Params>> {
    crate::store::with_current(|st| {
        ids.iter()
            .map(|id| Ok(s.space.swept(st.params(*id)?)))
            .collect()
    })
}

/// The result of a sweep from the store (also for a sweep that ran before).
pub fn result(
    s: &Sweep,
    parent: &Run,
    seed: u64,
    ids: &BTreeMap<u64, i64>,
) -> LabResult<SweepResult> {
    // One read transaction, and each table read once for all the trials, not trial by trial.
    crate::store::with_current(|st| {
        st.snapshot(|st| {
            let m = st.children_metrics(parent.id, &s.metric)?;
            let mut params = st.children_params(parent.id)?;
            let mut runs: HashMap<i64, Run> = st
                .list(None, Some(parent.id), usize::MAX >> 1)?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            let mut trials = Vec::new();
            for (&i, &id) in ids {
                let r = match runs.remove(&id) {
                    Some(r) => r,
                    None => st.get(id)?,
                };
                // Every trial is a child of the sweep's record (the journal lists them so).
                let p = s.space.swept(params.remove(&id).unwrap_or_default());
                let vals: Vec<f64> = m
                    .get(&id)
                    .map(|v| v.iter().map(|p| p.value).collect())
                    .unwrap_or_default();
                let reason = r.cancel_reason.clone().or_else(|| {
                    (r.status != RunStatus::Completed)
                        .then(|| r.error.clone())
                        .flatten()
                        .map(|e| match last_stderr_line(&r.run_dir) {
                            // A failed trial says why in its own words, not only "exit 1".
                            Some(l) if r.status == RunStatus::Failed => format!("{e}: {l}"),
                            _ => e,
                        })
                });
                trials.push(TrialRow {
                    trial: i,
                    run_id: id,
                    params: p,
                    status: r.status,
                    last: vals.last().copied(),
                    best: best_of(s.maximize, &vals),
                    reports: vals.len(),
                    duration: r.started.zip(r.ended).map(|(a, b)| b - a),
                    reason,
                });
            }
            let mut best: Option<usize> = None;
            for (k, t) in trials.iter().enumerate() {
                if let Some(v) = t.best {
                    if best
                        .is_none_or(|b| better(s.maximize, v, trials[b].best.unwrap_or(f64::NAN)))
                    {
                        best = Some(k);
                    }
                }
            }
            Ok(SweepResult {
                sweep_id: parent.id,
                status: st.get(parent.id)?.status,
                metric: s.metric.clone(),
                goal: if s.maximize { "maximize" } else { "minimize" }.into(),
                seed: (s.algorithm != Algorithm::Grid).then_some(seed),
                best_child_run_id: best.map(|b| trials[b].run_id),
                best,
                trials,
                run_dir: parent.run_dir.clone(),
                report: None,
            })
        })
    })
}

/// The sweep's progress on stderr: a bar on a terminal, else a line at most once a second
/// (and the last one); early terminations are said as they happen. Nothing when quiet.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    /// What the lines start with: `sweep`, or a pipeline step's name.
    label: String,
    metric: String,
    last: Option<Instant>,
    said: String,
    started: Instant,
    announce: bool,
}

impl Progress {
    pub fn new(s: &Sweep, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let quiet = quiet || !tracing::enabled!(tracing::Level::INFO);
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(s.planned());
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {bar:30.cyan/blue} {pos}/{len} trials · {msg} · {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix("sweep");
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            quiet,
            label: "sweep".into(),
            metric: s.metric.clone(),
            last: None,
            said: String::new(),
            started: Instant::now(),
            announce: !quiet,
        }
    }

    /// Says "new sweep N" / "continuing sweep N (…)" even when otherwise quiet (the CLI's
    /// `--json`: the result on stdout, this on stderr).
    pub fn announcing(mut self) -> Progress {
        self.announce = true;
        self
    }

    /// A pipeline step's progress: its lines start with the step's name, and its bar (on a
    /// terminal) is one of `bars`, so steps running at once each keep their own line.
    pub fn step(s: &Sweep, quiet: bool, name: &str, bars: &indicatif::MultiProgress) -> Progress {
        let mut p = Progress::new(s, quiet);
        p.label = name.to_string();
        p.bar = p.bar.take().map(|b| {
            b.set_prefix(name.to_string());
            bars.add(b)
        });
        p
    }
}

impl Watcher for Progress {
    fn started(&mut self, id: i64, planned: u64, before: Option<Counts>) {
        if !self.announce {
            return;
        }
        let step = match self.label.as_str() {
            "sweep" => String::new(),
            l => format!("{l}: "),
        };
        let msg = match before {
            None => format!("{step}new sweep {id}"),
            Some(c) => {
                let mut m = format!("{step}continuing sweep {id} ({}/{planned} done", c.done);
                if c.failed > 0 {
                    m.push_str(&format!(", {} failed", c.failed));
                }
                m + ")"
            }
        };
        crate::runtime::ctx().sink.eprint(&msg);
        if let Some(url) = crate::state::dir()
            .ok()
            .and_then(|d| crate::engine::dashboard_url(&d))
        {
            crate::runtime::ctx()
                .sink
                .eprint(&format!("live: {url}/runs/{id}"));
        }
    }

    fn update(&mut self, c: Counts, planned: u64, best: Option<(u64, f64)>, last: bool) {
        if self.quiet {
            return;
        }
        let (done, running) = (c.done, c.running);
        let best = match best {
            Some((t, v)) => format!(" · best {} {} (trial {t})", self.metric, num(v)),
            None if self.metric.is_empty() => String::new(),
            None => format!(" · no {} reported yet", self.metric),
        };
        let mut msg = format!("{running} running");
        if c.cancelled > 0 {
            msg.push_str(&format!(", {} cancelled", c.cancelled));
        }
        if c.failed > 0 {
            msg.push_str(&format!(", {} failed", c.failed));
        }
        let msg = format!("{msg}{best}");
        if let Some(b) = &self.bar {
            b.set_length(planned);
            b.set_position(done as u64);
            b.set_message(msg);
            if last {
                b.finish();
            }
            return;
        }
        let key = format!("{done} {msg}");
        let spell = self
            .last
            .is_some_and(|w| w.elapsed() < Duration::from_secs(1));
        if last || (key != self.said && !spell) {
            crate::runtime::ctx().sink.eprint(&format!(
                "{}: {done}/{planned} trials done, {msg} ({:.1}s)",
                self.label,
                self.started.elapsed().as_secs_f64()
            ));
            self.last = Some(Instant::now());
            self.said = key;
        }
    }

    fn cancelled(&mut self, trial: u64, reason: &str) {
        if self.quiet {
            return;
        }
        let line = format!("{}: trial {trial} {reason}", self.label);
        match &self.bar {
            Some(b) => b.println(line),
            None => crate::runtime::ctx().sink.eprint(&line),
        }
    }
}

/// One fold of a cross-validation: its index, run, status and the last value of each metric.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    pub index: i64,
    pub run_id: i64,
    pub status: RunStatus,
    pub metrics: BTreeMap<String, f64>,
}

/// A metric across folds (the last value each fold reported): mean, sample standard
/// deviation (as pandas' `describe`, which InnerEye's reports use), min, max.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// The folds of a finished cross-validation and every metric aggregated across them; each
/// fold's `outputs/` is copied to `<cross-validation run>/outputs/fold_<i>/`.
pub fn cross_validation_result(
    r: &SweepResult,
) -> LabResult<(Vec<Fold>, BTreeMap<String, Aggregate>)> {
    let mut folds = Vec::new();
    for t in &r.trials {
        let index = t
            .params
            .get(super::CV_INDEX)
            .and_then(|v| v.as_i64())
            .unwrap_or(-1);
        let ms = crate::store::with_current(|st| st.metrics(t.run_id, None))?;
        let mut last: BTreeMap<String, (i64, f64, f64)> = BTreeMap::new();
        for m in ms {
            let e = last
                .entry(m.name.clone())
                .or_insert((m.step, m.ts, m.value));
            if (m.step, m.ts) >= (e.0, e.1) {
                *e = (m.step, m.ts, m.value);
            }
        }
        let run = jobs::get(t.run_id)?;
        let src = Path::new(&run.run_dir).join("outputs");
        let dst = Path::new(&r.run_dir)
            .join("outputs")
            .join(format!("fold_{index}"));
        if src.is_dir()
            && std::fs::read_dir(&src)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        {
            snapshot_plain(&src, &dst)?;
        }
        folds.push(Fold {
            index,
            run_id: t.run_id,
            status: t.status,
            metrics: last.into_iter().map(|(k, v)| (k, v.2)).collect(),
        });
    }
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for f in &folds {
        for (k, v) in &f.metrics {
            by.entry(k.clone()).or_default().push(*v);
        }
    }
    let agg = by
        .into_iter()
        .map(|(k, xs)| {
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = if xs.len() > 1 {
                xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            (
                k,
                Aggregate {
                    mean,
                    std: var.sqrt(),
                    min: xs.iter().copied().fold(f64::INFINITY, f64::min),
                    max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    count: xs.len(),
                },
            )
        })
        .collect();
    Ok((folds, agg))
}

/// Copies a folder (files and folders; links as links).
fn snapshot_plain(src: &Path, dst: &Path) -> LabResult<()> {
    let _ = std::fs::remove_file(dst.join(".labhost-snapshot-done"));
    snapshot(src, dst)?;
    let _ = std::fs::remove_file(dst.join(".labhost-snapshot-done"));
    Ok(())
}

/// Sweeps whose driving process died before they ended: `(run id, key, sweep)` rebuilt from
/// the `sweep.yml` kept in each one's run folder, for `labhost resume`.
/// Where the trials of sweep `id` stand in the store.
fn recorded_counts(id: i64) -> LabResult<Counts> {
    let mut c = Counts::default();
    for r in crate::store::with_current(|st| st.list(None, Some(id), usize::MAX >> 1))? {
        match r.status {
            s if s.is_finished() => {
                c.done += 1;
                tally(&mut c, s);
            }
            _ => c.running += 1,
        }
    }
    Ok(c)
}

/// The sweep a sweep run was started from: the `sweep.yml` kept in its run folder, with its
/// source and kind of children as recorded.
fn recorded(r: &Run) -> LabResult<Sweep> {
    let file = Path::new(&r.run_dir).join("sweep.yml");
    let text = crate::modules::fs::read(&file)?;
    let src = file.display().to_string();
    let doc = super::parse_doc(&text, &src)?;
    let base = PathBuf::from(r.spec.cwd.clone().unwrap_or_else(|| ".".into()));
    let mut s = super::resolve(
        doc,
        &super::Origin {
            source: &src,
            text: Some(&text),
        },
        &base,
    )?;
    let tags = crate::store::with_current(|st| st.tags(r.id))?;
    if let Some((_, v)) = tags.iter().find(|(k, _)| k == "source") {
        s.source = v.clone();
    }
    if crate::store::with_current(|st| st.list(None, Some(r.id), 1))?
        .first()
        .is_some_and(|c| c.kind == RunKind::Fold)
    {
        s.child_kind = RunKind::Fold;
    }
    Ok(s)
}

/// The results of sweep `id` as they stand in the store — a sweep that ended, or one that
/// still runs — without running anything.
pub fn get(id: i64) -> LabResult<SweepResult> {
    let r = jobs::get(id)?;
    if r.kind != RunKind::Sweep || !r.key.as_deref().is_some_and(|k| k.starts_with("sweep:")) {
        return Err(LabError::new(
            "invalid_argument",
            format!("run {id} is a {} run, not a sweep", r.kind),
        ));
    }
    let s = recorded(&r)?;
    let seed = crate::store::with_current(|st| st.params(id))?
        .into_iter()
        .find(|(k, _)| k == "seed")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(0);
    let mut ids = BTreeMap::new();
    for c in crate::store::with_current(|st| st.list(None, Some(id), usize::MAX >> 1))? {
        let i = c.key.as_deref().and_then(|k| k.rsplit('/').next());
        if let Some(i) = i.and_then(|x| x.parse::<u64>().ok()) {
            ids.insert(i, c.id);
        }
    }
    let page = Path::new(&r.run_dir).join("report.html");
    Ok(SweepResult {
        report: page.is_file().then(|| page.display().to_string()),
        ..result(&s, &r, seed, &ids)?
    })
}

pub fn orphaned_sweeps() -> LabResult<Vec<(i64, String, Sweep)>> {
    let state = crate::state::dir()?;
    let runs =
        crate::store::with_current(|st| st.list(Some(RunStatus::Running), None, usize::MAX >> 1))?;
    let mut out = Vec::new();
    for r in runs {
        let Some(key) = r
            .key
            .clone()
            .filter(|k| k.starts_with("sweep:") && r.kind == RunKind::Sweep)
        else {
            continue;
        };
        if r.host
            .as_deref()
            .is_some_and(|h| crate::engine::job_host_alive(&state, h))
        {
            continue;
        }
        let s = recorded(&r)?;
        out.push((r.id, key, s));
    }
    Ok(out)
}
