//! The one decoding layer from script values to typed Rust: a serde `Deserializer` over rhai's
//! `Dynamic` whose errors speak script words. An error names the field (`env`,
//! `volumes[0].bind`), what it must be ("a map of names to values", "a duration like \"90s\"
//! or a number of seconds") and what it got ("an array"), never a Rust type name. Every struct
//! rejects unknown keys, with a "did you mean" for near misses, whether or not the struct says
//! `deny_unknown_fields`.
use std::fmt;

use rhai::{Array, Dynamic, Map};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

/// A decoding error: where (`path`, outermost first) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    path: Vec<Seg>,
    msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl DecodeError {
    fn new(msg: impl Into<String>) -> Self {
        DecodeError {
            path: Vec::new(),
            msg: msg.into(),
        }
    }

    fn at(mut self, seg: Seg) -> Self {
        self.path.insert(0, seg);
        self
    }

    /// `volumes[0].bind`, or empty at the top.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) if s.is_empty() => s.push_str(k),
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() {
            return f.write_str(&self.msg);
        }
        // "`env` must be …" reads as a sentence; anything else gets a colon.
        if self.msg.starts_with("must ") || self.msg.starts_with("is ") {
            write!(f, "`{path}` {}", self.msg)
        } else {
            write!(f, "`{path}`: {}", self.msg)
        }
    }
}

impl std::error::Error for DecodeError {}

/// What serde's own visitors expect, in script words.
fn expected_words(exp: &dyn de::Expected) -> String {
    let e = exp.to_string();
    match e.as_str() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "an integer of 0 or more".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "an array".into(),
        "a map" => "a map of names to values".into(),
        "a string" | "a borrowed string" => "a string".into(),
        "a character" | "a char" => "a single character".into(),
        "unit" => "()".into(),
        "option" => "a value or ()".into(),
        _ if e.starts_with("a nonzero u") => "an integer of 1 or more".into(),
        _ if e.starts_with("a nonzero i") => "an integer other than 0".into(),
        _ if e.starts_with("struct ") || e.starts_with("a map of") => "a map".into(),
        _ if e.starts_with("tuple of ") || e.starts_with("an array of") => e.clone(),
        _ => e,
    }
}

/// What a script value is, in script words (with the value itself for scalars).
fn got_words(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Bool(b) => format!("{b}"),
        Unexpected::Signed(i) => format!("{i} (an integer)"),
        Unexpected::Unsigned(i) => format!("{i} (an integer)"),
        Unexpected::Float(x) => format!("{x} (a number)"),
        Unexpected::Char(c) => format!("'{c}' (a character)"),
        Unexpected::Str(s) => format!("\"{s}\" (a string)"),
        Unexpected::Bytes(_) => "a blob".into(),
        Unexpected::Unit => "() (nothing)".into(),
        Unexpected::Option => "an optional value".into(),
        Unexpected::Seq => "an array".into(),
        Unexpected::Map => "a map".into(),
        Unexpected::Other(o) => o.to_string(),
        other => other.to_string(),
    }
}

pub use crate::util::did_you_mean;

