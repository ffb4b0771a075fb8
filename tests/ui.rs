//! The dashboard (`labhost ui`) in a real browser: headless Chromium over the DevTools
//! protocol (tests/browser/check_dashboard.py).
use crate::util::{free_port, TestCmd};

#[test]
#[ignore = "needs chromium (tests/run-all.sh)"]
fn the_dashboard_shows_a_running_job_live_and_filters_runs() {
    let chromium = std::env::var("LABHOST_TEST_CHROMIUM").expect("LABHOST_TEST_CHROMIUM");
    let python = std::env::var("LABHOST_TEST_MLFLOW_PYTHON").expect("LABHOST_TEST_MLFLOW_PYTHON");
    let t = TestCmd::new().file(
        "m.rhai",
        r#"
        jobs::submit(#{name: "other", command: "true", params: #{lr: 0.2}}).wait();
        let j = jobs::submit(#{name: "train", params: #{lr: 0.1}, command:
            "printf 'epoch,loss\\n1,0.5\\n2,0.25\\n' > $LABHOST_RUN_DIR/outputs/scores.csv; echo '<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"12\" height=\"8\"><rect width=\"12\" height=\"8\" fill=\"red\"/></svg>' > $LABHOST_RUN_DIR/outputs/plot.svg; sleep 1; for i in $(seq 1 40); do echo \"{\\\"name\\\":\\\"loss\\\",\\\"value\\\":$i,\\\"step\\\":$i}\" >> $LABHOST_METRICS; echo line $i; sleep 0.1; done"});
        print(j.id);
        print(j.wait());
        "#,
    );
    let port = free_port();
    let mut ui = t.spawn(["ui", "--port", &port.to_string()]);
    // (A new token's `export` line comes first.)
    let url = loop {
        let l = ui.line();
        if l.starts_with("dashboard: ") || l.is_empty() {
            break l;
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let token = url
        .split_once("?token=")
        .map(|(_, t)| t.trim().to_string())
        .expect("the dashboard's address with its token");
    let mut job = t.spawn(["run", "m.rhai"]);
    let id = job.line();
    let artifacts =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // The browser brings the token once; the page keeps it (a cookie) from then on.
    let o = std::process::Command::new(python)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/browser/check_dashboard.py"),
        )
        .arg("run")
        .arg(&chromium)
        .arg(&base)
        .arg(format!("{}?token={token}", id.trim()))
        .arg(
            t.path()
                .join(format!(".labhost/runs/{}/metrics.jsonl", id.trim())),
        )
        .arg(&artifacts)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(job.line().trim(), "completed");
    job.finish();
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("{k} missing: {out}"))
            .to_string()
    };
    // Within 1 s of the job's file, always (the page is pushed to, never reloaded).
    assert_eq!(get("lag").parse::<i64>().unwrap().max(0), 0, "{out}");
    assert_eq!(get("last"), "40", "{out}");
    assert_eq!(get("stdout_has_last_line"), "True", "{out}");
    // The chart of `loss` holds all 40 points; its log-y switch made the axis logarithmic.
    assert_eq!(get("log_y"), "1 40", "{out}");
    assert_eq!(get("rows"), "2 1", "the filter box filters: {out}");
    assert_eq!(get("columns"), "params.lr", "the column chooser: {out}");
    // The two runs compared: `lr` differs (marked); `loss`'s chart (only one run has it).
    assert_eq!(get("compare"), "diff 1", "{out}");
    // Its outputs: the CSV as a table (header + 2 rows), the SVG drawn (12 px wide).
    assert_eq!(get("files"), "3 12", "{out}");
    assert_eq!(get("errors"), "0 []", "{out}");
    assert_eq!(get("outside"), "[]", "{out}");

    // A running sweep: the command prints its live page; the page follows it without a
    // reload, shows its log-uniform parameter on a log axis, and cancels it.
    std::fs::write(t.path().join("s.yml"), SWEEP).unwrap();
    let mut sweep = t.spawn(["sweep", "s.yml"]);
    let live = loop {
        let l = sweep.err_line();
        assert!(!l.is_empty(), "the sweep never printed its live page");
        if let Some(u) = l.strip_prefix("live: ") {
            break u.to_string();
        }
    };
    assert!(live.starts_with(&format!("{base}/runs/")), "{live}");
    let o = std::process::Command::new(std::env::var("LABHOST_TEST_MLFLOW_PYTHON").unwrap())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/browser/check_dashboard.py"),
        )
        .arg("sweep")
        .arg(&chromium)
        .arg(&base)
        .arg(format!("{live}?token={token}"))
        .arg(&artifacts)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, _, err) = sweep.finish();
    ui.signal(libc::SIGINT);
    ui.finish();
    assert_eq!(
        get_in(&out, "axes"),
        "batch:category,lr:log,loss:linear",
        "{out}"
    );
    let trials: Vec<i64> = get_in(&out, "trials")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        trials[1] >= trials[0] + 2,
        "the objective chart did not follow the trials: {out}"
    );
    assert!(get_in(&out, "progress").contains("completed"), "{out}");
    // What the limits leave, as trials end (live, never reloaded).
    let lim = get_in(&out, "limits");
    let left: u64 = lim
        .split(" of 12 trials left")
        .next()
        .unwrap()
        .parse()
        .expect(&lim);
    assert!(left <= 10, "{out}");
    assert!(lim.contains(" of the 1h timeout left"), "{out}");
    assert_eq!(get_in(&out, "status"), "cancelled", "{out}\n{err}");
    assert_ne!(code, Some(0), "a cancelled sweep: {err}");
    let (_, runs, _) = t.spawn(["runs", "--json"]).finish();
    let v: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let trials_run = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "trial" && r["status"] == "completed")
        .count();
    assert!(
        trials_run < 12,
        "cancelling stopped the sweep: {trials_run} trials completed"
    );
    assert_eq!(get_in(&out, "errors"), "0 []", "{out}");
    assert_eq!(get_in(&out, "outside"), "[]", "{out}");
}

