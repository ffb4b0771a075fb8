//! Samplers, deterministic given a seed and a trial index: grid (declaration order, the last
//! parameter fastest), random (each trial its own generator seeded from `(seed, index)`, so
//! trial 7 has the same values however many trials ran before it), Sobol (Owen-scrambled,
//! seeded; `sobol_burley`) and TPE (the Tree-structured Parzen Estimator of Optuna 5's
//! `TPESampler(multivariate=True)`: whole trials as kernels; random for the first
//! [`TPE_STARTUP`] trials).
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

    /// TPE suggestion for trial `index` given finished trials' `(params, value)` in trial
    /// order; `minimize` says which way is better. Fewer than [`TPE_STARTUP`] observations: a
    /// random point. As Optuna 5's `TPESampler(multivariate=True)`: the good trials (the best
    /// [`gamma`] of them) and the rest each make a mixture ([`Mixture`]) whose
    /// components are whole trials (one kernel per parameter) plus a prior; 24 candidates are
    /// drawn from the good mixture and the one with the highest `log l(x) - log g(x)` wins.
    pub fn tpe_point<P: std::borrow::Borrow<Params>>(
        &self,
        seed: u64,
        index: u64,
        obs: &[(P, f64)],
        minimize: bool,
    ) -> Params {
        self.tpe_point_pending::<P>(seed, index, obs, &[], minimize)
    }

    /// [`Space::tpe_point`] knowing the trials still running (`pending`): each counts as a
    /// trial with the worst value (Optuna's `constant_liar`), so it joins the bad group and
    /// the next suggestion moves away from it — trials running at once are different ideas.
    /// The random startup counts finished trials only.
    pub fn tpe_point_pending<P: std::borrow::Borrow<Params>>(
        &self,
        seed: u64,
        index: u64,
        obs: &[(P, f64)],
        pending: &[P],
        minimize: bool,
    ) -> Params {
        let finished: Vec<(Vec<f64>, f64)> = obs
            .iter()
            .filter_map(|(p, v)| Some((self.coords(p.borrow())?, *v)))
            .collect();
        let running: Vec<Vec<f64>> = pending
            .iter()
            .filter_map(|p| self.coords(p.borrow()))
            .collect();
        self.tpe_point_at(seed, index, &finished, &running, minimize)
    }

    /// Where a trial lies, as TPE models it: a position in `[0, 1]` per numeric parameter
    /// ([`Dist::position`]), the index of the value per choice; `None` when a parameter is
    /// missing or not one of its choices.
    pub fn coords(&self, p: &Params) -> Option<Vec<f64>> {
        self.0
            .iter()
            .map(|(n, d)| {
                let x = p.get(n)?;
                match d {
                    Dist::Choice(vs) => vs.iter().position(|c| c == x).map(|i| i as f64),
                    _ => d.position(x),
                }
            })
            .collect()
    }

    /// [`Space::tpe_point_pending`] from coordinates ([`Space::coords`]) the caller keeps:
    /// a study asks thousands of times over the same results, and converting each of them
    /// on every ask was most of the cost. `finished` holds the values as told (a value that
    /// is not finite is left out); each of `running` counts as the worst result.
    pub fn tpe_point_at(
        &self,
        seed: u64,
        index: u64,
        finished: &[(Vec<f64>, f64)],
        running: &[Vec<f64>],
        minimize: bool,
    ) -> Params {
        let coords: Vec<(&[f64], f64)> = finished
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(c, v)| (c.as_slice(), if minimize { *v } else { -*v }))
            .chain(running.iter().map(|c| (c.as_slice(), f64::INFINITY)))
            .collect();
        let n_finished = coords.iter().filter(|c| c.1.is_finite()).count();
        if n_finished < TPE_STARTUP {
            return self.random_point(seed, index);
        }
        let mut rng = rng_for(seed, index);
        // As Optuna: the good group's size counts finished trials (the running ones are bad).
        // It is the best `n_below` by (value, trial): selected, not the whole history sorted.
        let n_below = gamma(n_finished);
        let mut order: Vec<usize> = (0..coords.len()).collect();
        order.select_nth_unstable_by(n_below - 1, |a, b| {
            coords[*a].1.total_cmp(&coords[*b].1).then(a.cmp(b))
        });
        let mut good = vec![false; coords.len()];
        for i in &order[..n_below] {
            good[*i] = true;
        }
        // Trial order (older first), as Optuna weighs them.
        let (mut below, mut above) = (Vec::with_capacity(n_below), Vec::new());
        for (i, c) in coords.iter().enumerate() {
            if good[i] { &mut below } else { &mut above }.push(c.0);
        }
        let l = Mixture::new(&self.0, &below);
        let g = Mixture::new(&self.0, &above);
        let mut best = (f64::NEG_INFINITY, Vec::new());
        let mut scratch = Vec::new();
        for _ in 0..TPE_CANDIDATES {
            let x = l.sample(&mut rng);
            let score = l.log_pdf(&x, &mut scratch) - g.log_pdf(&x, &mut scratch);
            if score > best.0 {
                best = (score, x);
            }
        }
        let vals = self
            .0
            .iter()
            .zip(&best.1)
            .map(|((_, d), x)| match d {
                Dist::Choice(vs) => vs[(*x as usize).min(vs.len() - 1)].clone(),
                _ => d.at(*x),
            })
            .collect();
        self.named(vals)
    }

    /// Of a run's recorded params, the swept ones (the names this space declares).
    pub fn swept(&self, recorded: Vec<(String, Value)>) -> Params {
        recorded
            .into_iter()
            .filter(|(k, _)| self.0.iter().any(|(n, _)| n == k))
            .collect()
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

/// How many of `n` trials make the good group (Optuna's `default_gamma`): the best tenth,
/// rounded up, at least 1 and at most 25.
fn gamma(n: usize) -> usize {
    n.div_ceil(10).clamp(1, 25)
}

/// The weights of `n` observations in trial order (Optuna's `default_weights`): 1 each up to
/// 25; beyond, the newest 25 keep 1 and the older ones ramp linearly from `1/n` up to 1.
fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let step = if ramp > 1 {
        (1.0 - 1.0 / n as f64) / (ramp - 1) as f64
    } else {
        0.0
    };
    (0..n)
        .map(|i| {
            if i < ramp {
                1.0 / n as f64 + step * i as f64
            } else {
                1.0
            }
        })
        .collect()
}

