//! The bad-input table: each case gives a clear message, the right exit code and no panic.
use std::time::Duration;

use crate::util::TestCmd;

#[test]
fn missing_file() {
    TestCmd::new()
        .args(["run", "missing.rhai"])
        .run()
        .code(2)
        .stderr_has("cannot read 'missing.rhai': No such file or directory");
}

#[test]
fn a_directory() {
    let t = TestCmd::new();
    std::fs::create_dir(t.path().join("scripts")).unwrap();
    t.args(["run", "scripts"])
        .run()
        .code(2)
        .stderr_has("'scripts' is a directory, not a script");
}

#[test]
fn non_utf8_bytes() {
    TestCmd::new()
        .file("bad.rhai", b"let a = 1;\nlet \xff = 2;\n".as_slice())
        .args(["run", "bad.rhai"])
        .run()
        .code(2)
        .stderr_has("'bad.rhai' is not UTF-8 text: invalid byte at bad.rhai:2:5");
}

#[test]
fn syntax_error() {
    TestCmd::new()
        .script("let x = 1;\nlet y = (x + ;\n")
        .run()
        .code(1)
        .stderr_has("error[syntax]")
        .stderr_has("--> main.rhai:2:");
}

#[test]
fn unknown_function() {
    TestCmd::new()
        .script("let v = 1;\nfrobnicate(v, \"x\");")
        .run()
        .code(1)
        .stderr_has("error[unknown_function]: no function frobnicate(i64, string)")
        .stderr_has("--> main.rhai:2:1");
    TestCmd::new()
        .script("fs::nope(1);")
        .run()
        .code(1)
        .stderr_has("error[unknown_function]");
}

#[test]
fn runtime_error_three_functions_deep() {
    TestCmd::new()
        .script("fn c(x) { x.missing_key }\nfn b(x) { c(x) }\nfn a(x) { b(x) }\na(#{k: 1});\n")
        .run()
        .code(1)
        .stderr_has("--> main.rhai:1:13")
        .stderr_has("= in function 'c', called at main.rhai:2:11")
        .stderr_has("= in function 'b', called at main.rhai:3:11")
        .stderr_has("= in function 'a', called at main.rhai:4:1");
}

#[test]
fn native_error_carries_kind_and_position_and_is_catchable() {
    TestCmd::new()
        .script("let x = 1;\n  fs::read(\"nope.txt\");")
        .run()
        .code(1)
        .stderr_has("error[fs.not_found]: cannot read 'nope.txt': No such file or directory")
        .stderr_has("--> main.rhai:2:7");
    TestCmd::new()
        .script("try { fs::read(\"nope.txt\") } catch (e) { print(e.kind) }")
        .run()
        .success()
        .stdout_is("fs.not_found\n");
}

