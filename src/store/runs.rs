//! Recording runs and reading them back: create (with idempotency keys, dependencies, params
//! and tags), get, list, cancel with a reason, the event log, and run folders.
use std::path::Path;

use rusqlite::{params, OptionalExtension};

use super::{all, db_err, event, exec, one, NewRun, Run, RunStatus, Store};
use crate::error::{LabError, LabResult};

pub(super) const RUN_COLS: &str = "id, parent_id, kind, name, key, spec, status, priority, attempt, max_retries, host, pid, exit_code, error, cancel_reason, run_dir, created, started, ended, experiment_id, leader_start, cgroup, lifecycle, retries";

pub(super) fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let spec: String = r.get(5)?;
    Ok(Run {
        id: r.get(0)?,
        parent_id: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        key: r.get(4)?,
        spec: serde_json::from_str(&spec).unwrap_or_default(),
        status: r.get(6)?,
        priority: r.get(7)?,
        attempt: r.get(8)?,
        max_retries: r.get(9)?,
        host: r.get(10)?,
        pid: r.get(11)?,
        exit_code: r.get(12)?,
        error: r.get(13)?,
        cancel_reason: r.get(14)?,
        run_dir: r.get(15)?,
        created: r.get(16)?,
        started: r.get(17)?,
        ended: r.get(18)?,
        experiment_id: r.get(19)?,
        leader_start: r.get(20)?,
        cgroup: r.get(21)?,
        deleted: r.get::<_, String>(22)? == super::mlflow::DELETED,
        retries: r.get(23)?,
    })
}

pub(super) fn get_tx(c: &rusqlite::Connection, id: i64) -> LabResult<Run> {
    one(
        c,
        &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
        [id],
        run_row,
    )
    .optional()
    .map_err(db_err)?
    .ok_or_else(|| LabError::new("jobs.not_found", format!("no job with id {id}")))
}

/// `runs/<id>/` and `runs/<id>/outputs/` (two mkdirs in the common case).
fn make_run_dir(dir: &Path) -> std::io::Result<()> {
    let mk = |d: &Path| match std::fs::create_dir(d) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    };
    match mk(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        other => other?,
    }
    mk(&dir.join("outputs"))
}

