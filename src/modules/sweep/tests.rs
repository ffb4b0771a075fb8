//! Parsing, round trips and substitution of sweep documents.
use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/azureml")
}

#[test]
fn azures_examples_round_trip_through_to_yaml() {
    for name in [
        "sweep-hello.yml",
        "sweep-sklearn-iris.yml",
        "command-hello-world.yml",
        "command-pytorch-distributed.yml",
    ] {
        let s = load(&fixtures().join(name), &[]).unwrap();
        let y = s.to_yaml().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, &y).unwrap();
        let back = load(&p, &[]).unwrap();
        assert_eq!(back.space, s.space, "{name}");
        assert_eq!(back.algorithm, s.algorithm, "{name}");
        assert_eq!(back.trial.command, s.trial.command, "{name}");
        assert_eq!(back.max_total, s.max_total, "{name}");
        assert_eq!(back.timeout, s.timeout, "{name}");
        assert_eq!(
            (back.maximize, &back.metric),
            (s.maximize, &s.metric),
            "{name}"
        );
    }
}

#[test]
fn the_iris_example_reads_as_azure_means_it() {
    let s = load(&fixtures().join("sweep-sklearn-iris.yml"), &[]).unwrap();
    assert_eq!(
        s.space
            .0
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["C", "kernel", "coef0"]
    );
    assert_eq!(s.space.0[0].1, Dist::Uniform(0.5, 0.9));
    assert_eq!(
        s.algorithm,
        Algorithm::Random {
            seed: None,
            sobol: false
        }
    );
    assert!(!s.maximize);
    assert_eq!((s.max_total, s.max_concurrent), (20, 10));
    assert_eq!(s.timeout, std::time::Duration::from_secs(7200));
    // The folded command keeps its words; bindings are substituted and quoted for sh.
    let mut p = Params::new();
    p.insert("C".into(), serde_json::json!(0.7));
    p.insert("kernel".into(), serde_json::json!("rbf"));
    p.insert("coef0".into(), serde_json::json!(0.25));
    assert_eq!(
        s.command_for(&p),
        "python main.py --iris-csv wasbs://tables@labhostsamples.blob.core.windows.net/flowers/iris.csv --C 0.7 --kernel rbf --coef0 0.25"
    );
    assert!(s.notes.iter().any(|n| n.contains("iris_csv")));
}

#[test]
fn outputs_are_folders_of_the_trial_made_before_it_runs() {
    let text = "type: sweep\ntrial:\n  command: train --out ${{outputs.model}} --x '${{search_space.x}}'\nsearch_space:\n  x: {type: choice, values: [\"a b\"]}\noutputs:\n  model:\nobjective: {goal: minimize, primary_metric: loss}\n";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.yml");
    std::fs::write(&p, text).unwrap();
    let s = load(&p, &[]).unwrap();
    let pt = s.space.grid_point(0);
    assert_eq!(
        s.command_for(&pt),
        "mkdir -p \"$LABHOST_RUN_DIR/outputs/model\" && train --out \"$LABHOST_RUN_DIR/outputs/model\" --x 'a b'"
    );
}

#[test]
fn set_overrides_values_and_identity_follows_the_document() {
    let f = fixtures().join("sweep-hello.yml");
    let a = load(&f, &[]).unwrap();
    let b = load(&f, &[("inputs.A".into(), "0.7".into())]).unwrap();
    assert_eq!(b.inputs["A"].text, "0.7");
    assert_ne!(a.identity(), b.identity());
    assert_eq!(a.identity(), load(&f, &[]).unwrap().identity());
}

#[test]
fn innereye_names_are_aliases() {
    let text = "type: sweep\ntrial: {command: x}\nsearch_space: {a: {type: choice, values: [1, 2]}}\nobjective: {goal: Maximize, primary_metric_name: val_acc}\nlimits: {max_total_runs: 7, max_concurrent_runs: 3}\n";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.yml");
    std::fs::write(&p, text).unwrap();
    let s = load(&p, &[]).unwrap();
    assert_eq!((s.max_total, s.max_concurrent), (7, 3));
    assert_eq!(s.metric, "val_acc");
    // "Maximize" as Azure echoes it is accepted.
    assert!(s.maximize);
}
