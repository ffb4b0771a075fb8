//! Sweeps on the local engine: Azure ML's example YAMLs unchanged, early termination seen by
//! the user, kill -9 of the host during a 200-trial sweep then resume, and bad sweep files.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::util::TestCmd;

fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/azureml")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A stand-in for the examples' training scripts: reports `metric` = A·C (+ step·0.01) over
/// three steps through LABHOST_METRICS, and prints its arguments.
const HELLO_PY: &str = r#"
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--A", type=float); p.add_argument("--B"); p.add_argument("--C", type=float)
a = p.parse_args()
with open(os.environ["LABHOST_METRICS"], "a") as f:
    for step in range(3):
        f.write(json.dumps({"name": "random_metric", "value": a.A * a.C + step * 0.01, "step": step}) + "\n")
print("args", a.A, a.B, a.C)
"#;

/// Whether the state folder under `dir` holds no run folder (nothing was recorded).
fn no_runs_recorded(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join(".labhost/runs")).map_or(true, |rd| rd.count() == 0)
}

/// Fails if a live process's command line holds `marker` (`ps`, not what the job wrote).
fn assert_no_process(marker: &str) {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let left: Vec<&str> = ps
        .lines()
        .filter(|l| l.contains(marker) && !l.contains("ps -eo"))
        .collect();
    assert!(left.is_empty(), "left running: {left:#?}");
}

/// The run folder of run `id` (as `labhost jobs --json` gives it).
fn run_dir_of(t: &TestCmd, id: i64) -> PathBuf {
    let (_, j, _) = t.spawn(["jobs", "--json", "--limit", "1000"]).finish();
    let jobs: serde_json::Value = serde_json::from_str(&j).unwrap();
    let run = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("no run {id}: {j}"))
        .clone();
    PathBuf::from(run["run_dir"].as_str().unwrap())
}

/// The parameters of every trial of a `labhost sweep --json` result, in trial order.
fn trial_params(r: &serde_json::Value) -> Vec<serde_json::Value> {
    r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["params"].clone())
        .collect()
}

#[test]
fn every_azureml_example_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/azureml");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yml") {
            continue;
        }
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        // With the code folder they name (a dry run checks it as the run does).
        // And the components a pipeline names (a dry run builds every step).
        let component = "type: command\ninputs:\n  c_value: {type: number, default: 1}\n  kernel: {type: string, default: rbf}\n  coef0: {type: number, default: 0}\noutputs:\n  model_output: {type: mlflow_model}\n  test_data: {type: uri_folder}\n  predict_result: {type: uri_folder}\ncommand: echo ${{inputs.c_value}}\n";
        let t = TestCmd::new()
            .file(&name, &text)
            .file("src/.keep", "")
            .file("train.yml", component)
            .file("predict.yml", component)
            // A workspace to read `azureml:` inputs through (a dry run touches no network).
            .file(
                "settings.yml",
                "variables:\n  subscription_id: s\n  resource_group: r\n  workspace_name: w\n",
            )
            .args(["sweep", &name, "--dry-run"]);
        let o = t.run();
        if text.contains("type: pipeline") {
            // Pipeline jobs: their steps in dependency order.
            o.success();
            assert!(
                o.stdout
                    .contains("2 step(s), in this order; independent steps run at the same time\n"),
                "{name}: {}",
                o.stdout
            );
        } else {
            o.success();
            let planned: u64 = o
                .stdout
                .lines()
                .last()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let want = if text.contains("type: sweep") {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("max_total_trials: "))
                    .unwrap()
                    .parse()
                    .unwrap()
            } else {
                1
            };
            assert_eq!(planned, want, "{name}:\n{}", o.stdout);
            assert_eq!(o.stdout.lines().count() as u64, planned + 1, "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} examples");
}

#[test]
fn the_hello_sweep_runs_locally_unchanged_and_a_second_run_continues_it() {
    let yml = example("sweep-hello.yml").replace("python hello-sweep.py", "python3 hello-sweep.py");
    let t = TestCmd::new()
        .file("sweep-hello.yml", &yml)
        .file("src/hello-sweep.py", HELLO_PY);
    let o = t
        .spawn(["sweep", "sweep-hello.yml", "--seed", "5", "--json"])
        .finish();
    assert_eq!(o.0, Some(0), "{}", o.2);
    let r: serde_json::Value = serde_json::from_str(&o.1).unwrap();
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert_eq!(r["seed"], 5);
    // Each trial got its own B and C, ran with --A 0.5, and reported three values.
    let mut best: Option<(f64, i64)> = None;
    for tr in trials {
        assert_eq!(tr["status"], "completed", "{tr}");
        assert_eq!(tr["reports"], 3);
        let c = tr["params"]["C"].as_f64().unwrap();
        assert!((0.1..=1.0).contains(&c));
        assert!(["hello", "world", "hello_world"].contains(&tr["params"]["B"].as_str().unwrap()));
        // Minimise: the best report is the first, 0.5·C.
        let b = tr["best"].as_f64().unwrap();
        assert!((b - 0.5 * c).abs() < 1e-9, "{tr}");
        if best.is_none_or(|(v, _)| b < v) {
            best = Some((b, tr["run_id"].as_i64().unwrap()));
        }
        let id = tr["run_id"].as_i64().unwrap();
        let (_, log, _) = t.spawn(["logs", &id.to_string()]).finish();
        assert!(
            log.starts_with(&format!(
                "args 0.5 {} ",
                tr["params"]["B"].as_str().unwrap()
            )),
            "{log}"
        );
    }
    assert_eq!(r["best_child_run_id"].as_i64(), best.map(|b| b.1));
    // The trials are children of the sweep run, tagged as Azure tags them.
    let sweep_id = r["sweep_id"].as_i64().unwrap();
    let (_, kids, _) = t
        .spawn(["jobs", "--parent", &sweep_id.to_string(), "--json"])
        .finish();
    let kids: Vec<serde_json::Value> = serde_json::from_str(&kids).unwrap();
    assert_eq!(kids.len(), 4);
    assert!(kids.iter().all(|k| k["kind"] == "trial"));
    // The code folder was snapshotted once into the sweep's run folder.
    let snap = PathBuf::from(r["run_dir"].as_str().unwrap()).join("snapshot/hello-sweep.py");
    assert!(snap.exists(), "{}", snap.display());
    // A second run is the same sweep: nothing runs again, same result.
    let o2 = t
        .spawn(["sweep", "sweep-hello.yml", "--seed", "5", "--json"])
        .finish();
    let r2: serde_json::Value = serde_json::from_str(&o2.1).unwrap();
    assert_eq!(r2["sweep_id"], r["sweep_id"]);
    assert_eq!(r2["trials"], r["trials"]);
    // --rerun starts a new sweep with the same trials (same seed).
    let o3 = t
        .spawn([
            "sweep",
            "sweep-hello.yml",
            "--seed",
            "5",
            "--json",
            "--rerun",
        ])
        .finish();
    let r3: serde_json::Value = serde_json::from_str(&o3.1).unwrap();
    assert_ne!(r3["sweep_id"], r["sweep_id"]);
    assert_eq!(trial_params(&r3), trial_params(&r));
}

#[test]
fn the_iris_sweep_runs_with_a_local_input_set_on_the_command_line() {
    let yml = example("sweep-sklearn-iris.yml").replace("python main.py", "python3 main.py");
    let main = r#"
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--iris-csv"); p.add_argument("--C", type=float); p.add_argument("--kernel"); p.add_argument("--coef0", type=float)
a = p.parse_args()
rows = open(a.iris_csv).read().split()
f1 = 1.0 - abs(a.C - 0.7) - (0.1 if a.kernel == "poly" else 0.0) + 0.001 * len(rows)
with open(os.environ["LABHOST_METRICS"], "a") as f:
    f.write(json.dumps({"name": "training_f1_score", "value": f1, "step": 0}) + "\n")
os.makedirs("outputs", exist_ok=True)
"#;
    let t = TestCmd::new()
        .file("iris.yml", &yml)
        .file("src/main.py", main)
        .file(
            "data/iris.csv",
            "5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n",
        );
    // The remote input is passed as written (with a note); --set points it at a local file.
    let o = t.spawn(["sweep", "iris.yml", "--dry-run"]).finish();
    assert_eq!(o.0, Some(0), "{}", o.2);
    assert!(o.2.contains("input `iris_csv` is remote"), "{}", o.2);
    assert!(
        o.1.contains(
            "--iris-csv wasbs://tables@labhostsamples.blob.core.windows.net/flowers/iris.csv"
        ),
        "{}",
        o.1
    );
    let o = t
        .spawn([
            "sweep",
            "iris.yml",
            "--set",
            "inputs.iris_csv={type: uri_file, path: data/iris.csv}",
            "--set",
            "limits.max_total_trials=6",
            "--seed",
            "1",
            "--json",
        ])
        .finish();
    assert_eq!(o.0, Some(0), "{}", o.2);
    let r: serde_json::Value = serde_json::from_str(&o.1).unwrap();
    assert_eq!(r["trials"].as_array().unwrap().len(), 6);
    assert_eq!(r["goal"], "minimize");
    for tr in r["trials"].as_array().unwrap() {
        assert_eq!(tr["status"], "completed", "{tr}");
        assert_eq!(tr["reports"], 1);
    }
}

