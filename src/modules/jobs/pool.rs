//! `jobs::pool` and `labhost pipeline`: nussl's ScriptRunnerPool semantics on the job engine.
//! Specs are submitted in order, in batches (one transaction each); a `blocking` spec ends its
//! batch and must finish before anything after it is submitted; GPU jobs wait for a lease in
//! the job host. Scheduling only: what the user sees is an [`Observer`] (`progress.rs`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::JobSpec;
use crate::error::{LabError, LabResult};
use crate::store::RunStatus;

/// The shortest time between two looks at the whole pool.
const TALLY_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Default)]
pub struct PoolOpts {
    /// Jobs at once in this process (the job host's workers); `None` leaves it as it is.
    pub max_workers: Option<usize>,
    /// Cancel what is left after the first job that does not complete.
    pub fail_fast: bool,
}

/// Told where the pool stands after every look at it (a progress bar, a line, nothing).
pub trait Observer {
    /// `submitted` specs of `total` are in the store; `last` is the final call.
    fn update(&mut self, t: &Tally, submitted: usize, total: usize, last: bool);
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {
    fn update(&mut self, _: &Tally, _: usize, _: usize, _: bool) {}
}

/// How a pool ended: job ids in submission order and their final statuses, and how many
/// specs were never submitted (`fail_fast` stopped before them).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub ids: Vec<i64>,
    pub statuses: Vec<Option<RunStatus>>,
    pub not_submitted: usize,
}

impl Summary {
    pub fn count(&self, status: RunStatus) -> usize {
        self.statuses.iter().filter(|s| **s == Some(status)).count()
    }
}

/// Where the pool stands, followed through the store's event log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    statuses: HashMap<i64, RunStatus>,
    by_status: BTreeMap<RunStatus, usize>,
}

impl Tally {
    /// Jobs that ended.
    pub fn finished(&self) -> usize {
        RunStatus::FINISHED.iter().map(|s| self.get(*s)).sum()
    }
    /// Jobs in status `s`.
    pub fn get(&self, s: RunStatus) -> usize {
        self.by_status.get(&s).copied().unwrap_or(0)
    }
    fn not_completed(&self) -> usize {
        self.finished() - self.get(RunStatus::Completed)
    }
}

impl Tally {
    fn set(&mut self, id: i64, status: RunStatus) {
        if let Some(old) = self.statuses.insert(id, status) {
            if let Some(n) = self.by_status.get_mut(&old) {
                *n -= 1;
            }
        }
        *self.by_status.entry(status).or_default() += 1;
    }

    /// Applies the transitions recorded since `cursor` to the pool's jobs.
    fn follow(&mut self, cursor: &mut i64, set: &HashSet<i64>) -> LabResult<()> {
        let events = crate::store::with_current(|s| s.events_since(*cursor))?;
        for (ev, run, status) in events {
            *cursor = ev;
            if set.contains(&run) {
                self.set(run, status);
            }
        }
        Ok(())
    }
}

/// Runs `specs` as a pool and waits for all of them (see the module doc).
pub fn run(
    specs: Vec<JobSpec>,
    opts: &PoolOpts,
    progress: &mut dyn Observer,
    cancel: &CancellationToken,
) -> LabResult<Summary> {
    if let Some(w) = opts.max_workers {
        super::set_workers(w.max(1))?;
    }
    let total = specs.len();
    let mut ids: Vec<i64> = Vec::with_capacity(total);
    let mut set: HashSet<i64> = HashSet::with_capacity(total);
    let failed_seen = std::cell::Cell::new(false);
    // The pool follows the event log from here: each look reads only new transitions.
    let cursor = std::cell::Cell::new(crate::store::with_current(|s| s.last_event_id())?);
    let tally = std::cell::RefCell::new(Tally::default());
    let last = std::cell::Cell::new(Instant::now());
    // Waits, refreshing the progress, until `done(tally)`; applies fail_fast on the way.
    let watch = |ids: &[i64],
                 set: &HashSet<i64>,
                 progress: &mut dyn Observer,
                 done: &dyn Fn(&Tally) -> bool|
     -> LabResult<()> {
        loop {
            let seen = crate::engine::ended_count();
            last.set(Instant::now());
            let (fin, doomed) = {
                let mut t = tally.borrow_mut();
                let mut c = cursor.get();
                t.follow(&mut c, set)?;
                cursor.set(c);
                progress.update(&t, ids.len(), total, false);
                let doomed: Vec<i64> =
                    if opts.fail_fast && !failed_seen.get() && t.not_completed() > 0 {
                        failed_seen.set(true);
                        t.statuses
                            .iter()
                            .filter(|(_, st)| !st.is_finished())
                            .map(|(id, _)| *id)
                            .collect()
                    } else {
                        Vec::new()
                    };
                (done(&t), doomed)
            };
            if !doomed.is_empty() {
                for id in doomed {
                    super::cancel(
                        id,
                        "cancelled by fail_fast: an earlier job did not complete",
                    )?;
                }
                continue;
            }
            if fin {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(LabError::cancelled());
            }
            if let Some(e) = crate::engine::store_failure() {
                return Err(e);
            }
            // At most one look per TALLY_EVERY, however fast jobs end.
            let next = last.get() + TALLY_EVERY;
            crate::engine::wait_for_end(seen, Duration::from_millis(200));
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
        }
    };
    let mut batch: Vec<JobSpec> = Vec::with_capacity(128);
    // Submits the batch in one transaction and follows its jobs.
    let flush = |batch: &mut Vec<JobSpec>, ids: &mut Vec<i64>, set: &mut HashSet<i64>| {
        let runs = super::submit_many(batch)?;
        batch.clear();
        for r in &runs {
            ids.push(r.id);
            set.insert(r.id);
            // A keyed job may exist already (completed, or adopted while running).
            tally.borrow_mut().set(r.id, r.status);
        }
        LabResult::Ok(())
    };
    let mut specs = specs.into_iter().peekable();
    let mut taken = 0;
    while let Some(spec) = specs.next() {
        if failed_seen.get() {
            // fail_fast: what was not submitted yet is not submitted at all.
            break;
        }
        taken += 1;
        // A dependency still in the unsubmitted batch has no id yet: submit the batch first.
        if spec.after.iter().any(|&j| j >= ids.len()) && !batch.is_empty() {
            flush(&mut batch, &mut ids, &mut set)?;
        }
        let mut spec = spec;
        for &j in &spec.after {
            let id = *ids.get(j).ok_or_else(|| {
                LabError::new(
                    "jobs.invalid_spec",
                    format!(
                        "pool spec {} depends on spec {j}, which comes after it",
                        taken - 1
                    ),
                )
            })?;
            spec.depends_on.push(id);
        }
        let blocking = spec.blocking;
        batch.push(spec);
        if blocking || batch.len() == 128 || specs.peek().is_none() {
            flush(&mut batch, &mut ids, &mut set)?;
            if blocking {
                let last = ids[ids.len() - 1];
                watch(&ids, &set, progress, &|t: &Tally| {
                    t.statuses.get(&last).is_some_and(|s| s.is_finished())
                })?;
            }
        }
    }
    // `set`, not `ids`: two specs with one key are one job.
    watch(&ids, &set, progress, &|t: &Tally| t.finished() == set.len())?;
    let t = tally.into_inner();
    // fail_fast may have left specs unsubmitted: they are not "queued".
    progress.update(&t, ids.len(), ids.len(), true);
    let statuses = ids.iter().map(|id| t.statuses.get(id).copied()).collect();
    Ok(Summary {
        ids,
        statuses,
        not_submitted: total - taken,
    })
}
