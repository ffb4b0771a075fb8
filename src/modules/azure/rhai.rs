//! Rhai binding for `azure`.
use std::sync::{Arc, Mutex};

use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};
use serde_json::Value;

use crate::bridge::{decode, host_err, OrRhai, RhaiResult};
use crate::modules::azure as m;

pub fn module() -> Module {
    exported_module!(api)
}

/// An Azure ML job or child run, with the client that fetched it.
#[derive(Clone)]
pub struct JobObj {
    cl: Option<Arc<m::Client>>,
    run: Arc<Mutex<m::AzureRun>>,
}

impl JobObj {
    fn new(cl: Option<Arc<m::Client>>, run: m::AzureRun) -> JobObj {
        JobObj {
            cl,
            run: Arc::new(Mutex::new(run)),
        }
    }

    fn get(&self) -> m::AzureRun {
        self.run.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, r: m::AzureRun) {
        *self.run.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    fn client(&self, ctx: &NativeCallContext) -> RhaiResult<Arc<m::Client>> {
        self.cl.clone().ok_or_else(|| {
            host_err(
                ctx,
                "azure.offline",
                "this run was built from a map (azure::run_from): it has no workspace to talk to",
            )
        })
    }
}

/// How to reach the workspace: the settings file, the private settings file, and
/// command-line style overrides of any `AzureConfig` key.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnOpts {
    settings: Option<String>,
    #[serde(alias = "private")]
    private_file: Option<String>,
    #[serde(default)]
    args: serde_json::Map<String, Value>,
}