/// A sweep of 12 trials, 2 at a time, each reporting `loss` 3 times in ~1.2 s; `lr` is
/// log-uniform, `batch` a choice.
const SWEEP: &str = r#"type: sweep
trial:
  command: >-
    for i in 1 2 3; do awk -v lr=${{search_space.lr}} -v i=$i 'BEGIN { printf "{\"name\": \"loss\", \"value\": %g, \"step\": %d}\n", lr * 1000 / i, i }' >> $LABHOST_METRICS; sleep 0.4; done
sampling_algorithm: random
search_space:
  lr: {type: loguniform, min_value: -9, max_value: -2}
  batch: {type: choice, values: [16, 32]}
objective: {goal: minimize, primary_metric: loss}
limits: {max_total_trials: 12, max_concurrent_trials: 2, timeout: 3600}
"#;

fn get_in(out: &str, k: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{k} ")))
        .unwrap_or_else(|| panic!("{k} missing: {out}"))
        .to_string()
}

/// A plain HTTP/1.0 request to the dashboard: (status line, body).
fn http(port: u16, method: &str, path: &str, token: &str) -> (String, String) {
    let (head, body) = http_head(port, method, path, token);
    (head.lines().next().unwrap_or("").to_string(), body)
}

/// A plain HTTP/1.0 request to the dashboard: (status line and headers, body).
fn http_head(port: u16, method: &str, path: &str, token: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: labhost_token={token}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    let r = String::from_utf8_lossy(&r).to_string();
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    (head.to_string(), body.to_string())
}

