//! Ask-and-tell: the objective is computed by the caller (a script), the sampler suggests.
//! Same samplers as sweeps. In memory for now: a study lives as long as its script.
use super::sampler::{Params, Space};
use crate::error::{HostError, HostResult};

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
    pending: std::collections::BTreeMap<u64, Params>,
}

impl Study {
    pub fn new(space: Space, sampler: &str, goal: &str, seed: Option<u64>) -> HostResult<Study> {
        let bad = |m: String| HostError::new("sweep.invalid", m);
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
            pending: Default::default(),
        })
    }

    /// The next trial: `(number, params)`.
    pub fn ask(&mut self) -> HostResult<(u64, Params)> {
        let i = self.asked;
        let p = match self.sampler {
            Sampler::Random => self.space.random_point(self.seed, i),
            Sampler::Sobol => self.space.sobol_point(self.seed, i),
            Sampler::Grid => {
                if i >= self.space.grid_size().unwrap_or(0) {
                    return Err(HostError::new("sweep.exhausted", "the grid is exhausted"));
                }
                self.space.grid_point(i)
            }
            Sampler::Tpe => {
                let obs: Vec<(&Params, f64)> = self.told.iter().map(|(_, p, v)| (p, *v)).collect();
                // Fewer results than TPE's startup trials: a random point (as Optuna).
                self.space.tpe_point(self.seed, i, &obs, self.minimize)
            }
        };
        self.asked += 1;
        self.pending.insert(i, p.clone());
        Ok((i, p))
    }

    /// Records the value of trial `number`.
    pub fn tell(&mut self, number: u64, value: f64) -> HostResult<()> {
        let p = self.pending.remove(&number).ok_or_else(|| {
            HostError::new(
                "sweep.invalid",
                format!("trial {number} was not asked, or was told already"),
            )
        })?;
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
