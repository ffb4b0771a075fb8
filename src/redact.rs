//! Secret redaction. Every secret value labhost reads is registered here and replaced by
//! `***` in everything labhost writes (script output, logs, error messages, saved files).
use std::sync::{OnceLock, RwLock};

/// Values shorter than this are not registered: masking `a` everywhere would wreck output.
const MIN_SECRET_LEN: usize = 4;

fn secrets() -> &'static RwLock<Vec<String>> {
    static S: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    S.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret value; from now on it never appears in output.
pub fn register(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut s = secrets().write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|v| v == value) {
        s.push(value.to_string());
        // Longest first, so a secret that contains another is masked whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Returns `text` with every registered secret replaced by `***`.
pub fn apply(text: &str) -> String {
    let s = secrets().read().unwrap_or_else(|e| e.into_inner());
    if s.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    for v in s.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
}

/// Every registered secret, longest first (for a [`StreamRedactor`] of a job's output).
pub fn registered() -> Vec<String> {
    secrets().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Masks secrets in a byte stream written in pieces (a job's stdout): a secret split across
/// two writes is still masked, because bytes that could be the start of a secret are held
/// back until the next piece (or the end) says whether they are.
pub struct StreamRedactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl StreamRedactor {
    /// A redactor for `secrets` (values shorter than the registry's minimum are ignored, as
    /// there).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> StreamRedactor {
        let mut v: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().as_bytes().to_vec())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        StreamRedactor {
            secrets: v,
            pending: Vec::new(),
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Takes the next piece; returns what can be written now (masked).
    pub fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(piece);
        self.drain(false)
    }

    /// The end of the stream: everything held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> Vec<u8> {
        let buf = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < buf.len() {
            let rest = &buf[i..];
            // Longest first: a longer secret that may still come whole wins over a shorter
            // one that is already there.
            for s in &self.secrets {
                if rest.starts_with(s) {
                    out.extend_from_slice(b"***");
                    i += s.len();
                    continue 'scan;
                }
                if !at_end && s.len() > rest.len() && s.starts_with(rest) {
                    // What is left may be the start of this secret: keep it for the next piece.
                    self.pending = rest.to_vec();
                    return out;
                }
            }
            out.push(buf[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_longest_first() {
        register("hunter2-token");
        register("hunter2");
        assert_eq!(
            apply("a hunter2-token b hunter2 c"),
            "a *** b *** c".to_string()
        );
        register("ab"); // too short to register
        assert_eq!(apply("ab"), "ab");
    }

    #[test]
    fn a_stream_masks_secrets_split_across_pieces() {
        let mut r = StreamRedactor::new(["tok-5f2a9c-SECRET", "tok-5f2a9c", "ab"]);
        let mut out = Vec::new();
        for piece in [
            &b"token=tok-5f"[..],
            b"2a9c-SEC",
            b"RET and tok-5f2a9c",
            b"\n",
        ] {
            out.extend(r.feed(piece));
        }
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "token=*** and ***\n");
        // A held-back prefix that turns out not to be a secret is written unchanged.
        let mut r = StreamRedactor::new(["hunter2"]);
        let mut out = r.feed(b"say hunt");
        assert_eq!(out, b"say ");
        out.extend(r.feed(b"ing"));
        out.extend(r.finish());
        assert_eq!(out, b"say hunting");
        let mut r = StreamRedactor::new(["hunter2"]);
        let mut out = r.feed(b"end: hunter");
        out.extend(r.finish());
        assert_eq!(out, b"end: hunter");
        assert!(StreamRedactor::new(["ab"]).is_empty());
    }
}