/// Four trials at once report x (0.9, 0.3, 0.85, 0.2) ten times, 0.1 s apart, under a bandit
/// policy (slack 0.1 after 2 intervals): the two far below the best are cancelled, with the
/// policy's reason shown by the sweep, its table and `labhost jobs`.
#[test]
fn bandit_early_termination_cancels_the_bad_trials_and_says_why() {
    let yml = r#"
type: sweep
trial:
  command: >-
    for i in 1 2 3 4 5 6 7 8 9 10; do
    echo "{\"name\": \"acc\", \"value\": ${{search_space.x}}, \"step\": $i}" >> $LABHOST_METRICS; sleep 0.1; done
sampling_algorithm: grid
search_space:
  x: {type: choice, values: [0.9, 0.3, 0.85, 0.2]}
objective: {goal: maximize, primary_metric: acc}
limits: {max_concurrent_trials: 4}
early_termination: {type: bandit, slack_factor: 0.1, evaluation_interval: 1, delay_evaluation: 2}
"#;
    let t = TestCmd::new().file("s.yml", yml);
    let o = t.spawn(["sweep", "s.yml"]).finish();
    assert_eq!(o.0, Some(0), "{}\n{}", o.1, o.2);
    let rows: BTreeMap<String, String> =
        o.1.lines()
            .skip(1)
            .take(4)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2].to_string(), l.to_string())
            })
            .collect();
    for x in ["0.3", "0.2"] {
        assert!(
            rows[x].contains("cancelled") && rows[x].contains("cancelled by policy: bandit"),
            "{x}: {}",
            o.1
        );
    }
    for x in ["0.9", "0.85"] {
        assert!(rows[x].contains("completed"), "{x}: {}", o.1);
    }
    assert!(
        // Against 0.9's line (0.8182), or 0.85's (0.7727) if that trial got there first.
        o.2.contains("trial 1 cancelled by policy: bandit, 0.3 < 0."),
        "{}",
        o.2
    );
    assert!(o.1.contains("best: trial 0"), "{}", o.1);
    let (_, jobs, _) = t.spawn(["jobs"]).finish();
    assert!(jobs.contains("cancelled by policy: bandit"), "{jobs}");
}

/// 200 short trials, 4 at once; each attempt logs its trial and parameters, notes an overlap
/// if another attempt of its trial is alive, and logs done at its end.
const KILL_SWEEP: &str = r#"
type: sweep
trial:
  command: >-
    echo "start ${{search_space.t}} ${{search_space.x}} ${{search_space.k}}" >> ../../ledger.txt;
    p=$(cat ../../running/${{search_space.t}} 2>/dev/null);
    if [ -n "$p" ] && [ -r /proc/$p/stat ] && ! grep -q ") Z " /proc/$p/stat; then echo "overlap ${{search_space.t}}" >> ../../ledger.txt; fi;
    echo $$ > ../../running/${{search_space.t}};
    sleep 0.$(( ${{search_space.t}} % 4 ));
    echo "{\"name\": \"loss\", \"value\": $(awk "BEGIN{print (${{search_space.x}} - 0.3)^2 + ${{search_space.k}}/10}"), \"step\": 0}" >> $LABHOST_METRICS;
    echo "done ${{search_space.t}} ${{search_space.x}} ${{search_space.k}}" >> ../../ledger.txt
  code: work/a
  snapshot: false
sampling_algorithm: {type: random, seed: 42}
search_space:
  t: {type: randint, upper: 1000000}
  x: {type: uniform, min_value: 0, max_value: 1}
  k: {type: choice, values: [0, 1, 2]}
objective: {goal: minimize, primary_metric: loss}
limits: {max_total_trials: 200, max_concurrent_trials: 4}
"#;

#[test]
fn kill_9_the_host_twenty_times_during_a_sweep_and_resume_runs_every_trial_once() {
    let t = TestCmd::new()
        .file("s.yml", KILL_SWEEP)
        .file("work/a/.keep", "")
        .file("running/.keep", "");
    t.kill_9_at_random(&["-q", "sweep", "s.yml"], 20, 100, 400);
    let (code, out, err) = t.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 200);
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    assert!(
        !ledger.contains("overlap"),
        "two attempts of one trial were alive at once:\n{ledger}"
    );
    // Every attempt of a trial ran with the journaled parameters; each trial's last entry is
    // its completion (nothing started again after it completed); starts ≤ attempts.
    let mut params: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut starts: HashMap<&str, i64> = HashMap::new();
    let mut last: HashMap<&str, &str> = HashMap::new();
    for l in ledger.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (what, tr, x, k) = (f[0], f[1], f[2], f[3]);
        if let Some(p) = params.insert(tr, (x, k)) {
            assert_eq!(p, (x, k), "trial {tr} ran with other parameters");
        }
        if what == "start" {
            *starts.entry(tr).or_default() += 1;
        }
        last.insert(tr, what);
    }
    let (_, jobs, _) = t
        .spawn([
            "jobs",
            "--json",
            "--limit",
            "1000",
            "--parent",
            &r["sweep_id"].to_string(),
        ])
        .finish();
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
    let attempts: HashMap<i64, i64> = jobs
        .iter()
        .map(|j| (j["id"].as_i64().unwrap(), j["attempt"].as_i64().unwrap()))
        .collect();
    assert_eq!(jobs.len(), 200, "one run per trial");
    for tr in trials {
        assert_eq!(tr["status"], "completed", "{tr}");
        let tname = tr["params"]["t"].to_string();
        let x = tr["params"]["x"].to_string();
        assert_eq!(
            params.get(tname.as_str()).map(|p| p.0),
            Some(x.as_str()),
            "trial {tname}: journal and ledger differ"
        );
        assert_eq!(
            last.get(tname.as_str()).copied(),
            Some("done"),
            "trial {tname} was started after it completed"
        );
        let n = starts[tname.as_str()];
        assert!(
            n >= 1 && n <= attempts[&tr["run_id"].as_i64().unwrap()],
            "{tname}: {n} starts"
        );
    }
    // The same sweep uninterrupted, elsewhere: the same trials and the same best.
    let u = TestCmd::new()
        .file("s.yml", KILL_SWEEP)
        .file("work/a/.keep", "")
        .file("running/.keep", "");
    let (code, out2, err2) = u.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err2}");
    let r2: serde_json::Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(trial_params(&r), trial_params(&r2));
    assert_eq!(r["best"]["trial"], r2["best"]["trial"]);
    assert_eq!(r["best"]["params"], r2["best"]["params"]);
}

