//! `log`: structured log lines through `tracing` (stderr; filtered by `-v`/`-q`/`LABHOST_LOG`).
pub mod rhai;

#[derive(Debug, Clone, Copy)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub fn log(level: Level, msg: &str) {
    let msg = crate::redact::apply(msg);
    match level {
        Level::Debug => tracing::debug!(target: "script", "{msg}"),
        Level::Info => tracing::info!(target: "script", "{msg}"),
        Level::Warn => tracing::warn!(target: "script", "{msg}"),
        Level::Error => tracing::error!(target: "script", "{msg}"),
    }
}
