//! `labhost doc`: the API reference, generated from rhai metadata (signatures and doc
//! comments of native functions; doc comments of `std/` script functions). Never written
//! by hand: the same data drives REPL completion and the test that runs every example.
use serde::Serialize;

use crate::script::{engine, stdlib};

#[derive(Debug, Clone, Serialize)]
pub struct FnDoc {
    pub name: String,
    pub signature: String,
    /// Doc comment text, without the `///` markers.
    pub doc: String,
    /// The ```rhai blocks of the doc comment: executed by the test suite.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleDoc {
    /// `fs`, `std/helpers`, or `global` for prefix-less functions.
    pub name: String,
    pub kind: &'static str,
    pub functions: Vec<FnDoc>,
}

fn strip_comment(lines: &[String]) -> String {
    let mut out = Vec::new();
    for l in lines {
        for line in l.lines() {
            let t = line.trim_start();
            let t = t
                .strip_prefix("///")
                .or_else(|| t.strip_prefix("/**"))
                .or_else(|| t.strip_prefix("*/"))
                .or_else(|| t.strip_prefix('*'))
                .unwrap_or(t);
            let t = t.strip_suffix("*/").unwrap_or(t);
            out.push(t.strip_prefix(' ').unwrap_or(t).to_string());
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// The ```rhai code blocks of a doc text.
pub fn examples(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    for line in doc.lines() {
        let t = line.trim();
        match &mut cur {
            None if t == "```rhai" => cur = Some(Vec::new()),
            Some(block) if t == "```" => {
                out.push(block.join("\n"));
                cur = None;
            }
            Some(block) => block.push(line),
            None => {}
        }
    }
    out
}

fn fn_doc(name: String, signature: String, comments: Vec<String>) -> FnDoc {
    let doc = strip_comment(&comments);
    FnDoc {
        name,
        signature,
        examples: examples(&doc),
        doc,
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFn {
    name: String,
    signature: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
struct RawModule {
    #[serde(default)]
    functions: Vec<RawFn>,
    #[serde(default)]
    modules: std::collections::BTreeMap<String, RawModule>,
}

/// `f(x: &str) -> Result<String, Box<EvalAltResult>>` → `f(x: &str) -> String`;
/// a unit return is dropped.
fn clean_signature(sig: &str) -> String {
    let mut s = sig.to_string();
    if let (Some(i), true) = (s.find("-> Result<"), s.ends_with(", Box<EvalAltResult>>")) {
        let inner = s[i + "-> Result<".len()..s.len() - ", Box<EvalAltResult>>".len()].to_string();
        s = format!("{}-> {inner}", &s[..i]);
    }
    s.trim_end_matches(" -> ()").to_string()
}

/// Property getters (`get$env(lease: &mut GpuLease) -> Map`) read as `GpuLease.env -> Map`;
/// methods on a custom type as `GpuLease.release()`.
fn pretty_signature(prefix: &str, name: &str, sig: &str) -> String {
    let sig = clean_signature(sig);
    let ty = sig
        .split("&mut ")
        .nth(1)
        .and_then(|s| s.split([')', ',']).next());
    let ret = sig
        .rsplit_once(" -> ")
        .map(|(_, r)| format!(" -> {r}"))
        .unwrap_or_default();
    match (name.strip_prefix("get$"), ty) {
        (Some(prop), Some(ty)) => format!("{ty}.{prop}{ret}"),
        (None, Some(ty))
            if sig
                .split(',')
                .next()
                .is_some_and(|first| first.contains("&mut ")) =>
        {
            format!("{ty}.{name}(){ret}")
        }
        _ => format!("{prefix}{sig}"),
    }
}

/// Every documented module: global functions, native modules, then `std/` modules.
pub fn collect() -> Vec<ModuleDoc> {
    let engine = engine::build(engine::Options::default());
    let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
    let mut raw: RawModule = serde_json::from_str(&json).unwrap_or_default();
    let mut out = Vec::new();
    let conv = |fns: Vec<RawFn>, prefix: &str| {
        let mut v: Vec<FnDoc> = fns
            .into_iter()
            .map(|f| {
                let sig = pretty_signature(prefix, &f.name, &f.signature);
                fn_doc(f.name, sig, f.doc_comments)
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.signature.cmp(&b.signature)));
        v
    };
    out.push(ModuleDoc {
        name: "global".into(),
        kind: "native",
        functions: conv(std::mem::take(&mut raw.functions), ""),
    });
    for name in crate::modules::NATIVE {
        let m = raw.modules.remove(*name).unwrap_or_default();
        out.push(ModuleDoc {
            name: name.to_string(),
            kind: "native",
            functions: conv(m.functions, &format!("{name}::")),
        });
    }
    for (name, src) in stdlib::embedded() {
        let Ok(ast) = engine.compile(src) else {
            continue;
        };
        let mut fns: Vec<FnDoc> = ast
            .iter_functions()
            .filter(|f| f.access != rhai::FnAccess::Private)
            .map(|f| {
                let sig = format!("{}({})", f.name, f.params.join(", "));
                fn_doc(
                    f.name.to_string(),
                    sig,
                    f.comments.iter().map(|c| c.to_string()).collect(),
                )
            })
            .collect();
        fns.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(ModuleDoc {
            name: format!("std/{name}"),
            kind: "stdlib",
            functions: fns,
        });
    }
    out
}

pub fn to_markdown(mods: &[ModuleDoc]) -> String {
    let mut s = String::from(
        "# labhost API reference\n\nGenerated by `labhost doc` from the functions' metadata.\n",
    );
    for m in mods {
        s += &format!("\n## {}\n", m.name);
        if m.kind == "stdlib" {
            s += &format!(
                "\nImport with `import \"{}\" as {};`\n",
                m.name,
                m.name.trim_start_matches("std/")
            );
        }
        for f in &m.functions {
            s += &format!("\n### `{}`\n\n{}\n", f.signature, f.doc);
        }
    }
    s
}

/// The docs of every module, or of `module` only (`fs`, `std/helpers`, or `helpers`).
/// `Err` names the modules there are.
pub fn select(module: Option<&str>) -> Result<Vec<ModuleDoc>, String> {
    let mut mods = collect();
    if let Some(want) = module {
        let names: Vec<String> = mods.iter().map(|m| m.name.clone()).collect();
        mods.retain(|m| m.name == want || m.name == format!("std/{want}"));
        if mods.is_empty() {
            return Err(format!(
                "no module '{want}' (modules: {})",
                names.join(", ")
            ));
        }
    }
    Ok(mods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_function_has_a_doc_comment_and_an_example() {
        for m in collect() {
            for f in &m.functions {
                assert!(
                    !f.doc.trim().is_empty(),
                    "{} has no doc comment",
                    f.signature
                );
                assert!(
                    !f.examples.is_empty(),
                    "{} has no ```rhai example",
                    f.signature
                );
            }
        }
    }

    #[test]
    fn signatures_hide_the_error_plumbing() {
        assert_eq!(
            clean_signature("read(path: &str) -> Result<String, Box<EvalAltResult>>"),
            "read(path: &str) -> String"
        );
        assert_eq!(
            clean_signature("write(p: &str) -> Result<(), Box<EvalAltResult>>"),
            "write(p: &str)"
        );
    }

    #[test]
    fn getters_and_methods_read_as_properties() {
        assert_eq!(
            pretty_signature("gpu::", "get$env", "get$env(lease: &mut GpuLease) -> Map"),
            "GpuLease.env -> Map"
        );
        assert_eq!(
            pretty_signature("gpu::", "release", "release(lease: &mut GpuLease)"),
            "GpuLease.release()"
        );
        assert_eq!(
            pretty_signature("gpu::", "count", "count() -> i64"),
            "gpu::count() -> i64"
        );
    }

    #[test]
    fn extracts_rhai_blocks_only() {
        let d = "text\n```rhai\nlet a = 1;\n```\n```sh\nls\n```\n```rhai\nb();\n```";
        assert_eq!(
            examples(d),
            vec!["let a = 1;".to_string(), "b();".to_string()]
        );
    }
}
