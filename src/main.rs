//! labhost: one binary that hosts Rhai scripts for ML experiment automation.
use std::process::ExitCode;

fn main() -> ExitCode {
    labhost::cli::main()
}
