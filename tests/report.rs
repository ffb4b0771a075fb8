//! `labhost report`: the text formats, and the HTML page in a real browser (headless Chromium
//! over the DevTools protocol; tests/run-all.sh installs Debian's chromium and runs these with
//! `--ignored`, LABHOST_TEST_CHROMIUM naming it).
use crate::util::TestCmd;

const SWEEP: &str = "type: sweep\ntrial:\n  command: >-\n    for i in 1 2 3 4 5; do echo '{\"name\": \"acc\", \"value\":' ${{search_space.x}} ', \"step\":' $i '}' >> $LABHOST_METRICS; sleep 0.1; done\nsampling_algorithm: grid\nsearch_space:\n  x: {type: choice, values: [0.5, 0.9, 0.1, 0.7, 0.3, 0.8]}\nobjective: {goal: maximize, primary_metric: acc}\nlimits: {max_concurrent_trials: 6}\nearly_termination: {type: bandit, slack_factor: 0.1, delay_evaluation: 2}\n";

fn swept() -> (TestCmd, serde_json::Value) {
    let t = TestCmd::new().file("s.yml", SWEEP);
    let (code, out, err) = t.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    (t, serde_json::from_str(&out).unwrap())
}

#[test]
fn a_sweeps_report_as_markdown_json_and_csv() {
    let (t, r) = swept();
    let id = r["sweep_id"].to_string();
    let (code, md, err) = t.spawn(["report", &id, "--format", "md"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(md.starts_with(&format!("# sweep {id} ")), "{md}");
    assert!(
        md.contains("Best: run ") && md.contains("acc = 0.9 (maximize)"),
        "{md}"
    );
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| run"))
            .count(),
        6,
        "{md}"
    );
    assert!(md.contains("cancelled by policy: bandit"), "{md}");
    let (_, js, _) = t.spawn(["report", &id, "--format", "json"]).finish();
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 6);
    assert_eq!(v["rows"][v["best"].as_u64().unwrap() as usize]["best"], 0.9);
    let (_, csv, _) = t.spawn(["report", &id, "--format", "csv"]).finish();
    assert!(
        csv.starts_with("run_id,name,status,params.x,metrics.acc,best,reports,duration_s,reason\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 7);
    // The sweep wrote its report when it ended.
    assert!(std::path::Path::new(r["report"].as_str().unwrap()).exists());
    // Unknown targets are errors.
    let (code, _, err) = t.spawn(["report", "no-such-experiment"]).finish();
    assert_ne!(code, Some(0));
    assert!(
        err.contains("no run id or experiment named 'no-such-experiment'"),
        "{err}"
    );
}

#[test]
#[ignore = "needs chromium and websocket-client (tests/run-all.sh installs them)"]
fn the_html_report_works_in_a_real_browser() {
    let chromium = std::env::var("LABHOST_TEST_CHROMIUM").expect("LABHOST_TEST_CHROMIUM");
    let python = std::env::var("LABHOST_TEST_MLFLOW_PYTHON").expect("LABHOST_TEST_MLFLOW_PYTHON");
    let (t, r) = swept();
    let id = r["sweep_id"].to_string();
    let (code, _, err) = t.spawn(["report", &id, "--out", "r.html"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let html = std::fs::read_to_string(t.path().join("r.html")).unwrap();
    // Nothing is loaded from anywhere: no src= or href= at all (data and code are inline).
    assert!(
        !html.contains("src=") && !html.contains("href=") && !html.contains("@import"),
        "the page loads something"
    );
    let artifacts =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let checker =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_report.py");
    let o = std::process::Command::new(python)
        .arg(checker)
        .arg(&chromium)
        .arg(t.path().join("r.html"))
        .arg("best acc")
        .arg(&shot)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("errors 0 []"), "{out}");
    assert_eq!(lines.next(), Some("rows 6"), "{out}");
    let before = lines.next().unwrap();
    assert_eq!(
        before, "before ['0.5', '0.9', '0.1', '0.7', '0.3', '0.8']",
        "{out}"
    );
    // Clicking the header sorts the table by that column, ascending.
    let after = lines.next().unwrap();
    let vals: Vec<f64> = after
        .trim_start_matches("after [")
        .trim_end_matches(']')
        .split(", ")
        .map(|v| v.trim_matches('\'').parse().unwrap())
        .collect();
    let mut sorted = vals.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(vals, sorted, "{out}");
    assert_ne!(
        after.trim_start_matches("after "),
        before.trim_start_matches("before ")
    );
    // Every trial's curve, every trial in the parallel coordinates (x, a choice, on a
    // categorical axis; the objective on a linear one), drawn on canvases (uPlot's and ours).
    let charts = lines.next().unwrap();
    assert!(
        charts.starts_with("curves 6 parallel 6 axes x:category,acc:linear canvases "),
        "{out}"
    );
    let canvases: usize = charts.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(canvases >= 3, "{out}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot {}",
        shot.display()
    );
}
