//! Rhai binding for `sweep`.
use std::sync::Arc;

use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, host_err, RhaiResult};
use crate::modules::sweep as m;

pub fn module() -> Module {
    exported_module!(api)
}

/// A sweep: what `sweep::new` / `sweep::load` return.
#[derive(Debug, Clone)]
pub struct SweepObj(pub Arc<m::Sweep>);

/// How a sweep ended: what `s.run()` returns.
#[derive(Debug, Clone)]
pub struct ResultObj(pub Arc<m::run::SweepResult>);

/// An ask-and-tell study: what `sweep::study` returns.
#[derive(Debug, Clone)]
pub struct StudyObj(pub Arc<std::sync::Mutex<m::study::Study>>);

/// `sweep::study` options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyArgs {
    #[serde(default = "tpe")]
    sampler: String,
    #[serde(default = "minimize")]
    goal: String,
    seed: Option<u64>,
    /// Persist the study in the store under this name (the same name continues it).
    name: Option<String>,
}

fn tpe() -> String {
    "tpe".into()
}

fn minimize() -> String {
    "minimize".into()
}

/// `sweep::cross_validate` options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CvArgs {
    splits: u32,
    /// The metric `best` ranks folds by (hi-ml: `val/loss`).
    #[serde(default = "val_loss")]
    primary_metric: String,
    max_concurrent: Option<std::num::NonZeroU32>,
    #[serde(default)]
    rerun: bool,
    #[serde(default)]
    quiet: bool,
}

fn val_loss() -> String {
    "val/loss".into()
}

/// `s.run(opts)` options.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    #[serde(default)]
    rerun: bool,
    max_concurrent: Option<std::num::NonZeroU32>,
    #[serde(default)]
    quiet: bool,
    #[serde(default)]
    retry_failed: bool,
}

fn dist(ctx: &NativeCallContext, raw: m::RawDist) -> RhaiResult<Map> {
    raw.to_dist()
        .map_err(|e| host_err(ctx, "sweep.invalid", format!("sweep::{}: {e}", raw.kind)))?;
    let v = serde_json::to_value(&raw).map_err(|e| host_err(ctx, "internal", e.to_string()))?;
    rhai::serde::to_dynamic(v)?
        .try_cast::<Map>()
        .ok_or_else(|| host_err(ctx, "internal", "not a map"))
}

fn num(ctx: &NativeCallContext, what: &str, v: &Dynamic) -> RhaiResult<f64> {
    crate::bridge::number(v).ok_or_else(|| {
        host_err(
            ctx,
            "invalid_argument",
            format!(
                "sweep::{what}: arguments must be numbers, got {}",
                v.type_name()
            ),
        )
    })
}

fn range(
    ctx: &NativeCallContext,
    kind: &str,
    a: &Dynamic,
    b: &Dynamic,
    q: Option<&Dynamic>,
) -> RhaiResult<Map> {
    let (a, b) = (num(ctx, kind, a)?, num(ctx, kind, b)?);
    let q = q.map(|q| num(ctx, kind, q)).transpose()?;
    let mut r = m::RawDist {
        kind: kind.into(),
        q,
        ..Default::default()
    };
    if kind.contains("normal") {
        (r.mu, r.sigma) = (Some(a), Some(b));
    } else {
        (r.min_value, r.max_value) = (Some(a), Some(b));
    }
    dist(ctx, r)
}

fn policy(ctx: &NativeCallContext, kind: &str, mut opts: Map) -> RhaiResult<Map> {
    opts.insert("type".into(), kind.into());
    let p: m::Policy = decode(ctx, &format!("sweep::{kind} options"), opts.clone().into())?;
    p.validate()
        .map_err(|e| host_err(ctx, "sweep.invalid", format!("sweep::{kind}: {e}")))?;
    Ok(opts)
}

#[export_module]
pub mod api {
    use super::{ResultObj, SweepObj};
    use crate::bridge::{encode, host_err, OrRhai};
    use crate::modules::sweep as m;

    pub type Sweep = SweepObj;
    pub type SweepResult = ResultObj;
    pub type Study = super::StudyObj;

