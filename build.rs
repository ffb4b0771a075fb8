//! Build steps:
//! - embeds every `stdlib/*.rhai` file: generates `(name, source)` pairs served as `std/<name>`;
//! - vendors the dashboard's charting library, uPlot (MIT), from the npm registry: the
//!   tarball of one pinned version, checked against its pinned sha512 (npm's `integrity`),
//!   unpacked into `OUT_DIR` (the minified script, its stylesheet, its licence) and embedded
//!   by `src/engine/mlflow/ui/assets.rs`. Nothing of it is committed. The tarball is kept in
//!   `$LABHOST_VENDOR_CACHE` (default `~/.cache/labhost/vendor`) so a rebuild, another
//!   profile or another clone does not download it again; `LABHOST_UPLOT_TGZ=<file>` builds
//!   from a tarball at hand (offline).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const UPLOT_VERSION: &str = "1.6.32";
/// npm's `dist.integrity` of uplot@1.6.32 (sha512), in hex.
const UPLOT_SHA512: &str = "2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023";

fn main() {
    stdlib();
    if let Err(e) = uplot() {
        panic!(
            "cannot vendor uPlot {UPLOT_VERSION} (the dashboard's charts): {e}\n\
             (it is downloaded once from https://registry.npmjs.org/uplot/-/uplot-{UPLOT_VERSION}.tgz; \
             offline, set LABHOST_UPLOT_TGZ to a copy of that file)"
        );
    }
}

fn stdlib() {
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

/// `sha512sum FILE`, in hex.
fn sha512(file: &Path) -> Result<String, String> {
    let o = Command::new("sha512sum")
        .arg(file)
        .output()
        .map_err(|e| format!("sha512sum: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout);
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("sha512sum {}: no output", file.display()))
}

fn uplot() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=LABHOST_UPLOT_TGZ");
    println!("cargo:rerun-if-env-changed=LABHOST_VENDOR_CACHE");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("uplot");
    let files = [
        "package/dist/uPlot.iife.min.js",
        "package/dist/uPlot.min.css",
        "package/LICENSE",
    ];
    let stamp = out.join(format!("{UPLOT_VERSION}.ok"));
    if stamp.exists() && files.iter().all(|f| out.join(f).exists()) {
        return Ok(());
    }
    let tgz = match env::var_os("LABHOST_UPLOT_TGZ") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = env::var_os("LABHOST_VENDOR_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labhost/vendor"))
                })
                .unwrap_or_else(|| out.clone());
            fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
            let tgz = cache.join(format!("uplot-{UPLOT_VERSION}.tgz"));
            if !tgz.exists() || sha512(&tgz)? != UPLOT_SHA512 {
                let part = cache.join(format!("uplot-{UPLOT_VERSION}.tgz.part"));
                let url = format!("https://registry.npmjs.org/uplot/-/uplot-{UPLOT_VERSION}.tgz");
                let ok = Command::new("curl")
                    .args(["-fsSL", "--retry", "3", "--max-time", "120", "-o"])
                    .arg(&part)
                    .arg(&url)
                    .status()
                    .map_err(|e| format!("curl: {e}"))?;
                if !ok.success() {
                    return Err(format!("curl {url} failed ({ok})"));
                }
                fs::rename(&part, &tgz).map_err(|e| format!("{}: {e}", tgz.display()))?;
            }
            tgz
        }
    };
    let got = sha512(&tgz)?;
    if got != UPLOT_SHA512 {
        return Err(format!(
            "{} has sha512 {got}, not npm's {UPLOT_SHA512}",
            tgz.display()
        ));
    }
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&out)
        .args(files)
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    if !ok.success() {
        return Err(format!("tar -xzf {} failed ({ok})", tgz.display()));
    }
    fs::write(&stamp, "").map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(())
}
