//! `labhost pipeline FILE.yml`: nussl's pipeline files (nussl's own `scripts/pipeline.py`,
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
use crate::error::{LabError, LabResult};
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
    /// nussl's dispatch files: the name (or names) of the jobs this one waits for.
    depends_on: Option<Names>,
}

/// One job name or a list of them.
#[derive(Debug, Clone, Default)]
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a job name or a list of job names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = a.next_element::<String>()? {
                    out.push(n);
                }
                Ok(Names(out))
            }
        }
        d.deserialize_any(V)
    }
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

/// `python` when it is on PATH (a virtualenv), else `python3` (Debian has no `python`).
fn python() -> String {
    let on_path = |p: &str| {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|d| {
                std::fs::metadata(d.join(p)).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                })
            })
        })
    };
    if on_path("python") {
        "python".into()
    } else {
        "python3".into()
    }
}

/// The folder holding the `scripts/` package that has module `name` (`scripts/name.py` or
/// `scripts/name/__main__.py`): the working directory or one above it, else the pipeline
/// file's folder or one above it.
fn scripts_root(name: &str, starts: &[&Path]) -> Option<PathBuf> {
    starts.iter().flat_map(|s| s.ancestors()).find_map(|d| {
        let pkg = d.join("scripts");
        (pkg.join(format!("{name}.py")).is_file() || pkg.join(name).join("__main__.py").is_file())
            .then(|| d.to_path_buf())
    })
}

/// A step's command, and the folder it must run in (a bare script name runs as a module of
/// the `scripts` package, from the folder that holds it).
fn step_command(
    step: &Step,
    starts: &[&Path],
    where_: &str,
    located: &dyn Fn(&str) -> String,
) -> LabResult<(Command, Option<PathBuf>)> {
    let bad = |m: String| Err(LabError::new("pipeline.invalid", format!("{where_}: {m}")));
    match (&step.script, &step.command) {
        (Some(_), Some(_)) => bad("give either `script` or `command`, not both".into()),
        (None, None) => bad("a job needs `script` or `command`".into()),
        (None, Some(c)) => {
            if step.config.is_some() || step.args.is_some() || step.interpreter.is_some() {
                return bad("`config`, `args` and `interpreter` go with `script`".into());
            }
            Ok((c.clone(), None))
        }
        (Some(script), None) => {
            // nussl: `script: reorganize` is `python -m scripts.reorganize`, run from the
            // project root, so the scripts' package imports work.
            let bare = !script.contains('/') && Path::new(script).extension().is_none();
            let (mut line, root) = if bare {
                let Some(root) = scripts_root(script, starts) else {
                    return Err(LabError::new(
                        "pipeline.invalid",
                        format!(
                            "{}: script `{script}` is not a module of a scripts/ package: no scripts/{script}.py in {} or a folder above it",
                            located(script),
                            starts.first().map(|p| p.display().to_string()).unwrap_or_default()
                        ),
                    ));
                };
                let interp = step.interpreter.clone().unwrap_or_else(python);
                (format!("{interp} -m scripts.{script}"), Some(root))
            } else {
                let interp = match (&step.interpreter, Path::new(script).extension()) {
                    (Some(i), _) => Some(i.clone()),
                    (None, Some(e)) if e == "py" => Some(python()),
                    (None, Some(e)) if e == "sh" => Some("sh".into()),
                    (None, Some(e)) if e == "rhai" => Some(format!(
                        "{} run",
                        crate::util::shell_quote(
                            &std::env::current_exe()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|_| "labhost".into())
                        )
                    )),
                    _ => None,
                };
                let line = match interp {
                    Some(i) => format!("{i} {}", crate::util::shell_quote(script)),
                    None => crate::util::shell_quote(script),
                };
                (line, None)
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
                        line.push_str(&crate::util::shell_quote(
                            &v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        ));
                    }
                }
                None => {}
            }
            Ok((Command::Shell(line), root))
        }
    }
}

