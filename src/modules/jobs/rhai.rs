//! Rhai binding for `jobs`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, RhaiResult};
use crate::modules::jobs as m;

pub fn module() -> Module {
    exported_module!(api)
}

/// A handle on a job in the state store.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
}

/// `jobs::pool` options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolArgs {
    max_workers: Option<std::num::NonZeroU32>,
    #[serde(default)]
    fail_fast: bool,
    #[serde(default)]
    quiet: bool,
}

fn spec(ctx: &NativeCallContext, what: &str, mut map: Map) -> RhaiResult<m::JobSpec> {
    // depends_on may hold job handles as well as ids.
    if let Some(deps) = map.get_mut("depends_on") {
        if let Some(a) = deps.read_lock::<Array>().map(|a| a.clone()) {
            let ids: Array = a
                .into_iter()
                .map(|d| match d.read_lock::<Job>() {
                    Some(j) => Dynamic::from(j.id),
                    None => d.clone(),
                })
                .collect();
            *deps = ids.into();
        }
    }
    decode(ctx, what, map.into())
}

fn finished_summary(s: &m::pool::Summary) -> RhaiResult<Map> {
    let mut out = Map::new();
    out.insert("total".into(), (s.ids.len() as i64).into());
    for st in crate::store::RunStatus::FINISHED {
        out.insert(st.as_str().into(), (s.count(st) as i64).into());
    }
    out.insert("not_submitted".into(), (s.not_submitted as i64).into());
    out.insert(
        "jobs".into(),
        s.ids
            .iter()
            .map(|i| Dynamic::from(Job { id: *i }))
            .collect::<Array>()
            .into(),
    );
    Ok(out)
}

#[export_module]
pub mod api {
    use crate::bridge::{encode, OrRhai};
    use crate::modules::jobs as m;

    pub type JobHandle = super::Job;

