//! `time`: clock, cancellable sleep and human durations (`90s`, `3.5h`, `2d`).
pub mod rhai;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{LabError, LabResult};
pub use crate::util::parse_duration;

/// Local time as RFC 3339 with milliseconds and offset, e.g. `2026-11-21T23:46:16.123+00:00`.
pub fn now() -> String {
    crate::clock::rfc3339()
}

/// Seconds since the Unix epoch.
pub fn unix() -> f64 {
    crate::clock::unix()
}

/// Sleeps, returning early with `cancelled` when the token fires.
pub async fn sleep(d: Duration, cancel: CancellationToken) -> LabResult<()> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = cancel.cancelled() => Err(LabError::cancelled()),
    }
}

/// `5400.0` → `1h30m`; `0.25` → `250ms`.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return format!("{secs}s");
    }
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    let mut s = secs.round() as u64;
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= len {
            out += &format!("{}{unit}", s / len);
            s %= len;
        }
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_parse() {
        for secs in [0.25, 1.0, 59.0, 90.0, 5400.0, 172800.0, 93784.0] {
            let text = format_duration(secs);
            assert_eq!(parse_duration(&text).unwrap().as_secs_f64(), secs, "{text}");
        }
        assert_eq!(format_duration(5400.0), "1h30m");
    }

    #[test]
    fn now_is_rfc3339() {
        assert!(chrono::DateTime::parse_from_rfc3339(&now()).is_ok());
    }
}
