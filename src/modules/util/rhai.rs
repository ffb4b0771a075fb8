//! Rhai binding for `util`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

/// InnerEye `value_to_string`: lists joined by commas, Python spellings for bools and ().
pub fn value_to_string(v: &Dynamic) -> String {
    if let Some(a) = v.read_lock::<Array>() {
        return a.iter().map(value_to_string).collect::<Vec<_>>().join(",");
    }
    if let Ok(b) = v.as_bool() {
        return if b { "True" } else { "False" }.into();
    }
    if v.is_unit() {
        return "None".into();
    }
    v.to_string()
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::bridge::{host_err, OrRhai};
    use crate::modules::util as m;

    /// InnerEye `run_duration_string_to_seconds`: whole seconds, `()` for `""`.
    ///
    /// ```rhai
    /// assert_eq(util::run_duration_string_to_seconds("3.5h"), 12600);
    /// assert_eq(util::run_duration_string_to_seconds(""), ());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run_duration_string_to_seconds(
        ctx: NativeCallContext,
        s: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        Ok(m::run_duration_string_to_seconds(s)
            .or_rhai(&ctx)?
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT))
    }

    /// InnerEye `split_recovery_id`: `[experiment, run]` from `experiment:run` or from a bare run
    /// id like `user_branch_abcde12_123`. Errors: `util.invalid_recovery_id`.
    ///
    /// ```rhai
    /// assert_eq(util::split_recovery_id("foo:bar"), ["foo", "bar"]);
    /// assert_eq(util::split_recovery_id("user_branch_abcde12_123"), ["user_branch_abcde12", "user_branch_abcde12_123"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn split_recovery_id(
        ctx: NativeCallContext,
        id: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let (e, r) = m::split_recovery_id(id).or_rhai(&ctx)?;
        Ok(vec![e.into(), r.into()])
    }

    /// InnerEye `to_azure_friendly_string`: runs of non-word characters become one `_`.
    ///
    /// ```rhai
    /// assert_eq(util::to_azure_friendly_string("user/feature-x.2"), "user_feature_x_2");
    /// ```
    pub fn to_azure_friendly_string(s: &str) -> String {
        crate::modules::git::to_azure_friendly_string(s)
    }

    /// InnerEye `to_azure_friendly_container_path`: `\` → `/`, repeated `/` collapsed.
    ///
    /// ```rhai
    /// assert_eq(util::to_azure_friendly_container_path("a\\b//c"), "a/b/c");
    /// ```
    pub fn to_azure_friendly_container_path(p: &str) -> String {
        m::to_azure_friendly_container_path(p)
    }

    /// The text without `prefix` if it starts with it.
    ///
    /// ```rhai
    /// assert_eq(util::strip_prefix("refs/heads/main", "refs/heads/"), "main");
    /// ```
    pub fn strip_prefix(s: &str, prefix: &str) -> String {
        m::strip_prefix(s, prefix)
    }

    /// InnerEye `step_up_directories`: the absolute path and each parent up to `/`.
    ///
    /// ```rhai
    /// assert_eq(util::step_up_directories("/a/b"), ["/a/b", "/a", "/"]);
    /// ```
    #[rhai_fn(volatile)]
    pub fn step_up_directories(p: &str) -> Array {
        m::step_up_directories(Path::new(p))
            .into_iter()
            .map(|p| p.display().to_string().into())
            .collect()
    }

    /// InnerEye `value_to_string`: arrays as `a,b,c`, booleans as `True`/`False`.
    ///
    /// ```rhai
    /// assert_eq(util::value_to_string([1, 2, 3]), "1,2,3");
    /// assert_eq(util::value_to_string(true), "True");
    /// ```
    pub fn value_to_string(v: Dynamic) -> String {
        super::value_to_string(&v)
    }

    /// InnerEye `tag_values_all_distinct`: true when every run (a map with a `tags` map, or a
    /// tag map itself) has a different value for `tag`. Errors: `util.missing_tag`.
    ///
    /// ```rhai
    /// let runs = [#{tags: #{split: "0"}}, #{tags: #{split: "1"}}];
    /// assert(util::tag_values_all_distinct(runs, "split"));
    /// assert(!util::tag_values_all_distinct([#{split: 1}, #{split: 1}], "split"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn tag_values_all_distinct(
        ctx: NativeCallContext,
        runs: Array,
        tag: &str,
    ) -> Result<bool, Box<EvalAltResult>> {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in runs.iter().enumerate() {
            let Some(m) = r.read_lock::<Map>() else {
                return Err(host_err(
                    &ctx,
                    "invalid_argument",
                    format!("run {i} is not a map"),
                ));
            };
            let tags = m
                .get("tags")
                .and_then(|t| t.read_lock::<Map>().map(|t| t.clone()))
                .unwrap_or_else(|| m.clone());
            let Some(v) = tags.get(tag) else {
                return Err(host_err(
                    &ctx,
                    "util.missing_tag",
                    format!("run {i} has no tag '{tag}'"),
                ));
            };
            seen.insert(v.to_string());
        }
        Ok(seen.len() == runs.len())
    }

    /// nussl/InnerEye `make_random_string`: `n` random letters and digits.
    ///
    /// ```rhai
    /// let k = util::make_random_string(12);
    /// assert_eq(k.len(), 12);
    /// ```
    #[rhai_fn(volatile)]
    pub fn make_random_string(n: i64) -> String {
        m::make_random_string(n.clamp(0, 4096) as usize)
    }
}
