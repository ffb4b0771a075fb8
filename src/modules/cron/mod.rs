//! `cron`: scheduled scripts (nightly retrain, hourly sweep top-up, weekly report) that never
//! overlap by accident and never silently miss a run.
//!
//! A schedule file (YAML: a list of entries) or a script calling `cron::schedule` gives the
//! entries; [`Scheduler`] (pure: a clock goes in, fires come out) decides what fires when,
//! in each entry's IANA time zone with Vixie cron's DST rules (croner matches the fields
//! against wall-clock times; [`Schedule::next_after`] applies the clock changes: a fixed-time
//! fire in a spring-forward gap runs once right after the jump, in a fall-back overlap once;
//! an interval entry keeps the real clock); [`expr`] reads expressions strictly;
//! [`daemon`] runs the fires — each a record run (kind cron) in the store with its output log
//! and outcome — and persists each entry's last fire so a restart applies `catch_up`.
pub mod daemon;
pub mod expr;
pub mod rhai;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, LabResult};

/// What this module lends the dashboard's cron page (see
/// [`crate::engine::lend_cron_status`]): the rows of `labhost cron status`.
pub fn lend() {
    crate::engine::lend_cron_status(daemon::status_rows);
}

/// `catch_up: all` runs at most this many missed fires per entry (the most recent ones).
pub const MAX_CATCH_UP: usize = 100;

/// What a fire does when the entry's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The fire is recorded as skipped (a cancelled run saying why) and does not run.
    #[default]
    Skip,
    /// The fire waits and runs when the previous run ends (one waiting at most: fires that
    /// find one waiting already are recorded as skipped).
    Queue,
    /// The fire runs alongside.
    Allow,
}

/// Which fires missed while labhost was down run when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    None,
    /// The most recent missed fire only.
    #[default]
    Last,
    /// Every missed fire, oldest first (at most [`MAX_CATCH_UP`]).
    All,
}

/// A time zone: the machine's, or an IANA one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name {
            None | Some("") | Some("local") => Ok(Zone::Local),
            Some(n) => chrono_tz::Tz::from_str(n)
                .map(Zone::Named)
                .map_err(|_| format!("unknown time zone '{n}' (an IANA name such as Europe/Berlin or America/New_York)")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local".into(),
            Zone::Named(t) => t.name().to_string(),
        }
    }

    /// `t` as this zone's wall-clock time, for display.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        match self {
            Zone::Local => t
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            Zone::Named(z) => t
                .with_timezone(z)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
        }
    }
}

/// A parsed cron expression in a zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    /// The fields, matched against wall-clock times (croner evaluated in UTC, which has no
    /// DST): the zone's clock changes are applied by [`Schedule::next_after`], with Vixie
    /// cron's rules.
    pub cron: croner::Cron,
    pub zone: Zone,
    /// A fixed-time entry (no `*` leading its seconds, minute or hour field).
    pub fixed_time: bool,
}

/// The largest clock change searched around (no zone has shifted more than 3 hours at once).
const MAX_SHIFT: chrono::TimeDelta = chrono::TimeDelta::hours(3);

impl Schedule {
    /// Crontab 5-field, 6-field (seconds first) or a nickname (`@hourly`, `@daily`,
    /// `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`); `L`, `W`, `#` in the day
    /// fields (see [`expr`]). Malformed expressions and expressions that can never fire are
    /// refused with the part that is wrong.
    pub fn parse(text: &str, zone: Zone) -> Result<Schedule, expr::ExprError> {
        let text = text.trim();
        let checked = expr::check(text)?;
        let whole = |message: String| expr::ExprError {
            message,
            offset: 0,
            part: text.to_string(),
        };
        let cron =
            croner::Cron::from_str(&checked.croner_text).map_err(|e| whole(e.to_string()))?;
        let s = Schedule {
            text: text.to_string(),
            cron,
            zone,
            fixed_time: checked.fixed_time,
        };
        let from = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        if s.next_wall(from, true).is_none() {
            return Err(whole(
                "it never fires: no date matches every field (a day that no month has?)".into(),
            ));
        }
        Ok(s)
    }

