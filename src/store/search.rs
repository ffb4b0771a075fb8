//! Searching runs with MLflow's filter and order-by grammar: clauses joined by AND (OR is rejected);
//! `metrics.<k>`, `params.<k>`, `tags.<k>`, `attributes.<k>` (backticks around keys with
//! special characters; `tags.mlflow.parentRunId` also parses); metrics and numeric attributes
//! compare with `= != < <= > >=`, params, tags and string attributes with `= != LIKE ILIKE`;
//! `attributes.run_id IN (…)` / `NOT IN (…)`; strings in single (or double) quotes.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::params;

use super::{all, db_err, runs::run_row, runs::RUN_COLS, Run, RunStatus, Store};
use crate::error::{LabError, LabResult};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Metric,
    Param,
    Tag,
    Attr,
    /// `dataset.name`, `dataset.digest`, `dataset.context` (any of the run's inputs).
    Dataset,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Num(f64),
    Str(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    kind: Kind,
    key: String,
    op: String,
    value: Lit,
}

/// A parsed filter: clauses, all of which must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    clauses: Vec<Clause>,
    /// Which lifecycle stages match (MLflow's `run_view_type`); active runs by default.
    pub view: View,
}

/// MLflow's `ViewType`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum View {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl View {
    /// `ACTIVE_ONLY`, `DELETED_ONLY`, `ALL` (MLflow's names).
    pub fn parse(s: &str) -> Option<View> {
        match s {
            "ACTIVE_ONLY" | "1" => Some(View::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(View::DeletedOnly),
            "ALL" | "3" => Some(View::All),
            _ => None,
        }
    }

    pub fn shows(self, deleted: bool) -> bool {
        match self {
            View::ActiveOnly => !deleted,
            View::DeletedOnly => deleted,
            View::All => true,
        }
    }
}

/// One `order_by` term.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    kind: Kind,
    key: String,
    asc: bool,
}

fn bad(m: impl std::fmt::Display) -> LabError {
    LabError::new("track.invalid_filter", m.to_string())
}

const NUM_ATTRS: &[&str] = &["start_time", "end_time", "created"];
const STR_ATTRS: &[&str] = &[
    "run_id",
    "run_name",
    "status",
    "artifact_uri",
    "user_id",
    "kind",
    "experiment_id",
];

