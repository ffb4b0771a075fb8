//! What MLflow clients keep besides runs, metrics, params and tags: experiment tags, renames
//! and lifecycles, run lifecycles (a deleted run is hidden from searches until restored), and
//! documents — MLflow objects that labhost itself never reads (logged models, registered models
//! with their versions, a run's dataset inputs and model outputs) — stored as the JSON the
//! REST API serves, one row per `(kind, key)`.
use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{all, db_err, exec, one, Store};
use crate::error::{LabError, LabResult};

/// A run's or experiment's lifecycle stage as MLflow names it.
pub const ACTIVE: &str = "active";
pub const DELETED: &str = "deleted";

/// Document kinds.
pub const RUN_INPUTS: &str = "run_inputs";
pub const RUN_OUTPUTS: &str = "run_outputs";
pub const LOGGED_MODEL: &str = "logged_model";
pub const REGISTERED_MODEL: &str = "registered_model";

impl Store {
    /// Creates experiment `name` with tags; `None` when the name is taken.
    pub fn create_experiment(
        &mut self,
        name: &str,
        tags: &[(String, String)],
    ) -> LabResult<Option<i64>> {
        let tx = self.write()?;
        let now = crate::clock::unix();
        let n = exec(
            &tx,
            "INSERT OR IGNORE INTO experiments (name, created, updated) VALUES (?1, ?2, ?2)",
            params![name, now],
        )
        .map_err(db_err)?;
        if n == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        for (k, v) in tags {
            exec(
                &tx,
                "INSERT OR REPLACE INTO experiment_tags (experiment_id, key, value) VALUES (?1, ?2, ?3)",
                params![id, k, v],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Some(id))
    }

    /// Renames an experiment; false when another one has the name.
    pub fn rename_experiment(&mut self, id: i64, name: &str) -> LabResult<bool> {
        let tx = self.write()?;
        let taken: bool = one(
            &tx,
            "SELECT COUNT(*) FROM experiments WHERE name = ?1 AND id != ?2",
            params![name, id],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(db_err)?;
        if taken {
            return Ok(false);
        }
        exec(
            &tx,
            "UPDATE experiments SET name = ?2, updated = ?3 WHERE id = ?1",
            params![id, name, crate::clock::unix()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    /// Sets an experiment's lifecycle stage ([`ACTIVE`] or [`DELETED`]); its runs follow, as
    /// MLflow's.
    pub fn set_experiment_lifecycle(&mut self, id: i64, stage: &str) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "UPDATE experiments SET lifecycle = ?2, updated = ?3 WHERE id = ?1",
            params![id, stage, crate::clock::unix()],
        )
        .map_err(db_err)?;
        exec(
            &tx,
            "UPDATE runs SET lifecycle = ?2 WHERE COALESCE(experiment_id, 0) = ?1",
            params![id, stage],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    pub fn set_experiment_tag(&mut self, id: i64, key: &str, value: &str) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "INSERT OR REPLACE INTO experiment_tags (experiment_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, key, value],
        )
        .map_err(db_err)?;
        exec(
            &tx,
            "UPDATE experiments SET updated = ?2 WHERE id = ?1",
            params![id, crate::clock::unix()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Deletes an experiment tag; false when it was not there.
    pub fn delete_experiment_tag(&mut self, id: i64, key: &str) -> LabResult<bool> {
        let tx = self.write()?;
        let n = exec(
            &tx,
            "DELETE FROM experiment_tags WHERE experiment_id = ?1 AND key = ?2",
            params![id, key],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n > 0)
    }

    /// An experiment's tags, by key.
    pub fn experiment_tags(&self, id: i64) -> LabResult<Vec<(String, String)>> {
        all(
            &self.conn,
            "SELECT key, value FROM experiment_tags WHERE experiment_id = ?1 ORDER BY key",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)
    }

    /// Sets a run's lifecycle stage ([`ACTIVE`] or [`DELETED`]).
    pub fn set_run_lifecycle(&mut self, id: i64, stage: &str) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "UPDATE runs SET lifecycle = ?2 WHERE id = ?1",
            params![id, stage],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// A finished record run is running again (an MLflow client resumed it).
    pub fn reopen_record(&mut self, id: i64) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "UPDATE runs SET status = 'running', ended = NULL WHERE id = ?1",
            [id],
        )
        .map_err(db_err)?;
        super::event(&tx, id, super::RunStatus::Running, "resumed by a client")?;
        tx.commit().map_err(db_err)
    }

    /// Sets (or clears) a record run's end time: an MLflow client's own.
    pub fn set_run_end(&mut self, id: i64, ended: Option<f64>) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "UPDATE runs SET ended = ?2 WHERE id = ?1",
            params![id, ended],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// A run's lifecycle stage.
    pub fn run_lifecycle(&self, id: i64) -> LabResult<String> {
        one(
            &self.conn,
            "SELECT lifecycle FROM runs WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| LabError::new("jobs.not_found", format!("no run {id}")))
    }

    /// The ids of deleted runs.
    pub fn deleted_runs(&self) -> LabResult<HashSet<i64>> {
        Ok(all(
            &self.conn,
            "SELECT id FROM runs WHERE lifecycle = 'deleted'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?
        .into_iter()
        .collect())
    }

    /// The document `(kind, key)`, if stored.
    pub fn doc(&self, kind: &str, key: &str) -> LabResult<Option<Value>> {
        let text: Option<String> = one(
            &self.conn,
            "SELECT doc FROM documents WHERE kind = ?1 AND key = ?2",
            params![kind, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| LabError::new("jobs.store", format!("document {kind}/{key}: {e}")))
        })
        .transpose()
    }

    /// Stores (or replaces) a document; its creation time stays that of the first put.
    pub fn put_doc(&mut self, kind: &str, key: &str, doc: &Value) -> LabResult<()> {
        let tx = self.write()?;
        exec(
            &tx,
            "INSERT INTO documents (kind, key, created, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
            params![kind, key, crate::clock::unix(), doc.to_string()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Deletes a document; false when it was not there.
    pub fn delete_doc(&mut self, kind: &str, key: &str) -> LabResult<bool> {
        let tx = self.write()?;
        let n = exec(
            &tx,
            "DELETE FROM documents WHERE kind = ?1 AND key = ?2",
            params![kind, key],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n > 0)
    }

    /// Every document of a kind, oldest first.
    pub fn docs(&self, kind: &str) -> LabResult<Vec<(String, Value)>> {
        let rows: Vec<(String, String)> = all(
            &self.conn,
            "SELECT key, doc FROM documents WHERE kind = ?1 ORDER BY created, rowid",
            [kind],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(k, t)| {
                serde_json::from_str(&t)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| LabError::new("jobs.store", format!("document {kind}/{k}: {e}")))
            })
            .collect()
    }

    /// `(name, digest, context)` of each dataset a run logged as an input.
    pub fn dataset_keys(&self, run: i64) -> LabResult<Vec<(String, String, String)>> {
        let Some(doc) = self.doc(RUN_INPUTS, &run.to_string())? else {
            return Ok(Vec::new());
        };
        Ok(doc["dataset_inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let context = i["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["key"] == "mlflow.data.context")
                    .and_then(|t| t["value"].as_str())
                    .unwrap_or("")
                    .to_string();
                let text = |k: &str| i["dataset"][k].as_str().unwrap_or("").to_string();
                (text("name"), text("digest"), context)
            })
            .collect())
    }
}
