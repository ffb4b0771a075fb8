//! Rhai binding for `time`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    use crate::bridge::{duration_of, OrRhai};
    use crate::modules::time as m;

    /// The current local time as RFC 3339 text with milliseconds and UTC offset.
    ///
    /// ```rhai
    /// let t = time::now();
    /// assert(t.len() >= 25 && t.contains("T"));
    /// ```
    #[rhai_fn(volatile)]
    pub fn now() -> String {
        m::now()
    }

    /// Seconds since the Unix epoch, as a float.
    ///
    /// ```rhai
    /// let t0 = time::unix();
    /// assert(t0 > 1.7e9);
    /// ```
    #[rhai_fn(volatile)]
    pub fn unix() -> f64 {
        m::unix()
    }

    /// Sleeps for seconds (int or float) or a duration text (`"250ms"`, `"1.5s"`, `"2m"`).
    /// Ctrl-C interrupts it at once.
    ///
    /// ```rhai
    /// let t0 = time::unix();
    /// time::sleep("50ms");
    /// time::sleep(0.01);
    /// assert(time::unix() - t0 >= 0.06);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn sleep(ctx: NativeCallContext, duration: Dynamic) -> Result<(), Box<EvalAltResult>> {
        let d = duration_of(&duration).or_rhai(&ctx)?;
        let host = crate::runtime::ctx();
        host.rt
            .block_on(m::sleep(d, host.cancel.token()))
            .or_rhai(&ctx)
    }

    /// Parses a duration (`"90s"`, `"3.5h"`, `"2d"`, `"1h30m"`, `"250ms"`) into seconds.
    /// Errors: `time.invalid_duration`.
    ///
    /// ```rhai
    /// assert_eq(time::parse_duration("3.5h"), 12600.0);
    /// assert_eq(time::parse_duration("1h30m"), 5400.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse_duration(ctx: NativeCallContext, text: &str) -> Result<f64, Box<EvalAltResult>> {
        Ok(m::parse_duration(text).or_rhai(&ctx)?.as_secs_f64())
    }

    /// Formats seconds as a short duration text (`5400.0` → `"1h30m"`).
    ///
    /// ```rhai
    /// assert_eq(time::format_duration(5400.0), "1h30m");
    /// assert_eq(time::format_duration(90), "1m30s");
    /// ```
    pub fn format_duration(secs: f64) -> String {
        m::format_duration(secs)
    }

    /// `time::format_duration` for whole seconds.
    ///
    /// ```rhai
    /// assert_eq(time::format_duration(2), "2s");
    /// ```
    #[rhai_fn(name = "format_duration")]
    pub fn format_duration_int(secs: i64) -> String {
        m::format_duration(secs as f64)
    }
}