    /// The first wall-clock time matching the fields after `t` (at it too when `inclusive`).
    fn next_wall(&self, t: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron
            .find_next_occurrence(&t.and_utc(), inclusive)
            .ok()
            .map(|d| d.naive_utc())
    }

    /// The instants a matching wall-clock time `m` fires at, by Vixie cron's DST rules: a
    /// time the clock skips (spring forward) fires once right after the jump if the entry
    /// is a fixed time, and not at all if it is an interval (it keeps the real clock); a
    /// time the clock shows twice (fall back) fires once (the first) if fixed, twice if an
    /// interval.
    fn instants<Tz: TimeZone>(&self, z: &Tz, m: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match z.from_local_datetime(&m) {
            LocalResult::Single(u) => vec![u.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) if self.fixed_time => {
                let _ = b;
                vec![a.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
            LocalResult::None if self.fixed_time => jump_after(z, m).into_iter().collect(),
            LocalResult::None => vec![],
        }
    }

    fn next_in<Tz: TimeZone>(&self, z: &Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = |u: DateTime<Utc>| u.with_timezone(z).naive_local() - u.naive_utc();
        let wall = |u: DateTime<Utc>| u.with_timezone(z).naive_local();
        // A fall-back within MAX_SHIFT after `t` repeats wall times before t's: start there.
        let back = (offset(t) - offset(t + MAX_SHIFT)).max(chrono::TimeDelta::zero());
        let mut m = wall(t) - back;
        let mut inclusive = true;
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            let Some(next) = self.next_wall(m, inclusive) else {
                return best;
            };
            m = next;
            inclusive = false;
            if let Some(b) = best {
                // Past the best by more than any clock change could bring back: done. A
                // far best (a sparse entry) may have clock changes between: look further.
                let margin = if offset(b) != offset(t) || b - t > chrono::TimeDelta::days(30) {
                    MAX_SHIFT
                } else {
                    back
                };
                if m > wall(b) + margin {
                    return best;
                }
            }
            for u in self.instants(z, m) {
                if u > t && best.is_none_or(|b| u < b) {
                    best = Some(u);
                }
            }
        }
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => self.next_in(&chrono::Local, t),
            Zone::Named(z) => self.next_in(&z, t),
        }
    }

    /// The fires in `(after, until]`, at most `max` (the latest ones), oldest first.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next_after(t) {
            if n > until {
                break;
            }
            out.push_back(n);
            if out.len() > max {
                out.pop_front();
            }
            t = n;
        }
        out.into()
    }
}

/// The instant the clock jumps over the skipped wall time `m`: the first valid wall-clock
/// minute after it.
fn jump_after<Tz: TimeZone>(z: &Tz, m: NaiveDateTime) -> Option<DateTime<Utc>> {
    let minute = m.with_second(0)?.with_nanosecond(0)?;
    (1..=24 * 60).find_map(|i| {
        z.from_local_datetime(&(minute + chrono::TimeDelta::minutes(i)))
            .earliest()
            .map(|u| u.with_timezone(&Utc))
    })
}

/// What a fire runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `labhost run SCRIPT ARGS…` in its own process (output to the run's logs).
    Script { path: PathBuf, args: Vec<String> },
    /// A function of the script that defined the entry (`cron::schedule(name, expr, || …)`),
    /// called on a blocking thread; `id` indexes the host's function table.
    Function { id: usize },
}

/// An entry, validated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub schedule: Schedule,
    pub action: Action,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub timeout: Option<std::time::Duration>,
    pub env: BTreeMap<String, String>,
    pub enabled: bool,
}

/// An entry as the schedule file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    pub name: String,
    pub schedule: String,
    pub script: String,
    #[serde(default)]
    pub args: Vec<crate::util::Text>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catch_up: CatchUp,
    pub timeout: Option<crate::util::Seconds>,
    #[serde(default)]
    pub env: BTreeMap<String, crate::util::Text>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Reads and validates a schedule file: every problem names the file, line and column.
