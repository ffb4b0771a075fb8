//! `<state>/labhost.db`: SQLite (bundled), WAL, `synchronous=NORMAL`, a versioned schema with
//! migrations (`PRAGMA user_version`). Every transition is written (with an event row) before
//! it takes effect, so a restarted host knows exactly what happened:
//!
//! ```text
//! queued ──claim──▶ leased ──▶ running ──▶ completed | failed | cancelled | timed_out
//!    ▲                 │            │
//!    └─── retry (not_before) / orphan re-queue (host died) ───┘
//! ```
//!
//! Claiming is one `BEGIN IMMEDIATE` transaction, so two hosts on the same database never
//! take the same run. Hosts hold an exclusive flock on `<state>/hosts/<host>.lock` while they
//! live; runs leased by a host whose lock is free are orphans and go back to the queue.
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::error::{HostError, HostResult};

/// Schema migrations, applied in order; `PRAGMA user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    parent_id   INTEGER REFERENCES runs(id),
    kind        TEXT NOT NULL DEFAULT 'job',
    name        TEXT NOT NULL DEFAULT '',
    key         TEXT UNIQUE,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    attempt     INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 0,
    backoff     REAL NOT NULL DEFAULT 1.0,
    host        TEXT,
    pid         INTEGER,
    exit_code   INTEGER,
    error       TEXT,
    run_dir     TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    started     REAL,
    ended       REAL,
    not_before  REAL NOT NULL DEFAULT 0
);
CREATE INDEX runs_queue ON runs(status, priority DESC, id);
CREATE INDEX runs_parent ON runs(parent_id);
CREATE TABLE deps (
    run_id     INTEGER NOT NULL REFERENCES runs(id),
    depends_on INTEGER NOT NULL REFERENCES runs(id),
    PRIMARY KEY (run_id, depends_on)
);
CREATE TABLE params (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE tags (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name   TEXT NOT NULL,
    value  REAL NOT NULL,
    step   INTEGER NOT NULL,
    ts     REAL NOT NULL
);
CREATE INDEX metrics_run ON metrics(run_id, name, step);
CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    ts     REAL NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_run ON events(run_id, id);
"#,
    // v2: the host that runs a job is the host that submitted it (its owner), or any host once
    // the owner is gone; a re-submission with the same key adopts an unfinished job.
    "ALTER TABLE runs ADD COLUMN owner TEXT;",
];

pub const FINISHED: &[&str] = &["completed", "failed", "cancelled", "timed_out"];

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs a statement through the connection's statement cache (parsing SQL is most of the cost
/// of a small statement).
fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the statement cache.
fn one<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// Every row of a query, through the statement cache.
fn all<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    c.prepare_cached(sql)?.query_map(p, f)?.collect()
}

fn db_err(e: rusqlite::Error) -> HostError {
    HostError::new("jobs.store", format!("state database: {e}"))
}

#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub parent_id: Option<i64>,
    pub kind: String,
    pub name: String,
    /// Idempotency key: a second run with a key that exists returns the existing run.
    pub key: Option<String>,
    /// The resolved spec (secrets already masked).
    pub spec: Value,
    pub priority: i64,
    pub max_retries: i64,
    /// Seconds before the first retry; doubles each attempt.
    pub backoff: f64,
    pub depends_on: Vec<i64>,
    pub params: Vec<(String, Value)>,
    pub tags: Vec<(String, String)>,
    /// The submitting host: only it runs the job while it lives (`None`: any host).
    pub owner: Option<String>,
    /// With a `key` whose run ended without completing (failed, cancelled, timed out): queue
    /// that run again instead of returning it (a re-run pipeline retries what failed).
    pub retry_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub kind: String,
    pub name: String,
    pub key: Option<String>,
    pub spec: Value,
    pub status: String,
    pub priority: i64,
    pub attempt: i64,
    pub max_retries: i64,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub run_dir: String,
    pub created: f64,
    pub started: Option<f64>,
    pub ended: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default)]
    pub step: i64,
    #[serde(default)]
    pub ts: f64,
}

pub struct Store {
    conn: Connection,
    state: PathBuf,
}