impl ConnOpts {
    fn request(&self) -> m::config::Request {
        m::config::Request {
            settings: self.settings.clone().map(Into::into),
            private: self.private_file.clone().map(Into::into),
            args: self.args.clone(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SubmitOpts {
    settings: Option<String>,
    #[serde(alias = "private")]
    private_file: Option<String>,
    #[serde(default)]
    args: serde_json::Map<String, Value>,
    /// `--set` style overrides of the YAML: `#{"limits.max_total_trials": 4}`.
    #[serde(default)]
    set: serde_json::Map<String, Value>,
    name: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    wait: bool,
    timeout: Option<crate::util::Seconds>,
    poll: Option<crate::util::Seconds>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    timeout: Option<crate::util::Seconds>,
    poll: Option<crate::util::Seconds>,
    poll_max: Option<crate::util::Seconds>,
    #[serde(default)]
    cancel_on_timeout: bool,
    #[serde(default)]
    quiet: bool,
}

impl WaitArgs {
    fn opts(&self) -> m::WaitOpts {
        let d = m::WaitOpts::default();
        let secs = |s: crate::util::Seconds| s.0;
        m::WaitOpts {
            timeout: self.timeout.map(secs),
            poll: self.poll.map(secs).unwrap_or(d.poll),
            poll_max: self
                .poll_max
                .map(secs)
                .unwrap_or(d.poll_max)
                .max(self.poll.map(secs).unwrap_or(d.poll)),
            cancel_on_timeout: self.cancel_on_timeout,
            quiet: self.quiet,
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChildOpts {
    status: Option<String>,
    #[serde(default)]
    expected_splits: i64,
}

fn text(v: &Value) -> String {
    crate::modules::sweep::value_text(v)
}

fn do_wait(ctx: &NativeCallContext, job: &JobObj, w: &WaitArgs) -> RhaiResult<()> {
    let cl = job.client(ctx)?;
    let name = job.get().name;
    let interrupted = || crate::runtime::ctx().cancel.is_cancelled();
    let (r, end) = m::wait(&cl, &name, &w.opts(), &interrupted).or_rhai(ctx)?;
    job.set(r.clone());
    match end {
        m::WaitEnd::Terminal => Ok(()),
        m::WaitEnd::TimedOut => Err(host_err(ctx, "azure.timeout", format!(
            "job {name} still {} after {:.0} s in Running{}",
            r.status,
            w.timeout.map_or(0.0, |t| t.secs()),
            if w.cancel_on_timeout { " (cancellation requested)" } else { "" }
        ))),
        m::WaitEnd::Interrupted => Err(host_err(ctx, "cancelled", format!(
            "interrupted while waiting for {name} (still {} on Azure ML: call job.cancel() to stop it)",
            r.status
        ))),
    }
}

fn submit_any(ctx: &NativeCallContext, what: m::What, opts: Map) -> RhaiResult<Dynamic> {
    let o: SubmitOpts = decode(ctx, "azure::submit options", opts.into())?;
    let req = ConnOpts {
        settings: o.settings.clone(),
        private_file: o.private_file.clone(),
        args: o.args.clone(),
    }
    .request();
    let so = m::SubmitOpts {
        config: req,
        sets: o.set.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        name: o.name.clone(),
        tags: o.tags.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        commandline: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let p = m::prepare(&what, &so).or_rhai(ctx)?;
    if o.dry_run {
        return crate::bridge::encode(ctx, &m::dry_run(&p).or_rhai(ctx)?);
    }
    let cl = m::client_for(p.cfg.clone()).or_rhai(ctx)?;
    let s = m::submit(&p, &cl).or_rhai(ctx)?;
    let job = JobObj::new(Some(cl), s.run);
    if o.wait || p.cfg.wait_for_completion {
        do_wait(
            ctx,
            &job,
            &WaitArgs {
                timeout: o.timeout,
                poll: o.poll,
                ..Default::default()
            },
        )?;
    }
    Ok(Dynamic::from(job))
}

#[export_module]
pub mod api {
    use super::{do_wait, submit_any, ChildOpts, ConnOpts, JobObj, WaitArgs};
    use crate::bridge::{decode, encode, host_err, OrRhai};
    use crate::modules::azure as m;

    pub type Job = JobObj;

    /// The Azure configuration (InnerEye's `AzureConfig`) as labhost reads it: `variables:` of
    /// the project settings file (`opts.settings`, else `$LABHOST_AZURE_SETTINGS`, else
    /// `settings.yml` from the working directory up), then of the private settings file, then
    /// `opts.args`. The `APPLICATION_KEY` secret is read but never shown. Errors
    /// (`azure.config`) name the key and where it would be set.
    ///
    /// ```rhai
    /// fs::write("settings.yml", "variables:\n  workspace_name: ws\n  cluster: gpu-a\n  max_run_duration: 3.5h\n");
    /// let c = azure::config(#{settings: "settings.yml", args: #{cluster: "gpu-b"}});
    /// assert_eq(c.workspace_name, "ws");
    /// assert_eq(c.cluster, "gpu-b");
    /// assert_eq(c.api_version, "2024-10-01");
    /// assert(!("application_key" in c));
    /// let kind = "";
    /// try { azure::config(#{settings: "settings.yml", args: #{max_run_duration: "soon"}}); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "azure.config");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn config(ctx: NativeCallContext, opts: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let o: ConnOpts = decode(&ctx, "azure::config options", opts.into())?;
        encode(&ctx, &m::config::load(&o.request()).or_rhai(&ctx)?)
    }

    /// Submits a command, sweep or pipeline job YAML (Azure's CLI v2 schema, unchanged) to
    /// Azure ML: the local `code` folder is uploaded as a code snapshot, inline environments
    /// are registered, tags carry git provenance and the command line (secrets redacted).
    /// `opts`: `settings`, `private_file`, `args` (AzureConfig overrides), `set` (YAML
    /// overrides), `name`, `tags`, `wait`, `timeout`, `poll`, and `dry_run: true` — which
    /// returns the requests it would send instead (no network). Returns a job (`name`,
    /// `status`, `studio_url`, `recovery_id`, …); the recovery id is also written to
    /// `most_recent_run.txt`.
    ///
    /// ```rhai
    /// fs::mkdir("src");
    /// fs::write("src/train.py", "print('hi')\n");
    /// fs::write("job.yml", "command: python train.py --lr ${{inputs.lr}}\ncode: src\n" +
    ///     "inputs:\n  lr: 0.1\nenvironment: azureml:AzureML-sklearn-1.5:3\nexperiment_name: doc\n");
    /// let plan = azure::submit("job.yml", #{dry_run: true});
    /// let put = plan.steps[plan.steps.len() - 1].request;
    /// assert_eq(put.method, "PUT");
    /// assert_eq(put.body.properties.jobType, "Command");
    /// assert_eq(put.body.properties.inputs.lr, #{jobInputType: "literal", value: "0.1"});
    /// let job = azure::submit("job.yml", #{wait: true, poll: 0.05});
    /// assert_eq(job.status, "Completed");
    /// assert(fs::read("most_recent_run.txt").starts_with("doc:"));
    /// ```
    #[rhai_fn(name = "submit", return_raw, volatile)]
    pub fn submit_path(
        ctx: NativeCallContext,
        path: &str,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        submit_any(&ctx, m::What::Path(path.into()), opts)
    }

    /// [`submit`] with default options.
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:AzureML-sklearn-1.5:3\n");
    /// let job = azure::submit("hello.yml");
    /// assert(job.studio_url.contains(job.name));
    /// job.wait(#{poll: 0.05});
    /// assert_eq(job.status, "Completed");
    /// ```
    #[rhai_fn(name = "submit", return_raw, volatile)]
    pub fn submit_path_default(
        ctx: NativeCallContext,
        path: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        submit_any(&ctx, m::What::Path(path.into()), Map::new())
    }

    /// Submits the same sweep object that `s.run()` runs locally (`sweep::new`,
    /// `sweep::load`): one sweep, two backends.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "python train.py --lr ${{search_space.lr}}",
    ///         environment: "azureml:AzureML-sklearn-1.5:3"},
    ///     sampling_algorithm: "grid", search_space: #{lr: sweep::choice([0.1, 0.01])},
    ///     objective: #{goal: "maximize", primary_metric: "accuracy"},
    ///     limits: #{max_total_trials: 2}, experiment_name: "doc-sweep"});
    /// let job = azure::submit(s, #{wait: true, poll: 0.05});
    /// assert_eq(job.job_type, "Sweep");
    /// assert_eq(job.children().len(), 2);
    /// ```
    #[rhai_fn(name = "submit", return_raw, volatile)]
    pub fn submit_sweep(
        ctx: NativeCallContext,
        s: crate::modules::sweep::rhai::SweepObj,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        submit_any(&ctx, m::What::Sweep(s.0.clone()), opts)
    }

    /// Submits a job given as a map in Azure's YAML schema (what `sweep::new` takes).
    ///
    /// ```rhai
    /// let job = azure::submit(#{command: "echo hi", environment: "azureml:AzureML-sklearn-1.5:3",
    ///     experiment_name: "doc-map"}, #{name: "doc_map_job_1"});
    /// assert_eq(job.name, "doc_map_job_1");
    /// assert_eq(job.recovery_id, "doc-map:doc_map_job_1");
    /// ```
    #[rhai_fn(name = "submit", return_raw, volatile)]
    pub fn submit_map(
        ctx: NativeCallContext,
        spec: Map,
        opts: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let doc: crate::modules::sweep::SweepDoc = decode(&ctx, "azure::submit", spec.into())?;
        let base = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let o = crate::modules::sweep::Origin {
            source: "azure::submit",
            text: None,
        };
        let mut s = crate::modules::sweep::resolve(doc, &o, &base).or_rhai(&ctx)?;
        s.source = ctx
            .call_source()
            .map(|s| format!("script:{s}"))
            .unwrap_or_else(|| "script".into());
        submit_any(&ctx, m::What::Sweep(std::sync::Arc::new(s)), opts)
    }

    /// The job of a run recovery id: `experiment:run` (hi-ml's form, as `most_recent_run.txt`
    /// holds it) or a bare `<experiment>_<number>_<hex>` id. `opts` as in `azure::config`.
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:AzureML-sklearn-1.5:3\n");
    /// let job = azure::submit("hello.yml");
    /// let id = fs::read("most_recent_run.txt");
    /// id.trim();
    /// let again = azure::fetch_run(id, #{});
    /// assert_eq(again.name, job.name);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn fetch_run(
        ctx: NativeCallContext,
        recovery_id: &str,
        opts: Map,
    ) -> Result<Job, Box<EvalAltResult>> {
        let o: ConnOpts = decode(&ctx, "azure::fetch_run options", opts.into())?;
        let cl = m::client(&o.request()).or_rhai(&ctx)?;
        let r = m::fetch_run(&cl, recovery_id).or_rhai(&ctx)?;
        Ok(JobObj::new(Some(cl), r))
    }

    /// [`fetch_run`] with the default settings (`settings.yml` / `$LABHOST_AZURE_SETTINGS`).
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:e:1\nexperiment_name: again\n");
    /// let job = azure::submit("hello.yml");
    /// assert_eq(azure::fetch_run(job.recovery_id).name, job.name);
    /// ```
    #[rhai_fn(name = "fetch_run", return_raw, volatile)]
    pub fn fetch_run_default(
        ctx: NativeCallContext,
        recovery_id: &str,
    ) -> Result<Job, Box<EvalAltResult>> {
        fetch_run(ctx, recovery_id, Map::new())
    }

    /// [`fetch_runs`] with the default settings.
    ///
    /// ```rhai
    /// azure::submit(#{command: "echo a", environment: "azureml:env:1", experiment_name: "doc-list2"}, #{wait: true, poll: 0.05});
    /// assert(azure::fetch_runs("doc-list2", []).len() >= 1);
    /// ```
    #[rhai_fn(name = "fetch_runs", return_raw, volatile)]
    pub fn fetch_runs_default(
        ctx: NativeCallContext,
        experiment: &str,
        statuses: Array,
    ) -> Result<Array, Box<EvalAltResult>> {
        fetch_runs(ctx, experiment, statuses, Map::new())
    }

    /// [`fetch_child_runs`] of every status, without a count check.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "t ${{search_space.a}}", environment: "azureml:e:1"},
    ///     sampling_algorithm: "grid", search_space: #{a: sweep::choice([1, 2])},
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let job = azure::submit(s, #{wait: true, poll: 0.05});
    /// assert_eq(azure::fetch_child_runs(job).len(), 2);
    /// ```
    #[rhai_fn(name = "fetch_child_runs", return_raw, volatile)]
    pub fn fetch_child_runs_default(
        ctx: NativeCallContext,
        run: Job,
    ) -> Result<Array, Box<EvalAltResult>> {
        fetch_child_runs(ctx, run, Map::new())
    }

    /// [`config`] from the default places.
    ///
    /// ```rhai
    /// let c = azure::config();
    /// assert_eq(c.api_version, "2024-10-01");
    /// ```
    #[rhai_fn(name = "config", return_raw, volatile)]
    pub fn config_default(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        config(ctx, Map::new())
    }

    /// The jobs of an experiment (all pages), those with one of `statuses` when it is not
    /// empty (`["Completed", "Failed"]`).
    ///
    /// ```rhai
    /// azure::submit(#{command: "echo a", environment: "azureml:env:1", experiment_name: "doc-list"}, #{wait: true, poll: 0.05});
    /// let runs = azure::fetch_runs("doc-list", ["Completed"], #{});
    /// assert(runs.len() >= 1);
    /// assert(runs.all(|r| r.status == "Completed"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn fetch_runs(
        ctx: NativeCallContext,
        experiment: &str,
        statuses: Array,
        opts: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let o: ConnOpts = decode(&ctx, "azure::fetch_runs options", opts.into())?;
        let cl = m::client(&o.request()).or_rhai(&ctx)?;
        let st: Vec<String> = statuses.into_iter().map(|s| s.to_string()).collect();
        let runs = m::block(cl.list_jobs(Some(experiment), &st)).or_rhai(&ctx)?;
        Ok(runs
            .into_iter()
            .map(|r| Dynamic::from(JobObj::new(Some(cl.clone()), r)))
            .collect())
    }

    /// The child runs of a sweep or pipeline from run history (all pages): `opts.status`
    /// keeps one status, `opts.expected_splits` warns when the count differs (InnerEye's
    /// `fetch_child_runs`).
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "train --i ${{search_space.i}}", environment: "azureml:e:1"},
    ///     sampling_algorithm: "grid", search_space: #{i: sweep::choice([0, 1, 2])},
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let job = azure::submit(s, #{wait: true, poll: 0.05});
    /// let kids = azure::fetch_child_runs(job, #{status: "Completed", expected_splits: 3});
    /// assert_eq(kids.len(), 3);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn fetch_child_runs(
        ctx: NativeCallContext,
        run: Job,
        opts: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let o: ChildOpts = decode(&ctx, "azure::fetch_child_runs options", opts.into())?;
        let cl = run.client(&ctx)?;
        let kids = m::fetch_child_runs(&cl, &run.get(), o.status.as_deref(), o.expected_splits)
            .or_rhai(&ctx)?;
        Ok(kids
            .into_iter()
            .map(|r| Dynamic::from(JobObj::new(Some(cl.clone()), r)))
            .collect())
    }

    /// A run from an ARM job map (what `az ml job show` prints or a REST GET returns), for
    /// working with runs offline.
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "j1", properties: #{jobType: "Sweep", status: "Running",
    ///     experimentName: "e", tags: #{is_ensemble: "True"}}});
    /// assert_eq(r.recovery_id, "e:j1");
    /// assert(azure::is_parent_run(r));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run_from(ctx: NativeCallContext, job: Map) -> Result<Job, Box<EvalAltResult>> {
        let v = crate::modules::yaml::rhai::to_value(&ctx, &job.into())?;
        Ok(JobObj::new(None, m::AzureRun::from_job(&v)))
    }

    /// InnerEye `is_parent_run`: a sweep or pipeline (its work is its children).
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "c", properties: #{jobType: "Command", status: "Completed"}});
    /// assert(!azure::is_parent_run(r));
    /// ```
    #[rhai_fn(pure)]
    pub fn is_parent_run(run: &mut Job) -> bool {
        run.get().is_parent_run()
    }

    /// InnerEye `is_cross_validation_child_run`: the run has a split index ≥ 0.
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "c", properties: #{status: "Completed",
    ///     tags: #{cross_validation_split_index: "1"}}});
    /// assert(azure::is_cross_validation_child_run(r));
    /// ```
    #[rhai_fn(pure)]
    pub fn is_cross_validation_child_run(run: &mut Job) -> bool {
        run.get().is_cross_validation_child_run()
    }

    /// InnerEye `get_cross_validation_split_index`: the tag `cross_validation_split_index`,
    /// else that key (or `crossval_index`, hi-ml's) in the `hyperparameters` tag; -1 otherwise.
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "c", properties: #{tags: #{hyperparameters: "{\"crossval_index\": 2}"}}});
    /// assert_eq(azure::get_cross_validation_split_index(r), 2);
    /// assert_eq(azure::get_cross_validation_split_index(azure::run_from(#{name: "x"})), -1);
    /// ```
    #[rhai_fn(pure)]
    pub fn get_cross_validation_split_index(run: &mut Job) -> i64 {
        run.get().cross_validation_split_index()
    }

    /// InnerEye `is_ensemble_run`: tagged `is_ensemble: True`.
    ///
    /// ```rhai
    /// assert(azure::is_ensemble_run(azure::run_from(#{name: "x", properties: #{tags: #{is_ensemble: "True"}}})));
    /// ```
    #[rhai_fn(pure)]
    pub fn is_ensemble_run(run: &mut Job) -> bool {
        run.get().is_ensemble_run()
    }

    /// InnerEye `tag_values_all_distinct`: no two runs share a value of `tag`.
    ///
    /// ```rhai
    /// let a = azure::run_from(#{name: "a", properties: #{tags: #{fold: "0"}}});
    /// let b = azure::run_from(#{name: "b", properties: #{tags: #{fold: "1"}}});
    /// assert(azure::tag_values_all_distinct([a, b], "fold"));
    /// assert(!azure::tag_values_all_distinct([a, a], "fold"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn tag_values_all_distinct(
        ctx: NativeCallContext,
        runs: Array,
        tag: &str,
    ) -> Result<bool, Box<EvalAltResult>> {
        let mut rs = Vec::new();
        for r in runs {
            let j = r.try_cast::<JobObj>().ok_or_else(|| {
                host_err(
                    &ctx,
                    "invalid_argument",
                    "azure::tag_values_all_distinct takes an array of runs",
                )
            })?;
            rs.push(j.get());
        }
        m::jobs::tag_values_all_distinct(&rs, tag).or_rhai(&ctx)
    }

    /// The Azure ML run this script runs in (from the environment Azure ML sets), or an
    /// offline context anywhere else: `#{offline, run_id, experiment, workspace,
    /// subscription_id, resource_group, parent_run_id, mlflow_tracking_uri, on_azure_agent}`.
    /// One script works in both places (InnerEye `get_run_context_or_default`).
    ///
    /// ```rhai
    /// let c = azure::run_context();
    /// assert(c.offline);
    /// assert(azure::is_offline_run_context(c));
    /// assert(c.run_id.starts_with("OfflineRun_"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn run_context(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &m::run_context())
    }

    /// InnerEye `is_offline_run_context`: a context (or run id) that is not an Azure ML run.
    ///
    /// ```rhai
    /// assert(azure::is_offline_run_context(#{run_id: "OfflineRun_1"}));
    /// assert(!azure::is_offline_run_context(#{run_id: "exp_1_ab"}));
    /// ```
    #[rhai_fn(pure)]
    pub fn is_offline_run_context(c: &mut Map) -> bool {
        c.get("run_id")
            .map(|v| m::is_offline_run_id(&v.to_string()))
            .unwrap_or(true)
    }

    /// InnerEye `is_running_on_azure_agent`: an Azure DevOps build agent (`AGENT_OS` set).
    ///
    /// ```rhai
    /// assert_eq(azure::is_running_on_azure_agent(), env::get("AGENT_OS") != ());
    /// ```
    #[rhai_fn(volatile)]
    pub fn is_running_on_azure_agent() -> bool {
        m::run_context().on_azure_agent
    }

    /// InnerEye `download_run_output_file`: the run's `outputs/<path>` saved as
    /// `<dest>/<file name>`; returns that path.
    ///
    /// ```rhai
    /// fs::write("out.yml", "command: write-outputs\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("out.yml", #{wait: true, poll: 0.05});
    /// let p = azure::download_run_output_file(job, "metrics.csv", "dl");
    /// assert(p.ends_with("dl/metrics.csv"));
    /// assert(fs::read(p).contains("loss"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn download_run_output_file(
        ctx: NativeCallContext,
        run: Job,
        path: &str,
        dest: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        let cl = run.client(&ctx)?;
        let p = m::block(cl.download_output_file(&run.get(), path, std::path::Path::new(dest)))
            .or_rhai(&ctx)?;
        Ok(p.display().to_string())
    }

    /// InnerEye `download_run_outputs_by_prefix`: every file under the run's
    /// `outputs/<prefix>/`, saved under `dest` with the prefix stripped; returns the paths.
    ///
    /// ```rhai
    /// fs::write("out.yml", "command: write-outputs\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("out.yml", #{wait: true, poll: 0.05});
    /// let files = azure::download_run_outputs_by_prefix(job, "checkpoints", "ckpt");
    /// let names = files.map(|f| f.split("/").pop());
    /// names.sort();
    /// assert_eq(names, ["best.ckpt", "last.ckpt"]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn download_run_outputs_by_prefix(
        ctx: NativeCallContext,
        run: Job,
        prefix: &str,
        dest: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let cl = run.client(&ctx)?;
        let got =
            m::block(cl.download_outputs_by_prefix(&run.get(), prefix, std::path::Path::new(dest)))
                .or_rhai(&ctx)?;
        Ok(got
            .into_iter()
            .map(|p| Dynamic::from(p.display().to_string()))
            .collect())
    }

