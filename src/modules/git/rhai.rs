//! Rhai binding for `git`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use std::collections::BTreeMap;

use crate::bridge::{host_err, RhaiResult};
use crate::modules::git::Overrides;

pub fn module() -> Module {
    exported_module!(api)
}

const OVERRIDE_KEYS: [&str; 5] = [
    "build_branch",
    "build_source_id",
    "build_source_author",
    "build_source_message",
    "build_source_repository",
];

/// The AzureConfig-style keys of a map (usually `OPTS`, the script's whole command line:
/// other keys are ignored, as InnerEye's parser ignores what it does not know). A value must
/// be text or a number.
fn overrides(ctx: &NativeCallContext, what: &str, m: &Map) -> RhaiResult<Overrides> {
    let mut got: Vec<Option<String>> = Vec::new();
    for k in OVERRIDE_KEYS {
        let v = match m.get(k) {
            Some(v) => {
                crate::bridge::decode::from_dynamic::<crate::util::Text>(v)
                    .map_err(|e| host_err(ctx, "invalid_argument", format!("{what}: `{k}` {e}")))?
                    .0
            }
            None => String::new(),
        };
        got.push(Some(v).filter(|v| !v.is_empty()));
    }
    let mut it = got.into_iter();
    let mut next = || it.next().flatten();
    Ok(Overrides {
        build_branch: next(),
        build_source_id: next(),
        build_source_author: next(),
        build_source_message: next(),
        build_source_repository: next(),
    })
}

/// `git::tags` options of its own (the overrides besides).
#[derive(serde::Deserialize, Default)]
struct TagOpts {
    path: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, crate::util::Text>,
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::bridge::{encode, OrRhai};
    use crate::modules::git as m;

    /// `#{repository, branch, is_detached, commit_id, commit_message, commit_author, is_dirty}`
    /// of the repository containing `path` (ignored files do not make it dirty; `branch` is
    /// `()` on a detached HEAD). Errors: `git.not_a_repo`.
    ///
    /// ```rhai
    /// sh::run("git init -q -b main && git -c user.name=Ada -c user.email=a@b.c commit -q --allow-empty -m init");
    /// let g = git::info(".");
    /// assert_eq(g.branch, "main");
    /// assert_eq(g.commit_author, "Ada");
    /// assert_eq(g.commit_message, "init");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn info(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(
            &ctx,
            &m::info(Path::new(path), &m::Overrides::default()).or_rhai(&ctx)?,
        )
    }

    /// `git::info` where command-line values win, as in InnerEye: pass `OPTS`, and
    /// `--build_branch`, `--build_source_id`, `--build_source_author`, `--build_source_message`,
    /// `--build_source_repository` replace what the repository says (all five: no repository
    /// needed at all).
    ///
    /// ```rhai
    /// let g = git::info(".", #{build_branch: "ci/main", build_source_id: "abc123",
    ///     build_source_author: "ci", build_source_message: "nightly", build_source_repository: "lab"});
    /// assert_eq(g.branch, "ci/main");
    /// assert_eq(g.commit_id, "abc123");
    /// ```
    #[rhai_fn(name = "info", return_raw, volatile)]
    pub fn info_with(
        ctx: NativeCallContext,
        path: &str,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(
            &ctx,
            &m::info(
                Path::new(path),
                &super::overrides(&ctx, "git::info options", &opts)?,
            )
            .or_rhai(&ctx)?,
        )
    }

    /// Run tags (InnerEye `get_git_tags` + `additional_run_tags`) for the repository of the
    /// working directory: `source_repository`, `source_branch`, `source_id`, `source_dirty`,
    /// `source_author`, `source_message`, `build_user`, `commandline_args` — secrets masked.
    ///
    /// ```rhai
    /// sh::run("git init -q -b exp && git -c user.name=Ada -c user.email=a@b.c commit -q --allow-empty -m go");
    /// let t = git::tags();
    /// assert_eq(t.source_branch, "exp");
    /// assert_eq(t.source_dirty, "True");     // this script itself is not committed
    /// assert(t.commandline_args.contains("labhost"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn tags(ctx: NativeCallContext) -> Result<Map, Box<EvalAltResult>> {
        tags_with(ctx, Map::new())
    }

    /// `git::tags` with options: command-line overrides as for `git::info` (pass `OPTS`),
    /// `path`, and `extra` (more tags, e.g. `#{tag: "baseline"}`).
    ///
    /// ```rhai
    /// sh::run("git init -q -b exp && git -c user.name=Ada -c user.email=a@b.c commit -q --allow-empty -m go");
    /// let t = git::tags(#{extra: #{tag: "baseline"}, build_branch: "release"});
    /// assert_eq(t.tag, "baseline");
    /// assert_eq(t.source_branch, "release");
    /// ```
    #[rhai_fn(name = "tags", return_raw, volatile)]
    pub fn tags_with(ctx: NativeCallContext, opts: Map) -> Result<Map, Box<EvalAltResult>> {
        let what = "git::tags options";
        let own: Map = opts
            .iter()
            .filter(|(k, _)| k.as_str() == "path" || k.as_str() == "extra")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let o: super::TagOpts = crate::bridge::decode(&ctx, what, own.into())?;
        let path = o.path.unwrap_or_else(|| ".".into());
        let info =
            m::info(Path::new(&path), &super::overrides(&ctx, what, &opts)?).or_rhai(&ctx)?;
        let extra: std::collections::BTreeMap<String, String> =
            o.extra.into_iter().map(|(k, v)| (k, v.0)).collect();
        let cmdline = std::env::args().collect::<Vec<_>>().join(" ");
        Ok(m::tags(&info, &cmdline, &extra)
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// InnerEye `create_experiment_name`: `name` if not empty, else the current branch
    /// (without `refs/heads/`) made Azure-friendly, else `<user>_<yyyymmdd_hhmmss>`.
    ///
    /// ```rhai
    /// assert_eq(git::experiment_name("my-exp"), "my-exp");
    /// sh::run("git init -q -b user/feature-x && git -c user.name=A -c user.email=a@b.c commit -q --allow-empty -m x");
    /// assert_eq(git::experiment_name(""), "user_feature_x");
    /// ```
    #[rhai_fn(volatile)]
    pub fn experiment_name(name: &str) -> String {
        let branch = m::info(Path::new("."), &m::Overrides::default())
            .ok()
            .and_then(|i| i.branch);
        m::experiment_name(Some(name), branch.as_deref())
    }

    /// Fails with `git.dirty`, listing the changed files, unless the working tree of the
    /// repository containing the working directory is clean (ignored files do not count).
    ///
    /// ```rhai
    /// sh::run("git init -q && git -c user.name=A -c user.email=a@b.c commit -q --allow-empty -m x");
    /// fs::write("notes.txt", "wip");
    /// let kind = ();
    /// try { git::require_clean(); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "git.dirty");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn require_clean(ctx: NativeCallContext) -> Result<(), Box<EvalAltResult>> {
        m::require_clean(Path::new(".")).or_rhai(&ctx)
    }
}
