//! `build()`: the one engine used by file runs, `check`, the REPL, docs and tests.
use rhai::{Engine, OptimizationLevel};

use crate::runtime;
use crate::script::stdlib::Resolver;

/// Engine limits, set explicitly so debug (test) and release builds behave the same
/// (rhai's debug defaults are 8 call levels / depth 32, release 64 / 64).
pub mod limits {
    pub const CALL_LEVELS: usize = 128;
    pub const EXPR_DEPTH: usize = 128;
    pub const FN_EXPR_DEPTH: usize = 64;
    pub const STRING_SIZE: usize = 64 << 20;
    pub const ARRAY_SIZE: usize = 10_000_000;
    pub const MAP_SIZE: usize = 1_000_000;
    pub const MODULES: usize = 512;
    pub const VARIABLES: usize = 100_000;
    pub const FUNCTIONS: usize = 100_000;
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// REPL: file modules are re-read on every import instead of cached.
    pub repl: bool,
}

pub fn build(opts: Options) -> Engine {
    let mut e = Engine::new();
    e.set_max_call_levels(limits::CALL_LEVELS)
        .set_max_expr_depths(limits::EXPR_DEPTH, limits::FN_EXPR_DEPTH)
        .set_max_operations(0) // unlimited: Ctrl-C and timeouts stop scripts, not a budget
        .set_max_string_size(limits::STRING_SIZE)
        .set_max_array_size(limits::ARRAY_SIZE)
        .set_max_map_size(limits::MAP_SIZE)
        .set_max_modules(limits::MODULES)
        .set_max_variables(limits::VARIABLES)
        .set_max_functions(limits::FUNCTIONS)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_optimization_level(OptimizationLevel::Simple);

    e.on_progress(|_| {
        runtime::ctx()
            .cancel
            .is_cancelled()
            .then(|| "cancelled".into())
    });
    e.on_print(|s| runtime::ctx().sink.print(s));
    e.on_debug(|s, src, pos| {
        let at = match (src, pos.line()) {
            (Some(src), Some(l)) => format!("[{src}:{l}:{}] ", pos.position().unwrap_or(0)),
            (None, Some(l)) => format!("[{l}:{}] ", pos.position().unwrap_or(0)),
            _ => String::new(),
        };
        runtime::ctx().sink.eprint(&format!("{at}{s}"));
    });
    e.set_module_resolver(Resolver::new(Resolver::env_path(), !opts.repl));
    // `new` is reserved by Rhai but unused by it; Azure's SDK and our users write
    // `sweep::new(…)`, so the word is an ordinary name here (the token mapper is Rhai's
    // documented way to change what a token means; it is marked volatile, not deprecated).
    #[allow(deprecated)]
    e.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(s) if s.as_str() == "new" => rhai::Token::Identifier(s),
        other => other,
    });
    register_modules(&mut e);
    e
}

/// Registers every native module (the prelude globally, the others under their names).
pub fn register_modules(e: &mut Engine) {
    use crate::modules::*;
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
    e.register_static_module("sweep", sweep::rhai::module().into());
    e.register_static_module("track", track::rhai::module().into());
    e.register_static_module("azure", azure::rhai::module().into());
    e.register_static_module("cron", cron::rhai::module().into());
}
