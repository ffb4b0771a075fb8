//! The queue: claims (atomic across processes), leases, the end of an attempt with retries
//! and back-off, and the runs of hosts that died.
use rusqlite::{params, OptionalExtension};

use super::runs::{run_row, RUN_COLS};
use super::{all, db_err, event, exec, one, Run, RunStatus, Started, Store};
use crate::error::LabResult;

impl Store {
    /// Takes the next runnable queued run for `host`: highest priority, then oldest; its
    /// dependencies completed; its retry time reached. Runs whose dependency failed are failed
    /// here with the reason. Atomic across processes.
    pub fn claim_next(&mut self, host: &str) -> LabResult<Option<Run>> {
        let tx = self.write()?;
        let run = claim_tx(&tx, host)?;
        tx.commit().map_err(db_err)?;
        Ok(run)
    }

    /// Records the end of run `id` (as `finish`) and claims the next run for `host` (as
    /// `claim_next`) in one transaction: a worker's step from one job to the next.
    /// `start` is the start of an attempt that was not recorded yet.
    pub fn finish_and_claim(
        &mut self,
        id: i64,
        start: Option<&Started>,
        status: RunStatus,
        exit_code: Option<i64>,
        error: Option<&str>,
        host: Option<&str>,
    ) -> LabResult<(RunStatus, Option<Run>)> {
        let tx = self.write()?;
        if let Some(st) = start {
            running_tx(&tx, id, st)?;
        }
        let st = finish_tx(&tx, id, status, exit_code, error)?;
        let run = match host {
            Some(h) => claim_tx(&tx, h)?,
            None => None,
        };
        tx.commit().map_err(db_err)?;
        Ok((st, run))
    }

    /// Leased → running, with the process id. A job host records it once the process has run
    /// for a moment (a job that ends sooner has it recorded with its end): a crash in between
    /// re-queues a leased run exactly as a running one. A run cancelled in the meantime stays
    /// cancelled.
    /// The start is taken as now.
    pub fn set_running(&mut self, id: i64, st: &Started) -> LabResult<()> {
        let tx = self.write()?;
        let st = Started {
            at: crate::clock::unix(),
            ..st.clone()
        };
        running_tx(&tx, id, &st)?;
        tx.commit().map_err(db_err)
    }

