//! labhost library: everything the binary does, so integration and unit tests reach it.
//!
//! Layers, top-down; each imports only from the layers below it, and no two units import
//! each other (`tests/architecture.rs` checks it; the README's Architecture section draws it):
//! - [`cli`]: clap definitions, dispatch, the one error printer. Imported by nothing.
//! - [`script`]: the script host: engine, module registration, stdlib resolver, script
//!   runner, diagnostics, REPL, docs. Imported by the CLI only.
//! - [`modules`]: one folder per native module: a typed Rust API (`mod.rs`) and its thin
//!   Rhai binding (`rhai.rs`). The driver modules (jobs, sweep, track, azure, cron) sit above
//!   the engine; the resource modules it uses (gpu, docker, git) below it.
//! - [`engine`]: the local executor (job host, supervisor, MLflow endpoint).
//! - [`bridge`]: what bindings share: errors, `block_on`, decoding of script values.
//! - [`store`]: the run store every module shares (SQLite).
//! - [`process`]: the one way a child process is started, contained and stopped.
//! - runtime services: [`runtime`] (tokio runtime, cancellation, Ctrl-C, output sink),
//!   [`config`] (every `LABHOST_*` variable), [`state`], [`redact`], [`clock`], and shared
//!   types: [`command`], [`error`], [`util`]; [`beneath`] (paths from clients and files
//!   opened beneath their root).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod beneath;
pub mod bridge;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod modules;
pub mod process;
pub mod redact;
pub mod runtime;
pub mod script;
pub mod state;
pub mod store;
pub mod util;
