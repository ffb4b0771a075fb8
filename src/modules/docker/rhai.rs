//! Rhai binding for `docker`. Examples in this file run against a real engine (the test
//! script starts one) with the test image `labhost-test:busybox` and no network.
use std::collections::BTreeMap;

use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, host_err, OrRhai, RhaiResult};
use crate::command::Command;
use crate::modules::docker::{Gpus, RunSpec, Volume};
use crate::util::{Seconds, Text};

pub fn module() -> Module {
    exported_module!(api)
}

/// `volumes`: an array of `"host:/container[:ro]"` strings or `#{source, target, read_only}`
/// maps, or a docker-py / nussl map: `#{"/host": "/container"}` or
/// `#{"/host": #{bind: "/container", mode: "ro"}}`.
#[derive(Default)]
struct Volumes(Vec<VolumeArg>);

enum VolumeArg {
    Spec(String),
    Parts {
        source: String,
        target: String,
        read_only: bool,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeParts {
    source: String,
    target: String,
    #[serde(default)]
    read_only: bool,
}

/// docker-py's `{"bind": "/container", "mode": "ro"}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerPyBind {
    bind: String,
    #[serde(default)]
    mode: Option<DockerPyMode>,
}

#[derive(serde::Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum DockerPyMode {
    Ro,
    Rw,
}

