//! The bridge between Rhai natives and the host: errors with position and `kind`, async
//! work through the captured runtime handle, cancellation, typed argument decoding
//! ([`decode`]) and the `exit()` token. It sits below the bindings (`modules/*/rhai.rs`)
//! and the script host, which both use it; it imports neither.
pub mod decode;

use std::future::Future;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde::de::DeserializeOwned;

use crate::error::{LabError, LabResult};
use crate::redact;
use crate::runtime;

/// Result type of every fallible native function.
pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Builds the error every native raises: an object map `#{kind, message}` at the call site,
/// so scripts can `try { … } catch (e) { e.kind }` and diagnostics can point at the line.
pub fn host_err(ctx: &NativeCallContext, kind: &str, msg: impl AsRef<str>) -> Box<EvalAltResult> {
    err_at(ctx.call_position(), kind, msg.as_ref())
}

/// Same as [`host_err`] for a known position (used where no call context exists).
pub fn err_at(pos: Position, kind: &str, msg: &str) -> Box<EvalAltResult> {
    if kind == crate::error::CANCELLED {
        return EvalAltResult::ErrorTerminated("cancelled".into(), pos).into();
    }
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("message".into(), redact::apply(msg).into());
    EvalAltResult::ErrorRuntime(m.into(), pos).into()
}

/// Converts a module API error into a script error at the call site. Cancellation becomes a
/// termination that `try/catch` cannot swallow.
pub fn to_rhai(ctx: &NativeCallContext, e: LabError) -> Box<EvalAltResult> {
    host_err(ctx, &e.kind, &e.message)
}

/// `api_call().or_rhai(&ctx)?` in bindings.
pub trait OrRhai<T> {
    fn or_rhai(self, ctx: &NativeCallContext) -> RhaiResult<T>;
}

impl<T> OrRhai<T> for LabResult<T> {
    fn or_rhai(self, ctx: &NativeCallContext) -> RhaiResult<T> {
        self.map_err(|e| to_rhai(ctx, e))
    }
}

/// Runs a future to completion from a script thread, returning `cancelled` as soon as the
/// user presses Ctrl-C. Never call it on a tokio worker thread: scripts run on their own
/// thread, so `Handle::block_on` is allowed here (tokio panics only when it is called from
/// inside the runtime).
pub fn block_on<F: Future>(f: F) -> LabResult<F::Output> {
    runtime::block_on(f)
}

/// Decodes a script value (a spec or options map) into a typed struct through
/// [`crate::bridge::decode`]: unknown keys and wrong types are errors of kind
/// `invalid_argument` that name the function, the field, what it must be and what it got.
pub fn decode<T: DeserializeOwned>(
    ctx: &NativeCallContext,
    what: &str,
    v: Dynamic,
) -> RhaiResult<T> {
    crate::bridge::decode::from_dynamic::<T>(&v)
        .map_err(|e| host_err(ctx, "invalid_argument", format!("{what}: {e}")))
}

/// Encodes a typed value as a script value (structs become object maps).
pub fn encode<T: serde::Serialize>(ctx: &NativeCallContext, v: &T) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(v).map_err(|e| host_err(ctx, "internal", e.to_string()))
}

/// A duration given as seconds (int or float) or as text (`"90s"`, `"1.5h"`), for natives
/// that take one as a plain argument.
pub fn duration_of(v: &Dynamic) -> LabResult<std::time::Duration> {
    crate::bridge::decode::from_dynamic::<crate::util::Seconds>(v)
        .map(|s| s.0)
        .map_err(|e| LabError::new("time.invalid_duration", e.to_string()))
}

/// A script number (int or float) as f64.
pub fn number(v: &rhai::Dynamic) -> Option<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// Key of the termination token `exit()` raises (not catchable by `try/catch`).
pub const EXIT_KEY: &str = "labhost_exit";

/// If `err` is the termination raised by `exit()`, the value passed to it.
pub fn exit_value(err: &EvalAltResult) -> Option<Dynamic> {
    match err {
        EvalAltResult::ErrorTerminated(token, _) => {
            token.read_lock::<Map>()?.get(EXIT_KEY).cloned()
        }
        _ => None,
    }
}

/// The termination `exit(value)` raises at the call's position.
pub fn exit_err(ctx: &NativeCallContext, value: Dynamic) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert(EXIT_KEY.into(), value);
    EvalAltResult::ErrorTerminated(m.into(), ctx.call_position()).into()
}
