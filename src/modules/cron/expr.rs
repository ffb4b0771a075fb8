//! Cron expressions read strictly, before croner sees them: every field and every list item
//! is checked against the crontab grammar, so a malformed expression (`0,,5 * * * *`,
//! `0 0 15WW * *`) is refused with the part that is wrong and where it is, instead of being
//! read some lenient way. Nicknames (`@midnight`, `@daily`, …) are expanded here.
//!
//! Grammar of a field (5 fields, or 6 with seconds first): a comma-separated list of items,
//! each `*`, `N`, `A-B` (A ≤ B), any of those with `/STEP`, or a name (JAN–DEC in month,
//! SUN–SAT in day of week; also in ranges). Day of month also takes `?`, `L` (the last day),
//! `LW` (the last weekday) and `NW` (the weekday nearest day N); day of week takes `?`, `NL`
//! (the last weekday N of the month) and `N#K` (the K-th weekday N, K 1–5).

/// A refused expression: what is wrong, and where in the expression text (a byte offset
/// and the part, for a caret under it).
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    /// Byte offset of `part` in the expression as written (trimmed).
    pub offset: usize,
    pub part: String,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// The expression checked and in croner's terms: its fields (seconds first, always six) and
/// whether it is a fixed-time entry in Vixie cron's sense (no `*` leading its seconds,
/// minute or hour field: lists, ranges and steps over a bounded set are fixed times).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub croner_text: String,
    pub fixed_time: bool,
}

const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day of month",
            Field::Month => "month",
            Field::DayOfWeek => "day of week",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            // 7 is Sunday as well, as in Vixie cron.
            Field::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &DAYS,
            _ => &[],
        }
    }
}

/// Checks `text` (already trimmed) against the grammar above.
pub fn check(text: &str) -> Result<Checked, ExprError> {
    let whole = |message: String| ExprError {
        message,
        offset: 0,
        part: text.to_string(),
    };
    let expanded;
    let body = if text.starts_with('@') {
        let Some((_, e)) = NICKNAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) else {
            let names: Vec<&str> = NICKNAMES.iter().map(|(n, _)| *n).collect();
            return Err(whole(format!(
                "unknown nickname '{text}' (one of {})",
                names.join(", ")
            )));
        };
        expanded = e.to_string();
        expanded.as_str()
    } else {
        text
    };
    // Fields with their offsets in `text` (a nickname's all point at the nickname).
    let mut fields: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    for (i, c) in body.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                fields.push((s, &body[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        fields.push((s, &body[s..]));
    }
    let kinds: &[Field] = match fields.len() {
        5 => &[
            Field::Minute,
            Field::Hour,
            Field::DayOfMonth,
            Field::Month,
            Field::DayOfWeek,
        ],
        6 => &[
            Field::Second,
            Field::Minute,
            Field::Hour,
            Field::DayOfMonth,
            Field::Month,
            Field::DayOfWeek,
        ],
        n => {
            return Err(whole(format!(
                "{n} field(s); a schedule has 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or is a nickname such as @daily"
            )))
        }
    };
    let nickname = !std::ptr::eq(body, text);
    let mut fixed_time = true;
    for (&(off, f), &kind) in fields.iter().zip(kinds) {
        let at = if nickname { 0 } else { off };
        check_field(f, kind, at).map_err(|mut e| {
            if nickname {
                e.offset = 0;
                e.part = text.to_string();
            }
            e
        })?;
        if matches!(kind, Field::Second | Field::Minute | Field::Hour) && f.starts_with('*') {
            fixed_time = false;
        }
    }
    let mut six: Vec<&str> = fields.iter().map(|(_, f)| *f).collect();
    if six.len() == 5 {
        six.insert(0, "0");
    }
    Ok(Checked {
        croner_text: six.join(" "),
        fixed_time,
    })
}

fn check_field(f: &str, kind: Field, at: usize) -> Result<(), ExprError> {
    let mut off = at;
    for item in f.split(',') {
        // An empty item is shown as its whole list.
        let bad = |message: String| ExprError {
            message: format!("{} field: {message}", kind.name()),
            offset: if item.is_empty() { at } else { off },
            part: if item.is_empty() {
                f.to_string()
            } else {
                item.to_string()
            },
        };
        if item.is_empty() {
            return Err(bad(format!("an empty item in the list '{f}'")));
        }
        check_item(item, kind).map_err(bad)?;
        off += item.len() + 1;
    }
    Ok(())
}

fn check_item(item: &str, kind: Field) -> Result<(), String> {
    let up = item.to_ascii_uppercase();
    let (lo, hi) = kind.range();
    // The special forms of the day fields.
    match kind {
        Field::DayOfMonth if up == "L" || up == "LW" || up == "?" => return Ok(()),
        Field::DayOfMonth if up.len() > 1 && up.ends_with('W') => {
            let n = number(&up[..up.len() - 1], kind)
                .map_err(|_| format!("'{item}' is not a day of month (N, NW, L or LW)"))?;
            return within(n, lo, hi, kind).map(|_| ());
        }
        Field::DayOfWeek if up == "?" => return Ok(()),
        Field::DayOfWeek if up == "L" => {
            return Err(
                "'L' alone means nothing here: the last Friday of the month is 5L (or FRIL)".into(),
            )
        }
        Field::DayOfWeek if up.len() > 1 && up.ends_with('L') => {
            let n = value(&up[..up.len() - 1], kind)?;
            return within(n, lo, hi, kind).map(|_| ());
        }
        Field::DayOfWeek if up.contains('#') => {
            let (d, k) = up.split_once('#').unwrap_or_default();
            within(value(d, kind)?, lo, hi, kind)?;
            let k: u32 = k
                .parse()
                .map_err(|_| format!("'{item}': the week after '#' is a number 1–5"))?;
            if !(1..=5).contains(&k) {
                return Err(format!("'{item}': the week after '#' is 1–5, not {k}"));
            }
            return Ok(());
        }
        _ => {}
    }
    let (base, step) = match up.split_once('/') {
        Some((b, s)) => {
            let s: u32 = s
                .parse()
                .map_err(|_| format!("'{item}': the step after '/' is a whole number"))?;
            if s == 0 || s > hi - lo + 1 {
                return Err(format!(
                    "'{item}': a step of {s} (it is 1–{} here)",
                    hi - lo + 1
                ));
            }
            (b, Some(s))
        }
        None => (up.as_str(), None),
    };
    if base == "*" {
        return Ok(());
    }
    match base.split_once('-') {
        Some((a, b)) => {
            let a = within(value(a, kind)?, lo, hi, kind)?;
            let b = within(value(b, kind)?, lo, hi, kind)?;
            if a > b {
                return Err(format!("'{item}': a range runs from low to high"));
            }
        }
        None => {
            within(value(base, kind)?, lo, hi, kind)?;
            let _ = step;
        }
    }
    Ok(())
}

fn number(s: &str, kind: Field) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a {} value", kind.name()));
    }
    s.parse().map_err(|_| format!("'{s}' is too large"))
}

