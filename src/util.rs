//! Small parsers shared by the CLI and modules: durations, byte sizes, typed option values.
use std::time::Duration;

use crate::error::{LabError, LabResult};

/// Parses `90s`, `3.5h`, `2d`, `1h30m`, `250ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> LabResult<Duration> {
    let bad = |why: &str| {
        LabError::new(
            "time.invalid_duration",
            format!("invalid duration '{text}': {why} (examples: 90s, 3.5h, 2d, 1h30m, 250ms)"),
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(|| bad("must be a finite, non-negative number"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("missing unit"))?;
        if num_end == 0 {
            return Err(bad("expected a number"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad("bad number"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        let mult = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" => 7.0 * 86400.0,
            _ => return Err(bad(&format!("unknown unit '{unit}'"))),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    secs_to_duration(total).ok_or_else(|| bad("out of range"))
}

/// [`parse_duration`] as a clap value parser: every duration flag takes `90s`, `1.5h` or a
/// number of seconds, and refuses negative, NaN and infinite values (exit 2).
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.message)
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn hostname_or_local() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A duration as people write it: `45s`, `1.5m`, `2h`, `3d` (the largest unit that fits).
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (v, u) = if s >= 86400.0 {
        (s / 86400.0, "d")
    } else if s >= 3600.0 {
        (s / 3600.0, "h")
    } else if s >= 60.0 {
        (s / 60.0, "m")
    } else {
        (s, "s")
    };
    let t = format!("{v:.2}");
    format!("{}{u}", t.trim_end_matches('0').trim_end_matches('.'))
}

/// A number of seconds as a duration: `None` for a negative, NaN, infinite or absurd
/// (≥ 10¹² s) number, which `Duration::from_secs_f64` would panic on.
pub fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..1e12).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// Parses byte sizes: `1024`, `10GiB`, `1.5 GB`, `512MiB`, `4k`.
pub fn parse_bytes(text: &str) -> LabResult<u64> {
    let bad = || {
        LabError::new(
            "invalid_size",
            format!("invalid size '{text}' (examples: 512MiB, 10GiB, 1.5GB, 4096)"),
        )
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..split].parse().map_err(|_| bad())?;
    let mult: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

/// Formats bytes with binary units, e.g. `23.6GiB`.
pub fn format_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}

/// A command-line option value, typed the way a user expects: int, float, bool, string.
#[derive(Debug, Clone, PartialEq)]
pub enum OptValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

pub fn type_value(v: &str) -> OptValue {
    if let Ok(i) = v.parse::<i64>() {
        return OptValue::Int(i);
    }
    match v {
        "true" | "True" => return OptValue::Bool(true),
        "false" | "False" => return OptValue::Bool(false),
        _ => {}
    }
    if let Ok(f) = v.parse::<f64>() {
        if v.chars().any(|c| c.is_ascii_digit()) {
            return OptValue::Float(f);
        }
    }
    OptValue::Str(v.to_string())
}

/// Splits script arguments into positionals and `--key=value` / `--flag` options.
/// `--` ends option parsing: everything after it is positional.
pub fn split_script_args(args: &[String]) -> (Vec<String>, Vec<(String, OptValue)>) {
    let mut pos = Vec::new();
    let mut opts = Vec::new();
    let mut only_pos = false;
    for a in args {
        if only_pos {
            pos.push(a.clone());
        } else if a == "--" {
            only_pos = true;
        } else if let Some(body) = a.strip_prefix("--").filter(|b| !b.is_empty()) {
            match body.split_once('=') {
                Some((k, v)) => opts.push((k.to_string(), type_value(v))),
                None => opts.push((body.to_string(), OptValue::Bool(true))),
            }
        } else {
            pos.push(a.clone());
        }
    }
    (pos, opts)
}

/// Single-quotes `s` for sh unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// FNV-1a: a key that stays the same across labhost builds (std's hasher does not promise it).
pub fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap().as_secs_f64();
        assert_eq!(d("90s"), 90.0);
        assert_eq!(d("3.5h"), 12600.0);
        assert_eq!(d("2d"), 172800.0);
        assert_eq!(d("1h30m"), 5400.0);
        assert_eq!(d("250ms"), 0.25);
        assert_eq!(d("1.5"), 1.5);
        for bad in ["", "abc", "5x", "-3s", "h", "3 parsecs"] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.kind, "time.invalid_duration", "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("10GiB").unwrap(), 10 * 1024 * 1024 * 1024);
        assert_eq!(parse_bytes("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("ten").is_err());
        assert_eq!(format_bytes(24 * 1024 * 1024 * 1024), "24.0GiB");
        assert_eq!(format_bytes(12), "12B");
    }

    #[test]
    fn script_args_are_typed() {
        let args: Vec<String> = [
            "a",
            "--lr=0.1",
            "--epochs=3",
            "--fast",
            "--name=x",
            "--ok=false",
            "--",
            "--raw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (pos, opts) = split_script_args(&args);
        assert_eq!(pos, vec!["a", "--raw"]);
        assert_eq!(
            opts,
            vec![
                ("lr".into(), OptValue::Float(0.1)),
                ("epochs".into(), OptValue::Int(3)),
                ("fast".into(), OptValue::Bool(true)),
                ("name".into(), OptValue::Str("x".into())),
                ("ok".into(), OptValue::Bool(false)),
            ]
        );
        assert_eq!(type_value("inf"), OptValue::Str("inf".into()));
    }
}

/// A duration in a spec or options map: a number of seconds (`90`, `0.5`) or text (`"90s"`,
/// `"1.5h"`). Every duration field of every spec decodes through it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like \"90s\" or a number of seconds")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Seconds, E> {
                secs_to_duration(v).map(Seconds).ok_or_else(|| {
                    E::custom(format!(
                        "must be a duration like \"90s\" or a number of seconds, got {v} (a negative or endless number)"
                    ))
                })
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v)
                    .map(Seconds)
                    .map_err(|e| E::custom(e.message))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size: a number of bytes, or text like `"10MiB"` ([`parse_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size like \"10MiB\" or a number of bytes")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got {v}")))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v)
                    .map(ByteSize)
                    .map_err(|e| E::custom(e.message))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value written as text: a string as it is, a number or boolean as Rhai prints it (env
/// values, tags, command arguments).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod seconds_tests {
    use super::*;

    #[test]
    fn durations_take_numbers_and_text() {
        let s: Seconds = serde_json::from_str("90").unwrap();
        assert_eq!(s.secs(), 90.0);
        let s: Seconds = serde_json::from_str("\"2h\"").unwrap();
        assert_eq!(s.secs(), 7200.0);
        let e = serde_json::from_str::<Seconds>("[1]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a duration like \"90s\""), "{e}");
        let e = serde_json::from_str::<Seconds>("\"2 fortnights\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let t: Text = serde_json::from_str("0.1").unwrap();
        assert_eq!(t.0, "0.1");
    }
}

/// A size in bytes: a number, or text like `"10GiB"`, `"512MiB"`, `"1.5GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size like \"10GiB\" or a number of bytes")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("must be a size of 0 bytes or more, got {v}")))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Bytes, E> {
                parse_bytes(v).map(Bytes).map_err(|e| E::custom(e.message))
            }
        }
        d.deserialize_any(V)
    }
}

