//! The azure module against the offline rig: the Rust ARM/AAD/run-history fake
//! (tests/azure_fake.rs, in this process) and, for the `#[ignore]`d tests that
//! tests/run-all.sh runs, a real Azurite (blobs) and a real `mlflow server` (metrics).
use serde_json::Value;

use crate::azure_fake::{self as fake, Fake};
use crate::util::{Background, TestCmd};

/// The fakes one test talks to.
struct Rig {
    fake: Fake,
    _azurite: Option<Background>,
    _mlflow: Option<Background>,
}

impl Rig {
    /// The ARM fake only (no blobs, no metrics).
    fn arm() -> Rig {
        Rig {
            fake: Fake::start(None, None),
            _azurite: None,
            _mlflow: None,
        }
    }

    /// The fake with a real Azurite and, with `mlflow`, a real mlflow server.
    fn full(mlflow: bool) -> Rig {
        let bin = std::env::var("LABHOST_TEST_AZURITE")
            .expect("LABHOST_TEST_AZURITE (tests/run-all.sh installs Azurite)");
        let az = crate::util::azurite(&bin);
        let ml = mlflow.then(|| {
            crate::util::MlflowServer::start(
                &std::env::var("LABHOST_TEST_MLFLOW_SERVER").expect("LABHOST_TEST_MLFLOW_SERVER"),
            )
        });
        Rig {
            fake: Fake::start(Some(az.url.clone()), ml.as_ref().map(|m| m.url.clone())),
            _azurite: Some(az),
            _mlflow: ml,
        }
    }