struct Lexer<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Lexer<'a> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with(char::is_whitespace) {
            self.i += self.s[self.i..]
                .chars()
                .next()
                .map(char::len_utf8)
                .unwrap_or(1);
        }
    }
    fn done(&mut self) -> bool {
        self.ws();
        self.i >= self.s.len()
    }
    fn word_ci(&mut self, w: &str) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w) {
            let after = rest[w.len()..].chars().next();
            if after.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                self.i += w.len();
                return true;
            }
        }
        false
    }
    /// `kind.key` with `key` dotted or in backticks / double quotes.
    fn ident(&mut self) -> LabResult<(Kind, String)> {
        self.ws();
        let rest = &self.s[self.i..];
        let dot = rest.find('.').ok_or_else(|| bad(format!("Invalid identifier at '{rest}': want metrics.<key>, params.<key>, tags.<key> or attributes.<key>")))?;
        let kind = match rest[..dot].to_ascii_lowercase().as_str() {
            "metric" | "metrics" => Kind::Metric,
            "param" | "params" | "parameter" | "parameters" => Kind::Param,
            "tag" | "tags" => Kind::Tag,
            "dataset" | "datasets" => Kind::Dataset,
            "attribute" | "attributes" | "attr" | "run" => Kind::Attr,
            other => return Err(bad(format!("Invalid entity type '{other}'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"))),
        };
        self.i += dot + 1;
        let key = self.key()?;
        if key.is_empty() {
            return Err(bad("Invalid identifier: empty key"));
        }
        if kind == Kind::Dataset && !["name", "digest", "context"].contains(&key.as_str()) {
            return Err(bad(format!("Invalid dataset key '{key}' specified. Valid keys are ['name', 'digest', 'context']")));
        }
        if kind == Kind::Attr
            && !NUM_ATTRS.contains(&key.as_str())
            && !STR_ATTRS.contains(&key.as_str())
        {
            return Err(bad(format!("Invalid attribute key '{key}' specified. Valid keys are {NUM_ATTRS:?} and {STR_ATTRS:?}")));
        }
        Ok((kind, key))
    }
    /// A key: dotted up to a space or an operator, or in backticks / double quotes.
    fn key(&mut self) -> LabResult<String> {
        let rest = &self.s[self.i..];
        if let Some(q) = rest.strip_prefix('`').or_else(|| rest.strip_prefix('"')) {
            let close = if rest.starts_with('`') { '`' } else { '"' };
            let end = q
                .find(close)
                .ok_or_else(|| bad(format!("Unterminated key in '{rest}'")))?;
            self.i += end + 2;
            return Ok(q[..end].to_string());
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || "=!<>(".contains(c))
            .unwrap_or(rest.len());
        self.i += end;
        Ok(rest[..end].to_string())
    }
    fn op(&mut self) -> LabResult<String> {
        self.ws();
        for o in ["<=", ">=", "!=", "=", "<", ">"] {
            if self.s[self.i..].starts_with(o) {
                self.i += o.len();
                return Ok(o.into());
            }
        }
        for w in ["NOT IN", "ILIKE", "LIKE", "IN"] {
            let save = self.i;
            let mut ok = true;
            for part in w.split(' ') {
                if !self.word_ci(part) {
                    ok = false;
                    break;
                }
            }
            if ok {
                return Ok(w.into());
            }
            self.i = save;
        }
        Err(bad(format!(
            "Invalid comparator at '{}'",
            &self.s[self.i..]
        )))
    }
    fn string(&mut self) -> LabResult<String> {
        self.ws();
        let rest = &self.s[self.i..];
        let q = rest
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(|| bad(format!("Expected a quoted string at '{rest}'")))?;
        let body = &rest[1..];
        let end = body
            .find(q)
            .ok_or_else(|| bad(format!("Unterminated string at '{rest}'")))?;
        self.i += end + 2;
        Ok(body[..end].to_string())
    }
    fn value(&mut self, op: &str) -> LabResult<Lit> {
        self.ws();
        if op.ends_with("IN") {
            if !self.s[self.i..].starts_with('(') {
                return Err(bad("IN needs a parenthesised list of strings"));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                out.push(self.string()?);
                self.ws();
                if self.s[self.i..].starts_with(',') {
                    self.i += 1;
                } else if self.s[self.i..].starts_with(')') {
                    self.i += 1;
                    return Ok(Lit::List(out));
                } else {
                    return Err(bad("IN list: want ',' or ')'"));
                }
            }
        }
        let rest = &self.s[self.i..];
        if rest.starts_with('\'') || rest.starts_with('"') {
            return self.string().map(Lit::Str);
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let n = rest[..end]
            .parse::<f64>()
            .map_err(|_| bad(format!("Expected a number or a quoted string at '{rest}'")))?;
        self.i += end;
        Ok(Lit::Num(n))
    }
}

impl Filter {
    /// Parses `metrics.acc > 0.9 and params.lr = '0.1'` (empty → matches everything).
    pub fn parse(text: &str) -> LabResult<Filter> {
        let mut lx = Lexer { s: text, i: 0 };
        let mut out = Vec::new();
        if lx.done() {
            return Ok(Filter {
                clauses: out,
                view: View::default(),
            });
        }
        loop {
            let (kind, key) = lx.ident()?;
            let op = lx.op()?;
            let value = lx.value(&op)?;
            let numeric =
                kind == Kind::Metric || (kind == Kind::Attr && NUM_ATTRS.contains(&key.as_str()));
            let ok = match (&value, op.as_str()) {
                (Lit::List(_), _) => kind == Kind::Attr && key == "run_id",
                (Lit::Num(_), o) => numeric && ["=", "!=", "<", "<=", ">", ">="].contains(&o),
                (Lit::Str(_), o) => !numeric && ["=", "!=", "LIKE", "ILIKE"].contains(&o),
            };
            if !ok {
                return Err(bad(format!(
                    "Invalid clause(s) in filter string: '{}' cannot compare with '{op}' against {}",
                    match kind {
                        Kind::Metric => format!("metrics.{key}"),
                        Kind::Param => format!("params.{key}"),
                        Kind::Tag => format!("tags.{key}"),
                        Kind::Attr => format!("attributes.{key}"),
                        Kind::Dataset => format!("dataset.{key}"),
                    },
                    match value {
                        Lit::Num(_) => "a number",
                        Lit::Str(_) => "a string",
                        Lit::List(_) => "a list",
                    }
                )));
            }
            out.push(Clause {
                kind,
                key,
                op,
                value,
            });
            if lx.done() {
                return Ok(Filter {
                    clauses: out,
                    view: View::default(),
                });
            }
            if lx.word_ci("OR") {
                return Err(bad(
                    "Invalid clause(s) in filter string: OR is not supported, only AND",
                ));
            }
            if !lx.word_ci("AND") {
                return Err(bad(format!(
                    "Invalid clause(s) in filter string: want AND at '{}'",
                    &lx.s[lx.i..]
                )));
            }
        }
    }
}

