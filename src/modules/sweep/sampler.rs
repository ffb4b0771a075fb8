//! Samplers, deterministic given a seed and a trial index: grid (declaration order, the last
//! parameter fastest), random (each trial its own generator seeded from `(seed, index)`, so
//! trial 7 has the same values however many trials ran before it), Sobol (Owen-scrambled,
//! seeded; `sobol_burley`) and TPE (Optuna's univariate Tree-structured Parzen Estimator over
//! the same distributions; random for the first [`TPE_STARTUP`] trials).
use serde_json::{Map, Value};

use super::space::{normal_cdf, Dist};

/// A trial's values, in the search space's declaration order.
pub type Params = Map<String, Value>;

/// The search space in declaration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space(pub Vec<(String, Dist)>);

/// Random trials before TPE models the results (Optuna's `n_startup_trials`).
pub const TPE_STARTUP: usize = 10;
/// Candidates drawn from the good-trials model per suggestion (Optuna's `n_ei_candidates`).
const TPE_CANDIDATES: usize = 24;

impl Space {
    /// Grid size: the product of the choice lists (`None` if any expression is not a choice).
    pub fn grid_size(&self) -> Option<u64> {
        self.0.iter().try_fold(1u64, |n, (_, d)| match d {
            Dist::Choice(v) => Some(n.saturating_mul(v.len() as u64)),
            _ => None,
        })
    }

    /// Grid point `index` (mixed radix, the last parameter fastest).
    pub fn grid_point(&self, index: u64) -> Params {
        let mut rest = index;
        let mut vals = vec![Value::Null; self.0.len()];
        for (i, (_, d)) in self.0.iter().enumerate().rev() {
            if let Dist::Choice(v) = d {
                vals[i] = v[(rest % v.len() as u64) as usize].clone();
                rest /= v.len() as u64;
            }
        }
        self.named(vals)
    }

    /// Random point `index` of the sequence of `seed`.
    pub fn random_point(&self, seed: u64, index: u64) -> Params {
        let mut rng = rng_for(seed, index);
        self.named(self.0.iter().map(|(_, d)| d.at(rng.f64())).collect())
    }

    /// Sobol point `index` (scrambled by `seed`; at most 2^16 points, 256 parameters).
    pub fn sobol_point(&self, seed: u64, index: u64) -> Params {
        let s = (seed ^ (seed >> 32)) as u32;
        self.named(
            self.0
                .iter()
                .enumerate()
                .map(|(dim, (_, d))| {
                    d.at(f64::from(sobol_burley::sample(index as u32, dim as u32, s)))
                })
                .collect(),
        )
    }

    /// TPE suggestion for trial `index` given finished trials' `(params, value)`; `minimize`
    /// says which way is better. Fewer than [`TPE_STARTUP`] observations: a random point.
    pub fn tpe_point<P: std::borrow::Borrow<Params>>(
        &self,
        seed: u64,
        index: u64,
        obs: &[(P, f64)],
        minimize: bool,
    ) -> Params {
        let obs: Vec<(&Params, f64)> = obs
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(p, v)| (p.borrow(), if minimize { *v } else { -*v }))
            .collect();
        if obs.len() < TPE_STARTUP {
            return self.random_point(seed, index);
        }
        let mut rng = rng_for(seed, index);
        let mut order: Vec<usize> = (0..obs.len()).collect();
        order.sort_by(|a, b| obs[*a].1.total_cmp(&obs[*b].1));
        // Optuna's default gamma: min(ceil(0.1 n), 25) good trials.
        let n_below = ((obs.len() as f64 * 0.1).ceil() as usize).clamp(1, 25);
        let (below, above) = order.split_at(n_below);
        let vals = self
            .0
            .iter()
            .map(|(name, d)| {
                let pos = |idx: &[usize]| -> Vec<f64> {
                    idx.iter()
                        .filter_map(|i| obs[*i].0.get(name).and_then(|v| d.position(v)))
                        .collect()
                };
                let (b, a) = (pos(below), pos(above));
                match d {
                    Dist::Choice(vs) => {
                        let k = vs.len();
                        let weights = |xs: &[f64]| {
                            // Counts plus a prior of 1 spread evenly (Optuna's prior_weight).
                            let mut w = vec![1.0 / k as f64; k];
                            for x in xs {
                                w[((x * k as f64) as usize).min(k - 1)] += 1.0;
                            }
                            let s: f64 = w.iter().sum();
                            w.iter().map(|x| x / s).collect::<Vec<_>>()
                        };
                        let (l, g) = (weights(&b), weights(&a));
                        let mut best = (f64::NEG_INFINITY, 0);
                        for _ in 0..TPE_CANDIDATES {
                            let i = pick(&l, rng.f64());
                            let score = l[i].ln() - g[i].ln();
                            if score > best.0 {
                                best = (score, i);
                            }
                        }
                        vs[best.1].clone()
                    }
                    _ => {
                        let (l, g) = (Parzen::new(&b, obs.len()), Parzen::new(&a, obs.len()));
                        let mut best = (f64::NEG_INFINITY, 0.5);
                        for _ in 0..TPE_CANDIDATES {
                            let x = l.sample(&mut rng);
                            let score = l.log_pdf(x) - g.log_pdf(x);
                            if score > best.0 {
                                best = (score, x);
                            }
                        }
                        d.at(best.1)
                    }
                }
            })
            .collect();
        self.named(vals)
    }

    fn named(&self, vals: Vec<Value>) -> Params {
        self.0
            .iter()
            .zip(vals)
            .map(|((n, _), v)| (n.clone(), v))
            .collect()
    }
}

