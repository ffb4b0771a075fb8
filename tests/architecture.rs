//! The layers of src/, in code: each file may import (`crate::…`) only from the layers below
//! it. Top-down: cli → script (the host) → modules → engine → store → runtime services.
//!
//! | folder | may not import |
//! | --- | --- |
//! | everything but `src/cli/`, `main.rs`, `lib.rs` | `crate::cli` |
//! | `src/store/` | `cli`, `script`, `modules`, `engine` |
//! | `src/engine/` | `cli`, `script`, `modules::jobs`, any `modules::*::rhai` |
//! | `src/modules/*/` | `cli`; `script` except `bridge` and `decode` (bindings only) and `run` (pipelines); engine internals (`engine::host/spawn/supervisor/…`, only its re-exports) |
//! | a module's typed API (not `rhai.rs`) | `rhai`, `crate::script` |
//! | runtime services (`host`, `state`, `redact`, `clock`, `command`, `error`, `util`) | `cli`, `script`, `modules`, `engine`, `store` |
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

/// The layer rules, as a list of violations (empty when the code keeps to them).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
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
        let mut no = |cond: bool, what: &str, p: &str| {
            if cond {
                bad.push(format!("{f} imports crate::{p}: {what}"));
            }
        };
        for p in &paths {
            let top = p.split("::").next().unwrap_or("");
            let in_cli = f.starts_with("src/cli/") || f == "src/main.rs" || f == "src/lib.rs";
            no(
                !in_cli && top == "cli",
                "nothing below the CLI imports it",
                p,
            );
            if f.starts_with("src/store/") {
                no(
                    ["cli", "script", "modules", "engine"].contains(&top),
                    "the store sits below the modules and the engine",
                    p,
                );
            }
            if f.starts_with("src/engine/") {
                no(
                    ["cli", "script"].contains(&top),
                    "the engine sits below the script host",
                    p,
                );
                no(
                    p.starts_with("modules::jobs"),
                    "the jobs module sits above the engine",
                    p,
                );
                no(
                    p.split("::").nth(2) == Some("rhai"),
                    "the engine uses modules' typed APIs, not their bindings",
                    p,
                );
            }
            if f.starts_with("src/modules/") {
                let binding = f.ends_with("/rhai.rs");
                let allowed_script = if binding {
                    p.starts_with("script::bridge") || p.starts_with("script::decode")
                } else {
                    p.starts_with("script::run")
                };
                no(
                    top == "script" && !allowed_script,
                    if binding {
                        "a binding reaches the host through script::bridge and script::decode only"
                    } else {
                        "a module's typed API does not use the script host"
                    },
                    p,
                );
                let second = p.split("::").nth(1).unwrap_or("");
                no(
                    top == "engine" && !second.is_empty() && !engine_api.contains(&second),
                    "modules use the engine's re-exported API, not its internals",
                    p,
                );
            }
            let service = [
                "src/host.rs",
                "src/state.rs",
                "src/redact.rs",
                "src/clock.rs",
                "src/command.rs",
                "src/error.rs",
                "src/util.rs",
            ];
            if service.contains(&f.as_str()) {
                no(
                    ["cli", "script", "modules", "engine", "store"].contains(&top),
                    "runtime services sit at the bottom",
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
            "src/engine/host.rs",
            "crate::script::engine::build(Default::default());",
        ),
        ("src/engine/host.rs", "crate::modules::jobs::submit(&s);"),
        (
            "src/modules/jobs/mod.rs",
            "use crate::engine::spawn::spawn;",
        ),
        (
            "src/modules/jobs/rhai.rs",
            "crate::script::engine::build(Default::default());",
        ),
        ("src/modules/yaml/mod.rs", "use rhai::Dynamic;"),
        (
            "src/modules/yaml/mod.rs",
            "crate::script::bridge::decode(x);",
        ),
        ("src/host.rs", "crate::store::with(p, f)"),
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
    // Comments do not count; the allowed paths pass.
    let fine: &[(&str, &str)] = &[
        ("src/store/runs.rs", "// see crate::modules::jobs"),
        ("src/modules/jobs/mod.rs", "crate::engine::job_host()?"),
        (
            "src/modules/jobs/rhai.rs",
            "use crate::script::bridge::decode;",
        ),
        ("src/cli/jobs.rs", "use crate::cli::error::Failure;"),
    ];
    for (f, line) in fine {
        assert!(
            violations(&[(f.to_string(), line.to_string()), engine.clone()]).is_empty(),
            "{f}: {line}"
        );
    }
}
