//! What runs report and are grouped by: params, tags, metric histories (of one run, or of all
//! the children of a parent in one query, as early-termination policies compare trials), and
//! experiments (name → id, as MLflow has them).
use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{all, db_err, exec, one, Experiment, Metric, Store};
use crate::error::{LabError, LabResult};

/// Experiment 0, "Default", as MLflow has it: where every run without an experiment is. It
/// is not a row — a run whose `experiment_id` is NULL belongs to it — so it exists in every
/// store, old ones included, unless an experiment of the store already has its id or name.
pub fn default_experiment() -> Experiment {
    Experiment {
        id: 0,
        name: "Default".into(),
        created: 0.0,
        artifact_location: String::new(),
        lifecycle: "active".into(),
        updated: 0.0,
    }
}

fn experiment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Experiment> {
    Ok(Experiment {
        id: r.get(0)?,
        name: r.get(1)?,
        created: r.get(2)?,
        artifact_location: r.get(3)?,
        lifecycle: r.get(4)?,
        updated: r.get::<_, Option<f64>>(5)?.unwrap_or(r.get(2)?),
    })
}

impl Store {
    pub fn add_metrics(&mut self, id: i64, ms: &[Metric]) -> LabResult<()> {
        self.log_batch(id, ms, &[], &[]).map(|_| ())
    }

    /// `add_metrics` for points read from the job's metrics file (`LABHOST_METRICS`).
    pub fn add_file_metrics(&mut self, id: i64, ms: &[Metric]) -> LabResult<()> {
        let tx = self.write()?;
        insert_metrics(&tx, id, ms, true)?;
        tx.commit().map_err(db_err)
    }

    /// Metric history of a run in step order (one name, or all).
    pub fn metrics(&self, id: i64, name: Option<&str>) -> LabResult<Vec<Metric>> {
        all(&self.conn, "SELECT name, value, step, ts FROM metrics WHERE run_id = ?1 AND (?2 IS NULL OR name = ?2) AND attempt = (SELECT attempt FROM runs WHERE id = ?1) ORDER BY name, step, ts", params![id, name], |r| {
                Ok(Metric {
                    name: r.get(0)?,
                    value: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                    step: r.get(2)?,
                    ts: r.get(3)?,
                })
            }).map_err(db_err)
    }

