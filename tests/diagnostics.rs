//! Snapshot tests of the diagnostic rendering (insta; `cargo insta review` to update).
use crate::util::TestCmd;

fn stderr_of(files: &[(&str, &str)]) -> String {
    let mut t = TestCmd::new();
    for (name, text) in files {
        t = t.file(name, text);
    }
    let o = t.args(["run", "main.rhai"]).run();
    assert_ne!(o.code, 0);
    o.stderr
}

#[test]
fn runtime_error_in_nested_functions() {
    insta::assert_snapshot!(stderr_of(&[(
        "main.rhai",
        "fn load(p) {\n    let batches = p - p;\n    1000 / batches\n}\nfn train(p) { load(p) }\nfn main() { train(3) }\nmain();\n"
    )]));
}

#[test]
fn syntax_error_with_caret() {
    insta::assert_snapshot!(stderr_of(&[(
        "main.rhai",
        "let a = 1;\nlet b = [a, 2;\nprint(b);\n"
    )]));
}

#[test]
fn error_inside_an_imported_module() {
    insta::assert_snapshot!(stderr_of(&[
        (
            "lib/steps.rhai",
            "fn prepare(dir) {\n    fs::read(dir + \"/missing.yml\")\n}\n"
        ),
        (
            "main.rhai",
            "import \"lib/steps\" as steps;\nsteps::prepare(\"data\");\n"
        ),
    ]));
}

#[test]
fn throw_of_a_custom_error_map() {
    insta::assert_snapshot!(stderr_of(&[(
        "main.rhai",
        "let acc = 0.3;\nif acc < 0.5 {\n    throw #{kind: \"quality.low_accuracy\", message: `accuracy ${acc} below 0.5`};\n}\n"
    )]));
}
