//! `env`: the process environment. Children started by `sh` (and later jobs) inherit it.
pub mod rhai;

use std::collections::BTreeMap;

use crate::error::{LabError, LabResult};

pub fn get(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

pub fn set(name: &str, value: &str) -> LabResult<()> {
    if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
        return Err(LabError::new(
            "env.invalid_name",
            format!("invalid environment variable name '{name}'"),
        ));
    }
    // SAFETY (edition 2024 marks this unsafe): scripts run on one thread; labhost's own
    // threads do not read the environment concurrently.
    std::env::set_var(name, value);
    Ok(())
}

pub fn unset(name: &str) {
    std::env::remove_var(name);
}

pub fn vars() -> BTreeMap<String, String> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}
