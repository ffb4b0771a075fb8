//! The run store every module shares: `<state>/labhost.db`, SQLite (bundled), WAL,
//! `synchronous=NORMAL`, a versioned schema ([`schema`]). Every transition is written (with an
//! event row) before it takes effect, so a restarted host knows exactly what happened.
//!
//! - [`types`]: [`RunStatus`], [`RunKind`], [`StoredSpec`], the rows;
//! - [`runs`]: recording runs, reading them, cancelling them (with a reason), run folders;
//! - [`queue`]: claims, leases, ends of attempts, retries, orphans of dead hosts;
//! - [`tracking`]: params, tags, metric histories (one run's, or all children's), experiments.
//! - [`mlflow`]: experiment tags and lifecycles, run lifecycles, MLflow documents (logged
//!   models, the model registry, dataset inputs).
//!
//! Claiming is one `BEGIN IMMEDIATE` transaction, so two hosts on the same database never
//! take the same run. Hosts hold an exclusive flock on `<state>/hosts/<host>.lock` while they
//! live; runs leased by a host whose lock is free are orphans and go back to the queue.
//! Times are [`crate::clock::unix`] seconds.
pub mod mlflow;
pub mod queue;
pub mod report;
pub mod runs;
pub mod schema;
pub mod search;
pub mod tracking;
pub mod types;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::{LabError, LabResult};
pub use runs::ensure_run_dir;
use schema::MIGRATIONS;
pub use types::{Experiment, Metric, NewRun, Run, RunIn, RunKind, RunStatus, Started, StoredSpec};

/// How long a statement waits for another process's lock before failing
/// (`LABHOST_BUSY_TIMEOUT`, else 30 s).
fn busy_timeout() -> Duration {
    crate::config::busy_timeout().unwrap_or(Duration::from_secs(30))
}

pub struct Store {
    conn: Connection,
    state: PathBuf,
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

fn db_err(e: rusqlite::Error) -> LabError {
    LabError::new("jobs.store", format!("state database: {e}"))
}

/// Appends a transition to the event log.
fn event(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    status: RunStatus,
    detail: &str,
) -> LabResult<()> {
    exec(
        tx,
        "INSERT INTO events (run_id, ts, status, detail) VALUES (?1, ?2, ?3, ?4)",
        params![run, crate::clock::unix(), status, detail],
    )
    .map_err(db_err)?;
    Ok(())
}

enum OpenError {
    Busy(rusqlite::Error),
    Other(LabError),
}
use OpenError::{Busy, Other};

/// This process's connection to the state database: the job host, its workers and the script
/// share one, so a commit by one does not throw away the page cache of the others (SQLite
/// drops a connection's cache whenever another connection has written).
static SHARED: std::sync::Mutex<Option<Store>> = std::sync::Mutex::new(None);

/// Runs `f` on the shared connection to the database in `state` (opened on first use).
pub fn with<T>(state: &Path, f: impl FnOnce(&mut Store) -> LabResult<T>) -> LabResult<T> {
    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().is_none_or(|s| s.state != state) {
        *g = Some(Store::open(state)?);
    }
    f(g.as_mut().expect("opened above"))
}

/// Runs `f` on this process's connection to the database of its state directory
/// (`crate::state::dir`).
pub fn with_current<T>(f: impl FnOnce(&mut Store) -> LabResult<T>) -> LabResult<T> {
    with(&crate::state::dir()?, f)
}

impl Store {
    /// Opens (creating and migrating) the database in `state`.
    pub fn open(state: &Path) -> LabResult<Store> {
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
        conn.busy_timeout(busy_timeout()).map_err(db_err)?;
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
            return Err(Other(LabError::new(
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
    pub fn no_autocheckpoint(&self) -> LabResult<()> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db_err)
    }

    /// Copies what it can of the WAL into the database without blocking writers.
    pub fn checkpoint(&self) -> LabResult<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(db_err)
    }

    /// Copies the whole WAL into the database and empties it (when a host exits, so a state
    /// folder does not keep a WAL many times the database's size). Best effort: it gives up
    /// at once, without waiting, if another process is reading or writing.
    pub fn checkpoint_truncate(&self) -> LabResult<()> {
        let busy = self.conn.busy_timeout(Duration::ZERO);
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(db_err);
        busy.and(self.conn.busy_timeout(busy_timeout()))
            .map_err(db_err)?;
        match r? {
            0 => Ok(()),
            _ => Err(LabError::new(
                "jobs.store",
                "the WAL is in use by another process",
            )),
        }
    }

    pub fn schema_version(&self) -> LabResult<i64> {
        one(&self.conn, "PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)
    }

    /// Runs `f` in one read transaction (within the one already open, if any): a consistent
    /// view, and SQLite takes and drops its locks once instead of at each statement (a
    /// sweep's report of 1,000 trials made 16,000 `fcntl` calls, 0.2 s, read statement by
    /// statement).
    pub fn snapshot<T>(&self, f: impl FnOnce(&Store) -> LabResult<T>) -> LabResult<T> {
        if !self.conn.is_autocommit() {
            return f(self);
        }
        let tx = self.conn.unchecked_transaction().map_err(db_err)?;
        let out = f(self)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// A write transaction that takes the lock at once (no upgrade deadlocks).
    fn write(&mut self) -> LabResult<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn job(name: &str) -> NewRun {
        NewRun {
            name: name.into(),
            spec: StoredSpec {
                command: crate::command::Command::Argv(vec!["true".into()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Test access to the raw connection (clock tricks, version bumps).
    pub fn sql(s: &Store, q: &str) {
        s.conn.execute_batch(q).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::sql;
    use super::*;

    #[test]
    fn migrations_run_once_and_versions_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = Store::open(t.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        sql(&s, "PRAGMA user_version = 99");
        drop(s);
        let e = Store::open(t.path()).err().unwrap();
        assert!(
            e.message.contains("newer than this labhost"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_version_2_database_is_migrated_and_keeps_its_runs() {
        let t = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(t.path().join("labhost.db")).unwrap();
            for m in &MIGRATIONS[..2] {
                c.execute_batch(m).unwrap();
            }
            c.execute_batch(
                r#"PRAGMA user_version = 2;
                INSERT INTO runs (spec, status, created) VALUES ('{"command":"echo hi","cwd":null,"env":{},"num_gpus":0,"timeout":null}', 'completed', 1.0);"#,
            )
            .unwrap();
        }
        let s = Store::open(t.path()).unwrap();
        let r = s.get(1).unwrap();
        assert_eq!((r.status, r.kind), (RunStatus::Completed, RunKind::Job));
        assert_eq!(
            r.spec.command,
            crate::command::Command::Shell("echo hi".into())
        );
        assert_eq!(r.cancel_reason, None);
    }
}
