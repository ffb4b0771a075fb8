//! The script host: engine construction, the async bridge, embedded stdlib, diagnostics and
//! the REPL. Everything that touches rhai outside `modules/*/rhai.rs` lives here.
pub mod bridge;
pub mod diag;
pub mod doc;
pub mod engine;
pub mod repl;
pub mod stdlib;
