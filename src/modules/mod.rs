//! Native modules. Each folder holds a typed Rust API (`mod.rs`, no rhai) and its thin Rhai
//! binding (`rhai.rs`). To add a module: create the folder, add it to `register_all` and
//! `NATIVE`; its functions then appear in `labhost doc`, REPL completion and the doc-example
//! test automatically.
use rhai::Engine;

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
pub mod time;
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
];

pub fn register_all(e: &mut Engine) {
    e.register_global_module(prelude::rhai::module().into());
    e.register_static_module("fs", fs::rhai::module().into());
    e.register_static_module("sh", sh::rhai::module().into());
    e.register_static_module("env", env::rhai::module().into());
    e.register_static_module("json", json::rhai::module().into());
    e.register_static_module("time", time::rhai::module().into());
    e.register_static_module("log", log::rhai::module().into());
    e.register_static_module("gpu", gpu::rhai::module().into());
    e.register_static_module("yaml", yaml::rhai::module().into());
    e.register_static_module("settings", settings::rhai::module().into());
    e.register_static_module("secrets", secrets::rhai::module().into());
    e.register_static_module("git", git::rhai::module().into());
    e.register_static_module("experiment", experiment::rhai::module().into());
    e.register_static_module("util", util::rhai::module().into());
    e.register_static_module("docker", docker::rhai::module().into());
    e.register_static_module("jobs", jobs::rhai::module().into());
}
