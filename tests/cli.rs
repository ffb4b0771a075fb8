//! `labhost run/check/doc/completions`, script arguments, output streams, module resolution.
use crate::util::TestCmd;

#[test]
fn args_and_typed_opts_reach_the_script() {
    TestCmd::new()
        .script(
            r#"
            print(ARGS);
            print(type_of(OPTS.lr) + " " + type_of(OPTS.epochs) + " " + type_of(OPTS.fast) + " " + type_of(OPTS.name));
            print(OPTS.lr * 10.0);
            "#,
        )
        .args(["data.csv", "--lr=0.5", "--epochs=3", "--fast", "--name=mlp", "--", "--literal"])
        .run()
        .success()
        .stdout_is("[\"data.csv\", \"--literal\"]\nf64 i64 bool string\n5.0\n");
}

#[test]
fn exit_sets_the_process_exit_code() {
    TestCmd::new()
        .script("print(\"before\"); exit(7); print(\"after\");")
        .run()
        .code(7)
        .stdout_is("before\n");
    TestCmd::new().script("exit();").run().code(0);
    TestCmd::new()
        .script("fn f() { exit(4) } f();")
        .run()
        .code(4);
    TestCmd::new()
        .script("exit(300);")
        .run()
        .code(1)
        .stderr_has("out of range");
}

#[test]
fn print_goes_to_stdout_and_debug_to_stderr_with_position() {
    let o = TestCmd::new()
        .script("print(\"out\");\ndebug(\"dbg\");")
        .run();
    o.success()
        .stdout_is("out\n")
        .stderr_has("[main.rhai:2:1] \"dbg\"");
}

#[test]
fn log_levels_follow_verbosity_flags() {
    let script =
        "log::info(\"info-line\"); log::verbose(\"debug-line\"); log::warn(\"warn-line\");";
    let o = TestCmd::new().script(script).run();
    o.success().stderr_has("info-line").stderr_has("warn-line");
    assert!(!o.stderr.contains("debug-line"));
    let o = TestCmd::new()
        .file("main.rhai", script)
        .args(["-q", "run", "main.rhai"])
        .run();
    assert!(
        !o.stderr.contains("info-line") && o.stderr.contains("warn-line"),
        "{}",
        o.stderr
    );
    let o = TestCmd::new()
        .file("main.rhai", script)
        .args(["-v", "run", "main.rhai"])
        .run();
    o.success().stderr_has("debug-line");
}