    /// A labhost command in a temp folder holding `settings.yml` for the fakes, with the
    /// service principal's secret in the environment and fast polling.
    fn cmd(&self) -> TestCmd {
        TestCmd::new()
            .file("settings.yml", self.fake.settings_yaml(""))
            .env("APPLICATION_KEY", fake::SECRET)
            .env("AZUREML_RUN_POLLING_INTERVAL_MIN", "0.05")
            .env("AZUREML_RUN_POLLING_INTERVAL_MAX", "0.2")
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// `--dry-run` of every Azure example YAML: the bodies pass the fake's validation of the
/// recorded shapes, field by field where it matters, and nothing touches the network (the
/// ARM URL points at a closed port).
#[test]
fn dry_run_prints_the_rest_bodies_of_every_example_without_network() {
    let closed = format!("http://127.0.0.1:{}", crate::util::free_port());
    for f in [
        "command-hello-world.yml",
        "command-pytorch-distributed.yml",
        "sweep-hello.yml",
        "sweep-sklearn-iris.yml",
        "pipeline-hello-io.yml",
        "pipeline-with-sweep.yml",
    ] {
        let o = TestCmd::new()
            .fixture("azureml")
            .file("src/main.py", "print(1)\n")
            .file("train.yml", "$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json\ntype: command\ninputs:\n  data: {type: uri_file}\n  c_value: {type: number, default: 1.0}\n  kernel: {type: string, default: rbf}\n  coef0: {type: number, default: 0}\noutputs:\n  model_output: {type: mlflow_model}\n  test_data: {type: uri_folder}\ncode: ./src\nenvironment: azureml:AzureML-sklearn-1.5@latest\ncommand: python main.py --data ${{inputs.data}} --C ${{inputs.c_value}} --kernel ${{inputs.kernel}} --coef0 ${{inputs.coef0}} --model ${{outputs.model_output}} --test ${{outputs.test_data}}\n")
            .file("predict.yml", "type: command\ninputs:\n  model: {type: mlflow_model}\n  test_data: {type: uri_folder}\noutputs:\n  predict_result: {type: uri_folder}\ncode: ./src\nenvironment: azureml:AzureML-sklearn-1.5@latest\ncommand: python main.py --model ${{inputs.model}} --test ${{inputs.test_data}} --out ${{outputs.predict_result}}\n")
            .file("settings.yml", format!("variables:\n  subscription_id: {}\n  resource_group: {}\n  workspace_name: {}\n  arm_url: {closed}\n  authority_url: {closed}\n", fake::SUB, fake::RG, fake::WS_NAME))
            .args(["submit", f, "--dry-run"])
            .run();
        assert_eq!(o.code, 0, "{f}: {}", o.stderr);
        let plan = json(&o.stdout);
        let steps = plan["steps"].as_array().unwrap();
        let put = &steps.last().unwrap()["request"];
        assert_eq!(put["method"], "PUT", "{f}");
        assert!(
            put["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{closed}{}/jobs/", fake::ws_path())),
            "{f}"
        );
        assert!(
            put["url"]
                .as_str()
                .unwrap()
                .ends_with("?api-version=2024-10-01"),
            "{f}"
        );
        // What the service would have registered by then.
        let mut st = fake::State::default();
        for s in steps {
            if let Some(p) = s["request"]["path"].as_str() {
                if let Some(rest) = p.strip_prefix(&format!("{}/codes/", fake::ws_path())) {
                    st.codes
                        .insert(rest.replace("/versions/", "/"), Value::Null);
                }
                if let Some(rest) = p.strip_prefix(&format!("{}/environments/", fake::ws_path())) {
                    st.envs.insert(rest.replace("/versions/", "/"), Value::Null);
                }
                if let Some(rest) = p.strip_prefix(&format!("{}/components/", fake::ws_path())) {
                    st.components
                        .insert(rest.replace("/versions/", "/"), Value::Null);
                }
            }
        }
        let text = serde_json::to_string(&put["body"])
            .unwrap()
            .replace("@latest", ":33")
            .replace("/versions/<hash>", "/versions/h");
        st.envs
            .insert("CliV2AnonymousEnvironment/h".into(), Value::Null);
        let body = json(&text);
        fake::validate(&body, &st)
            .unwrap_or_else(|e| panic!("{f}: the fake refuses the body: {e}\n{text}"));
        let p = &body["properties"];
        match f {
            "sweep-hello.yml" => {
                assert_eq!(
                    p["searchSpace"]["B"],
                    serde_json::json!(["choice", [["hello", "world", "hello_world"]]])
                );
                assert_eq!(
                    p["searchSpace"]["C"],
                    serde_json::json!(["uniform", [0.1, 1.0]])
                );
                assert_eq!(
                    p["limits"],
                    serde_json::json!({"jobLimitsType": "Sweep", "maxTotalTrials": 4, "maxConcurrentTrials": 2, "timeout": "PT1H"})
                );
                assert_eq!(
                    p["objective"],
                    serde_json::json!({"goal": "minimize", "primaryMetric": "random_metric"})
                );
                assert_eq!(
                    p["inputs"]["A"],
                    serde_json::json!({"jobInputType": "literal", "value": "0.5"})
                );
                assert_eq!(p["trial"]["command"], "python hello-sweep.py --A ${{inputs.A}} --B ${{search_space.B}} --C ${{search_space.C}}");
                assert!(p["trial"]["codeId"].as_str().unwrap().contains("/codes/"));
                assert_eq!(p["experimentName"], "labhost-greeting-sweep");
            }
            "command-pytorch-distributed.yml" => {
                assert_eq!(
                    p["distribution"],
                    serde_json::json!({"distributionType": "PyTorch", "processCountPerInstance": 1})
                );
                assert_eq!(p["resources"]["instanceCount"], 2);
                assert_eq!(
                    p["computeId"],
                    format!("{}/computes/a100-pool", fake::ws_path())
                );
                assert_eq!(p["inputs"]["images"]["jobInputType"], "uri_folder");
            }
            "pipeline-with-sweep.yml" => {
                // The node format azure-ai-ml sends: a sweep node whose trial is a registered
                // component, bindings as literal values.
                assert_eq!(p["jobs"]["sweep_step"]["type"], "sweep");
                assert!(p["jobs"]["sweep_step"]["trial"]["componentId"]
                    .as_str()
                    .unwrap()
                    .contains("/components/azureml_anonymous/versions/"));
                assert_eq!(
                    p["jobs"]["predict_step"]["inputs"]["model"],
                    serde_json::json!({"value": "${{parent.jobs.sweep_step.outputs.model_output}}", "job_input_type": "literal"})
                );
            }
            _ => {}
        }
    }
}

/// A tagged secret (an environment secret the secrets module read) is redacted in the body.
#[test]
fn secrets_never_reach_tags_or_the_printed_body() {
    let o = TestCmd::new()
        .file("labhost.private.yml", "secrets:\n  datasets_key: very-secret-key-123\n")
        .file("job.yml", "command: echo hi\nenvironment: azureml:e:1\n")
        .file("main.rhai", "let k = secrets::get(\"datasets_key\");\nlet p = azure::submit(\"job.yml\", #{dry_run: true, tags: #{key: k}, args: #{subscription_id: \"s\", resource_group: \"r\", workspace_name: \"w\"}});\nprint(p.steps[0].request.body.properties.tags.key);")
        .args(["run", "main.rhai"])
        .run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "***\n");
}

