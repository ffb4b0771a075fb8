//! The bridge between Rhai natives and the host: errors with position and `kind`, async
//! work through the captured runtime handle, cancellation, and typed argument decoding.
use std::future::Future;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde::de::DeserializeOwned;

use crate::error::{HostError, HostResult};
use crate::host;
use crate::redact;

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
pub fn to_rhai(ctx: &NativeCallContext, e: HostError) -> Box<EvalAltResult> {
    host_err(ctx, &e.kind, &e.message)
}

/// `api_call().or_rhai(&ctx)?` in bindings.
pub trait OrRhai<T> {
    fn or_rhai(self, ctx: &NativeCallContext) -> RhaiResult<T>;
}

impl<T> OrRhai<T> for HostResult<T> {
    fn or_rhai(self, ctx: &NativeCallContext) -> RhaiResult<T> {
        self.map_err(|e| to_rhai(ctx, e))
    }
}

/// Runs a future to completion from a script thread, returning `cancelled` as soon as the
/// user presses Ctrl-C. Never call it on a tokio worker thread: scripts run on their own
/// thread, so `Handle::block_on` is allowed here (tokio panics only when it is called from
/// inside the runtime).
pub fn block_on<F: Future>(f: F) -> HostResult<F::Output> {
    let h = host::ctx();
    let token = h.cancel.token();
    if token.is_cancelled() {
        return Err(HostError::cancelled());
    }
    h.rt.block_on(async {
        tokio::select! {
            biased;
            _ = token.cancelled() => Err(HostError::cancelled()),
            r = f => Ok(r),
        }
    })
}

/// Decodes a script value (a spec or options map) into a typed struct through
/// [`crate::script::decode`]: unknown keys and wrong types are errors of kind
/// `invalid_argument` that name the function, the field, what it must be and what it got.
pub fn decode<T: DeserializeOwned>(
    ctx: &NativeCallContext,
    what: &str,
    v: Dynamic,
) -> RhaiResult<T> {
    crate::script::decode::from_dynamic::<T>(&v)
        .map_err(|e| host_err(ctx, "invalid_argument", format!("{what}: {e}")))
}

/// Encodes a typed value as a script value (structs become object maps).
pub fn encode<T: serde::Serialize>(ctx: &NativeCallContext, v: &T) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(v).map_err(|e| host_err(ctx, "internal", e.to_string()))
}

/// A duration given as seconds (int or float) or as text (`"90s"`, `"1.5h"`), for natives
/// that take one as a plain argument.
pub fn duration_of(v: &Dynamic) -> HostResult<std::time::Duration> {
    crate::script::decode::from_dynamic::<crate::util::Seconds>(v)
        .map(|s| s.0)
        .map_err(|e| HostError::new("time.invalid_duration", e.to_string()))
}

/// The message of a script error (the `message` of a `#{kind, message}` map, else its text).
pub fn error_message(err: &EvalAltResult) -> String {
    crate::script::diag::from_eval(err, "").message
}

/// A script number (int or float) as f64.
pub fn number(v: &rhai::Dynamic) -> Option<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
}