#[test]
fn infinite_loop_interrupted_by_sigint() {
    let t = TestCmd::new().file(
        "main.rhai",
        "print(\"started\");\nlet i = 0;\nloop { i += 1; }",
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("started");
    r.signal(libc::SIGINT);
    let (code, _, stderr) = r.finish();
    assert_eq!(code, Some(130));
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn sigint_kills_a_running_command_group() {
    let t = TestCmd::new().file(
        "main.rhai",
        "print(\"started\");\nsh::run(\"echo $$ > pid.txt; sleep 300; echo never > never.txt\");",
    );
    let dir = t.path().to_path_buf();
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("started");
    while !dir.join("pid.txt").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let shell_pid: i32 = std::fs::read_to_string(dir.join("pid.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    r.signal(libc::SIGINT);
    let (code, _, _) = r.finish();
    assert_eq!(code, Some(130));
    // The command's shell is gone (not left running its 300 s sleep).
    assert_ne!(
        unsafe { libc::kill(shell_pid, 0) },
        0,
        "the command outlived the interrupt"
    );
    assert!(!dir.join("never.txt").exists());
}

#[test]
fn unbounded_recursion() {
    TestCmd::new()
        .script("fn f(n) { f(n + 1) }\nf(0);")
        .run()
        .code(1)
        .stderr_has("error[stack_overflow]: too many nested calls");
}

#[test]
fn import_of_a_missing_module() {
    TestCmd::new()
        .script("import \"nope/mod\" as m;\nm::f();")
        .run()
        .code(1)
        .stderr_has("error[module_not_found]: module 'nope/mod' not found")
        .stderr_has("main.rhai:1:");
    TestCmd::new()
        .script("import \"std/nope\" as m;")
        .run()
        .code(1)
        .stderr_has("module 'std/nope' not found");
}

#[test]
fn exit_with_text() {
    TestCmd::new()
        .script("exit(\"config missing: data_dir\");")
        .run()
        .code(1)
        .stderr_has("config missing: data_dir");
    TestCmd::new()
        .script("exit([1]);")
        .run()
        .code(1)
        .stderr_has("exit() takes an integer code or a message");
}

#[test]
fn bad_options_name_the_function_and_key() {
    TestCmd::new()
        .script("sh::run(\"true\", #{timeot: 5});")
        .run()
        .code(1)
        .stderr_has("error[invalid_argument]: sh::run options: unknown key `timeot` (did you mean `timeout`?)");
    TestCmd::new()
        .script("sh::run(\"true\", #{timeout: \"5 parsecs\"});")
        .run()
        .code(1)
        .stderr_has(
            "error[invalid_argument]: sh::run options: `timeout`: invalid duration '5 parsecs'",
        );
}

/// Every native that takes a spec or options map: one wrong-typed value and one unknown key
/// each. The message names the function, the field, what it must be and what it got, in
/// script words; never a Rust type or path.
#[test]
fn every_map_taking_native_rejects_wrong_types_and_unknown_keys() {
    let cases: &[(&str, &str)] = &[
        ("sh::run(\"true\", #{env: [1]});", "sh::run options: `env` must be a map of names to values, got an array"),
        ("sh::run(\"true\", #{timeot: 5});", "sh::run options: unknown key `timeot` (did you mean `timeout`?)"),
        ("sh::run(5);", "sh::run command: must be a command: a string (run by sh -c) or an array of strings, got 5 (an integer)"),
        ("sh::stream(\"true\", #{timeout: [1]});", "sh::stream options: `timeout` must be a duration like \"90s\" or a number of seconds, got an array"),
        ("sh::stream(\"true\", #{prefx: \"> \"});", "sh::stream options: unknown key `prefx` (did you mean `prefix`?)"),
        ("fs::remove(\"x\", #{recursive: \"yes\"});", "fs::remove options: `recursive` must be true or false, got \"yes\" (a string)"),
        ("fs::remove(\"x\", #{recursve: true});", "fs::remove options: unknown key `recursve` (did you mean `recursive`?)"),
        ("json::dump(#{}, #{pretty: 1});", "json::dump options: `pretty` must be true or false, got 1 (an integer)"),
        ("json::dump(#{}, #{prety: true});", "json::dump options: unknown key `prety` (did you mean `pretty`?)"),
        ("gpu::select(#{limit: \"two\"});", "gpu::select options: `limit` must be an integer of 0 or more, got \"two\" (a string)"),
        ("gpu::select(#{max_lod: 0.5});", "gpu::select options: unknown key `max_lod` (did you mean `max_load`?)"),
        ("gpu::reserve(1, #{timeout: #{}});", "gpu::reserve options: `timeout` must be a duration like \"90s\" or a number of seconds, got a map"),
        ("gpu::reserve(1, #{tiemout: 1});", "gpu::reserve options: unknown key `tiemout` (did you mean `timeout`?)"),
        ("yaml::load(\"cfg.yml\", #{env_vars: \"DATA\"});", "yaml::load options: `env_vars` must be an array, got \"DATA\" (a string)"),
        ("yaml::load(\"cfg.yml\", #{interpolat: false});", "yaml::load options: unknown key `interpolat` (did you mean `interpolate`?)"),
        ("settings::parse(#{}, #{fail_on_unknown: \"no\"});", "settings::parse options: `fail_on_unknown` must be true or false, got \"no\" (a string)"),
        ("settings::parse(#{}, #{yml: \"cfg.yml\"});", "settings::parse options: unknown key `yml` (did you mean `yaml`?)"),
        ("secrets::get(\"x\", #{allow_missing: 1});", "secrets::get options: `allow_missing` must be true or false, got 1 (an integer)"),
        ("secrets::get(\"x\", #{allow_mising: true});", "secrets::get options: unknown key `allow_mising` (did you mean `allow_missing`?)"),
        ("git::tags(#{extra: [1]});", "git::tags options: `extra` must be a map of names to values, got an array"),
        ("git::info(\".\", #{build_branch: [1]});", "git::info options: `build_branch` must be a string, number or boolean, got an array"),
        ("docker::run(#{image: \"x\", volumes: 5});", "docker::run spec: `volumes` must be volumes: an array of"),
        ("docker::run(#{image: \"x\", volumes: #{\"/data\": 5}});", "docker::run spec: `volumes./data` must be a container path or #{bind: \"/path\", mode: \"ro\"}, got 5 (an integer)"),
        ("docker::run(#{image: \"x\", volumes: #{\"/data\": #{bind: \"/in\", mode: \"r\"}}});", "docker::run spec: `volumes./data.mode` must be one of \"ro\", \"rw\", got \"r\""),
        ("docker::run(#{imag: \"x\"});", "docker::run spec: unknown key `imag` (did you mean `image`?)"),
        ("docker::build(\".\", #{build_args: [1]});", "docker::build options: `build_args` must be a map of names to values, got an array"),
        ("docker::build(\".\", #{tg: \"x\"});", "docker::build options: unknown key `tg` (did you mean `tag`?)"),
        ("docker::ps(#{label: [1]});", "docker::ps options: `label` must be a string, got an array"),
        ("docker::ps(#{lable: \"x\"});", "docker::ps options: unknown key `lable` (did you mean `label`?)"),
        ("jobs::submit(#{command: \"true\", env: [1, 2]});", "jobs::submit spec: `env` must be a map of names to values, got an array"),
        ("jobs::submit(#{command: 5});", "jobs::submit spec: `command` must be a command: a string (run by sh -c) or an array of strings, got 5 (an integer)"),
        ("jobs::submit(#{comand: \"true\"});", "jobs::submit spec: unknown key `comand` (did you mean `command`?)"),
        ("jobs::submit(#{command: \"true\", timeout: [2]});", "jobs::submit spec: `timeout` must be a duration like \"90s\" or a number of seconds, got an array"),
        ("jobs::pool([], #{max_workers: \"two\"});", "jobs::pool options: `max_workers` must be an integer of 1 or more, got \"two\" (a string)"),
        ("jobs::pool([], #{max_workers: 0});", "jobs::pool options: `max_workers` must be an integer of 1 or more, got 0 (an integer)"),
        ("jobs::pool([], #{max_wrkers: 2});", "jobs::pool options: unknown key `max_wrkers` (did you mean `max_workers`?)"),
        ("jobs::pool([#{command: \"true\", num_gpus: -1}], #{});", "jobs::pool specs[0]: `num_gpus` must be an integer of 0 or more, got -1 (an integer)"),
    ];
    for (script, want) in cases {
        let o = TestCmd::new()
            .file("cfg.yml", "a: 1\n")
            .script(script)
            .run();
        let err = o.stderr.clone();
        o.code(1)
            .stderr_has(&format!("error[invalid_argument]: {want}"))
            .stderr_has("--> main.rhai:1:");
        for rust in [
            "alloc::",
            "labhost::",
            "std::",
            "serde",
            "untagged",
            "expecting",
            "i64",
            "u32",
            "BTreeMap",
            "Vec<",
        ] {
            assert!(
                !err.contains(rust),
                "{script}: the message names Rust ({rust}): {err}"
            );
        }
    }
}

#[test]
fn durations_take_both_forms_everywhere() {
    TestCmd::new()
        .script(
            r#"
            let j = jobs::submit(#{command: "true", timeout: "2h", backoff: "500ms"});
            print(j.wait());
            print(j.info().spec.timeout);
            print(sh::run("true", #{timeout: "1m"}).code);
            let r = docker::run(#{image: "none", timeout: "bad"});
            "#,
        )
        .run()
        .code(1)
        .stdout_is("completed\n7200.0\n0\n")
        .stderr_has("docker::run spec: `timeout`: invalid duration 'bad'");
}

/// Configuration bad input: one clear error each, with file:line:col where there is one.
#[test]
fn configuration_bad_input_table() {
    let cases: &[(&str, &str, &str)] = &[
        // (file content of cfg.yml, script, expected stderr fragment)
        ("a: 1\nb: [1, 2\nc: 3\n", "yaml::load(\"cfg.yml\");", "error[yaml.parse]: cfg.yml:3:"),
        ("variables: [1, 2]\n", "settings::parse(#{a: 1}, #{yaml: \"cfg.yml\"});", "error[settings.invalid]: cfg.yml:1:1: 'variables:' must be a map"),
        ("variables: {}\n", "settings::parse(#{epochs: 1}, #{yaml: \"cfg.yml\", args: #{epochs: \"many\"}});", "error[settings.type]: --epochs=many: expected int, got string \"many\""),
        ("variables:\n  epochs: lots\n", "settings::parse(#{epochs: 1}, #{yaml: \"cfg.yml\"});", "error[settings.type]: cfg.yml:2:3: setting 'epochs': expected int"),
        ("a: 1\nb: \"${oops\"\n", "yaml::load(\"cfg.yml\");", "error[yaml.unterminated]: cfg.yml:2:5: unterminated '${'"),
        ("a: ${b}\nb: ${a}\n", "yaml::load(\"cfg.yml\");", "error[yaml.cycle]: cfg.yml:2:4: interpolation cycle: a -> b -> a"),
        ("p: ${LABHOST_SURELY_UNSET_VAR}/x\n", "yaml::load(\"cfg.yml\");", "error[yaml.unset_variable]: cfg.yml:1:4: environment variable LABHOST_SURELY_UNSET_VAR is not set"),
        ("", "secrets::get(\"no_such_secret\");", "error[secrets.missing]: secret(s) no_such_secret not found"),
        ("", "git::info(\".\");", "error[git.not_a_repo]: '.' is not inside a git repository"),
        ("", "yaml::load(\"missing.yml\");", "error[yaml.not_found]: cannot read 'missing.yml'"),
    ];
    for (yaml, script, want) in cases {
        let o = TestCmd::new().file("cfg.yml", yaml).script(script).run();
        o.code(1).stderr_has(want).stderr_has("--> main.rhai:1:");
    }
}

/// Every user-facing duration — script options, YAML fields, CLI flags, environment
/// variables — refuses negative, NaN, infinite and malformed values with a located error
/// (the script's error with file:line:col, or exit 2 naming the flag or variable), never a
/// panic (`TestCmd::run` fails on one).
#[test]
fn every_duration_input_refuses_negative_nan_infinite_and_malformed_values() {
    let bad = ["-1", "-1.5", "\"-1\"", "\"nan\"", "\"inf\"", "\"1x\""];
    // Script options: `D` is replaced by each bad value.
    let scripts = [
        "sh::run(\"true\", #{timeout: D});",
        "jobs::submit(#{command: \"true\", timeout: D});",
        "jobs::submit(#{command: \"true\", retries: 1, backoff: D});",
        "time::sleep(D);",
        "gpu::reserve(1, #{timeout: D});",
        "gpu::reserve(1, #{grace: D});",
        "cron::schedule(\"e\", \"* * * * *\", \"x.rhai\", #{timeout: D});",
        "sweep::new(#{trial: #{command: \"true\"}, search_space: #{a: sweep::choice([1])}, \
         objective: #{goal: \"minimize\", primary_metric: \"m\"}, limits: #{max_total_trials: 1, timeout: D}});",
        "sweep::new(#{trial: #{command: \"true\"}, search_space: #{a: sweep::choice([1])}, \
         objective: #{goal: \"minimize\", primary_metric: \"m\"}, limits: #{max_total_trials: 1, trial_timeout: D}});",
    ];
    for s in scripts {
        for v in bad {
            let text = format!("let x = 0;\n{}\n", s.replace('D', v));
            let o = TestCmd::new()
                .env("LABHOST_FAKE_GPUS", "1x24GiB")
                .script(&text)
                .run();
            o.code(1).stderr_has("--> main.rhai:2:");
        }
    }
    // A sweep YAML's limits.
    for v in ["-1", "\"-5s\"", ".nan", ".inf", "\"1x\""] {
        let yml = format!(
            "$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json\n\
             type: sweep\ntrial:\n  command: echo ${{{{search_space.a}}}}\n\
             search_space:\n  a: {{type: choice, values: [1]}}\n\
             sampling_algorithm: random\nobjective: {{goal: minimize, primary_metric: m}}\n\
             limits:\n  max_total_trials: 1\n  timeout: {v}\n"
        );
        let o = TestCmd::new()
            .file("s.yml", yml)
            .args(["sweep", "s.yml", "--dry-run"])
            .run();
        assert_ne!(o.code, 0, "{v}: {}", o.stderr);
        o.stderr_has("s.yml:11:");
    }
    // CLI flags: a usage error naming the flag.
    for v in ["-1", "nan", "inf", "1x"] {
        let t = TestCmd::new().file("c.yml", "- {name: a, schedule: '@daily', script: x.rhai}\n");
        t.args(["cron", "c.yml", &format!("--grace={v}")])
            .run()
            .code(2)
            .stderr_has("--grace");
        TestCmd::new()
            .args(["gpus", &format!("--watch={v}")])
            .run()
            .code(2)
            .stderr_has("--watch");
        TestCmd::new()
            .file("j.yml", "command: echo\n")
            .args(["submit", "j.yml", "--wait", &format!("--timeout={v}")])
            .run()
            .code(2)
            .stderr_has("--timeout");
    }
    // Environment variables: exit 2 naming the variable, before anything runs.
    for var in [
        "LABHOST_KILL_GRACE",
        "LABHOST_GPU_GRACE",
        "AZUREML_RUN_POLLING_INTERVAL_MIN",
        "AZUREML_RUN_POLLING_INTERVAL_MAX",
    ] {
        for v in ["-1", "nan", "inf", "1x"] {
            TestCmd::new()
                .env(var, v)
                .script("print(1);")
                .run()
                .code(2)
                .stderr_has(&format!("environment variable {var}"));
        }
    }
}