pub fn load(path: &Path) -> LabResult<Vec<Entry>> {
    let text =
        crate::modules::fs::read(path).map_err(|e| LabError::new("cron.invalid", e.message))?;
    let src = path.display().to_string();
    let raw: Vec<RawEntry> = crate::modules::yaml::parse_as(&text, &src, "cron.invalid")?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out: Vec<Entry> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = |needle: &str| {
            // The i-th occurrence of the entry's key, so repeated keys point at their entry.
            locate_nth(&text, &src, needle, i)
        };
        let bad = |needle: &str, msg: String| {
            LabError::new("cron.invalid", format!("{}: {msg}", at(needle)))
        };
        if r.name.trim().is_empty() {
            return Err(bad("name:", "an entry needs a name".into()));
        }
        if out.iter().any(|e| e.name == r.name) {
            return Err(LabError::new(
                "cron.invalid",
                format!(
                    "{}: a second entry named '{}'",
                    locate_nth(&text, &src, &format!("name: {}", r.name), 1),
                    r.name
                ),
            ));
        }
        let zone = Zone::parse(r.timezone.as_deref()).map_err(|m| bad("timezone:", m))?;
        let schedule = Schedule::parse(&r.schedule, zone).map_err(|e| {
            LabError::new(
                "cron.invalid",
                schedule_error(&text, &src, i, &r.schedule, &e),
            )
        })?;
        let script = base.join(&r.script);
        if !script.is_file() {
            return Err(bad(
                "script:",
                format!("script {} does not exist", script.display()),
            ));
        }
        out.push(Entry {
            name: r.name,
            schedule,
            action: Action::Script {
                path: script,
                args: r.args.into_iter().map(|a| a.0).collect(),
            },
            overlap: r.overlap,
            catch_up: r.catch_up,
            timeout: r.timeout.map(|t| t.0),
            env: r.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
            enabled: r.enabled,
        });
    }
    Ok(out)
}

/// A refused schedule of the `n`-th entry: `file:line:col` of the wrong part (the column
/// inside the expression), what is wrong, and the expression with a caret under the part.
fn schedule_error(text: &str, src: &str, n: usize, expr: &str, e: &expr::ExprError) -> String {
    let expr = expr.trim();
    // The expression on the line of a `schedule:` key (block or flow style).
    let found = text.lines().enumerate().find_map(|(i, line)| {
        let key = line.find("schedule:")?;
        let col = line[key..].find(expr)? + key;
        Some((i + 1, col + 1))
    });
    let at = match found {
        Some((line, col)) => format!("{src}:{line}:{}", col + e.offset),
        None => locate_nth(text, src, "schedule:", n),
    };
    let width = e.part.chars().count().max(1);
    format!(
        "{at}: bad schedule '{expr}': {}\n    {expr}\n    {}{}",
        e.message,
        " ".repeat(expr[..e.offset.min(expr.len())].chars().count()),
        "^".repeat(width)
    )
}

/// `file:line:col` of the `n`-th (0-based) line that starts (after blanks and `- `) with
/// `needle`; the file alone when there is none.
fn locate_nth(text: &str, src: &str, needle: &str, n: usize) -> String {
    let mut seen = 0;
    let mut fallback = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        if t.starts_with(needle) {
            let col = line.len() - t.len() + 1;
            let here = format!("{src}:{}:{col}", i + 1);
            if seen == n {
                return here;
            }
            fallback.get_or_insert(here);
            seen += 1;
        }
    }
    fallback.unwrap_or_else(|| src.to_string())
}

/// One fire decided by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub entry: usize,
    /// The scheduled instant (the run's identity: one run per entry and instant).
    pub at: DateTime<Utc>,
    /// A missed fire run on start (`catch_up`).
    pub catch_up: bool,
}

/// What to do with a fire given the entry's runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run,
    /// Waits for the running one (overlap: queue).
    Queue,
    /// Recorded as skipped with this reason.
    Skip(String),
}