/// The kernel widths of observations at `mus` in `[0, 1]` (Optuna 5's rule): the larger gap
/// to a neighbour (the other points and the ends 0 and 1), except that the lowest and the
/// highest point take their inner gap (`consider_endpoints=False`); clipped to
/// `[1 / min(100, n + 2), 1]` (magic clip, the prior counted as a kernel). The prior's own
/// width is 1.
///
/// Many points are put in buckets one clip wide instead of being sorted (a study of
/// thousands of trials fits its bad group on every ask): a gap within a bucket is under the
/// clip, so only a bucket's lowest and highest point can be wider, and only by the gap to
/// the next bucket's point. The widths are the same, to the bit, as [`bandwidths_sorted`]'s.
fn bandwidths(mus: &[f64]) -> Vec<f64> {
    let n = mus.len();
    let b = 100.min(n + 2);
    let min_bw = 1.0 / b as f64;
    let plain = |x: &f64| (0.0..=1.0).contains(x) && !x.is_sign_negative();
    if n <= 256 || !mus.iter().all(plain) {
        return bandwidths_sorted(mus, min_bw);
    }
    // Each bucket's lowest point (the oldest of equals: first in a stable sort) and highest
    // (the newest of equals: last), and how many it holds.
    let mut ends: Vec<Option<(usize, usize, usize)>> = vec![None; b];
    for (i, &x) in mus.iter().enumerate() {
        let k = ((x * b as f64) as usize).min(b - 1);
        ends[k] = Some(match ends[k] {
            None => (i, i, 1),
            Some((lo, hi, c)) => (
                if mus[lo] <= x { lo } else { i },
                if mus[hi] > x { hi } else { i },
                c + 1,
            ),
        });
    }
    let full: Vec<(usize, usize, usize)> = ends.into_iter().flatten().collect();
    if full.iter().any(|&(lo, hi, _)| mus[hi] - mus[lo] > min_bw) {
        // Only by rounding at a bucket's edge: sorted, as ever.
        return bandwidths_sorted(mus, min_bw);
    }
    let mut sig = vec![min_bw; n];
    for (k, &(lo, hi, c)) in full.iter().enumerate() {
        let prev = if k > 0 { mus[full[k - 1].1] } else { 0.0 };
        let next = if k + 1 < full.len() {
            mus[full[k + 1].0]
        } else {
            1.0
        };
        let (first, last) = (k == 0, k + 1 == full.len());
        let (left, right) = (mus[lo] - prev, next - mus[hi]);
        if c == 1 {
            // Alone in its bucket: both gaps reach out of it.
            let s = if first {
                right
            } else if last {
                left
            } else {
                left.max(right)
            };
            sig[lo] = s.clamp(min_bw, 1.0);
            continue;
        }
        // The other gap of each is within the bucket (under the clip); the lowest and the
        // highest of all take their inner gap, within the bucket too.
        if !first {
            sig[lo] = left.clamp(min_bw, 1.0);
        }
        if !last {
            sig[hi] = right.clamp(min_bw, 1.0);
        }
    }
    sig
}