/// Makes a run's folder (`runs/<id>/`, `outputs/`), its empty logs and its `spec.json` (the
/// masked spec, a copy of the database row for people and tools) unless they exist. Both the
/// submitter and the host that runs the job call it, so a submitter that died right after its
/// commit leaves no run without a folder.
pub fn ensure_run_dir(run: &Run) -> LabResult<()> {
    let dir = Path::new(&run.run_dir);
    make_run_dir(dir)
        .map_err(|e| crate::error::io_err("jobs", "cannot create run folder", dir, &e))?;
    // The logs too: creating files is the slow part of a short job, and the submitter does it
    // here, off the path from one job to the next.
    let spec = serde_json::to_string_pretty(&run.spec).unwrap_or_default();
    for (name, text) in [
        ("stdout.log", None),
        ("stderr.log", None),
        ("spec.json", Some(&spec)),
    ] {
        let p = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(mut f) => {
                if let Some(text) = text {
                    std::io::Write::write_all(&mut f, text.as_bytes())
                        .map_err(|e| crate::error::io_err("jobs", "cannot write", &p, &e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(crate::error::io_err("jobs", "cannot write", &p, &e)),
        }
    }
    Ok(())
}

impl Store {
    /// Records a new queued run (and its folder `runs/<id>/` with `spec.json`); with a `key`
    /// that exists already, returns that run instead: `(run, created)`.
    pub fn create(&mut self, n: &NewRun) -> LabResult<(Run, bool)> {
        let mut out = self.create_many(std::slice::from_ref(n))?;
        Ok(out.remove(0))
    }

    /// `create` for many runs in one transaction (a pool submits thousands at once); all or
    /// none are recorded.
    pub fn create_many(&mut self, runs: &[NewRun]) -> LabResult<Vec<(Run, bool)>> {
        let out = self.insert_many(runs)?;
        for (r, created) in &out {
            if *created {
                ensure_run_dir(r)?;
            }
        }
        Ok(out)
    }

    /// The database half of `create_many`: the rows, without the run folders (the caller makes
    /// them with `ensure_run_dir` once it no longer holds the connection).
    pub fn insert_many(&mut self, runs: &[NewRun]) -> LabResult<Vec<(Run, bool)>> {
        let state = self.state.clone();
        let tx = self.write()?;
        let mut out = Vec::with_capacity(runs.len());
        for n in runs {
            out.push(create_tx(&tx, &state, n)?);
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Opens a record run: a run the queue never runs (a sweep, a cron firing) that the
    /// process driving it marks running now and closes with [`Store::close_record`]. With a
    /// `key` that exists already, returns that run (a sweep resumed): `(run, created)`.
    /// `host` is the process driving it (so `labhost resume` takes up only records whose
    /// driver died).
    pub fn open_record(&mut self, n: &NewRun, host: Option<&str>) -> LabResult<(Run, bool)> {
        debug_assert!(n.kind.is_record());
        let state = self.state.clone();
        let tx = self.write()?;
        let (run, created) = create_tx(&tx, &state, n)?;
        exec(
            &tx,
            "UPDATE runs SET host = ?1 WHERE id = ?2",
            params![host, run.id],
        )
        .map_err(db_err)?;
        if run.status == RunStatus::Queued || (!created && !run.status.is_finished()) {
            exec(
                &tx,
                "UPDATE runs SET status = 'running', started = COALESCE(started, ?1), ended = NULL WHERE id = ?2",
                params![crate::clock::unix(), run.id],
            )
            .map_err(db_err)?;
            event(
                &tx,
                run.id,
                RunStatus::Running,
                if created { "" } else { "resumed" },
            )?;
        } else if !created {
            // A finished record taken up again (a sweep run again after it ended).
            exec(
                &tx,
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL WHERE id = ?1",
                [run.id],
            )
            .map_err(db_err)?;
            event(&tx, run.id, RunStatus::Running, "resumed")?;
        }
        let run = get_tx(&tx, run.id)?;
        tx.commit().map_err(db_err)?;
        if created {
            ensure_run_dir(&run)?;
        }
        Ok((run, created))
    }

    /// Renames a run.
    pub fn rename(&mut self, id: i64, name: &str) -> LabResult<()> {
        exec(
            &self.conn,
            "UPDATE runs SET name = ?1 WHERE id = ?2",
            params![name, id],
        )
        .map_err(db_err)?;
        Ok(())
    }

    /// Closes a record run with its final status.
    pub fn close_record(
        &mut self,
        id: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "UPDATE runs SET status = ?1, ended = ?2, error = ?3 WHERE id = ?4",
            params![
                status,
                crate::clock::unix(),
                error.map(crate::redact::apply),
                id
            ],
        )
        .map_err(db_err)?;
        event(&tx, id, status, error.unwrap_or(""))?;
        tx.commit().map_err(db_err)
    }

    /// Records a run that happened elsewhere (a study's told trial) as finished with `status`,
    /// with its params and metrics, in one transaction.
    pub fn record_finished(
        &mut self,
        n: &NewRun,
        status: RunStatus,
        metrics: &[super::Metric],
    ) -> LabResult<Run> {
        let state = self.state.clone();
        let tx = self.write()?;
        let (run, _) = create_tx(&tx, &state, n)?;
        let now = crate::clock::unix();
        exec(
            &tx,
            "UPDATE runs SET status = ?1, started = ?2, ended = ?2 WHERE id = ?3",
            params![status, now, run.id],
        )
        .map_err(db_err)?;
        for m in metrics {
            exec(
                &tx,
                "INSERT INTO metrics (run_id, name, value, step, ts, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run.id, m.name, m.value, m.step, now, run.attempt],
            )
            .map_err(db_err)?;
        }
        event(&tx, run.id, status, "")?;
        let run = get_tx(&tx, run.id)?;
        tx.commit().map_err(db_err)?;
        Ok(run)
    }

    /// Moves the runs keyed `key` or `key/…` out of the way (their keys get `~<id>`), so a
    /// new run can take the key: `--rerun` of a sweep. Returns how many moved.
    pub fn retire_key(&mut self, key: &str) -> LabResult<usize> {
        let tx = self.write()?;
        let n = tx
            .execute(
                "UPDATE runs SET key = key || '~' || id WHERE key = ?1 OR substr(key, 1, length(?1) + 1) = ?1 || '/'",
                [key],
            )
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n)
    }

    pub fn get(&self, id: i64) -> LabResult<Run> {
        get_tx(&self.conn, id)
    }

    /// Cancels a run, recording `reason` (shown by `labhost jobs` and `labhost status`; e.g.
    /// "cancelled by policy: bandit, 0.41 < 0.66 at interval 4"). A queued run is cancelled
    /// at once. A leased or running one only gets the request: its host kills its processes
    /// and then records `cancelled` (so "cancelled" always means "nothing of it runs"). Returns
    /// the run's status after: `cancelled`, the status it ended with, or (asked) its current
    /// one.
    pub fn cancel(&mut self, id: i64, reason: &str) -> LabResult<RunStatus> {
        let tx = self.write()?;
        let status: RunStatus = one(&tx, "SELECT status FROM runs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| LabError::new("jobs.not_found", format!("no job with id {id}")))?;
        if status.is_finished() {
            return Ok(status);
        }
        let reason = crate::redact::apply(reason);
        if status.is_active() {
            exec(
                &tx,
                "UPDATE runs SET cancel_reason = COALESCE(cancel_reason, ?1) WHERE id = ?2",
                params![reason, id],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            return Ok(status);
        }
        exec(
            &tx,
            "UPDATE runs SET status = 'cancelled', ended = ?1, cancel_reason = ?2 WHERE id = ?3",
            params![crate::clock::unix(), reason, id],
        )
        .map_err(db_err)?;
        event(&tx, id, RunStatus::Cancelled, &reason)?;
        tx.commit().map_err(db_err)?;
        Ok(RunStatus::Cancelled)
    }

    /// Runs of `host` that were asked to stop (`cancel` while leased or running).
    /// The jobs `host` holds (leased or running; records of sweeps, cron and remote runs are
    /// not jobs).
    pub fn held_by(&self, host: &str) -> LabResult<Vec<i64>> {
        all(
            &self.conn,
            "SELECT id FROM runs WHERE host = ?1 AND status IN ('leased', 'running') AND kind NOT IN ('sweep', 'cron', 'remote') ORDER BY id",
            [host],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    pub fn cancel_requests(&self, host: &str) -> LabResult<Vec<i64>> {
        all(
            &self.conn,
            "SELECT id FROM runs WHERE host = ?1 AND status IN ('leased', 'running') AND cancel_reason IS NOT NULL",
            [host],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    /// Newest first; `status` filters; `parent` lists the children of a run.
    pub fn list(
        &self,
        status: Option<RunStatus>,
        parent: Option<i64>,
        limit: usize,
    ) -> LabResult<Vec<Run>> {
        // `parent_id = ?2` as its own statement: SQLite cannot use the parent index for
        // `(?2 IS NULL OR parent_id = ?2)`, and scanned every run to list a sweep's trials.
        let which = match parent {
            Some(_) => "parent_id = ?2",
            None => "?2 IS NULL",
        };
        all(&self.conn, &format!(
                "SELECT {RUN_COLS} FROM runs WHERE {which} AND (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?3"
            ), params![status, parent, limit as i64], run_row).map_err(db_err)
    }

    /// `(id, status, name)` of each child of `parent`, newest first: what a page that
    /// follows a sweep looks at several times a second (no spec is read).
    pub fn children_states(&self, parent: i64) -> LabResult<Vec<(i64, RunStatus, String)>> {
        all(
            &self.conn,
            "SELECT id, status, name FROM runs WHERE parent_id = ?1 ORDER BY id DESC",
            [parent],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(db_err)
    }

    /// `(status, detail)` of every transition of a run, in order.
    pub fn events(&self, id: i64) -> LabResult<Vec<(String, String)>> {
        all(
            &self.conn,
            "SELECT status, detail FROM events WHERE run_id = ?1 ORDER BY id",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)
    }

    /// The newest event's id (0 when there is none): a cursor for `events_since`.
    pub fn last_event_id(&self) -> LabResult<i64> {
        one(
            &self.conn,
            "SELECT COALESCE(MAX(id), 0) FROM events",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    /// `(event id, run id, status)` of every transition after event `cursor`, in order: how a
    /// pool follows its jobs reading only what changed.
    pub fn events_since(&self, cursor: i64) -> LabResult<Vec<(i64, i64, RunStatus)>> {
        all(
            &self.conn,
            "SELECT id, run_id, status FROM events WHERE id > ?1 ORDER BY id",
            [cursor],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(db_err)
    }
}

fn create_tx(tx: &rusqlite::Transaction<'_>, state: &Path, n: &NewRun) -> LabResult<(Run, bool)> {
    if let Some(k) = &n.key {
        let existing = one(
            tx,
            &format!("SELECT {RUN_COLS} FROM runs WHERE key = ?1"),
            [k],
            run_row,
        )
        .optional()
        .map_err(db_err)?;
        if let Some(r) = existing {
            if n.retry_failed && r.status.is_unsuccessful() {
                exec(
                    tx,
                    "UPDATE runs SET status = 'queued', owner = ?1, pid = NULL, exit_code = NULL, error = NULL, cancel_reason = NULL, ended = NULL, not_before = 0, retries = 0 WHERE id = ?2",
                    params![n.owner, r.id],
                )
                .map_err(db_err)?;
                event(
                    tx,
                    r.id,
                    RunStatus::Queued,
                    &format!("submitted again after {}", r.status),
                )?;
                return Ok((get_tx(tx, r.id)?, true));
            }
            if !r.status.is_finished() && n.owner.is_some() {
                exec(
                    tx,
                    "UPDATE runs SET owner = ?1 WHERE id = ?2",
                    params![n.owner, r.id],
                )
                .map_err(db_err)?;
            }
            return Ok((r, false));
        }
    }
    for d in &n.depends_on {
        let ok: bool = one(tx, "SELECT COUNT(*) FROM runs WHERE id = ?1", [d], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(db_err)?
            == 1;
        if !ok {
            return Err(LabError::new(
                "jobs.unknown_dependency",
                format!("depends_on: no job with id {d}"),
            ));
        }
    }
    let spec =
        serde_json::to_string(&n.spec).map_err(|e| LabError::new("internal", e.to_string()))?;
    exec(tx,
        "INSERT INTO runs (parent_id, kind, name, key, spec, status, priority, max_retries, backoff, created, owner, experiment_id)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10, ?11)",
        params![n.parent_id, n.kind, n.name, n.key, spec, n.priority, n.max_retries, n.backoff, crate::clock::unix(), n.owner, n.experiment_id],
    )
    .map_err(db_err)?;
    let id = tx.last_insert_rowid();
    // The folder itself is made after the commit (`ensure_run_dir`), outside the lock.
    let dir = state.join("runs").join(id.to_string());
    exec(
        tx,
        "UPDATE runs SET run_dir = ?1 WHERE id = ?2",
        params![dir.display().to_string(), id],
    )
    .map_err(db_err)?;
    for d in &n.depends_on {
        exec(
            tx,
            "INSERT OR IGNORE INTO deps (run_id, depends_on) VALUES (?1, ?2)",
            params![id, d],
        )
        .map_err(db_err)?;
    }
    for (k, v) in &n.params {
        exec(
            tx,
            "INSERT OR REPLACE INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, k, v.to_string()],
        )
        .map_err(db_err)?;
    }
    for (k, v) in &n.tags {
        exec(
            tx,
            "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, k, crate::redact::apply(v)],
        )
        .map_err(db_err)?;
    }
    event(tx, id, RunStatus::Queued, "")?;
    Ok((get_tx(tx, id)?, true))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::job;

    fn started(pid: i64) -> Started {
        Started {
            pid,
            at: 0.0,
            leader_start: None,
            cgroup: None,
            gpus: None,
        }
    }
    use super::super::*;
    use serde_json::json;
    use std::path::PathBuf;

    #[test]
    fn idempotency_key_priority_and_lifecycle_with_events() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, created) = s
            .create(&NewRun {
                key: Some("k1".into()),
                params: vec![("lr".into(), json!(0.1))],
                ..job("a")
            })
            .unwrap();
        assert!(created);
        assert!(PathBuf::from(&a.run_dir).join("spec.json").exists());
        assert!(PathBuf::from(&a.run_dir).join("outputs").is_dir());
        let (again, created) = s
            .create(&NewRun {
                key: Some("k1".into()),
                ..job("other")
            })
            .unwrap();
        assert_eq!((again.id, created), (a.id, false));
        let (b, _) = s
            .create(&NewRun {
                priority: 5,
                ..job("b")
            })
            .unwrap();
        assert_eq!(
            s.claim_next("h1").unwrap().unwrap().id,
            b.id,
            "higher priority first"
        );
        let c = s.claim_next("h1").unwrap().unwrap();
        assert_eq!((c.id, c.attempt, c.status), (a.id, 1, RunStatus::Leased));
        s.set_running(a.id, &started(4242)).unwrap();
        assert_eq!(
            s.finish(a.id, RunStatus::Completed, Some(0), None).unwrap(),
            RunStatus::Completed
        );
        let ev: Vec<String> = s.events(a.id).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(ev, vec!["queued", "leased", "running", "completed"]);
        assert_eq!(
            s.params(a.id).unwrap(),
            vec![("lr".to_string(), json!(0.1))]
        );
        assert!(s.claim_next("h1").unwrap().is_none());
    }

    #[test]
    fn a_cancel_keeps_its_reason_and_an_ended_run_keeps_its_status() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, _) = s.create(&job("a")).unwrap();
        let why = "cancelled by policy: bandit, 0.41 < 0.66 at interval 4";
        assert_eq!(s.cancel(a.id, why).unwrap(), RunStatus::Cancelled);
        let r = s.get(a.id).unwrap();
        assert_eq!((r.status, r.reason()), (RunStatus::Cancelled, Some(why)));
        assert_eq!(s.events(a.id).unwrap().last().unwrap().1, why);
        let (b, _) = s.create(&job("b")).unwrap();
        s.claim_next("h").unwrap();
        s.finish(b.id, RunStatus::Completed, Some(0), None).unwrap();
        assert_eq!(s.cancel(b.id, "late").unwrap(), RunStatus::Completed);
        assert_eq!(s.get(b.id).unwrap().cancel_reason, None);
        // A running run is only asked: it is cancelled once its host has stopped it.
        let (c, _) = s.create(&job("c")).unwrap();
        s.claim_next("h").unwrap();
        s.set_running(c.id, &started(42)).unwrap();
        assert_eq!(s.cancel(c.id, "stop it").unwrap(), RunStatus::Running);
        assert!(s.get(c.id).unwrap().cancel_requested());
        assert_eq!(s.cancel_requests("h").unwrap(), vec![c.id]);
        assert_eq!(s.cancel_requests("other").unwrap(), Vec::<i64>::new());
        s.finish(c.id, RunStatus::Cancelled, None, None).unwrap();
        let c = s.get(c.id).unwrap();
        assert_eq!(
            (c.status, c.reason()),
            (RunStatus::Cancelled, Some("stop it"))
        );
        assert_eq!(s.cancel(999, "x").unwrap_err().kind, "jobs.not_found");
    }
}