/// Submit a sweep, wait (status transitions printed), list its children across several pages
/// of run history, and see the remote run next to local ones in `labhost jobs`.
#[test]
fn submit_wait_and_children_across_pages() {
    let rig = Rig::arm();
    let t = rig.cmd().file(
        "sweep.yml",
        "type: sweep\ntrial:\n  command: python train.py --lr ${{search_space.lr}}\n  environment: azureml:AzureML-sklearn-1.5@latest\nsampling_algorithm: grid\nsearch_space:\n  lr: {type: choice, values: [0.1, 0.01, 0.001, 0.0001, 0.00001]}\nobjective: {goal: maximize, primary_metric: acc}\nexperiment_name: paged\n",
    );
    let (code, out, err) = t.spawn(["submit", "sweep.yml", "--wait"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let name = out.lines().next().unwrap().to_string();
    assert!(name.starts_with("paged_"), "{out}");
    assert!(out.contains(&format!("{name}  Sweep  Completed")), "{out}");
    assert!(
        err.contains(&format!("{name}: Queued\n"))
            && err.contains("Queued → Running")
            && err.contains("Running → Completed"),
        "{err}"
    );
    assert!(
        err.contains(&format!("studio       https://ml.azure.com/runs/{name}")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("most_recent_run.txt")).unwrap(),
        format!("paged:{name}\n")
    );
    // `@latest` goes as written, as azure-ai-ml sends it: the service resolves it (a curated
    // environment is not in the workspace, so looking it up there would refuse it).
    let sent = rig.fake.state.lock().unwrap().jobs[&name].v["properties"]["trial"]["environmentId"]
        .clone();
    assert_eq!(sent, "azureml:AzureML-sklearn-1.5@latest");
    let (code, out, err) = t
        .spawn(["azure", "status", &format!("paged:{name}")])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("children     5 (5 Completed)"), "{out}");
    assert!(out.contains(&format!("best child   {name}_0")), "{out}");
    let pages = rig
        .fake
        .requests()
        .iter()
        .filter(|r| r.contains(&format!("/runs/{name}/children")))
        .count();
    // 5 children, 2 per page: 3 pages for the copy into the store after the wait, 3 for
    // `azure status`.
    assert_eq!(pages, 6);
    let (code, out, _) = t.spawn(["jobs"]).finish();
    assert_eq!(code, Some(0));
    assert!(
        out.contains("azure submit sweep.yml") && out.contains("completed"),
        "{out}"
    );
    // The sweep's children were copied into the store when the wait ended: the report of the
    // remote run is a sweep report with one row per child and its parameters.
    let (_, out, _) = t.spawn(["jobs", "--json"]).finish();
    let id = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .into_iter()
        .find(|j| j["name"] == name.as_str())
        .unwrap()["id"]
        .to_string();
    let (code, csv, err) = t.spawn(["report", &id, "--format", "csv"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 6, "{csv}");
    assert!(rows[0].starts_with("run_id,name,status,params.lr"), "{csv}");
    assert!(
        rows[1].contains(&format!("{name}_0,completed,0.1")),
        "{csv}"
    );
    assert!(rig.fake.rejected().is_empty(), "{:?}", rig.fake.rejected());
}

/// A wrong secret: Azure AD's AADSTS error is shown, the secret is not; exit 1.
#[test]
fn bad_credentials_show_the_aad_error_not_the_secret() {
    let rig = Rig::arm();
    let o = rig
        .cmd()
        .env("APPLICATION_KEY", "wrong-secret-Zz9")
        .args(["azure", "runs"])
        .run();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("AADSTS7000215: Invalid client secret provided"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(fake::APP) && o.stderr.contains(fake::TENANT),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("wrong-secret-Zz9") && !o.stdout.contains("wrong-secret-Zz9"));
    // No secret anywhere: the error names where it would come from.
    let o = rig
        .cmd()
        .env("APPLICATION_KEY", "")
        .args(["azure", "runs", "--config", "auth=service_principal"])
        .run();
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("APPLICATION_KEY"), "{}", o.stderr);
}

/// 429 with Retry-After: the client waits that long and the call succeeds.
#[test]
fn throttled_calls_wait_for_retry_after() {
    let rig = Rig::arm();
    rig.fake.state.lock().unwrap().throttle = 2;
    let o = rig.cmd().args(["azure", "runs"]).run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let st = rig.fake.state.lock().unwrap();
    let r = &st.requests;
    assert!(
        r.len() >= 3 && r[0].0 == r[1].0 && r[1].0 == r[2].0,
        "{:?}",
        r.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for w in r[..3].windows(2) {
        assert!(
            w[1].1.duration_since(w[0].1) >= std::time::Duration::from_millis(950),
            "retried before Retry-After"
        );
    }
}

/// A token the service stops accepting (401 invalid_token) is dropped and fetched again
/// once; the call succeeds.
#[test]
fn an_expired_token_is_refreshed_once() {
    let rig = Rig::arm();
    let t = rig.cmd().file("main.rhai", "let a = azure::fetch_runs(\"x\", [], #{});\nazure::fetch_runs(\"x\", [], #{});\nprint(a.len());").args(["run", "main.rhai"]);
    // The token expires after the first call: the second call's first attempt gets 401.
    rig.fake.state.lock().unwrap().expire_after = Some(1);
    let o = t.run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let s = rig.fake.state.lock().unwrap();
    assert_eq!(
        s.token_scopes,
        vec!["https://management.azure.com/.default"; 2],
        "one token, then one refresh"
    );
}

/// A job that fails: its error is surfaced, the exit code is 1, the local record says failed.
#[test]
fn a_failed_job_surfaces_its_error() {
    let rig = Rig::arm();
    let t = rig.cmd().file(
        "job.yml",
        "command: python train.py; exit 1\nenvironment: azureml:env:2\nexperiment_name: failing\n",
    );
    let (code, out, err) = t.spawn(["submit", "job.yml", "--wait"]).finish();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("error        Execution failed. User process 'python' exited with status code 1: ValueError: loss is nan"), "{out}");
    let (_, jobs, _) = t.spawn(["jobs"]).finish();
    assert!(jobs.contains("failed"), "{jobs}");
}

/// Cancel: the request follows the 202 + Location operation; the job ends Canceled.
#[test]
fn a_cancelled_job_ends_canceled() {
    let rig = Rig::arm();
    let t = rig.cmd().file(
        "job.yml",
        "command: sleep 3600\nenvironment: azureml:env:2\nexperiment_name: slow\n",
    );
    let (code, out, err) = t.spawn(["submit", "job.yml"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let name = out.trim().to_string();
    let (code, out, err) = t.spawn(["azure", "cancel", &name]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("{name}: ")), "{out}");
    assert!(
        rig.fake
            .requests()
            .iter()
            .any(|r| r.contains("/operationResults/cancel-")),
        "the LRO was followed"
    );
    let (code, out, err) = t.spawn(["azure", "status", &name]).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Canceled") || out.contains("CancelRequested"),
        "{out}"
    );
    let (_, out, _) = t.spawn(["azure", "status", &name]).finish();
    assert!(out.contains(&format!("{name}  Command  Canceled")), "{out}");
}

/// Missing workspace settings: the error names each key and the files it would come from.
#[test]
fn missing_settings_name_the_key_and_where_to_set_it() {
    let o = TestCmd::new()
        .file("settings.yml", "variables:\n  subscription_id: s\n")
        .args(["azure", "runs"])
        .run();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(
            "resource_group, workspace_name not set: set 'resource_group:' under 'variables:' in"
        ),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("settings.yml"), "{}", o.stderr);
    let o = TestCmd::new()
        .file(
            "settings.yml",
            "variables:\n  subscription_id: s\n  max_run_duration: 2 weeks\n",
        )
        .args(["azure", "runs"])
        .run();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("max_run_duration: '2 weeks'"),
        "{}",
        o.stderr
    );
    // A dry run needs them as a submit does: no URLs with empty parts, exit 1.
    let o = TestCmd::new()
        .file(
            "job.yml",
            "type: command\ncommand: echo hi\nenvironment: azureml:x@1\n",
        )
        .args(["submit", "job.yml", "--dry-run"])
        .run();
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(
        o.stderr
            .contains("subscription_id, resource_group, workspace_name not set"),
        "{}",
        o.stderr
    );
}

