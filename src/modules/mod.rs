//! Native modules. Each folder holds a typed Rust API (`mod.rs`, no rhai) and its thin Rhai
//! binding (`rhai.rs`). To add a module: create the folder, add it to `NATIVE` here and to
//! `script::engine::register_modules`; its functions then appear in `labhost doc`, REPL
//! completion and the doc-example test automatically.

pub mod azure;
pub mod cron;
pub mod docker;
pub mod env;
pub mod experiment;
pub mod fs;
pub mod git;
pub mod gpu;
pub mod jobs;
pub mod json;
pub mod log;
pub mod prelude;
pub mod secrets;
pub mod settings;
pub mod sh;
pub mod sweep;
pub mod time;
pub mod track;
pub mod util;
pub mod yaml;

/// Names of the namespaced native modules (`fs::read`, …), in documentation order.
pub const NATIVE: &[&str] = &[
    "fs",
    "sh",
    "env",
    "json",
    "time",
    "log",
    "gpu",
    "yaml",
    "settings",
    "secrets",
    "git",
    "experiment",
    "util",
    "docker",
    "jobs",
    "sweep",
    "track",
    "azure",
    "cron",
];
