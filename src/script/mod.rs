//! The script host: engine construction and module registration, the script runner, the
//! async bridge and the decoding of script values, embedded stdlib, diagnostics, the REPL and
//! doc generation. Everything that touches rhai outside `modules/*/rhai.rs` lives here.
pub mod bridge;
pub mod decode;
pub mod diag;
pub mod doc;
pub mod engine;
pub mod repl;
pub mod run;
pub mod stdlib;
