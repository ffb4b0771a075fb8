//! `jobs::pool` and `labhost pipeline`: nussl's ScriptRunnerPool semantics on the job engine.
//! Specs are submitted in order, in batches (one transaction each); a `blocking` spec ends its
//! batch and must finish before anything after it is submitted; GPU jobs wait for a lease in
//! the job host. Progress: an indicatif bar on a terminal, a plain line at most once a second
//! otherwise (stderr; none with `-q`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::JobSpec;
use crate::error::{HostError, HostResult};
use crate::jobs::store::FINISHED;

/// The shortest time between two looks at the whole pool.
const TALLY_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Default)]
pub struct PoolOpts {
    /// Jobs at once in this process (the job host's workers); `None` leaves it as it is.
    pub max_workers: Option<usize>,
    /// Cancel what is left after the first job that does not complete.
    pub fail_fast: bool,
    /// Shown in front of progress lines (`pool`, or the pipeline file).
    pub label: String,
    /// No progress output at all.
    pub quiet: bool,
}

/// How a pool ended: job ids in submission order and their final statuses.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub ids: Vec<i64>,
    pub statuses: Vec<String>,
}

impl Summary {
    pub fn count(&self, status: &str) -> usize {
        self.statuses.iter().filter(|s| *s == status).count()
    }
}

/// Where the pool stands, recomputed from the store.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    statuses: HashMap<i64, String>,
    by_status: BTreeMap<String, usize>,
}

impl Tally {
    fn finished(&self) -> usize {
        FINISHED
            .iter()
            .map(|s| self.by_status.get(*s).copied().unwrap_or(0))
            .sum()
    }
    fn get(&self, s: &str) -> usize {
        self.by_status.get(s).copied().unwrap_or(0)
    }
    fn not_completed(&self) -> usize {
        self.finished() - self.get("completed")
    }
}

enum Display {
    Bar(indicatif::ProgressBar),
    Lines { last: Option<Instant>, said: String },
    Silent,
}

struct Progress {
    total: usize,
    label: String,
    display: Display,
    started: Instant,
}

