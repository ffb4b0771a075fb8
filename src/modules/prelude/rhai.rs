//! Rhai binding for the prelude (registered as a global module).
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

fn equal(ctx: &NativeCallContext, a: &Dynamic, b: &Dynamic) -> Result<bool, Box<EvalAltResult>> {
    if a.type_id() != b.type_id() {
        return Ok(false);
    }
    ctx.call_native_fn::<bool>("==", (a.clone(), b.clone()))
}

fn check_eq(
    ctx: &NativeCallContext,
    left: Dynamic,
    right: Dynamic,
    what: &str,
) -> Result<(), Box<EvalAltResult>> {
    if equal(ctx, &left, &right)? {
        return Ok(());
    }
    Err(crate::bridge::host_err(
        ctx,
        "assert",
        format!("assertion failed: {what}\n  left: {left:?}\n right: {right:?}"),
    ))
}

#[export_module]
pub mod api {
    use crate::bridge::host_err;

    /// Stops the script with exit code 0, from anywhere (inside functions too).
    ///
    /// ```rhai
    /// print("nothing to do");
    /// exit();
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn exit(ctx: NativeCallContext) -> Result<(), Box<EvalAltResult>> {
        Err(crate::bridge::exit_err(&ctx, Dynamic::UNIT))
    }

    /// Stops the script. An integer (0–255) becomes the process exit code; a string is
    /// printed to stderr and the exit code is 1 (like Python's `sys.exit("message")`).
    /// `try/catch` does not stop it.
    ///
    /// ```rhai
    /// fn finish(ok) { if ok { exit(0) } else { exit("training diverged") } }
    /// try { finish(true); } catch { print("never printed"); }
    /// ```
    #[rhai_fn(name = "exit", return_raw, volatile)]
    pub fn exit_with(ctx: NativeCallContext, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
        Err(crate::bridge::exit_err(&ctx, value))
    }

    /// Fails with kind `assert` when the condition is false.
    ///
    /// ```rhai
    /// assert(1 + 1 == 2);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn assert(ctx: NativeCallContext, cond: bool) -> Result<(), Box<EvalAltResult>> {
        if cond {
            Ok(())
        } else {
            Err(host_err(&ctx, "assert", "assertion failed"))
        }
    }

    /// Fails with kind `assert` and the given message when the condition is false.
    ///
    /// ```rhai
    /// let lr = 0.1;
    /// assert(lr > 0.0, "learning rate must be positive");
    /// ```
    #[rhai_fn(name = "assert", return_raw, volatile)]
    pub fn assert_msg(
        ctx: NativeCallContext,
        cond: bool,
        msg: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        if cond {
            Ok(())
        } else {
            Err(host_err(&ctx, "assert", format!("assertion failed: {msg}")))
        }
    }

    /// Fails with kind `assert` unless both values are equal (same type and `==`).
    /// The message shows both values.
    ///
    /// ```rhai
    /// assert_eq([1, 2] + [3], [1, 2, 3]);
    /// assert_eq(#{a: 1}, #{a: 1});
    /// let kind = ();
    /// try { assert_eq(1, 1.0); } catch (e) { kind = e.kind; }
    /// assert_eq(kind, "assert");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn assert_eq(
        ctx: NativeCallContext,
        left: Dynamic,
        right: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        super::check_eq(&ctx, left, right, "left == right")
    }

    /// `assert_eq` with a message.
    ///
    /// ```rhai
    /// assert_eq(2 * 3, 6, "arithmetic");
    /// ```
    #[rhai_fn(name = "assert_eq", return_raw, volatile)]
    pub fn assert_eq_msg(
        ctx: NativeCallContext,
        left: Dynamic,
        right: Dynamic,
        msg: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::check_eq(&ctx, left, right, msg)
    }
}
