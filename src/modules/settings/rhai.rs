//! Rhai binding for `settings`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOpts {
    yaml: Option<String>,
    /// `"private"` also works (quoted: it is a Rhai reserved word).
    #[serde(alias = "private")]
    private_file: Option<String>,
    /// `${VAR}` / `${a.b}` substitution in the settings files (InnerEye does none).
    #[serde(default)]
    substitute: bool,
    #[serde(default)]
    args: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    fail_on_unknown: bool,
}

#[export_module]
pub mod api {
    use std::path::PathBuf;

    use crate::bridge::{decode, encode, host_err, OrRhai};
    use crate::modules::settings as m;

    /// Typed settings the InnerEye way. `schema` maps each key to its default (the default's
    /// type is the key's type). Values come from, lowest first: the schema, the `variables:`
    /// of `opts.yaml`, the `variables:` of the private settings file (`opts.private_file`,
    /// else `labhost.private.yml` found by stepping up), then `opts.args` (usually `OPTS`).
    /// Both files must have a `variables:` section (InnerEye's `KeyError` otherwise); they are
    /// read as written, without substitution, unless `substitute: true`.
    /// Returns `#{args, overrides, unknown, known_from_yaml, unknown_from_yaml}`;
    /// `fail_on_unknown: true` makes unknown command-line keys an error (`settings.unknown`).
    /// Errors: `settings.type` (with file:line:col for YAML values), `settings.invalid`,
    /// `settings.no_variables`.
    ///
    /// ```rhai
    /// fs::write("settings.yml", "variables:\n  lr: 0.5\n  cluster: gpu-a\n");
    /// let s = settings::parse(#{lr: 0.1, epochs: 10, cluster: ""},
    ///                         #{yaml: "settings.yml", args: #{epochs: "3", typo: 1}});
    /// assert_eq(s.args, #{lr: 0.5, epochs: 3, cluster: "gpu-a"});
    /// assert_eq(s.overrides, #{epochs: 3});
    /// assert_eq(s.unknown, ["typo"]);
    /// assert_eq(s.known_from_yaml.lr, 0.5);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn parse(
        ctx: NativeCallContext,
        schema: Map,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let o: super::RawOpts = decode(&ctx, "settings::parse options", opts.into())?;
        let schema = crate::modules::yaml::rhai::to_value(&ctx, &schema.into())?;
        let req = m::Request {
            schema: schema
                .as_object()
                .cloned()
                .ok_or_else(|| host_err(&ctx, "invalid_argument", "schema must be a map"))?,
            yaml: o.yaml.map(PathBuf::from),
            private: o.private_file.map(PathBuf::from),
            substitute: o.substitute,
            args: o.args,
            fail_on_unknown: o.fail_on_unknown,
            skip_private: false,
        };
        encode(&ctx, &m::parse(&req).or_rhai(&ctx)?)
    }

    /// The private settings file in use (`$LABHOST_PRIVATE_SETTINGS`, else the nearest
    /// `labhost.private.yml` from the working directory up), or `()`.
    ///
    /// ```rhai
    /// assert_eq(settings::private_file(), ());
    /// fs::write("labhost.private.yml", "variables: {}\n");
    /// assert(settings::private_file().ends_with("labhost.private.yml"));
    /// ```
    #[rhai_fn(volatile)]
    pub fn private_file() -> Dynamic {
        m::private_file()
            .map(|p| Dynamic::from(p.display().to_string()))
            .unwrap_or(Dynamic::UNIT)
    }
}
