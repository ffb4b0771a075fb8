//! Rhai binding for `experiment`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

/// `experiment::load` options.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoadOpts {
    env_vars: Option<Vec<String>>,
    key: Option<String>,
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::bridge::{encode, OrRhai};
    use crate::modules::experiment as m;

    /// Loads an experiment config as nussl's `load_experiment` does (with `yaml::load`
    /// substitution). Without a key (`info.experiment_key` missing, empty, or nussl's
    /// `${EXPERIMENT_KEY}`), makes a new random key, reads the file with `${EXPERIMENT_KEY}`
    /// set to it (and sets `EXPERIMENT_KEY` in the environment), and writes the resolved config
    /// as `config.yml` into the experiment folder: `info.output_folder` when it ends with the
    /// key (nussl's `${ARTIFACTS_DIRECTORY}/…/${EXPERIMENT_KEY}`), else `<output_folder>/<key>`.
    /// With a key, reopens that folder. Returns `#{config, key, path, created}`.
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
        encode(
            &ctx,
            &m::load(Path::new(path), &Default::default()).or_rhai(&ctx)?,
        )
    }

    /// `experiment::load` with options: `key` (reopen the experiment with this key) and
    /// `env_vars` (nussl's `{NAME}` names, as for `yaml::load`).
    ///
    /// ```rhai
    /// fs::write("exp.yml", "info:\n  experiment_key: ${EXPERIMENT_KEY}\n  output_folder: runs/speech/${EXPERIMENT_KEY}\nmodel_path: runs/speech/${EXPERIMENT_KEY}/checkpoints/best.pth\n");
    /// let e = experiment::load("exp.yml", #{key: "abc"});
    /// assert_eq(e.path, "runs/speech/abc");
    /// assert_eq(e.config.model_path, "runs/speech/abc/checkpoints/best.pth");
    /// assert_eq(env::get("EXPERIMENT_KEY"), "abc");
    /// ```
    #[rhai_fn(name = "load", return_raw, volatile)]
    pub fn load_with(
        ctx: NativeCallContext,
        path: &str,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let o: super::RawLoadOpts =
            crate::bridge::decode(&ctx, "experiment::load options", opts.into())?;
        let lo = m::LoadOpts {
            env_vars: o.env_vars,
            key: o.key,
        };
        encode(&ctx, &m::load(Path::new(path), &lo).or_rhai(&ctx)?)
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