/// `["metrics.val_loss ASC", "attributes.start_time DESC"]`.
pub fn parse_order(terms: &[String]) -> LabResult<Vec<Order>> {
    terms
        .iter()
        .map(|t| {
            let mut lx = Lexer { s: t, i: 0 };
            let (kind, key) = lx.ident()?;
            let asc = if lx.word_ci("DESC") {
                false
            } else {
                lx.word_ci("ASC");
                true
            };
            if !lx.done() {
                return Err(bad(format!("Invalid order_by clause '{t}'")));
            }
            Ok(Order { kind, key, asc })
        })
        .collect()
}

/// SQL LIKE: `%` any run, `_` one character.
fn like(text: &str, pat: &str, ci: bool) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = if ci {
        (
            text.to_lowercase().chars().collect(),
            pat.to_lowercase().chars().collect(),
        )
    } else {
        (text.chars().collect(), pat.chars().collect())
    };
    fn m(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| m(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && m(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && m(&t[1..], &p[1..]),
        }
    }
    m(&t, &p)
}

/// A run with what a search looks at.
#[derive(Debug, Clone)]
pub struct Found {
    pub run: Run,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// `(name, digest, context)` of each dataset input, when the filter needs them.
    pub datasets: Vec<(String, String, String)>,
}

/// An experiment's active runs, how many of them run now, and the newest start.
pub type ExperimentStats = (i64, i64, Option<f64>);

/// Some of a run's metrics, params and tags: what a search matches and sorts by.
#[derive(Debug, Default)]
struct Known {
    metrics: BTreeMap<String, f64>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Queued | RunStatus::Leased => "SCHEDULED",
        RunStatus::Running => "RUNNING",
        RunStatus::Completed => "FINISHED",
        RunStatus::Failed | RunStatus::TimedOut => "FAILED",
        RunStatus::Cancelled => "KILLED",
    }
}

enum V {
    N(f64),
    S(String),
}

fn get(f: &Found, kind: Kind, key: &str) -> Option<V> {
    match kind {
        Kind::Metric => f.metrics.get(key).map(|v| V::N(*v)),
        Kind::Param => f.params.get(key).map(|v| V::S(v.clone())),
        Kind::Tag => match key {
            "mlflow.parentRunId" => f
                .tags
                .get(key)
                .cloned()
                .or(f.run.parent_id.map(|p| p.to_string()))
                .map(V::S),
            "mlflow.runName" => Some(V::S(f.run.name.clone())),
            _ => f.tags.get(key).map(|v| V::S(v.clone())),
        },
        Kind::Dataset => None,
        Kind::Attr => Some(match key {
            "start_time" => V::N((f.run.started.unwrap_or(f.run.created) * 1000.0).floor()),
            "end_time" => V::N(
                f.run
                    .ended
                    .map(|e| (e * 1000.0).floor())
                    .unwrap_or(f64::NAN),
            ),
            "created" => V::N((f.run.created * 1000.0).floor()),
            "run_id" => V::S(f.run.id.to_string()),
            "run_name" => V::S(f.run.name.clone()),
            "status" => V::S(status_word(f.run.status).into()),
            "kind" => V::S(f.run.kind.as_str().into()),
            "experiment_id" => V::S(f.run.experiment_id.unwrap_or(0).to_string()),
            "artifact_uri" => V::S(format!(
                "mlflow-artifacts:/{}/{}/artifacts",
                f.run.experiment_id.unwrap_or(0),
                f.run.id
            )),
            _ => V::S(String::new()),
        }),
    }
}