fn unknown_key(field: &str, expected: &[&str]) -> DecodeError {
    let hint = match did_you_mean(field, expected) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if expected.is_empty() => " (this map takes no keys)".into(),
        None => format!(" (keys: {})", expected.join(", ")),
    };
    DecodeError::new(format!("unknown key `{field}`{hint}"))
}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DecodeError::new(format!(
            "must be {}, got {}",
            expected_words(exp),
            got_words(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DecodeError::new(format!(
            "must be {}, got {len} item(s)",
            expected_words(exp)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let one_of = expected
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = did_you_mean(variant, expected)
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        DecodeError::new(format!("must be one of {one_of}, got \"{variant}\"{hint}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        unknown_key(field, expected)
    }

    fn missing_field(field: &'static str) -> Self {
        DecodeError::new("is required").at(Seg::Key(field.to_string()))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DecodeError::new(format!("`{field}` is given twice"))
    }
}

/// Decodes a script value into `T`.
pub fn from_dynamic<T: DeserializeOwned>(v: &Dynamic) -> Result<T, DecodeError> {
    T::deserialize(De(v))
}

/// The type of a value, in script words (for messages of bindings that check by hand).
pub fn type_words(v: &Dynamic) -> String {
    let u = unexpected(v);
    got_words(&u)
}

fn unexpected(v: &Dynamic) -> Unexpected<'static> {
    if v.is_unit() {
        Unexpected::Unit
    } else if v.is_array() {
        Unexpected::Seq
    } else if v.is_map() {
        Unexpected::Map
    } else if v.is_string() {
        Unexpected::Other("a string")
    } else if v.is_int() {
        Unexpected::Other("an integer")
    } else if v.is_float() {
        Unexpected::Other("a number")
    } else if v.is_bool() {
        Unexpected::Other("true or false")
    } else if v.is_blob() {
        Unexpected::Bytes(&[])
    } else if v.is_fnptr() {
        Unexpected::Other("a function pointer")
    } else {
        Unexpected::Other("a value of another type")
    }
}

struct De<'a>(&'a Dynamic);

impl De<'_> {
    fn other_type(&self) -> DecodeError {
        let name = self.0.type_name();
        let short = name.rsplit("::").next().unwrap_or(name);
        DecodeError::new(format!("cannot take a {short} here"))
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => {
        $(fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
            self.deserialize_any(v)
        })*
    };
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        let d = self.0;
        if d.is_shared() {
            let flat = d.flatten_clone();
            return De(&flat).deserialize_any(v);
        }
        if d.is_unit() {
            v.visit_unit()
        } else if let Ok(b) = d.as_bool() {
            v.visit_bool(b)
        } else if let Ok(i) = d.as_int() {
            v.visit_i64(i)
        } else if let Ok(f) = d.as_float() {
            v.visit_f64(f)
        } else if let Ok(c) = d.as_char() {
            v.visit_char(c)
        } else if d.is_string() {
            let s = d.clone().into_immutable_string().unwrap_or_default();
            v.visit_str(s.as_str())
        } else if let Some(a) = d.read_lock::<Array>() {
            v.visit_seq(SeqDe {
                items: a.iter(),
                index: 0,
            })
        } else if let Some(m) = d.read_lock::<Map>() {
            v.visit_map(MapDe {
                entries: m.iter(),
                value: None,
            })
        } else if d.is_blob() {
            let b = d.clone().into_blob().unwrap_or_default();
            v.visit_bytes(&b)
        } else {
            Err(self.other_type())
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        if self.0.is_unit() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DecodeError> {
        let d = self.0;
        if d.is_shared() {
            let flat = d.flatten_clone();
            return De(&flat).deserialize_struct(_name, fields, v);
        }
        let Some(m) = d.read_lock::<Map>() else {
            return Err(DecodeError::new(format!(
                "must be a map, got {}",
                got_words(&unexpected(d))
            )));
        };
        // Every struct rejects unknown keys, named or not.
        if let Some(k) = m.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(unknown_key(k, fields));
        }
        v.visit_map(MapDe {
            entries: m.iter(),
            value: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DecodeError> {
        let d = self.0;
        if d.is_string() {
            let s = d.clone().into_string().unwrap_or_default();
            return v.visit_enum(s.into_deserializer());
        }
        Err(DecodeError::new(format!(
            "must be one of {}, got {}",
            _variants
                .iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", "),
            got_words(&unexpected(d))
        )))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        v.visit_unit()
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_any(v)
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Dynamic>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let i = self.index;
        self.index += 1;
        seed.deserialize(De(item))
            .map(Some)
            .map_err(|e| e.at(Seg::Index(i)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, I> {
    entries: I,
    value: Option<(&'a str, &'a Dynamic)>,
}

impl<'de, 'a, I, S> de::MapAccess<'de> for MapDe<'a, I>
where
    I: Iterator<Item = (&'a S, &'a Dynamic)>,
    S: AsRef<str> + 'a,
{
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((k.as_ref(), v));
        seed.deserialize(k.as_ref().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| DecodeError::new("a value without a key"))?;
        seed.deserialize(De(v))
            .map_err(|e| e.at(Seg::Key(k.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        bind: String,
        #[serde(default)]
        mode: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Spec {
        command: crate::command::Command,
        #[serde(default)]
        env: BTreeMap<String, crate::util::Text>,
        timeout: Option<crate::util::Seconds>,
        #[serde(default)]
        max_workers: Option<u32>,
        #[serde(default)]
        volumes: Vec<Inner>,
        #[serde(default)]
        run_in: Option<crate::store::RunIn>,
    }

    fn err(script: &str) -> String {
        let engine = rhai::Engine::new();
        let v: Dynamic = engine.eval(script).unwrap();
        from_dynamic::<Spec>(&v).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_what_it_must_be_and_what_it_got() {
        assert_eq!(
            err(r#"#{command: "true", env: [1, 2]}"#),
            "`env` must be a map of names to values, got an array"
        );
        assert_eq!(
            err("#{command: 5}"),
            "`command` must be a command: a string (run by sh -c) or an array of strings, got 5 (an integer)"
        );
        assert_eq!(
            err(r#"#{command: "x", max_wrkers: 2}"#),
            "unknown key `max_wrkers` (did you mean `max_workers`?)"
        );
        assert_eq!(
            err(r#"#{command: "x", max_workers: "two"}"#),
            "`max_workers` must be an integer of 0 or more, got \"two\" (a string)"
        );
        assert_eq!(
            err(r#"#{command: "x", timeout: [1]}"#),
            "`timeout` must be a duration like \"90s\" or a number of seconds, got an array"
        );
        assert_eq!(
            err(r#"#{command: "x", volumes: [#{bnd: "/x"}]}"#),
            "`volumes[0]`: unknown key `bnd` (did you mean `bind`?)"
        );
        assert_eq!(
            err(r#"#{command: "x", volumes: [#{mode: "ro"}]}"#),
            "`volumes[0].bind` is required"
        );
        assert_eq!(err(r#"#{env: #{}}"#), "`command` is required");
        assert_eq!(
            err(r#"#{command: "x", run_in: "dockr"}"#),
            "`run_in` must be one of \"host\", \"docker\", got \"dockr\" (did you mean \"docker\"?)"
        );
        assert_eq!(
            err(r#"#{command: "x", zzz: 1}"#),
            "unknown key `zzz` (keys: command, env, timeout, max_workers, volumes, run_in)"
        );
    }

    #[test]
    fn good_values_decode_with_durations_in_both_forms() {
        let engine = rhai::Engine::new();
        let v: Dynamic = engine
            .eval(r#"#{command: ["python", "x.py", 3], env: #{LR: 0.1, N: 2, ON: true}, timeout: "2h"}"#)
            .unwrap();
        let s: Spec = from_dynamic(&v).unwrap();
        assert_eq!(s.timeout.unwrap().secs(), 7200.0);
        assert_eq!(s.env["LR"].0, "0.1");
        assert_eq!(s.env["ON"].0, "true");
        let v: Dynamic = engine.eval(r#"#{command: "x", timeout: 90}"#).unwrap();
        assert_eq!(
            from_dynamic::<Spec>(&v).unwrap().timeout.unwrap().secs(),
            90.0
        );
    }

    #[test]
    fn near_misses() {
        assert_eq!(did_you_mean("timeot", &["timeout", "cwd"]), Some("timeout"));
        assert_eq!(did_you_mean("xyz", &["timeout", "cwd"]), None);
    }
}
