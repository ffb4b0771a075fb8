//! Early termination with Azure ML's rules. An interval is one
//! report of the primary metric; a policy looks at interval `k` of a trial when
//! `k % evaluation_interval == 0` and `k >= delay_evaluation` (an interval of 0 counts as 1).
//! Minimising mirrors maximising (Azure does not document it; the mirror image is our choice).
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A policy as YAML and scripts write it (`type` + its keys; unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evaluation_interval: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_evaluation: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_factor: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncation_percentage: Option<u32>,
    /// Local only (mentioned in Azure's how-to, absent from its schema; never sent to Azure):
    /// finished trials leave the truncation ranking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude_finished_jobs: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub const KINDS: &[&str] = &["bandit", "median_stopping", "truncation_selection"];

impl Policy {
    /// Azure's rules: bandit takes slack_factor XOR slack_amount; truncation a percentage in
    /// 1..=99; each type only its own keys.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind.as_str() {
            "bandit" => match (self.slack_factor, self.slack_amount) {
                (Some(_), Some(_)) => {
                    return Err("bandit takes slack_factor or slack_amount, not both".into())
                }
                (None, None) => return Err("bandit needs slack_factor or slack_amount".into()),
                (Some(f), None) if f <= 0.0 => {
                    return Err(format!("slack_factor must be more than 0, got {f}"))
                }
                (None, Some(a)) if a < 0.0 => {
                    return Err(format!("slack_amount must be 0 or more, got {a}"))
                }
                _ => {}
            },
            "median_stopping" | "truncation_selection" => {
                if self.slack_factor.is_some() || self.slack_amount.is_some() {
                    return Err(format!(
                        "{} takes no slack_factor or slack_amount",
                        self.kind
                    ));
                }
            }
            k => {
                return Err(format!(
                    "`type` must be one of {}, got \"{k}\"{}",
                    KINDS.join(", "),
                    crate::util::did_you_mean(k, KINDS)
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default()
                ))
            }
        }
        if self.kind == "truncation_selection" {
            match self.truncation_percentage {
                Some(p) if (1..=99).contains(&p) => {}
                Some(p) => return Err(format!("truncation_percentage must be 1 to 99, got {p}")),
                None => return Err("truncation_selection needs truncation_percentage".into()),
            }
        } else if self.truncation_percentage.is_some() {
            return Err(format!("{} takes no truncation_percentage", self.kind));
        }
        if self.exclude_finished_jobs && self.kind != "truncation_selection" {
            return Err("exclude_finished_jobs goes with truncation_selection".into());
        }
        Ok(())
    }

    fn applies_at(&self, k: usize) -> bool {
        let every = self.evaluation_interval.max(1) as usize;
        k > 0 && k.is_multiple_of(every) && k >= self.delay_evaluation as usize
    }
}

/// The primary metric's reports of one trial, in order, and whether it still runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trial<'a> {
    pub reports: &'a [f64],
    pub running: bool,
}

/// Evaluates a policy as reports arrive; remembers which intervals it has looked at.
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub policy: Policy,
    pub maximize: bool,
    seen: HashMap<i64, usize>,
}

impl Evaluator {
    pub fn new(policy: Policy, maximize: bool) -> Evaluator {
        Evaluator {
            policy,
            maximize,
            seen: HashMap::new(),
        }
    }

    /// Trials to cancel, with the reason, given every trial's reports so far. Each running
    /// trial is judged at every interval it has reached that the policy applies to — again
    /// whenever any trial reported since the last call, because what the others had at
    /// interval k grows as they catch up (a trial that runs ahead of the others is judged
    /// once they get there, not only when it got there first).
    pub fn decide(&mut self, trials: &BTreeMap<i64, Trial<'_>>) -> Vec<(i64, String)> {
        let total: usize = trials.values().map(|t| t.reports.len()).sum();
        if self.seen.get(&-1) == Some(&total) {
            return Vec::new();
        }
        self.seen.insert(-1, total);
        let mut out = Vec::new();
        for (id, t) in trials {
            if !t.running {
                continue;
            }
            for k in 1..=t.reports.len() {
                if !self.policy.applies_at(k) {
                    continue;
                }
                if let Some(why) = self.judge(*id, k, trials) {
                    out.push((*id, why));
                    break;
                }
            }
        }
        out
    }

