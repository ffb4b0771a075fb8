//! Rhai binding for `cron`: entries a script defines for `labhost cron FILE.rhai`.
use std::sync::Mutex;

use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, FnPtr, Map};

use crate::modules::cron as m;

pub fn module() -> Module {
    exported_module!(api)
}

/// An entry a script defined: what `labhost cron FILE.rhai` schedules once the script ran.
#[derive(Clone)]
pub struct Defined {
    pub entry: m::Entry,
    /// For a function entry: the function (its `Action::Function` id is its index here).
    pub function: Option<FnPtr>,
}

/// The entries defined by `cron::schedule` in this process, in order.
pub static DEFINED: Mutex<Vec<Defined>> = Mutex::new(Vec::new());

/// Takes the entries defined so far.
pub fn take_defined() -> Vec<Defined> {
    std::mem::take(&mut *DEFINED.lock().unwrap_or_else(|e| e.into_inner()))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Opts {
    timezone: Option<String>,
    #[serde(default)]
    overlap: m::Overlap,
    #[serde(default)]
    catch_up: m::CatchUp,
    timeout: Option<crate::util::Seconds>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, crate::util::Text>,
    #[serde(default)]
    args: Vec<crate::util::Text>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn define(
    ctx: &NativeCallContext,
    name: &str,
    expr: &str,
    target: Dynamic,
    opts: Map,
) -> Result<Map, Box<EvalAltResult>> {
    use crate::bridge::{decode, host_err};
    let o: Opts = decode(ctx, "cron::schedule options", opts.into())?;
    let zone =
        m::Zone::parse(o.timezone.as_deref()).map_err(|e| host_err(ctx, "cron.invalid", e))?;
    let schedule = m::Schedule::parse(expr, zone)
        .map_err(|e| host_err(ctx, "cron.invalid", format!("bad schedule '{expr}': {e}")))?;
    let mut defined = DEFINED.lock().unwrap_or_else(|e| e.into_inner());
    if defined.iter().any(|d| d.entry.name == name) {
        return Err(host_err(
            ctx,
            "cron.invalid",
            format!("a second entry named '{name}'"),
        ));
    }
    let (action, function) = if let Some(f) = target.clone().try_cast::<FnPtr>() {
        (m::Action::Function { id: defined.len() }, Some(f))
    } else if let Ok(p) = target.into_immutable_string() {
        let path = std::path::PathBuf::from(p.as_str());
        if !path.is_file() {
            return Err(host_err(
                ctx,
                "cron.invalid",
                format!("script {} does not exist", path.display()),
            ));
        }
        (
            m::Action::Script {
                path: path.canonicalize().unwrap_or(path),
                args: o.args.iter().map(|a| a.0.clone()).collect(),
            },
            None,
        )
    } else {
        return Err(host_err(
            ctx,
            "invalid_argument",
            "cron::schedule runs a function (|| …) or a script path",
        ));
    };
    let next = schedule.next_after(chrono::Utc::now());
    let entry = m::Entry {
        name: name.to_string(),
        schedule,
        action,
        overlap: o.overlap,
        catch_up: o.catch_up,
        timeout: o.timeout.map(|t| t.0),
        env: o.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
        enabled: o.enabled,
    };
    let mut out = Map::new();
    out.insert("name".into(), Dynamic::from(name.to_string()));
    out.insert(
        "schedule".into(),
        Dynamic::from(entry.schedule.text.clone()),
    );
    out.insert("timezone".into(), Dynamic::from(entry.schedule.zone.name()));
    out.insert(
        "next".into(),
        next.map(|n| Dynamic::from(n.to_rfc3339()))
            .unwrap_or(Dynamic::UNIT),
    );
    defined.push(Defined { entry, function });
    Ok(out)
}

#[export_module]
pub mod api {
    /// Defines a scheduled entry: `target` is a function (`|| …`, called in this script's
    /// context) or a script path (run as `labhost run PATH`). `labhost cron FILE.rhai` runs
    /// the script once, then fires its entries; run any other way, `schedule` only returns
    /// `#{name, schedule, timezone, next}` (the next fire, RFC 3339). `expr`: crontab 5 or 6
    /// fields (seconds first), `@hourly`, `@daily`, …, with `L`, `W` and `#`.
    ///
    /// ```rhai
    /// let e = cron::schedule("nightly", "30 2 * * *", || print("retrain"));
    /// assert_eq(e.schedule, "30 2 * * *");
    /// assert(e.next.contains("T"));
    /// ```
    #[rhai_fn(name = "schedule", return_raw, volatile)]
    pub fn schedule(
        ctx: NativeCallContext,
        name: &str,
        expr: &str,
        target: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::define(&ctx, name, expr, target, Map::new())
    }

    /// [`schedule`] with options: `timezone` (IANA, default local), `overlap` (`skip`,
    /// `queue`, `allow`), `catch_up` (`none`, `last`, `all`), `timeout` (script entries),
    /// `env`, `args` (script entries), `enabled`.
    ///
    /// ```rhai
    /// fs::write("report.rhai", "print(\"weekly\");");
    /// let e = cron::schedule("weekly", "0 9 * * MON", "report.rhai",
    ///     #{timezone: "Europe/Berlin", overlap: "queue", catch_up: "all", timeout: "1h"});
    /// assert_eq(e.timezone, "Europe/Berlin");
    /// ```
    #[rhai_fn(name = "schedule", return_raw, volatile)]
    pub fn schedule_opts(
        ctx: NativeCallContext,
        name: &str,
        expr: &str,
        target: Dynamic,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::define(&ctx, name, expr, target, opts)
    }

    /// The next `n` fire times of a cron expression (RFC 3339, UTC) in `timezone` (IANA or
    /// `"local"`).
    ///
    /// ```rhai
    /// let t = cron::next("0 12 L * *", "UTC", 2);
    /// assert_eq(t.len(), 2);
    /// assert(t[0].ends_with("T12:00:00+00:00"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn next(
        ctx: NativeCallContext,
        expr: &str,
        timezone: &str,
        n: i64,
    ) -> Result<Array, Box<EvalAltResult>> {
        use crate::bridge::host_err;
        let zone = crate::modules::cron::Zone::parse(Some(timezone))
            .map_err(|e| host_err(&ctx, "cron.invalid", e))?;
        let s = crate::modules::cron::Schedule::parse(expr, zone)
            .map_err(|e| host_err(&ctx, "cron.invalid", format!("bad schedule '{expr}': {e}")))?;
        let mut t = chrono::Utc::now();
        let mut out = Array::new();
        for _ in 0..n.max(0) {
            match s.next_after(t) {
                Some(x) => {
                    out.push(Dynamic::from(x.to_rfc3339()));
                    t = x;
                }
                None => break,
            }
        }
        Ok(out)
    }
}
