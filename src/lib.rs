//! labhost library: everything the binary does, so integration and unit tests reach it.
//!
//! Layers (top-down): [`cli`] → [`app`] → [`script`] (engine, bridge, diagnostics, REPL)
//! → [`modules`] (typed APIs + thin Rhai bindings) → runtime services ([`host`], [`state`]).
pub mod app;
pub mod cli;
pub mod error;
pub mod host;
pub mod jobs;
pub mod modules;
pub mod redact;
pub mod script;
pub mod state;
pub mod util;
