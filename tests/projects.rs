//! Real project shapes run unchanged: a nussl-shaped project (a `scripts/` package with
//! relative imports, `runners/`, an experiment config with `${EXPERIMENT_KEY}`, a pipeline
//! with bare script names and `blocking`, a dispatch file with `depends_on`) and
//! InnerEye-shaped settings files. Fixtures: tests/fixtures/.
use crate::util::TestCmd;

fn ledger(t: &TestCmd) -> Vec<String> {
    std::fs::read_to_string(t.path().join("out/ledger.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn nussl_bare_script_names_run_as_modules_of_the_scripts_package() {
    let t = TestCmd::new()
        .fixture("nussl_project")
        .env("ARTIFACTS_DIRECTORY", "artifacts");
    // --dry-run shows `python -m scripts.<name>` (python3 where there is no `python`).
    let (code, out, err) = t
        .spawn(["pipeline", "--dry-run", "pipelines/prepare.yml"])
        .finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(" -m scripts.reorganize -y data/reorganize.yml"),
        "{out}"
    );
    assert!(
        out.contains(" -m scripts.train -y experiments/speech.yml --tag b"),
        "{out}"
    );
    assert!(out.contains("blocking"), "{out}");

    let (code, out, err) = t.spawn(["pipeline", "pipelines/prepare.yml"]).finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with("3 of 3 job(s) completed"), "{out}");
    let l = ledger(&t);
    let root = t.path().canonicalize().unwrap();
    assert_eq!(
        l[0],
        format!("reorganize speech-commands from {}", root.display()),
        "the blocking job first, run from the project root: {l:?}"
    );
    let mut trains: Vec<&String> = l[1..].iter().collect();
    trains.sort();
    assert_eq!(
        trains,
        [
            "train a on speech-commands epochs 3",
            "train b on speech-commands epochs 3"
        ]
    );

    // From a subfolder the project root is still where the jobs run.
    std::fs::remove_file(t.path().join("out/ledger.txt")).unwrap();
    let mut c = t.command();
    c.current_dir(t.path().join("pipelines"))
        .args(["pipeline", "--rerun", "prepare.yml"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ledger(&t).len(), 3);
}

#[test]
fn a_bare_script_name_that_is_not_a_module_is_an_error_at_load_time() {
    let t = TestCmd::new().fixture("nussl_project").file(
        "pipelines/typo.yml",
        "jobs:\n- script: reorganize\n  config: -y data/reorganize.yml\n- script: run\n",
    );
    for args in [
        vec!["pipeline", "--dry-run", "pipelines/typo.yml"],
        vec!["pipeline", "pipelines/typo.yml"],
    ] {
        let (code, out, err) = t.spawn(&args).finish();
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains("error[pipeline.invalid]: pipelines/typo.yml:4:3: script `run` is not a module of a scripts/ package: no scripts/run.py in"),
            "{err}"
        );
        assert!(!out.contains("job(s)"), "nothing ran or was listed: {out}");
    }
    assert!(!t.path().join("out/ledger.txt").exists());
}

