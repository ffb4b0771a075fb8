//! `labhost pipeline FILE.yml`: nussl's pipeline files (`scripts/pipeline.py`,
//! `parse_yaml(jobs=True)`) on the job engine.
//!
//! ```yaml
//! num_jobs: 2                 # jobs at once (nussl; default 1, --workers wins)
//! jobs:
//! - script: reorganize        # scripts/reorganize.py, or a path (.py → python3, .sh → sh,
//!   config: -y data/x.yml     #   .rhai → labhost run, else executed), + config and args
//!   run_in: host              # host | container/docker (nussl says container)
//!   num_gpus: 1
//!   blocking: true            # must end before anything after it starts
//! - command: "make features"  # or a command (string via sh -c, or list)
//! ```
//! A file that is a list is a list of jobs; a map without `jobs` is one job. Values go through
//! the yaml module's substitution (`{DATA_DIRECTORY}`, `${VAR}`, `${a.b}`). Each job gets an
//! idempotency key from the file, its position and its resolved spec: running the pipeline
//! again skips what completed, runs again what failed, and picks up a pipeline whose host
//! died (`--rerun` runs everything anew).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::command::Command;
use crate::error::{HostError, HostResult};
use crate::modules::jobs::JobSpec;
use crate::store::RunIn;
use crate::util::{Seconds, Text};

/// One job of a pipeline file. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Step {
    script: Option<String>,
    config: Option<String>,
    args: Option<Args>,
    /// Program for `script` (default by extension: python3, sh, labhost).
    interpreter: Option<String>,
    command: Option<Command>,
    run_in: Option<String>,
    #[serde(default)]
    num_gpus: u32,
    #[serde(default)]
    blocking: bool,
    name: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Text>,
    cwd: Option<String>,
    timeout: Option<Seconds>,
    #[serde(default)]
    retries: u32,
    backoff: Option<Seconds>,
    #[serde(default)]
    tags: BTreeMap<String, Text>,
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    priority: i64,
    key: Option<String>,
    image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Args {
    Line(String),
    List(Vec<Value>),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    num_jobs: Option<i64>,
    #[serde(default)]
    fail_fast: bool,
    jobs: Vec<Value>,
}

/// Single-quotes `s` for sh unless it is plainly safe.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// FNV-1a: a key that stays the same across labhost builds (std's hasher does not promise it).
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn step_command(step: &Step, base: &Path, where_: &str) -> HostResult<Command> {
    let bad = |m: String| Err(HostError::new("pipeline.invalid", format!("{where_}: {m}")));
    match (&step.script, &step.command) {
        (Some(_), Some(_)) => bad("give either `script` or `command`, not both".into()),
        (None, None) => bad("a job needs `script` or `command`".into()),
        (None, Some(c)) => {
            if step.config.is_some() || step.args.is_some() || step.interpreter.is_some() {
                return bad("`config`, `args` and `interpreter` go with `script`".into());
            }
            Ok(c.clone())
        }
        (Some(script), None) => {
            // nussl names scripts by their name in scripts/ (`script: reorganize`).
            let mut path = script.clone();
            if !script.contains('/') && Path::new(script).extension().is_none() {
                let nussl = format!("scripts/{script}.py");
                if base.join(&nussl).is_file() {
                    path = nussl;
                }
            }
            let interp = match (&step.interpreter, Path::new(&path).extension()) {
                (Some(i), _) => Some(i.clone()),
                (None, Some(e)) if e == "py" => Some("python3".into()),
                (None, Some(e)) if e == "sh" => Some("sh".into()),
                (None, Some(e)) if e == "rhai" => Some(format!(
                    "{} run",
                    quote(
                        &std::env::current_exe()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|_| "labhost".into())
                    )
                )),
                _ => None,
            };
            let mut line = match interp {
                Some(i) => format!("{i} {}", quote(&path)),
                None => quote(&path),
            };
            // nussl appends config as written (`-y file.yml`).
            if let Some(c) = &step.config {
                line.push(' ');
                line.push_str(c);
            }
            match &step.args {
                Some(Args::Line(a)) => {
                    line.push(' ');
                    line.push_str(a);
                }
                Some(Args::List(a)) => {
                    for v in a {
                        line.push(' ');
                        line.push_str(&quote(
                            &v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        ));
                    }
                }
                None => {}
            }
            Ok(Command::Shell(line))
        }
    }
}