/// A device named by its index (`0`) or its UUID (`"GPU-…"`), as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(pub String);

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DeviceId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a GPU index or UUID")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<DeviceId, E> {
                Ok(DeviceId(v.to_string()))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<DeviceId, E> {
                Ok(DeviceId(v.to_string()))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<DeviceId, E> {
                Ok(DeviceId(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// 128 random bits from the kernel's CSPRNG as 32 hex digits: a bearer token.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the rest of `b`, which we own.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n > 0 {
            got += n as usize;
        } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // No getrandom (a very old kernel): /dev/urandom.
            use std::io::Read;
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                if f.read_exact(&mut b).is_ok() {
                    break;
                }
            }
            panic!("no source of random bytes (getrandom and /dev/urandom failed)");
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A relative path for a URL: each `/`-separated component percent-encoded, the `/` kept.
pub fn percent_encode_path(p: &str) -> String {
    p.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Downsampling for charts: M4 (Jugel et al., "M4: A Visualization-Oriented Time Series
/// Data Aggregation", VLDB 2014). The points, in order, are cut into equal buckets and each
/// keeps its first, last, lowest and highest point, so a line drawn through what is kept has
/// the full line's extremes in every bucket — no spike is lost, which averaging or plain LTTB
/// cannot promise.
///
/// The indices M4 keeps of `values` (in order) to draw them with at most `max` points
/// (`max / 4` buckets, each giving its first, min, max and last). All of them when they
/// fit. NaN is neither a minimum nor a maximum.
pub fn m4(values: &[f64], max: usize) -> Vec<usize> {
    let n = values.len();
    if n <= max.max(4) {
        return (0..n).collect();
    }
    let buckets = (max / 4).max(1);
    let mut keep = Vec::with_capacity(buckets * 4);
    for b in 0..buckets {
        let (lo, hi) = (b * n / buckets, (b + 1) * n / buckets);
        if lo >= hi {
            continue;
        }
        let (mut min, mut max) = (lo, lo);
        for i in lo..hi {
            let v = values[i];
            if v.is_nan() {
                continue;
            }
            if values[min].is_nan() || v < values[min] {
                min = i;
            }
            if values[max].is_nan() || v > values[max] {
                max = i;
            }
        }
        let mut four = [lo, min, max, hi - 1];
        four.sort_unstable();
        for i in four {
            if keep.last() != Some(&i) {
                keep.push(i);
            }
        }
    }
    keep
}

#[cfg(test)]
mod m4_tests {
    use super::m4;

    #[test]
    fn short_series_are_kept_whole() {
        assert_eq!(m4(&[3.0, 1.0, 2.0], 100), vec![0, 1, 2]);
    }

    #[test]
    fn every_buckets_first_last_min_and_max_survive() {
        // 1,000,000 points of a slow wave with one spike up and one down: 4,000 points kept,
        // in order, and both spikes and the ends among them.
        let mut v: Vec<f64> = (0..1_000_000)
            .map(|i| (i as f64 / 50_000.0).sin())
            .collect();
        v[123_457] = 50.0;
        v[876_543] = -50.0;
        let keep = m4(&v, 4000);
        // (A monotonic bucket gives 2 points, its first and last being its extremes.)
        assert!((2000..=4000).contains(&keep.len()), "{}", keep.len());
        assert!(keep.windows(2).all(|w| w[0] < w[1]));
        for i in [0, 123_457, 876_543, 999_999] {
            assert!(keep.contains(&i), "{i} lost");
        }
        // Per bucket, the kept extremes are the bucket's extremes.
        let n = v.len();
        for b in 0..1000 {
            let (lo, hi) = (b * n / 1000, (b + 1) * n / 1000);
            let kept: Vec<f64> = keep
                .iter()
                .filter(|&&i| i >= lo && i < hi)
                .map(|&i| v[i])
                .collect();
            let all = &v[lo..hi];
            let max = all.iter().copied().fold(f64::MIN, f64::max);
            let min = all.iter().copied().fold(f64::MAX, f64::min);
            assert_eq!(kept.iter().copied().fold(f64::MIN, f64::max), max);
            assert_eq!(kept.iter().copied().fold(f64::MAX, f64::min), min);
        }
    }

    #[test]
    fn nan_is_never_an_extreme() {
        let mut v = vec![f64::NAN; 100];
        v[50] = 1.0;
        v[60] = -1.0;
        let keep = m4(&v, 4);
        assert!(keep.contains(&50) && keep.contains(&60), "{keep:?}");
    }
}
