//! Search-space expressions, exactly Azure ML's: their YAML /
//! script form (`{type: uniform, min_value, max_value}`), their REST form
//! (`["uniform", [min, max]]`), and how a point `u` of the unit interval maps to a value (the
//! inverse CDF, so random, Sobol and TPE share one definition of every distribution).
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One expression. `u` in `[0, 1)` maps to a value through [`Dist::at`].
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Choice(Vec<Value>),
    /// Integer in `[0, upper)`.
    Randint(i64),
    Uniform(f64, f64),
    /// `exp(U[min, max])`: the bounds are in log space.
    Loguniform(f64, f64),
    Quniform(f64, f64, f64),
    Qloguniform(f64, f64, f64),
    Normal(f64, f64),
    Lognormal(f64, f64),
    Qnormal(f64, f64, f64),
    Qlognormal(f64, f64, f64),
}

/// The map form (YAML and scripts): `type` plus that type's keys. Unknown keys are errors.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDist {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
}

pub const TYPES: &[&str] = &[
    "choice",
    "randint",
    "uniform",
    "loguniform",
    "quniform",
    "qloguniform",
    "normal",
    "lognormal",
    "qnormal",
    "qlognormal",
];

impl RawDist {
    /// Checks the keys of its type (required present, others absent) and the values.
    pub fn to_dist(&self) -> Result<Dist, String> {
        let k = self.kind.as_str();
        if !TYPES.contains(&k) {
            return Err(format!(
                "`type` must be one of {}, got \"{k}\"{}",
                TYPES.join(", "),
                crate::util::did_you_mean(k, TYPES)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default()
            ));
        }
        let wants: &[&str] = match k {
            "choice" => &["values"],
            "randint" => &["upper"],
            "uniform" | "loguniform" => &["min_value", "max_value"],
            "quniform" | "qloguniform" => &["min_value", "max_value", "q"],
            "normal" | "lognormal" => &["mu", "sigma"],
            _ => &["mu", "sigma", "q"],
        };
        let present = [
            ("values", self.values.is_some()),
            ("upper", self.upper.is_some()),
            ("min_value", self.min_value.is_some()),
            ("max_value", self.max_value.is_some()),
            ("mu", self.mu.is_some()),
            ("sigma", self.sigma.is_some()),
            ("q", self.q.is_some()),
        ];
        for (key, here) in present {
            if here && !wants.contains(&key) {
                return Err(format!(
                    "`{key}` does not go with type {k} (it takes {})",
                    wants.join(", ")
                ));
            }
            if !here && wants.contains(&key) {
                return Err(format!("type {k} needs `{key}`"));
            }
        }
        let f = |o: Option<f64>| o.unwrap_or_default();
        let (lo, hi, mu, sigma, q) = (
            f(self.min_value),
            f(self.max_value),
            f(self.mu),
            f(self.sigma),
            f(self.q),
        );
        if wants.contains(&"min_value") && lo >= hi {
            return Err(format!(
                "min_value ({lo}) must be less than max_value ({hi})"
            ));
        }
        if wants.contains(&"sigma") && sigma <= 0.0 {
            return Err(format!("sigma must be more than 0, got {sigma}"));
        }
        if wants.contains(&"q") && q <= 0.0 {
            return Err(format!("q must be more than 0, got {q}"));
        }
        Ok(match k {
            "choice" => {
                let v = self.values.clone().unwrap_or_default();
                if v.is_empty() {
                    return Err("choice needs at least one value".into());
                }
                Dist::Choice(v)
            }
            "randint" => {
                let u = f(self.upper);
                if u < 1.0 || u.fract() != 0.0 {
                    return Err(format!("upper must be a whole number ≥ 1, got {u}"));
                }
                Dist::Randint(u as i64)
            }
            "uniform" => Dist::Uniform(lo, hi),
            "loguniform" => Dist::Loguniform(lo, hi),
            "quniform" => Dist::Quniform(lo, hi, q),
            "qloguniform" => Dist::Qloguniform(lo, hi, q),
            "normal" => Dist::Normal(mu, sigma),
            "lognormal" => Dist::Lognormal(mu, sigma),
            "qnormal" => Dist::Qnormal(mu, sigma, q),
            _ => Dist::Qlognormal(mu, sigma, q),
        })
    }
}