/// One generator per (seed, trial): SplitMix64 of the pair seeds fastrand's wyrand.
fn rng_for(seed: u64, index: u64) -> fastrand::Rng {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    fastrand::Rng::with_seed(z ^ (z >> 31))
}

fn pick(weights: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len() - 1
}

/// A mixture of Gaussians truncated to `[0, 1]`, one at each observation plus a wide prior
/// (Optuna's univariate Parzen estimator: bandwidth = the larger gap to a neighbour; prior
/// N(0.5, 1) with weight 1). The smallest bandwidth is `1 / (1 + trials so far)`, not
/// hyperopt's `1 / min(100, 1 + n)` of the estimator's own points: with that floor the good
/// points' kernels stayed a 26th of the range wide and 1,000 trials of a 4-parameter
/// quadratic stalled at 0.45 (this floor: 0.04; Optuna 0.0002 — bench/sweep.sh).
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// log(weight / (sigma · Z)) per component, Z the mass inside [0, 1].
    log_norm: Vec<f64>,
    weights: Vec<f64>,
}

impl Parzen {
    fn new(points: &[f64], total: usize) -> Parzen {
        let mut mus: Vec<f64> = points.to_vec();
        mus.sort_by(f64::total_cmp);
        let n = mus.len();
        let min_bw = 1.0 / (1.0 + total as f64);
        let mut sigmas = Vec::with_capacity(n + 1);
        for i in 0..n {
            let left = mus[i] - if i == 0 { 0.0 } else { mus[i - 1] };
            let right = if i + 1 == n { 1.0 } else { mus[i + 1] } - mus[i];
            sigmas.push(left.max(right).clamp(min_bw, 1.0));
        }
        mus.push(0.5);
        sigmas.push(1.0);
        let w = 1.0 / (n as f64 + 1.0);
        let weights = vec![w; n + 1];
        let log_norm = mus
            .iter()
            .zip(&sigmas)
            .map(|(m, s)| {
                let z = (normal_cdf((1.0 - m) / s) - normal_cdf((0.0 - m) / s)).max(1e-12);
                w.ln() - (s * z * (2.0 * std::f64::consts::PI).sqrt()).ln()
            })
            .collect();
        Parzen {
            mus,
            sigmas,
            log_norm,
            weights,
        }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> f64 {
        let i = pick(&self.weights, rng.f64());
        for _ in 0..64 {
            // Box–Muller; rejection keeps the truncation exact.
            let (u1, u2) = (rng.f64().max(1e-300), rng.f64());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let x = self.mus[i] + self.sigmas[i] * z;
            if (0.0..1.0).contains(&x) {
                return x;
            }
        }
        self.mus[i].clamp(0.0, 1.0 - 1e-12)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut s = 0.0;
        for ((m, sg), ln) in self.mus.iter().zip(&self.sigmas).zip(&self.log_norm) {
            let z = (x - m) / sg;
            s += (ln - 0.5 * z * z).exp();
        }
        s.max(1e-300).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space(v: Vec<(&str, Dist)>) -> Space {
        Space(v.into_iter().map(|(n, d)| (n.to_string(), d)).collect())
    }

    #[test]
    fn grid_is_the_product_in_declaration_order_last_fastest() {
        let s = space(vec![
            ("a", Dist::Choice(vec![json!(1), json!(2)])),
            ("b", Dist::Choice(vec![json!("x"), json!("y"), json!("z")])),
        ]);
        assert_eq!(s.grid_size(), Some(6));
        let pts: Vec<String> = (0..6)
            .map(|i| {
                let p = s.grid_point(i);
                format!("{}{}", p["a"], p["b"].as_str().unwrap())
            })
            .collect();
        assert_eq!(pts, ["1x", "1y", "1z", "2x", "2y", "2z"]);
        assert_eq!(
            space(vec![("c", Dist::Uniform(0.0, 1.0))]).grid_size(),
            None
        );
    }

    #[test]
    fn random_is_reproducible_by_seed_and_index() {
        let s = space(vec![
            ("lr", Dist::Loguniform(-9.2, -2.3)),
            ("n", Dist::Randint(10)),
        ]);
        let a: Vec<Params> = (0..20).map(|i| s.random_point(7, i)).collect();
        let b: Vec<Params> = (0..20).rev().map(|i| s.random_point(7, i)).collect();
        assert_eq!(a, b.into_iter().rev().collect::<Vec<_>>());
        assert_ne!(a, (0..20).map(|i| s.random_point(8, i)).collect::<Vec<_>>());
        // Trials differ from one another.
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn sobol_stratifies_every_dimension() {
        // 64 points of a scrambled Sobol sequence put exactly one point in each of 64 strata
        // of every dimension (random sampling leaves about a third of them empty).
        let s = space(vec![
            ("a", Dist::Uniform(0.0, 1.0)),
            ("b", Dist::Uniform(0.0, 1.0)),
            ("c", Dist::Uniform(0.0, 1.0)),
        ]);
        for name in ["a", "b", "c"] {
            let mut strata = [0; 64];
            for i in 0..64 {
                let x = s.sobol_point(11, i)[name].as_f64().unwrap();
                strata[(x * 64.0) as usize] += 1;
            }
            assert!(strata.iter().all(|n| *n == 1), "{name}: {strata:?}");
        }
        let mut empty = 0;
        let mut strata = [0; 64];
        for i in 0..64 {
            strata[(s.random_point(11, i)["a"].as_f64().unwrap() * 64.0) as usize] += 1;
        }
        empty += strata.iter().filter(|n| **n == 0).count();
        assert!(empty > 5, "random left {empty} strata empty");
        assert_ne!(
            s.sobol_point(11, 3),
            s.sobol_point(12, 3),
            "the seed scrambles"
        );
    }

    /// Best value found on a quadratic bowl after `budget` trials.
    fn best_on_quadratic(tpe: bool, seed: u64, budget: u64) -> f64 {
        let s = space(vec![
            ("x", Dist::Uniform(-5.0, 5.0)),
            ("y", Dist::Uniform(-5.0, 5.0)),
            ("z", Dist::Quniform(-5.0, 5.0, 0.1)),
            (
                "k",
                Dist::Choice(vec![json!(0), json!(1), json!(2), json!(3)]),
            ),
        ]);
        let f = |p: &Params| {
            let g = |n: &str| p[n].as_f64().unwrap();
            (g("x") - 1.0).powi(2)
                + (g("y") + 2.0).powi(2)
                + g("z").powi(2)
                + (g("k") - 2.0).powi(2)
        };
        let mut obs: Vec<(Params, f64)> = Vec::new();
        for i in 0..budget {
            let p = if tpe {
                s.tpe_point(seed, i, &obs, true)
            } else {
                s.random_point(seed, i)
            };
            let v = f(&p);
            obs.push((p, v));
        }
        obs.iter().map(|o| o.1).fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn tpe_beats_random_on_a_quadratic_at_the_same_budget() {
        // Averaged over 10 seeds, 60 trials each: TPE's best is at most half random's.
        let seeds = 0..10;
        let tpe: f64 = seeds
            .clone()
            .map(|s| best_on_quadratic(true, s, 60))
            .sum::<f64>()
            / 10.0;
        let rnd: f64 = seeds.map(|s| best_on_quadratic(false, s, 60)).sum::<f64>() / 10.0;
        assert!(tpe < rnd * 0.5, "tpe {tpe:.3} vs random {rnd:.3}");
    }

    #[test]
    fn tpe_is_deterministic_and_starts_random() {
        let s = space(vec![("x", Dist::Uniform(0.0, 1.0))]);
        let obs: Vec<(Params, f64)> = (0..3).map(|i| (s.random_point(1, i), i as f64)).collect();
        assert_eq!(s.tpe_point(1, 3, &obs, true), s.random_point(1, 3));
        let obs: Vec<(Params, f64)> = (0..20).map(|i| (s.random_point(1, i), i as f64)).collect();
        assert_eq!(
            s.tpe_point(1, 20, &obs, true),
            s.tpe_point(1, 20, &obs, true)
        );
    }
}