    /// `a` better than `b`.
    fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize {
            a > b
        } else {
            a < b
        }
    }

    fn best_of(&self, xs: &[f64]) -> f64 {
        xs.iter()
            .copied()
            .reduce(|a, b| if self.better(b, a) { b } else { a })
            .unwrap_or(f64::NAN)
    }

    /// The verdict on trial `id` at interval `k`: `Some(reason)` to cancel it.
    fn judge(&self, id: i64, k: usize, trials: &BTreeMap<i64, Trial<'_>>) -> Option<String> {
        let me = &trials[&id];
        let mine = self.best_of(&me.reports[..k]);
        let p = &self.policy;
        let dir = if self.maximize { "<" } else { ">" };
        match p.kind.as_str() {
            "bandit" => {
                // The best value reached by interval k among all trials that got there.
                let at_k: Vec<f64> = trials
                    .values()
                    .filter(|t| t.reports.len() >= k)
                    .map(|t| self.best_of(&t.reports[..k]))
                    .collect();
                let best = self.best_of(&at_k);
                let threshold =
                    bandit_threshold(best, p.slack_factor, p.slack_amount, self.maximize);
                self.better(threshold, mine).then(|| {
                    format!(
                        "cancelled by policy: bandit, {} {dir} {} (best {} at interval {k}, slack {})",
                        fmt(mine),
                        fmt(threshold),
                        fmt(best),
                        match (p.slack_factor, p.slack_amount) {
                            (Some(f), _) => format!("factor {f}"),
                            (_, Some(a)) => format!("amount {a}"),
                            _ => String::new(),
                        }
                    )
                })
            }
            "median_stopping" => {
                let mut avgs: Vec<f64> = trials
                    .values()
                    .filter(|t| t.reports.len() >= k)
                    .map(|t| t.reports[..k].iter().sum::<f64>() / k as f64)
                    .collect();
                let m = median(&mut avgs);
                self.better(m, mine).then(|| {
                    format!(
                        "cancelled by policy: median_stopping, best {} {dir} median {} of {} running averages at interval {k}",
                        fmt(mine),
                        fmt(m),
                        avgs.len()
                    )
                })
            }
            "truncation_selection" => {
                // Every trial compared at the same interval k (fair to young trials).
                let mut pop: Vec<(i64, f64)> = trials
                    .iter()
                    .filter(|(_, t)| {
                        t.reports.len() >= k && (t.running || !p.exclude_finished_jobs)
                    })
                    .map(|(i, t)| (*i, t.reports[k - 1]))
                    .collect();
                // Worst first.
                pop.sort_by(|a, b| {
                    if self.better(a.1, b.1) {
                        std::cmp::Ordering::Greater
                    } else if self.better(b.1, a.1) {
                        std::cmp::Ordering::Less
                    } else {
                        a.0.cmp(&b.0).reverse()
                    }
                });
                let pct = p.truncation_percentage.unwrap_or(0) as usize;
                let cut = pop.len() * pct / 100;
                let rank = pop.iter().position(|(i, _)| *i == id)?;
                (rank < cut).then(|| {
                    format!(
                        "cancelled by policy: truncation_selection, {} is in the lowest {pct}% ({} of {} trials) at interval {k}",
                        fmt(me.reports[k - 1]),
                        cut,
                        pop.len()
                    )
                })
            }
            _ => None,
        }
    }
}

