//! Ask-and-tell: the objective is computed by the caller (a script), the sampler suggests.
//! Same samplers as sweeps. A named study lives in the store: a parent run (kind sweep, key
//! `study:<name>`) with its space, sampler, goal and seed, and one finished child run (kind
//! trial) per told trial with its params and the metric `value` — so the same script run
//! again (or another one) continues it, TPE rebuilt from what was told.
use super::sampler::{Params, Space};
use crate::error::{LabError, LabResult};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    Random,
    Sobol,
    Tpe,
    Grid,
}

#[derive(Debug, Clone)]
pub struct Study {
    pub space: Space,
    pub sampler: Sampler,
    pub seed: u64,
    pub minimize: bool,
    asked: u64,
    /// Told trials: `(number, params, value)`.
    pub told: Vec<(u64, Params, f64)>,
    /// The told trials where TPE models them ([`Space::coords`]), with their values.
    told_at: Vec<(Vec<f64>, f64)>,
    pending: std::collections::BTreeMap<u64, Params>,
    /// The study's run in the store (named studies).
    pub run_id: Option<i64>,
}

impl Study {
    pub fn new(space: Space, sampler: &str, goal: &str, seed: Option<u64>) -> LabResult<Study> {
        let bad = |m: String| LabError::new("sweep.invalid", m);
        let sampler = match sampler {
            "random" => Sampler::Random,
            "sobol" => Sampler::Sobol,
            "tpe" | "bayesian" => Sampler::Tpe,
            "grid" => Sampler::Grid,
            s => {
                return Err(bad(format!(
                    "sampler must be tpe, random, sobol or grid, got \"{s}\""
                )))
            }
        };
        if sampler == Sampler::Grid && space.grid_size().is_none() {
            return Err(bad("grid sampling needs choice expressions only".into()));
        }
        let minimize = match goal.to_ascii_lowercase().as_str() {
            "minimize" => true,
            "maximize" => false,
            g => {
                return Err(bad(format!(
                    "goal must be minimize or maximize, got \"{g}\""
                )))
            }
        };
        Ok(Study {
            space,
            sampler,
            seed: seed.unwrap_or_else(|| fastrand::u64(..) >> 1),
            minimize,
            asked: 0,
            told: Vec::new(),
            told_at: Vec::new(),
            pending: Default::default(),
            run_id: None,
        })
    }

    /// A named study: opened from the store if it exists (its space must be the same; its
    /// recorded seed wins), else recorded there.
    pub fn open(mut self, name: &str) -> LabResult<Study> {
        use crate::store::{NewRun, RunKind};
        let space_json = serde_json::Value::Object(
            self.space
                .0
                .iter()
                .map(|(n, d)| (n.clone(), d.to_rest()))
                .collect(),
        )
        .to_string();
        let sampler = format!("{:?}", self.sampler).to_ascii_lowercase();
        let n = NewRun {
            key: Some(format!("study:{name}")),
            params: vec![
                (
                    "space".into(),
                    serde_json::Value::String(space_json.clone()),
                ),
                ("sampler".into(), serde_json::json!(sampler)),
                (
                    "goal".into(),
                    serde_json::json!(if self.minimize {
                        "minimize"
                    } else {
                        "maximize"
                    }),
                ),
                ("seed".into(), serde_json::json!(self.seed)),
            ],
            tags: vec![("study".into(), name.to_string())],
            ..NewRun::record(RunKind::Sweep, name, &format!("study {name}"))
        };
        let (run, created) = crate::store::with_current(|st| st.open_record(&n, None))?;
        self.run_id = Some(run.id);
        if created {
            return Ok(self);
        }
        let (params, kids) = crate::store::with_current(|st| {
            let p = st.params(run.id)?;
            let mut kids = Vec::new();
            let mut list = st.list(None, Some(run.id), usize::MAX >> 1)?;
            list.reverse();
            for k in list {
                let num: u64 = k
                    .key
                    .as_deref()
                    .and_then(|x| x.rsplit('/').next())
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
                let p: Params = st.params(k.id)?.into_iter().collect();
                let v = st
                    .metrics(k.id, Some("value"))?
                    .first()
                    .map(|m| m.value)
                    .unwrap_or(f64::NAN);
                kids.push((num, p, v));
            }
            Ok((p, kids))
        })?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("space").and_then(|v| v.as_str().map(str::to_string)) != Some(space_json) {
            return Err(LabError::new(
                "sweep.invalid",
                format!("study `{name}` exists with another search space (give it another name)"),
            ));
        }
        if let Some(seed) = get("seed").and_then(|v| v.as_u64()) {
            self.seed = seed;
        }
        self.asked = kids.iter().map(|k| k.0 + 1).max().unwrap_or(0);
        self.told_at = kids
            .iter()
            .filter_map(|(_, p, v)| Some((self.space.coords(p)?, *v)))
            .collect();
        self.told = kids;
        Ok(self)
    }

    /// The next trial: `(number, params)`.
    pub fn ask(&mut self) -> LabResult<(u64, Params)> {
        let i = self.asked;
        let p = match self.sampler {
            Sampler::Random => self.space.random_point(self.seed, i),
            Sampler::Sobol => self.space.sobol_point(self.seed, i),
            Sampler::Grid => {
                if i >= self.space.grid_size().unwrap_or(0) {
                    return Err(LabError::new("sweep.exhausted", "the grid is exhausted"));
                }
                self.space.grid_point(i)
            }
            Sampler::Tpe => {
                // Asked and not told yet: running, each a constant liar (as Optuna's).
                let pending: Vec<Vec<f64>> = self
                    .pending
                    .values()
                    .filter_map(|p| self.space.coords(p))
                    .collect();
                // Fewer results than TPE's startup trials: a random point (as Optuna).
                self.space
                    .tpe_point_at(self.seed, i, &self.told_at, &pending, self.minimize)
            }
        };
        self.asked += 1;
        self.pending.insert(i, p.clone());
        Ok((i, p))
    }

    /// Records the value of trial `number`.
    pub fn tell(&mut self, number: u64, value: f64) -> LabResult<()> {
        let p = self.pending.remove(&number).ok_or_else(|| {
            LabError::new(
                "sweep.invalid",
                format!("trial {number} was not asked, or was told already"),
            )
        })?;
        if let Some(parent) = self.run_id {
            use crate::store::{Metric, NewRun, RunKind, RunStatus};
            let n = NewRun {
                parent_id: Some(parent),
                key: Some(format!("study:{parent}/{number}")),
                params: p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ..NewRun::record(RunKind::Trial, &format!("trial_{number}"), "told")
            };
            let m = Metric {
                name: "value".into(),
                value,
                step: 0,
                ts: 0.0,
            };
            crate::store::with_current(|st| {
                st.record_finished(&n, RunStatus::Completed, std::slice::from_ref(&m))
            })?;
        }
        if let Some(c) = self.space.coords(&p) {
            self.told_at.push((c, value));
        }
        self.told.push((number, p, value));
        Ok(())
    }

    /// The best told trial.
    pub fn best(&self) -> Option<&(u64, Params, f64)> {
        self.told.iter().filter(|t| !t.2.is_nan()).reduce(|a, b| {
            let better = if self.minimize { b.2 < a.2 } else { b.2 > a.2 };
            if better {
                b
            } else {
                a
            }
        })
    }
}
