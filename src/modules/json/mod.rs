//! `json`: parse and dump. Errors carry line and column.
pub mod rhai;

use crate::error::{LabError, LabResult};

pub fn parse(text: &str) -> LabResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        LabError::new(
            "json.parse",
            format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_pos(&e.to_string())
            ),
        )
    })
}

fn strip_pos(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_string()
}

pub fn dump<T: serde::Serialize>(v: &T, pretty: bool) -> LabResult<String> {
    let r = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    r.map_err(|e| LabError::new("json.dump", format!("cannot write JSON: {e}")))
}