/// The jobs of a pipeline file, as specs for the pool, and its `num_jobs` / `fail_fast`.
pub fn load(path: &Path, rerun: bool) -> LabResult<(Vec<JobSpec>, Option<u64>, bool)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let source = path.display().to_string();
    let file = read_file(path, &text, &source)?;
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let file_dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base.clone());
    let p = Pipeline {
        path,
        abs: &abs,
        text: &text,
        source: &source,
        starts: [base.as_path(), file_dir.as_path()],
        rerun,
    };
    let mut specs = Vec::with_capacity(file.jobs.len());
    // Names for depends_on, and what each job waits for (by name, with where it is said).
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut waits: Vec<Vec<String>> = Vec::with_capacity(file.jobs.len());
    for (i, v) in file.jobs.into_iter().enumerate() {
        let (spec, name, wait) = p.job(i, v)?;
        if let Some(n) = name {
            if names.insert(n.clone(), i).is_some() {
                return Err(LabError::new(
                    "pipeline.invalid",
                    format!(
                        "{}: jobs[{i}]: two jobs are named \"{n}\" (depends_on needs unique names)",
                        crate::modules::yaml::locate(&text, &source, &format!("name: {n}"))
                    ),
                ));
            }
        }
        waits.push(wait);
        specs.push(spec);
    }
    let specs = order_by_dependencies(specs, &names, &waits, &text, &source)?;
    Ok((specs, file.num_jobs.map(|n| n as u64), file.fail_fast))
}

/// The pipeline file read: a list of jobs, a map with `jobs:`, or one job.
fn read_file(path: &Path, text: &str, source: &str) -> LabResult<File> {
    let doc = crate::modules::yaml::load(path, &Default::default())?;
    let file: File = match doc {
        Value::Array(jobs) => File {
            jobs,
            ..Default::default()
        },
        Value::Object(ref m) if m.contains_key("jobs") => serde_json::from_value(doc.clone())
            .map_err(|e| {
                LabError::new(
                    "pipeline.invalid",
                    format!(
                        "{source}: {e}",
                        source = locate_error(text, source, &e.to_string())
                    ),
                )
            })?,
        Value::Object(_) => File {
            jobs: vec![doc.clone()],
            ..Default::default()
        },
        _ => {
            return Err(LabError::new(
                "pipeline.invalid",
                format!("{source}: a pipeline is a list of jobs, or a map with `jobs:`"),
            ))
        }
    };
    if let Some(n) = file.num_jobs.filter(|n| *n < 1) {
        return Err(LabError::new(
            "pipeline.invalid",
            format!(
                "{}: num_jobs must be 1 or more, not {n}",
                crate::modules::yaml::locate(text, source, "num_jobs")
            ),
        ));
    }
    Ok(file)
}

/// One pipeline file being read: where it is, its text (for located errors) and where its
/// scripts are looked for.
struct Pipeline<'a> {
    path: &'a Path,
    abs: &'a Path,
    text: &'a str,
    source: &'a str,
    /// The working directory, then the file's folder.
    starts: [&'a Path; 2],
    rerun: bool,
}

impl Pipeline<'_> {
    /// Job `i` of the file: its spec, its name (for depends_on) and the names it waits for.
    fn job(&self, i: usize, v: Value) -> LabResult<(JobSpec, Option<String>, Vec<String>)> {
        let (text, source) = (self.text, self.source);
        let where_ = format!("{source}: jobs[{i}]");
        let step: Step = serde_json::from_value(v).map_err(|e| {
            LabError::new(
                "pipeline.invalid",
                format!(
                    "{}: jobs[{i}]: {e}",
                    locate_error(text, source, &e.to_string())
                ),
            )
        })?;
        let located = |needle: &str| {
            let at = crate::modules::yaml::locate(text, source, &format!("script: {needle}"));
            if at == source {
                crate::modules::yaml::locate(text, source, needle)
            } else {
                at
            }
        };
        let (command, root) = step_command(&step, &self.starts, &where_, &located)?;
        let wait = step.depends_on.clone().unwrap_or_default().0;
        let run_in = match step.run_in.as_deref() {
            None | Some("host") => None,
            Some("container") | Some("docker") => Some(RunIn::Docker),
            Some(other) => {
                return Err(LabError::new(
                    "pipeline.invalid",
                    format!(
                        "{}: jobs[{i}]: run_in must be host, container or docker, not \"{other}\"",
                        crate::modules::yaml::locate(text, source, other)
                    ),
                ))
            }
        };
        let stem = path_stem(self.path);
        let name = step
            .name
            .clone()
            .or_else(|| step.script.as_ref().map(|s| format!("{stem}[{i}] {s}")));
        let mut spec = JobSpec {
            command: Some(command),
            cwd: step.cwd.or_else(|| root.map(|r| r.display().to_string())),
            env: step.env,
            num_gpus: step.num_gpus,
            name: name.or_else(|| Some(format!("{stem}[{i}]"))),
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
            .insert("pipeline".into(), Text(self.abs.display().to_string()));
        spec.key = match step.key {
            Some(k) => Some(k),
            None if self.rerun => None,
            None => Some(self.key(i, &spec, &wait)),
        };
        spec.retry_failed = true;
        Ok((spec, step.name, wait))
    }

    /// The key of job `i`: what the job would do — its position and resolved spec (env
    /// values included, so a changed ${VAR} makes a new job), and what it waits for.
    fn key(&self, i: usize, spec: &JobSpec, wait: &[String]) -> String {
        let mut fingerprint = serde_json::json!({
            "i": i,
            "command": format!("{:?}", spec.command),
            "cwd": spec.cwd,
            "env": spec.env.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect::<BTreeMap<_, _>>(),
            "num_gpus": spec.num_gpus,
            "run_in": spec.run_in, "image": spec.image,
        });
        if !wait.is_empty() {
            fingerprint["depends_on"] = wait.to_vec().into();
        }
        format!(
            "pipeline:{}:{i}:{}",
            self.abs.display(),
            crate::util::fnv(&fingerprint.to_string())
        )
    }
}

