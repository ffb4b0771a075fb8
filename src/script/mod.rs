//! The script host: engine construction and module registration, the script runner,
//! embedded stdlib, diagnostics, the REPL and doc generation. Bindings reach rhai through
//! `modules/*/rhai.rs` and `crate::bridge` (below this host: the async bridge, errors and the
//! decoding of script values).
pub mod diag;
pub mod doc;
pub mod engine;
pub mod repl;
pub mod run;
pub mod stdlib;