/// The jobs of a pipeline file, as specs for the pool, and its `num_jobs` / `fail_fast`.
pub fn load(path: &Path, rerun: bool) -> HostResult<(Vec<JobSpec>, Option<u64>, bool)> {
    let doc = crate::modules::yaml::load(path, &Default::default())?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let source = path.display().to_string();
    let file: File = match doc {
        Value::Array(jobs) => File {
            jobs,
            ..Default::default()
        },
        Value::Object(ref m) if m.contains_key("jobs") => serde_json::from_value(doc.clone())
            .map_err(|e| {
                HostError::new(
                    "pipeline.invalid",
                    format!("{}: {e}", locate_error(&text, &source, &e.to_string())),
                )
            })?,
        Value::Object(_) => File {
            jobs: vec![doc.clone()],
            ..Default::default()
        },
        _ => {
            return Err(HostError::new(
                "pipeline.invalid",
                format!("{source}: a pipeline is a list of jobs, or a map with `jobs:`"),
            ))
        }
    };
    if let Some(n) = file.num_jobs.filter(|n| *n < 1) {
        return Err(HostError::new(
            "pipeline.invalid",
            format!(
                "{}: num_jobs must be 1 or more, not {n}",
                crate::modules::yaml::locate(&text, &source, "num_jobs")
            ),
        ));
    }
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut specs = Vec::with_capacity(file.jobs.len());
    for (i, v) in file.jobs.into_iter().enumerate() {
        let where_ = format!("{source}: jobs[{i}]");
        let step: Step = serde_json::from_value(v).map_err(|e| {
            HostError::new(
                "pipeline.invalid",
                format!(
                    "{}: jobs[{i}]: {e}",
                    locate_error(&text, &source, &e.to_string())
                ),
            )
        })?;
        let command = step_command(&step, &base, &where_)?;
        let run_in = match step.run_in.as_deref() {
            None | Some("host") => None,
            Some("container") | Some("docker") => Some(RunIn::Docker),
            Some(other) => {
                return Err(HostError::new(
                    "pipeline.invalid",
                    format!(
                        "{}: jobs[{i}]: run_in must be host, container or docker, not \"{other}\"",
                        crate::modules::yaml::locate(&text, &source, other)
                    ),
                ))
            }
        };
        let name = step.name.clone().or_else(|| {
            step.script
                .as_ref()
                .map(|s| format!("{}[{i}] {s}", path_stem(path)))
        });
        let mut spec = JobSpec {
            command: Some(command),
            cwd: step.cwd,
            env: step.env,
            num_gpus: step.num_gpus,
            name: name.or_else(|| Some(format!("{}[{i}]", path_stem(path)))),
            tags: step.tags,
            params: step.params,
            priority: step.priority,
            retries: step.retries,
            backoff: step.backoff,
            timeout: step.timeout,
            run_in,
            image: step.image,
            blocking: step.blocking,
            ..Default::default()
        };
        spec.tags
            .insert("pipeline".into(), Text(abs.display().to_string()));
        spec.key = match step.key {
            Some(k) => Some(k),
            None if rerun => None,
            None => {
                // What the job would do: its position and resolved spec (env values included,
                // so a changed ${VAR} makes a new job).
                let fingerprint = serde_json::json!({
                    "i": i,
                    "command": format!("{:?}", spec.command),
                    "cwd": spec.cwd,
                    "env": spec.env.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect::<BTreeMap<_, _>>(),
                    "num_gpus": spec.num_gpus,
                    "run_in": spec.run_in, "image": spec.image,
                });
                Some(format!(
                    "pipeline:{}:{i}:{}",
                    abs.display(),
                    fnv(&fingerprint.to_string())
                ))
            }
        };
        spec.retry_failed = true;
        specs.push(spec);
    }
    Ok((specs, file.num_jobs.map(|n| n as u64), file.fail_fast))
}

fn path_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into())
}

/// Points a serde error about an unknown field at the field in the file.
fn locate_error(text: &str, source: &str, msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            return crate::modules::yaml::locate(text, source, &format!("{name}:"));
        }
    }
    source.to_string()
}
