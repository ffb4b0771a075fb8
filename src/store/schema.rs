//! Schema migrations, applied in order inside one `BEGIN IMMEDIATE` transaction;
//! `PRAGMA user_version` is how many have run. Append only: a released migration never
//! changes.

pub const MIGRATIONS: &[&str] = &[
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
    // v3: why a run was cancelled (by whom or by which policy), and experiments (name → id,
    // as MLflow has them) that runs belong to.
    r#"
ALTER TABLE runs ADD COLUMN cancel_reason TEXT;
CREATE TABLE experiments (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  REAL NOT NULL,
    artifact_location TEXT NOT NULL DEFAULT '',
    lifecycle TEXT NOT NULL DEFAULT 'active'
);
ALTER TABLE runs ADD COLUMN experiment_id INTEGER REFERENCES experiments(id);
CREATE INDEX runs_experiment ON runs(experiment_id);
CREATE INDEX metrics_name ON metrics(name, run_id, step);
"#,
    // v4: what finds an attempt's processes again after its host died: the leader's start
    // time (so a recycled pid is never hit; the pgid is the pid) and the job's cgroup. A
    // cancel of a running run is a request (cancel_reason set, status unchanged) until its
    // host has killed it.
    r#"
ALTER TABLE runs ADD COLUMN leader_start INTEGER;
ALTER TABLE runs ADD COLUMN cgroup TEXT;
"#,
    // v5: a metric may be NaN (a diverged loss; MLflow keeps them), which SQLite stores as
    // NULL: the NOT NULL on metrics.value made a whole batch with one NaN fail.
    r#"
CREATE TABLE metrics_v5 (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name   TEXT NOT NULL,
    value  REAL,
    step   INTEGER NOT NULL,
    ts     REAL NOT NULL
);
INSERT INTO metrics_v5 (rowid, run_id, name, value, step, ts) SELECT rowid, run_id, name, value, step, ts FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_v5 RENAME TO metrics;
CREATE INDEX metrics_run ON metrics(run_id, name, step);
CREATE INDEX metrics_name ON metrics(name, run_id, step);
"#,
    // v6: what MLflow 3 clients keep besides runs. Experiment 0 "Default" becomes a row (so
    // it can carry tags, be renamed or deleted); experiments and runs have a lifecycle
    // (deleted runs stay, hidden from searches, until restored); experiment tags; and
    // documents: MLflow objects labhost itself never reads (logged models, registered models
    // with their versions and aliases, a run's dataset inputs and model outputs), kept as the
    // JSON the REST API serves, one row per object.
    r#"
ALTER TABLE experiments ADD COLUMN updated REAL;
INSERT INTO experiments (id, name, created)
    SELECT 0, 'Default', (julianday('now') - 2440587.5) * 86400.0
    WHERE NOT EXISTS (SELECT 1 FROM experiments WHERE id = 0 OR name = 'Default');
ALTER TABLE runs ADD COLUMN lifecycle TEXT NOT NULL DEFAULT 'active';
CREATE TABLE experiment_tags (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE documents (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    created REAL NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"#,
    // v7: a metric point belongs to the attempt that reported it; reads take the run's
    // current attempt, so a retried or resumed run is judged on its own reports. Points
    // recorded before are taken as the current attempt's.
    r#"
ALTER TABLE metrics ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
UPDATE metrics SET attempt = COALESCE((SELECT attempt FROM runs WHERE runs.id = metrics.run_id), 0);
"#,
    // v8: which points came from the job's metrics file: the job supervisor that outlived its
    // host reads an attempt's file again and replaces exactly those.
    r#"
ALTER TABLE metrics ADD COLUMN from_file INTEGER NOT NULL DEFAULT 0;
"#,
    // v9: the retries a run was given after it failed, since it was last submitted: an
    // attempt stopped by its host's exit or death was counted as one (by `attempt`). Runs
    // recorded before count the retries their events name.
    r#"
ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET retries = (SELECT COUNT(*) FROM events e
    WHERE e.run_id = runs.id AND e.status = 'queued' AND e.detail LIKE 'retry %');
"#,
];