/// Resolves `depends_on` names to the positions of the jobs they name and orders the jobs so
/// that each comes after what it waits for (file order otherwise). An unknown name or a cycle
/// is an error naming where it is written.
fn order_by_dependencies(
    specs: Vec<JobSpec>,
    names: &BTreeMap<String, usize>,
    waits: &[Vec<String>],
    text: &str,
    source: &str,
) -> LabResult<Vec<JobSpec>> {
    let n = specs.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, w) in waits.iter().enumerate() {
        for name in w {
            let Some(&j) = names.get(name) else {
                let known: Vec<&str> = names.keys().map(String::as_str).collect();
                let hint = crate::util::did_you_mean(name, &known)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                return Err(LabError::new(
                    "pipeline.invalid",
                    format!(
                        "{}: jobs[{i}]: depends_on names \"{name}\", but no job has that name{hint}",
                        crate::modules::yaml::locate(text, source, name)
                    ),
                ));
            };
            if j == i {
                return Err(LabError::new(
                    "pipeline.invalid",
                    format!(
                        "{}: jobs[{i}]: a job cannot depend on itself",
                        crate::modules::yaml::locate(text, source, &format!("depends_on: {name}"))
                    ),
                ));
            }
            deps[i].push(j);
        }
    }
    // Kahn's algorithm, always taking the first ready job in file order.
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let Some(i) = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d])) else {
            let stuck: Vec<usize> = (0..n).filter(|&i| !placed[i]).collect();
            let name_of = |i: usize| {
                names
                    .iter()
                    .find(|(_, &j)| j == i)
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| format!("jobs[{i}]"))
            };
            // Walk the waits from the first stuck job until a name repeats.
            let mut path = vec![stuck[0]];
            loop {
                let cur = *path.last().expect("not empty");
                let next = deps[cur]
                    .iter()
                    .copied()
                    .find(|d| !placed[*d])
                    .expect("stuck jobs wait");
                if let Some(p) = path.iter().position(|&x| x == next) {
                    let mut cycle: Vec<String> = path[p..].iter().map(|&x| name_of(x)).collect();
                    cycle.push(name_of(next));
                    return Err(LabError::new(
                        "pipeline.invalid",
                        format!(
                            "{}: depends_on makes a cycle: {}",
                            crate::modules::yaml::locate(
                                text,
                                source,
                                &format!("name: {}", cycle[0])
                            ),
                            cycle.join(" -> ")
                        ),
                    ));
                }
                path.push(next);
            }
        };
        placed[i] = true;
        order.push(i);
    }
    let mut pos = vec![0; n];
    for (k, &i) in order.iter().enumerate() {
        pos[i] = k;
    }
    let mut slots: Vec<Option<JobSpec>> = specs.into_iter().map(Some).collect();
    Ok(order
        .iter()
        .map(|&i| {
            let mut s = slots[i].take().expect("each job once");
            s.after = deps[i].iter().map(|&d| pos[d]).collect();
            s
        })
        .collect())
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