/// Bandit's line: maximise → `best / (1 + factor)` or `best - amount`; minimise →
/// `best * (1 + factor)` or `best + amount`.
pub fn bandit_threshold(
    best: f64,
    factor: Option<f64>,
    amount: Option<f64>,
    maximize: bool,
) -> f64 {
    match (factor, amount, maximize) {
        (Some(f), _, true) => best / (1.0 + f),
        (Some(f), _, false) => best * (1.0 + f),
        (None, Some(a), true) => best - a,
        (None, Some(a), false) => best + a,
        _ => best,
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn fmt(x: f64) -> String {
    format!("{}", (x * 1e4).round() / 1e4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(kind: &str) -> Policy {
        Policy {
            kind: kind.into(),
            evaluation_interval: 1,
            ..Default::default()
        }
    }

    fn trials<'a>(v: &[(i64, &'a [f64], bool)]) -> BTreeMap<i64, Trial<'a>> {
        v.iter()
            .map(|(i, r, running)| {
                (
                    *i,
                    Trial {
                        reports: r,
                        running: *running,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn bandit_thresholds_are_the_documented_ones() {
        // Doc: best 0.8, slack_factor 0.2 → 0.66…; slack_amount 0.2 → 0.6.
        assert!((bandit_threshold(0.8, Some(0.2), None, true) - 0.6667).abs() < 1e-4);
        assert!((bandit_threshold(0.8, None, Some(0.2), true) - 0.6).abs() < 1e-12);
        // Minimise mirrored.
        assert!((bandit_threshold(0.5, Some(0.2), None, false) - 0.6).abs() < 1e-12);
        assert!((bandit_threshold(0.5, None, Some(0.2), false) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn bandit_cancels_below_the_line_and_spares_above() {
        let mut p = pol("bandit");
        p.slack_factor = Some(0.2);
        let mut e = Evaluator::new(p, true);
        // best at interval 1 is 0.8: 0.65 < 0.667 is cancelled, 0.7 is not.
        let t = trials(&[(1, &[0.8], true), (2, &[0.65], true), (3, &[0.7], true)]);
        let out = e.decide(&t);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 2);
        assert!(out[0].1.contains("bandit, 0.65 < 0.6667"), "{}", out[0].1);
        // Minimise: best 0.5, factor 0.2 → cancel above 0.6.
        let mut p = pol("bandit");
        p.slack_factor = Some(0.2);
        let mut e = Evaluator::new(p, false);
        let t = trials(&[(1, &[0.5], true), (2, &[0.65], true), (3, &[0.55], true)]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn delay_and_interval_decide_when_the_policy_looks() {
        let mut p = pol("bandit");
        p.slack_amount = Some(0.1);
        p.evaluation_interval = 2;
        p.delay_evaluation = 3;
        let mut e = Evaluator::new(p, true);
        // Intervals 1..3 never judged (k=2 < delay 3, k=1,3 not multiples of 2).
        let t = trials(&[(1, &[0.9, 0.9, 0.9], true), (2, &[0.1, 0.1, 0.1], true)]);
        assert!(e.decide(&t).is_empty());
        // Interval 4 is.
        let t = trials(&[
            (1, &[0.9, 0.9, 0.9, 0.9], true),
            (2, &[0.1, 0.1, 0.1, 0.1], true),
        ]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![2]
        );
        // Nothing new reported: nothing new decided.
        assert!(e.decide(&t).is_empty());
        // A trial ahead of the others is judged when they catch up: trial 3 reached interval
        // 4 with 0.5 when trial 1 had only 2 reports (best at 4: its own 0.5)…
        let mut e = Evaluator::new(e.policy.clone(), true);
        let t = trials(&[(1, &[0.9, 0.9], true), (3, &[0.5, 0.5, 0.5, 0.5], true)]);
        assert!(e.decide(&t).is_empty());
        // …and is cancelled once trial 1 reaches interval 4 with 0.9.
        let t = trials(&[
            (1, &[0.9, 0.9, 0.9, 0.9], true),
            (3, &[0.5, 0.5, 0.5, 0.5, 0.5], true),
        ]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn median_stopping_compares_best_with_the_median_of_running_averages() {
        let p = pol("median_stopping");
        let mut e = Evaluator::new(p, true);
        // Averages at interval 2: 0.75, 0.55, 0.35 → median 0.55. Trial 3's best 0.4 < 0.55.
        let t = trials(&[
            (1, &[0.7, 0.8], false),
            (2, &[0.5, 0.6], true),
            (3, &[0.3, 0.4], true),
        ]);
        // Interval 1: averages 0.7, 0.5, 0.3 → median 0.5; trial 3 (0.3) is already out.
        let out = e.decide(&t);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3]);
        assert!(out[0].1.contains("median_stopping"), "{}", out[0].1);
        // Minimise mirrored: lower is better, trial 1 is the worst.
        let mut e = Evaluator::new(pol("median_stopping"), false);
        let t = trials(&[
            (1, &[0.7, 0.8], true),
            (2, &[0.5, 0.6], true),
            (3, &[0.3, 0.4], false),
        ]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn truncation_cuts_the_lowest_percentage_at_equal_intervals() {
        let mut p = pol("truncation_selection");
        p.truncation_percentage = Some(25);
        let mut e = Evaluator::new(p.clone(), true);
        // Four trials at interval 1: the lowest 25% (one) goes.
        let t = trials(&[
            (1, &[0.9], true),
            (2, &[0.2], true),
            (3, &[0.5], true),
            (4, &[0.7], true),
        ]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![2]
        );
        // A young trial is ranked at its own interval against what older ones had then: at
        // interval 1 trial 5's 0.3 is the lowest of five → 25% of 5 = 1 → it goes, although
        // trial 2 has 0.95 at interval 2.
        let mut e = Evaluator::new(p.clone(), true);
        let t = trials(&[
            (1, &[0.9, 0.9], false),
            (2, &[0.35, 0.95], false),
            (3, &[0.5, 0.5], false),
            (4, &[0.7, 0.7], false),
            (5, &[0.3], true),
        ]);
        assert_eq!(
            e.decide(&t).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![5]
        );
        // exclude_finished_jobs: only trial 5 in the ranking; 25% of 1 = 0 → spared.
        let mut q = p;
        q.exclude_finished_jobs = true;
        assert!(Evaluator::new(q, true).decide(&t).is_empty());
    }

    #[test]
    fn validation_is_azures() {
        let mut p = pol("bandit");
        assert!(p
            .validate()
            .unwrap_err()
            .contains("needs slack_factor or slack_amount"));
        p.slack_factor = Some(0.1);
        p.slack_amount = Some(0.1);
        assert!(p.validate().unwrap_err().contains("not both"));
        let mut t = pol("truncation_selection");
        t.truncation_percentage = Some(100);
        assert!(t.validate().unwrap_err().contains("1 to 99"));
        assert!(pol("medain_stopping")
            .validate()
            .unwrap_err()
            .contains("did you mean \"median_stopping\""));
    }
}