    /// Submits a job to the persistent engine and returns its handle at once. Spec: `command`
    /// (string via `sh -c`, or array), `cwd`, `env`, `num_gpus` (a GPU lease is held while it
    /// runs), `name`, `tags`, `params`, `priority`, `depends_on` (ids or handles; a failed
    /// dependency fails its dependents), `retries`, `backoff`, `timeout` (seconds), `key`
    /// (idempotency: a job with this key that exists is returned, not run again), `parent`,
    /// `blocking`, `run_in` (`"host"`, or `"docker"` with `image`, `mounts`, `network`: the
    /// command runs in a container with the run folder and working directory mounted at their
    /// own paths), `experiment` (its run's experiment, by name), `log_limit` (`"100MiB"` or
    /// bytes: the most each of `stdout.log` and `stderr.log` keeps — the latest output; a
    /// full file becomes `stdout.log.1` and the new one starts with a line saying so; default
    /// `LABHOST_LOG_LIMIT`, else unlimited).
    /// The job sees `LABHOST_JOB_ID`, `LABHOST_RUN_DIR` and `LABHOST_METRICS` (append JSON lines
    /// `{"name": "loss", "value": 0.3, "step": 1}` to report metrics), and an MLflow client in
    /// it logs into its run (`MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID`, `MLFLOW_EXPERIMENT_ID`).
    /// Errors: `jobs.invalid_spec`, `jobs.unknown_dependency`, `invalid_argument` (unknown keys).
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "echo hello from $LABHOST_JOB_ID", name: "hello"});
    /// assert_eq(j.wait(), "completed");
    /// assert_eq(j.logs(), `hello from ${j.id}` + "\n");
    /// let t = jobs::submit(#{command: "echo $MLFLOW_EXPERIMENT_NAME", experiment: "iris"});
    /// assert_eq(t.wait(), "completed");
    /// assert_eq(t.logs(), "iris\n");
    /// let chatty = jobs::submit(#{command: "seq 100000", log_limit: "4KiB"});
    /// chatty.wait();
    /// let log = chatty.logs();
    /// assert(log.starts_with("[labhost] log_limit 4.0KiB"));
    /// assert(log.ends_with("99999\n100000\n") && log.len() <= 2048);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn submit(ctx: NativeCallContext, spec: Map) -> Result<JobHandle, Box<EvalAltResult>> {
        let s = super::spec(&ctx, "jobs::submit spec", spec)?;
        let r = m::submit(&s).or_rhai(&ctx)?;
        if s.blocking {
            m::wait(r.id, &crate::runtime::ctx().cancel.token()).or_rhai(&ctx)?;
        }
        Ok(super::Job { id: r.id })
    }

    /// A handle on an existing job.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true"});
    /// assert_eq(jobs::get(j.id).id, j.id);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn get(ctx: NativeCallContext, id: i64) -> Result<JobHandle, Box<EvalAltResult>> {
        m::get(id).or_rhai(&ctx)?;
        Ok(super::Job { id })
    }

    /// Submits every spec, runs them with at most `max_workers` at once (default: CPUs), waits
    /// for all and returns `#{total, completed, failed, cancelled, timed_out, jobs}`.
    /// `fail_fast: true` cancels what is left after the first failure (and submits nothing
    /// more). A spec with `blocking: true` must end before the specs after it are submitted
    /// (nussl). Progress goes to stderr: a bar on a terminal, otherwise a line at most once a
    /// second; `quiet: true` (or `labhost -q`) turns it off.
    ///
    /// ```rhai
    /// let specs = [];
    /// for i in 0..4 { specs.push(#{command: `exit ${if i == 2 { 1 } else { 0 }}`, params: #{i: i}}); }
    /// let s = jobs::pool(specs, #{max_workers: 2});
    /// assert_eq([s.total, s.completed, s.failed], [4, 3, 1]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn pool(
        ctx: NativeCallContext,
        specs: Array,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        let o: super::PoolArgs = crate::bridge::decode(&ctx, "jobs::pool options", opts.into())?;
        let mut parsed = Vec::with_capacity(specs.len());
        for (i, s) in specs.into_iter().enumerate() {
            let what = format!("jobs::pool specs[{i}]");
            let map = s.try_cast::<Map>().ok_or_else(|| {
                crate::bridge::host_err(&ctx, "invalid_argument", format!("{what}: must be a map"))
            })?;
            parsed.push(super::spec(&ctx, &what, map)?);
        }
        let opts = m::pool::PoolOpts {
            max_workers: o.max_workers.map(|w| w.get() as usize),
            fail_fast: o.fail_fast,
        };
        let mut progress = m::progress::Progress::new(parsed.len(), "pool", o.quiet);
        let summary = m::pool::run(
            parsed,
            &opts,
            &mut progress,
            &crate::runtime::ctx().cancel.token(),
        )
        .or_rhai(&ctx)?;
        super::finished_summary(&summary)
    }

    /// How many jobs this process runs at once (default: the number of CPUs, or
    /// `LABHOST_WORKERS`).
    ///
    /// ```rhai
    /// jobs::workers(2);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn workers(ctx: NativeCallContext, n: i64) -> Result<(), Box<EvalAltResult>> {
        m::set_workers(n.max(1) as usize).or_rhai(&ctx)
    }

    /// The job id.
    ///
    /// ```rhai
    /// assert(jobs::submit(#{command: "true"}).id > 0);
    /// ```
    #[rhai_fn(get = "id", pure)]
    pub fn id(j: &mut JobHandle) -> i64 {
        j.id
    }

    /// `queued`, `leased`, `running`, `completed`, `failed`, `cancelled` or `timed_out`.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true"});
    /// j.wait();
    /// assert_eq(j.status(), "completed");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn status(ctx: NativeCallContext, j: &mut JobHandle) -> Result<String, Box<EvalAltResult>> {
        Ok(m::get(j.id).or_rhai(&ctx)?.status.to_string())
    }

    /// Waits for the job to finish; returns its final status. Ctrl-C stops waiting.
    ///
    /// ```rhai
    /// assert_eq(jobs::submit(#{command: "exit 3"}).wait(), "failed");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn wait(ctx: NativeCallContext, j: &mut JobHandle) -> Result<String, Box<EvalAltResult>> {
        Ok(m::wait(j.id, &crate::runtime::ctx().cancel.token())
            .or_rhai(&ctx)?
            .status
            .to_string())
    }

    /// Exit code of the last attempt (`()` while it runs or if it was killed).
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "exit 3"});
    /// j.wait();
    /// assert_eq(j.exit_code, 3);
    /// ```
    #[rhai_fn(get = "exit_code", pure, return_raw, volatile)]
    pub fn exit_code(
        ctx: NativeCallContext,
        j: &mut JobHandle,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        Ok(m::get(j.id)
            .or_rhai(&ctx)?
            .exit_code
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT))
    }

    /// The job's run folder (`spec.json`, `stdout.log`, `stderr.log`, `metrics.jsonl`,
    /// `outputs/`).
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "echo done > $LABHOST_RUN_DIR/outputs/result.txt"});
    /// j.wait();
    /// assert_eq(fs::read(j.run_dir + "/outputs/result.txt"), "done\n");
    /// ```
    #[rhai_fn(get = "run_dir", pure, return_raw, volatile)]
    pub fn run_dir(
        ctx: NativeCallContext,
        j: &mut JobHandle,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(m::get(j.id).or_rhai(&ctx)?.run_dir)
    }

    /// The job's stdout so far.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: ["echo", "a b"]});
    /// j.wait();
    /// assert_eq(j.logs(), "a b\n");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn logs(ctx: NativeCallContext, j: &mut JobHandle) -> Result<String, Box<EvalAltResult>> {
        m::logs(j.id, "stdout").or_rhai(&ctx)
    }

    /// Metric histories reported through `LABHOST_METRICS`: name → `[#{step, value, ts}]`.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: `for s in 1 2; do echo "{\"name\":\"loss\",\"value\":0.$s,\"step\":$s}" >> $LABHOST_METRICS; done`});
    /// j.wait();
    /// let loss = j.metrics().loss;
    /// assert_eq(loss.map(|m| m.value), [0.1, 0.2]);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn metrics(ctx: NativeCallContext, j: &mut JobHandle) -> Result<Map, Box<EvalAltResult>> {
        let mut out = Map::new();
        for mt in crate::store::with_current(|s| s.metrics(j.id, None)).or_rhai(&ctx)? {
            let entry = out
                .entry(mt.name.clone().into())
                .or_insert_with(|| Dynamic::from(Array::new()));
            let mut point = Map::new();
            point.insert("step".into(), mt.step.into());
            point.insert("value".into(), mt.value.into());
            point.insert("ts".into(), mt.ts.into());
            if let Some(mut a) = entry.write_lock::<Array>() {
                a.push(point.into());
            }
        }
        Ok(out)
    }

    /// Cancels the job (killing its process group if it runs); returns its status after.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "sleep 60"});
    /// j.cancel();
    /// assert_eq(j.wait(), "cancelled");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn cancel(ctx: NativeCallContext, j: &mut JobHandle) -> Result<String, Box<EvalAltResult>> {
        Ok(m::cancel(j.id, "cancelled by script")
            .or_rhai(&ctx)?
            .to_string())
    }

    /// Cancels the job with a reason, kept in the store and shown by `labhost jobs`,
    /// `labhost status` and `info().cancel_reason`.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "sleep 60"});
    /// j.cancel("cancelled by policy: bandit, 0.41 < 0.66 at interval 4");
    /// j.wait();
    /// assert_eq(j.info().cancel_reason, "cancelled by policy: bandit, 0.41 < 0.66 at interval 4");
    /// ```
    #[rhai_fn(global, name = "cancel", return_raw, volatile)]
    pub fn cancel_because(
        ctx: NativeCallContext,
        j: &mut JobHandle,
        reason: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(m::cancel(j.id, reason).or_rhai(&ctx)?.to_string())
    }

    /// The job's record: `#{id, name, status, attempt, exit_code, error, run_dir, spec, …}`,
    /// with its `params` and `tags` (what the spec gave and what the job logged, e.g. through
    /// MLflow).
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true", name: "rec", key: "info-example", params: #{lr: 0.1}});
    /// j.wait();
    /// assert_eq(j.info().name, "rec");
    /// assert_eq(j.info().params.lr, 0.1);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn info(ctx: NativeCallContext, j: &mut JobHandle) -> Result<Dynamic, Box<EvalAltResult>> {
        let run = m::get(j.id).or_rhai(&ctx)?;
        let (params, tags) =
            crate::store::with_current(|s| Ok((s.params(j.id)?, s.tags(j.id)?))).or_rhai(&ctx)?;
        let mut v = serde_json::to_value(&run)
            .map_err(|e| crate::bridge::host_err(&ctx, "internal", e.to_string()))?;
        v["params"] = serde_json::Value::Object(params.into_iter().collect());
        v["tags"] = serde_json::Value::Object(
            tags.into_iter()
                .map(|(k, t)| (k, serde_json::Value::String(t)))
                .collect(),
        );
        encode(&ctx, &v)
    }

    /// `Job(17)`.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true"});
    /// assert_eq(j.to_string(), `Job(${j.id})`);
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(j: &mut JobHandle) -> String {
        format!("Job({})", j.id)
    }
}