/// Malformed sweep files: each an error naming the file, line and column and what is wrong;
/// nothing runs.
#[test]
fn bad_sweep_files_are_errors_with_locations() {
    let good = "type: sweep\ntrial:\n  command: echo ${{search_space.x}}\nsearch_space:\n  x: {type: uniform, min_value: 0, max_value: 1}\nobjective: {goal: maximize, primary_metric: acc}\n";
    let cases: &[(&str, &str, &str)] = &[
        // (file text, location, message fragment)
        ("type: sweep\ntrail:\n  command: x\n", ":2:1", "s.yml:2:1: unknown key `trail` (did you mean `trial`?)\n 2 | trail:\n   | ^^^^^"),
        ("type: sweeep\ntrial: {command: x}\n", ":1:", "must be sweep or command"),
        (&good.replace("uniform,", "unifrom,"), ":5:7", "did you mean \"uniform\""),
        // A mistyped type points at its own line, not the parameter's.
        (&good.replace("  x: {type: uniform, min_value: 0, max_value: 1}", "  x:\n    type: choise\n    values: [1, 2]"), ":6:5", "did you mean \"choice\""),
        (&good.replace("max_value: 1", "max_valeu: 1"), ":5:", "max_valeu"),
        (&good.replace("min_value: 0, max_value: 1", "min_value: 2, max_value: 1"), ":5:3", "must be less than max_value"),
        (&good.replace("{type: uniform, min_value: 0, max_value: 1}", "{type: choice, values: []}"), ":5:3", "at least one value"),
        (&good.replace("{type: uniform, min_value: 0, max_value: 1}", "{type: randint, upper: 2.5}"), ":5:3", "whole number"),
        (&good.replace("{type: uniform, min_value: 0, max_value: 1}", "{type: normal, mu: 0, sigma: -1}"), ":5:3", "sigma must be more than 0"),
        (&good.replace("{type: uniform, min_value: 0, max_value: 1}", "{type: quniform, min_value: 0, max_value: 1}"), ":5:3", "needs `q`"),
        (&good.replace("{type: uniform, min_value: 0, max_value: 1}", "{min_value: 0, max_value: 1}"), ":5:3", "needs `type`"),
        (&good.replace("search_space.x", "search_space.y"), ":3:", "unknown binding ${{search_space.y}}: `y` is not in search_space"),
        (&good.replace("search_space.x", "inputs.data"), ":3:", "`data` is not an input"),
        (&good.replace("goal: maximize", "goal: maximise"), ":6:", "minimize or maximize"),
        (&format!("{good}sampling_algorithm: grid\n"), ":5:3", "grid sampling needs choice expressions only"),
        (&format!("{good}sampling_algorithm: bayesain\n"), ":7:", "did you mean \"bayesian\""),
        (&format!("{good}sampling_algorithm: {{type: random, rule: halton}}\n"), ":7:", "random or sobol"),
        (&(good.replace("{type: uniform, min_value: 0, max_value: 1}", "{type: loguniform, min_value: 0, max_value: 1}") + "sampling_algorithm: bayesian\n"), ":5:3", "bayesian sampling supports choice, uniform and quniform only"),
        (&format!("{good}sampling_algorithm: bayesian\nearly_termination: {{type: median_stopping}}\n"), ":8:", "does not support early termination"),
        (&format!("{good}early_termination: {{type: bandit, slack_factor: 0.1, slack_amount: 0.2}}\n"), ":7:", "not both"),
        (&format!("{good}early_termination: {{type: bandit}}\n"), ":7:", "needs slack_factor or slack_amount"),
        (&format!("{good}early_termination: {{type: truncation_selection, truncation_percentage: 0}}\n"), ":7:", "1 to 99"),
        (&format!("{good}early_termination: {{type: median_stoping, delay_evaluation: 5}}\n"), ":7:", "did you mean \"median_stopping\""),
        (&format!("{good}limits: {{max_total_trials: 5000}}\n"), ":7:", "1 to 1000"),
        (&format!("{good}limits: {{max_concurrent_trials: 0}}\n"), ":7:", "at least 1"),
        (&format!("{good}limits: {{timeout: -3}}\n"), ":7:19", "must be a duration"),
        (&good.replace("objective: {goal: maximize, primary_metric: acc}\n", ""), "s.yml", "needs `objective"),
        (&good.replace("trial:\n  command: echo ${{search_space.x}}\n", ""), "s.yml", "needs `trial`"),
        (&good.replace("  x: {", "  2x: {"), ":5:3", "not a valid parameter name"),
        (&good.replace("trial:\n", "trial: ./missing.yml\nx:\n"), ":", "unknown key `x`"),
        ("type: sweep\ntrial: ./missing.yml\nsearch_space: {x: {type: choice, values: [1]}}\nobjective: {goal: minimize, primary_metric: l}\n", ":2:1", "missing.yml"),
        ("type: sweep\ntrial: {command: x}\nsearch_space: {x: {type: choice, values: [1]}\nobjective: {}\n", "s.yml:", ""),
        ("type: pipeline\njobs:\n  a:\n    command: cat ${{inputs.i}}\n    inputs:\n      i: ${{parent.jobs.b.outputs.o}}\n", ":6:", "binds the outputs of `b`, which is not a step"),
        ("type: pipeline\njobs:\n  a:\n    command: cat ${{inputs.i}}\n    inputs: {i: '${{parent.jobs.b.outputs.o}}'}\n  b:\n    command: cat ${{inputs.i}}\n    inputs: {i: '${{parent.jobs.a.outputs.o}}'}\n", ":2:1", "bind each other's outputs in a cycle"),
    ];
    assert!(cases.len() >= 20);
    for (text, at, msg) in cases {
        let o = TestCmd::new()
            .file("s.yml", text)
            .args(["sweep", "s.yml", "--dry-run"])
            .run();
        assert_ne!(o.code, 0, "accepted:\n{text}");
        assert!(
            o.stdout.is_empty(),
            "printed a plan for:\n{text}\n{}",
            o.stdout
        );
        let first = o.stderr.lines().find(|l| l.contains("s.yml")).unwrap_or("");
        assert!(
            first.contains(&format!("s.yml{at}")) || (at.starts_with('s') && first.contains(at)),
            "want s.yml{at} for:\n{text}\ngot:\n{}",
            o.stderr
        );
        assert!(
            o.stderr.contains(msg),
            "want {msg:?} for:\n{text}\ngot:\n{}",
            o.stderr
        );
        assert!(no_runs_recorded(&o.dir), "a run was recorded for:\n{text}");
    }
}

/// `--seed` seeds a sweep whatever shape its sampling_algorithm has (a string, or absent:
/// random); a command job has nothing to seed and says so instead of ignoring it.
#[test]
fn seed_goes_with_sweeps_and_is_refused_on_a_command_job() {
    let sweep = "type: sweep\ntrial:\n  command: echo ${{search_space.x}}\nsearch_space:\n  x: {type: uniform, min_value: 0, max_value: 1}\nobjective: {goal: maximize, primary_metric: acc}\nlimits: {max_total_trials: 3}\n";
    let plan = |text: &str, seed: &str| {
        let o = TestCmd::new()
            .file("s.yml", text)
            .args(["sweep", "s.yml", "--dry-run", "--seed", seed])
            .run();
        assert_eq!(o.code, 0, "{}", o.stderr);
        o.stdout
    };
    for text in [
        sweep.to_string(),
        format!("{sweep}sampling_algorithm: random\n"),
        format!("{sweep}sampling_algorithm: {{type: random}}\n"),
    ] {
        assert_eq!(plan(&text, "7"), plan(&text, "7"), "{text}");
        assert_ne!(plan(&text, "7"), plan(&text, "8"), "{text}");
        assert!(!plan(&text, "7").contains("unseeded"), "{text}");
    }
    let o = TestCmd::new()
        .file("c.yml", "type: command\ncommand: echo hi\n")
        .args(["sweep", "c.yml", "--seed", "3"])
        .run();
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("--seed goes with a sweep job"),
        "{}",
        o.stderr
    );
    assert!(no_runs_recorded(&o.dir));
}

#[test]
fn trial_timeout_and_a_failing_trial_are_recorded_not_retried() {
    let yml = "type: sweep\ntrial:\n  command: 'if [ ${{search_space.x}} = 1 ]; then echo \"x=1 is not allowed\" >&2; exit 3; elif [ ${{search_space.x}} = 2 ]; then sleep 5; fi'\nsampling_algorithm: grid\nsearch_space:\n  x: {type: choice, values: [0, 1, 2]}\nobjective: {goal: maximize, primary_metric: acc}\nlimits: {trial_timeout: 0.5}\n";
    let t = TestCmd::new().file("s.yml", yml);
    let o = t.spawn(["sweep", "s.yml", "--json"]).finish();
    let r: serde_json::Value = serde_json::from_str(&o.1).unwrap();
    let st: Vec<&str> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["completed", "failed", "timed_out"], "{}", o.2);
    // The failed trial says why in its own words (the table's note is the same text).
    assert_eq!(
        r["trials"][1]["reason"].as_str(),
        Some("exit 3: x=1 is not allowed"),
        "{}",
        o.1
    );
    // Nothing reported the metric: no best trial.
    assert!(r["best"].is_null());
}

