//! Rhai binding for `yaml`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, host_err, RhaiResult};
use crate::modules::yaml::LoadOpts;

pub fn module() -> Module {
    exported_module!(api)
}

/// A script value as a document.
pub fn to_value(ctx: &NativeCallContext, v: &Dynamic) -> RhaiResult<serde_json::Value> {
    serde_json::to_value(v.clone().flatten()).map_err(|e| {
        host_err(
            ctx,
            "invalid_argument",
            format!("not representable as YAML: {e}"),
        )
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLoadOpts {
    env_vars: Vec<String>,
    env: bool,
    interpolate: bool,
}

impl Default for RawLoadOpts {
    fn default() -> Self {
        let d = LoadOpts::default();
        RawLoadOpts {
            env_vars: d.env_vars,
            env: d.env,
            interpolate: d.interpolate,
        }
    }
}

pub fn load_opts(ctx: &NativeCallContext, what: &str, opts: Map) -> RhaiResult<LoadOpts> {
    let r: RawLoadOpts = decode(ctx, what, opts.into())?;
    Ok(LoadOpts {
        env_vars: r.env_vars,
        env: r.env,
        interpolate: r.interpolate,
        ..Default::default()
    })
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::bridge::{encode, OrRhai};
    use crate::modules::yaml as m;

    /// Parses YAML text (anchors and merge keys work; only `true`/`false` are booleans).
    /// No substitution: see `yaml::load`. Errors: `yaml.parse` with line and column.
    ///
    /// ```rhai
    /// let v = yaml::parse("base: &b {lr: 0.1}\nexp: {<<: *b, epochs: 3}");
    /// assert_eq(v.exp, #{lr: 0.1, epochs: 3});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse(ctx: NativeCallContext, text: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::parse(text, "<yaml>").or_rhai(&ctx)?)
    }

    /// Loads a YAML file with substitution: `{DATA_DIRECTORY}`-style names (nussl's list),
    /// `${VAR}` / `${VAR:-default}` from the environment, `${a.b}` references to other values.
    /// Errors name the file, line and column: `yaml.parse`, `yaml.unset_variable`,
    /// `yaml.missing_key`, `yaml.cycle`, `yaml.unterminated`, `yaml.not_found`.
    ///
    /// ```rhai
    /// env::set("DATA_DIRECTORY", "/data");
    /// fs::write("exp.yml", "data: '{DATA_DIRECTORY}/speech'\nwidth: 64\nname: mlp-${width}\nseed: ${SEED:-7}\n");
    /// let cfg = yaml::load("exp.yml");
    /// assert_eq(cfg.data, "/data/speech");
    /// assert_eq(cfg.name, "mlp-64");
    /// assert_eq(cfg.seed, "7");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn load(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(
            &ctx,
            &m::load(Path::new(path), &m::LoadOpts::default()).or_rhai(&ctx)?,
        )
    }

    /// `yaml::load` with options: `env_vars` (names for `{NAME}` substitution), `env` (false:
    /// leave `${VAR}` alone), `interpolate` (false: leave `${a.b}` alone).
    ///
    /// ```rhai
    /// fs::write("raw.yml", "cmd: echo ${HOME}\n");
    /// assert_eq(yaml::load("raw.yml", #{env: false}).cmd, "echo ${HOME}");
    /// ```
    #[rhai_fn(name = "load", return_raw, volatile)]
    pub fn load_with(
        ctx: NativeCallContext,
        path: &str,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let o = super::load_opts(&ctx, "yaml::load options", opts)?;
        encode(&ctx, &m::load(Path::new(path), &o).or_rhai(&ctx)?)
    }

    /// Serialises a value as YAML (map keys come out sorted: script maps are sorted).
    ///
    /// ```rhai
    /// assert_eq(yaml::dump(#{lr: 0.1, layers: [64, 32]}), "layers:\n- 64\n- 32\nlr: 0.1\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn dump(ctx: NativeCallContext, value: Dynamic) -> Result<String, Box<EvalAltResult>> {
        m::dump(&super::to_value(&ctx, &value)?).or_rhai(&ctx)
    }

    /// Writes a value as YAML, atomically. Secrets read by `secrets::get` are written as `***`.
    ///
    /// ```rhai
    /// yaml::save("out.yml", #{epochs: 3});
    /// assert_eq(yaml::load("out.yml").epochs, 3);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn save(
        ctx: NativeCallContext,
        path: &str,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        m::save(Path::new(path), &super::to_value(&ctx, &value)?).or_rhai(&ctx)
    }

    /// Recursive merge (nussl/InnerEye `deep_update`): maps merge key by key, other values
    /// in `overrides` replace. Returns a new map.
    ///
    /// ```rhai
    /// let cfg = yaml::deep_update(#{train: #{lr: 0.1, epochs: 10}}, #{train: #{lr: 0.01}});
    /// assert_eq(cfg, #{train: #{lr: 0.01, epochs: 10}});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn deep_update(
        ctx: NativeCallContext,
        base: Dynamic,
        overrides: Dynamic,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut b = super::to_value(&ctx, &base)?;
        m::deep_update(&mut b, &super::to_value(&ctx, &overrides)?);
        encode(&ctx, &b)
    }

    /// nussl `flatten` with `_`: `#{a: #{b: 1}}` → `#{a_b: 1}`.
    ///
    /// ```rhai
    /// assert_eq(yaml::flatten(#{train: #{lr: 0.1}, seed: 1}), #{train_lr: 0.1, seed: 1});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn flatten(ctx: NativeCallContext, map: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        flatten_sep(ctx, map, "_")
    }

    /// `flatten` with another separator.
    ///
    /// ```rhai
    /// assert_eq(yaml::flatten(#{train: #{lr: 0.1}}, "."), #{"train.lr": 0.1});
    /// ```
    #[rhai_fn(name = "flatten", return_raw)]
    pub fn flatten_sep(
        ctx: NativeCallContext,
        map: Map,
        sep: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let v = super::to_value(&ctx, &map.into())?;
        encode(&ctx, &m::flatten(&v, sep))
    }

    /// The inverse of `flatten` (separator `_`). Errors: `yaml.conflict`.
    ///
    /// ```rhai
    /// assert_eq(yaml::unflatten(#{train_lr: 0.1}), #{train: #{lr: 0.1}});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn unflatten(ctx: NativeCallContext, map: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        unflatten_sep(ctx, map, "_")
    }

    /// `unflatten` with another separator.
    ///
    /// ```rhai
    /// assert_eq(yaml::unflatten(#{"a.b": 1, "a.c": 2}, "."), #{a: #{b: 1, c: 2}});
    /// ```
    #[rhai_fn(name = "unflatten", return_raw)]
    pub fn unflatten_sep(
        ctx: NativeCallContext,
        map: Map,
        sep: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let v = super::to_value(&ctx, &map.into())?;
        let obj = v.as_object().cloned().unwrap_or_default();
        encode(&ctx, &m::unflatten(&obj, sep).or_rhai(&ctx)?)
    }
}