impl Filter {
    /// Whether a clause is about datasets (they are read only then).
    pub fn needs_datasets(&self) -> bool {
        self.clauses.iter().any(|c| c.kind == Kind::Dataset)
    }

    pub fn matches(&self, f: &Found) -> bool {
        if !self.view.shows(f.run.deleted) {
            return false;
        }
        self.clauses.iter().all(|c| {
            if c.kind == Kind::Dataset {
                return f.datasets.iter().any(|d| {
                    let s = match c.key.as_str() {
                        "name" => &d.0,
                        "digest" => &d.1,
                        _ => &d.2,
                    };
                    match (&c.value, c.op.as_str()) {
                        (Lit::Str(p), "=") => s == p,
                        (Lit::Str(p), "!=") => s != p,
                        (Lit::Str(p), "LIKE") => like(s, p, false),
                        (Lit::Str(p), "ILIKE") => like(s, p, true),
                        (Lit::List(l), op) => (op == "IN") == l.contains(s),
                        _ => false,
                    }
                });
            }
            let Some(v) = get(f, c.kind, &c.key) else {
                return false;
            };
            match (&c.value, v) {
                (Lit::List(l), V::S(s)) => (c.op == "IN") == l.contains(&s),
                (Lit::Num(n), V::N(x)) => match c.op.as_str() {
                    "=" => x == *n,
                    "!=" => x != *n,
                    "<" => x < *n,
                    "<=" => x <= *n,
                    ">" => x > *n,
                    _ => x >= *n,
                },
                (Lit::Str(p), V::S(s)) => match c.op.as_str() {
                    "=" => s == *p,
                    "!=" => s != *p,
                    "LIKE" => like(&s, p, false),
                    _ => like(&s, p, true),
                },
                _ => false,
            }
        })
    }
}

/// A param as text: params are kept as JSON; a string is its text, anything else its JSON.
fn json_text(v: &serde_json::Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A param row's stored text as [`json_text`] shows it.
fn param_text(stored: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&stored) {
        Ok(v) => json_text(&v),
        Err(_) => stored,
    }
}

impl Store {
    /// A run with its latest metrics, params (as text) and tags.
    pub fn found(&self, r: Run) -> LabResult<Found> {
        let metrics = self
            .latest_metrics(r.id)?
            .into_iter()
            .map(|m| (m.name, m.value))
            .collect();
        let params = self
            .params(r.id)?
            .into_iter()
            .map(|(k, v)| (k, json_text(&v)))
            .collect();
        let tags = self.tags(r.id)?.into_iter().collect();
        Ok(Found {
            run: r,
            metrics,
            params,
            tags,
            datasets: Vec::new(),
        })
    }

