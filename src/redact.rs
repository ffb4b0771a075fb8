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
}
