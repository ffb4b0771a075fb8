//! Rhai binding for `sh`.
use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, OrRhai, RhaiResult};
use crate::command::Command;
use crate::modules::sh::{self as m, RunOpts};
use crate::util::{Seconds, Text};

pub fn module() -> Module {
    exported_module!(api)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOpts {
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Text>,
    timeout: Option<Seconds>,
    stdin: Option<String>,
    /// `sh::stream` only: text put before every streamed line.
    prefix: Option<String>,
}

fn parse_cmd(ctx: &NativeCallContext, fname: &str, cmd: Dynamic) -> RhaiResult<Command> {
    decode(ctx, &format!("{fname} command"), cmd)
}

fn parse_opts(
    ctx: &NativeCallContext,
    fname: &str,
    opts: Map,
) -> RhaiResult<(RunOpts, Option<String>)> {
    let raw: RawOpts = decode(ctx, &format!("{fname} options"), opts.into())?;
    Ok((
        RunOpts {
            cwd: raw.cwd,
            env: raw.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
            timeout: raw.timeout.map(|t| t.0),
            stdin: raw.stdin,
        },
        raw.prefix,
    ))
}

fn exec(
    ctx: &NativeCallContext,
    cmd: Dynamic,
    opts: Map,
    fname: &str,
    stream: bool,
) -> RhaiResult<Dynamic> {
    let cmd = parse_cmd(ctx, fname, cmd)?;
    let (opts, prefix) = parse_opts(ctx, fname, opts)?;
    let host = crate::runtime::ctx();
    let sink: Option<m::LineSink> = stream.then(|| {
        let prefix = prefix.unwrap_or_default();
        Arc::new(move |s: crate::runtime::Stream, line: &str| {
            crate::runtime::ctx()
                .sink
                .line(s, &format!("{prefix}{line}"))
        }) as m::LineSink
    });
    // sh::run handles cancellation itself (it must kill the process group first).
    let out = host
        .rt
        .block_on(m::run(&cmd, &opts, sink, host.cancel.token()))
        .or_rhai(ctx)?;
    crate::bridge::encode(ctx, &out)
}

#[export_module]
pub mod api {
    /// Runs a command and waits for it. A string runs through `sh -c`; an array runs the
    /// program directly. Returns `#{code, stdout, stderr, duration}`; a non-zero exit is a
    /// value, not an error. Errors: `sh.not_found`, `sh.invalid_cwd`, `sh.timeout`.
    ///
    /// ```rhai
    /// let r = sh::run("echo hello; exit 3");
    /// assert_eq(r.code, 3);
    /// assert_eq(r.stdout, "hello\n");
    /// let r = sh::run(["printf", "%s-%s", "a b", "c"]);
    /// assert_eq(r.stdout, "a b-c");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn run(ctx: NativeCallContext, cmd: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
        super::exec(&ctx, cmd, Map::new(), "sh::run", false)
    }

    /// Runs a command with options: `cwd`, `env` (map), `timeout` (seconds or `"90s"`;
    /// the whole process group is killed), `stdin` (text fed to the command).
    ///
    /// ```rhai
    /// fs::mkdir("work");
    /// let r = sh::run("cat; echo \" $LR\"; pwd", #{cwd: "work", env: #{LR: 0.1}, stdin: "lr is"});
    /// assert(r.stdout.starts_with("lr is 0.1\n"));
    /// assert(r.stdout.ends_with("/work\n"));
    /// let kind = ();
    /// try { sh::run("sleep 5", #{timeout: "100ms"}); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "sh.timeout");
    /// ```
    #[rhai_fn(name = "run", return_raw, volatile)]
    pub fn run_with(
        ctx: NativeCallContext,
        cmd: Dynamic,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        super::exec(&ctx, cmd, opts, "sh::run", false)
    }

    /// Runs a command, streaming its stdout/stderr lines live to the script's output as they
    /// come, and returns the same `#{code, stdout, stderr, duration}` as `sh::run`.
    /// (Named `stream`, not `spawn`: `spawn` is a reserved word in Rhai.)
    ///
    /// ```rhai
    /// let r = sh::stream("echo step 1; echo step 2");
    /// assert_eq(r.code, 0);
    /// assert_eq(r.stdout, "step 1\nstep 2\n");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn stream(ctx: NativeCallContext, cmd: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
        super::exec(&ctx, cmd, Map::new(), "sh::stream", true)
    }

    /// `sh::stream` with the options of `sh::run`, plus `prefix`: text put before every
    /// streamed line (e.g. the job name).
    ///
    /// ```rhai
    /// let r = sh::stream(["echo", "training"], #{prefix: "[exp1] "});
    /// assert_eq(r.stdout, "training\n");
    /// ```
    #[rhai_fn(name = "stream", return_raw, volatile)]
    pub fn stream_with(
        ctx: NativeCallContext,
        cmd: Dynamic,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        super::exec(&ctx, cmd, opts, "sh::stream", true)
    }
}
