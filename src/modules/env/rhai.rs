//! Rhai binding for `env`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    use crate::bridge::OrRhai;
    use crate::modules::env as m;

    /// The value of an environment variable, or `()` if it is not set.
    ///
    /// ```rhai
    /// env::set("LABHOST_EXAMPLE", "1");
    /// assert_eq(env::get("LABHOST_EXAMPLE"), "1");
    /// assert_eq(env::get("LABHOST_SURELY_UNSET"), ());
    /// ```
    #[rhai_fn(volatile)]
    pub fn get(name: &str) -> Dynamic {
        m::get(name).map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    }

    /// The value of an environment variable, or `default` if it is not set.
    ///
    /// ```rhai
    /// assert_eq(env::get("LABHOST_SURELY_UNSET", "/data"), "/data");
    /// ```
    #[rhai_fn(name = "get", volatile)]
    pub fn get_or(name: &str, default: Dynamic) -> Dynamic {
        m::get(name).map(Dynamic::from).unwrap_or(default)
    }

    /// Sets an environment variable for this process and every command it starts.
    /// Non-string values are converted to text.
    ///
    /// ```rhai
    /// env::set("EPOCHS", 3);
    /// assert_eq(sh::run("echo $EPOCHS").stdout, "3\n");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn set(
        ctx: NativeCallContext,
        name: &str,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        m::set(name, &value.to_string()).or_rhai(&ctx)
    }

    /// Removes an environment variable.
    ///
    /// ```rhai
    /// env::set("TMP_FLAG", "x");
    /// env::unset("TMP_FLAG");
    /// assert_eq(env::get("TMP_FLAG"), ());
    /// ```
    #[rhai_fn(volatile)]
    pub fn unset(name: &str) {
        m::unset(name)
    }

    /// All environment variables as a map.
    ///
    /// ```rhai
    /// env::set("SWEEP_ID", "s1");
    /// assert_eq(env::vars()["SWEEP_ID"], "s1");
    /// ```
    #[rhai_fn(volatile)]
    pub fn vars() -> Map {
        m::vars()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }
}