/// The issue's end-to-end: a script loads the settings, submits Azure's `sweep-hello.yml`
/// unchanged (code uploaded to Azurite for real), waits, lists the children, downloads every
/// child's outputs from Azurite and reads their metrics from mlflow.
#[test]
#[ignore = "needs Azurite and an mlflow server (tests/run-all.sh starts them)"]
fn end_to_end_sweep_hello_through_azurite_and_mlflow() {
    let rig = Rig::full(true);
    let script = r#"
let cfg = azure::config(#{});
assert_eq(cfg.workspace_name, "ws-labhost");
let job = azure::submit("sweep-hello.yml", #{wait: true, poll: 0.05});
assert_eq(job.status, "Completed");
let kids = azure::fetch_child_runs(job, #{status: "Completed", expected_splits: 4});
print(`children ${kids.len()}`);
for k in kids {
    let files = azure::download_run_outputs_by_prefix(k, "", `dl/${k.name}`);
    print(`${k.name} ${files.len()} ${k.metrics().loss} ${k.metric_history("loss").len()}`);
}
let ckpt = job.download_children("checkpoints", "cv");
print(ckpt.keys().len());
"#;
    let t = rig
        .cmd()
        .fixture("azureml")
        .file("src/hello-sweep.py", "print('hello')\n")
        .file("src/.amlignore", "*.ckpt\n")
        .file("src/old.ckpt", "must not be uploaded")
        .file("main.rhai", script);
    let (code, out, err) = t.spawn(["run", "main.rhai"]).finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "children 4", "{out}");
    for l in &lines[1..5] {
        // 4 files under outputs/, the latest loss 0.25 of a 2-point history.
        assert!(l.ends_with(" 4 0.25 2"), "{out}");
    }
    assert_eq!(lines[5], "4");
    // The wait copied the sweep into the local store: its report has the children's
    // parameters and metric histories.
    let (_, js, _) = t.spawn(["jobs", "--json"]).finish();
    let rec = serde_json::from_str::<Vec<Value>>(&js)
        .unwrap()
        .into_iter()
        .find(|j| j["kind"] == "remote")
        .unwrap();
    let (code, rep, err) = t
        .spawn(["report", &rec["id"].to_string(), "--format", "json"])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    let rep = json(&rep);
    assert_eq!(rep["what"], "sweep");
    assert_eq!(rep["rows"].as_array().unwrap().len(), 4);
    assert!(
        rep["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["metrics"]["loss"] == 0.25 && r["params"]["B"].is_string()),
        "{rep}"
    );
    let job = rig.fake.state.lock().unwrap().order[0].clone();
    let f = t.path().join(format!("dl/{job}_1/checkpoints/best.ckpt"));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        format!("best {job}_1")
    );
    assert!(t.path().join(format!("cv/{job}_0/best.ckpt")).exists());
    assert!(
        !t.path()
            .join(format!("cv/{job}_0/checkpoints.txt"))
            .exists(),
        "outputs/checkpoints.txt is not under checkpoints/"
    );
    // The code snapshot in Azurite: the trial's files, not what .amlignore excludes.
    let st = rig.fake.state.lock().unwrap();
    let (_, code) = st
        .codes
        .iter()
        .next()
        .expect("a code version was registered");
    let uri = code["properties"]["codeUri"].as_str().unwrap().to_string();
    drop(st);
    let az = rig._azurite.as_ref().unwrap().url.clone();
    let prefix = uri
        .strip_prefix(&format!("{az}/{}/", fake::BLOB_CONTAINER))
        .unwrap()
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names: Vec<String> = rt
        .block_on(fake::container(&az, fake::BLOB_CONTAINER).list(&prefix))
        .unwrap()
        .into_iter()
        .map(|b| b.name.trim_start_matches(&prefix).to_string())
        .collect();
    assert_eq!(names, vec!["/.amlignore", "/hello-sweep.py"]);
    assert!(rig.fake.rejected().is_empty(), "{:?}", rig.fake.rejected());
    // The script asked each datastore for its key once (the code's, the outputs'), not once
    // per child download.
    let secrets = rig
        .fake
        .requests()
        .iter()
        .filter(|r| r.ends_with("/listSecrets"))
        .count();
    assert_eq!(secrets, 2);
    // Submitting the same code again uploads nothing: the code version is found by its hash.
    let (code, _, err) = t.spawn(["submit", "sweep-hello.yml"]).finish();
    assert_eq!(code, Some(0), "{err}");
    let puts = rig
        .fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT") && r.contains("/codes/"))
        .count();
    assert_eq!(puts, 1, "the second submit reused the code version");
}

/// Every example in the azure module's documentation, against the fakes.
#[test]
#[ignore = "needs Azurite and an mlflow server (tests/run-all.sh starts them)"]
fn azure_doc_examples_run_against_the_fakes() {
    let rig = Rig::full(true);
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("azure-settings.yml");
    std::fs::write(&settings, rig.fake.settings_yaml("")).unwrap();
    let settings = settings.display().to_string();
    let env = [
        ("LABHOST_AZURE_SETTINGS", settings.as_str()),
        ("APPLICATION_KEY", fake::SECRET),
        ("AZUREML_RUN_POLLING_INTERVAL_MIN", "0.05"),
        ("AZUREML_RUN_POLLING_INTERVAL_MAX", "0.2"),
    ];
    let ran = crate::examples::run_examples(|m| m == "azure", &env);
    assert!(ran >= 30, "only {ran} examples ran");
    assert!(rig.fake.rejected().is_empty(), "{:?}", rig.fake.rejected());
}

/// `--wait --timeout`: the clock starts at Running (the fake keeps a `sleep 3600` job
/// Running); the wait gives up with exit 1 and says the job goes on.
#[test]
fn wait_timeout_counts_from_running() {
    let rig = Rig::arm();
    let t = rig.cmd().file(
        "job.yml",
        "command: sleep 3600\nenvironment: azureml:env:2\nexperiment_name: slow\n",
    );
    let (code, out, err) = t
        .spawn(["submit", "job.yml", "--wait", "--timeout", "0.3"])
        .finish();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("Queued → Running")
            && err.contains(
                "is still Running after 0 s in Running; it goes on (labhost azure cancel slow:"
            ),
        "{err}"
    );
}

/// However many calls want a token at once, Azure AD is asked once per scope; a second
/// scope (storage) gets its own token.
#[test]
fn concurrent_callers_share_one_token_fetch() {
    let rig = Rig::arm();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("settings.yml");
    std::fs::write(&f, rig.fake.settings_yaml("")).unwrap();
    // The secret from the private file's `secrets:` section (a file without `variables:`).
    let private = t.path().join("private.yml");
    std::fs::write(
        &private,
        format!("secrets:\n  application_key: {}\n", fake::SECRET),
    )
    .unwrap();
    let cfg = labhost::modules::azure::config::load(&labhost::modules::azure::config::Request {
        settings: Some(f),
        private: Some(private),
        args: Default::default(),
    })
    .unwrap();
    let cl = std::sync::Arc::new(labhost::modules::azure::Client::new(cfg));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let toks = rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..16 {
            let cl = cl.clone();
            let scope = if i % 2 == 0 {
                "https://management.azure.com/.default"
            } else {
                "https://storage.azure.com/.default"
            };
            hs.push(tokio::spawn(
                async move { cl.auth.token(scope).await.unwrap() },
            ));
        }
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        out
    });
    let mut distinct = toks.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "one token per scope");
    let mut scopes = rig.fake.state.lock().unwrap().token_scopes.clone();
    scopes.sort();
    assert_eq!(
        scopes,
        vec![
            "https://management.azure.com/.default",
            "https://storage.azure.com/.default"
        ]
    );
}