impl<'de> serde::Deserialize<'de> for VolumeArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VolumeArg;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a volume: \"host:/container[:ro]\" or #{source, target, read_only}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VolumeArg, E> {
                Ok(VolumeArg::Spec(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<VolumeArg, A::Error> {
                let p = <VolumeParts as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(VolumeArg::Parts {
                    source: p.source,
                    target: p.target,
                    read_only: p.read_only,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The target of a docker-py map entry: a path, or `#{bind, mode}`.
struct Bind(String, bool);

impl<'de> serde::Deserialize<'de> for Bind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a container path or #{bind: \"/path\", mode: \"ro\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bind, E> {
                Ok(Bind(v.to_string(), false))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<Bind, A::Error> {
                let b = <DockerPyBind as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(Bind(b.bind, b.mode == Some(DockerPyMode::Ro)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Volumes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Volumes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("volumes: an array of \"host:/container[:ro]\" strings or #{source, target, read_only} maps, or a map of host paths to container paths")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Volumes, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element::<VolumeArg>()? {
                    out.push(v);
                }
                Ok(Volumes(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Volumes, A::Error> {
                let mut out = Vec::new();
                while let Some((source, Bind(target, read_only))) =
                    m.next_entry::<String, Bind>()?
                {
                    out.push(VolumeArg::Parts {
                        source,
                        target,
                        read_only,
                    });
                }
                Ok(Volumes(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    image: Option<String>,
    command: Option<Command>,
    name: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Text>,
    workdir: Option<String>,
    user: Option<String>,
    #[serde(default)]
    volumes: Volumes,
    #[serde(default)]
    storage: bool,
    #[serde(
        default,
        deserialize_with = "crate::modules::gpu::select::de_opt_bytes"
    )]
    shm_size: Option<u64>,
    network: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Text>,
    auto_remove: Option<bool>,
    timeout: Option<Seconds>,
    #[serde(default)]
    detach: bool,
    prefix: Option<String>,
    #[serde(default)]
    stop_on_exit: bool,
}

/// `docker::build` options.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuildOpts {
    tag: Option<String>,
    dockerfile: Option<String>,
    #[serde(default)]
    build_args: BTreeMap<String, Text>,
    network: Option<String>,
}

/// `docker::ps` options.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPsOpts {
    label: Option<String>,
}

/// `container.logs` options.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogsOpts {
    #[serde(default)]
    follow: bool,
    tail: Option<u32>,
}

fn gpus_arg(ctx: &NativeCallContext, v: Dynamic) -> RhaiResult<Gpus> {
    if let Some(lease) = v.read_lock::<crate::modules::gpu::ledger::Lease>() {
        return Ok(Gpus::Ids(lease.uuids()));
    }
    if v.is_unit() {
        return Ok(Gpus::None);
    }
    if let Ok(n) = v.as_int() {
        return Ok(Gpus::Count(n));
    }
    if v.is_string() {
        return Ok(Gpus::parse(&v.to_string()));
    }
    if let Some(a) = v.read_lock::<Array>() {
        return Ok(Gpus::Ids(a.iter().map(|x| x.to_string()).collect()));
    }
    Err(host_err(
        ctx,
        "invalid_argument",
        format!(
            "docker::run spec: `gpus` must be a GPU lease, \"all\", a count or device ids, got {}",
            crate::bridge::decode::type_words(&v)
        ),
    ))
}

/// Decodes a run spec; returns it with `detach` and `stop_on_exit`.
fn spec(ctx: &NativeCallContext, mut map: Map) -> RhaiResult<(RunSpec, bool, bool)> {
    let gpus = match map.remove("gpus") {
        Some(g) => Some(gpus_arg(ctx, g)?),
        None => None,
    };
    let r: RawSpec = decode(ctx, "docker::run spec", map.into())?;
    let volumes = r
        .volumes
        .0
        .into_iter()
        .map(|v| match v {
            VolumeArg::Spec(s) => Volume::parse(&s),
            VolumeArg::Parts {
                source,
                target,
                read_only,
            } => Volume::new(&source, &target, read_only),
        })
        .collect::<Result<Vec<_>, _>>()
        .or_rhai(ctx)?;
    let timeout = r.timeout.map(|t| t.0);
    let text = |m: BTreeMap<String, Text>| m.into_iter().map(|(k, v)| (k, v.0)).collect();
    let s = RunSpec {
        image: r.image,
        command: r.command.map(|c| c.argv()),
        name: r.name,
        env: text(r.env),
        workdir: r.workdir,
        user: r.user,
        volumes,
        storage: r.storage.then(crate::modules::experiment::dirs),
        git_commit: crate::modules::git::head_commit(std::path::Path::new(".")),
        shm_size: r.shm_size,
        network: r.network,
        extra_hosts: Vec::new(),
        labels: text(r.labels),
        auto_remove: r.auto_remove.unwrap_or(!r.detach),
        gpus,
        timeout,
        prefix: r.prefix,
    };
    Ok((s, r.detach, r.stop_on_exit))
}

/// A container started with `detach: true`.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
}

fn sink_emit() -> impl FnMut(crate::runtime::Stream, &str) + Send {
    |s, l| crate::runtime::ctx().sink.line(s, l)
}

fn run_blocking<T>(
    f: impl std::future::Future<Output = crate::error::LabResult<T>>,
) -> crate::error::LabResult<T> {
    crate::bridge::block_on(f)?
}

#[export_module]
pub mod api {
    use std::path::Path;
    use std::time::Duration;

    use crate::bridge::{encode, OrRhai};
    use crate::modules::docker as m;

    pub type DockerContainer = super::Container;

    /// Checks that the engine answers. Errors: `docker.unavailable` (with the socket tried).
    ///
    /// ```rhai
    /// docker::ping();
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn ping(ctx: NativeCallContext) -> Result<(), Box<EvalAltResult>> {
        super::run_blocking(m::ping()).or_rhai(&ctx)
    }

    /// `#{version, api_version, os, arch}` of the engine.
    ///
    /// ```rhai
    /// assert_eq(docker::version().os, "linux");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn version(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &super::run_blocking(m::version()).or_rhai(&ctx)?)
    }

    /// Local images: `#{id, tags, size}` each.
    ///
    /// ```rhai
    /// assert(docker::images().some(|i| i.tags.contains("labhost-test:busybox")));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn images(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &super::run_blocking(m::images()).or_rhai(&ctx)?)
    }

    /// True if the image is present locally.
    ///
    /// ```rhai
    /// assert(docker::image_exists("labhost-test:busybox"));
    /// assert(!docker::image_exists("labhost-test:nope"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn image_exists(ctx: NativeCallContext, image: &str) -> Result<bool, Box<EvalAltResult>> {
        super::run_blocking(m::image_exists(image)).or_rhai(&ctx)
    }

    /// Builds an image from a context folder, streaming the build output. Options: `tag`,
    /// `dockerfile`, `build_args` (map), `network` (e.g. `"none"`). Returns the image id.
    /// Errors: `docker.build_failed`.
    ///
    /// ```rhai
    /// fs::mkdir("ctx");
    /// fs::write("ctx/hello.txt", "hi from the image");
    /// fs::write("ctx/Dockerfile", "FROM labhost-test:busybox\nCOPY hello.txt /hello.txt\n");
    /// let id = docker::build("ctx", #{tag: "labhost-test:built-example", network: "none"});
    /// assert(id.starts_with("sha256:"));
    /// let r = docker::run(#{image: "labhost-test:built-example", command: "cat /hello.txt", network: "none"});
    /// assert_eq(r.exit_code, 0);
    /// docker::remove_image("labhost-test:built-example");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn build(
        ctx: NativeCallContext,
        dir: &str,
        opts: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let r: super::RawBuildOpts =
            crate::bridge::decode(&ctx, "docker::build options", opts.into())?;
        let o = m::BuildOpts {
            tag: r.tag,
            dockerfile: r.dockerfile,
            build_args: r.build_args.into_iter().map(|(k, v)| (k, v.0)).collect(),
            network: r.network,
        };
        let mut emit = super::sink_emit();
        super::run_blocking(m::build(Path::new(dir), &o, &mut emit)).or_rhai(&ctx)
    }

    /// Pulls an image from its registry, printing progress. Errors: `docker.pull_failed`
    /// (e.g. offline).
    ///
    /// ```rhai
    /// let kind = ();
    /// try { docker::pull("registry.invalid/nothing:1"); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "docker.pull_failed");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn pull(ctx: NativeCallContext, image: &str) -> Result<(), Box<EvalAltResult>> {
        let mut emit = super::sink_emit();
        super::run_blocking(m::pull(image, &mut emit)).or_rhai(&ctx)
    }

    /// Removes a local image.
    ///
    /// ```rhai
    /// let kind = ();
    /// try { docker::remove_image("labhost-test:never-built"); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "docker.image_not_found");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn remove_image(ctx: NativeCallContext, image: &str) -> Result<(), Box<EvalAltResult>> {
        super::run_blocking(m::remove_image(image)).or_rhai(&ctx)
    }

    /// Runs a container. Spec: `image` (default `DOCKER_IMAGE_NAME`), `command` (string via
    /// `sh -c`, or array), `name` (default from the command, sanitised, unique), `env`,
    /// `workdir`, `user` (default: your uid:gid), `volumes` (`"host:/path[:ro]"` or
    /// `#{source, target, read_only}`), `storage` (nussl mounts: data, cache, artifacts under
    /// /storage, code at /workspace as working dir), `shm_size` (default half the RAM),
    /// `network`, `labels`, `auto_remove` (default true when attached), `gpus` (a GPU lease,
    /// `"all"`, a count or device ids), `timeout`, `prefix`, `detach`, `stop_on_exit`.
    /// Attached: streams output with the container name as prefix and returns
    /// `#{exit_code, duration, id, name}` (a non-zero exit is a value). Detached: returns a
    /// `DockerContainer`. Errors: `docker.image_not_found`, `docker.invalid_mount`,
    /// `docker.no_image`, `docker.timeout`, `docker.conflict`, `docker.unavailable`.
    ///
    /// ```rhai
    /// let r = docker::run(#{image: "labhost-test:busybox", command: "echo $GREETING; exit 3",
    ///                      env: #{GREETING: "hello"}, network: "none"});
    /// assert_eq(r.exit_code, 3);
    /// assert(r.name.starts_with("labhost-echo"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn run(ctx: NativeCallContext, spec: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let (s, detach, stop_on_exit) = super::spec(&ctx, spec)?;
        if detach {
            let (id, name) =
                super::run_blocking(m::start_detached(&s, stop_on_exit)).or_rhai(&ctx)?;
            return Ok(Dynamic::from(super::Container { id, name }));
        }
        let host = crate::runtime::ctx();
        let mut emit = super::sink_emit();
        // m::run handles cancellation itself: it must kill the container first.
        let r = host
            .rt
            .block_on(m::run(&s, &mut emit, host.cancel.token()))
            .or_rhai(&ctx)?;
        encode(&ctx, &r)
    }

    /// labhost's containers (all states): `#{id, name, image, state, status, labels}` each.
    /// `label`: only those with this label (`"k"` or `"k=v"`).
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "sleep 30", network: "none",
    ///                      detach: true, labels: #{exp: "ps-example"}});
    /// let found = docker::ps(#{label: "exp=ps-example"});
    /// assert_eq(found.len(), 1);
    /// assert_eq(found[0].name, c.name);
    /// c.remove();
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn ps(ctx: NativeCallContext, opts: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let o: super::RawPsOpts = crate::bridge::decode(&ctx, "docker::ps options", opts.into())?;
        let label = o.label;
        encode(
            &ctx,
            &super::run_blocking(m::ps(label.as_deref())).or_rhai(&ctx)?,
        )
    }

    /// The container id.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "true", network: "none", detach: true});
    /// assert_eq(c.id.len(), 64);
    /// c.remove();
    /// ```
    #[rhai_fn(get = "id", pure)]
    pub fn id(c: &mut DockerContainer) -> String {
        c.id.clone()
    }

    /// The container name.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "true", name: "My Job #1!", network: "none", detach: true});
    /// assert(c.name.starts_with("My-Job-1"));
    /// c.remove();
    /// ```
    #[rhai_fn(get = "name", pure)]
    pub fn name(c: &mut DockerContainer) -> String {
        c.name.clone()
    }

    /// The engine's state: `created`, `running`, `exited`, …
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "sleep 30", network: "none", detach: true});
    /// assert_eq(c.status(), "running");
    /// c.kill();
    /// c.wait();
    /// assert_eq(c.status(), "exited");
    /// c.remove();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn status(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
    ) -> Result<String, Box<EvalAltResult>> {
        super::run_blocking(m::status(&c.id)).or_rhai(&ctx)
    }

    /// The logs so far, as text.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "echo one; echo two", network: "none", detach: true});
    /// c.wait();
    /// assert_eq(c.logs(), "one\ntwo\n");
    /// c.remove();
    /// ```
    #[rhai_fn(global, name = "logs", return_raw, volatile)]
    pub fn logs_all(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
    ) -> Result<String, Box<EvalAltResult>> {
        logs(ctx, c, Map::new())
    }

    /// Logs with options: `tail` (last N lines), `follow` (stream lines to the output until the
    /// container stops; returns all of it).
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "echo a; echo b; echo c", network: "none", detach: true});
    /// let all = c.logs(#{follow: true});
    /// assert_eq(all, "a\nb\nc\n");
    /// assert_eq(c.logs(#{tail: 1}), "c\n");
    /// c.remove();
    /// ```
    #[rhai_fn(global, name = "logs", return_raw, volatile)]
    pub fn logs(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
        opts: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let o: super::RawLogsOpts =
            crate::bridge::decode(&ctx, "container.logs options", opts.into())?;
        let (follow, tail) = (o.follow, o.tail.map(i64::from));
        let mut emit = super::sink_emit();
        super::run_blocking(m::logs(&c.id, follow, tail, &mut emit)).or_rhai(&ctx)
    }

    /// Waits until the container stops; returns its exit code.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "exit 7", network: "none", detach: true});
    /// assert_eq(c.wait(), 7);
    /// c.remove();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn wait(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
    ) -> Result<i64, Box<EvalAltResult>> {
        super::run_blocking(m::wait(&c.id)).or_rhai(&ctx)
    }

    /// Stops the container: SIGTERM, then SIGKILL after `timeout` seconds.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "sleep 60", network: "none", detach: true});
    /// c.stop(1);
    /// assert_eq(c.status(), "exited");
    /// c.remove();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn stop(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
        timeout: i64,
    ) -> Result<(), Box<EvalAltResult>> {
        super::run_blocking(m::stop(&c.id, Duration::from_secs(timeout.max(0) as u64)))
            .or_rhai(&ctx)
    }

    /// Kills the container (SIGKILL).
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "sleep 60", network: "none", detach: true});
    /// c.kill();
    /// assert_eq(c.wait(), 137);
    /// c.remove();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn kill(ctx: NativeCallContext, c: &mut DockerContainer) -> Result<(), Box<EvalAltResult>> {
        super::run_blocking(m::kill(&c.id)).or_rhai(&ctx)
    }

    /// Removes the container (forcefully, if it still runs).
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "sleep 60", network: "none", detach: true,
    ///                      labels: #{exp: "rm-example"}});
    /// c.remove();
    /// assert_eq(docker::ps(#{label: "exp=rm-example"}).len(), 0);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn remove(
        ctx: NativeCallContext,
        c: &mut DockerContainer,
    ) -> Result<(), Box<EvalAltResult>> {
        super::run_blocking(m::remove(&c.id)).or_rhai(&ctx)
    }

    /// `DockerContainer(name, id12)`.
    ///
    /// ```rhai
    /// let c = docker::run(#{image: "labhost-test:busybox", command: "true", name: "shown", network: "none", detach: true});
    /// assert(c.to_string().starts_with("DockerContainer(shown, "));
    /// c.remove();
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(c: &mut DockerContainer) -> String {
        format!(
            "DockerContainer({}, {})",
            c.name,
            c.id.get(..12).unwrap_or(&c.id)
        )
    }
}