#[test]
fn nussl_dispatch_files_with_depends_on() {
    let t = TestCmd::new()
        .fixture("nussl_project")
        .env("LABHOST_FAKE_GPUS", "1x24GiB");
    let (code, out, err) = t.spawn(["pipeline", "pipelines/dispatch.yml"]).finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with("4 of 4 job(s) completed"), "{out}");
    // `report` is first in the file but waits for features and train, which wait for prepare.
    assert_eq!(
        std::fs::read_to_string(t.path().join("out/report.txt")).unwrap(),
        "features\nmodel on 0\n"
    );
    // The multi-line plain command was folded into one line.
    let (_, dry, _) = t
        .spawn(["pipeline", "--dry-run", "pipelines/dispatch.yml"])
        .finish();
    assert!(
        dry.contains("test -f out/prepared.txt && echo features > out/features.txt"),
        "{dry}"
    );
    let order: Vec<&str> = dry.lines().filter(|l| l.contains("gpus=")).collect();
    assert!(order[0].contains("echo prepared"), "{dry}");
    assert!(order[3].contains("> out/report.txt"), "{dry}");

    // An unknown name and a cycle are errors that say where.
    let bad = TestCmd::new()
        .file(
            "unknown.yml",
            "jobs:\n- name: a\n  command: 'true'\n- name: b\n  command: 'true'\n  depends_on: [a, prepair]\n",
        )
        .file(
            "cycle.yml",
            "jobs:\n- name: a\n  command: 'true'\n  depends_on: c\n- name: b\n  command: 'true'\n  depends_on: a\n- name: c\n  command: 'true'\n  depends_on: b\n",
        );
    let (code, _, err) = bad.spawn(["pipeline", "unknown.yml"]).finish();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("error[pipeline.invalid]: unknown.yml:6:19: jobs[1]: depends_on names \"prepair\", but no job has that name"),
        "{err}"
    );
    let (code, _, err) = bad.spawn(["pipeline", "--dry-run", "cycle.yml"]).finish();
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "error[pipeline.invalid]: cycle.yml:2:3: depends_on makes a cycle: a -> c -> b -> a"
        ),
        "{err}"
    );
}