/// A file above the single-request limit goes up as Put Block + Put Block List; Azurite
/// accepts the SharedKey signatures and gives back the same bytes.
#[test]
#[ignore = "needs Azurite (tests/run-all.sh installs it)"]
fn large_files_go_up_in_blocks_and_come_back_whole() {
    let bin = std::env::var("LABHOST_TEST_AZURITE").expect("LABHOST_TEST_AZURITE");
    let az = crate::util::azurite(&bin);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("big.bin");
    let data: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = fake::container(&az.url, "blocks");
    fake::create_containers(&az.url, &["blocks"], false);
    rt.block_on(async {
        c.put_file_sized(
            "dir/big file.bin",
            &src,
            1 << 20,
            1 << 20,
            &[("upload_status", "completed")],
        )
        .await
        .unwrap();
        let meta = c.metadata("dir/big file.bin").await.unwrap();
        assert_eq!(
            meta,
            vec![("upload_status".to_string(), "completed".to_string())]
        );
        let listed = c.list("dir/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].size),
            ("dir/big file.bin", data.len() as u64)
        );
        assert!(
            !listed[0].etag.is_empty(),
            "List Blobs gives each blob's ETag"
        );
        let back = t.path().join("back.bin");
        assert_eq!(
            c.get_to("dir/big file.bin", &back).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(&back).unwrap(), data);
        // A wrong key is refused by Azurite: the signature is what it checks.
        let bad = labhost::modules::azure::blob::Container::new(
            c.url.clone(),
            labhost::modules::azure::blob::Cred::SharedKey {
                account: fake::AZURITE_ACCOUNT.into(),
                key: b"not the key".to_vec(),
            },
        );
        let e = bad.list("dir/").await.unwrap_err();
        assert!(e.message.contains("403"), "{}", e.message);
    });
}

