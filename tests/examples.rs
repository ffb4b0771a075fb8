//! Executes every ```rhai example in the documentation of every native and std/ function,
//! and every script under scripts/.
use crate::util::TestCmd;

/// Runs the examples of every module for which `keep(module name)` is true, with `env` set;
/// returns how many.
pub fn run_examples(keep: impl Fn(&str) -> bool, env: &[(&str, &str)]) -> usize {
    let o = TestCmd::new().args(["doc", "--format", "json"]).run();
    o.success();
    let mods: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let mut ran = 0;
    let mut failures = Vec::new();
    for m in mods.as_array().unwrap() {
        if !keep(m["name"].as_str().unwrap()) {
            continue;
        }
        for f in m["functions"].as_array().unwrap() {
            let sig = f["signature"].as_str().unwrap();
            let examples = f["examples"].as_array().unwrap();
            assert!(!examples.is_empty(), "{sig} has no example");
            for ex in examples {
                // GPU examples run against two fake 24 GiB devices.
                let mut t = TestCmd::new().env("LABHOST_FAKE_GPUS", "2x24GiB");
                for (k, v) in env {
                    t = t.env(k, v);
                }
                let o = t.script(ex.as_str().unwrap()).run();
                ran += 1;
                if o.code != 0 {
                    failures.push(format!("{sig}:\n{}\n{}", ex.as_str().unwrap(), o.stderr));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing examples:\n{}",
        failures.join("\n\n")
    );
    ran
}

#[test]
fn every_documented_example_runs() {
    // The docker module's examples need an engine (tests/docker.rs runs them), the azure
    // module's a workspace (tests/azure.rs runs them against the fake ARM + Azurite + mlflow).
    let ran = run_examples(|m| m != "docker" && m != "azure", &[]);
    assert!(ran >= 40, "only {ran} examples ran");
}

#[test]
fn every_script_under_scripts_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "rhai") {
            continue;
        }
        n += 1;
        // Each runs from an empty folder, as a user's fresh checkout would: once on this
        // machine as it is (usually no GPU), once with two fake GPUs.
        TestCmd::new()
            .args(["run", path.to_str().unwrap()])
            .run()
            .success();
        TestCmd::new()
            .env("LABHOST_FAKE_GPUS", "2x24GiB")
            .args(["run", path.to_str().unwrap()])
            .run()
            .success();
    }
    assert!(n >= 1, "no scripts under {}", dir.display());
}

/// Map keys that Rhai reserves (`private`, `fn`, `default`, …) cannot be written bare, so no
/// documented option or spec key may be one.
#[test]
fn no_documented_map_key_is_a_rhai_reserved_word() {
    let o = TestCmd::new().args(["doc", "--format", "json"]).run();
    o.success();
    let reserved = labhost::script::diag::RESERVED_WORDS;
    let mut bad = Vec::new();
    let mods: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    for m in mods.as_array().unwrap() {
        for f in m["functions"].as_array().unwrap() {
            let mut text = f["doc"].as_str().unwrap_or("").to_string();
            for ex in f["examples"].as_array().unwrap() {
                text.push_str(ex.as_str().unwrap_or(""));
            }
            for w in reserved {
                let pats = [
                    format!("#{{{w}:"),
                    format!(", {w}:"),
                    format!("#{{{w},"),
                    format!(", {w},"),
                    format!(", {w}}}"),
                    format!("opts.{w}"),
                ];
                for pat in pats {
                    // The whole word: `opts.private_file` is fine.
                    let whole = text.match_indices(&pat).any(|(i, _)| {
                        !text[i + pat.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if whole {
                        bad.push(format!("{}: {pat}", f["signature"]));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "documented keys that Rhai reserves: {bad:?}"
    );
}
