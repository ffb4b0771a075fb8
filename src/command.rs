//! The one `Command` type: a string runs through `sh -c`, an array is an argv run without a
//! shell. `sh::run`, jobs, pipelines and docker all take and store it the same way.
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run by `sh -c`.
    Shell(String),
    /// Run as is: the first element is the program.
    Argv(Vec<String>),
}

impl Command {
    /// `Err` with a message when there is nothing to run.
    pub fn check_not_empty(&self) -> Result<(), String> {
        match self {
            Command::Shell(c) if c.trim().is_empty() => Err("the command is empty".into()),
            Command::Argv(a) if a.is_empty() => Err("the command array is empty".into()),
            Command::Argv(a) if a[0].is_empty() => Err("the command's program is empty".into()),
            _ => Ok(()),
        }
    }

    /// The program and its arguments (`sh -c …` for a shell command).
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(c) => vec!["sh".into(), "-c".into(), c.clone()],
            Command::Argv(a) => a.clone(),
        }
    }

    /// The program that runs (`sh` for a shell string).
    pub fn program(&self) -> String {
        match self {
            Command::Argv(a) => a.first().cloned().unwrap_or_default(),
            Command::Shell(_) => "sh".into(),
        }
    }

    /// For tables and logs: the shell text, or the argv joined by spaces.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(c) => c.clone(),
            Command::Argv(a) => a.join(" "),
        }
    }
}

impl Default for Command {
    fn default() -> Self {
        Command::Argv(Vec::new())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Command::Shell(c) => s.serialize_str(c),
            Command::Argv(a) => a.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command: a string (run by sh -c) or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Command, E> {
                Ok(Command::Shell(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<ArgWord>()? {
                    out.push(x.0);
                }
                Ok(Command::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One argv element: a string, or a number / bool written as text (`["python", "x.py", 3]`).
struct ArgWord(String);

impl<'de> Deserialize<'de> for ArgWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ArgWord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (one argument of the command)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ArgWord, E> {
                Ok(ArgWord(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ArgWord, E> {
                Ok(ArgWord(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ArgWord, E> {
                Ok(ArgWord(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ArgWord, E> {
                Ok(ArgWord(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ArgWord, E> {
                Ok(ArgWord(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_is_shell_array_is_argv_and_round_trips() {
        let c: Command = serde_json::from_str("\"echo hi\"").unwrap();
        assert_eq!(c, Command::Shell("echo hi".into()));
        let c: Command = serde_json::from_str("[\"python\", \"x.py\", 3]").unwrap();
        assert_eq!(
            c,
            Command::Argv(vec!["python".into(), "x.py".into(), "3".into()])
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            "[\"python\",\"x.py\",\"3\"]"
        );
        let e = serde_json::from_str::<Command>("5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a string (run by sh -c) or an array"), "{e}");
        assert!(Command::Shell(" ".into()).check_not_empty().is_err());
        assert!(Command::Argv(vec![]).check_not_empty().is_err());
    }
}