/// `labhost resume` continues a sweep whose host was killed: the trials left are drawn and
/// run, and the sweep run ends completed; running the file again then runs nothing.
#[test]
fn labhost_resume_continues_a_sweep_whose_host_died() {
    let yml = "type: sweep\ntrial:\n  command: echo ${{search_space.x}} >> ../ledger.txt; sleep 0.2\n  code: w\n  snapshot: false\nsampling_algorithm: {type: random, seed: 3}\nsearch_space:\n  x: {type: randint, upper: 1000000}\nobjective: {goal: minimize, primary_metric: loss}\nlimits: {max_total_trials: 12, max_concurrent_trials: 2}\n";
    let t = TestCmd::new().file("s.yml", yml).file("w/.keep", "");
    let mut r = t.spawn(["-q", "sweep", "s.yml"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(r.is_running(), "the sweep ended before the kill");
    r.signal(libc::SIGKILL);
    r.finish();
    let (code, _, err) = t.spawn(["resume"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("continuing sweep"), "{err}");
    assert!(err.contains("12 of 12 trials completed"), "{err}");
    let (_, jobs, _) = t.spawn(["jobs", "--json", "--limit", "100"]).finish();
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
    let sweep: Vec<&serde_json::Value> = jobs.iter().filter(|j| j["kind"] == "sweep").collect();
    assert_eq!(sweep.len(), 1);
    assert_eq!(sweep[0]["status"], "completed");
    let before = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["sweep_id"], sweep[0]["id"]);
    assert_eq!(
        std::fs::read_to_string(t.path().join("ledger.txt")).unwrap(),
        before,
        "a trial ran again"
    );
    // Every trial ran exactly once: those running when the host died finished under its
    // job supervisor, and resume waited for them instead of starting them again.
    let mut seen: Vec<&str> = before.lines().collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 12, "{before}");
    assert_eq!(before.lines().count(), 12, "a trial ran twice: {before}");
}

/// `code: .` with the state folder inside the project: the snapshot leaves the state folder
/// (and the snapshot itself) out instead of copying itself into itself; a code folder over
/// LABHOST_SNAPSHOT_MAX_MB stops the sweep before anything is copied, and its record says
/// why instead of staying `running`.
#[test]
fn a_snapshot_never_holds_the_state_folder_and_stops_when_too_large() {
    let yml = "type: sweep\ntrial:\n  code: .\n  command: sh train.sh\nsearch_space:\n  x: {type: choice, values: [1, 2]}\nsampling_algorithm: grid\nobjective: {goal: maximize, primary_metric: acc}\n";
    let o = TestCmd::new()
        .file("s.yml", yml)
        .file(
            "train.sh",
            "ls -a > seen.txt; echo '{\"name\": \"acc\", \"value\": 1}' >> $LABHOST_METRICS\n",
        )
        .args(["sweep", "s.yml", "--json"])
        .run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let dir = std::path::PathBuf::from(r["run_dir"].as_str().unwrap());
    let snap = dir.join("snapshot");
    assert!(snap.join("train.sh").is_file() && snap.join("s.yml").is_file());
    assert!(
        !snap.join(".labhost").exists(),
        "the state folder was copied"
    );
    // Each trial runs in its own copy of the snapshot (its run folder's `wd/`).
    let trial = r["trials"][0]["run_id"].as_i64().unwrap();
    let wd = dir.parent().unwrap().join(trial.to_string()).join("wd");
    let seen = std::fs::read_to_string(wd.join("seen.txt")).unwrap();
    assert!(!seen.lines().any(|l| l == ".labhost"), "{seen}");
    assert!(seen.lines().any(|l| l == "outputs"), "{seen}");
    assert!(
        !snap.join("seen.txt").exists(),
        "a trial wrote into the shared snapshot"
    );
    let big = TestCmd::new()
        .file("s.yml", yml)
        .file("data.bin", vec![7u8; 3 << 20])
        .env("LABHOST_SNAPSHOT_MAX_MB", "2");
    let (code, _, err) = big.spawn(["sweep", "s.yml"]).finish();
    assert_ne!(code, Some(0));
    assert!(
        err.contains("error[sweep.snapshot]") && err.contains("more than the 2 MB"),
        "{err}"
    );
    let (_, jobs, _) = big.spawn(["jobs", "--json"]).finish();
    let js: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
    assert!(js.iter().all(|j| j["status"] != "running"), "{jobs}");
    let copied: u64 = walk_size(&big.path().join(".labhost"));
    assert!(
        copied < 1 << 20,
        "{copied} bytes copied into the state folder"
    );
}

fn walk_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn dry_run_places_trials_on_the_gpus_and_runs_nothing() {
    let yml = "type: sweep\ntrial: {command: 'echo ${{search_space.x}}', num_gpus: 2}\nsampling_algorithm: grid\nsearch_space: {x: {type: choice, values: [1, 2, 3]}}\nobjective: {goal: minimize, primary_metric: l}\n";
    let o = TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "4x24GiB")
        .file("s.yml", yml)
        .args(["sweep", "s.yml", "--dry-run"])
        .run();
    o.success();
    let place: Vec<&str> = o
        .stdout
        .lines()
        .take(3)
        .map(|l| l.trim_start().split("  ").nth(2).unwrap_or(""))
        .collect();
    assert_eq!(place, ["gpu 0,1", "gpu 2,3", "gpu 0,1"], "{}", o.stdout);
    assert!(
        o.stdout.lines().nth(1).unwrap().ends_with("echo 2"),
        "{}",
        o.stdout
    );
    assert!(no_runs_recorded(&o.dir));
}

