//! Configuration and provenance (yaml, settings, secrets, git, experiment) end to end.
use crate::util::TestCmd;

fn git(dir: &std::path::Path, cmd: &str) {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

const REPO: &str = "git init -q -b feature/exp-1 && git config user.email a@b.c && git config user.name 'Grace Hopper' \
    && printf 'tmp/\\n.labhost/\\nartifacts/\\n' > .gitignore && git add . && git commit -q -m 'baseline model'";

/// The recipe in scripts/: loads a config with env substitution, merges typed CLI overrides,
/// tags it with git info and saves the experiment folder.
#[test]
fn experiment_recipe_in_a_git_repository() {
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/experiment.rhai");
    let t = TestCmd::new().file(
        "exp.yml",
        "info: {output_folder: artifacts}\ndata: {train: '{DATA_DIRECTORY}/train'}\nmodel: {width: 32, name: 'm${model.width}'}\ntrain: {lr: 0.1, epochs: 10}\n",
    );
    git(t.path(), REPO);
    let o = t
        .env("DATA_DIRECTORY", "/mnt/data")
        .args([
            "run",
            recipe.to_str().unwrap(),
            "exp.yml",
            "--epochs=5",
            "--lr=0.01",
        ])
        .run();
    o.success()
        .stdout_has("data.train = /mnt/data/train, model.name = m32")
        .stdout_has("branch feature/exp-1 @ ");
    let files: Vec<_> = std::fs::read_dir(o.dir.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one experiment folder");
    let saved = std::fs::read_to_string(files[0].join("config.yml")).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&saved).unwrap();
    assert_eq!(v["train"]["epochs"], 5);
    assert_eq!(v["train"]["lr"], 0.01);
    assert_eq!(v["info"]["overrides"]["epochs"], 5);
    assert_eq!(v["info"]["tags"]["source_branch"], "feature/exp-1");
    assert_eq!(v["info"]["tags"]["source_author"], "Grace Hopper");
    assert_eq!(v["info"]["tags"]["source_message"], "baseline model");
    assert_eq!(v["info"]["tags"]["source_dirty"], "False");
    assert_eq!(
        v["info"]["experiment_key"].as_str().unwrap(),
        files[0].file_name().unwrap().to_str().unwrap()
    );
}

/// A secret read by a script never appears in anything labhost writes: stdout, stderr (debug,
/// logs, error messages), run tags, saved YAML and experiment folders.
#[test]
fn a_secret_is_masked_everywhere_labhost_writes() {
    const SECRET: &str = "s3cr3t-t0ken-9f8e7d";
    let t = TestCmd::new()
        .file(
            "labhost.private.yml",
            format!("secrets:\n  storage_key: {SECRET}\n"),
        )
        .file("exp.yml", "info: {output_folder: artifacts}\nlr: 0.1\n")
        .file(
            "main.rhai",
            r#"
            let key = secrets::get("STORAGE_KEY");
            print("key: " + key);
            debug(key);
            log::warn("using " + key);
            let e = experiment::load("exp.yml");
            let cfg = e.config;
            cfg.storage = key;
            cfg.info.tags = git::tags(#{extra: #{note: "token " + key}});
            experiment::save(cfg);
            yaml::save("saved.yml", #{key: key});
            json::parse("{" + key);
            "#,
        );
    std::fs::set_permissions(
        t.path().join("labhost.private.yml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    git(
        t.path(),
        "git init -q && git -c user.name=A -c user.email=a@b.c commit -q --allow-empty -m x",
    );
    let o = t
        .args(["run", "main.rhai", &format!("--token={SECRET}")])
        .run();
    o.code(1).stderr_has("error[json.parse]");
    assert!(o.stdout.contains("key: ***"), "{}", o.stdout);
    for (what, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        assert!(!text.contains(SECRET), "secret in {what}:\n{text}");
    }
    let mut checked = 0;
    for entry in walk(&o.dir) {
        if entry.ends_with("labhost.private.yml")
            || entry.components().any(|c| c.as_os_str() == ".git")
        {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(
            !text.contains(SECRET),
            "secret in {}:\n{text}",
            entry.display()
        );
        checked += 1;
    }
    let saved: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(o.dir.join("saved.yml")).unwrap()).unwrap();
    assert_eq!(saved, serde_json::json!({"key": "***"}));
    assert!(checked >= 3, "only {checked} files checked");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn private_settings_warn_when_readable_or_tracked_by_git() {
    let t = TestCmd::new()
        .file("labhost.private.yml", "secrets: {api_key: abcdefgh}\n")
        .file("main.rhai", "secrets::get(\"api_key\");");
    std::fs::set_permissions(
        t.path().join("labhost.private.yml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    git(t.path(), "git init -q && git add labhost.private.yml && git -c user.name=A -c user.email=a@b.c commit -q -m oops");
    t.args(["run", "main.rhai"])
        .run()
        .success()
        .stderr_has("labhost.private.yml is readable by group or others (mode 644)")
        .stderr_has("labhost.private.yml is tracked by git");
}

#[test]
fn settings_from_yaml_private_file_and_command_line() {
    TestCmd::new()
        .file("settings.yml", "variables:\n  cluster: shared-gpu\n  lr: 0.5\n")
        .file("labhost.private.yml", "variables:\n  cluster: my-cluster\n")
        .file(
            "main.rhai",
            r#"
            let s = settings::parse(#{cluster: "", lr: 0.1, epochs: 1}, #{yaml: "settings.yml", args: OPTS});
            print(s.args);
            print(s.overrides);
            "#,
        )
        .args(["run", "main.rhai", "--epochs=4"])
        .run()
        .success()
        .stdout_is("#{\"cluster\": \"my-cluster\", \"epochs\": 4, \"lr\": 0.5}\n#{\"epochs\": 4}\n");
}

/// A state directory whose path is not text is refused up front (exit 2, naming the
/// variable), instead of a database at one path and run folders at another.
#[test]
fn a_state_directory_that_is_not_utf8_is_refused_before_anything_is_written() {
    use std::os::unix::ffi::OsStrExt;
    let t = crate::util::TestCmd::new();
    let home = std::ffi::OsStr::from_bytes(b"state-\xff");
    let out = t
        .command()
        .args(["jobs"])
        .env("LABHOST_HOME", t.path().join(home))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("LABHOST_HOME") && err.contains("not valid UTF-8"),
        "{err}"
    );
    let made: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b"state-"))
        .collect();
    assert!(made.is_empty(), "nothing is created");
}
