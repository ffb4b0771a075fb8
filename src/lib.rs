//! labhost library: everything the binary does, so integration and unit tests reach it.
//!
//! Layers, top-down; each imports only from the layers below it (`tests/architecture.rs`
//! checks it):
//! - [`cli`]: clap definitions, dispatch, the one error printer. Imported by nothing.
//! - [`script`]: the script host: engine, module registration, stdlib resolver, script
//!   runner, diagnostics, REPL, docs, and the decoding of script values.
//! - [`modules`]: one folder per native module: a typed Rust API (`mod.rs`) and its thin
//!   Rhai binding (`rhai.rs`).
//! - [`engine`]: the local executor (job host, supervisor, spawn).
//! - [`store`]: the run store every module shares (SQLite).
//! - runtime services: [`host`] (tokio runtime, cancellation, Ctrl-C, output sink),
//!   [`state`], [`redact`], [`clock`], and shared types: [`command`], [`error`], [`util`].
pub mod cli;
pub mod clock;
pub mod command;
pub mod engine;
pub mod error;
pub mod host;
pub mod modules;
pub mod redact;
pub mod script;
pub mod state;
pub mod store;
pub mod util;