    /// Runs of the given experiments (all when empty) that match `filter`, sorted by `order`
    /// (then newest first), from `offset`, at most `limit`; and the offset of the next page.
    pub fn search_runs(
        &self,
        experiments: &[i64],
        filter: &Filter,
        order: &[Order],
        offset: usize,
        limit: usize,
    ) -> LabResult<(Vec<Found>, Option<usize>)> {
        let shown = |r: &Run| {
            (experiments.is_empty() || experiments.contains(&r.experiment_id.unwrap_or(0)))
                && filter.view.shows(r.deleted)
        };
        if filter.clauses.is_empty() && order.is_empty() {
            // Newest first, nothing to match or sort by: SQLite pages (a dashboard's first
            // page of 100,000 runs reads 101 rows).
            let lifecycle = match filter.view {
                View::ActiveOnly => format!("lifecycle != '{}'", super::mlflow::DELETED),
                View::DeletedOnly => format!("lifecycle = '{}'", super::mlflow::DELETED),
                View::All => "1".to_string(),
            };
            let in_experiments = if experiments.is_empty() {
                "1".to_string()
            } else {
                let ids: Vec<String> = experiments.iter().map(i64::to_string).collect();
                format!("coalesce(experiment_id, 0) IN ({})", ids.join(","))
            };
            let mut runs: Vec<Run> = all(
                &self.conn,
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE {lifecycle} AND {in_experiments}
                     ORDER BY id DESC LIMIT ?1 OFFSET ?2"
                ),
                // One more than the page says whether there is a next; -1 is no limit.
                params![
                    i64::try_from(limit)
                        .ok()
                        .and_then(|l| l.checked_add(1))
                        .unwrap_or(-1),
                    i64::try_from(offset).unwrap_or(i64::MAX)
                ],
                run_row,
            )
            .map_err(db_err)?;
            let more = runs.len() > limit;
            runs.truncate(limit);
            let page = runs
                .into_iter()
                .map(|r| self.found(r))
                .collect::<LabResult<Vec<Found>>>()?;
            let next = more.then_some(offset + page.len());
            return Ok((page, next));
        }
        let runs: Vec<Run> = all(
            &self.conn,
            &format!("SELECT {RUN_COLS} FROM runs ORDER BY id DESC"),
            [],
            run_row,
        )
        .map_err(db_err)?;
        // Matching and sorting read only the keys the filter and order name, loaded for all
        // runs at once (a query per key, not three per run); the page's runs are then read
        // in full.
        let runs: Vec<Run> = runs.into_iter().filter(|r| shown(r)).collect();
        let mut known = self.keys_of_runs(&runs, filter, order)?;
        let mut found = Vec::new();
        for r in runs {
            let k = known.remove(&r.id).unwrap_or_default();
            let mut f = Found {
                run: r,
                metrics: k.metrics,
                params: k.params,
                tags: k.tags,
                datasets: Vec::new(),
            };
            if filter.needs_datasets() {
                f.datasets = self.dataset_keys(f.run.id)?;
            }
            if filter.matches(&f) {
                found.push(f);
            }
        }
        found.sort_by(|a, b| {
            for o in order {
                let (x, y) = (get(a, o.kind, &o.key), get(b, o.kind, &o.key));
                let c = match (x, y) {
                    (Some(V::N(x)), Some(V::N(y))) if !x.is_nan() && !y.is_nan() => x.total_cmp(&y),
                    (Some(V::S(x)), Some(V::S(y))) => x.cmp(&y),
                    // Missing values last, whichever the direction (as MLflow).
                    (Some(V::N(x)), _) if !x.is_nan() => return std::cmp::Ordering::Less,
                    (Some(V::S(_)), _) => return std::cmp::Ordering::Less,
                    (_, Some(V::N(y))) if !y.is_nan() => return std::cmp::Ordering::Greater,
                    (_, Some(V::S(_))) => return std::cmp::Ordering::Greater,
                    _ => std::cmp::Ordering::Equal,
                };
                let c = if o.asc { c } else { c.reverse() };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            b.run.id.cmp(&a.run.id)
        });
        let total = found.len();
        let page = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|f| self.found(f.run))
            .collect::<LabResult<Vec<Found>>>()?;
        let next = (offset + page.len() < total).then_some(offset + page.len());
        Ok((page, next))
    }

    /// For each of `runs`, the metrics (latest value of the run's current attempt), params
    /// and tags that `filter` and `order` name — nothing else.
    fn keys_of_runs(
        &self,
        runs: &[Run],
        filter: &Filter,
        order: &[Order],
    ) -> LabResult<HashMap<i64, Known>> {
        let named = filter
            .clauses
            .iter()
            .map(|c| (c.kind, &c.key))
            .chain(order.iter().map(|o| (o.kind, &o.key)));
        let mut keys: BTreeSet<(u8, &String)> = BTreeSet::new();
        for (kind, key) in named {
            match kind {
                Kind::Metric => keys.insert((0, key)),
                Kind::Param => keys.insert((1, key)),
                Kind::Tag => keys.insert((2, key)),
                Kind::Attr | Kind::Dataset => false,
            };
        }
        let attempt: HashMap<i64, i64> = runs.iter().map(|r| (r.id, r.attempt)).collect();
        let mut out: HashMap<i64, Known> = HashMap::new();
        for (which, key) in keys {
            if which == 0 {
                // The latest point per run: highest step, then newest, then last written.
                let mut best: HashMap<i64, (i64, f64, i64, f64)> = HashMap::new();
                let rows = all(
                    &self.conn,
                    "SELECT run_id, step, ts, rowid, value, attempt FROM metrics WHERE name = ?1",
                    [key],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            (
                                r.get::<_, i64>(1)?,
                                r.get::<_, f64>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN),
                            ),
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )
                .map_err(db_err)?;
                for (run, p, at) in rows {
                    if attempt.get(&run) != Some(&at) {
                        continue;
                    }
                    let newer = best.get(&run).is_none_or(|b| {
                        (p.0, p.1, p.2)
                            .partial_cmp(&(b.0, b.1, b.2))
                            .is_some_and(|o| o.is_gt())
                    });
                    if newer {
                        best.insert(run, p);
                    }
                }
                for (run, p) in best {
                    out.entry(run).or_default().metrics.insert(key.clone(), p.3);
                }
                continue;
            }
            let sql = if which == 1 {
                "SELECT run_id, value FROM params WHERE key = ?1"
            } else {
                "SELECT run_id, value FROM tags WHERE key = ?1"
            };
            let rows = all(&self.conn, sql, [key], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err)?;
            for (run, v) in rows {
                let f = out.entry(run).or_default();
                if which == 1 {
                    f.params.insert(key.clone(), param_text(v));
                } else {
                    f.tags.insert(key.clone(), v);
                }
            }
        }
        Ok(out)
    }

    /// Per experiment (runs without one count as experiment 0, "Default"): its active runs,
    /// how many of them run now (a claimed run is `leased` until its start is recorded, which
    /// a short job's is only with its end: it runs too), and the newest start.
    pub fn experiment_stats(&self) -> LabResult<HashMap<i64, ExperimentStats>> {
        let rows = all(
            &self.conn,
            &format!(
                "SELECT coalesce(experiment_id, 0), count(*), sum(status IN ('leased', 'running')), max(coalesce(started, created))
                 FROM runs WHERE lifecycle != '{}' GROUP BY 1",
                super::mlflow::DELETED
            ),
            [],
            |r| Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
        )
        .map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }

    /// Experiments in `view` matching MLflow's experiment filter (`name`, `experiment_id`,
    /// `creation_time`, `last_update_time`, `tags.<key>`; clauses joined by AND), sorted by
    /// `order` (default: newest first, then by id), each with its tags.
    pub fn search_experiments(
        &self,
        filter: &str,
        view: View,
        order: &[String],
    ) -> LabResult<Vec<(super::Experiment, BTreeMap<String, String>)>> {
        let filter = DocFilter::parse(
            filter,
            |kind, key| kind == "attributes" && key.ends_with("_time"),
            |key| ["name", "experiment_id", "creation_time", "last_update_time"].contains(&key),
        )?;
        let order = experiment_order(order)?;
        let mut out = Vec::new();
        for e in self.experiments()? {
            if !view.shows(e.lifecycle == super::mlflow::DELETED) {
                continue;
            }
            let tags: BTreeMap<String, String> = self.experiment_tags(e.id)?.into_iter().collect();
            if filter.matches(|kind, key| experiment_value(&e, &tags, kind, key)) {
                out.push((e, tags));
            }
        }
        out.sort_by(|(a, _), (b, _)| {
            for (key, asc) in &order {
                let c = match key.as_str() {
                    "name" => a.name.cmp(&b.name),
                    "experiment_id" => a.id.cmp(&b.id),
                    "creation_time" => ms_of(a.created).cmp(&ms_of(b.created)),
                    _ => ms_of(a.updated).cmp(&ms_of(b.updated)),
                };
                let c = if *asc { c } else { c.reverse() };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            std::cmp::Ordering::Equal
        });
        Ok(out)
    }
}