#[test]
fn azures_pipeline_examples_run_their_steps_in_order_and_hand_outputs_on() {
    // hello → world through an output folder, the file unchanged.
    let t = TestCmd::new().file("p.yml", example("pipeline-hello-io.yml"));
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let world = r["world_job"]["trials"][0]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &world]).finish();
    assert_eq!(log, "world\n");
    assert!(err.contains("environment azureml://registries/azureml/environments/labhost-base/labels/latest is recorded"), "{err}");

    // A sweep step whose trial is a component, then a step reading the best trial's outputs.
    let train = "type: command\nname: train_model\ninputs:\n  data: {type: uri_file}\n  c_value: {type: number, default: 1.0}\n  kernel: {type: string, default: rbf}\n  coef0: {type: number, default: 0}\noutputs:\n  model_output: {type: mlflow_model}\n  test_data: {type: uri_folder}\ncode: ./train-src\ncommand: >-\n  sh train.sh ${{inputs.c_value}} ${{inputs.kernel}} ${{inputs.coef0}} ${{outputs.model_output}} ${{outputs.test_data}}\n";
    let train_sh = "f1=$(awk -v c=\"$1\" -v k0=\"$3\" 'BEGIN { print (c - 0.7)^2 + k0 / 10 }')\necho \"{\\\"name\\\": \\\"training_f1_score\\\", \\\"value\\\": $f1}\" >> \"$LABHOST_METRICS\"\necho \"C=$1 kernel=$2 coef0=$3\" > \"$4/model.txt\"\necho test > \"$5/test.csv\"\n";
    let predict = "type: command\ninputs:\n  model: {type: mlflow_model}\n  test_data: {type: uri_folder}\noutputs:\n  predict_result: {type: uri_folder}\ncommand: cat ${{inputs.model}}/model.txt ${{inputs.test_data}}/test.csv > ${{outputs.predict_result}}/p.txt && cat ${{outputs.predict_result}}/p.txt\n";
    // Its wasbs:// input served from here (a plain web file is fetched the same way).
    let srv = FileServer::start("5.1,3.5,setosa\n");
    let pipe = example("pipeline-with-sweep.yml").replace(
        "wasbs://tables@labhostsamples.blob.core.windows.net/flowers/iris.csv",
        &format!("{}/data/iris%5Fv2.csv", srv.url),
    );
    let t = TestCmd::new()
        .file("p.yml", pipe)
        .file("train.yml", train)
        .file("train-src/train.sh", train_sh)
        .file("predict.yml", predict);
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let trials = r["sweep_step"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 5);
    let best = trials
        .iter()
        .min_by(|a, b| {
            a["best"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["best"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(r["sweep_step"]["best_child_run_id"], best["run_id"]);
    let pred = r["predict_step"]["trials"][0]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &pred]).finish();
    let want = format!(
        "C={} kernel={} coef0={}\ntest\n",
        best["params"]["c_value"],
        best["params"]["kernel"].as_str().unwrap(),
        best["params"]["coef0"]
    );
    assert_eq!(log, want, "predict did not read the best trial's model");
}

/// Two steps that bind nothing of each other run at the same time: each waits (up to 60 s)
/// for the other to have started, so run one after the other both would fail. The step
/// binding both starts only after both ended.
#[test]
fn independent_pipeline_steps_run_at_the_same_time_and_their_join_waits_for_both() {
    let wait = |me: &str, other: &str| {
        format!(
            "touch ../{me}.started; i=0; while [ ! -e ../{other}.started ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done; echo {me} > ${{{{outputs.o}}}}/v.txt"
        )
    };
    let pipe = format!(
        "type: pipeline\njobs:\n  join:\n    command: cat ${{{{inputs.x}}}}/v.txt ${{{{inputs.y}}}}/v.txt\n    inputs:\n      x: ${{{{parent.jobs.left.outputs.o}}}}\n      y: ${{{{parent.jobs.right.outputs.o}}}}\n  left:\n    command: '{}'\n    outputs: {{o: {{type: uri_folder}}}}\n  right:\n    command: '{}'\n    outputs: {{o: {{type: uri_folder}}}}\n",
        wait("left", "right"),
        wait("right", "left")
    );
    let t = TestCmd::new().file("w/p.yml", &pipe);
    let (code, out, err) = t.spawn(["sweep", "w/p.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let join = r["join"]["trials"][0]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &join]).finish();
    assert_eq!(log, "left\nright\n");
    // The join ran last, in the result's order too.
    let steps: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(steps.len(), 3, "{out}");
}

/// `--dry-run` builds every step as the run does: a binding the run would refuse is refused
/// before anything is planned, with the file and line; a good pipeline shows each step's
/// command with its inputs bound and what it waits for.
#[test]
fn a_pipeline_dry_run_refuses_what_the_run_refuses() {
    let bad = "type: pipeline\njobs:\n  a:\n    command: echo hi > ${{outputs.o}}/x\n    outputs: {o: {type: uri_folder}}\n  b:\n    command: cat ${{inputs.x}}/x\n    inputs:\n      x: ${{parent.jobs.a.outputs.oops}}\n";
    let t = TestCmd::new().file("p.yml", bad);
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("p.yml:9:") && err.contains("parent.jobs.a.outputs.oops"),
        "{err}"
    );
    let (code, _, err2) = t.spawn(["sweep", "p.yml"]).finish();
    assert_eq!(code, Some(1), "{err2}");
    assert_eq!(err.lines().next(), err2.lines().next());
    assert!(no_runs_recorded(t.path()));

    let good = bad.replace("outputs.oops", "outputs.o");
    let t = TestCmd::new().file("p.yml", &good);
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("b  command  (after a)\n  cat <jobs.a.outputs.o>/x"),
        "{out}"
    );
    assert!(no_runs_recorded(t.path()));
}

#[test]
fn the_sweep_timeout_cancels_what_runs_and_stops_drawing_trials() {
    let yml = "type: sweep\ntrial:\n  command: sleep 30\nsampling_algorithm: {type: random, seed: 1}\nsearch_space:\n  x: {type: uniform, min_value: 0, max_value: 1}\nobjective: {goal: maximize, primary_metric: acc}\nlimits: {max_total_trials: 10, max_concurrent_trials: 2, timeout: 1}\n";
    let t = TestCmd::new().file("s.yml", yml);
    let start = std::time::Instant::now();
    let (_, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the sweep"
    );
    let r: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let trials = r["trials"].as_array().unwrap();
    // Every trial was cancelled with the reason: the two that ran (they have a duration) and
    // those queued behind them, which never started.
    assert!(trials.iter().all(|t| t["status"] == "cancelled"), "{out}");
    assert!(
        trials.iter().all(|t| t["reason"]
            .as_str()
            .is_some_and(|x| x.contains("the sweep's timeout (1s) was reached"))),
        "{out}"
    );
    let ran = trials.iter().filter(|t| !t["duration"].is_null()).count();
    assert_eq!(ran, 2, "{out}");
}

#[test]
fn a_cross_validation_copies_fold_outputs_and_aggregates_metrics() {
    let script = r#"
let cv = sweep::cross_validate(
    #{command: "echo '{\"name\": \"val/loss\", \"value\":' $CROSS_VALIDATION_SPLIT_INDEX '}' >> $LABHOST_METRICS; echo fold $CROSS_VALIDATION_SPLIT_INDEX of $NUMBER_OF_CROSS_VALIDATION_SPLITS > $LABHOST_RUN_DIR/outputs/f.txt; echo", splits: 4},
    #{quiet: true, splits: 4});
print(cv.metrics["val/loss"]);
print(jobs::get(cv.id).run_dir);
"#;
    let t = TestCmd::new().script(script);
    let o = t.run();
    assert_ne!(o.code, 0, "`splits` is not a trial key");
    assert!(o.stderr.contains("unknown key `splits`"), "{}", o.stderr);
    let fixed = script.replace(", splits: 4},\n", "},\n");
    let o = TestCmd::new().script(&fixed).run();
    o.success();
    let mut lines = o.stdout.lines();
    let agg = lines.next().unwrap();
    assert!(
        agg.contains("\"mean\": 1.5")
            && agg.contains("\"min\": 0.0")
            && agg.contains("\"max\": 3.0")
            && agg.contains("\"count\": 4"),
        "{agg}"
    );
    // Sample standard deviation of 0, 1, 2, 3.
    assert!(agg.contains("\"std\": 1.29099"), "{agg}");
    let dir = std::path::PathBuf::from(lines.next().unwrap());
    for i in 0..4 {
        let f = std::fs::read_to_string(dir.join(format!("outputs/fold_{i}/f.txt"))).unwrap();
        assert_eq!(f, format!("fold {i} of 4\n"));
    }
}

/// `labhost runs`: a sweep's trials queried with MLflow's grammar, as a table and as JSON.
#[test]
fn labhost_runs_queries_the_store_with_mlflows_filter_grammar() {
    let yml = "type: sweep\ntrial:\n  command: >-\n    echo '{\"name\": \"acc\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS\nsampling_algorithm: grid\nsearch_space:\n  x: {type: choice, values: [0.2, 0.9, 0.5]}\nobjective: {goal: maximize, primary_metric: acc}\nexperiment_name: exp-a\n";
    let t = TestCmd::new().file("s.yml", yml);
    let (code, out, err) = t.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let parent = r["sweep_id"].to_string();
    let (code, out, err) = t
        .spawn([
            "runs",
            "--experiment",
            "exp-a",
            "--filter",
            &format!("tags.mlflow.parentRunId = '{parent}' and metrics.acc >= 0.5"),
            "--order-by",
            "metrics.acc DESC",
        ])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("params.x")
            && lines[0].contains("metrics.acc"),
        "{out}"
    );
    assert!(
        lines[1].contains("trial") && lines[1].trim_end().ends_with("0.9"),
        "{out}"
    );
    assert!(lines[2].trim_end().ends_with("0.5"), "{out}");
    let (_, json, _) = t
        .spawn([
            "runs",
            "--filter",
            "attributes.status = 'FINISHED' and params.x = '0.2'",
            "--json",
        ])
        .finish();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["metrics"]["acc"], 0.2);
    // A bad filter: MLflow's message, exit 1, nothing printed on stdout.
    let (code, out, err) = t
        .spawn(["runs", "--filter", "metrics.acc > 0.5 or params.x = '1'"])
        .finish();
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(err.contains("OR is not supported"), "{err}");
    let (code, _, err) = t.spawn(["runs", "--experiment", "nope"]).finish();
    assert_ne!(code, Some(0));
    assert!(err.contains("no experiment named 'nope'"), "{err}");
}

