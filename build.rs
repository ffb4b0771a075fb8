//! Embeds every `stdlib/*.rhai` file: generates `(name, source)` pairs served as `std/<name>`.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=stdlib");
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("stdlib");
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = String::from("pub static EMBEDDED: &[(&str, &str)] = &[\n");
    for (name, path) in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
        out += &format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        );
    }
    out += "];\n";
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("stdlib.rs");
    fs::write(dest, out).unwrap();
}
