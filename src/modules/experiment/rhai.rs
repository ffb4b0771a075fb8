//! Rhai binding for `experiment`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::modules::experiment as m;
    use crate::script::bridge::{encode, OrRhai};

    /// Loads an experiment config (with `yaml::load` substitution). Without
    /// `info.experiment_key`, makes a new random key and folder under `info.output_folder` (else
    /// the artifacts directory) and writes the resolved config there as `config.yml`; with one,
    /// reopens that folder. Returns `#{config, key, path, created}`.
    ///
    /// ```rhai
    /// fs::write("exp.yml", "info: {output_folder: runs}\nmodel: {width: 64}\n");
    /// let e = experiment::load("exp.yml");
    /// assert(e.created);
    /// assert(fs::exists(e.path + "/config.yml"));
    /// let again = experiment::load(e.path + "/config.yml");
    /// assert_eq(again.key, e.key);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn load(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::load(Path::new(path)).or_rhai(&ctx)?)
    }

    /// Writes a loaded config (changed or not) back into its experiment folder; returns the
    /// file written. Registered secrets are written as `***`. Errors: `experiment.invalid`.
    ///
    /// ```rhai
    /// fs::write("exp.yml", "info: {output_folder: runs}\nlr: 0.1\n");
    /// let e = experiment::load("exp.yml");
    /// let cfg = e.config;
    /// cfg.lr = 0.01;
    /// let file = experiment::save(cfg);
    /// assert_eq(yaml::load(file).lr, 0.01);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn save(ctx: NativeCallContext, config: Dynamic) -> Result<String, Box<EvalAltResult>> {
        let v = crate::modules::yaml::rhai::to_value(&ctx, &config)?;
        Ok(m::save(&v).or_rhai(&ctx)?.display().to_string())
    }

    /// The nussl directories: `#{artifacts, cache, dataset, code}` from `ARTIFACTS_DIRECTORY`,
    /// `CACHE_DIRECTORY`, `DATA_DIRECTORY`, `CODE_DIRECTORY`, else `artifacts/`, `cache/`,
    /// `data/` and the working directory.
    ///
    /// ```rhai
    /// env::set("DATA_DIRECTORY", "/datasets");
    /// let d = experiment::dirs();
    /// assert_eq(d.dataset, "/datasets");
    /// assert(d.artifacts.ends_with("/artifacts"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn dirs(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::dirs())
    }
}