/// A sweep is its file, however the path is spelt: `s.yml`, `./s.yml`, its absolute path, a
/// symlink to it and the same file from another directory continue one sweep (one id, no
/// new trials); an unnamed sweep is called after its file in `labhost runs`.
#[test]
fn the_same_file_by_any_path_is_the_same_sweep() {
    let yml = "type: sweep\ntrial:\n  command: >-\n    echo '{\"name\": \"v\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS\nsampling_algorithm: random\nsearch_space:\n  x: {type: uniform, min_value: 0, max_value: 1}\nobjective: {goal: maximize, primary_metric: v}\nlimits: {max_total_trials: 3}\n";
    let t = TestCmd::new()
        .file("exp/s.yml", yml)
        .file("other/.keep", "");
    let abs = t.path().join("exp/s.yml");
    std::os::unix::fs::symlink(&abs, t.path().join("link.yml")).unwrap();
    let mut ids = Vec::new();
    let mut xs = Vec::new();
    for (cwd, path) in [
        ("exp", "s.yml".to_string()),
        ("exp", "./s.yml".to_string()),
        (".", abs.display().to_string()),
        (".", "link.yml".to_string()),
        ("other", "../exp/s.yml".to_string()),
    ] {
        let mut c = t.command();
        let o = c
            .current_dir(t.path().join(cwd))
            .args(["sweep", &path, "--json"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        ids.push(r["sweep_id"].clone());
        let mut x: Vec<String> = r["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tr| tr["params"]["x"].to_string())
            .collect();
        x.sort();
        xs.push(x);
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert!(xs.windows(2).all(|w| w[0] == w[1]), "{xs:?}");
    let (_, out, _) = t
        .spawn(["runs", "--filter", "attributes.kind = 'sweep'"])
        .finish();
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains(" s ")),
        "{out}"
    );
}

/// A `code:` folder that does not exist: `--dry-run` refuses it exactly as the run does,
/// pointing at `code:`, and the run records nothing.
#[test]
fn a_missing_code_folder_is_refused_by_the_dry_run_as_by_the_run() {
    let yml = "type: command\ncode: ./nope\ncommand: echo hi\n";
    let t = TestCmd::new().file("job.yml", yml);
    let (c1, _, dry) = t.spawn(["sweep", "job.yml", "--dry-run"]).finish();
    let (c2, _, run) = t.spawn(["sweep", "job.yml"]).finish();
    assert_eq!((c1, c2), (Some(1), Some(1)), "{dry}{run}");
    assert!(dry.contains("job.yml:2:1: the code folder"), "{dry}");
    assert!(dry.contains("nope does not exist"), "{dry}");
    assert_eq!(dry, run);
    assert!(no_runs_recorded(t.path()));
}

/// Azure ML's job runtime contract, locally: each step (and each trial) runs in its own copy
/// of its code folder whose `./outputs` is the run's (a step writing `./outputs/world.txt`
/// works and the file lands in the run folder); `${{parent.inputs.X}}` hands on a local
/// folder (as an absolute path) and an integer (`25`, not `25.0`); a step output bound to a
/// `uri_file` pipeline output is a file path; the next step reads it through
/// `${{parent.jobs.a.outputs.result}}`; typed literal inputs (`{type: integer, value: 7}`)
/// reach the command.
#[test]
fn pipeline_steps_run_in_their_own_folder_with_outputs_and_parent_bindings() {
    let step_a = "import os, sys\nargs = dict(zip(sys.argv[1::2], sys.argv[2::2]))\nrows = open(os.path.join(args['--data'], 'x.csv')).read().strip()\nopen(args['--out'], 'w').write(f\"{rows} epochs={args['--epochs']}\")\nopen('outputs/world.txt', 'w').write(os.getcwd())\nopen('mine.txt', 'w').write('a')\n";
    let step_b = "import os, sys\nprint(open(sys.argv[1]).read(), sys.argv[2], os.path.exists('mine.txt'))\n";
    let pipe = r#"type: pipeline
inputs:
  raw: {type: uri_folder, path: ./data}
  epochs: 25
outputs:
  final: {type: uri_file, mode: rw_mount}
jobs:
  a:
    type: command
    command: python3 a.py --data ${{inputs.data}} --epochs ${{inputs.epochs}} --out ${{outputs.result}}
    code: src
    environment: azureml:labhost-python:1
    inputs:
      data: ${{parent.inputs.raw}}
      epochs: ${{parent.inputs.epochs}}
    outputs:
      result: ${{parent.outputs.final}}
  b:
    type: command
    command: python3 b.py ${{inputs.report}} ${{inputs.k}}
    code: src
    environment: azureml:labhost-python:1
    inputs:
      report: ${{parent.jobs.a.outputs.result}}
      k:
        type: integer
        value: 7
"#;
    let t = TestCmd::new()
        .file("p.yml", pipe)
        .file("data/x.csv", "1,2")
        .file("src/a.py", step_a)
        .file("src/b.py", step_b);
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run_dir = |step: &str| run_dir_of(&t, r[step]["trials"][0]["run_id"].as_i64().unwrap());
    let a = run_dir("a");
    // ./outputs/world.txt written from the step's own working folder, inside its run.
    let cwd = std::fs::read_to_string(a.join("outputs/world.txt")).unwrap();
    assert_eq!(std::path::Path::new(&cwd), a.join("wd"));
    // The uri_file output is a file, its text built from the local input and the integer.
    assert_eq!(
        std::fs::read_to_string(a.join("outputs/result")).unwrap(),
        "1,2 epochs=25"
    );
    // The code folder is untouched; b has its own copy (no mine.txt from a).
    assert!(!t.path().join("src/mine.txt").exists());
    let b = r["b"]["trials"][0]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &b]).finish();
    assert_eq!(log, "1,2 epochs=25 7 False\n");
}