    /// `rerun(job)`: the same job again under a new name (GET, read-only fields stripped,
    /// PUT) — the retry Azure ML does not offer.
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("hello.yml", #{wait: true, poll: 0.05});
    /// let again = azure::rerun(job);
    /// assert(again.name != job.name);
    /// assert_eq(again.tags["labhost.rerun_of"], job.name);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn rerun(ctx: NativeCallContext, run: Job) -> Result<Job, Box<EvalAltResult>> {
        let cl = run.client(&ctx)?;
        let r = m::block(cl.rerun(&run.get().name)).or_rhai(&ctx)?;
        m::record(&cl.cfg, &r, "azure rerun").or_rhai(&ctx)?;
        Ok(JobObj::new(Some(cl), r))
    }

    /// The job's name (= its run id and MLflow run id).
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j7"}).name, "j7");
    /// ```
    #[rhai_fn(global, get = "name", pure)]
    pub fn name(j: &mut Job) -> String {
        j.get().name
    }

    /// The status as last fetched (`Queued`, `Running`, `Completed`, `Failed`, `Canceled`, …).
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j", properties: #{status: "Queued"}}).status, "Queued");
    /// ```
    #[rhai_fn(global, get = "status", pure)]
    pub fn status(j: &mut Job) -> String {
        j.get().status
    }