fn ms_of(t: f64) -> i64 {
    (t * 1000.0) as i64
}

/// `(key, ascending)` terms of an experiment search, with MLflow's default and tie-breaker.
fn experiment_order(terms: &[String]) -> LabResult<Vec<(String, bool)>> {
    let default = [
        "creation_time DESC".to_string(),
        "experiment_id ASC".to_string(),
    ];
    let terms = if terms.is_empty() {
        &default[..]
    } else {
        terms
    };
    let mut out = Vec::new();
    for t in terms {
        let mut words = t.split_whitespace();
        let key = words.next().unwrap_or("");
        let key = key
            .strip_prefix("attributes.")
            .or_else(|| key.strip_prefix("attribute."))
            .unwrap_or(key);
        if !["name", "experiment_id", "creation_time", "last_update_time"].contains(&key) {
            return Err(bad(format!("Invalid order_by clause '{t}': experiments sort by name, experiment_id, creation_time or last_update_time")));
        }
        let asc = match words.next().map(|w| w.to_ascii_uppercase()) {
            None => true,
            Some(w) if w == "ASC" => true,
            Some(w) if w == "DESC" => false,
            Some(w) => {
                return Err(bad(format!(
                    "Invalid order_by clause '{t}': '{w}' is neither ASC nor DESC"
                )))
            }
        };
        out.push((key.to_string(), asc));
    }
    if !out.iter().any(|(k, _)| k == "experiment_id") {
        out.push(("experiment_id".into(), true));
    }
    Ok(out)
}