    /// One metric's history of a run as `(value, step, ts)` in step order, then time order
    /// within a step: what `metrics/get-history` serves (no name copied per point).
    ///
    /// The index gives step order; the few ties are ordered here, because asking SQLite for
    /// `ORDER BY step, ts` makes it sort every point (0.9 s instead of 0.35 s at 1M points).
    pub fn metric_points(&self, id: i64, name: &str) -> LabResult<Vec<(f64, i64, f64)>> {
        let mut pts: Vec<(f64, i64, f64)> = all(
            &self.conn,
            "SELECT value, step, ts FROM metrics WHERE run_id = ?1 AND name = ?2 AND attempt = (SELECT attempt FROM runs WHERE id = ?1) ORDER BY step",
            params![id, name],
            |r| {
                Ok((
                    r.get::<_, Option<f64>>(0)?.unwrap_or(f64::NAN),
                    r.get(1)?,
                    r.get(2)?,
                ))
            },
        )
        .map_err(db_err)?;
        // Stable, and linear on input that is already in order.
        pts.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)));
        Ok(pts)
    }

    /// The history of metric `name` of every child of `parent`, in one query: child id →
    /// points in step order. Children that reported nothing are absent.
    pub fn children_metrics(
        &self,
        parent: i64,
        name: &str,
    ) -> LabResult<BTreeMap<i64, Vec<Metric>>> {
        let rows: Vec<(i64, Metric)> = all(
            &self.conn,
            "SELECT m.run_id, m.value, m.step, m.ts FROM runs r JOIN metrics m ON m.run_id = r.id
             WHERE r.parent_id = ?1 AND m.name = ?2 AND m.attempt = r.attempt ORDER BY m.run_id, m.step, m.ts",
            params![parent, name],
            |r| {
                Ok((
                    r.get(0)?,
                    Metric {
                        name: name.to_string(),
                        value: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                        step: r.get(2)?,
                        ts: r.get(3)?,
                    },
                ))
            },
        )
        .map_err(db_err)?;
        let mut out: BTreeMap<i64, Vec<Metric>> = BTreeMap::new();
        for (id, m) in rows {
            out.entry(id).or_default().push(m);
        }
        Ok(out)
    }

    /// The best value of metric `name` of every child of `parent` (max or min), in one
    /// aggregate query: what a sweep's progress shows, without reading whole histories.
    pub fn children_best(
        &self,
        parent: i64,
        name: &str,
        maximize: bool,
    ) -> LabResult<BTreeMap<i64, f64>> {
        let agg = if maximize { "MAX" } else { "MIN" };
        let rows: Vec<(i64, f64)> = all(
            &self.conn,
            &format!(
                "SELECT m.run_id, {agg}(m.value) FROM runs r JOIN metrics m ON m.run_id = r.id
                 WHERE r.parent_id = ?1 AND m.name = ?2 AND m.attempt = r.attempt AND m.value = m.value GROUP BY m.run_id"
            ),
            params![parent, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }

    pub fn params(&self, id: i64) -> LabResult<Vec<(String, Value)>> {
        all(
            &self.conn,
            "SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key",
            [id],
            |r| {
                let v: String = r.get(1)?;
                Ok((
                    r.get(0)?,
                    serde_json::from_str(&v).unwrap_or(Value::String(v)),
                ))
            },
        )
        .map_err(db_err)
    }

    /// The params of every child of `parent` at once (a sweep's page of 10,000 trials asked
    /// run by run).
    pub fn children_params(&self, parent: i64) -> LabResult<HashMap<i64, Vec<(String, Value)>>> {
        let rows = all(
            &self.conn,
            "SELECT p.run_id, p.key, p.value FROM runs r JOIN params p ON p.run_id = r.id
             WHERE r.parent_id = ?1 ORDER BY p.run_id, p.key",
            [parent],
            |r| {
                let v: String = r.get(2)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    serde_json::from_str(&v).unwrap_or(Value::String(v)),
                ))
            },
        )
        .map_err(db_err)?;
        let mut out: HashMap<i64, Vec<(String, Value)>> = HashMap::new();
        for (id, k, v) in rows {
            out.entry(id).or_default().push((k, v));
        }
        Ok(out)
    }

    /// Tag `key` of every child of `parent` that has it.
    pub fn children_tag(&self, parent: i64, key: &str) -> LabResult<HashMap<i64, String>> {
        let rows = all(
            &self.conn,
            "SELECT t.run_id, t.value FROM runs r JOIN tags t ON t.run_id = r.id AND t.key = ?2
             WHERE r.parent_id = ?1",
            params![parent, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }

    pub fn tags(&self, id: i64) -> LabResult<Vec<(String, String)>> {
        all(
            &self.conn,
            "SELECT key, value FROM tags WHERE run_id = ?1 ORDER BY key",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)
    }

    /// Sets a tag (secrets masked).
    pub fn set_tag(&mut self, id: i64, key: &str, value: &str) -> LabResult<()> {
        exec(
            &self.conn,
            "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, key, crate::redact::apply(value)],
        )
        .map_err(db_err)
        .map(|_| ())
    }

    /// Removes a tag.
    pub fn delete_tag(&mut self, id: i64, key: &str) -> LabResult<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM tags WHERE run_id = ?1 AND key = ?2",
                params![id, key],
            )
            .map_err(db_err)?;
        Ok(n > 0)
    }

    /// MLflow's log-batch in one transaction: params (immutable: logging a different value
    /// for a key that has one is an error and nothing is written), tags, metrics. Returns
    /// `Err(key)` naming a param whose value would change.
    pub fn log_batch(
        &mut self,
        id: i64,
        ms: &[Metric],
        ps: &[(String, String)],
        tags: &[(String, String)],
    ) -> LabResult<Result<(), String>> {
        // IMMEDIATE: it reads (params, the attempt) before it writes, and a deferred
        // transaction whose snapshot went stale meanwhile fails at once with SQLITE_BUSY.
        let tx = self.write()?;
        for (k, v) in ps {
            let old: Option<String> = tx
                .query_row(
                    "SELECT value FROM params WHERE run_id = ?1 AND key = ?2",
                    params![id, k],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let new = Value::String(crate::redact::apply(v)).to_string();
            match old {
                Some(o) if o != new && !same_param(&o, v) => return Ok(Err(k.clone())),
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                        params![id, k, new],
                    )
                    .map_err(db_err)?;
                }
            }
        }
        for (k, v) in tags {
            tx.execute(
                "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?1, ?2, ?3)",
                params![id, k, crate::redact::apply(v)],
            )
            .map_err(db_err)?;
        }
        insert_metrics(&tx, id, ms, false)?;
        tx.commit().map_err(db_err)?;
        Ok(Ok(()))
    }

    /// The points of a run's current attempt in rows `after < rowid <= upto` (`upto`: a
    /// [`Self::metrics_high_water`] read before), oldest first, at most `limit`, each with
    /// its row id: what a live page appends. It walks the table's rows from `after` (not the
    /// run's index), so it costs what every run added since, however long the run's history.
    pub fn metrics_since(
        &self,
        id: i64,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> LabResult<Vec<(i64, Metric)>> {
        all(
            &self.conn,
            "SELECT rowid, name, value, step, ts FROM metrics WHERE rowid > ?2 AND rowid <= ?3 AND +run_id = ?1
                 AND attempt = (SELECT attempt FROM runs WHERE id = ?1) ORDER BY rowid LIMIT ?4",
            params![id, after, upto, limit as i64],
            |r| {
                Ok((
                    r.get(0)?,
                    Metric {
                        name: r.get(1)?,
                        value: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                        step: r.get(3)?,
                        ts: r.get(4)?,
                    },
                ))
            },
        )
        .map_err(db_err)
    }

    /// The newest metric row's id (0 when there is none): where a live page's appends start.
    pub fn metrics_high_water(&self) -> LabResult<i64> {
        self.conn
            .query_row("SELECT coalesce(max(rowid), 0) FROM metrics", [], |r| {
                r.get(0)
            })
            .map_err(db_err)
    }

    /// The latest value of every metric of a run (highest step, then newest).
    ///
    /// Index seeks only: a name is found by seeking past the one before, and its latest
    /// point from the top of its steps, so a run with a metric of a million points answers
    /// as fast as one with five.
    pub fn latest_metrics(&self, id: i64) -> LabResult<Vec<Metric>> {
        let attempt: Option<i64> = one(
            &self.conn,
            "SELECT attempt FROM runs WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        match attempt {
            Some(attempt) => self.latest_metrics_of(id, attempt),
            None => Ok(Vec::new()),
        }
    }

    /// The latest value of each metric of attempt `attempt` of run `id` (the run's current
    /// one, which its caller has read).
    pub fn latest_metrics_of(&self, id: i64, attempt: i64) -> LabResult<Vec<Metric>> {
        let mut next_name = self
            .conn
            .prepare_cached(
                "SELECT name FROM metrics WHERE run_id = ?1 AND name > ?2 ORDER BY name LIMIT 1",
            )
            .map_err(db_err)?;
        let mut latest = self
            .conn
            .prepare_cached(
                "SELECT value, step, ts FROM metrics WHERE run_id = ?1 AND name = ?2 AND attempt = ?3
                     AND step = (SELECT step FROM metrics WHERE run_id = ?1 AND name = ?2 AND attempt = ?3
                                 ORDER BY step DESC LIMIT 1)
                 ORDER BY ts DESC, rowid DESC LIMIT 1",
            )
            .map_err(db_err)?;
        let mut out = Vec::new();
        let mut after = String::new();
        while let Some(name) = next_name
            .query_row(params![id, after], |r| r.get::<_, String>(0))
            .optional()
            .map_err(db_err)?
        {
            let got = latest
                .query_row(params![id, name, attempt], |r| {
                    Ok((
                        r.get::<_, Option<f64>>(0)?.unwrap_or(f64::NAN),
                        r.get(1)?,
                        r.get(2)?,
                    ))
                })
                .optional()
                .map_err(db_err)?;
            if let Some((value, step, ts)) = got {
                out.push(Metric {
                    name: name.clone(),
                    value,
                    step,
                    ts,
                });
            }
            after = name;
        }
        Ok(out)
    }

    /// The id of experiment `name`, created if missing.
    pub fn experiment_id(&mut self, name: &str) -> LabResult<i64> {
        if name.trim().is_empty() {
            return Err(LabError::new(
                "jobs.invalid_spec",
                "an experiment needs a name",
            ));
        }
        let tx = self.write()?;
        exec(
            &tx,
            "INSERT OR IGNORE INTO experiments (name, created) VALUES (?1, ?2)",
            params![name, crate::clock::unix()],
        )
        .map_err(db_err)?;
        let id = one(
            &tx,
            "SELECT id FROM experiments WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(id)
    }

    /// The experiment called `name`, if there is one.
    pub fn experiment_by_name(&self, name: &str) -> LabResult<Option<Experiment>> {
        one(
            &self.conn,
            "SELECT id, name, created, artifact_location, lifecycle, updated FROM experiments WHERE name = ?1",
            [name],
            experiment_row,
        )
        .optional()
        .map_err(db_err)
        .map(|e| e.or_else(|| (name == "Default").then(default_experiment)))
    }

    pub fn experiment(&self, id: i64) -> LabResult<Experiment> {
        one(
            &self.conn,
            "SELECT id, name, created, artifact_location, lifecycle, updated FROM experiments WHERE id = ?1",
            [id],
            experiment_row,
        )
        .optional()
        .map_err(db_err)?
        .or_else(|| (id == 0).then(default_experiment))
        .ok_or_else(|| LabError::new("jobs.not_found", format!("no experiment with id {id}")))
    }

    /// Every experiment, oldest first: "Default" (id 0) first.
    pub fn experiments(&self) -> LabResult<Vec<Experiment>> {
        let mut es = all(
            &self.conn,
            "SELECT id, name, created, artifact_location, lifecycle, updated FROM experiments ORDER BY id",
            [],
            experiment_row,
        )
        .map_err(db_err)?;
        if !es.iter().any(|e| e.id == 0 || e.name == "Default") {
            es.insert(0, default_experiment());
        }
        Ok(es)
    }
}

/// Whether `new` (a client's text, as MLflow clients send every param) says the same as the
/// stored value `old` (JSON: a sweep stores its parameters typed): the same text, or the
/// same number (`0.39` and `"0.39"`, `1` and `"1.0"`), or the same boolean (`true` and
/// Python's `"True"`). A trial script that logs its own arguments is not changing them.
/// Inserts points of run `id`'s current attempt.
fn insert_metrics(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    ms: &[Metric],
    from_file: bool,
) -> LabResult<()> {
    if ms.is_empty() {
        return Ok(());
    }
    // Points belong to the attempt that is running now.
    let attempt: i64 = one(tx, "SELECT attempt FROM runs WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .map_err(db_err)?;
    let mut st = tx
        .prepare_cached("INSERT INTO metrics (run_id, name, value, step, ts, attempt, from_file) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .map_err(db_err)?;
    for m in ms {
        let ts = if m.ts > 0.0 {
            m.ts
        } else {
            crate::clock::unix()
        };
        st.execute(params![id, m.name, m.value, m.step, ts, attempt, from_file])
            .map_err(db_err)?;
    }
    Ok(())
}

fn same_param(old: &str, new: &str) -> bool {
    match serde_json::from_str::<Value>(old) {
        Ok(Value::String(s)) => s == new,
        Ok(Value::Number(n)) => match (n.as_f64(), new.trim().parse::<f64>()) {
            (Some(a), Ok(b)) => a == b || (a.is_nan() && b.is_nan()),
            _ => false,
        },
        Ok(Value::Bool(b)) => new.eq_ignore_ascii_case(if b { "true" } else { "false" }),
        Ok(other) => other == new,
        Err(_) => old == new,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::job;
    use super::super::*;

    fn m(name: &str, value: f64, step: i64) -> Metric {
        Metric {
            name: name.into(),
            value,
            step,
            ts: 0.0,
        }
    }

    #[test]
    fn childrens_params_and_a_tag_come_at_once_per_child() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (sweep, _) = s.create(&job("sweep")).unwrap();
        let child = |s: &mut Store, name: &str, lr: f64, gpus: Option<&str>| {
            s.create(&NewRun {
                parent_id: Some(sweep.id),
                params: vec![
                    ("lr".into(), serde_json::json!(lr)),
                    ("act".into(), serde_json::json!("relu")),
                ],
                tags: gpus
                    .map(|g| vec![("labhost.gpus".to_string(), g.to_string())])
                    .unwrap_or_default(),
                ..job(name)
            })
            .unwrap()
            .0
        };
        let a = child(&mut s, "a", 0.1, Some("0,1"));
        let b = child(&mut s, "b", 0.01, None);
        let other = s.create(&job("other")).unwrap().0;
        s.create(&NewRun {
            parent_id: Some(other.id),
            params: vec![("lr".into(), serde_json::json!(9))],
            ..job("elsewhere")
        })
        .unwrap();
        let p = s.children_params(sweep.id).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[&a.id], s.params(a.id).unwrap());
        assert_eq!(p[&b.id], s.params(b.id).unwrap());
        let g = s.children_tag(sweep.id, "labhost.gpus").unwrap();
        assert_eq!(g.get(&a.id).map(String::as_str), Some("0,1"));
        assert!(!g.contains_key(&b.id));
    }

    #[test]
    fn metrics_history_and_children() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (sweep, _) = s
            .create(&NewRun {
                kind: RunKind::Sweep,
                ..job("sweep")
            })
            .unwrap();
        let (trial, _) = s
            .create(&NewRun {
                kind: RunKind::Trial,
                parent_id: Some(sweep.id),
                ..job("t0")
            })
            .unwrap();
        s.add_metrics(
            trial.id,
            &[m("loss", 0.5, 2), m("loss", 0.9, 1), m("acc", 0.7, 1)],
        )
        .unwrap();
        let loss: Vec<(i64, f64)> = s
            .metrics(trial.id, Some("loss"))
            .unwrap()
            .into_iter()
            .map(|m| (m.step, m.value))
            .collect();
        assert_eq!(loss, vec![(1, 0.9), (2, 0.5)]);
        assert_eq!(s.metrics(trial.id, None).unwrap().len(), 3);
        let kids = s.list(None, Some(sweep.id), 10).unwrap();
        assert_eq!(
            kids.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![trial.id]
        );
        assert_eq!(kids[0].kind, RunKind::Trial);
        assert_eq!(
            s.list(Some(RunStatus::Queued), None, 1).unwrap()[0].id,
            trial.id,
            "newest first"
        );
        s.set_tag(trial.id, "fold", "0").unwrap();
        assert_eq!(
            s.tags(trial.id).unwrap(),
            vec![("fold".to_string(), "0".to_string())]
        );
    }

    #[test]
    fn the_latest_point_and_searches_by_it_take_the_current_attempt() {
        use crate::store::search::{parse_order, Filter};
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, _) = s.create(&job("a")).unwrap();
        let (b, _) = s.create(&job("b")).unwrap();
        let at = |name: &str, value: f64, step: i64, ts: f64| Metric {
            name: name.into(),
            value,
            step,
            ts,
        };
        // Highest step wins, then the newest at that step; the order written does not matter.
        s.add_metrics(
            a.id,
            &[
                at("loss", 1.0, 3, 6.0),
                at("loss", 2.0, 3, 5.0),
                at("loss", 3.0, 2, 9.0),
                at("acc", 0.5, 1, 1.0),
            ],
        )
        .unwrap();
        let latest: Vec<(String, f64)> = s
            .latest_metrics(a.id)
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.value))
            .collect();
        assert_eq!(latest, vec![("acc".into(), 0.5), ("loss".into(), 1.0)]);
        // b's first attempt reported loss 0.1; its second reports 5.0: only that one counts.
        s.add_metrics(b.id, &[at("loss", 0.1, 9, 1.0), at("old", 1.0, 1, 1.0)])
            .unwrap();
        s.conn
            .execute("UPDATE runs SET attempt = 1 WHERE id = ?1", [b.id])
            .unwrap();
        s.add_metrics(b.id, &[at("loss", 5.0, 1, 2.0)]).unwrap();
        let latest = s.latest_metrics(b.id).unwrap();
        assert_eq!(latest.len(), 1, "{latest:?}");
        assert_eq!((latest[0].name.as_str(), latest[0].value), ("loss", 5.0));
        assert!(s.latest_metrics(999).unwrap().is_empty());
        // A search sorts and filters by the same values.
        let order = parse_order(&["metrics.loss ASC".to_string()]).unwrap();
        let (found, next) = s
            .search_runs(&[], &Filter::parse("").unwrap(), &order, 0, 10)
            .unwrap();
        let ids: Vec<i64> = found.iter().map(|f| f.run.id).collect();
        assert_eq!((ids, next), (vec![a.id, b.id], None));
        let (found, _) = s
            .search_runs(&[], &Filter::parse("metrics.loss > 2").unwrap(), &[], 0, 10)
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].run.id, b.id);
        // The page's runs come back whole: every metric, not only the one sorted by.
        let (found, _) = s
            .search_runs(&[], &Filter::parse("metrics.loss < 2").unwrap(), &[], 0, 10)
            .unwrap();
        assert_eq!(found[0].metrics.len(), 2, "{:?}", found[0].metrics);
        // Unsorted pages, newest first, with the offset of the next.
        let all = Filter::parse("").unwrap();
        let (p1, n1) = s.search_runs(&[], &all, &[], 0, 1).unwrap();
        let (p2, n2) = s.search_runs(&[], &all, &[], 1, 1).unwrap();
        assert_eq!(
            (p1[0].run.id, n1, p2[0].run.id, n2),
            (b.id, Some(1), a.id, None)
        );
        let (p, n) = s.search_runs(&[], &all, &[], 0, usize::MAX).unwrap();
        assert_eq!((p.len(), n), (2, None));
    }

    #[test]
    fn every_childs_history_of_one_metric_in_one_query() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (sweep, _) = s.create(&job("sweep")).unwrap();
        let (other, _) = s.create(&job("other")).unwrap();
        let mut trials = Vec::new();
        for i in 0..3 {
            let (r, _) = s
                .create(&NewRun {
                    kind: RunKind::Trial,
                    parent_id: Some(sweep.id),
                    ..job(&format!("t{i}"))
                })
                .unwrap();
            trials.push(r.id);
        }
        s.add_metrics(
            trials[0],
            &[m("acc", 0.5, 2), m("acc", 0.4, 1), m("loss", 3.0, 1)],
        )
        .unwrap();
        s.add_metrics(trials[2], &[m("acc", 0.9, 1)]).unwrap();
        s.add_metrics(other.id, &[m("acc", 0.1, 1)]).unwrap();
        let h = s.children_metrics(sweep.id, "acc").unwrap();
        assert_eq!(
            h.keys().copied().collect::<Vec<_>>(),
            vec![trials[0], trials[2]]
        );
        let vals: Vec<(i64, f64)> = h[&trials[0]].iter().map(|m| (m.step, m.value)).collect();
        assert_eq!(vals, vec![(1, 0.4), (2, 0.5)]);
        assert!(s.children_metrics(other.id, "acc").unwrap().is_empty());
        // Each child's best, by the goal, in one aggregate.
        let best = s.children_best(sweep.id, "acc", true).unwrap();
        assert_eq!(
            best.into_iter().collect::<Vec<_>>(),
            vec![(trials[0], 0.5), (trials[2], 0.9)]
        );
        let worst = s.children_best(sweep.id, "acc", false).unwrap();
        assert_eq!(worst[&trials[0]], 0.4);
        // A NaN report (a diverged loss) is kept, and does not sink the batch it came in;
        // it is never anyone's best.
        s.add_metrics(
            trials[1],
            &[m("acc", 0.3, 1), m("acc", f64::NAN, 2), m("acc", 0.2, 3)],
        )
        .unwrap();
        let h = s.metrics(trials[1], Some("acc")).unwrap();
        assert_eq!(h.len(), 3);
        assert!(h[1].value.is_nan() && h[0].value == 0.3 && h[2].value == 0.2);
        assert_eq!(
            s.children_best(sweep.id, "acc", true).unwrap()[&trials[1]],
            0.3
        );
    }

    #[test]
    fn experiments_are_named_once_and_runs_belong_to_them() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let a = s.experiment_id("speech").unwrap();
        assert_eq!(s.experiment_id("speech").unwrap(), a);
        let b = s.experiment_id("vision").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.experiment_by_name("speech").unwrap().unwrap().id, a);
        assert!(s.experiment_by_name("nope").unwrap().is_none());
        // MLflow's experiment 0, "Default", is there in every store.
        let names: Vec<String> = s
            .experiments()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["Default", "speech", "vision"]);
        assert_eq!(s.experiment(0).unwrap().name, "Default");
        assert_eq!(s.experiment_by_name("Default").unwrap().unwrap().id, 0);
        let (r, _) = s
            .create(&NewRun {
                experiment_id: Some(b),
                ..job("r")
            })
            .unwrap();
        assert_eq!(s.get(r.id).unwrap().experiment_id, Some(b));
        assert_eq!(s.experiment(b).unwrap().name, "vision");
        assert!(s.experiment_id(" ").is_err());
    }
}
