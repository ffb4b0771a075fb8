//! Rhai binding for `secrets`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetOpts {
    #[serde(default)]
    allow_missing: bool,
}

#[export_module]
pub mod api {
    use crate::bridge::{decode, OrRhai};
    use crate::modules::secrets as m;

    /// A secret from the private settings file (`labhost.private.yml`, `secrets:` section; or
    /// `$LABHOST_PRIVATE_SETTINGS`), else the environment variable of the upper-cased name.
    /// From then on the value is printed, logged and saved as `***`.
    /// Errors: `secrets.missing` saying where it looked.
    ///
    /// ```rhai
    /// env::set("MY_API_TOKEN", "tok-5f2a9c");
    /// let t = secrets::get("my_api_token");
    /// assert_eq(t.len(), 10);
    /// print("token is " + t);          // prints: token is ***
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn get(ctx: NativeCallContext, name: &str) -> Result<String, Box<EvalAltResult>> {
        let file = crate::modules::settings::private_file();
        match m::lookup(name, file.as_deref()).or_rhai(&ctx)? {
            Some(v) => Ok(v),
            None => Err(crate::bridge::to_rhai(
                &ctx,
                m::missing(&[name.to_string()], file.as_deref()),
            )),
        }
    }

    /// `secrets::get` with options: `allow_missing` (return `()` instead of failing).
    ///
    /// ```rhai
    /// assert_eq(secrets::get("surely_not_set_anywhere", #{allow_missing: true}), ());
    /// ```
    #[rhai_fn(name = "get", return_raw, volatile)]
    pub fn get_with(
        ctx: NativeCallContext,
        name: &str,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let o: super::GetOpts = decode(&ctx, "secrets::get options", opts.into())?;
        let file = crate::modules::settings::private_file();
        match m::lookup(name, file.as_deref()).or_rhai(&ctx)? {
            Some(v) => Ok(v.into()),
            None if o.allow_missing => Ok(Dynamic::UNIT),
            None => Err(crate::bridge::to_rhai(
                &ctx,
                m::missing(&[name.to_string()], file.as_deref()),
            )),
        }
    }

    /// Several secrets as a map; one error lists every missing name.
    ///
    /// ```rhai
    /// env::set("DB_USER", "labuser1");
    /// env::set("DB_PASS", "hunter22");
    /// let s = secrets::get_many(["db_user", "db_pass"]);
    /// assert_eq(s.keys().len(), 2);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn get_many(ctx: NativeCallContext, names: Array) -> Result<Map, Box<EvalAltResult>> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let file = crate::modules::settings::private_file();
        let got = m::get_many(&names, file.as_deref()).or_rhai(&ctx)?;
        Ok(got.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// Registers a value obtained some other way (e.g. a token printed by a login command) so
    /// that it is masked like a secret from now on.
    ///
    /// ```rhai
    /// let token = "abc-" + 12345;
    /// secrets::register(token);
    /// assert_eq(secrets::mask("use " + token), "use ***");
    /// ```
    #[rhai_fn(volatile)]
    pub fn register(value: &str) {
        crate::redact::register(value)
    }

    /// The text with every registered secret replaced by `***`.
    ///
    /// ```rhai
    /// env::set("K8S_TOKEN", "k8s-very-secret");
    /// let t = secrets::get("k8s_token");
    /// assert_eq(secrets::mask(`--token=${t}`), "--token=***");
    /// ```
    #[rhai_fn(volatile)]
    pub fn mask(text: &str) -> String {
        crate::redact::apply(text)
    }
}