/// A filter over documents (logged models, registered models, model versions): MLflow's
/// grammar with `metrics.`, `params.`, `tags.` and bare or `attributes.` keys; the caller
/// says which keys are numeric and gives each value.
#[derive(Debug, Clone)]
pub struct DocFilter(Vec<Clause>);

/// A value a [`DocFilter`] compares.
pub enum DocVal {
    Num(f64),
    Text(String),
}

impl DocFilter {
    /// Parses `text`; `numeric(kind, key)` says which keys compare as numbers (`kind` is
    /// "metrics", "params", "tags" or "attributes"); `known(key)` which attributes exist.
    pub fn parse(
        text: &str,
        numeric: impl Fn(&str, &str) -> bool,
        known: impl Fn(&str) -> bool,
    ) -> LabResult<DocFilter> {
        let mut lx = Lexer { s: text, i: 0 };
        let mut out = Vec::new();
        if lx.done() {
            return Ok(DocFilter(out));
        }
        loop {
            lx.ws();
            let rest = &lx.s[lx.i..];
            let prefixes: [(&str, Kind); 9] = [
                ("metrics.", Kind::Metric),
                ("metric.", Kind::Metric),
                ("params.", Kind::Param),
                ("param.", Kind::Param),
                ("tags.", Kind::Tag),
                ("tag.", Kind::Tag),
                ("attributes.", Kind::Attr),
                ("attribute.", Kind::Attr),
                ("", Kind::Attr),
            ];
            let (p, kind) = prefixes
                .iter()
                .find(|(p, _)| rest.starts_with(*p))
                .copied()
                .unwrap_or(("", Kind::Attr));
            lx.i += p.len();
            let key = lx.key()?;
            if key.is_empty() || (kind == Kind::Attr && !known(&key)) {
                return Err(bad(format!("Invalid attribute key '{key}' specified")));
            }
            let kind_name = match kind {
                Kind::Metric => "metrics",
                Kind::Param => "params",
                Kind::Tag => "tags",
                _ => "attributes",
            };
            let num = numeric(kind_name, &key);
            let op = lx.op()?;
            let value = lx.value(&op)?;
            let ok = match (&value, op.as_str()) {
                (Lit::List(_), _) => !num,
                (Lit::Num(_), o) => num && ["=", "!=", "<", "<=", ">", ">="].contains(&o),
                (Lit::Str(_), o) => !num && ["=", "!=", "LIKE", "ILIKE"].contains(&o),
            };
            if !ok {
                return Err(bad(format!("Invalid clause(s) in filter string: '{kind_name}.{key}' cannot compare with '{op}' here")));
            }
            out.push(Clause {
                kind,
                key,
                op,
                value,
            });
            if lx.done() {
                return Ok(DocFilter(out));
            }
            if !lx.word_ci("AND") {
                return Err(bad(format!(
                    "Invalid clause(s) in filter string: want AND at '{}'",
                    &lx.s[lx.i..]
                )));
            }
        }
    }

    /// Whether every clause holds; `get(kind, key)` gives a document's value (None: absent,
    /// which matches nothing).
    pub fn matches(&self, get: impl Fn(&str, &str) -> Option<DocVal>) -> bool {
        self.matches_with(get, false)
    }

