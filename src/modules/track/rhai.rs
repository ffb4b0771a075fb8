//! Rhai binding for `track`.
use rhai::plugin::*;

pub fn module() -> Module {
    exported_module!(api)
}

fn script(ctx: &NativeCallContext) -> String {
    ctx.call_source().unwrap_or("script").to_string()
}

#[export_module]
pub mod api {
    use crate::bridge::{decode, encode, host_err, OrRhai};
    use crate::modules::track as m;

    /// Runs in the store matching a query: `#{experiment, filter, order_by, limit}` with
    /// MLflow's filter grammar (`metrics.acc > 0.9 and params.lr = '0.1' and tags.x != 'y'`,
    /// `attributes.status = 'FINISHED'`; AND only) and order-by terms (`"metrics.acc DESC"`).
    /// Each run: `#{id, name, kind, status, experiment_id, parent_id, started, ended, run_dir,
    /// metrics (latest values), params, tags}`. Errors: `track.invalid_filter`,
    /// `track.not_found` (an unknown experiment).
    ///
    /// ```rhai
    /// for x in [0.2, 0.9, 0.5] {
    ///     jobs::submit(#{command: `echo '{"name": "acc", "value": ${x}}' >> $LABHOST_METRICS`, params: #{x: x}}).wait();
    /// }
    /// let rs = track::runs(#{filter: "metrics.acc > 0.3", order_by: ["metrics.acc DESC"]});
    /// assert_eq(rs.map(|r| r.metrics.acc), [0.9, 0.5]);
    /// assert_eq(rs[0].params.x, "0.9");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn runs(ctx: NativeCallContext, query: rhai::Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let q: m::Query = decode(&ctx, "track::runs query", query.into())?;
        encode(&ctx, &m::runs(&q).or_rhai(&ctx)?)
    }

    /// One run, as `track::runs` shows it.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true", name: "one"});
    /// j.wait();
    /// assert_eq(track::run(j.id).name, "one");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn run(ctx: NativeCallContext, id: i64) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::run(id).or_rhai(&ctx)?)
    }

    /// A metric's history: `[#{name, value, step, ts}]` in step order.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: `for i in 1 2 3; do echo "{\"name\": \"loss\", \"value\": 0.$i, \"step\": $i}" >> $LABHOST_METRICS; done`});
    /// j.wait();
    /// assert_eq(track::metrics(j.id, "loss").map(|m| m.step), [1, 2, 3]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn metrics(
        ctx: NativeCallContext,
        id: i64,
        key: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::metrics(id, key).or_rhai(&ctx)?)
    }

    /// Logs a metric into the current run (the job's inside a job, else the script's own run,
    /// made on first use); `step` defaults to 0. Returns the run id.
    ///
    /// ```rhai
    /// let id = track::log_metric("acc", 0.5, 1);
    /// track::log_metric("acc", 0.7, 2);
    /// assert_eq(track::metrics(id, "acc").map(|m| m.value), [0.5, 0.7]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn log_metric(
        ctx: NativeCallContext,
        key: &str,
        value: Dynamic,
        step: i64,
    ) -> Result<i64, Box<EvalAltResult>> {
        let v = crate::bridge::number(&value).ok_or_else(|| {
            host_err(
                &ctx,
                "invalid_argument",
                format!(
                    "track::log_metric: value must be a number, got {}",
                    value.type_name()
                ),
            )
        })?;
        let metric = crate::store::Metric {
            name: key.into(),
            value: v,
            step,
            ts: 0.0,
        };
        m::log(
            &super::script(&ctx),
            std::slice::from_ref(&metric),
            &[],
            &[],
        )
        .or_rhai(&ctx)
    }

    /// Logs a param into the current run (params do not change once logged, as MLflow's).
    ///
    /// ```rhai
    /// let id = track::log_param("lr", 0.01);
    /// assert_eq(track::run(id).params.lr, "0.01");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn log_param(
        ctx: NativeCallContext,
        key: &str,
        value: Dynamic,
    ) -> Result<i64, Box<EvalAltResult>> {
        let v: serde_json::Value = decode(&ctx, "track::log_param value", value)?;
        m::log(&super::script(&ctx), &[], &[(key.into(), m::text(&v))], &[]).or_rhai(&ctx)
    }

    /// Sets a tag on the current run.
    ///
    /// ```rhai
    /// let id = track::set_tag("stage", "baseline");
    /// assert_eq(track::run(id).tags.stage, "baseline");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn set_tag(
        ctx: NativeCallContext,
        key: &str,
        value: &str,
    ) -> Result<i64, Box<EvalAltResult>> {
        m::log(
            &super::script(&ctx),
            &[],
            &[],
            &[(key.into(), value.into())],
        )
        .or_rhai(&ctx)
    }

    /// Files a run produced (`artifacts/…`, `outputs/…`), relative to its run folder.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "echo x > $LABHOST_RUN_DIR/outputs/model.txt"});
    /// j.wait();
    /// assert_eq(track::artifacts(j.id), ["outputs/model.txt"]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn artifacts(ctx: NativeCallContext, id: i64) -> Result<rhai::Array, Box<EvalAltResult>> {
        Ok(m::artifacts(id)
            .or_rhai(&ctx)?
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }

    /// Runs side by side as a text table: params and latest metrics as columns.
    ///
    /// ```rhai
    /// let a = jobs::submit(#{command: "true", params: #{lr: 0.1}});
    /// let b = jobs::submit(#{command: "true", params: #{lr: 0.01}});
    /// a.wait(); b.wait();
    /// let t = track::compare([a.id, b.id]);
    /// assert(t.starts_with("run"));
    /// assert(t.contains("0.01"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn compare(ctx: NativeCallContext, ids: rhai::Array) -> Result<String, Box<EvalAltResult>> {
        let ids: Vec<i64> = decode(&ctx, "track::compare ids", ids.into())?;
        m::compare(&ids).or_rhai(&ctx)
    }
}
