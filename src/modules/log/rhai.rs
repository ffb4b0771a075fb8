//! Rhai binding for `log`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    use crate::modules::log::{log, Level};

    /// Logs at info level (shown by default; hidden by `-q`).
    ///
    /// ```rhai
    /// log::info("starting sweep");
    /// ```
    #[rhai_fn(volatile)]
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }

    /// Logs at warn level.
    ///
    /// ```rhai
    /// log::warn("no GPU found, running on CPU");
    /// ```
    #[rhai_fn(volatile)]
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }

    /// Logs at error level.
    ///
    /// ```rhai
    /// log::error("trial 3 failed");
    /// ```
    #[rhai_fn(volatile)]
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }

    /// Logs at debug level, shown with `-v`. (Named `verbose`: `debug` is a Rhai keyword.)
    ///
    /// ```rhai
    /// log::verbose("params: " + #{lr: 0.1});
    /// ```
    #[rhai_fn(volatile)]
    pub fn verbose(msg: &str) {
        log(Level::Debug, msg)
    }
}