impl Dist {
    pub fn kind(&self) -> &'static str {
        match self {
            Dist::Choice(_) => "choice",
            Dist::Randint(_) => "randint",
            Dist::Uniform(..) => "uniform",
            Dist::Loguniform(..) => "loguniform",
            Dist::Quniform(..) => "quniform",
            Dist::Qloguniform(..) => "qloguniform",
            Dist::Normal(..) => "normal",
            Dist::Lognormal(..) => "lognormal",
            Dist::Qnormal(..) => "qnormal",
            Dist::Qlognormal(..) => "qlognormal",
        }
    }

    /// The map form (YAML / scripts).
    pub fn to_raw(&self) -> RawDist {
        let mut r = RawDist {
            kind: self.kind().into(),
            ..Default::default()
        };
        match *self {
            Dist::Choice(ref v) => r.values = Some(v.clone()),
            Dist::Randint(u) => r.upper = Some(u as f64),
            Dist::Uniform(a, b) | Dist::Loguniform(a, b) => {
                (r.min_value, r.max_value) = (Some(a), Some(b))
            }
            Dist::Quniform(a, b, q) | Dist::Qloguniform(a, b, q) => {
                (r.min_value, r.max_value, r.q) = (Some(a), Some(b), Some(q))
            }
            Dist::Normal(m, s) | Dist::Lognormal(m, s) => (r.mu, r.sigma) = (Some(m), Some(s)),
            Dist::Qnormal(m, s, q) | Dist::Qlognormal(m, s, q) => {
                (r.mu, r.sigma, r.q) = (Some(m), Some(s), Some(q))
            }
        }
        r
    }

    /// Azure's REST form: `["uniform", [min, max]]`, `["choice", [[v, …]]]` (double-nested).
    pub fn to_rest(&self) -> Value {
        let args = match *self {
            Dist::Choice(ref v) => json!([v]),
            Dist::Randint(u) => json!([u]),
            Dist::Uniform(a, b) | Dist::Loguniform(a, b) => json!([a, b]),
            Dist::Quniform(a, b, q) | Dist::Qloguniform(a, b, q) => json!([a, b, q]),
            Dist::Normal(m, s) | Dist::Lognormal(m, s) => json!([m, s]),
            Dist::Qnormal(m, s, q) | Dist::Qlognormal(m, s, q) => json!([m, s, q]),
        };
        json!([self.kind(), args])
    }

    /// The value at `u` in `[0, 1)` (the inverse CDF). Integers for `randint`, the listed
    /// value for `choice`, floats otherwise (quantised ones included, as hyperopt gives them).
    pub fn at(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0 - 1e-12);
        let q = |x: f64, q: f64| (x / q).round() * q;
        let n = |mu: f64, s: f64| mu + s * inverse_normal_cdf(u.clamp(1e-12, 1.0 - 1e-12));
        let x = match *self {
            Dist::Choice(ref v) => {
                return v[((u * v.len() as f64) as usize).min(v.len() - 1)].clone()
            }
            Dist::Randint(up) => return json!(((u * up as f64) as i64).min(up - 1)),
            Dist::Uniform(a, b) => a + u * (b - a),
            Dist::Loguniform(a, b) => (a + u * (b - a)).exp(),
            Dist::Quniform(a, b, s) => q(a + u * (b - a), s),
            Dist::Qloguniform(a, b, s) => q((a + u * (b - a)).exp(), s),
            Dist::Normal(m, s) => n(m, s),
            Dist::Lognormal(m, s) => n(m, s).exp(),
            Dist::Qnormal(m, s, k) => q(n(m, s), k),
            Dist::Qlognormal(m, s, k) => q(n(m, s).exp(), k),
        };
        // Quantising leaves 0.30000000000000004; twelve significant digits are what people wrote.
        let x = if matches!(
            self,
            Dist::Quniform(..) | Dist::Qloguniform(..) | Dist::Qnormal(..) | Dist::Qlognormal(..)
        ) {
            format!("{x:.12e}").parse().unwrap_or(x)
        } else {
            x
        };
        json!(x)
    }

    /// Where a value lies in `[0, 1]` (the CDF; choices by index): TPE models points there.
    pub fn position(&self, v: &Value) -> Option<f64> {
        let x = v.as_f64();
        let lin = |a: f64, b: f64, x: f64| ((x - a) / (b - a)).clamp(0.0, 1.0);
        Some(match *self {
            Dist::Choice(ref vs) => {
                let i = vs.iter().position(|c| c == v)?;
                (i as f64 + 0.5) / vs.len() as f64
            }
            Dist::Randint(u) => (x? + 0.5) / u as f64,
            Dist::Uniform(a, b) | Dist::Quniform(a, b, _) => lin(a, b, x?),
            Dist::Loguniform(a, b) | Dist::Qloguniform(a, b, _) => lin(a, b, x?.max(1e-300).ln()),
            Dist::Normal(m, s) | Dist::Qnormal(m, s, _) => normal_cdf((x? - m) / s),
            Dist::Lognormal(m, s) | Dist::Qlognormal(m, s, _) => {
                normal_cdf((x?.max(1e-300).ln() - m) / s)
            }
        })
    }

    /// Only these are allowed with bayesian sampling (Azure).
    pub fn bayesian_ok(&self) -> bool {
        matches!(
            self,
            Dist::Choice(_) | Dist::Uniform(..) | Dist::Quniform(..)
        )
    }
}

