//! Base modules seen from a script: behaviour a user notices beyond the doc examples.
use crate::util::TestCmd;

#[test]
fn sh_stream_streams_lines_while_the_command_runs() {
    // The command prints one line, then waits for a file the test creates only after it has
    // read that line: the line must arrive while the command still runs.
    let t = TestCmd::new().file(
        "main.rhai",
        "let r = sh::stream(\"echo first; while [ ! -f go ]; do sleep 0.02; done; echo second\", #{prefix: \"[job] \"});\nprint(\"code \" + r.code);",
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("[job] first");
    assert!(r.is_running());
    std::fs::write(t.path().join("go"), "").unwrap();
    let (code, rest, _) = r.finish();
    assert_eq!(code, Some(0));
    assert_eq!(rest, "[job] second\ncode 0\n");
}

#[test]
fn sh_timeout_is_catchable_and_kills_the_command() {
    let o = TestCmd::new()
        .script(
            r#"
            try { sh::run("sleep 0.5; touch finished; sleep 300", #{timeout: 0.2}); print("no"); }
            catch (e) { print(e.kind); }
            time::sleep(0.6);
            print(fs::exists("finished"));
            "#,
        )
        .run();
    o.success().stdout_is("sh.timeout\nfalse\n");
}

#[test]
fn sh_array_form_does_not_use_a_shell() {
    TestCmd::new()
        .script(r#"print(sh::run(["echo", "$HOME; rm -rf /"]).stdout);"#)
        .run()
        .success()
        .stdout_is("$HOME; rm -rf /\n\n");
    TestCmd::new()
        .script(r#"sh::run(["definitely-not-a-command-xyz"]);"#)
        .run()
        .code(1)
        .stderr_has("error[sh.not_found]: command not found: definitely-not-a-command-xyz");
    TestCmd::new()
        .script(r#"print(sh::run("definitely-not-a-command-xyz").code);"#)
        .run()
        .success()
        .stdout_is("127\n");
}

#[test]
fn fs_write_is_atomic_and_leaves_no_temp_files() {
    let o = TestCmd::new()
        .script("for i in 0..50 { fs::write(\"state.json\", json::dump(#{i: i})); }\nprint(fs::list(\".\"));")
        .run();
    o.success()
        .stdout_is("[\"main.rhai\", \"state.json\", \"tmp\"]\n");
    assert_eq!(
        std::fs::read_to_string(o.dir.join("state.json")).unwrap(),
        "{\"i\":49}"
    );
}

#[test]
fn json_errors_name_line_and_column() {
    TestCmd::new()
        .script("json::parse(\"{\\n  \\\"a\\\": 1,\\n  oops\\n}\");")
        .run()
        .code(1)
        .stderr_has("error[json.parse]: invalid JSON at line 3 column 3");
}

#[test]
fn env_set_reaches_child_processes() {
    TestCmd::new()
        .script("env::set(\"DATA_DIRECTORY\", \"/data\");\nprint(sh::run(\"echo $DATA_DIRECTORY\").stdout.trim());")
        .run()
        .success();
}

#[test]
fn time_sleep_is_interruptible() {
    let t = TestCmd::new().file(
        "main.rhai",
        "print(\"go\");\ntime::sleep(\"1h\");\nprint(\"slept\");",
    );
    let mut r = t.spawn(["run", "main.rhai"]);
    r.expect_line("go");
    r.signal(libc::SIGINT);
    let (code, rest, _) = r.finish();
    assert_eq!(code, Some(130));
    assert_eq!(rest, "");
}
