//! What a pool shows while it runs, on stderr: an indicatif bar on a terminal, otherwise a
//! plain line at most once a second plus the final one; nothing with `quiet` or `labhost -q`.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::pool::{Observer, Tally};
use crate::store::RunStatus;

enum Display {
    Bar(indicatif::ProgressBar),
    Lines { last: Option<Instant>, said: String },
    Silent,
}

/// The pool's progress display.
pub struct Progress {
    label: String,
    display: Display,
    started: Instant,
}

impl Progress {
    /// `label` goes in front of every line (`pool`, or the pipeline file); `quiet` (or a log
    /// level above info) shows nothing.
    pub fn new(total: usize, label: &str, quiet: bool) -> Progress {
        let quiet = quiet || !tracing::enabled!(tracing::Level::INFO);
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
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Lines {
                last: None,
                said: String::new(),
            }
        };
        Progress {
            label: label.to_string(),
            display,
            started: Instant::now(),
        }
    }

    fn text(t: &Tally, submitted: usize, total: usize) -> String {
        let mut parts = vec![format!(
            "{} running",
            t.get(RunStatus::Running) + t.get(RunStatus::Leased)
        )];
        parts.push(format!(
            "{} queued",
            t.get(RunStatus::Queued) + total.saturating_sub(submitted)
        ));
        for s in [RunStatus::Failed, RunStatus::TimedOut, RunStatus::Cancelled] {
            if t.get(s) > 0 {
                parts.push(format!("{} {}", t.get(s), s.as_str().replace('_', " ")));
            }
        }
        parts.join(", ")
    }
}

impl Observer for Progress {
    fn update(&mut self, t: &Tally, submitted: usize, total: usize, last: bool) {
        let msg = Self::text(t, submitted, total);
        let done = t.finished();
        match &mut self.display {
            Display::Bar(b) => {
                b.set_length(total as u64);
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
                    total,
                    self.started.elapsed().as_secs_f64()
                );
                let quiet_spell = when.is_some_and(|w| w.elapsed() < Duration::from_secs(1));
                let changed = *said != format!("{done} {msg}");
                if last || (changed && !quiet_spell) {
                    crate::runtime::ctx().sink.eprint(&line);
                    *when = Some(Instant::now());
                    *said = format!("{done} {msg}");
                }
            }
            Display::Silent => {}
        }
    }
}