impl Progress {
    fn new(total: usize, opts: &PoolOpts) -> Progress {
        let quiet = opts.quiet || !tracing::enabled!(tracing::Level::INFO);
        let display = if quiet || total == 0 {
            Display::Silent
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {bar:30.cyan/blue} {pos}/{len} done · {msg} · {elapsed} (ETA {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(opts.label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Lines {
                last: None,
                said: String::new(),
            }
        };
        Progress {
            total,
            label: opts.label.clone(),
            display,
            started: Instant::now(),
        }
    }

    fn text(&self, t: &Tally, submitted: usize) -> String {
        let mut parts = vec![format!("{} running", t.get("running") + t.get("leased"))];
        parts.push(format!(
            "{} queued",
            t.get("queued") + self.total.saturating_sub(submitted)
        ));
        for s in ["failed", "timed_out", "cancelled"] {
            if t.get(s) > 0 {
                parts.push(format!("{} {}", t.get(s), s.replace('_', " ")));
            }
        }
        parts.join(", ")
    }

    fn update(&mut self, t: &Tally, submitted: usize, last: bool) {
        let msg = self.text(t, submitted);
        let done = t.finished();
        match &mut self.display {
            Display::Bar(b) => {
                b.set_position(done as u64);
                b.set_message(msg);
                if last {
                    b.finish();
                }
            }
            Display::Lines { last: when, said } => {
                let line = format!(
                    "{}: {done}/{} done, {msg} ({:.1}s)",
                    self.label,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                );
                let quiet_spell = when.is_some_and(|w| w.elapsed() < Duration::from_secs(1));
                let changed = *said != format!("{done} {msg}");
                if last || (changed && !quiet_spell) {
                    crate::host::ctx().sink.eprint(&line);
                    *when = Some(Instant::now());
                    *said = format!("{done} {msg}");
                }
            }
            Display::Silent => {}
        }
    }
}

impl Tally {
    fn set(&mut self, id: i64, status: &str) {
        if let Some(old) = self.statuses.insert(id, status.to_string()) {
            if let Some(n) = self.by_status.get_mut(&old) {
                *n -= 1;
            }
        }
        *self.by_status.entry(status.to_string()).or_default() += 1;
    }

    /// Applies the transitions recorded since `cursor` to the pool's jobs.
    fn follow(&mut self, cursor: &mut i64, set: &HashSet<i64>) -> HostResult<()> {
        let events = super::with_store(|s| s.events_since(*cursor))?;
        for (ev, run, status) in events {
            *cursor = ev;
            if set.contains(&run) {
                self.set(run, &status);
            }
        }
        Ok(())
    }
}

/// Runs `specs` as a pool and waits for all of them (see the module doc).
pub fn run(
    specs: Vec<JobSpec>,
    opts: &PoolOpts,
    cancel: &CancellationToken,
) -> HostResult<Summary> {
    if let Some(w) = opts.max_workers {
        super::set_workers(w.max(1))?;
    }
    let total = specs.len();
    let mut progress = Progress::new(total, opts);
    let mut ids: Vec<i64> = Vec::with_capacity(total);
    let mut set: HashSet<i64> = HashSet::with_capacity(total);
    let failed_seen = std::cell::Cell::new(false);
    // The pool follows the event log from here: each look reads only new transitions.
    let cursor = std::cell::Cell::new(super::with_store(|s| s.last_event_id())?);
    let tally = std::cell::RefCell::new(Tally::default());
    let last = std::cell::Cell::new(Instant::now());
    // Waits, refreshing the progress, until `done(tally)`; applies fail_fast on the way.
    let watch = |ids: &[i64],
                 set: &HashSet<i64>,
                 progress: &mut Progress,
                 done: &dyn Fn(&Tally) -> bool|
     -> HostResult<()> {
        loop {
            let seen = crate::jobs::host::ended_count();
            last.set(Instant::now());
            let (fin, doomed) = {
                let mut t = tally.borrow_mut();
                let mut c = cursor.get();
                t.follow(&mut c, set)?;
                cursor.set(c);
                progress.update(&t, ids.len(), false);
                let doomed: Vec<i64> =
                    if opts.fail_fast && !failed_seen.get() && t.not_completed() > 0 {
                        failed_seen.set(true);
                        t.statuses
                            .iter()
                            .filter(|(_, st)| !FINISHED.contains(&st.as_str()))
                            .map(|(id, _)| *id)
                            .collect()
                    } else {
                        Vec::new()
                    };
                (done(&t), doomed)
            };
            if !doomed.is_empty() {
                for id in doomed {
                    super::cancel(id)?;
                }
                continue;
            }
            if fin {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(HostError::cancelled());
            }
            // At most one look per TALLY_EVERY, however fast jobs end.
            let next = last.get() + TALLY_EVERY;
            crate::jobs::host::wait_for_end(seen, Duration::from_millis(200));
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
        }
    };
    let mut batch: Vec<JobSpec> = Vec::with_capacity(128);
    let mut specs = specs.into_iter().peekable();
    while let Some(spec) = specs.next() {
        if failed_seen.get() {
            // fail_fast: what was not submitted yet is not submitted at all.
            break;
        }
        let blocking = spec.blocking;
        batch.push(spec);
        if blocking || batch.len() == 128 || specs.peek().is_none() {
            let runs = super::submit_many(&batch)?;
            batch.clear();
            for r in &runs {
                ids.push(r.id);
                set.insert(r.id);
                // A keyed job may exist already (completed, or adopted while running).
                tally.borrow_mut().set(r.id, &r.status);
            }
            if blocking {
                let last = ids[ids.len() - 1];
                watch(&ids, &set, &mut progress, &|t: &Tally| {
                    t.statuses
                        .get(&last)
                        .is_some_and(|s| FINISHED.contains(&s.as_str()))
                })?;
            }
        }
    }
    // `set`, not `ids`: two specs with one key are one job.
    watch(&ids, &set, &mut progress, &|t: &Tally| {
        t.finished() == set.len()
    })?;
    let t = tally.into_inner();
    // fail_fast may have left specs unsubmitted: they are not "queued".
    progress.total = set.len();
    progress.update(&t, ids.len(), true);
    let statuses = ids
        .iter()
        .map(|id| t.statuses.get(id).cloned().unwrap_or_default())
        .collect();
    Ok(Summary { ids, statuses })
}