/// The pure scheduler: entries and their next fires; a clock's `now` goes in, fires come out.
pub struct Scheduler {
    pub entries: Vec<Entry>,
    pub next: Vec<Option<DateTime<Utc>>>,
    pub running: Vec<usize>,
    pub queued: Vec<Vec<Fire>>,
}

impl Scheduler {
    /// Starts at `now`: each enabled entry's missed fires since its persisted last fire,
    /// after its `catch_up` (none, the last, or all — at most [`MAX_CATCH_UP`]), and its
    /// next fire after `now`. An entry never fired before starts from now (no catch-up).
    pub fn start(
        entries: Vec<Entry>,
        now: DateTime<Utc>,
        last: &BTreeMap<String, DateTime<Utc>>,
    ) -> (Scheduler, Vec<Fire>) {
        let mut fires = Vec::new();
        let mut next = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if !e.enabled {
                next.push(None);
                continue;
            }
            if let Some(l) = last.get(&e.name) {
                let missed = e.schedule.between(*l, now, MAX_CATCH_UP);
                let take: Vec<DateTime<Utc>> = match e.catch_up {
                    CatchUp::None => vec![],
                    CatchUp::Last => missed.last().cloned().into_iter().collect(),
                    CatchUp::All => missed,
                };
                fires.extend(take.into_iter().map(|at| Fire {
                    entry: i,
                    at,
                    catch_up: true,
                }));
            }
            next.push(e.schedule.next_after(now));
        }
        let n = entries.len();
        (
            Scheduler {
                entries,
                next,
                running: vec![0; n],
                queued: vec![Vec::new(); n],
            },
            fires,
        )
    }

    /// The fires due at `now`, each entry's next fire moved on. Fires that came due while
    /// the process could not look (a suspended machine) are not run one by one: the latest
    /// of them runs (as `catch_up: last` would).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Fire> {
        let mut out = Vec::new();
        for (i, n) in self.next.iter_mut().enumerate() {
            let Some(at) = *n else { continue };
            if at > now {
                continue;
            }
            let s = &self.entries[i].schedule;
            let mut latest = at;
            while let Some(x) = s.next_after(latest).filter(|x| *x <= now) {
                latest = x;
            }
            out.push(Fire {
                entry: i,
                at: latest,
                catch_up: false,
            });
            *n = s.next_after(latest.max(now));
        }
        out.sort_by_key(|f| f.at);
        out
    }

    /// When the next fire is due.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.next.iter().flatten().min().cloned()
    }

    /// The overlap policy applied to a fire (the caller then counts it as running or queued);
    /// caught-up fires of one entry always wait for each other (unless `allow`).
    pub fn decide(&self, f: &Fire) -> Decision {
        let e = &self.entries[f.entry];
        if self.running[f.entry] == 0 {
            return Decision::Run;
        }
        match e.overlap {
            Overlap::Allow => Decision::Run,
            // Missed fires caught up on start are a backlog, not an overlap: they run one
            // after another.
            _ if f.catch_up => Decision::Queue,
            Overlap::Queue if self.queued[f.entry].is_empty() => Decision::Queue,
            Overlap::Queue => Decision::Skip("skipped: the previous run is still going and another fire already waits for it (overlap: queue)".into()),
            Overlap::Skip => Decision::Skip("skipped: the previous run is still going (overlap: skip)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(expr: &str, tz: &str) -> Schedule {
        Schedule::parse(expr, Zone::parse(Some(tz)).unwrap()).unwrap()
    }

    fn nexts(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    /// Europe/Berlin springs forward on 2026-03-29 (02:00 → 03:00) and falls back on
    /// 2026-10-25 (03:00 → 02:00).
    #[test]
    fn berlin_dst_spring_forward_runs_once_and_fall_back_does_not_double_fire() {
        // 02:30 does not exist on 03-29: the fixed-time job runs at the first valid instant.
        let s = sched("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            nexts(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-30T00:30:00+00:00"
            ]
        );
        // 02:30 happens twice on 10-25: it fires once.
        assert_eq!(
            nexts(&s, "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:30:00+00:00",
                "2026-10-26T01:30:00+00:00",
                "2026-10-27T01:30:00+00:00"
            ]
        );
        // An hourly job (an interval, not a fixed time) runs every real hour across both.
        let h = sched("0 * * * *", "Europe/Berlin");
        let fall = nexts(&h, "2026-10-24T23:30:00Z", 4);
        assert_eq!(
            fall,
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-25T03:00:00+00:00"
            ]
        );
    }

    /// America/New_York springs forward on 2026-03-08 and falls back on 2026-11-01.
    #[test]
    fn new_york_dst() {
        let s = sched("0 2 * * *", "America/New_York");
        assert_eq!(
            nexts(&s, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00+00:00", "2026-03-09T06:00:00+00:00"]
        );
        assert_eq!(
            nexts(&s, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T07:00:00+00:00", "2026-11-02T07:00:00+00:00"]
        );
        // 01:30 is ambiguous on 11-01 (EDT then EST): once.
        let s = sched("30 1 * * *", "America/New_York");
        assert_eq!(
            nexts(&s, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
    }

    /// Vixie cron's DST rules, fire by fire, for every kind of clock change (a one-hour
    /// spring gap and fall overlap in Berlin and New York, Lord Howe's 30-minute shifts, a
    /// zone without DST) and every kind of field (single, list, range, step, `*`). A fixed
    /// time (no `*` leading minute or hour) in a gap runs once right after the jump and in
    /// an overlap once; an interval entry keeps the real clock: it skips the gap and runs
    /// in both halves of an overlap.
    #[test]
    fn dst_fires_follow_vixie_cron() {
        let table: &[(&str, &str, &str, &[&str])] = &[
            // Spring forward, fixed times written as a list, a range, a step over a range.
            (
                "30 1,2 * * *",
                "Europe/Berlin",
                "2026-03-28T13:00:00Z",
                &[
                    "2026-03-29T00:30:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-29T23:30:00Z",
                    "2026-03-30T00:30:00Z",
                ],
            ),
            (
                "0 1-3 * * *",
                "Australia/Lord_Howe",
                "2026-10-03T12:00:00Z",
                &[
                    "2026-10-03T14:30:00Z",
                    "2026-10-03T15:30:00Z",
                    "2026-10-03T16:00:00Z",
                    "2026-10-04T14:00:00Z",
                ],
            ),
            (
                "0,30 2 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                &[
                    "2026-03-29T01:00:00Z",
                    "2026-03-30T00:00:00Z",
                    "2026-03-30T00:30:00Z",
                ],
            ),
            (
                "0-59/20 2 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                &[
                    "2026-03-29T01:00:00Z",
                    "2026-03-30T00:00:00Z",
                    "2026-03-30T00:20:00Z",
                ],
            ),
            (
                "@midnight",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                &["2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"],
            ),
            // Spring forward, intervals: the skipped times do not run.
            (
                "*/30 2 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                &["2026-03-30T00:00:00Z", "2026-03-30T00:30:00Z"],
            ),
            (
                "0 * * * *",
                "America/New_York",
                "2026-03-08T05:30:00Z",
                &[
                    "2026-03-08T06:00:00Z",
                    "2026-03-08T07:00:00Z",
                    "2026-03-08T08:00:00Z",
                ],
            ),
            (
                "*/15 * * * *",
                "Australia/Lord_Howe",
                "2026-10-03T15:10:00Z",
                &[
                    "2026-10-03T15:15:00Z",
                    "2026-10-03T15:30:00Z",
                    "2026-10-03T15:45:00Z",
                ],
            ),
            // Fall back, fixed times: once, at the first of the two.
            (
                "30 1,13 * * *",
                "America/New_York",
                "2026-11-01T04:50:00Z",
                &[
                    "2026-11-01T05:30:00Z",
                    "2026-11-01T18:30:00Z",
                    "2026-11-02T06:30:00Z",
                ],
            ),
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T12:00:00Z",
                &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
            ),
            (
                "0 2-3 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                &[
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T02:00:00Z",
                    "2026-10-26T01:00:00Z",
                ],
            ),
            // Fall back, intervals: both halves of the overlap.
            (
                "*/30 2 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                &[
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T00:30:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:30:00Z",
                    "2026-10-26T01:00:00Z",
                ],
            ),
            (
                "*/15 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T13:00:00Z",
                &[
                    "2026-04-04T14:00:00Z",
                    "2026-04-04T14:15:00Z",
                    "2026-04-04T14:30:00Z",
                    "2026-04-04T14:45:00Z",
                    "2026-04-04T15:00:00Z",
                    "2026-04-04T15:15:00Z",
                    "2026-04-05T14:30:00Z",
                ],
            ),
            // Starting inside the repeated hour (its second half): what is left of it.
            (
                "30 * * * *",
                "America/New_York",
                "2026-11-01T06:15:00Z",
                &["2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"],
            ),
            (
                "30 1 * * *",
                "America/New_York",
                "2026-11-01T06:15:00Z",
                &["2026-11-02T06:30:00Z"],
            ),
            // No DST at all.
            (
                "30 2 * * *",
                "Asia/Kolkata",
                "2026-03-28T00:00:00Z",
                &["2026-03-28T21:00:00Z", "2026-03-29T21:00:00Z"],
            ),
        ];
        for (expr, zone, from, want) in table {
            let s = sched(expr, zone);
            let got: Vec<String> = nexts(&s, from, want.len())
                .into_iter()
                .map(|t| utc(&t).format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .collect();
            assert_eq!(&got, want, "{expr} in {zone} from {from}");
        }
    }

    #[test]
    fn expressions_that_never_fire_are_refused() {
        for expr in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 APR *"] {
            let e = Schedule::parse(expr, Zone::Local).expect_err(expr);
            assert!(e.message.contains("never fires"), "{expr}: {e}");
        }
        // February 29th is rare, not never.
        assert!(Schedule::parse("0 0 29 2 *", Zone::Local).is_ok());
    }

    #[test]
    fn last_day_nearest_weekday_and_nth_weekday() {
        // L: the last day of the month (February 2027 has 28 days).
        let s = sched("0 12 L * *", "UTC");
        assert_eq!(
            nexts(&s, "2027-02-01T00:00:00Z", 2),
            ["2027-02-28T12:00:00+00:00", "2027-03-31T12:00:00+00:00"]
        );
        // 15W: the weekday nearest the 15th (2026-08-15 is a Saturday → Friday the 14th).
        let s = sched("0 9 15W * *", "UTC");
        assert_eq!(
            nexts(&s, "2026-08-01T00:00:00Z", 1),
            ["2026-08-14T09:00:00+00:00"]
        );
        // FRI#2: the second Friday (2026-12-11).
        let s = sched("0 18 * * FRI#2", "UTC");
        assert_eq!(
            nexts(&s, "2026-12-01T00:00:00Z", 1),
            ["2026-12-11T18:00:00+00:00"]
        );
        // 6 fields: seconds first; @daily.
        assert_eq!(
            nexts(&sched("*/20 * * * * *", "UTC"), "2026-01-01T00:00:05Z", 2),
            ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00"]
        );
        assert_eq!(
            nexts(&sched("@daily", "UTC"), "2026-01-01T00:00:05Z", 1),
            ["2026-01-02T00:00:00+00:00"]
        );
        assert!(Schedule::parse("61 * * * *", Zone::Local)
            .unwrap_err()
            .to_string()
            .contains("minute field: 61 is out of range"));
        assert!(Zone::parse(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("unknown time zone"));
    }

    fn entry(name: &str, expr: &str, overlap: Overlap, catch_up: CatchUp) -> Entry {
        Entry {
            name: name.into(),
            schedule: sched(expr, "UTC"),
            action: Action::Function { id: 0 },
            overlap,
            catch_up,
            timeout: None,
            env: BTreeMap::new(),
            enabled: true,
        }
    }

    /// A clock injected: three hours of downtime, then start — none, last or all of the
    /// missed hourly fires run; a daily entry that missed nothing runs nothing.
    #[test]
    fn catch_up_after_downtime() {
        let last: BTreeMap<String, DateTime<Utc>> = [
            ("none", "2026-05-01T09:00:00Z"),
            ("last", "2026-05-01T09:00:00Z"),
            ("all", "2026-05-01T09:00:00Z"),
            ("daily", "2026-05-01T00:00:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), utc(v)))
        .collect();
        let es = vec![
            entry("none", "0 * * * *", Overlap::Skip, CatchUp::None),
            entry("last", "0 * * * *", Overlap::Skip, CatchUp::Last),
            entry("all", "0 * * * *", Overlap::Skip, CatchUp::All),
            entry("daily", "0 0 * * *", Overlap::Skip, CatchUp::All),
            entry("new", "0 * * * *", Overlap::Skip, CatchUp::All),
        ];
        let now = utc("2026-05-01T12:30:00Z");
        let (s, fires) = Scheduler::start(es, now, &last);
        let got: Vec<(usize, String)> = fires
            .iter()
            .map(|f| (f.entry, f.at.format("%H:%M").to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "12:00".into()),
                (2, "10:00".into()),
                (2, "11:00".into()),
                (2, "12:00".into())
            ]
        );
        assert!(fires.iter().all(|f| f.catch_up));
        assert_eq!(s.next_wake(), Some(utc("2026-05-01T13:00:00Z")));
        // Bounded: a year down runs at most MAX_CATCH_UP, the latest ones.
        let last: BTreeMap<String, DateTime<Utc>> =
            [("all".to_string(), utc("2025-05-01T00:00:00Z"))].into();
        let (_, fires) = Scheduler::start(
            vec![entry("all", "0 * * * *", Overlap::Skip, CatchUp::All)],
            now,
            &last,
        );
        assert_eq!(fires.len(), MAX_CATCH_UP);
        assert_eq!(fires.last().unwrap().at, utc("2026-05-01T12:00:00Z"));
    }

    #[test]
    fn due_fires_and_overlap_decisions() {
        let now = utc("2026-05-01T12:00:30Z");
        let es = vec![
            entry("skip", "* * * * *", Overlap::Skip, CatchUp::Last),
            entry("queue", "* * * * *", Overlap::Queue, CatchUp::Last),
            entry("allow", "* * * * *", Overlap::Allow, CatchUp::Last),
        ];
        let (mut s, _) = Scheduler::start(es, now, &BTreeMap::new());
        assert!(s.due(now).is_empty());
        let fires = s.due(utc("2026-05-01T12:01:00Z"));
        assert_eq!(fires.len(), 3);
        assert!(fires.iter().all(|f| s.decide(f) == Decision::Run));
        s.running = vec![1, 1, 1];
        // Five minutes asleep: one fire each, the latest.
        let fires = s.due(utc("2026-05-01T12:06:10Z"));
        assert_eq!(
            fires
                .iter()
                .map(|f| f.at.format("%H:%M").to_string())
                .collect::<Vec<_>>(),
            vec!["12:06"; 3]
        );
        assert!(matches!(s.decide(&fires[0]), Decision::Skip(r) if r.contains("overlap: skip")));
        assert_eq!(s.decide(&fires[1]), Decision::Queue);
        s.queued[1].push(fires[1].clone());
        assert!(matches!(s.decide(&fires[1]), Decision::Skip(r) if r.contains("overlap: queue")));
        assert_eq!(s.decide(&fires[2]), Decision::Run);
        assert_eq!(s.next_wake(), Some(utc("2026-05-01T12:07:00Z")));
        // A caught-up backlog waits in line whatever the overlap policy.
        let backlog = Fire {
            catch_up: true,
            ..fires[0].clone()
        };
        assert_eq!(s.decide(&backlog), Decision::Queue);
        let backlog = Fire {
            catch_up: true,
            ..fires[1].clone()
        };
        assert_eq!(s.decide(&backlog), Decision::Queue);
    }
}