/// Ctrl-C during `submit --wait` in a terminal asks whether to cancel the job on Azure ML
/// too; "y" cancels it (the fake sees the cancel request), the command exits 130.
#[test]
fn ctrl_c_while_waiting_asks_whether_to_cancel_the_job() {
    use expectrl::{ControlCode, Expect, Session};
    let rig = Rig::arm();
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("settings.yml"), rig.fake.settings_yaml("")).unwrap();
    std::fs::write(
        t.path().join("job.yml"),
        "command: sleep 3600\nenvironment: azureml:env:2\nexperiment_name: slow\n",
    )
    .unwrap();
    let mut c = std::process::Command::new(crate::util::BIN);
    c.args(["submit", "job.yml", "--wait"])
        .env("NO_COLOR", "1")
        .env("LABHOST_HOME", t.path().join(".labhost"))
        .env("APPLICATION_KEY", fake::SECRET)
        .env("AZUREML_RUN_POLLING_INTERVAL_MIN", "0.05")
        .env("AZUREML_RUN_POLLING_INTERVAL_MAX", "0.2")
        .env("TERM", "xterm")
        .current_dir(t.path());
    let mut s = Session::spawn(c).expect("spawn labhost");
    s.set_expect_timeout(Some(std::time::Duration::from_secs(20)));
    s.expect("Queued → Running").unwrap();
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("on Azure ML too? [y/N]").unwrap();
    s.send_line("y").unwrap();
    s.expect("cancellation of slow_").unwrap();
    s.expect(expectrl::Eof).unwrap();
    let st = rig.fake.state.lock().unwrap();
    let name = st.order[0].clone();
    assert!(st.jobs[&name].cancel, "the job was asked to cancel");
}

