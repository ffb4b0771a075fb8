//! Base modules seen from a script: behaviour a user notices beyond the doc examples.
use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::util::TestCmd;

#[test]
fn sh_stream_streams_lines_while_the_command_runs() {
    let t = TestCmd::new()
        .file("main.rhai", "let r = sh::stream(\"echo first; sleep 2; echo second\", #{prefix: \"[job] \"});\nprint(\"code \" + r.code);")
        .args(["run", "main.rhai"]);
    let mut child = t
        .command()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "[job] first\n");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "first line came only after {:?}",
        t0.elapsed()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "[job] second\ncode 0\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sh_timeout_is_catchable_and_kills_the_command() {
    let t0 = Instant::now();
    TestCmd::new()
        .script(
            r#"
            try { sh::run("sleep 20", #{timeout: 0.3}); print("no"); }
            catch (e) { print(e.kind); }
            "#,
        )
        .run()
        .success()
        .stdout_is("sh.timeout\n");
    assert!(t0.elapsed() < Duration::from_secs(10));
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
    o.success().stdout_is("[\"main.rhai\", \"state.json\"]\n");
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
    let t = TestCmd::new()
        .file("main.rhai", "print(\"go\");\ntime::sleep(\"1h\");")
        .args(["run", "main.rhai"]);
    let mut child = t
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let t0 = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(2));
}