/// [`bandwidths`] by sorting the points, with the clip `min_bw`.
fn bandwidths_sorted(mus: &[f64], min_bw: f64) -> Vec<f64> {
    let n = mus.len();
    // Sorted by (total order of the value, index): the order of a stable sort by value, at
    // the speed of an unstable sort of integer pairs.
    let mut sorted: Vec<(u64, usize)> = mus.iter().map(|x| total_key(*x)).zip(0..).collect();
    sorted.sort_unstable();
    let m = sorted.len();
    let ends: Vec<f64> = std::iter::once(0.0)
        .chain(sorted.iter().map(|x| mus[x.1]))
        .chain(std::iter::once(1.0))
        .collect();
    let mut sig = vec![0.0; n];
    for j in 0..m {
        let s = if m >= 2 && j == 0 {
            ends[2] - ends[1]
        } else if m >= 2 && j == m - 1 {
            ends[m] - ends[m - 1]
        } else {
            (ends[j + 1] - ends[j]).max(ends[j + 2] - ends[j + 1])
        };
        sig[sorted[j].1] = s.clamp(min_bw, 1.0);
    }
    sig
}

/// A key whose integer order is `f64::total_cmp`'s order of `x`.
fn total_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// One parameter's kernels in every component of a mixture, side by side (a mixture of
/// thousands of trials is evaluated a column at a time).
enum Column {
    /// Gaussians truncated to `[0, 1]`, the prior's last: means, sds, 1 / sd, and the log of
    /// 1 / (sd · √(2π) · mass inside).
    Num {
        mu: Vec<f64>,
        sd: Vec<f64>,
        inv_sd: Vec<f64>,
        ln: Vec<f64>,
    },
    /// Choice kernels peaked at the observed indices `at` (the prior, uniform, is not among
    /// them): the log-probability at the peak and elsewhere, and the probability at the peak.
    Cat {
        at: Vec<usize>,
        k: usize,
        lp_hit: f64,
        lp_miss: f64,
        p_hit: f64,
    },
}

/// Optuna's Parzen estimator: a mixture whose components are whole observations (a kernel
/// per parameter, multiplied) plus a prior component; weights 1 each, older observations
/// ramped down when there are more than 25 (Optuna's `default_weights`), the prior 1.
struct Mixture {
    log_w: Vec<f64>,
    w: Vec<f64>,
    cols: Vec<Column>,
}