#[test]
fn nussl_experiment_key_makes_one_folder_with_every_path_inside_it() {
    let script = r#"
        let e = experiment::load("experiments/speech.yml");
        print(e.created);
        print(e.path);
        print(e.config.info.output_folder);
        print(e.config.model_path);
        print(env::get("EXPERIMENT_KEY") == e.key);
        let again = experiment::load(e.path + "/config.yml");
        print(again.path == e.path && !again.created);
        let by_key = experiment::load("experiments/speech.yml", #{key: e.key});
        print(by_key.path == e.path && !by_key.created);
        print(fs::list("artifacts/speech").len());
    "#;
    for preset in [None, Some(""), Some("abc")] {
        let mut t = TestCmd::new()
            .fixture("nussl_project")
            .env("ARTIFACTS_DIRECTORY", "artifacts");
        if let Some(k) = preset {
            t = t.env("EXPERIMENT_KEY", k);
        }
        let o = t.script(script).run();
        o.success();
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(lines[0], "true");
        let folder = lines[1];
        let key = folder.rsplit('/').next().unwrap();
        assert_eq!(
            key.len(),
            16,
            "a new key even with EXPERIMENT_KEY={preset:?}: {folder}"
        );
        assert_eq!(folder, format!("artifacts/speech/{key}"));
        assert_eq!(lines[2], folder, "output_folder is the experiment folder");
        assert_eq!(
            lines[3],
            format!("{folder}/checkpoints/best.model.pth"),
            "model_path points inside it"
        );
        assert_eq!(&lines[4..], ["true", "true", "true", "1"], "{preset:?}");
        let saved = std::fs::read_to_string(o.dir.join(folder).join("config.yml")).unwrap();
        assert!(saved.contains(&format!("experiment_key: {key}")), "{saved}");
        assert!(!saved.contains("${EXPERIMENT_KEY}"), "{saved}");
    }
}

#[test]
fn innereye_settings_files_give_innereyes_results() {
    let schema = r#"#{subscription_id: "x", cluster: "", num_epochs: 1, datasets: [""],
                      output_template: "", checkpoint_format: ""}"#;
    let t = TestCmd::new().fixture("innereye_project").script(&format!(
        r#"
        let schema = {schema};
        // Unrelated ${{…}} and {{…}} values are read as written; the private file wins.
        let s = settings::parse(schema, #{{yaml: "settings.yml", private_file: "private.yml",
                                           args: #{{num_epochs: "20"}}}});
        print(s.args.output_template);
        print(s.args.checkpoint_format);
        print(s.args.cluster);
        print(s.args.num_epochs);
        print(s.args.datasets);
        // "private" still works as a quoted key.
        print(settings::parse(schema, #{{yaml: "settings.yml", "private": "private.yml"}}).args.cluster);
        // Substitution only when asked for.
        try {{ settings::parse(schema, #{{yaml: "settings.yml", private_file: "private.yml", substitute: true}}); }}
        catch (e) {{ print(e.kind); }}
        for f in ["no_variables.yml", "private_without_variables.yml"] {{
            try {{
                if f == "no_variables.yml" {{ settings::parse(schema, #{{yaml: f, private_file: "private.yml"}}); }}
                else {{ settings::parse(schema, #{{yaml: "settings.yml", private_file: f}}); }}
                print("no error");
            }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`); }}
        }}
        "#
    ));
    let o = t.run();
    o.success();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "${RUN_ID}/outputs",
            "{epoch}_{loss}.ckpt",
            "my-own-cluster",
            "20",
            "[\"prostate\", \"lung\"]",
            "my-own-cluster",
            "yaml.unset_variable",
            "settings.no_variables: no_variables.yml: the YAML file must contain a section 'variables' (InnerEye's settings files keep their values under 'variables:')",
            "settings.no_variables: private_without_variables.yml: the YAML file must contain a section 'variables' (InnerEye's settings files keep their values under 'variables:')",
        ],
        "{}",
        o.stderr
    );
}

#[test]
fn a_reserved_word_as_a_map_key_says_so_and_how_to_quote_it() {
    TestCmd::new()
        .script("let s = settings::parse(#{}, #{yaml: \"s.yml\", private: \"p.yml\"});")
        .run()
        .code(1)
        .stderr_has("error[syntax]: `private` is a reserved word in Rhai and cannot be a bare map key or property name: quote it (`#{\"private\": …}`, `m[\"private\"]`)")
        .stderr_has("--> main.rhai:1:47");
}

#[test]
fn logs_of_a_job_that_never_started_say_why() {
    let t = TestCmd::new().script(
        r#"
        let j = jobs::submit(#{command: ["no-such-program-xyz"]});
        print(j.id);
        print(j.wait());
        let k = jobs::submit(#{command: "echo out; exit 3"});
        print(k.id);
        print(k.wait());
        "#,
    );
    let o = t.run();
    o.success();
    let lines: Vec<&str> = o.stdout.lines().collect();
    let (bad, noisy) = (lines[0], lines[2]);
    let mut c = TestCmd::new().command();
    c.env("LABHOST_HOME", o.dir.join(".labhost"))
        .current_dir(&o.dir)
        .args(["logs", bad]);
    let r = c.output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        format!("job {bad} failed before it started: command not found: no-such-program-xyz\n")
    );
    // A job that printed something: its output, exit 0.
    let mut c = TestCmd::new().command();
    c.env("LABHOST_HOME", o.dir.join(".labhost"))
        .current_dir(&o.dir)
        .args(["logs", noisy]);
    let r = c.output().unwrap();
    assert_eq!(
        (r.status.code(), String::from_utf8_lossy(&r.stdout).as_ref()),
        (Some(0), "out\n")
    );
}

#[test]
fn fail_fast_counts_what_it_never_started_and_zero_workers_is_refused() {
    let t = TestCmd::new().file(
        "p.yml",
        "jobs:\n- command: exit 1\n  blocking: true\n- command: 'true'\n- command: 'true'\n- command: 'true'\n- command: 'true'\n",
    );
    let (code, out, err) = t.spawn(["pipeline", "--fail-fast", "p.yml"]).finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(out.starts_with("0 of 5 job(s) completed\n"), "{out}");
    assert!(
        out.contains("4 job(s) not started (--fail-fast stopped after a failure)"),
        "{out}"
    );
    for args in [
        vec!["pipeline", "--workers", "0", "p.yml"],
        vec!["pipeline", "--dry-run", "--workers", "0", "p.yml"],
    ] {
        let (code, _, err) = t.spawn(&args).finish();
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("invalid value '0' for '--workers"), "{err}");
    }
}
