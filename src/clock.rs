//! The one clock: every timestamp labhost stores or compares (runs, events, metrics, GPU
//! holders, `time::unix`) comes from here, as seconds since the Unix epoch.

/// Seconds since the Unix epoch (0.0 if the system clock is before 1970).
pub fn unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Nanoseconds since the Unix epoch: a seed for random orders and names.
pub fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Local time as RFC 3339 with milliseconds and offset, e.g. `2026-11-21T23:46:16.123+00:00`.
pub fn rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}