impl Mixture {
    fn new(space: &[(String, Dist)], pts: &[&[f64]]) -> Mixture {
        let n = pts.len();
        let mut w = default_weights(n);
        w.push(1.0);
        let sum: f64 = w.iter().sum();
        let w: Vec<f64> = w.iter().map(|x| x / sum).collect();
        let cols = space
            .iter()
            .enumerate()
            .map(|(d, (_, dist))| match dist {
                Dist::Choice(vs) => {
                    // Optuna: prior weight spread over the choices, plus 1 at the observed one.
                    let k = vs.len();
                    let base = 1.0 / (n as f64 + 1.0);
                    let total = base * k as f64 + 1.0;
                    let (hit, miss) = ((base + 1.0) / total, base / total);
                    Column::Cat {
                        at: pts.iter().map(|p| (p[d] as usize).min(k - 1)).collect(),
                        k,
                        lp_hit: hit.ln(),
                        lp_miss: miss.ln(),
                        p_hit: hit,
                    }
                }
                _ => {
                    // The observed points, then the prior's mean.
                    let mu: Vec<f64> = pts.iter().map(|p| p[d]).chain([0.5]).collect();
                    let mut sd = bandwidths(&mu[..n]);
                    sd.push(1.0);
                    // Most kernels of many trials have the clipped width: its log is kept.
                    let mut last = (f64::NAN, 0.0);
                    let ln = mu
                        .iter()
                        .zip(&sd)
                        .map(|(&mu, &s)| {
                            // The mass inside [0, 1]; 1 to 1e-9 when both ends are 6 sd away.
                            if mu - 6.0 * s > 0.0 && mu + 6.0 * s < 1.0 {
                                if s != last.0 {
                                    last = (s, -(s * (2.0 * std::f64::consts::PI).sqrt()).ln());
                                }
                                return last.1;
                            }
                            let z = (normal_cdf((1.0 - mu) / s) - normal_cdf(-mu / s)).max(1e-12);
                            -(s * z * (2.0 * std::f64::consts::PI).sqrt()).ln()
                        })
                        .collect();
                    Column::Num {
                        inv_sd: sd.iter().map(|s| 1.0 / s).collect(),
                        mu,
                        sd,
                        ln,
                    }
                }
            })
            .collect();
        Mixture {
            log_w: w.iter().map(|x| x.ln()).collect(),
            w,
            cols,
        }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> Vec<f64> {
        let i = pick(&self.w, rng.f64());
        self.cols
            .iter()
            .map(|col| match col {
                Column::Cat {
                    at, k, p_hit: p, ..
                } => {
                    let (u, k) = (rng.f64(), *k);
                    match at.get(i) {
                        // The prior: uniform.
                        None => ((u * k as f64) as usize).min(k - 1) as f64,
                        Some(&at) if u < *p => at as f64,
                        Some(&at) => {
                            // One of the other k - 1, evenly.
                            let j = (((u - p) / (1.0 - p) * (k - 1) as f64) as usize).min(k - 2);
                            (if j >= at { j + 1 } else { j }) as f64
                        }
                    }
                }
                Column::Num { mu, sd, .. } => {
                    let (mu, s) = (mu[i], sd[i]);
                    for _ in 0..64 {
                        let (u1, u2) = (rng.f64().max(1e-300), rng.f64());
                        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                        let x = mu + s * z;
                        if (0.0..1.0).contains(&x) {
                            return x;
                        }
                    }
                    mu.clamp(0.0, 1.0 - 1e-12)
                }
            })
            .collect()
    }

    /// log Σ_i w_i Π_d k_id(x_d): the components' log-terms a column at a time (in
    /// `scratch`, the caller's, kept from call to call), then a log-sum-exp that skips the
    /// terms below e^-40 of the largest.
    fn log_pdf(&self, x: &[f64], scratch: &mut Vec<f64>) -> f64 {
        let t = scratch;
        t.clear();
        t.extend_from_slice(&self.log_w);
        for (col, &xd) in self.cols.iter().zip(x) {
            match col {
                Column::Num { mu, inv_sd, ln, .. } => {
                    for (((t, mu), inv), ln) in t.iter_mut().zip(mu).zip(inv_sd).zip(ln) {
                        let z = (xd - mu) * inv;
                        *t += ln - 0.5 * z * z;
                    }
                }
                Column::Cat {
                    at,
                    k,
                    lp_hit,
                    lp_miss,
                    ..
                } => {
                    let xi = xd as usize;
                    for (t, at) in t.iter_mut().zip(at) {
                        *t += if *at == xi { *lp_hit } else { *lp_miss };
                    }
                    if let Some(prior) = t.get_mut(at.len()) {
                        *prior -= (*k as f64).ln();
                    }
                }
            }
        }
        let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            return m;
        }
        let acc: f64 = t
            .iter()
            .filter(|v| **v - m > -40.0)
            .map(|v| (v - m).exp())
            .sum();
        m + acc.ln()
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

    /// A trial still running counts as the worst result (constant liar): four trials
    /// started at once, each suggested knowing the ones before it run, spread out where four
    /// suggested blind crowd together; the same state gives the same suggestion; running
    /// trials do not count towards the random startup.
    #[test]
    fn pending_trials_make_concurrent_suggestions_different_ideas() {
        let s = space(vec![("x", Dist::Uniform(0.0, 10.0))]);
        let x = |p: &Params| p["x"].as_f64().unwrap();
        let spread = |ps: &[Params]| {
            let mut d = 0.0;
            for a in 0..ps.len() {
                for b in a + 1..ps.len() {
                    d += (x(&ps[a]) - x(&ps[b])).abs();
                }
            }
            d
        };
        let (mut liar, mut blind, mut wider) = (0.0, 0.0, 0);
        for seed in 0..10 {
            // 20 results of f(x) = (x - 3)^2: TPE suggests near 3.
            let obs: Vec<(Params, f64)> = (0..20)
                .map(|i| {
                    let p = s.random_point(seed, i);
                    let v = (x(&p) - 3.0).powi(2);
                    (p, v)
                })
                .collect();
            let mut running: Vec<Params> = Vec::new();
            let mut unaware: Vec<Params> = Vec::new();
            for k in 0..4 {
                let p = s.tpe_point_pending(seed, 20 + k, &obs, &running, true);
                assert_eq!(p, s.tpe_point_pending(seed, 20 + k, &obs, &running, true));
                running.push(p);
                unaware.push(s.tpe_point(seed, 20 + k, &obs, true));
            }
            let (a, b) = (spread(&running), spread(&unaware));
            liar += a;
            blind += b;
            wider += usize::from(a > b);
        }
        assert!(
            liar > 1.3 * blind,
            "spread with the liar {liar:.2}, blind {blind:.2}"
        );
        assert!(wider >= 7, "wider on {wider} of 10 seeds");
        let few: Vec<(Params, f64)> = (0..5).map(|i| (s.random_point(1, i), i as f64)).collect();
        let running: Vec<Params> = (5..15).map(|i| s.random_point(1, i)).collect();
        assert_eq!(
            s.tpe_point_pending(1, 15, &few, &running, true),
            s.random_point(1, 15)
        );
    }

    /// The Parzen estimator's pieces against Optuna 5.1's `_ParzenEstimator` and
    /// `default_gamma`/`default_weights` (values printed by Optuna itself; the bandwidths
    /// also worked by hand in the comments).
    #[test]
    fn parzen_pieces_match_optuna() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert_eq!(
            [1, 9, 10, 11, 30, 250, 251, 1000].map(gamma),
            [1, 1, 1, 2, 3, 25, 25, 25]
        );
        assert_eq!(default_weights(3), vec![1.0; 3]);
        // 27: a ramp of two (1/27, 1) before the newest 25.
        let w = default_weights(27);
        assert_eq!(w.len(), 27);
        assert!(close(w[0], 1.0 / 27.0) && w[1..].iter().all(|x| *x == 1.0));
        let w = default_weights(30);
        for (a, b) in w[..5].iter().zip([
            1.0 / 30.0,
            0.275,
            0.5166666666666667,
            0.7583333333333333,
            1.0,
        ]) {
            assert!(close(*a, b), "{w:?}");
        }
        // Ends 0 and 1 around 0.05, 0.2, 0.9: the lowest takes its inner gap 0.15, raised to
        // the clip 1/min(100, 3 + 2) = 0.2; 0.2 the larger gap 0.7; the highest its inner 0.7.
        assert_eq!(bandwidths(&[0.05, 0.2, 0.9]), vec![0.2, 0.7, 0.7]);
        let b = bandwidths(&[0.3, 0.35, 0.4, 0.45, 0.6, 0.62, 0.64, 0.66, 0.7, 0.72]);
        let optuna = [1.0 / 12.0, 1.0 / 12.0, 1.0 / 12.0, 0.15, 0.15];
        for (a, o) in b.iter().zip(optuna.iter().chain([1.0 / 12.0; 5].iter())) {
            assert!(close(*a, *o), "{b:?}");
        }
        // Densities: three points plus the prior (N(0.5, 1)), each truncated to [0, 1].
        let x = space(vec![("x", Dist::Uniform(0.0, 1.0))]);
        let m = Mixture::new(&x.0, &[&[0.05], &[0.2], &[0.9]]);
        assert_eq!(m.w, vec![0.25; 4]);
        for (at, optuna) in [
            (0.1, 0.4055028714954967),
            (0.5, -0.1523077369324648),
            (0.95, -0.34080550846773183),
        ] {
            let got = m.log_pdf(&[at], &mut Vec::new());
            assert!(
                close(got, optuna),
                "log pdf at {at}: {got}, Optuna {optuna}"
            );
        }
        // A choice of three seen as a, c, c: each kernel 1 + 1/4 spread (5/7 at its value,
        // 1/7 elsewhere), the prior uniform; p(c) = (1/7 + 5/7 + 5/7 + 1/3) / 4 = 10/21.
        let c = space(vec![(
            "c",
            Dist::Choice(vec![json!("a"), json!("b"), json!("c")]),
        )]);
        let m = Mixture::new(&c.0, &[&[0.0], &[2.0], &[2.0]]);
        assert!(close(
            m.log_pdf(&[2.0], &mut Vec::new()),
            (10.0f64 / 21.0).ln()
        ));
        assert!(close(
            m.log_pdf(&[1.0], &mut Vec::new()),
            (0.25f64 * (3.0 / 7.0 + 1.0 / 3.0)).ln()
        ));
        // Whole trials as components: (0.2, b) and (0.7, a) at (0.4, b).
        let j = space(vec![
            ("x", Dist::Uniform(0.0, 1.0)),
            ("c", Dist::Choice(vec![json!("a"), json!("b")])),
        ]);
        let m = Mixture::new(&j.0, &[&[0.2, 1.0], &[0.7, 0.0]]);
        let got = m.log_pdf(&[0.4, 1.0], &mut Vec::new());
        assert!(close(got, -0.5644570703696559), "{got}");
    }

    #[test]
    fn bucketed_bandwidths_are_the_sorted_ones_to_the_bit() {
        let mut rng = fastrand::Rng::with_seed(11);
        for case in 0..400 {
            let n = [257, 300, 1000, 3000][case % 4] + rng.usize(0..50);
            // Spread, clustered (most points within a clip or two), on a grid (ties), at the
            // ends.
            let centre = rng.f64();
            let mus: Vec<f64> = (0..n)
                .map(|_| match case % 5 {
                    0 => rng.f64(),
                    1 => (centre + (rng.f64() - 0.5) * 0.03).clamp(0.0, 1.0),
                    2 => (rng.usize(0..40) as f64) / 39.0,
                    3 => [0.0, 1.0, rng.f64()][rng.usize(0..3)],
                    _ => (centre + (rng.f64() - 0.5) * 0.3 * rng.f64().powi(4)).clamp(0.0, 1.0),
                })
                .collect();
            let min_bw = 1.0 / 100f64.min(n as f64 + 2.0);
            let (got, want) = (bandwidths(&mus), bandwidths_sorted(&mus, min_bw));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "case {case}, point {i} at {}",
                    mus[i]
                );
            }
        }
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