    /// The experiment the job belongs to.
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j", properties: #{experimentName: "e1"}}).experiment, "e1");
    /// ```
    #[rhai_fn(global, get = "experiment", pure)]
    pub fn experiment(j: &mut Job) -> String {
        j.get().experiment
    }

    /// `Command`, `Sweep`, `Pipeline` (a child from run history: its run type).
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j", properties: #{jobType: "Sweep"}}).job_type, "Sweep");
    /// ```
    #[rhai_fn(global, get = "job_type", pure)]
    pub fn job_type(j: &mut Job) -> String {
        j.get().job_type
    }

    /// The link to the job in Azure ML studio.
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "j", properties: #{services: #{Studio: #{endpoint: "https://ml.azure.com/runs/j"}}}});
    /// assert_eq(r.studio_url, "https://ml.azure.com/runs/j");
    /// ```
    #[rhai_fn(global, get = "studio_url", pure)]
    pub fn studio_url(j: &mut Job) -> String {
        j.get().studio_url
    }

    /// The run recovery id `experiment:name`.
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j", properties: #{experimentName: "e"}}).recovery_id, "e:j");
    /// ```
    #[rhai_fn(global, get = "recovery_id", pure)]
    pub fn recovery_id(j: &mut Job) -> String {
        j.get().recovery_id
    }

