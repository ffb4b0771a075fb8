//! Parsing and validation of sweep documents (YAML and maps).
use super::*;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/examples/azureml")
}

#[test]
fn placeholder_examples_dir() {
    let _ = examples();
}
