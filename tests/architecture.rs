//! The layers of src/, in code. Top-down, each imports (`crate::…`) only from below it:
//!
//! ```text
//! cli                      clap, dispatch, the one error printer
//! script                   the script host: engine, runner, REPL, doc, diagnostics
//! modules/<m>/rhai.rs      bindings: script values ⇄ typed calls
//! modules: drivers         jobs · sweep · track · azure · cron (and the small ones)
//! engine                   the local executor: job host, supervisor, MLflow endpoint
//! modules: resources       gpu · docker · git (the engine books GPUs, runs containers,
//!                          labels commits through their typed APIs)
//! bridge                   what bindings share: errors with position, block_on, decode
//! store                    the run store (SQLite)
//! process                  the one way to start, contain and stop a process
//! runtime services         runtime, config, state, redact, clock, command, error, util,
//!                          beneath
//! ```
//!
//! Every unit — a top-level folder of src/, and each folder under src/modules/ (a module is
//! a unit of its own: modules import each other's typed APIs) — is checked: no two units
//! import each other, and the rules in [`violations`] hold.
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::a::b…` path a file names outside comments, as `a::b…`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..end].trim_end_matches(':').to_string());
            rest = &tail[end..];
        }
    }
    out
}

/// `use` of the rhai crate outside comments.
fn uses_rhai(text: &str) -> bool {
    text.lines().any(|l| {
        let code = l.split("//").next().unwrap_or("").trim_start();
        code.starts_with("use rhai") || code.contains(" rhai::") || code.contains("(rhai::")
    })
}

fn rel(p: &Path) -> String {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .display()
        .to_string()
}

/// The names a module re-exports with `pub use` (after `as` when renamed).
fn reexports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("pub use ") {
        let tail = &rest[i + "pub use ".len()..];
        let end = tail.find(';').unwrap_or(tail.len());
        let stmt = &tail[..end];
        let inner = match (stmt.find('{'), stmt.rfind('}')) {
            (Some(a), Some(b)) => &stmt[a + 1..b],
            _ => stmt.rsplit("::").next().unwrap_or(""),
        };
        for item in inner.split(',') {
            let item = item.trim();
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                out.push(name.to_string());
            }
        }
        rest = &tail[end..];
    }
    out
}

/// The unit a file belongs to: `modules/<m>` under src/modules, else its top-level folder,
/// else `services` for the runtime-service files at the root of src/.
fn unit_of_file(f: &str) -> String {
    let rest = f.strip_prefix("src/").unwrap_or(f);
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["modules", m, _, ..] => format!("modules/{m}"),
        [_file] => "services".to_string(),
        [dir, ..] => dir.to_string(),
        [] => String::new(),
    }
}

/// The unit a `crate::…` path names.
fn unit_of_path(p: &str) -> String {
    let parts: Vec<&str> = p.split("::").collect();
    match parts.as_slice() {
        ["modules", m, ..] => format!("modules/{m}"),
        ["modules"] => "modules".to_string(),
        [top, ..] if SERVICES.contains(top) => "services".to_string(),
        [top, ..] => top.to_string(),
        [] => String::new(),
    }
}

/// The runtime services at the root of src/.
const SERVICES: &[&str] = &[
    "runtime", "config", "state", "redact", "clock", "command", "error", "util", "beneath",
];

/// Modules above the engine (they submit, sweep, track, go to Azure, schedule).
const DRIVERS: &[&str] = &["jobs", "sweep", "track", "azure", "cron"];

/// Pairs of units that import each other.
fn mutual_imports(files: &[(String, String)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, text) in files {
        let from = unit_of_file(f);
        for p in crate_paths(text) {
            let to = unit_of_path(&p);
            if to != from && !to.is_empty() {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut bad = Vec::new();
    for (a, tos) in &edges {
        for b in tos {
            if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                bad.push(format!("{a} and {b} import each other"));
            }
        }
    }
    bad
}

/// The layer rules, as a list of violations (empty when the code keeps to them).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut bad = mutual_imports(files);
    // What the engine re-exports (`pub use` in src/engine/mod.rs) is its typed API.
    let engine_mod = files
        .iter()
        .find(|(f, _)| f == "src/engine/mod.rs")
        .map(|(_, t)| t.as_str())
        .unwrap_or("");
    let engine_api = reexports(engine_mod);
    let engine_api: Vec<&str> = engine_api.iter().map(String::as_str).collect();
    for (f, text) in files {
        let paths = crate_paths(text);
        let unit = unit_of_file(f);
        let mut no = |cond: bool, what: &str, p: &str| {
            if cond {
                bad.push(format!("{f} imports crate::{p}: {what}"));
            }
        };
        for p in &paths {
            let top = p.split("::").next().unwrap_or("");
            let second = p.split("::").nth(1).unwrap_or("");
            let in_cli = f.starts_with("src/cli/") || f == "src/main.rs" || f == "src/lib.rs";
            no(
                !in_cli && top == "cli",
                "nothing below the CLI imports it",
                p,
            );
            no(
                !in_cli && unit != "script" && top == "script",
                "only the CLI uses the script host (bindings use crate::bridge)",
                p,
            );
            match unit.as_str() {
                "store" => no(
                    ["bridge", "modules", "engine", "process"].contains(&top),
                    "the store sits below the modules, the engine and the bridge",
                    p,
                ),
                "process" => no(
                    ["bridge", "modules", "engine", "store"].contains(&top),
                    "the process module sits just above the runtime services",
                    p,
                ),
                "services" if f != "src/lib.rs" && f != "src/main.rs" => no(
                    ["bridge", "modules", "engine", "store", "process"].contains(&top),
                    "runtime services sit at the bottom",
                    p,
                ),
                "bridge" => no(
                    ["modules", "engine"].contains(&top),
                    "the bridge sits below the bindings and the script host",
                    p,
                ),
                "engine" => {
                    no(top == "bridge", "the engine sits below the bindings", p);
                    no(
                        top == "modules" && DRIVERS.contains(&second),
                        "the driver modules (jobs, sweep, track, azure, cron) sit above the engine",
                        p,
                    );
                    no(
                        p.split("::").nth(2) == Some("rhai"),
                        "the engine uses modules' typed APIs, not their bindings",
                        p,
                    );
                }
                _ => {}
            }
            if f.starts_with("src/modules/") {
                let binding = f.ends_with("/rhai.rs");
                no(
                    !binding && top == "bridge",
                    "a module's typed API does not use the binding bridge",
                    p,
                );
                no(
                    top == "engine" && !second.is_empty() && !engine_api.contains(&second),
                    "modules use the engine's re-exported API, not its internals",
                    p,
                );
                let m = unit.strip_prefix("modules/").unwrap_or("");
                no(
                    !DRIVERS.contains(&m) && top == "engine",
                    "only the driver modules sit above the engine",
                    p,
                );
            }
        }
        if f.starts_with("src/modules/")
            && !f.ends_with("/rhai.rs")
            && f != "src/modules/mod.rs"
            && uses_rhai(text)
        {
            bad.push(format!(
                "{f} uses rhai: a module's typed API never does (only its rhai.rs)"
            ));
        }
    }
    bad
}

#[test]
fn layers_only_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| (rel(p), std::fs::read_to_string(p).unwrap()))
        .collect();
    assert!(files.len() > 50, "found only {} files", files.len());
    let bad = violations(&files);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn the_rules_catch_what_they_name() {
    let cases: &[(&str, &str)] = &[
        ("src/modules/gpu/rhai.rs", "use crate::cli::Failure;"),
        ("src/store/runs.rs", "let x = crate::modules::jobs::get(1);"),
        (
            "src/engine/job_host.rs",
            "crate::script::engine::build(Default::default());",
        ),
        (
            "src/engine/job_host.rs",
            "crate::modules::jobs::submit(&s);",
        ),
        (
            "src/modules/jobs/mod.rs",
            "use crate::engine::supervisor::run;",
        ),
        (
            "src/modules/jobs/rhai.rs",
            "crate::script::engine::build(Default::default());",
        ),
        ("src/modules/yaml/mod.rs", "use rhai::Dynamic;"),
        ("src/modules/yaml/mod.rs", "crate::bridge::decode(x);"),
        ("src/modules/gpu/mod.rs", "crate::engine::job_host()?"),
        ("src/runtime.rs", "crate::store::with(p, f)"),
        ("src/process/spawn.rs", "crate::modules::sh::run(c)"),
        ("src/bridge/mod.rs", "crate::script::diag::from_eval(e)"),
    ];
    let engine = (
        "src/engine/mod.rs".to_string(),
        "pub use host::{get as job_host, wait_for_end};".to_string(),
    );
    assert_eq!(reexports(&engine.1), ["job_host", "wait_for_end"]);
    for (f, line) in cases {
        let v = violations(&[(f.to_string(), line.to_string()), engine.clone()]);
        assert_eq!(v.len(), 1, "{f}: `{line}` should break one rule: {v:?}");
    }
    // Two folders that import each other, each line allowed on its own.
    let pair = [
        (
            "src/modules/sweep/run.rs".to_string(),
            "crate::modules::track::log(x)".to_string(),
        ),
        (
            "src/modules/track/mod.rs".to_string(),
            "crate::modules::sweep::get(1)".to_string(),
        ),
        engine.clone(),
    ];
    assert_eq!(
        violations(&pair),
        ["modules/sweep and modules/track import each other"]
    );
    // Comments do not count; the allowed paths pass.
    let fine: &[(&str, &str)] = &[
        ("src/store/runs.rs", "// see crate::modules::jobs"),
        ("src/modules/jobs/mod.rs", "crate::engine::job_host()?"),
        ("src/modules/jobs/rhai.rs", "use crate::bridge::decode;"),
        (
            "src/engine/job_host.rs",
            "crate::modules::gpu::Ledger::open()",
        ),
        ("src/modules/sh/mod.rs", "crate::process::spawn(&p, &io)"),
        ("src/cli/jobs.rs", "use crate::cli::error::Failure;"),
    ];
    for (f, line) in fine {
        assert!(
            violations(&[(f.to_string(), line.to_string()), engine.clone()]).is_empty(),
            "{f}: {line}"
        );
    }
}