    /// The job's tags.
    ///
    /// ```rhai
    /// assert_eq(azure::run_from(#{name: "j", properties: #{tags: #{a: "1"}}}).tags.a, "1");
    /// ```
    #[rhai_fn(global, get = "tags", pure)]
    pub fn tags(j: &mut Job) -> Map {
        j.get()
            .tags
            .into_iter()
            .map(|(k, v)| (k.into(), Dynamic::from(v)))
            .collect()
    }

    /// The job's error message when it failed, else `()`.
    ///
    /// ```rhai
    /// let r = azure::run_from(#{name: "j", properties: #{status: "Failed", error: #{message: "OOM"}}});
    /// assert_eq(r.error, "OOM");
    /// ```
    #[rhai_fn(global, get = "error", pure)]
    pub fn error(j: &mut Job) -> Dynamic {
        j.get().error.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    }

    /// Everything known about the job as a map.
    ///
    /// ```rhai
    /// let m = azure::run_from(#{name: "j", properties: #{status: "Running"}}).to_map();
    /// assert_eq(m.status, "Running");
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn to_map(ctx: NativeCallContext, j: &mut Job) -> Result<Dynamic, Box<EvalAltResult>> {
        encode(&ctx, &j.get())
    }

    /// Fetches the job again (status, tags, outputs).
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("hello.yml");
    /// job.refresh();
    /// assert(["NotStarted", "Queued", "Running", "Completed"].contains(job.status));
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn refresh(ctx: NativeCallContext, j: &mut Job) -> Result<(), Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let r = m::block(cl.run(&j.get().name)).or_rhai(&ctx)?;
        m::record(&cl.cfg, &r, "").or_rhai(&ctx)?;
        j.set(r);
        Ok(())
    }

    /// Waits until the job ends, printing each status change; polls every 2 s rising to 60 s
    /// (`poll`, `poll_max`). `timeout` (seconds) counts from Running, not from Queued; when
    /// it passes the wait fails (`azure.timeout`), cancelling the job with
    /// `cancel_on_timeout: true`. Ctrl-C stops the wait (the job keeps running: `cancel()`).
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("hello.yml");
    /// job.wait(#{poll: 0.05, timeout: 60});
    /// assert_eq(job.status, "Completed");
    /// ```
    #[rhai_fn(global, name = "wait", return_raw, volatile)]
    pub fn wait_opts(
        ctx: NativeCallContext,
        j: &mut Job,
        opts: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let w: WaitArgs = decode(&ctx, "wait options", opts.into())?;
        do_wait(&ctx, j, &w)
    }

    /// [`wait`] with default polling and no timeout.
    ///
    /// ```rhai
    /// fs::write("hello.yml", "command: echo hello\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("hello.yml");
    /// job.wait();
    /// assert_eq(job.status, "Completed");
    /// ```
    #[rhai_fn(global, name = "wait", return_raw, volatile)]
    pub fn wait(ctx: NativeCallContext, j: &mut Job) -> Result<(), Box<EvalAltResult>> {
        do_wait(&ctx, j, &WaitArgs::default())
    }

    /// Asks Azure ML to cancel the job and follows the request until the service accepts it.
    ///
    /// ```rhai
    /// fs::write("slow.yml", "command: sleep 3600\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("slow.yml");
    /// job.cancel();
    /// job.wait(#{poll: 0.05});
    /// assert_eq(job.status, "Canceled");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn cancel(ctx: NativeCallContext, j: &mut Job) -> Result<(), Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        m::block(cl.cancel(&j.get().name)).or_rhai(&ctx)?;
        let r = m::block(cl.run(&j.get().name)).or_rhai(&ctx)?;
        j.set(r);
        Ok(())
    }

    /// The job's child runs (a sweep's trials), all pages.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "t ${{search_space.a}}", environment: "azureml:e:1"},
    ///     sampling_algorithm: "grid", search_space: #{a: sweep::choice([1, 2])},
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let job = azure::submit(s, #{wait: true, poll: 0.05});
    /// let kids = job.children();
    /// let values = kids.map(|k| parse_json(k.tags.hyperparameters).a);
    /// values.sort();
    /// assert_eq(values, [1, 2]);
    /// ```
    #[rhai_fn(global, name = "children", return_raw, volatile)]
    pub fn children(ctx: NativeCallContext, j: &mut Job) -> Result<Array, Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let kids = m::fetch_child_runs(&cl, &j.get(), None, 0).or_rhai(&ctx)?;
        Ok(kids
            .into_iter()
            .map(|r| Dynamic::from(JobObj::new(Some(cl.clone()), r)))
            .collect())
    }

    /// The latest value of each metric the run logged, from the workspace's MLflow endpoint.
    ///
    /// ```rhai
    /// fs::write("out.yml", "command: write-outputs\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("out.yml", #{wait: true, poll: 0.05});
    /// assert_eq(job.metrics().loss, 0.25);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn metrics(ctx: NativeCallContext, j: &mut Job) -> Result<Map, Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let ms = m::block(cl.metrics(&j.get())).or_rhai(&ctx)?;
        Ok(ms
            .into_iter()
            .map(|(k, v)| (k.into(), Dynamic::from(v)))
            .collect())
    }

    /// Every value of one metric in logging order: `[#{step, value}]`.
    ///
    /// ```rhai
    /// fs::write("out.yml", "command: write-outputs\nenvironment: azureml:e:1\n");
    /// let job = azure::submit("out.yml", #{wait: true, poll: 0.05});
    /// assert_eq(job.metric_history("loss").map(|p| p.value), [0.5, 0.25]);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn metric_history(
        ctx: NativeCallContext,
        j: &mut Job,
        key: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let h = m::block(cl.metric_history(&j.get(), key)).or_rhai(&ctx)?;
        Ok(h.into_iter()
            .map(|(s, v)| {
                let mut mm = Map::new();
                mm.insert("step".into(), Dynamic::from(s));
                mm.insert("value".into(), Dynamic::from(v));
                Dynamic::from(mm)
            })
            .collect())
    }

    /// Downloads a named output of the job (its URI, else where Azure ML puts it) into
    /// `dest`; returns the paths.
    ///
    /// ```rhai
    /// fs::write("out.yml", "command: write-outputs\nenvironment: azureml:e:1\noutputs:\n  model: {type: uri_folder}\n");
    /// let job = azure::submit("out.yml", #{wait: true, poll: 0.05});
    /// let files = job.download_output("model", "model");
    /// assert(files[0].ends_with("model/model.txt"));
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn download_output(
        ctx: NativeCallContext,
        j: &mut Job,
        output: &str,
        dest: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let got = m::block(cl.download_named_output(&j.get(), output, std::path::Path::new(dest)))
            .or_rhai(&ctx)?;
        Ok(got
            .into_iter()
            .map(|p| Dynamic::from(p.display().to_string()))
            .collect())
    }

    /// For a cross-validation (or any sweep): every child's `outputs/<prefix>/` into
    /// `<dest>/<split index>/` (children without an index: `<dest>/<run name>/`). Returns
    /// `#{folder: [paths]}`.
    ///
    /// ```rhai
    /// let s = sweep::new(#{trial: #{command: "write-outputs --i ${{search_space.crossval_index}}", environment: "azureml:e:1"},
    ///     sampling_algorithm: "grid", search_space: #{crossval_index: sweep::choice([0, 1])},
    ///     objective: #{goal: "minimize", primary_metric: "loss"}});
    /// let job = azure::submit(s, #{wait: true, poll: 0.05});
    /// let got = job.download_children("checkpoints", "cv");
    /// let folders = got.keys();
    /// folders.sort();
    /// assert_eq(folders, ["0", "1"]);
    /// assert(fs::exists("cv/1/best.ckpt"));
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn download_children(
        ctx: NativeCallContext,
        j: &mut Job,
        prefix: &str,
        dest: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        let cl = j.client(&ctx)?;
        let got = m::download_children_outputs(&cl, &j.get(), prefix, std::path::Path::new(dest))
            .or_rhai(&ctx)?;
        Ok(got
            .into_iter()
            .map(|(k, v)| {
                (
                    k.into(),
                    Dynamic::from(
                        v.into_iter()
                            .map(|p| Dynamic::from(p.display().to_string()))
                            .collect::<Array>(),
                    ),
                )
            })
            .collect())
    }

    /// `to_string`: `name (status)`.
    ///
    /// ```rhai
    /// assert_eq(`${azure::run_from(#{name: "j", properties: #{status: "Queued"}})}`, "j (Queued)");
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn to_string(j: &mut Job) -> String {
        let r = j.get();
        format!("{} ({})", r.name, r.status)
    }
}