/// The differential test against Microsoft's SDK (`tests/azure_sdk`): 40+ job files we wrote
/// (command, sweep and pipeline jobs; environments by reference, registry, image, conda,
/// `file:` and build context; inputs and outputs of every type and mode; distributions,
/// limits, early termination, every search-space expression) go through azure-ai-ml's
/// `MLClient.jobs.create_or_update` (offline, over a recording transport) and through
/// `labhost submit` to the same fake; what each sends Azure ML (the job and the environments,
/// components and data it registers) must be equal field by field, bar the differences
/// listed with their reasons in tests/azure_sdk/differences.json.
#[test]
#[ignore = "needs azure-ai-ml (tests/run-all.sh installs it)"]
fn job_files_go_to_azure_ml_as_azure_ai_ml_sends_them() {
    let python =
        std::env::var("LABHOST_TEST_AZURE_SDK_PYTHON").expect("LABHOST_TEST_AZURE_SDK_PYTHON");
    let root = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new(python)
        .arg(format!("{root}/tests/azure_sdk/harness.py"))
        .arg(crate::util::BIN)
        .current_dir(format!("{root}/tests/azure_sdk"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    let cases = crate::util::count_files(&format!("{root}/tests/azure_sdk/cases"), "yml");
    assert!(cases >= 40, "the corpus has {cases} job files");
    assert!(
        out.contains(&format!("{cases} cases: 0 unexplained differences, 0 open")),
        "{out}"
    );
    // Most files are sent exactly as the SDK sends them, not merely explained.
    let same = out.lines().filter(|l| l.ends_with("(same)")).count();
    assert!(same >= cases - 5, "{out}");
}

/// A job file's workspace inputs run here: a datastore folder, the same folder as a data
/// asset `@latest`, and a datastore file are fetched through the workspace (its datastore
/// key, Azurite) into the input cache and handed over as a folder and a file. A blob changed
/// in the store gives the next run a new folder; the one an earlier job read is left as it was.
#[test]
#[ignore = "needs Azurite (tests/run-all.sh installs it)"]
fn workspace_inputs_run_here_through_the_datastore_and_the_cache() {
    let rig = Rig::full(false);
    let az = rig._azurite.as_ref().unwrap().url.clone();
    let c = fake::container(&az, fake::BLOB_CONTAINER);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |name: &str, body: &str| rt.block_on(c.put(name, body.as_bytes().to_vec())).unwrap();
    put("rows/a.csv", "1,2\n");
    put("rows/sub/b.csv", "3,4\n");
    put("single.txt", "hello\n");
    // A public container, read anonymously through its wasbs:// URI.
    fake::create_containers(&az, &["open"], true);
    let open = fake::container(&az, "open");
    rt.block_on(open.put("flowers/iris.csv", b"5.1,setosa\n".to_vec()))
        .unwrap();
    let job = "type: command\ncommand: cat ${{inputs.folder}}/a.csv ${{inputs.folder}}/sub/b.csv ${{inputs.one}} ${{inputs.public}}/iris.csv; test ${{inputs.folder}} = ${{inputs.asset}} && echo same folder; echo ${{inputs.folder}}\ninputs:\n  folder:\n    type: uri_folder\n    path: azureml://datastores/workspaceblobstore/paths/rows/\n  asset:\n    type: uri_folder\n    path: azureml:labhost-rows@latest\n  one:\n    type: uri_file\n    path: azureml://datastores/workspaceblobstore/paths/single.txt\n  public:\n    type: uri_folder\n    path: wasbs://open@devstoreaccount1.blob.core.windows.net/flowers\n";
    let t = rig.cmd().file("job.yml", job);
    let run = |t: &TestCmd| {
        let (code, out, err) = t.spawn(["sweep", "job.yml", "--json", "--rerun"]).finish();
        assert_eq!(code, Some(0), "{out}\n{err}");
        let r = json(&out);
        let id = r["trials"][0]["run_id"].to_string();
        let (_, logs, _) = t.spawn(["logs", &id]).finish();
        logs
    };
    let first = run(&t);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(
        &lines[..5],
        ["1,2", "3,4", "hello", "5.1,setosa", "same folder"],
        "{first}"
    );
    let folder = std::path::PathBuf::from(lines[5]);
    assert!(
        folder.starts_with(t.path().join(".labhost/cache/inputs/folders")),
        "{first}"
    );
    // One blob changes: the next run sees it in a new folder; the old view is unchanged.
    put("rows/a.csv", "5,6\n");
    let second = run(&t);
    assert!(
        second.starts_with("5,6\n3,4\nhello\n5.1,setosa\nsame folder\n"),
        "{second}"
    );
    let folder2 = std::path::PathBuf::from(second.lines().nth(5).unwrap());
    assert_ne!(folder, folder2);
    assert_eq!(
        std::fs::read_to_string(folder.join("a.csv")).unwrap(),
        "1,2\n"
    );
    // Each distinct content is kept once: a.csv twice, b.csv, single.txt, iris.csv once each.
    let blobs = std::fs::read_dir(t.path().join(".labhost/cache/inputs/blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 5);
    // Without a workspace configured, such an input is refused by the dry run as by the run,
    // naming the input, before anything runs.
    let bare = TestCmd::new().file("job.yml", job);
    for args in [
        vec!["sweep", "job.yml", "--dry-run"],
        vec!["sweep", "job.yml"],
    ] {
        let (code, _, err) = bare.spawn(args).finish();
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("error[sweep.input]: ") && err.contains("input `asset`"),
            "{err}"
        );
        assert!(err.contains("Azure ML workspace"), "{err}");
    }
}