/// A sweep's page: its trials with their params and metrics and how many ended how; a
/// running job's cancel button cancels it; without the token nothing is shown.
#[test]
fn a_sweeps_page_lists_its_trials_and_the_cancel_button_cancels() {
    let t = TestCmd::new().file(
        "s.yml",
        "type: sweep\ntrial:\n  command: echo \"{\\\"name\\\":\\\"acc\\\",\\\"value\\\":${{search_space.x}},\\\"step\\\":1}\" >> $LABHOST_METRICS\nsearch_space:\n  x: {type: choice, values: [0.25, 0.75]}\nsampling_algorithm: grid\nobjective: {goal: maximize, primary_metric: acc}\n",
    );
    let (code, _, err) = t.spawn(["-q", "sweep", "s.yml"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let (ui, port) = dashboard(&t);
    let (st, _) = http(port, "GET", "/runs/1", "wrong");
    assert!(st.contains(" 401 "), "{st}");
    let (st, page) = http(port, "GET", "/runs/1", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    assert!(
        page.contains("<p id=progress>2 completed of 2</p>"),
        "{page}"
    );
    for v in ["0.25", "0.75"] {
        assert!(
            page.contains(&format!("<td>{v}</td>")),
            "trial {v} missing: {page}"
        );
    }
    // Two trials compared: `x` differs and is marked, `acc` too; bad lists are refused.
    let (st, page) = http(port, "GET", "/compare?runs=2,3", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    assert!(
        page.contains("<tr class=\"diff\" data-key=\"params.x\">"),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"diff\" data-key=\"metrics.acc\">"),
        "{page}"
    );
    for bad in [
        "/compare?runs=2",
        "/compare?runs=2,x",
        "/compare?runs=2,%0A",
    ] {
        let (st, _) = http(port, "GET", bad, "s3cret");
        assert!(st.contains(" 400 "), "{bad}: {st}");
    }
    let (st, _) = http(port, "GET", "/compare?runs=2,999", "s3cret");
    assert!(st.contains(" 404 "), "{st}");
    // A running job, cancelled from its page.
    std::fs::write(
        t.path().join("job.rhai"),
        "let j = jobs::submit(#{command: \"sleep 30\"}); print(j.id); print(j.wait());",
    )
    .unwrap();
    let mut job = t.spawn(["run", "job.rhai"]);
    let id = job.line();
    let (st, _) = http(
        port,
        "POST",
        &format!("/runs/{}/cancel", id.trim()),
        "s3cret",
    );
    assert!(st.contains(" 303 "), "{st}");
    assert_eq!(job.line(), "cancelled");
    job.finish();
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// What the charts are drawn from: a metric of 200,000 points comes downsampled (M4) with
/// its spikes; a sweep's report JSON carries each parameter's scale; the charting library is
/// served with its licence; `labhost cancel <sweep>` stops a running sweep.
#[test]
fn charts_get_downsampled_series_and_scales_and_a_cancelled_sweep_stops() {
    let t = TestCmd::new().file(
        "m.rhai",
        r#"
        // 200,000 points of a flat line with one spike up at step 123457 and one down at 7.
        let j = jobs::submit(#{name: "long", command:
            "awk 'BEGIN { for (i = 0; i < 200000; i++) { v = (i == 123457) ? 99 : ((i == 7) ? -99 : 1); printf \"{\\\"name\\\": \\\"loss\\\", \\\"value\\\": %d, \\\"step\\\": %d}\\n\", v, i } }' >> $LABHOST_METRICS"});
        print(j.id);
        print(j.wait());
        "#,
    );
    let mut job = t.spawn(["run", "m.rhai"]);
    let id = job.line();
    assert_eq!(job.line(), "completed");
    job.finish();
    let (ui, port) = dashboard(&t);
    let (st, body) = http(
        port,
        "GET",
        &format!("/runs/{id}/series?points=400"),
        "s3cret",
    );
    assert!(st.contains(" 200 "), "{st}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = &v["series"][0];
    assert_eq!(s["name"], "loss");
    assert_eq!(s["total"], 200_000);
    let steps: Vec<i64> = s["step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let values: Vec<f64> = s["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(steps.len() <= 400 && steps.len() >= 200, "{}", steps.len());
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "in step order");
    assert!(
        steps.contains(&123_457) && steps.contains(&7),
        "the spikes are kept"
    );
    assert_eq!(values.iter().copied().fold(f64::MIN, f64::max), 99.0);
    assert_eq!(values.iter().copied().fold(f64::MAX, f64::min), -99.0);
    assert_eq!(
        (steps[0], *steps.last().unwrap()),
        (0, 199_999),
        "both ends"
    );
    assert!(v["upto"].as_i64().unwrap() >= 200_000, "{}", v["upto"]);
    let (st, lic) = http(port, "GET", "/static/uPlot.LICENSE.txt", "s3cret");
    assert!(st.contains(" 200 ") && lic.contains("MIT License"), "{st}");
    let (st, js) = http(port, "GET", "/static/uPlot.iife.min.js", "s3cret");
    assert!(
        st.contains(" 200 ") && js.contains("uPlot") && js.len() > 20_000,
        "{st}"
    );
    let (st, _) = http(port, "GET", "/static/../Cargo.toml", "s3cret");
    assert!(!st.contains(" 200 "), "{st}");

    // A sweep asked to stop from outside ends `cancelled`, its running trials cancelled,
    // no trial started after.
    std::fs::write(
        t.path().join("s.yml"),
        "type: sweep\ntrial:\n  command: sleep 0.5; echo \"{\\\"name\\\":\\\"loss\\\",\\\"value\\\":${{search_space.lr}}}\" >> $LABHOST_METRICS\nsampling_algorithm: random\nsearch_space:\n  lr: {type: loguniform, min_value: -9, max_value: -2}\n  opt: {type: choice, values: [sgd, adam]}\nobjective: {goal: minimize, primary_metric: loss}\nlimits: {max_total_trials: 40, max_concurrent_trials: 2}\n",
    )
    .unwrap();
    let mut sweep = t.spawn(["sweep", "s.yml"]);
    let live = loop {
        let l = sweep.err_line();
        assert!(!l.is_empty(), "the sweep never printed its live page");
        if let Some(u) = l.strip_prefix("live: ") {
            break u.to_string();
        }
    };
    let sid = live.rsplit('/').next().unwrap().to_string();
    assert_eq!(live, format!("http://127.0.0.1:{port}/runs/{sid}"));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.spawn(["cancel", &sid]).finish();
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), format!("{sid}: cancelled"), "{err}");
    let (code, _, err) = sweep.finish();
    assert_ne!(code, Some(0), "{err}");
    let (st, body) = http(port, "GET", &format!("/runs/{sid}/report.json"), "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["scales"]["lr"], "log");
    assert_eq!(r["scales"]["opt"], "category");
    let rows = r["rows"].as_array().unwrap();
    let completed = rows.iter().filter(|r| r["status"] == "completed").count();
    assert!(
        (1..20).contains(&completed),
        "{} trials, {completed} completed",
        rows.len()
    );
    assert!(
        rows.iter()
            .all(|r| r["status"] == "completed" || r["status"] == "cancelled"),
        "{body}"
    );
    assert!(
        rows.iter()
            .filter(|r| r["status"] == "cancelled")
            .all(|r| r["reason"]
                .as_str()
                .unwrap_or("")
                .contains("labhost cancel")),
        "{body}"
    );
    ui.signal(libc::SIGINT);
    ui.finish();
    // No trial process is left.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 0.5; echo"),
        "a trial runs on"
    );
}

/// The queue page: the GPUs with who holds them (the ledger) and the running and queued
/// jobs; its event stream sends the page's content again when it changes.
#[test]
fn the_queue_page_shows_gpu_holders_and_jobs_and_follows_them() {
    let t = TestCmd::new().env("LABHOST_FAKE_GPUS", "2x24GiB").file(
        "job.rhai",
        r#"jobs::workers(1);
        let a = jobs::submit(#{name: "holder", num_gpus: 1, command: "sleep 30"});
        let b = jobs::submit(#{name: "waiting", command: "true"});
        print(a.id); print(b.id);
        print(a.wait());"#,
    );
    let (ui, port) = dashboard(&t);
    // Before: both GPUs free, nothing running.
    let (st, page) = http(port, "GET", "/queue", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    assert_eq!(
        page.matches("<td class=held>free</td>").count(),
        2,
        "{page}"
    );
    assert!(page.contains("<span id=running-count>0</span>"), "{page}");
    // The event stream, opened now, sends what changes.
    use std::io::{BufRead, Write};
    let mut es = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    es.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        es,
        "GET /queue/events HTTP/1.0\r\nHost: x\r\nCookie: labhost_token=s3cret\r\n\r\n"
    )
    .unwrap();
    let mut events = std::io::BufReader::new(es);
    let mut job = t.spawn(["run", "job.rhai"]);
    let a = job.line();
    let b = job.line();
    assert!(
        a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok(),
        "{a} {b}"
    );
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !(seen.contains(&format!("job {a}</a> (pid")) && seen.contains("running-count>1<")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never showed the job: {seen}"
        );
        let mut l = String::new();
        events.read_line(&mut l).unwrap();
        if let Some(d) = l.strip_prefix("data: ") {
            seen = serde_json::from_str::<String>(d.trim()).unwrap();
        }
    }
    // The page, loaded now: one GPU held by the job, it runs, the other waits (one worker).
    let (_, page) = http(port, "GET", "/queue", "s3cret");
    assert!(
        page.contains(&format!("<a href=\"/runs/{a}\">job {a}</a> (pid")),
        "{page}"
    );
    assert_eq!(
        page.matches("<td class=held>free</td>").count(),
        1,
        "{page}"
    );
    assert!(page.contains("<span id=queued-count>1</span>"), "{page}");
    assert!(
        page.contains(&format!(
            "<a href=\"/runs/{b}\">{b}</a></td><td>job</td><td>waiting</td>"
        )),
        "{page}"
    );
    let (st, _) = http(port, "POST", &format!("/runs/{a}/cancel"), "s3cret");
    assert!(st.contains(" 303 "), "{st}");
    assert_eq!(job.line(), "cancelled");
    job.finish();
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// The cron page: each entry of the schedules this state directory ran, its last fire (by
/// hand here), its run and outcome; nothing serves it, so no next fire.
#[test]
fn the_cron_page_shows_entries_with_their_last_fire_and_outcome() {
    let t = TestCmd::new()
        .file("ok.rhai", "print(\"fine\");")
        .file("bad.rhai", "throw \"boom\";")
        .file(
            "s.yml",
            "- {name: nightly, schedule: '0 3 * * *', timezone: Europe/Berlin, script: ok.rhai}\n- {name: broken, schedule: '@yearly', script: bad.rhai}\n",
        );
    let (ui, port) = dashboard(&t);
    let (st, page) = http(port, "GET", "/cron", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    assert!(page.contains("<p id=none>no schedule has run"), "{page}");
    let (code, _, err) = t.spawn(["cron", "s.yml", "--once", "nightly"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = t.spawn(["cron", "s.yml", "--once", "broken"]).finish();
    assert_ne!(code, Some(0));
    let (_, page) = http(port, "GET", "/cron", "s3cret");
    assert!(
        page.contains("not served: no labhost cron runs it now"),
        "{page}"
    );
    let row = |entry: &str| {
        let from = page
            .find(&format!("<tr data-entry=\"{entry}\">"))
            .unwrap_or_else(|| panic!("{entry} missing: {page}"));
        page[from..from + page[from..].find("</tr>").unwrap()].to_string()
    };
    let nightly = row("nightly");
    assert!(
        nightly.contains("<td>0 3 * * *</td><td>Europe/Berlin</td>"),
        "{nightly}"
    );
    assert!(
        nightly.contains(" (by hand)</td><td><a href=\"/runs/"),
        "{nightly}"
    );
    assert!(
        nightly.contains("<td class=\"completed\">completed</td><td>-</td>"),
        "{nightly}"
    );
    let broken = row("broken");
    assert!(broken.contains("<td class=\"failed\">failed"), "{broken}");
    assert!(broken.contains("boom"), "{broken}");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// A run of Azure ML links to its page in the studio (its `azureml.studio_url` tag); a tag
/// that is not an https address is not made a link.
#[test]
fn an_azure_runs_page_links_to_the_studio() {
    let t = TestCmd::new()
        .file(
            "a.rhai",
            "track::set_tag(\"azureml.studio_url\", \"https://ml.azure.com/runs/job-7?wsid=/subscriptions/s&tid=t\");",
        )
        .file(
            "b.rhai",
            "track::set_tag(\"azureml.studio_url\", \"javascript:alert(1)\");",
        );
    for f in ["a.rhai", "b.rhai"] {
        let (code, _, err) = t.spawn(["run", f]).finish();
        assert_eq!(code, Some(0), "{err}");
    }
    let (_, runs, _) = t.spawn(["runs", "--json"]).finish();
    let v: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{runs}");
    let (ui, port) = dashboard(&t);
    let (a, b) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
    let (_, page) = http(port, "GET", &format!("/runs/{a}"), "s3cret");
    assert!(
        page.contains("<a id=studio href=\"https://ml.azure.com/runs/job-7?wsid=/subscriptions/s&amp;tid=t\" rel=\"noopener noreferrer\" target=_blank>open in Azure ML studio</a>"),
        "{page}"
    );
    let (_, page) = http(port, "GET", &format!("/runs/{b}"), "s3cret");
    assert!(!page.contains("id=studio"), "{page}");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// A run's outputs and artifacts in the browser: folders listed, each kind of file previewed
/// (CSV as a table, JSON pretty-printed, text, images, HTML sandboxed), raw files served so
/// that they cannot run script as the dashboard, and nothing outside the run's folders
/// reachable (`..`, a symlink planted by the job, other folders of the run).
#[test]
fn a_runs_files_are_browsed_and_previewed_beneath_its_folders() {
    let t = TestCmd::new().file(
        "f.rhai",
        r#"
        let j = jobs::submit(#{name: "files", command: `set -e; o=$LABHOST_RUN_DIR/outputs
            mkdir -p $o/plots/deep
            printf 'epoch,loss,note\n1,0.5,"a, quoted"\n2,0.25,plain\n' > $o/scores.csv
            printf '{"best":{"lr":0.01,"acc":[0.9,0.95]}}' > $o/best.json
            printf 'not: [valid' > $o/bad.json
            printf '<h1>hi</h1><script>parent.document.title="owned"</script>' > $o/plots/report.html
            printf '\211PNG\r\n\032\n\000\000' > $o/plots/curve.png
            printf 'a\000b\377' > $o/model.bin
            echo deep > $o/plots/deep/x.txt
            ln -s /etc/hostname $o/leak`});
        print(j.id);
        print(j.wait());
        "#,
    );
    let (code, out, err) = t.spawn(["run", "f.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("completed"), "{out}{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    let (ui, port) = dashboard(&t);
    let get = |p: &str| http(port, "GET", &format!("/runs/{id}/{p}"), "s3cret");
    // The run page lists the top of outputs/, folders first.
    let (_, page) = http(port, "GET", &format!("/runs/{id}"), "s3cret");
    let files = page.split("<h2>Files</h2>").nth(1).expect(&page);
    let plots = files.find("plots/</a>").expect(files);
    let csv = files.find(">scores.csv</a>").expect(files);
    assert!(plots < csv, "{files}");
    assert!(
        files.contains(&format!("href=\"/runs/{id}/files/outputs/scores.csv\"")),
        "{files}"
    );
    // A folder two levels down, with crumbs back up.
    let (st, dir) = get("files/outputs/plots");
    assert!(st.contains(" 200 "), "{st}");
    assert!(
        dir.contains(">deep/</a>") && dir.contains(">report.html</a>"),
        "{dir}"
    );
    assert!(
        dir.contains(&format!("<a href=\"/runs/{id}/files/outputs\">outputs</a>")),
        "{dir}"
    );
    // CSV as a table, quotes understood.
    let (_, p) = get("files/outputs/scores.csv");
    assert!(
        p.contains("<tr><th>epoch</th><th>loss</th><th>note</th></tr>"),
        "{p}"
    );
    assert!(p.contains("<td>a, quoted</td>"), "{p}");
    // JSON pretty-printed; bad JSON says where it breaks and still shows the text.
    let (_, p) = get("files/outputs/best.json");
    assert!(
        p.contains("&quot;best&quot;: {\n    &quot;lr&quot;: 0.01,"),
        "{p}"
    );
    let (_, p) = get("files/outputs/bad.json");
    assert!(
        p.contains("not valid JSON: ") && p.contains(" at line 1 column "),
        "{p}"
    );
    assert!(p.contains("<pre id=preview>not: [valid</pre>"), "{p}");
    // Images and HTML are shown from the raw file; HTML in a sandboxed frame.
    let (_, p) = get("files/outputs/plots/curve.png");
    assert!(
        p.contains(&format!(
            "<img id=preview src=\"/runs/{id}/raw/outputs/plots/curve.png\""
        )),
        "{p}"
    );
    let (_, p) = get("files/outputs/plots/report.html");
    assert!(p.contains("<iframe id=preview sandbox "), "{p}");
    let (_, p) = get("files/outputs/model.bin");
    assert!(p.contains("A binary file"), "{p}");
    // Raw: the bytes, typed, and sandboxed whatever they are.
    let (head, body) = http_head(
        port,
        "GET",
        &format!("/runs/{id}/raw/outputs/plots/report.html"),
        "s3cret",
    );
    assert!(head.contains(" 200 "), "{head}");
    let head_lc = head.to_ascii_lowercase();
    assert!(
        head_lc.contains("content-security-policy: sandbox"),
        "{head}"
    );
    assert!(
        head_lc.contains("x-content-type-options: nosniff"),
        "{head}"
    );
    assert!(head_lc.contains("content-type: text/html"), "{head}");
    assert!(body.contains("<script>parent.document.title"), "{body}");
    let (head, _) = http_head(
        port,
        "GET",
        &format!("/runs/{id}/raw/outputs/plots/curve.png"),
        "s3cret",
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/png"),
        "{head}"
    );
    // Nothing outside: the job's symlink, `..` (raw or encoded), other folders of the run.
    let (st, body) = get("files/outputs/leak");
    assert!(st.contains(" 400 "), "{st} {body}");
    assert!(body.contains("leads out"), "{body}");
    let (st, _) = get("raw/outputs/leak");
    assert!(st.contains(" 400 "), "{st}");
    for bad in [
        "raw/outputs/%2E%2E/stdout.log",
        "files/outputs/plots/%2e%2e/%2e%2e/spec.json",
        "raw/logs/x",
        "files/wd",
    ] {
        let (st, _) = get(bad);
        assert!(st.contains(" 400 "), "{bad}: {st}");
    }
    let (st, _) = get("files/outputs/nope.txt");
    assert!(st.contains(" 404 "), "{st}");
    // Without the token: nothing.
    let (st, _) = http(
        port,
        "GET",
        &format!("/runs/{id}/raw/outputs/scores.csv"),
        "wrong",
    );
    assert!(st.contains(" 401 "), "{st}");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// A sweep's page shows where each trial ran: the GPUs it was given (as its
/// CUDA_VISIBLE_DEVICES), kept with the trial after it ended.
#[test]
fn a_sweeps_page_shows_each_trials_gpus() {
    let yml = "type: sweep\ntrial: {command: 'echo $CUDA_VISIBLE_DEVICES; sleep 0.5', num_gpus: 2}\nsampling_algorithm: grid\nsearch_space: {x: {type: choice, values: [1, 2]}}\nobjective: {goal: minimize, primary_metric: l}\nlimits: {max_concurrent_trials: 2, max_total_trials: 2}\n";
    let t = TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "4x24GiB")
        .file("s.yml", yml);
    let (code, out, err) = t.spawn(["-q", "sweep", "s.yml", "--json"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sweep = r["sweep_id"].as_i64().expect(&out);
    // What each trial printed is what the page says it had.
    let mut had = Vec::new();
    for tr in r["trials"].as_array().unwrap() {
        let id = tr["run_id"].to_string();
        let (_, log, _) = t.spawn(["logs", &id]).finish();
        had.push((id, log.trim().to_string()));
    }
    let (ui, port) = dashboard(&t);
    let (_, page) = http(port, "GET", &format!("/runs/{sweep}"), "s3cret");
    assert!(page.contains("<th>GPUs</th>"), "{page}");
    assert!(
        page.contains("<p id=limits>0 of 2 trials left</p>"),
        "{page}"
    );
    let mut shown: Vec<String> = Vec::new();
    for (id, log) in &had {
        assert_eq!(log.split(',').count(), 2, "{log}");
        let row = page
            .split("<tr>")
            .find(|r| r.contains(&format!("<a href=\"/runs/{id}\">")))
            .expect(&page);
        assert!(row.contains(&format!("<td class=gpus>{log}</td>")), "{row}");
        shown.push(log.clone());
    }
    // Two trials at once on 4 GPUs: different GPUs.
    assert_ne!(shown[0], shown[1], "{shown:?}");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// The runs table shows the columns chosen (metrics, params, tags); by default every metric
/// and param of the page; sorting and paging keep the choice.
#[test]
fn the_runs_table_shows_the_columns_chosen() {
    let t = TestCmd::new().file(
        "r.rhai",
        r#"
        for lr in [0.1, 0.2] {
            jobs::submit(#{command: `echo '{"name": "loss", "value": ${lr}}' >> $LABHOST_METRICS`, params: #{lr: lr}}).wait();
        }
        track::set_tag("team", "vision");
        "#,
    );
    let (code, _, err) = t.spawn(["run", "r.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let (ui, port) = dashboard(&t);
    let head = |page: &str| -> Vec<String> {
        let thead = page
            .split("<thead>")
            .nth(1)
            .unwrap()
            .split("</thead>")
            .next()
            .unwrap();
        thead
            .split("<th>")
            .skip(1)
            .map(|c| {
                let c = c.split("</th>").next().unwrap();
                c.rsplit_once("\">")
                    .map_or(c, |x| x.1)
                    .trim_end_matches("</a>")
                    .to_string()
            })
            .collect()
    };
    let (_, page) = http(port, "GET", "/", "s3cret");
    let cols = head(&page);
    assert_eq!(
        cols[cols.len() - 2..],
        ["metrics.loss", "params.lr"],
        "{cols:?}"
    );
    // The tag is offered, not shown.
    assert!(
        page.contains("<input type=checkbox class=col value=\"tags.team\">"),
        "{page}"
    );
    let (st, page) = http(
        port,
        "GET",
        "/?columns=tags.team,params.lr&order_by=params.%60lr%60%20DESC",
        "s3cret",
    );
    assert!(st.contains(" 200 "), "{st}");
    let cols = head(&page);
    assert_eq!(
        cols[cols.len() - 2..],
        ["tags.team", "params.lr"],
        "{cols:?}"
    );
    assert!(!cols.contains(&"metrics.loss".to_string()), "{cols:?}");
    assert!(page.contains("<td>vision</td>"), "{page}");
    // Sort links keep the choice; the rows are in lr order, newest lr first.
    assert!(
        page.contains("&amp;columns=tags.team%2Cparams.lr\">params.lr</a>"),
        "{page}"
    );
    let a = page.find("<td>0.2</td>").expect(&page);
    let b = page.find("<td>0.1</td>").expect(&page);
    assert!(a < b, "sorted by lr descending");
    // Nonsense in the list is left out, not an error.
    let (st, page) = http(port, "GET", "/?columns=bogus,metrics.loss", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    assert_eq!(head(&page).last().unwrap(), "metrics.loss");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// The experiments page lists each experiment with its runs; an experiment's runs table
/// holds its runs only, and its links keep it.
#[test]
fn experiments_list_their_runs() {
    let t = TestCmd::new().file(
        "e.rhai",
        r#"
        jobs::submit(#{command: "true", experiment: "cats", name: "c1"}).wait();
        jobs::submit(#{command: "true", experiment: "cats", name: "c2"}).wait();
        jobs::submit(#{command: "true", experiment: "dogs", name: "d1"}).wait();
        "#,
    );
    let (code, _, err) = t.spawn(["run", "e.rhai"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let (ui, port) = dashboard(&t);
    let (st, page) = http(port, "GET", "/experiments", "s3cret");
    assert!(st.contains(" 200 "), "{st}");
    let row = |name: &str| -> Vec<String> {
        let r = page
            .split("<tr>")
            .find(|r| r.contains(&format!(">{name}</a>")))
            .unwrap_or_else(|| panic!("{name}: {page}"));
        r.split("<td>")
            .skip(1)
            .map(|c| c.split("</td>").next().unwrap().to_string())
            .collect()
    };
    let cats = row("cats");
    assert_eq!((cats[2].as_str(), cats[3].as_str()), ("2", "0"), "{cats:?}");
    assert_eq!(row("dogs")[2], "1");
    let id = cats[1].clone();
    let (_, runs) = http(port, "GET", &format!("/?experiment={id}"), "s3cret");
    assert!(
        runs.contains("<h1>Runs of <span id=experiment>cats</span></h1>"),
        "{runs}"
    );
    assert!(
        runs.contains("<td>c1</td>") && runs.contains("<td>c2</td>"),
        "{runs}"
    );
    assert!(!runs.contains("<td>d1</td>"), "{runs}");
    assert!(
        runs.contains(&format!("&amp;experiment={id}\">status</a>")),
        "{runs}"
    );
    assert!(
        runs.contains(&format!(
            "<input type=hidden name=experiment value=\"{id}\">"
        )),
        "{runs}"
    );
    let (st, _) = http(port, "GET", "/?experiment=999", "s3cret");
    assert!(st.contains(" 404 "), "{st}");
    ui.signal(libc::SIGINT);
    ui.finish();
}

/// `labhost ui` with the token `s3cret`, once it listens: the process and its port.
fn dashboard(t: &TestCmd) -> (crate::util::Running, u16) {
    let port = free_port();
    let ui = t.spawn(["ui", "--port", &port.to_string(), "--token", "s3cret"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (ui, port)
}