/// A number, or a month or day name where the field has names.
fn value(s: &str, kind: Field) -> Result<u32, String> {
    if let Some(i) = kind.names().iter().position(|n| *n == s) {
        return Ok(i as u32 + if kind == Field::Month { 1 } else { 0 });
    }
    number(s, kind).map_err(|e| {
        if kind.names().is_empty() {
            e
        } else {
            format!("{e} (a number or a name such as {})", kind.names()[0])
        }
    })
}

fn within(n: u32, lo: u32, hi: u32, kind: Field) -> Result<u32, String> {
    if n < lo || n > hi {
        return Err(format!("{n} is out of range ({}: {lo}–{hi})", kind.name()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Malformed or meaningless expressions: refused, with the part that is wrong.
    #[test]
    fn malformed_expressions_are_refused_with_the_wrong_part() {
        for (expr, part, offset, words) in [
            ("0,,5 * * * *", "0,,5", 0, "empty item"),
            ("0 1,2, * * *", "1,2,", 2, "empty item"),
            (",0 * * * *", ",0", 0, "empty item"),
            ("0 0 15WW * *", "15WW", 4, "'15WW' is not a day of month"),
            ("0 9 * * L", "L", 8, "5L"),
            ("61 * * * *", "61", 0, "out of range"),
            ("0 24 * * *", "24", 2, "out of range"),
            ("0 5-2 * * *", "5-2", 2, "low to high"),
            ("*/0 * * * *", "*/0", 0, "step of 0"),
            ("0 0 * FOO *", "FOO", 6, "JAN"),
            ("0 0 * * MON#6", "MON#6", 8, "1–5"),
            ("0 0 * *", "0 0 * *", 0, "4 field(s)"),
            ("@fortnightly", "@fortnightly", 0, "unknown nickname"),
            ("0 0 0 * *", "0", 4, "out of range"),
        ] {
            let e = check(expr).expect_err(expr);
            assert_eq!((e.part.as_str(), e.offset), (part, offset), "{expr}: {e:?}");
            assert!(e.message.contains(words), "{expr}: {}", e.message);
        }
    }

    #[test]
    fn valid_forms_are_taken_and_fixed_times_told_from_intervals() {
        for (expr, fixed) in [
            ("30 2 * * *", true),
            ("30 1,2 * * *", true),
            ("0 1-3 * * *", true),
            ("0-59/15 2 * * *", true),
            ("*/15 2 * * *", false),
            ("0 * * * *", false),
            ("0 */2 * * *", false),
            ("@midnight", true),
            ("@hourly", false),
            ("0 12 L * *", true),
            ("0 9 LW * *", true),
            ("0 9 15W * *", true),
            ("0 18 * * FRI#2", true),
            ("0 18 * * 5L", true),
            ("0 0 * JAN-MAR mon-fri", true),
            ("*/20 * * * * *", false),
            ("0 30 2 * * *", true),
        ] {
            let c = check(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
            assert_eq!(c.fixed_time, fixed, "{expr}");
            assert_eq!(c.croner_text.split(' ').count(), 6, "{expr}");
        }
        assert_eq!(check("@midnight").unwrap().croner_text, "0 0 0 * * *");
    }
}
