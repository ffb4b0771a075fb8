//! Rhai binding for `json`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DumpOpts {
    #[serde(default)]
    pretty: bool,
}

#[export_module]
pub mod api {
    use crate::bridge::{decode, encode, OrRhai};
    use crate::modules::json as m;

    /// Parses JSON text into script values (objects become maps, arrays arrays).
    /// Errors: `json.parse` with line and column.
    ///
    /// ```rhai
    /// let v = json::parse(`{"lr": 0.1, "layers": [64, 32], "name": "mlp"}`);
    /// assert_eq(v.lr, 0.1);
    /// assert_eq(v.layers[1], 32);
    /// let kind = ();
    /// try { json::parse("{oops}"); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "json.parse");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse(ctx: NativeCallContext, text: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let v = m::parse(text).or_rhai(&ctx)?;
        encode(&ctx, &v)
    }

    /// Serialises a value as compact JSON. Map keys come out sorted.
    ///
    /// ```rhai
    /// assert_eq(json::dump(#{b: [1, 2], a: true}), `{"a":true,"b":[1,2]}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn dump(ctx: NativeCallContext, value: Dynamic) -> Result<String, Box<EvalAltResult>> {
        m::dump(&value.flatten(), false).or_rhai(&ctx)
    }

    /// Serialises a value as JSON with options: `pretty` (indented, one key per line).
    ///
    /// ```rhai
    /// assert_eq(json::dump(#{a: 1}, #{pretty: true}), "{\n  \"a\": 1\n}");
    /// ```
    #[rhai_fn(name = "dump", return_raw)]
    pub fn dump_with(
        ctx: NativeCallContext,
        value: Dynamic,
        opts: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let o: super::DumpOpts = decode(&ctx, "json::dump options", opts.into())?;
        m::dump(&value.flatten(), o.pretty).or_rhai(&ctx)
    }
}