    /// Records the end of an attempt. A failure with retries left goes back to the queue after
    /// `backoff * 2^(attempt-1)` seconds. Returns the run's new status.
    pub fn finish(
        &mut self,
        id: i64,
        status: RunStatus,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> LabResult<RunStatus> {
        self.finish_and_claim(id, None, status, exit_code, error, None)
            .map(|(st, _)| st)
    }

    /// Records the end of attempt `attempt` of run `id` (as `finish`, with its start when that
    /// was not recorded) for the job supervisor that ran it after its host `host` died: only a
    /// run still at that attempt, leased or running by `host`, changes. Returns the new status,
    /// or `None` when it had been recorded already (or the run moved on).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_attempt(
        &mut self,
        id: i64,
        attempt: i64,
        host: &str,
        start: Option<&Started>,
        status: RunStatus,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> LabResult<Option<RunStatus>> {
        let tx = self.write()?;
        if !held_tx(&tx, id, attempt, host)? {
            return Ok(None);
        }
        if let Some(st) = start {
            running_tx(&tx, id, st)?;
        }
        let st = finish_tx(&tx, id, status, exit_code, error)?;
        tx.commit().map_err(db_err)?;
        Ok(Some(st))
    }

    /// Whether attempt `attempt` of run `id` is still `host`'s and unfinished (its end is not
    /// recorded yet).
    pub fn attempt_held(&self, id: i64, attempt: i64, host: &str) -> LabResult<bool> {
        held_tx(&self.conn, id, attempt, host)
    }

    /// Forgets the points attempt `attempt` of run `id` wrote to its metrics file (its job
    /// supervisor reads them again: some it sent to its dead host may be lost).
    pub fn forget_attempt_metrics(&mut self, id: i64, attempt: i64) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "DELETE FROM metrics WHERE run_id = ?1 AND attempt = ?2 AND from_file = 1",
            params![id, attempt],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Leased or running runs whose host is not alive (`alive(host)` false): their processes
    /// may still run (the host died, its jobs' children did not), so the caller stops them
    /// before it gives the runs back with [`Store::requeue`]. Queued runs whose owner is dead
    /// (`owner_alive(owner)` false) become anyone's here.
    pub fn orphans(
        &mut self,
        owner_alive: &dyn Fn(&str) -> bool,
        alive: &dyn Fn(&str) -> bool,
    ) -> LabResult<Vec<Run>> {
        let tx = self.write()?;
        let owners: Vec<String> = all(
            &tx,
            "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL AND status = 'queued'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
        for o in owners {
            if !owner_alive(&o) {
                exec(
                    &tx,
                    "UPDATE runs SET owner = NULL WHERE owner = ?1 AND status = 'queued'",
                    [&o],
                )
                .map_err(db_err)?;
            }
        }
        let held: Vec<Run> = all(
            &tx,
            &format!("SELECT {RUN_COLS} FROM runs WHERE status IN ('leased', 'running') AND kind NOT IN ('sweep', 'cron', 'remote')"),
            [],
            run_row,
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(held
            .into_iter()
            .filter(|r| !alive(r.host.as_deref().unwrap_or("")))
            .collect())
    }

    /// Gives runs back to the queue after their attempt was stopped (same spec and run folder;
    /// the next claim makes a fresh attempt), saying `why` in the event log; a run whose cancel
    /// was asked for is cancelled instead. Only runs still leased or running by `host` change.
    /// Returns the ids re-queued.
    pub fn requeue(&mut self, runs: &[(i64, String)], why: &str) -> LabResult<Vec<i64>> {
        let tx = self.write()?;
        let mut out = Vec::new();
        for (id, host) in runs {
            let cancel: Option<Option<String>> = one(
                &tx,
                "SELECT cancel_reason FROM runs WHERE id = ?1 AND host = ?2 AND status IN ('leased', 'running')",
                params![id, host],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
            match cancel {
                None => {}
                Some(Some(reason)) => cancelled_tx(&tx, *id, &reason)?,
                Some(None) => {
                    exec(&tx,
                        "UPDATE runs SET status = 'queued', pid = NULL, not_before = 0, owner = NULL WHERE id = ?1",
                        [id],
                    )
                    .map_err(db_err)?;
                    event(&tx, *id, RunStatus::Queued, why)?;
                    out.push(*id);
                }
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Gives back run `id`, leased by `host` but never started (it waited next in a slot): it
    /// is queued again as before its claim, its attempt not counted (a cancel asked for
    /// meanwhile cancels it). False when it is not leased by `host` (it started after all).
    pub fn unclaim(&mut self, id: i64, host: &str, why: &str) -> LabResult<bool> {
        let tx = self.write()?;
        let cancel: Option<Option<String>> = one(
            &tx,
            "SELECT cancel_reason FROM runs WHERE id = ?1 AND host = ?2 AND status = 'leased' AND pid IS NULL",
            params![id, host],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        match cancel {
            None => return Ok(false),
            Some(Some(reason)) => cancelled_tx(&tx, id, &reason)?,
            Some(None) => {
                exec(
                    &tx,
                    "UPDATE runs SET status = 'queued', attempt = attempt - 1 WHERE id = ?1",
                    [id],
                )
                .map_err(db_err)?;
                event(&tx, id, RunStatus::Queued, why)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    /// Unfinished runs that `host` runs or may run: queued ones it owns or nobody owns, and
    /// those it holds.
    pub fn pending_for(&self, host: &str) -> LabResult<i64> {
        one(
            &self.conn,
            "SELECT COUNT(*) FROM runs WHERE (status = 'queued' AND (owner IS NULL OR owner = ?1))
                 OR (status IN ('leased', 'running') AND host = ?1)",
            [host],
            |r| r.get(0),
        )
        .map_err(db_err)
    }
}

/// Run `id`, given back while its cancel was asked for (`reason`): cancelled now.
fn cancelled_tx(tx: &rusqlite::Transaction<'_>, id: i64, reason: &str) -> LabResult<()> {
    exec(
        tx,
        "UPDATE runs SET status = 'cancelled', ended = ?1 WHERE id = ?2",
        params![crate::clock::unix(), id],
    )
    .map_err(db_err)?;
    event(tx, id, RunStatus::Cancelled, reason)
}

fn claim_tx(tx: &rusqlite::Transaction<'_>, host: &str) -> LabResult<Option<Run>> {
    // Dependents of failed runs fail too.
    // From the dependency edges (CROSS JOIN fixes the order): starting from the queued
    // runs made every claim read the whole queue.
    let doomed: Vec<(i64, i64)> = all(
        tx,
        "SELECT r.id, d.depends_on FROM deps d CROSS JOIN runs r ON d.run_id = r.id CROSS JOIN runs p ON p.id = d.depends_on
         WHERE r.status = 'queued' AND p.status IN ('failed', 'cancelled', 'timed_out')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(db_err)?;
    for (id, dep) in doomed {
        let why = format!("dependency {dep} did not complete");
        exec(
            tx,
            "UPDATE runs SET status = 'failed', error = ?1, ended = ?2 WHERE id = ?3",
            params![why, crate::clock::unix(), id],
        )
        .map_err(db_err)?;
        event(tx, id, RunStatus::Failed, &why)?;
    }
    let next = one(
        tx,
        &format!(
            "SELECT {RUN_COLS} FROM runs r WHERE status = 'queued' AND not_before <= ?1
                 AND (owner IS NULL OR owner = ?2)
                 AND NOT EXISTS (SELECT 1 FROM deps d JOIN runs p ON p.id = d.depends_on
                                 WHERE d.run_id = r.id AND p.status != 'completed')
                 ORDER BY priority DESC, id LIMIT 1"
        ),
        params![crate::clock::unix(), host],
        run_row,
    )
    .optional()
    .map_err(db_err)?;
    let Some(mut run) = next else {
        return Ok(None);
    };
    exec(tx,
        "UPDATE runs SET status = 'leased', host = ?1, attempt = attempt + 1, pid = NULL, exit_code = NULL, error = NULL, leader_start = NULL, cgroup = NULL WHERE id = ?2",
        params![host, run.id],
    )
    .map_err(db_err)?;
    event(tx, run.id, RunStatus::Leased, host)?;
    // The row as the update left it, without reading it (and its spec) again.
    run.status = RunStatus::Leased;
    run.host = Some(host.to_string());
    run.attempt += 1;
    (run.pid, run.exit_code, run.error) = (None, None, None);
    (run.leader_start, run.cgroup) = (None, None);
    Ok(Some(run))
}

fn held_tx(c: &rusqlite::Connection, id: i64, attempt: i64, host: &str) -> LabResult<bool> {
    Ok(one(
        c,
        "SELECT id FROM runs WHERE id = ?1 AND attempt = ?2 AND host = ?3 AND status IN ('leased', 'running')",
        params![id, attempt, host],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map_err(db_err)?
    .is_some())
}

fn running_tx(tx: &rusqlite::Transaction<'_>, id: i64, st: &Started) -> LabResult<()> {
    let n = exec(
        tx,
        "UPDATE runs SET status = 'running', pid = ?1, started = ?2, leader_start = ?3, cgroup = ?4 WHERE id = ?5 AND status = 'leased'",
        params![st.pid, st.at, st.leader_start, st.cgroup, id],
    )
    .map_err(db_err)?;
    if n == 1 {
        exec(
            tx,
            "INSERT INTO events (run_id, ts, status, detail) VALUES (?1, ?2, 'running', ?3)",
            params![id, st.at, st.pid.to_string()],
        )
        .map_err(db_err)?;
        if let Some((indices, uuids)) = &st.gpus {
            for (k, v) in [("labhost.gpus", indices), ("labhost.gpu_uuids", uuids)] {
                exec(
                    tx,
                    "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?1, ?2, ?3)",
                    params![id, k, v],
                )
                .map_err(db_err)?;
            }
        }
    }
    Ok(())
}

fn finish_tx(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    status: RunStatus,
    exit_code: Option<i64>,
    error: Option<&str>,
) -> LabResult<RunStatus> {
    // Retries count failures (since the run was last submitted), not attempts: an attempt
    // stopped by its host's exit or death and run again is not a retry.
    let (retries, max_retries, backoff): (i64, i64, f64) = one(
        tx,
        "SELECT retries, max_retries, backoff FROM runs WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .map_err(db_err)?;
    let retry = matches!(status, RunStatus::Failed | RunStatus::TimedOut) && retries < max_retries;
    let new_status = if retry { RunStatus::Queued } else { status };
    let now = crate::clock::unix();
    let not_before = if retry {
        now + backoff * 2f64.powi(retries as i32)
    } else {
        0.0
    };
    exec(tx,
        "UPDATE runs SET status = ?1, exit_code = ?2, error = ?3, ended = ?4, not_before = ?5, retries = retries + ?6 WHERE id = ?7",
        params![new_status, exit_code, error.map(crate::redact::apply), now, not_before, i64::from(retry), id],
    )
    .map_err(db_err)?;
    let detail = match (exit_code, error) {
        (_, Some(e)) => crate::redact::apply(e),
        (Some(c), None) => format!("exit {c}"),
        _ => String::new(),
    };
    event(tx, id, status, &detail)?;
    if retry {
        event(
            tx,
            id,
            RunStatus::Queued,
            &format!("retry {} of {max_retries}", retries + 1),
        )?;
    }
    Ok(new_status)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{job, sql};
    use super::super::*;

    #[test]
    fn dependencies_gate_and_fail_dependents() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, _) = s.create(&job("a")).unwrap();
        let (b, _) = s
            .create(&NewRun {
                depends_on: vec![a.id],
                ..job("b")
            })
            .unwrap();
        let (c, _) = s
            .create(&NewRun {
                depends_on: vec![b.id],
                ..job("c")
            })
            .unwrap();
        assert_eq!(
            s.create(&NewRun {
                depends_on: vec![999],
                ..job("x")
            })
            .unwrap_err()
            .kind,
            "jobs.unknown_dependency"
        );
        let got = s.claim_next("h").unwrap().unwrap();
        assert_eq!(got.id, a.id);
        assert!(s.claim_next("h").unwrap().is_none(), "b must wait for a");
        s.finish(a.id, RunStatus::Failed, Some(1), None).unwrap();
        assert!(s.claim_next("h").unwrap().is_none());
        assert_eq!(
            s.get(b.id).unwrap().error.as_deref(),
            Some(format!("dependency {} did not complete", a.id).as_str())
        );
        s.claim_next("h").unwrap();
        assert_eq!(s.get(c.id).unwrap().status, RunStatus::Failed);
    }

    #[test]
    fn retries_back_off_and_orphans_are_requeued() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, _) = s
            .create(&NewRun {
                max_retries: 1,
                backoff: 3600.0,
                ..job("a")
            })
            .unwrap();
        s.claim_next("h").unwrap().unwrap();
        assert_eq!(
            s.finish(a.id, RunStatus::Failed, Some(2), None).unwrap(),
            RunStatus::Queued
        );
        assert!(
            s.claim_next("h").unwrap().is_none(),
            "retry waits for its backoff"
        );
        sql(&s, "UPDATE runs SET not_before = 0");
        let again = s.claim_next("h").unwrap().unwrap();
        assert_eq!(again.attempt, 2);
        // What a claim returns is the row as recorded (the first attempt's exit code gone).
        assert_eq!((again.exit_code, again.status), (None, RunStatus::Leased));
        assert_eq!(again, s.get(a.id).unwrap());
        assert_eq!(
            s.finish(a.id, RunStatus::Failed, Some(2), None).unwrap(),
            RunStatus::Failed,
            "no retries left"
        );
        let (b, _) = s.create(&job("b")).unwrap();
        s.claim_next("dead-host").unwrap();
        s.set_running(
            b.id,
            &Started {
                pid: 1,
                at: 0.0,
                leader_start: Some(7),
                cgroup: Some("/cg/x".into()),
                gpus: None,
            },
        )
        .unwrap();
        assert_eq!(s.get(b.id).unwrap().leader_start, Some(7));
        let orphans = s
            .orphans(&|h| h != "dead-host", &|h| h != "dead-host")
            .unwrap();
        assert_eq!(orphans.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
        assert_eq!(
            s.requeue(&[(b.id, "dead-host".into())], "host dead-host died")
                .unwrap(),
            vec![b.id]
        );
        let b2 = s.claim_next("h2").unwrap().unwrap();
        assert_eq!(
            (b2.id, b2.attempt, b2.run_dir.clone()),
            (b.id, 2, b.run_dir.clone())
        );
    }

    /// `max_retries` counts failures: an attempt stopped by its host's exit or death and put
    /// back is not a retry; a run submitted again after it failed has its retries anew.
    #[test]
    fn a_stopped_attempt_is_not_a_retry_and_a_resubmission_retries_anew() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let n = NewRun {
            max_retries: 1,
            key: Some("k".into()),
            ..job("a")
        };
        let (a, _) = s.create(&n).unwrap();
        // Stopped twice (claimed, put back by its host), then it fails: retried.
        for _ in 0..2 {
            s.claim_next("h").unwrap().unwrap();
            assert_eq!(
                s.requeue(&[(a.id, "h".into())], "host exited").unwrap(),
                vec![a.id]
            );
        }
        assert_eq!(s.claim_next("h").unwrap().unwrap().attempt, 3);
        assert_eq!(
            s.finish(a.id, RunStatus::Failed, Some(1), None).unwrap(),
            RunStatus::Queued,
            "its one retry"
        );
        let details: Vec<String> = s.events(a.id).unwrap().into_iter().map(|e| e.1).collect();
        assert!(details.iter().any(|d| d == "retry 1 of 1"), "{details:?}");
        let again = s.claim_next("h").unwrap().unwrap();
        assert_eq!((again.attempt, again.retries), (4, 1));
        assert_eq!(
            s.finish(a.id, RunStatus::TimedOut, None, None).unwrap(),
            RunStatus::TimedOut,
            "no retries left"
        );
        // Submitted again (`retry_failed`): one retry again, after a failure.
        let (again, requeued) = s
            .create(&NewRun {
                retry_failed: true,
                ..n
            })
            .unwrap();
        assert!(requeued && again.id == a.id && again.retries == 0);
        s.claim_next("h").unwrap().unwrap();
        assert_eq!(
            s.finish(a.id, RunStatus::Failed, Some(1), None).unwrap(),
            RunStatus::Queued
        );
    }

    #[test]
    fn a_live_owner_keeps_its_jobs_and_a_dead_ones_are_adopted() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (a, _) = s
            .create(&NewRun {
                owner: Some("h1".into()),
                key: Some("ka".into()),
                ..job("a")
            })
            .unwrap();
        assert!(s.claim_next("h2").unwrap().is_none(), "h2 took h1's job");
        // h1 died: its queued job becomes anyone's.
        assert!(s
            .orphans(&|h| h != "h1", &|h| h != "h1")
            .unwrap()
            .is_empty());
        assert_eq!(s.claim_next("h2").unwrap().unwrap().id, a.id);
        // A re-submission with the key adopts an unfinished job.
        let (b, _) = s
            .create(&NewRun {
                owner: Some("h3".into()),
                key: Some("kb".into()),
                ..job("b")
            })
            .unwrap();
        let (b2, created) = s
            .create(&NewRun {
                owner: Some("h4".into()),
                key: Some("kb".into()),
                ..job("b")
            })
            .unwrap();
        assert_eq!((b2.id, created), (b.id, false));
        assert!(s.claim_next("h3").unwrap().is_none());
        assert_eq!(s.claim_next("h4").unwrap().unwrap().id, b.id);
    }

    #[test]
    fn concurrent_claimers_never_take_the_same_run() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        for i in 0..200 {
            s.create(&job(&format!("j{i}"))).unwrap();
        }
        let dir = t.path().to_path_buf();
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let mut s = Store::open(&dir).unwrap();
                    let mut mine = Vec::new();
                    while let Some(r) = s.claim_next(&format!("w{w}")).unwrap() {
                        mine.push(r.id);
                        s.finish(r.id, RunStatus::Completed, Some(0), None).unwrap();
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(
            (n, all.len()),
            (200, 200),
            "a run was claimed twice or lost"
        );
    }
}