#[test]
fn imports_resolve_stdlib_then_script_folder_then_labhost_path() {
    let t = TestCmd::new()
        .file(
            "lib/a.rhai",
            "import \"b\" as b;\nfn twice(x) { b::add(x, x) }",
        )
        .file("lib/b.rhai", "fn add(x, y) { x + y }")
        .file("extra/c.rhai", "fn hello() { \"from LABHOST_PATH\" }")
        .file(
            "main.rhai",
            r#"
            import "std/helpers" as helpers;
            import "lib/a" as a;
            import "c" as c;
            print(a::twice(21));
            print(c::hello());
            print(helpers::grid(#{x: [1, 2]}).len());
            "#,
        );
    let extra = t.path().join("extra").display().to_string();
    // Run from another folder: imports are relative to the script, not the cwd.
    let o = t
        .env("LABHOST_PATH", &extra)
        .args(["run", "main.rhai"])
        .run();
    o.success().stdout_is("42\nfrom LABHOST_PATH\n2\n");
}

#[test]
fn check_reports_every_broken_file_and_fails() {
    TestCmd::new()
        .file("ok.rhai", "let x = 1;")
        .file("bad1.rhai", "let x = ;")
        .file("bad2.rhai", "fn f( {")
        .args(["check", "ok.rhai", "bad1.rhai", "bad2.rhai"])
        .run()
        .code(1)
        .stderr_has("bad1.rhai:1:")
        .stderr_has("bad2.rhai:1:")
        .stderr_has("2 of 3 file(s) failed");
    TestCmd::new()
        .file("ok.rhai", "let x = ARGS;")
        .args(["check", "ok.rhai"])
        .run()
        .success();
}

#[test]
fn check_does_not_run_the_script() {
    let o = TestCmd::new()
        .file("s.rhai", "fs::write(\"ran.txt\", \"x\");")
        .args(["check", "s.rhai"])
        .run();
    o.success();
    assert!(!o.dir.join("ran.txt").exists());
}

#[test]
fn doc_lists_modules_in_markdown_and_json() {
    TestCmd::new()
        .args(["doc", "fs"])
        .run()
        .success()
        .stdout_has("## fs")
        .stdout_has("### `fs::read(path: &str) -> String`")
        .stdout_has("Reads a UTF-8 text file");
    let o = TestCmd::new().args(["doc", "--format", "json"]).run();
    o.success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for want in [
        "global",
        "fs",
        "sh",
        "env",
        "json",
        "time",
        "log",
        "std/helpers",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    TestCmd::new()
        .args(["doc", "nope"])
        .run()
        .code(2)
        .stderr_has("no module 'nope'");
}

#[test]
fn completions_and_usage_errors() {
    TestCmd::new()
        .args(["completions", "bash"])
        .run()
        .success()
        .stdout_has("labhost");
    TestCmd::new()
        .args(["frobnicate"])
        .run()
        .code(2)
        .stderr_has("unrecognized subcommand");
    TestCmd::new().args(["run"]).run().code(2);
    TestCmd::new()
        .args(["--version"])
        .run()
        .success()
        .stdout_has("labhost ");
}

#[test]
fn color_always_paints_diagnostics_and_never_does_not() {
    let o = TestCmd::new()
        .file("main.rhai", "let x = ;")
        .args(["--color", "always", "run", "main.rhai"])
        .run();
    o.code(1);
    assert!(o.stderr.contains("\x1b[1;31merror"), "{:?}", o.stderr);
    let o = TestCmd::new()
        .file("main.rhai", "let x = ;")
        .args(["--color", "never", "run", "main.rhai"])
        .run();
    assert!(!o.stderr.contains('\x1b'));
}

#[test]
fn shebang_line_is_allowed_and_line_numbers_stay_right() {
    TestCmd::new()
        .script("#!/usr/bin/env -S labhost run\nprint(1);\nlet y = 1 / 0;")
        .run()
        .code(1)
        .stdout_is("1\n")
        .stderr_has("main.rhai:3:");
}

#[test]
fn closed_stdout_pipe_does_not_panic() {
    use std::io::Read;
    let t = TestCmd::new()
        .file("main.rhai", "for i in 0..100000 { print(i); }")
        .args(["run", "main.rhai"]);
    let mut c = t.command();
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then drop: pipe closes
    let o = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

/// `labhost doc errors` lists every error kind with its meaning and exit code, and the
/// README's table is exactly that output.
#[test]
fn doc_errors_lists_every_kind_and_the_readme_has_the_same_table() {
    let o = TestCmd::new().args(["doc", "errors"]).run();
    o.success()
        .stdout_has("| `sh.timeout` | the command ran past its timeout and was stopped | 1 |")
        .stdout_has("| `cancelled` |");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&o.stdout),
        "the README's error table differs from `labhost doc errors`"
    );
    let j = TestCmd::new()
        .args(["doc", "errors", "--format", "json"])
        .run();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&j.stdout).unwrap();
    assert!(rows.len() > 60);
    assert!(rows
        .iter()
        .any(|r| r["kind"] == "config.invalid" && r["exit_code"] == 2));
}

/// `labhost doc | head -1`: the reader goes away after one line; labhost stops quietly with
/// exit 0 instead of a broken-pipe panic (exit 101 and a backtrace).
#[test]
fn a_reader_that_goes_away_ends_output_quietly() {
    use std::io::BufRead;
    let t = crate::util::TestCmd::new();
    let mut c = t.command();
    let mut child = c
        .arg("doc")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(first, "# labhost API reference\n");
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A file named on the command line that does not exist is a usage error (exit 2) for every
/// command that takes one, with the path in the message.
#[test]
fn a_missing_input_file_exits_2_everywhere() {
    let t = crate::util::TestCmd::new();
    for args in [
        &["run", "missing.rhai"][..],
        &["sweep", "missing.yml"],
        &["sweep", "missing.yml", "--dry-run"],
        &["submit", "missing.yml", "--dry-run"],
        &["pipeline", "missing.yml"],
        &["cron", "missing.yml", "--check"],
    ] {
        let (code, _, err) = t.spawn(args).finish();
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot read") && err.contains("missing."),
            "{args:?}: {err}"
        );
    }
}