/// `distribution: pytorch` with 2 processes × 2 instances runs 4 ranks with Azure ML's
/// variables: they rendezvous at MASTER_ADDR:MASTER_PORT and rank 0 sums the ranks (a
/// socket all-reduce, WORLD_SIZE=4 → 6). A rank that exits 1 stops the others at once: no
/// process of the job is left (checked with `ps`) and the job fails with that rank's code.
#[test]
fn a_pytorch_distribution_runs_its_ranks_as_one_job() {
    let ranks = r#"import os, socket, sys, time
r, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if sys.argv[1] == "fail":
    if r == 3:
        sys.exit(1)
    time.sleep(120)
if r == 0:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(addr); s.listen(n)
    total = 0
    for _ in range(n - 1):
        c, _ = s.accept(); total += int(c.recv(16)); c.close()
    print(f"world={n} sum={total} local={os.environ['LOCAL_WORLD_SIZE']}")
else:
    for _ in range(200):
        try:
            c = socket.create_connection(addr); break
        except OSError:
            time.sleep(0.05)
    c.sendall(str(r).encode()); c.close()
"#;
    let job = "command: python3 ranks.py ${{inputs.mode}} distributed-rank-marker\ncode: src\ninputs:\n  mode: ok\ndistribution:\n  type: pytorch\n  process_count_per_instance: 2\nresources:\n  instance_count: 2\n";
    let t = TestCmd::new()
        .file("job.yml", job)
        .file("src/ranks.py", ranks);
    let (code, _, log, err) = crate::util::sweep_json(&t, &["sweep", "job.yml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(log, "world=4 sum=6 local=2\n");

    let fail = [
        "sweep",
        "job.yml",
        "--json",
        "--rerun",
        "--set",
        "inputs.mode=fail",
    ];
    crate::util::sweep_fails_within(
        &t,
        &fail,
        "exit 1: labhost launch: rank 3 exited 1",
        std::time::Duration::from_secs(60),
    );
    assert_no_process("distributed-rank-marker");
}

/// A tiny web server for one file: `GET /data/iris%5Fv2.csv` answers the body with an ETag,
/// or `304` to a matching `If-None-Match`; anything else is 404. Counts what it sent.
struct FileServer {
    url: String,
    bodies: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    not_modified: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FileServer {
    fn start(body: &'static str) -> FileServer {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let not_modified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, n) = (bodies.clone(), not_modified.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut etag_match = false;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    let h = h.to_ascii_lowercase();
                    if h.starts_with("if-none-match:") && h.contains("\"v1\"") {
                        etag_match = true;
                    }
                }
                let reply = if !first.starts_with("GET /data/iris%5Fv2.csv ") {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else if etag_match {
                    n.fetch_add(1, Ordering::SeqCst);
                    "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else {
                    b.fetch_add(1, Ordering::SeqCst);
                    format!("HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let _ = s.write_all(reply.as_bytes());
            }
        });
        FileServer {
            url,
            bodies,
            not_modified,
        }
    }
}

/// An `https://`-style input (here plain http on loopback) is downloaded once into the input
/// cache across two jobs and handed over as a file under its own name; a URI that answers
/// 404 fails the job before anything is recorded, naming the input and where it is.
#[test]
fn a_web_input_is_downloaded_once_across_two_jobs_and_handed_over_as_a_file() {
    use std::sync::atomic::Ordering;
    let srv = FileServer::start("5.1,3.5,setosa\n");
    let job = |name: &str, url: &str| {
        format!("type: command\nname: {name}\ncommand: echo \"$(basename ${{{{inputs.rows}}}}) $(cat ${{{{inputs.rows}}}})\"\ninputs:\n  rows:\n    type: uri_file\n    path: {url}/data/iris%5Fv2.csv\n")
    };
    let t = TestCmd::new()
        .file("one.yml", job("one", &srv.url))
        .file("two.yml", job("two", &srv.url));
    for f in ["one.yml", "two.yml"] {
        let (code, out, err) = t.spawn(["sweep", f, "--json"]).finish();
        assert_eq!(code, Some(0), "{out}\n{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = r["trials"][0]["run_id"].to_string();
        let (_, logs, _) = t.spawn(["logs", &id]).finish();
        assert_eq!(logs.trim(), "iris_v2.csv 5.1,3.5,setosa", "{f}");
    }
    assert_eq!(srv.bodies.load(Ordering::SeqCst), 1, "downloaded once");
    assert_eq!(
        srv.not_modified.load(Ordering::SeqCst),
        1,
        "revalidated once"
    );
    // The file the jobs read lives in the content-addressed cache, read-only.
    let cached = glob::glob(&format!(
        "{}/.labhost/cache/inputs/files/*/iris_v2.csv",
        t.path().display()
    ))
    .unwrap()
    .flatten()
    .collect::<Vec<_>>();
    assert_eq!(cached.len(), 1, "{cached:?}");
    // A URI that is not there: refused before any run is recorded, the input named.
    let bad = TestCmd::new().file("bad.yml", job("bad", &format!("{}/nope", srv.url)));
    let (code, _, err) = bad.spawn(["sweep", "bad.yml"]).finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error[sweep.input]"), "{err}");
    assert!(err.contains("input `rows`") && err.contains("404"), "{err}");
    assert!(
        err.contains("bad.yml:5:3: input `rows`"),
        "the error points at the input: {err}"
    );
    assert!(no_runs_recorded(bad.path()), "nothing recorded");
}

/// The same job file gets GPUs here without a local-only key: from `--gpus-per-trial`, or
/// from the settings' `local_gpus` by the job's `compute:` (per process, times the
/// distribution's processes); `--dry-run` shows the placement and what said it, and the
/// trials really get the devices.
#[test]
fn gpus_come_from_the_command_line_or_the_settings_by_compute() {
    let sweep = "type: sweep\ncompute: azureml:gpu-cluster\ntrial: {command: 'echo gpus=$CUDA_VISIBLE_DEVICES x=${{search_space.x}}'}\nsampling_algorithm: grid\nsearch_space: {x: {type: choice, values: [1, 2]}}\nobjective: {goal: minimize, primary_metric: l}\nlimits: {max_concurrent_trials: 2}\n";
    let dist = "type: command\ncompute: gpu-cluster\ncommand: echo $RANK\ndistribution: {type: pytorch, process_count_per_instance: 2}\nresources: {instance_count: 2}\n";
    let t = TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "4x24GiB")
        .file("s.yml", sweep)
        .file("d.yml", dist)
        .file(
            "settings.yml",
            "variables:\n  local_gpus:\n    gpu-cluster: 1\n",
        );
    let placements = |out: &str| -> Vec<String> {
        out.lines()
            .take(2)
            .map(|l| l.trim_start().split("  ").nth(2).unwrap_or("").to_string())
            .collect()
    };
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(placements(&out), ["gpu 0", "gpu 1"], "{out}");
    assert!(
        out.contains("GPUs per trial: 1 (")
            && out.contains("settings.yml: local_gpus.gpu-cluster: 1 per process)"),
        "{out}"
    );
    let (code, out, err) = t
        .spawn(["sweep", "s.yml", "--dry-run", "--gpus-per-trial", "2"])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(placements(&out), ["gpu 0,1", "gpu 2,3"], "{out}");
    assert!(
        out.contains("GPUs per trial: 2 (--gpus-per-trial 2)"),
        "{out}"
    );
    // 2 instances × 2 processes, 1 GPU each.
    let (code, out, err) = t.spawn(["sweep", "d.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("gpu 0,1,2,3"), "{out}");
    assert!(out.contains(": 1 per process × 4 processes)"), "{out}");
    // The run: each trial leases its device (two at once: two different ones).
    let (code, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut seen = Vec::new();
    for tr in r["trials"].as_array().unwrap() {
        let (_, log, _) = t.spawn(["logs", &tr["run_id"].to_string()]).finish();
        let g = log
            .trim()
            .strip_prefix("gpus=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert!(["0", "1", "2", "3"].contains(&g.as_str()), "{log}");
        seen.push(g);
    }
    assert_eq!(seen.len(), 2);
    // A pipeline's steps: by their own compute, else the pipeline's default_compute.
    let pipe = "type: pipeline\nsettings: {default_compute: azureml:gpu-cluster}\njobs:\n  a: {type: command, command: echo a}\n  b: {type: command, command: echo b, compute: azureml:cpu-cluster}\n";
    let t = t.file("p.yml", pipe);
    let (code, out, err) = t.spawn(["sweep", "p.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let a = out.split("\nb  ").next().unwrap();
    assert!(a.contains("  GPUs per trial: 1 ("), "{out}");
    assert!(
        !out.split("\nb  ").nth(1).unwrap().contains("GPUs"),
        "{out}"
    );
    // A bad entry is refused, naming it; --gpus-per-trial does not go with a pipeline.
    let bad = TestCmd::new().file("s.yml", sweep).file(
        "settings.yml",
        "variables:\n  local_gpus:\n    gpu-cluster: two\n",
    );
    let (code, _, err) = bad.spawn(["sweep", "s.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("local_gpus.gpu-cluster"), "{err}");
    let p = TestCmd::new().file(
        "p.yml",
        "type: pipeline\njobs:\n  a: {type: command, command: echo a}\n",
    );
    let (code, _, err) = p
        .spawn(["sweep", "p.yml", "--gpus-per-trial", "1"])
        .finish();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("local_gpus"), "{err}");
}

/// An `mpi` distribution runs under the real `mpirun` when one is installed (as Azure ML
/// launches it): 2 instances × 2 processes are one MPI world of 4 with Open MPI's own rank
/// variables, one job to the engine; a rank that fails ends the world and fails the job, and
/// no rank is left. `LABHOST_MPIRUN=off` runs the same ranks under labhost's own launcher.
#[test]
#[ignore = "needs Open MPI (tests/run-all.sh installs it)"]
fn an_mpi_distribution_runs_under_mpirun_when_installed() {
    let mpirun = std::env::var("LABHOST_TEST_MPIRUN").expect("LABHOST_TEST_MPIRUN");
    let job = "command: sh ranks.sh ${{inputs.mode}} mpi-rank-marker\ncode: src\ninputs:\n  mode: ok\ndistribution:\n  type: mpi\n  process_count_per_instance: 2\nresources:\n  instance_count: 2\n";
    let ranks = "r=$OMPI_COMM_WORLD_RANK\nif [ \"$1\" = fail ]; then [ \"$r\" = 3 ] && exit 1; sleep 120; fi\necho \"rank=$r size=$OMPI_COMM_WORLD_SIZE local_size=$OMPI_COMM_WORLD_LOCAL_SIZE\"\n";
    let t = TestCmd::new()
        .env("LABHOST_MPIRUN", &mpirun)
        .file("job.yml", job)
        .file("src/ranks.sh", ranks);
    let (code, out, err) = t.spawn(["sweep", "job.yml", "--dry-run"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("exec '{mpirun}' -np 4 --oversubscribe")),
        "{out}"
    );
    let sorted_log = |t: &TestCmd, args: &[&str]| {
        let (code, out, err) = t.spawn(args).finish();
        let r: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
        let id = r["trials"][0]["run_id"].to_string();
        let (_, log, _) = t.spawn(["logs", &id]).finish();
        let mut lines: Vec<String> = log
            .lines()
            .filter(|l| l.starts_with("rank="))
            .map(str::to_string)
            .collect();
        lines.sort();
        (code, lines, r)
    };
    let want: Vec<String> = (0..4)
        .map(|r| format!("rank={r} size=4 local_size=4"))
        .collect();
    let (code, lines, _) = sorted_log(&t, &["sweep", "job.yml", "--json"]);
    assert_eq!(code, Some(0));
    // mpirun puts all 4 ranks on this one host: a local world of 4.
    assert_eq!(lines, want);
    let started = std::time::Instant::now();
    let (code, _, r) = sorted_log(
        &t,
        &[
            "sweep",
            "job.yml",
            "--json",
            "--rerun",
            "--set",
            "inputs.mode=fail",
        ],
    );
    assert_ne!(code, Some(0));
    assert_eq!(r["trials"][0]["status"], "failed", "{r}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the world was not stopped"
    );
    assert_no_process("mpi-rank-marker");
    // Labhost's own launcher: the same world, local size 2 per instance.
    let own = t.env("LABHOST_MPIRUN", "off");
    let (code, lines, _) = sorted_log(&own, &["sweep", "job.yml", "--json", "--rerun"]);
    assert_eq!(code, Some(0));
    let want: Vec<String> = (0..4)
        .map(|r| format!("rank={r} size=4 local_size=2"))
        .collect();
    assert_eq!(lines, want);
}

/// Running a sweep again says whether it is new or continues (and where it stands); failed
/// trials get a hint, and `--retry-failed` runs exactly those again with the same
/// parameters while the others keep their results.
#[test]
fn a_sweep_says_it_continues_and_retries_only_its_failed_trials() {
    let yml = "type: sweep\ntrial:\n  command: echo ${{search_space.x}} >> ran.txt; if [ ${{search_space.x}} = 2 ] && [ ! -e ok.flag ]; then echo \"x=2 is not allowed\" >&2; exit 3; fi\nsampling_algorithm: grid\nsearch_space: {x: {type: choice, values: [1, 2, 3]}}\nobjective: {goal: minimize, primary_metric: l}\n";
    let t = TestCmd::new().file("s.yml", yml);
    let statuses = |out: &str| -> Vec<String> {
        let r: serde_json::Value = serde_json::from_str(out).unwrap();
        r["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(
        statuses(&out),
        ["completed", "failed", "completed"],
        "{err}"
    );
    let id: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = id["sweep_id"].as_i64().unwrap();
    assert!(err.contains(&format!("new sweep {id}\n")), "{err}");
    let hint = "1 trial(s) failed: `labhost sweep s.yml --retry-failed` runs them again (`--rerun` starts the sweep anew)";
    assert!(err.contains(hint), "{err}");
    // Again: nothing runs, and it says so.
    let (_, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    assert_eq!(statuses(&out), ["completed", "failed", "completed"]);
    assert!(
        err.contains(&format!("continuing sweep {id} (3/3 done, 1 failed)")),
        "{err}"
    );
    assert!(err.contains(hint), "{err}");
    // The cause fixed: only the failed trial runs again.
    std::fs::write(t.path().join("ok.flag"), "").unwrap();
    let (code, out, err) = t
        .spawn(["sweep", "s.yml", "--json", "--retry-failed"])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        statuses(&out),
        ["completed", "completed", "completed"],
        "{err}"
    );
    assert!(!err.contains("trial(s) failed"), "{err}");
    let mut ran: Vec<String> = std::fs::read_to_string(t.path().join("ran.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    assert_eq!(ran, ["1", "2", "2", "3"]);
    let (code, _, err) = t
        .spawn(["sweep", "s.yml", "--retry-failed", "--rerun"])
        .finish();
    assert_eq!(code, Some(2), "{err}");
}

/// The real thing: a `pytorch` distribution of 2 × 2 ranks running `torch.distributed` with
/// the gloo backend on CPU, initialised from the environment labhost gives each rank
/// (`init_method="env://"`, as on Azure ML): an all-reduce of the ranks sums to 6 over a
/// world of 4. A rank that exits 1 while the others wait in a collective stops them: the job
/// fails with code 1 and no rank is left.
#[test]
#[ignore = "needs torch (tests/run-all.sh installs it)"]
fn torch_distributed_gloo_all_reduce_over_2x2_ranks() {
    let python = std::env::var("LABHOST_TEST_TORCH_PYTHON").expect("LABHOST_TEST_TORCH_PYTHON");
    let train = r#"import os, sys, datetime
import torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=120))
r, n = dist.get_rank(), dist.get_world_size()
assert r == int(os.environ["RANK"]) and n == int(os.environ["WORLD_SIZE"])
if sys.argv[1] == "fail" and r == 3:
    sys.exit(1)
t = torch.tensor([float(r)])
dist.all_reduce(t)
if r == 0:
    print(f"world={n} sum={t.item():.0f} local_world={os.environ['LOCAL_WORLD_SIZE']}")
dist.destroy_process_group()
"#;
    let job = format!(
        "command: {python} train.py ${{{{inputs.mode}}}} gloo-rank-marker\ncode: src\ninputs:\n  mode: ok\ndistribution:\n  type: pytorch\n  process_count_per_instance: 2\nresources:\n  instance_count: 2\n"
    );
    let t = TestCmd::new()
        .file("job.yml", job)
        .file("src/train.py", train);
    let (code, _, log, err) = crate::util::sweep_json(&t, &["sweep", "job.yml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(log.contains("world=4 sum=6 local_world=2\n"), "{log}");
    let fail = [
        "sweep",
        "job.yml",
        "--json",
        "--rerun",
        "--set",
        "inputs.mode=fail",
    ];
    // Rank 3 failed first (its peers then fail in the collective, or are stopped): the
    // reason says so, after whatever the peers printed.
    crate::util::sweep_fails_within(
        &t,
        &fail,
        "exit 1: labhost launch: rank 3 exited 1 first; the other ranks were stopped",
        std::time::Duration::from_secs(90),
    );
    assert_no_process("gloo-rank-marker");
}

/// `${{name}}` is the job's name, as Azure substitutes it: a command job's own name, each
/// sweep trial's run name.
#[test]
fn the_name_binding_is_the_jobs_name() {
    let t = TestCmd::new()
        .file("c.yml", "type: command\nname: prep\ncommand: echo job=${{name}}\n")
        .file("s.yml", "type: sweep\nname: lr-search\ntrial: {command: 'echo job=${{name}} x=${{search_space.x}}'}\nsampling_algorithm: grid\nsearch_space: {x: {type: choice, values: [1, 2]}}\nobjective: {goal: minimize, primary_metric: l}\n");
    let (code, _, log, err) = crate::util::sweep_json(&t, &["sweep", "c.yml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(log, "job=prep\n");
    let (code, r, _, err) = crate::util::sweep_json(&t, &["sweep", "s.yml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let id = r["trials"][1]["run_id"].to_string();
    let (_, log, _) = t.spawn(["logs", &id]).finish();
    assert_eq!(log, "job=lr-search_1 x=2\n");
}

/// A tmpfs mounted at `dir` (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The state directory's disk fills mid-sweep: the sweep ends at once, non-zero, with one
/// clear error (it used to warn four times a second, forever). Once there is room again,
/// continuing it runs only the trials that never finished, and each completed trial has its
/// own points once.
#[test]
fn a_full_disk_ends_a_sweep_at_once_and_continuing_runs_only_what_never_finished() {
    let t = TestCmd::new();
    let Some(disk) = Tmpfs::mount(&t.path().join("state"), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let yml = "type: sweep\ntrial:\n  command: echo ${{search_space.x}} >> ledger.txt; for i in 1 2 3 4 5; do echo \"{\\\"name\\\":\\\"loss\\\",\\\"value\\\":$i,\\\"step\\\":$i}\" >> $LABHOST_METRICS; done\nsampling_algorithm: {type: random, seed: 1}\nsearch_space:\n  x: {type: randint, upper: 1000000000}\nobjective: {goal: minimize, primary_metric: loss}\nlimits: {max_total_trials: 400, max_concurrent_trials: 4}\n";
    let t = t.file("s.yml", yml).env("LABHOST_HOME", "state/.labhost");
    let sweep = t.spawn(["-q", "sweep", "s.yml"]);
    // Some trials in, the disk fills up (another process's file, as in life).
    let ledger_lines = || {
        std::fs::read_to_string(t.path().join("ledger.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ledger_lines() < 20 {
        assert!(std::time::Instant::now() < deadline, "no trial ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let filler = t.path().join("state/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let filled = std::time::Instant::now();
    let (code, _, err) = sweep.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        filled.elapsed() < Duration::from_secs(30),
        "took {:?}",
        filled.elapsed()
    );
    assert!(
        err.contains("No space left on device") || err.contains("full"),
        "{err}"
    );
    assert!(err.lines().count() <= 4, "one clear error: {err}");
    std::fs::remove_file(&filler).unwrap();
    disk.resize("64m");
    let (code, _, err) = t.spawn(["-q", "sweep", "s.yml"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("continuing sweep 1"), "{err}");
    let ledger = std::fs::read_to_string(t.path().join("ledger.txt")).unwrap();
    let mut values: Vec<&str> = ledger.lines().collect();
    let n = values.len();
    values.sort_unstable();
    values.dedup();
    assert_eq!(
        (n, values.len()),
        (400, 400),
        "every trial ran exactly once"
    );
    let counts = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             print(c.execute(\"SELECT COUNT(*) FROM (SELECT m.run_id, COUNT(*) n FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.status = 'completed' GROUP BY m.run_id HAVING n != 5)\").fetchone()[0])",
        )
        .arg(t.path().join("state/.labhost/labhost.db"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&counts.stdout),
        "0\n",
        "a completed trial without exactly its 5 points"
    );
}

#[test]
fn a_bayesian_sweep_draws_from_the_results_of_the_trials_before() {
    // One at a time, so the draws are fixed by the seed: after ten random trials, TPE knows
    // each result and closes in on x = 0.8 (random draws would stay ~0.25 away).
    let yml = r#"type: sweep
trial:
  command: >-
    awk -v x=${{search_space.x}} 'BEGIN { printf "{\"name\": \"acc\", \"value\": %f}\n", -(x - 0.8) ^ 2 }' >> $LABHOST_METRICS
sampling_algorithm: {type: bayesian, seed: 6}
search_space:
  x: {type: uniform, min_value: 0, max_value: 1}
objective: {goal: maximize, primary_metric: acc}
limits: {max_total_trials: 40, max_concurrent_trials: 1}
"#;
    let t = TestCmd::new().file("s.yml", yml);
    let (_, out, err) = t.spawn(["sweep", "s.yml", "--json"]).finish();
    let r: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let mut trials = r["trials"].as_array().unwrap().clone();
    trials.sort_by_key(|t| t["trial"].as_u64());
    let off: Vec<f64> = trials
        .iter()
        .map(|t| (t["params"]["x"].as_f64().unwrap() - 0.8).abs())
        .collect();
    assert_eq!(off.len(), 40, "{out}");
    let median = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (startup, late) = (median(&off[..10]), median(&off[20..]));
    assert!(startup > 0.15, "the first ten are random: {off:?}");
    assert!(
        late < 0.1,
        "the last twenty are drawn near the best: {off:?}"
    );
}