    /// An ask-and-tell study over a search space (the same expressions as sweeps): the script
    /// computes the objective itself. Options: `sampler` (`"tpe"` default, `"random"`,
    /// `"sobol"`, `"grid"`), `goal` (`"minimize"` default or `"maximize"`), `seed`, `name`.
    /// Without a name the study lives while the script runs; with one it is kept in the store
    /// (every told trial a child run with its params and metric `value`) and the same name
    /// continues it, in this script or a later one.
    ///
    /// ```rhai
    /// let st = sweep::study(#{x: sweep::uniform(-5, 5)}, #{sampler: "tpe", goal: "minimize", seed: 1});
    /// for i in 0..30 {
    ///     let t = st.ask();
    ///     st.tell(t, (t.params.x - 2.0) ** 2);
    /// }
    /// assert(st.best().value < 0.5);
    /// assert_eq(st.told, 30);
    /// // A named study survives the script: opening it again continues it.
    /// let a = sweep::study(#{x: sweep::uniform(0, 1)}, #{name: "demo", seed: 2});
    /// a.tell(a.ask(), 0.25);
    /// let b = sweep::study(#{x: sweep::uniform(0, 1)}, #{name: "demo"});
    /// assert_eq([b.told, b.ask().number], [1, 1]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn study(
        ctx: NativeCallContext,
        space: rhai::Map,
        opts: rhai::Map,
    ) -> Result<Study, Box<EvalAltResult>> {
        let sp: serde_json::Map<String, serde_json::Value> =
            crate::bridge::decode(&ctx, "sweep::study space", space.into())?;
        let o: super::StudyArgs = crate::bridge::decode(&ctx, "sweep::study options", opts.into())?;
        let origin = m::Origin {
            source: "sweep::study",
            text: None,
        };
        let space = m::parse_space(&sp, &origin).or_rhai(&ctx)?;
        let mut st = m::study::Study::new(space, &o.sampler, &o.goal, o.seed).or_rhai(&ctx)?;
        if let Some(name) = &o.name {
            st = st.open(name).or_rhai(&ctx)?;
        }
        Ok(super::StudyObj(std::sync::Arc::new(std::sync::Mutex::new(
            st,
        ))))
    }

    /// The next trial to evaluate: `#{number, params}`.
    ///
    /// ```rhai
    /// let st = sweep::study(#{bs: sweep::choice([32, 64])}, #{sampler: "grid"});
    /// assert_eq(st.ask().params.bs, 32);
    /// assert_eq(st.ask().number, 1);
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn ask(ctx: NativeCallContext, st: &mut Study) -> Result<rhai::Map, Box<EvalAltResult>> {
        let (n, p) =
            st.0.lock()
                .unwrap_or_else(|e| e.into_inner())
                .ask()
                .or_rhai(&ctx)?;
        let mut row = rhai::Map::new();
        row.insert("number".into(), (n as i64).into());
        row.insert("params".into(), encode(&ctx, &p)?);
        Ok(row)
    }

    /// Records the objective's value for a trial (the map `ask` returned, or its number).
    ///
    /// ```rhai
    /// let st = sweep::study(#{x: sweep::uniform(0, 1)}, #{seed: 3});
    /// let t = st.ask();
    /// st.tell(t, 0.5);
    /// assert_eq(st.best().value, 0.5);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn tell(
        ctx: NativeCallContext,
        st: &mut Study,
        trial: Dynamic,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let n = match trial.read_lock::<rhai::Map>() {
            Some(m) => m.get("number").and_then(|v| v.as_int().ok()),
            None => trial.as_int().ok(),
        }
        .ok_or_else(|| {
            host_err(
                &ctx,
                "invalid_argument",
                "tell: the trial is the map ask() returned, or its number",
            )
        })?;
        let v = crate::bridge::number(&value).ok_or_else(|| {
            host_err(
                &ctx,
                "invalid_argument",
                format!(
                    "tell: the value must be a number, got {}",
                    value.type_name()
                ),
            )
        })?;
        st.0.lock()
            .unwrap_or_else(|e| e.into_inner())
            .tell(n.max(0) as u64, v)
            .or_rhai(&ctx)
    }

    /// The best trial told so far: `#{number, params, value}`, or `()`.
    ///
    /// ```rhai
    /// let st = sweep::study(#{x: sweep::choice([1, 2])}, #{sampler: "grid", goal: "maximize"});
    /// let a = st.ask(); st.tell(a, 1);
    /// let b = st.ask(); st.tell(b, 7);
    /// assert_eq(st.best().params.x, 2);
    /// ```
    #[rhai_fn(global, name = "best", return_raw, pure)]
    pub fn study_best(
        ctx: NativeCallContext,
        st: &mut Study,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let g = st.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some((n, p, v)) = g.best() else {
            return Ok(Dynamic::UNIT);
        };
        let mut row = rhai::Map::new();
        row.insert("number".into(), (*n as i64).into());
        row.insert("params".into(), encode(&ctx, p)?);
        row.insert("value".into(), (*v).into());
        Ok(row.into())
    }

    /// How many trials were told.
    ///
    /// ```rhai
    /// let st = sweep::study(#{x: sweep::uniform(0, 1)}, #{});
    /// assert_eq(st.told, 0);
    /// ```
    #[rhai_fn(global, get = "told", pure)]
    pub fn told(st: &mut Study) -> i64 {
        st.0.lock().unwrap_or_else(|e| e.into_inner()).told.len() as i64
    }

    /// A sweep from a map in Azure ML's sweep YAML schema: `trial` (`#{command, code,
    /// environment, environment_variables, num_gpus, run_in, snapshot}` or the path of a
    /// command component YAML), `search_space` (`sweep::choice(…)`, `sweep::uniform(…)`, …),
    /// `sampling_algorithm` (`"random"`, `"grid"`, `"bayesian"`, or `#{type: "random", seed,
    /// rule: "sobol"}`), `objective` (`#{goal, primary_metric}`), `limits`
    /// (`#{max_total_trials, max_concurrent_trials, timeout, trial_timeout}`; durations as
    /// seconds or `"6h"`), `early_termination` (`sweep::bandit(…)`, …), `inputs`, `outputs`,
    /// `experiment_name`, `display_name`, `tags`. The trial command uses
    /// `${{search_space.X}}`, `${{inputs.X}}` and `${{outputs.X}}`. InnerEye's names are
    /// aliases: `max_total_runs`, `max_concurrent_runs`, `primary_metric_name`. A script's
    /// map keeps its keys sorted, so grid order follows parameter names here (a YAML file
    /// keeps its declaration order). Errors: `sweep.invalid`, `invalid_argument`.
    ///
    /// ```rhai
    /// let s = sweep::new(#{
    ///     trial: #{command: "echo lr=${{search_space.lr}} bs=${{search_space.bs}}"},
    ///     search_space: #{lr: sweep::loguniform(-9.2, -2.3), bs: sweep::choice([32, 64])},
    ///     sampling_algorithm: #{type: "random", seed: 7},
    ///     objective: #{goal: "maximize", primary_metric: "acc"},
    ///     limits: #{max_total_trials: 4, max_concurrent_trials: 2},
    /// });
    /// assert_eq(s.trials, 4);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn new(ctx: NativeCallContext, spec: Map) -> Result<Sweep, Box<EvalAltResult>> {
        let doc: m::SweepDoc = crate::bridge::decode(&ctx, "sweep::new", spec.into())?;
        let source = ctx
            .call_source()
            .map(|s| format!("script:{s}"))
            .unwrap_or_else(|| "script".into());
        let base = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let o = m::Origin {
            source: "sweep::new",
            text: None,
        };
        let mut s = m::resolve(doc, &o, &base).or_rhai(&ctx)?;
        s.source = source;
        Ok(SweepObj(std::sync::Arc::new(s)))
    }

    /// Reads a sweep (or command) job YAML exactly as Azure ML's CLI v2 writes it: errors
    /// name the file, line and column. Relative `code`, input paths and `trial:
    /// ./component.yml` resolve against the file's folder.
    ///
    /// ```rhai
    /// fs::write("hello-sweep.yml", "type: sweep\ntrial:\n  command: echo ${{search_space.B}}\n" +
    ///     "sampling_algorithm: grid\nsearch_space:\n  B: {type: choice, values: [hello, world]}\n" +
    ///     "objective: {goal: minimize, primary_metric: random_metric}\n");
    /// let s = sweep::load("hello-sweep.yml");
    /// assert_eq(s.trials, 2);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn load(ctx: NativeCallContext, path: &str) -> Result<Sweep, Box<EvalAltResult>> {
        let s = m::load(std::path::Path::new(path), &[]).or_rhai(&ctx)?;
        Ok(SweepObj(std::sync::Arc::new(s)))
    }

    /// The results of the sweep with run id `id` as the store has them — a sweep that ended
    /// (in this script, an earlier one, or from `labhost sweep`) or one that still runs —
    /// without running anything: the same object `run` returns (`best()`, `table()`,
    /// `rows()`, `completed`, …).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "echo '{\"name\": \"acc\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS"},
    ///     search_space: #{x: sweep::choice([0.2, 0.9])}, sampling_algorithm: "grid",
    ///     objective: #{goal: "maximize", primary_metric: "acc"}});
    /// let id = s.run(#{quiet: true}).id;
    /// let r = sweep::get(id);
    /// assert_eq([r.completed, r.best().params.x], [2, 0.9]);
    /// assert_eq(r.rows().len(), 2);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn get(ctx: NativeCallContext, id: i64) -> Result<SweepResult, Box<EvalAltResult>> {
        let r = m::run::get(id).or_rhai(&ctx)?;
        Ok(ResultObj(std::sync::Arc::new(r)))
    }

    /// Cross-validation with InnerEye's semantics: `splits` child runs (kind fold) of the
    /// trial (`#{command, code, environment_variables, num_gpus, …}`), fold `i` given
    /// `--cross_validation_split_index=i --number_of_cross_validation_splits=N` (and as the
    /// environment variables `CROSS_VALIDATION_SPLIT_INDEX`,
    /// `NUMBER_OF_CROSS_VALIDATION_SPLITS`). Returns `#{id, completed, folds: [#{index,
    /// run_id, status, metrics}], metrics: #{name: #{mean, std, min, max, count}}}`: every
    /// metric's last value per fold, aggregated (std is the sample standard deviation); each
    /// fold's `outputs/` is copied to `outputs/fold_<i>/` of the cross-validation's run
    /// folder. Options: `splits`, `primary_metric` (default `val/loss`), `max_concurrent`,
    /// `rerun`, `quiet`. Running it again continues it, as sweeps.
    ///
    /// ```rhai
    /// let cv = sweep::cross_validate(
    ///     #{command: "echo '{\"name\": \"val/loss\", \"value\":' $CROSS_VALIDATION_SPLIT_INDEX '}' >> $LABHOST_METRICS; echo"},
    ///     #{splits: 3, quiet: true});
    /// assert_eq(cv.completed, 3);
    /// assert_eq(cv.folds.map(|f| f.index), [0, 1, 2]);
    /// assert_eq(cv.metrics["val/loss"].mean, 1.0);
    /// assert_eq(cv.metrics["val/loss"].max, 2.0);
    /// assert(sweep::is_cross_validation_child_run(cv.folds[1].run_id));
    /// assert_eq(sweep::get_cross_validation_split_index(cv.folds[1].run_id), 1);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn cross_validate(
        ctx: NativeCallContext,
        trial: rhai::Map,
        opts: rhai::Map,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        let t: m::Trial = crate::bridge::decode(&ctx, "sweep::cross_validate trial", trial.into())?;
        let o: super::CvArgs =
            crate::bridge::decode(&ctx, "sweep::cross_validate options", opts.into())?;
        let source = ctx
            .call_source()
            .map(|s| format!("script:{s}"))
            .unwrap_or_else(|| "script".into());
        let base = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let s = m::cross_validation(
            t,
            o.splits,
            &o.primary_metric,
            o.max_concurrent.map(|n| u64::from(n.get())),
            &base,
            &source,
        )
        .map_err(|e| {
            host_err(
                &ctx,
                &e.kind,
                e.message
                    .replace(&format!("{source}: "), "sweep::cross_validate: "),
            )
        })?;
        let ro = m::run::RunOpts {
            rerun: o.rerun,
            max_concurrent: None,
            quiet: o.quiet,
            key: None,
            ..Default::default()
        };
        let mut w = m::run::Progress::new(&s, o.quiet);
        let token = crate::runtime::ctx().cancel.token();
        let r = m::run::run(&s, &ro, &mut w, &token).or_rhai(&ctx)?;
        let (folds, agg) = m::run::cross_validation_result(&r).or_rhai(&ctx)?;
        let mut out = rhai::Map::new();
        out.insert("id".into(), r.sweep_id.into());
        out.insert(
            "completed".into(),
            (r.count(crate::store::RunStatus::Completed) as i64).into(),
        );
        out.insert("folds".into(), encode(&ctx, &folds)?);
        out.insert("metrics".into(), encode(&ctx, &agg)?);
        Ok(out)
    }

    /// Whether a run is a fold of a cross-validation (InnerEye
    /// `is_cross_validation_child_run`).
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true"});
    /// assert(!sweep::is_cross_validation_child_run(j.id));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_cross_validation_child_run(
        ctx: NativeCallContext,
        run_id: i64,
    ) -> Result<bool, Box<EvalAltResult>> {
        Ok(get_cross_validation_split_index(ctx, run_id)? >= 0)
    }

    /// The fold index of a cross-validation child run, or -1 (InnerEye's
    /// `DEFAULT_CROSS_VALIDATION_SPLIT_INDEX`) for any other run.
    ///
    /// ```rhai
    /// let j = jobs::submit(#{command: "true"});
    /// assert_eq(sweep::get_cross_validation_split_index(j.id), -1);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn get_cross_validation_split_index(
        ctx: NativeCallContext,
        run_id: i64,
    ) -> Result<i64, Box<EvalAltResult>> {
        let tags = crate::store::with_current(|st| {
            st.get(run_id)?;
            st.tags(run_id)
        })
        .or_rhai(&ctx)?;
        Ok(tags
            .iter()
            .find(|(k, _)| k == m::CV_INDEX)
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .unwrap_or(-1))
    }

    /// How many trials the sweep plans (`max_total_trials`, or the grid if smaller).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, sampling_algorithm: "grid",
    ///     search_space: #{a: sweep::choice([1, 2, 3])}, objective: #{goal: "minimize", primary_metric: "loss"}});
    /// assert_eq(s.trials, 3);
    /// ```
    #[rhai_fn(global, get = "trials", pure)]
    pub fn trials(s: &mut Sweep) -> i64 {
        s.0.planned() as i64
    }

    /// The first `n` planned trials without running anything: `[#{trial, params, command}]`.
    /// Random and Sobol trials are exactly those the sweep will run (given its seed; an
    /// unseeded sweep shows seed 0's); bayesian ones after the first 10 depend on results.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "train --lr ${{search_space.lr}}"},
    ///     search_space: #{lr: sweep::choice([0.1, 0.01])}, sampling_algorithm: "grid",
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let p = s.plan(5);
    /// assert_eq(p.len(), 2);
    /// assert_eq(p[1].command, "train --lr 0.01");
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn plan(
        ctx: NativeCallContext,
        s: &mut Sweep,
        n: i64,
    ) -> Result<Array, Box<EvalAltResult>> {
        let seed = m::run::seed_of(&s.0).unwrap_or(0);
        let mut out = Array::new();
        for (i, p) in m::run::plan(&s.0, n.max(0) as u64, seed) {
            let mut row = rhai::Map::new();
            row.insert("trial".into(), (i as i64).into());
            row.insert("command".into(), s.0.command_for(&p).into());
            row.insert("params".into(), encode(&ctx, &p)?);
            out.push(row.into());
        }
        Ok(out)
    }

    /// The sweep as Azure ML YAML (what `sweep::load` reads back as the same sweep).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::uniform(0, 1)},
    ///     objective: #{goal: "maximize", primary_metric: "acc"}, limits: #{max_total_trials: 3}});
    /// let y = s.to_yaml();
    /// assert(y.contains("type: sweep"));
    /// assert(y.contains("primary_metric: acc"));
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn to_yaml(ctx: NativeCallContext, s: &mut Sweep) -> Result<String, Box<EvalAltResult>> {
        s.0.to_yaml().or_rhai(&ctx)
    }

    /// Runs the sweep on the local job engine and waits for it (progress on stderr). Running
    /// the same sweep again continues it (nothing finished runs twice); `#{rerun: true}`
    /// starts anew; `#{retry_failed: true}` runs the trials that failed again (same
    /// parameters, new attempts); `max_concurrent` overrides the limit; `quiet: true` shows
    /// nothing.
    ///
    /// ```rhai
    /// let s = sweep::new(#{
    ///     trial: #{command: "echo '{\"name\": \"acc\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS"},
    ///     search_space: #{x: sweep::choice([0.2, 0.9, 0.5])}, sampling_algorithm: "grid",
    ///     objective: #{goal: "maximize", primary_metric: "acc"},
    /// });
    /// let r = s.run(#{quiet: true});
    /// assert_eq(r.best().params.x, 0.9);
    /// assert_eq(r.completed, 3);
    /// ```
    #[rhai_fn(global, name = "run", return_raw, volatile)]
    pub fn run_with(
        ctx: NativeCallContext,
        s: &mut Sweep,
        opts: Map,
    ) -> Result<SweepResult, Box<EvalAltResult>> {
        let a: super::RunArgs = crate::bridge::decode(&ctx, "sweep run options", opts.into())?;
        let o = m::run::RunOpts {
            rerun: a.rerun,
            max_concurrent: a.max_concurrent.map(|n| u64::from(n.get())),
            quiet: a.quiet,
            key: None,
            retry_failed: a.retry_failed,
            ..Default::default()
        };
        let mut w = m::run::Progress::new(&s.0, o.quiet);
        let token = crate::runtime::ctx().cancel.token();
        let r = m::run::run(&s.0, &o, &mut w, &token).or_rhai(&ctx)?;
        if let (false, Some(p)) = (o.quiet, &r.report) {
            crate::runtime::ctx()
                .sink
                .eprint(&format!("sweep: report {p}"));
        }
        Ok(ResultObj(std::sync::Arc::new(r)))
    }

    /// `run` with default options.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert_eq(s.run().completed, 1);
    /// ```
    #[rhai_fn(global, name = "run", return_raw, volatile)]
    pub fn run(ctx: NativeCallContext, s: &mut Sweep) -> Result<SweepResult, Box<EvalAltResult>> {
        run_with(ctx, s, rhai::Map::new())
    }

    /// The best trial by the primary metric (its best report, as Azure ranks):
    /// `#{trial, params, metric, run_id}`, or `()` when no trial reported it.
    ///
    /// ```rhai
    /// let s = sweep::new(#{
    ///     trial: #{command: "echo '{\"name\": \"loss\", \"value\":' ${{search_space.x}} '}' >> $LABHOST_METRICS"},
    ///     search_space: #{x: sweep::choice([3, 1, 2])}, sampling_algorithm: "grid",
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let b = s.run(#{quiet: true}).best();
    /// assert_eq([b.trial, b.metric], [1, 1.0]);
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn best(
        ctx: NativeCallContext,
        r: &mut SweepResult,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let Some(t) = r.0.best_row() else {
            return Ok(Dynamic::UNIT);
        };
        let mut row = rhai::Map::new();
        row.insert("trial".into(), (t.trial as i64).into());
        row.insert("params".into(), encode(&ctx, &t.params)?);
        row.insert("metric".into(), t.best.unwrap_or(f64::NAN).into());
        row.insert("run_id".into(), t.run_id.into());
        Ok(row.into())
    }

    /// Every trial as a text table: parameters, status, best and last metric, reports, time
    /// and why it was cancelled; the best trial is starred.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1, 2])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// let t = s.run(#{quiet: true}).table();
    /// assert_eq(t.split("\n").len(), 3);
    /// ```
    #[rhai_fn(global, pure)]
    pub fn table(r: &mut SweepResult) -> String {
        r.0.table()
    }

    /// Every trial as a map: `trial, run_id, params, status, best, last, reports, duration,
    /// reason`.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "exit ${{search_space.x}}"}, search_space: #{x: sweep::choice([0, 3])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// let t = s.run(#{quiet: true}).rows();
    /// assert_eq(t.map(|r| r.status), ["completed", "failed"]);
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn rows(
        ctx: NativeCallContext,
        r: &mut SweepResult,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &r.0.trials)
    }

    /// The sweep's run id (its parent run in the store; trials are its children).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// let r = s.run(#{quiet: true});
    /// assert_eq(jobs::get(r.id).id, r.id);
    /// ```
    #[rhai_fn(global, get = "id", pure)]
    pub fn id(r: &mut SweepResult) -> i64 {
        r.0.sweep_id
    }

    /// The HTML report the sweep wrote when it ended (`<sweep run folder>/report.html`), or
    /// `()`.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert(s.run(#{quiet: true}).report.ends_with("report.html"));
    /// ```
    #[rhai_fn(global, get = "report", pure)]
    pub fn report(r: &mut SweepResult) -> Dynamic {
        r.0.report
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// Trials that completed.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1, 2])},
    ///     objective: #{goal: "maximize", primary_metric: "acc"}, sampling_algorithm: "grid"});
    /// assert_eq(s.run(#{quiet: true}).completed, 2);
    /// ```
    #[rhai_fn(global, get = "completed", pure)]
    pub fn completed(r: &mut SweepResult) -> i64 {
        r.0.count(crate::store::RunStatus::Completed) as i64
    }

    /// Trials cancelled (by the policy, a limit or a user).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert_eq(s.run(#{quiet: true}).cancelled, 0);
    /// ```
    #[rhai_fn(global, get = "cancelled", pure)]
    pub fn cancelled(r: &mut SweepResult) -> i64 {
        r.0.count(crate::store::RunStatus::Cancelled) as i64
    }

    /// The seed random, Sobol and bayesian sampling used (drawn and recorded when the sweep
    /// gave none), or `()` for grid.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::uniform(0, 1)},
    ///     sampling_algorithm: #{type: "random", seed: 42}, limits: #{max_total_trials: 1},
    ///     objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert_eq(s.run(#{quiet: true}).seed, 42);
    /// ```
    #[rhai_fn(global, get = "seed", pure)]
    pub fn seed(r: &mut SweepResult) -> Dynamic {
        r.0.seed
            .map(|s| Dynamic::from(s as i64))
            .unwrap_or(Dynamic::UNIT)
    }

    /// `choice(values)`: one of the values (Azure's `choice`).
    ///
    /// ```rhai
    /// assert_eq(sweep::choice([1, 2]), #{type: "choice", values: [1, 2]});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn choice(ctx: NativeCallContext, values: Array) -> Result<rhai::Map, Box<EvalAltResult>> {
        let v: Vec<serde_json::Value> =
            crate::bridge::decode(&ctx, "sweep::choice", values.into())?;
        super::dist(
            &ctx,
            m::RawDist {
                kind: "choice".into(),
                values: Some(v),
                ..Default::default()
            },
        )
    }

    /// `randint(upper)`: an integer in `[0, upper)`.
    ///
    /// ```rhai
    /// assert_eq(sweep::randint(10).upper, 10.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn randint(ctx: NativeCallContext, upper: i64) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::dist(
            &ctx,
            m::RawDist {
                kind: "randint".into(),
                upper: Some(upper as f64),
                ..Default::default()
            },
        )
    }

    /// `uniform(min, max)`.
    ///
    /// ```rhai
    /// assert_eq(sweep::uniform(0.1, 0.5).type, "uniform");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn uniform(
        ctx: NativeCallContext,
        min: Dynamic,
        max: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "uniform", &min, &max, None)
    }

    /// `loguniform(min, max)`: `exp(uniform(min, max))`, the bounds in log space.
    ///
    /// ```rhai
    /// assert_eq(sweep::loguniform(-9.2, -2.3).min_value, -9.2);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn loguniform(
        ctx: NativeCallContext,
        min: Dynamic,
        max: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "loguniform", &min, &max, None)
    }

    /// `quniform(min, max, q)`: `round(uniform(min, max) / q) * q`.
    ///
    /// ```rhai
    /// assert_eq(sweep::quniform(0, 10, 2).q, 2.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn quniform(
        ctx: NativeCallContext,
        min: Dynamic,
        max: Dynamic,
        q: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "quniform", &min, &max, Some(&q))
    }

    /// `qloguniform(min, max, q)`: `round(exp(uniform(min, max)) / q) * q`.
    ///
    /// ```rhai
    /// assert_eq(sweep::qloguniform(0, 3, 1).type, "qloguniform");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn qloguniform(
        ctx: NativeCallContext,
        min: Dynamic,
        max: Dynamic,
        q: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "qloguniform", &min, &max, Some(&q))
    }

    /// `normal(mu, sigma)`.
    ///
    /// ```rhai
    /// assert_eq(sweep::normal(0, 1).sigma, 1.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn normal(
        ctx: NativeCallContext,
        mu: Dynamic,
        sigma: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "normal", &mu, &sigma, None)
    }

    /// `qnormal(mu, sigma, q)`.
    ///
    /// ```rhai
    /// assert_eq(sweep::qnormal(10, 2, 1).type, "qnormal");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn qnormal(
        ctx: NativeCallContext,
        mu: Dynamic,
        sigma: Dynamic,
        q: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "qnormal", &mu, &sigma, Some(&q))
    }

    /// `lognormal(mu, sigma)`: `exp(normal(mu, sigma))`.
    ///
    /// ```rhai
    /// assert_eq(sweep::lognormal(0, 1).mu, 0.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn lognormal(
        ctx: NativeCallContext,
        mu: Dynamic,
        sigma: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "lognormal", &mu, &sigma, None)
    }

    /// `qlognormal(mu, sigma, q)`.
    ///
    /// ```rhai
    /// assert_eq(sweep::qlognormal(0, 1, 0.5).type, "qlognormal");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn qlognormal(
        ctx: NativeCallContext,
        mu: Dynamic,
        sigma: Dynamic,
        q: Dynamic,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::range(&ctx, "qlognormal", &mu, &sigma, Some(&q))
    }

    /// Bandit early termination: `#{slack_factor | slack_amount, evaluation_interval,
    /// delay_evaluation}`. A trial whose best report is below the best trial's by more than
    /// the slack is cancelled (maximise: `best / (1 + slack_factor)` or `best -
    /// slack_amount`; minimise mirrored).
    ///
    /// ```rhai
    /// let p = sweep::bandit(#{slack_factor: 0.1, evaluation_interval: 1, delay_evaluation: 5});
    /// assert_eq(p.type, "bandit");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn bandit(
        ctx: NativeCallContext,
        opts: rhai::Map,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::policy(&ctx, "bandit", opts)
    }

    /// Median stopping: a trial whose best report is worse than the median of all trials'
    /// running averages at that interval is cancelled. `#{evaluation_interval,
    /// delay_evaluation}`.
    ///
    /// ```rhai
    /// assert_eq(sweep::median_stopping(#{delay_evaluation: 5}).type, "median_stopping");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn median_stopping(
        ctx: NativeCallContext,
        opts: rhai::Map,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::policy(&ctx, "median_stopping", opts)
    }

    /// Truncation selection: at each evaluation the lowest `truncation_percentage`% of trials
    /// at that interval are cancelled. `#{truncation_percentage, evaluation_interval,
    /// delay_evaluation, exclude_finished_jobs}`.
    ///
    /// ```rhai
    /// let p = sweep::truncation_selection(#{truncation_percentage: 20});
    /// assert_eq(p.truncation_percentage, 20);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn truncation_selection(
        ctx: NativeCallContext,
        opts: rhai::Map,
    ) -> Result<rhai::Map, Box<EvalAltResult>> {
        super::policy(&ctx, "truncation_selection", opts)
    }

    /// `print(s)` / `` `${s}` ``: the sweep's source and planned trials.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1, 2])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert(s.to_string().ends_with("2 trials)"));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn sweep_to_string(s: &mut Sweep) -> String {
        format!("sweep({}, {} trials)", s.0.source, s.0.planned())
    }

    /// `print(r)`: the trial table.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "true"}, search_space: #{x: sweep::choice([1])},
    ///     sampling_algorithm: "grid", objective: #{goal: "maximize", primary_metric: "acc"}});
    /// assert(s.run(#{quiet: true}).to_string().starts_with("trial"));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn result_to_string(r: &mut SweepResult) -> String {
        r.0.table()
    }
}
