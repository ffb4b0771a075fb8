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
        .stderr_has("error[invalid_argument]: sh::run options: unknown field `timeot`");
    TestCmd::new()
        .script("sh::run(\"true\", #{timeout: \"5 parsecs\"});")
        .run()
        .code(1)
        .stderr_has("error[time.invalid_duration]");
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