/// Φ⁻¹ (Acklam's rational approximation, relative error < 1.2e-9).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let lo = 0.02425;
    if p < lo {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -inverse_normal_cdf(1.0 - p)
    }
}

/// Φ (Abramowitz–Stegun 7.1.26 through erf, error < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: Value) -> Result<Dist, String> {
        serde_json::from_value::<RawDist>(v)
            .map_err(|e| e.to_string())?
            .to_dist()
    }

    #[test]
    fn every_type_stays_in_bounds_with_its_quantisation() {
        let cases = [
            json!({"type": "uniform", "min_value": 0.5, "max_value": 0.9}),
            json!({"type": "loguniform", "min_value": -9.2, "max_value": -2.3}),
            json!({"type": "quniform", "min_value": 1, "max_value": 10, "q": 0.5}),
            json!({"type": "qloguniform", "min_value": 0, "max_value": 5, "q": 2}),
            json!({"type": "normal", "mu": 3, "sigma": 2}),
            json!({"type": "lognormal", "mu": 0, "sigma": 1}),
            json!({"type": "qnormal", "mu": 10, "sigma": 3, "q": 1}),
            json!({"type": "qlognormal", "mu": 1, "sigma": 0.5, "q": 0.1}),
            json!({"type": "randint", "upper": 7}),
            json!({"type": "choice", "values": [32, "b", 0.5]}),
        ];
        for c in cases {
            let d = raw(c.clone()).unwrap();
            for i in 0..1000 {
                let u = i as f64 / 1000.0;
                let v = d.at(u);
                let x = v.as_f64();
                match d {
                    Dist::Uniform(a, b) => assert!((a..=b).contains(&x.unwrap())),
                    Dist::Loguniform(a, b) => {
                        assert!((a.exp() - 1e-12..=b.exp() + 1e-12).contains(&x.unwrap()))
                    }
                    Dist::Quniform(a, b, q) => {
                        let x = x.unwrap();
                        assert!(x >= a - q / 2.0 && x <= b + q / 2.0, "{x}");
                        assert!(
                            ((x / q) - (x / q).round()).abs() < 1e-9,
                            "{x} not a multiple of {q}"
                        );
                    }
                    Dist::Qloguniform(_, _, q)
                    | Dist::Qnormal(_, _, q)
                    | Dist::Qlognormal(_, _, q) => {
                        let x = x.unwrap();
                        assert!(
                            ((x / q) - (x / q).round()).abs() < 1e-9,
                            "{x} not a multiple of {q}"
                        );
                    }
                    Dist::Lognormal(..) => assert!(x.unwrap() > 0.0),
                    Dist::Normal(..) => assert!(x.unwrap().is_finite()),
                    Dist::Randint(u) => {
                        let n = v.as_i64().expect("randint gives integers");
                        assert!((0..u).contains(&n));
                    }
                    Dist::Choice(ref vs) => assert!(vs.contains(&v)),
                }
            }
            // Round trip through the map form.
            assert_eq!(raw(serde_json::to_value(d.to_raw()).unwrap()).unwrap(), d);
        }
    }

    #[test]
    fn randint_upper_is_exclusive_and_reached_below() {
        let d = Dist::Randint(3);
        let seen: std::collections::BTreeSet<i64> = (0..300)
            .map(|i| d.at(i as f64 / 300.0).as_i64().unwrap())
            .collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn rest_form_is_azures() {
        assert_eq!(
            Dist::Choice(vec![json!(2), json!(5)]).to_rest(),
            json!(["choice", [[2, 5]]])
        );
        assert_eq!(
            Dist::Uniform(0.1, 0.5).to_rest(),
            json!(["uniform", [0.1, 0.5]])
        );
        assert_eq!(Dist::Randint(5).to_rest(), json!(["randint", [5]]));
    }

    #[test]
    fn bad_maps_say_what_is_wrong() {
        let e = raw(json!({"type": "uniform", "min_value": 1})).unwrap_err();
        assert_eq!(e, "type uniform needs `max_value`");
        let e = raw(json!({"type": "unifrom", "min_value": 1, "max_value": 2})).unwrap_err();
        assert!(e.contains("did you mean \"uniform\""), "{e}");
        let e = raw(json!({"type": "choice", "values": [1], "q": 1})).unwrap_err();
        assert!(e.contains("`q` does not go with type choice"), "{e}");
        let e = raw(json!({"type": "uniform", "min_value": 2, "max_value": 1})).unwrap_err();
        assert!(e.contains("less than"), "{e}");
    }

    #[test]
    fn normal_cdf_and_its_inverse_agree() {
        for p in [0.001, 0.02, 0.3, 0.5, 0.77, 0.98, 0.999] {
            assert!((normal_cdf(inverse_normal_cdf(p)) - p).abs() < 1e-6, "{p}");
        }
        assert!((inverse_normal_cdf(0.975) - 1.959964).abs() < 1e-5);
    }
}