    /// As [`DocFilter::matches`]; with `absent_differs`, an absent value satisfies `!=` (the
    /// registry's rule: the client hides prompts with `tag.mlflow.prompt.is_prompt != 'true'`,
    /// which every model without that tag passes).
    pub fn matches_with(
        &self,
        get: impl Fn(&str, &str) -> Option<DocVal>,
        absent_differs: bool,
    ) -> bool {
        self.0.iter().all(|c| {
            let kind = match c.kind {
                Kind::Metric => "metrics",
                Kind::Param => "params",
                Kind::Tag => "tags",
                _ => "attributes",
            };
            match get(kind, &c.key) {
                Some(DocVal::Num(n)) => compare(&c.value, &c.op, V::N(n)),
                Some(DocVal::Text(t)) => compare(&c.value, &c.op, V::S(t)),
                None => absent_differs && c.op == "!=",
            }
        })
    }
}

/// An experiment's value for a filter key (`name`, `experiment_id`, `creation_time`,
/// `last_update_time`, `tags.<key>`).
fn experiment_value(
    e: &super::Experiment,
    tags: &BTreeMap<String, String>,
    kind: &str,
    key: &str,
) -> Option<DocVal> {
    match (kind, key) {
        ("tags", k) => tags.get(k).map(|t| DocVal::Text(t.clone())),
        ("attributes", "name") => Some(DocVal::Text(e.name.clone())),
        ("attributes", "experiment_id") => Some(DocVal::Text(e.id.to_string())),
        ("attributes", "creation_time") => Some(DocVal::Num(ms_of(e.created) as f64)),
        ("attributes", "last_update_time") => Some(DocVal::Num(ms_of(e.updated) as f64)),
        _ => None,
    }
}

fn compare(lit: &Lit, op: &str, v: V) -> bool {
    match (lit, v) {
        (Lit::List(l), V::S(s)) => (op == "IN") == l.contains(&s),
        (Lit::Num(n), V::N(x)) => match op {
            "=" => x == *n,
            "!=" => x != *n,
            "<" => x < *n,
            "<=" => x <= *n,
            ">" => x > *n,
            _ => x >= *n,
        },
        (Lit::Str(p), V::S(s)) => match op {
            "=" => s == *p,
            "!=" => s != *p,
            "LIKE" => like(&s, p, false),
            _ => like(&s, p, true),
        },
        _ => false,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_filters_parse_and_bad_ones_are_refused() {
        for ok in [
            "metrics.val_loss < 0.4 and attributes.status = 'FINISHED' and tags.fold ILIKE '%0'",
            "tags.`mlflow.parentRunId` = '12'",
            "tags.mlflow.parentRunId = '12'",
            "params.lr = '0.1' AND metrics.acc >= 0.9",
            "attributes.run_id IN ('1', '2')",
            "attribute.run_id NOT IN ('3')",
            "",
        ] {
            Filter::parse(ok).unwrap_or_else(|e| panic!("{ok}: {}", e.message));
        }
        for (bad, why) in [
            (
                "metrics.acc > 0.9 or params.lr = '1'",
                "OR is not supported",
            ),
            ("params.x IN ('1')", "cannot compare with 'IN'"),
            ("metrics.acc = 'high'", "against a string"),
            ("params.lr > 0.1", "against a number"),
            ("foo.bar = 1", "Invalid entity type"),
            ("attributes.color = 'red'", "Invalid attribute key"),
            ("metrics.acc >", "Expected a number"),
            ("params.lr = 'x", "Unterminated string"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn a_claimed_run_counts_as_running_in_its_experiments_stats() {
        use super::super::test_support::job;
        let t = tempfile::tempdir().unwrap();
        let mut s = Store::open(t.path()).unwrap();
        s.create(&job("a")).unwrap();
        s.create(&job("b")).unwrap();
        let running = |s: &Store| s.experiment_stats().unwrap()[&0].1;
        assert_eq!(running(&s), 0);
        let a = s.claim_next("h").unwrap().unwrap();
        assert_eq!(s.get(a.id).unwrap().status, RunStatus::Leased);
        assert_eq!(running(&s), 1, "a leased run is running");
        s.finish(a.id, RunStatus::Completed, Some(0), None).unwrap();
        assert_eq!(running(&s), 0);
    }

    #[test]
    fn like_is_sqls() {
        assert!(like("fold0", "%0", false));
        assert!(like("Fold0", "fold_", true));
        assert!(!like("Fold0", "fold_", false));
        assert!(!like("fold10", "fold_", false));
    }
}