const RUN_COLS: &str = "id, parent_id, kind, name, key, spec, status, priority, attempt, max_retries, host, pid, exit_code, error, run_dir, created, started, ended";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let spec: String = r.get(5)?;
    Ok(Run {
        id: r.get(0)?,
        parent_id: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        key: r.get(4)?,
        spec: serde_json::from_str(&spec).unwrap_or(Value::Null),
        status: r.get(6)?,
        priority: r.get(7)?,
        attempt: r.get(8)?,
        max_retries: r.get(9)?,
        host: r.get(10)?,
        pid: r.get(11)?,
        exit_code: r.get(12)?,
        error: r.get(13)?,
        run_dir: r.get(14)?,
        created: r.get(15)?,
        started: r.get(16)?,
        ended: r.get(17)?,
    })
}

enum OpenError {
    Busy(rusqlite::Error),
    Other(HostError),
}
use OpenError::{Busy, Other};

/// This process's connection to the state database: the job host, its workers and the script
/// share one, so a commit by one does not throw away the page cache of the others (SQLite
/// drops a connection's cache whenever another connection has written).
static SHARED: std::sync::Mutex<Option<Store>> = std::sync::Mutex::new(None);

/// Runs `f` on the shared connection to the database in `state` (opened on first use).
pub fn with<T>(state: &Path, f: impl FnOnce(&mut Store) -> HostResult<T>) -> HostResult<T> {
    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().is_none_or(|s| s.state != state) {
        *g = Some(Store::open(state)?);
    }
    f(g.as_mut().expect("opened above"))
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
/// masked spec, a copy of the database row for people and tools) unless they exist. Both the submitter and
/// the host that runs the job call it, so a submitter that died right after its commit leaves
/// no run without a folder.
pub fn ensure_run_dir(run: &Run) -> HostResult<()> {
    let dir = Path::new(&run.run_dir);
    make_run_dir(dir)
        .map_err(|e| crate::error::io_err("jobs", "cannot create run folder", dir, &e))?;
    // The logs too: creating files is the slow part of a short job, and the submitter does it
    // here, off the path from one job to the next.
    for (name, text) in [
        ("stdout.log", None),
        ("stderr.log", None),
        ("spec.json", Some(&run.spec)),
    ] {
        let p = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(mut f) => {
                if let Some(v) = text {
                    let text = serde_json::to_string_pretty(v).unwrap_or_default();
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
    /// Opens (creating and migrating) the database in `state`.
    pub fn open(state: &Path) -> HostResult<Store> {
        std::fs::create_dir_all(state)
            .map_err(|e| crate::error::io_err("jobs", "cannot create", state, &e))?;
        // Switching a new database to WAL takes an exclusive lock and answers SQLITE_BUSY at
        // once, without the busy handler, when another process does the same: try again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Store::open_once(state) {
                Err(Busy(e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!("state database busy ({e}), opening again");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(Busy(e)) => return Err(db_err(e)),
                Err(Other(e)) => return Err(e),
                Ok(s) => return Ok(s),
            }
        }
    }

    fn open_once(state: &Path) -> Result<Store, OpenError> {
        let db_err = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Busy(e)
            }
            _ => Other(db_err(e)),
        };
        let mut conn = Connection::open(state.join("labhost.db")).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        // One migrator at a time: IMMEDIATE takes the write lock before reading the version.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let version: i64 = one(&tx, "PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
        if version as usize > MIGRATIONS.len() {
            return Err(Other(HostError::new(
                "jobs.store",
                format!("the state database has schema version {version}, newer than this labhost ({}): upgrade labhost", MIGRATIONS.len()),
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m).map_err(db_err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Store {
            conn,
            state: state.to_path_buf(),
        })
    }

    /// Leaves WAL checkpoints (and their fsyncs) to `checkpoint`, called off the hot path by
    /// the job host's checkpointer thread.
    pub fn no_autocheckpoint(&self) -> HostResult<()> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db_err)
    }

    /// Copies what it can of the WAL into the database without blocking writers.
    pub fn checkpoint(&self) -> HostResult<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(db_err)
    }

    pub fn schema_version(&self) -> HostResult<i64> {
        one(&self.conn, "PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)
    }

    fn event(
        tx: &rusqlite::Transaction<'_>,
        run: i64,
        status: &str,
        detail: &str,
    ) -> HostResult<()> {
        exec(
            tx,
            "INSERT INTO events (run_id, ts, status, detail) VALUES (?1, ?2, ?3, ?4)",
            params![run, now(), status, detail],
        )
        .map_err(db_err)?;
        Ok(())
    }

    /// Records a new queued run (and its folder `runs/<id>/` with `spec.json`); with a `key`
    /// that exists already, returns that run instead: `(run, created)`.
    pub fn create(&mut self, n: &NewRun) -> HostResult<(Run, bool)> {
        let mut out = self.create_many(std::slice::from_ref(n))?;
        Ok(out.remove(0))
    }

    /// `create` for many runs in one transaction (a pool submits thousands at once); all or
    /// none are recorded.
    pub fn create_many(&mut self, runs: &[NewRun]) -> HostResult<Vec<(Run, bool)>> {
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
    pub fn insert_many(&mut self, runs: &[NewRun]) -> HostResult<Vec<(Run, bool)>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(runs.len());
        for n in runs {
            out.push(Store::create_tx(&tx, &self.state, n)?);
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    fn create_tx(
        tx: &rusqlite::Transaction<'_>,
        state: &Path,
        n: &NewRun,
    ) -> HostResult<(Run, bool)> {
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
                if n.retry_failed
                    && FINISHED.contains(&r.status.as_str())
                    && r.status != "completed"
                {
                    exec(
                        tx,
                        "UPDATE runs SET status = 'queued', owner = ?1, pid = NULL, exit_code = NULL, error = NULL, ended = NULL, not_before = 0 WHERE id = ?2",
                        params![n.owner, r.id],
                    )
                    .map_err(db_err)?;
                    Store::event(
                        tx,
                        r.id,
                        "queued",
                        &format!("submitted again after {}", r.status),
                    )?;
                    let r = one(
                        tx,
                        &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                        [r.id],
                        run_row,
                    )
                    .map_err(db_err)?;
                    return Ok((r, true));
                }
                if !FINISHED.contains(&r.status.as_str()) && n.owner.is_some() {
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
                return Err(HostError::new(
                    "jobs.unknown_dependency",
                    format!("depends_on: no job with id {d}"),
                ));
            }
        }
        let kind = if n.kind.is_empty() {
            "job"
        } else {
            n.kind.as_str()
        };
        exec(tx,
            "INSERT INTO runs (parent_id, kind, name, key, spec, status, priority, max_retries, backoff, created, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10)",
            params![n.parent_id, kind, n.name, n.key, n.spec.to_string(), n.priority, n.max_retries, n.backoff, now(), n.owner],
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
        Store::event(tx, id, "queued", "")?;
        let run = one(
            tx,
            &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .map_err(db_err)?;
        Ok((run, true))
    }

    pub fn get(&self, id: i64) -> HostResult<Run> {
        one(
            &self.conn,
            &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| HostError::new("jobs.not_found", format!("no job with id {id}")))
    }

    /// Takes the next runnable queued run for `host`: highest priority, then oldest; its
    /// dependencies completed; its retry time reached. Runs whose dependency failed are failed
    /// here with the reason. Atomic across processes.
    pub fn claim_next(&mut self, host: &str) -> HostResult<Option<Run>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let run = Store::claim_tx(&tx, host)?;
        tx.commit().map_err(db_err)?;
        Ok(run)
    }

    /// Records the end of run `id` (as `finish`) and claims the next run for `host` (as
    /// `claim_next`) in one transaction: a worker's step from one job to the next.
    pub fn finish_and_claim(
        &mut self,
        id: i64,
        start: Option<(i64, f64)>,
        status: &str,
        exit_code: Option<i64>,
        error: Option<&str>,
        host: Option<&str>,
    ) -> HostResult<(String, Option<Run>)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        if let Some((pid, at)) = start {
            Store::running_tx(&tx, id, pid, at)?;
        }
        let st = Store::finish_tx(&tx, id, status, exit_code, error)?;
        let run = match host {
            Some(h) => Store::claim_tx(&tx, h)?,
            None => None,
        };
        tx.commit().map_err(db_err)?;
        Ok((st, run))
    }

    fn claim_tx(tx: &rusqlite::Transaction<'_>, host: &str) -> HostResult<Option<Run>> {
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
                params![why, now(), id],
            )
            .map_err(db_err)?;
            Store::event(tx, id, "failed", &why)?;
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
            params![now(), host],
            run_row,
        )
        .optional()
        .map_err(db_err)?;
        let Some(run) = next else {
            return Ok(None);
        };
        exec(tx,
            "UPDATE runs SET status = 'leased', host = ?1, attempt = attempt + 1, pid = NULL, exit_code = NULL, error = NULL WHERE id = ?2",
            params![host, run.id],
        )
        .map_err(db_err)?;
        Store::event(tx, run.id, "leased", host)?;
        let run = one(
            tx,
            &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
            [run.id],
            run_row,
        )
        .map_err(db_err)?;
        Ok(Some(run))
    }

    /// Leased → running, with the process id. A job host records it once the process has run
    /// for a moment (a job that ends sooner has it recorded with its end, `finish_started`): a
    /// crash in between re-queues a leased run exactly as a running one. A run cancelled in the
    /// meantime stays cancelled.
    pub fn set_running(&mut self, id: i64, pid: i64) -> HostResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        Store::running_tx(&tx, id, pid, now())?;
        tx.commit().map_err(db_err)
    }

    fn running_tx(
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        pid: i64,
        started: f64,
    ) -> HostResult<()> {
        let n = exec(
            tx,
            "UPDATE runs SET status = 'running', pid = ?1, started = ?2 WHERE id = ?3 AND status = 'leased'",
            params![pid, started, id],
        )
        .map_err(db_err)?;
        if n == 1 {
            exec(
                tx,
                "INSERT INTO events (run_id, ts, status, detail) VALUES (?1, ?2, 'running', ?3)",
                params![id, started, pid.to_string()],
            )
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// `finish` of an attempt whose start (`(pid, time)`) was not recorded yet.
    pub fn finish_started(
        &mut self,
        id: i64,
        start: Option<(i64, f64)>,
        status: &str,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> HostResult<String> {
        self.finish_and_claim(id, start, status, exit_code, error, None)
            .map(|(st, _)| st)
    }

    /// Records the end of an attempt. A failure with retries left goes back to the queue after
    /// `backoff * 2^(attempt-1)` seconds. Returns the run's new status.
    pub fn finish(
        &mut self,
        id: i64,
        status: &str,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> HostResult<String> {
        self.finish_started(id, None, status, exit_code, error)
    }

    fn finish_tx(
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        status: &str,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> HostResult<String> {
        let (attempt, max_retries, backoff): (i64, i64, f64) = one(
            tx,
            "SELECT attempt, max_retries, backoff FROM runs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(db_err)?;
        let retry = matches!(status, "failed" | "timed_out") && attempt <= max_retries;
        let new_status = if retry { "queued" } else { status };
        let not_before = if retry {
            now() + backoff * 2f64.powi((attempt - 1).max(0) as i32)
        } else {
            0.0
        };
        exec(tx,
            "UPDATE runs SET status = ?1, exit_code = ?2, error = ?3, ended = ?4, not_before = ?5 WHERE id = ?6",
            params![new_status, exit_code, error.map(crate::redact::apply), now(), not_before, id],
        )
        .map_err(db_err)?;
        let detail = match (exit_code, error) {
            (_, Some(e)) => crate::redact::apply(e),
            (Some(c), None) => format!("exit {c}"),
            _ => String::new(),
        };
        Store::event(tx, id, status, &detail)?;
        if retry {
            Store::event(
                tx,
                id,
                "queued",
                &format!("retry {} of {max_retries}", attempt),
            )?;
        }
        Ok(new_status.to_string())
    }

    /// Cancels a queued or running run (a running one is killed by its host when it sees it).
    pub fn cancel(&mut self, id: i64) -> HostResult<String> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let status: String = one(&tx, "SELECT status FROM runs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| HostError::new("jobs.not_found", format!("no job with id {id}")))?;
        if FINISHED.contains(&status.as_str()) {
            return Ok(status);
        }
        exec(
            &tx,
            "UPDATE runs SET status = 'cancelled', ended = ?1 WHERE id = ?2",
            params![now(), id],
        )
        .map_err(db_err)?;
        Store::event(&tx, id, "cancelled", "")?;
        tx.commit().map_err(db_err)?;
        Ok("cancelled".into())
    }

    /// Leased or running runs of hosts for which `alive(host)` is false go back to the queue
    /// (same spec and run folder; the next claim makes a fresh attempt), and queued runs whose
    /// owner is dead become anyone's. Returns the re-queued ids.
    pub fn requeue_orphans(&mut self, alive: &dyn Fn(&str) -> bool) -> HostResult<Vec<i64>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let held: Vec<(i64, String)> = all(
            &tx,
            "SELECT id, COALESCE(host, '') FROM runs WHERE status IN ('leased', 'running')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
        let owners: Vec<String> = all(
            &tx,
            "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL AND status = 'queued'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
        for o in owners {
            if !alive(&o) {
                exec(
                    &tx,
                    "UPDATE runs SET owner = NULL WHERE owner = ?1 AND status = 'queued'",
                    [&o],
                )
                .map_err(db_err)?;
            }
        }
        let mut out = Vec::new();
        for (id, host) in held {
            if !alive(&host) {
                exec(&tx,
                    "UPDATE runs SET status = 'queued', pid = NULL, not_before = 0, owner = NULL WHERE id = ?1",
                    [id],
                )
                .map_err(db_err)?;
                Store::event(&tx, id, "queued", &format!("host {host} died"))?;
                out.push(id);
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Unfinished runs that `host` runs or may run: queued ones it owns or nobody owns, and
    /// those it holds.
    pub fn pending_for(&self, host: &str) -> HostResult<i64> {
        one(
            &self.conn,
            "SELECT COUNT(*) FROM runs WHERE (status = 'queued' AND (owner IS NULL OR owner = ?1))
                 OR (status IN ('leased', 'running') AND host = ?1)",
            [host],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    pub fn add_metrics(&mut self, id: i64, ms: &[Metric]) -> HostResult<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut st = tx.prepare_cached("INSERT INTO metrics (run_id, name, value, step, ts) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(db_err)?;
            for m in ms {
                let ts = if m.ts > 0.0 { m.ts } else { now() };
                st.execute(params![id, m.name, m.value, m.step, ts])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Metric history of a run in step order (one name, or all).
    pub fn metrics(&self, id: i64, name: Option<&str>) -> HostResult<Vec<Metric>> {
        all(&self.conn, "SELECT name, value, step, ts FROM metrics WHERE run_id = ?1 AND (?2 IS NULL OR name = ?2) ORDER BY name, step, ts", params![id, name], |r| {
                Ok(Metric {
                    name: r.get(0)?,
                    value: r.get(1)?,
                    step: r.get(2)?,
                    ts: r.get(3)?,
                })
            }).map_err(db_err)
    }

    pub fn params(&self, id: i64) -> HostResult<Vec<(String, Value)>> {
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

    pub fn tags(&self, id: i64) -> HostResult<Vec<(String, String)>> {
        all(
            &self.conn,
            "SELECT key, value FROM tags WHERE run_id = ?1 ORDER BY key",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)
    }

    pub fn set_tag(&mut self, id: i64, key: &str, value: &str) -> HostResult<()> {
        exec(
            &self.conn,
            "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, key, crate::redact::apply(value)],
        )
        .map_err(db_err)
        .map(|_| ())
    }

    /// The newest event's id (0 when there is none): a cursor for `events_since`.
    pub fn last_event_id(&self) -> HostResult<i64> {
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
    pub fn events_since(&self, cursor: i64) -> HostResult<Vec<(i64, i64, String)>> {
        all(
            &self.conn,
            "SELECT id, run_id, status FROM events WHERE id > ?1 ORDER BY id",
            [cursor],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(db_err)
    }

    /// Newest first; `status` filters; `parent` lists the children of a run.
    pub fn list(
        &self,
        status: Option<&str>,
        parent: Option<i64>,
        limit: usize,
    ) -> HostResult<Vec<Run>> {
        all(&self.conn, &format!(
                "SELECT {RUN_COLS} FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR parent_id = ?2) ORDER BY id DESC LIMIT ?3"
            ), params![status, parent, limit as i64], run_row).map_err(db_err)
    }

    /// `(status, detail)` of every transition of a run, in order.
    pub fn events(&self, id: i64) -> HostResult<Vec<(String, String)>> {
        all(
            &self.conn,
            "SELECT status, detail FROM events WHERE run_id = ?1 ORDER BY id",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str) -> NewRun {
        NewRun {
            name: name.into(),
            spec: json!({"command": ["true"]}),
            ..Default::default()
        }
    }

    #[test]
    fn migrations_run_once_and_versions_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = Store::open(t.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let e = Store::open(t.path()).err().unwrap();
        assert!(
            e.message.contains("newer than this labhost"),
            "{}",
            e.message
        );
    }

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
        assert_eq!((c.id, c.attempt, c.status.as_str()), (a.id, 1, "leased"));
        s.set_running(a.id, 4242).unwrap();
        assert_eq!(
            s.finish(a.id, "completed", Some(0), None).unwrap(),
            "completed"
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
        s.finish(a.id, "failed", Some(1), None).unwrap();
        assert!(s.claim_next("h").unwrap().is_none());
        assert_eq!(
            s.get(b.id).unwrap().error.as_deref(),
            Some(format!("dependency {} did not complete", a.id).as_str())
        );
        s.claim_next("h").unwrap();
        assert_eq!(s.get(c.id).unwrap().status, "failed");
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
        assert_eq!(s.finish(a.id, "failed", Some(2), None).unwrap(), "queued");
        assert!(
            s.claim_next("h").unwrap().is_none(),
            "retry waits for its backoff"
        );
        s.conn
            .execute("UPDATE runs SET not_before = 0", [])
            .unwrap();
        let again = s.claim_next("h").unwrap().unwrap();
        assert_eq!(again.attempt, 2);
        assert_eq!(
            s.finish(a.id, "failed", Some(2), None).unwrap(),
            "failed",
            "no retries left"
        );
        let (b, _) = s.create(&job("b")).unwrap();
        s.claim_next("dead-host").unwrap();
        s.set_running(b.id, 1).unwrap();
        assert_eq!(
            s.requeue_orphans(&|h| h != "dead-host").unwrap(),
            vec![b.id]
        );
        let b2 = s.claim_next("h2").unwrap().unwrap();
        assert_eq!(
            (b2.id, b2.attempt, b2.run_dir.clone()),
            (b.id, 2, b.run_dir.clone())
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
        s.requeue_orphans(&|h| h != "h1").unwrap();
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
                        s.finish(r.id, "completed", Some(0), None).unwrap();
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

    #[test]
    fn metrics_history_and_children() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        let (sweep, _) = s
            .create(&NewRun {
                kind: "sweep".into(),
                ..job("sweep")
            })
            .unwrap();
        let (trial, _) = s
            .create(&NewRun {
                kind: "trial".into(),
                parent_id: Some(sweep.id),
                ..job("t0")
            })
            .unwrap();
        s.add_metrics(
            trial.id,
            &[
                Metric {
                    name: "loss".into(),
                    value: 0.5,
                    step: 2,
                    ts: 0.0,
                },
                Metric {
                    name: "loss".into(),
                    value: 0.9,
                    step: 1,
                    ts: 0.0,
                },
                Metric {
                    name: "acc".into(),
                    value: 0.7,
                    step: 1,
                    ts: 0.0,
                },
            ],
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
        assert_eq!(
            s.list(Some("queued"), None, 1).unwrap()[0].id,
            trial.id,
            "newest first"
        );
        s.set_tag(trial.id, "fold", "0").unwrap();
        assert_eq!(
            s.tags(trial.id).unwrap(),
            vec![("fold".to_string(), "0".to_string())]
        );
    }
}
