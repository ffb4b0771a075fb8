//! Module resolution: the embedded stdlib (`stdlib/*.rhai`, served as `std/<name>`), then
//! the importing script's folder, then each folder of `LABHOST_PATH`.
//!
//! Embedded modules are compiled on first import and cached for the life of the process, so
//! a script that imports nothing pays nothing at startup. File modules are cached by path.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rhai::module_resolvers::ModuleResolver;
use std::sync::Arc;

use rhai::{Engine, EvalAltResult, Module, Position, Scope};

type SharedModule = Arc<Module>;
type RhaiResultOf<T> = Result<T, Box<EvalAltResult>>;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));
}

/// `(name, source)` of every embedded stdlib module.
pub fn embedded() -> &'static [(&'static str, &'static str)] {
    embedded::EMBEDDED
}

/// The source name an embedded module carries in diagnostics.
pub fn source_name(name: &str) -> String {
    format!("<stdlib>/{name}.rhai")
}

/// Looks up embedded source text by its diagnostic source name.
pub fn source_text(source: &str) -> Option<&'static str> {
    let name = source.strip_prefix("<stdlib>/")?.strip_suffix(".rhai")?;
    embedded().iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[derive(Default)]
pub struct Resolver {
    search_path: Vec<PathBuf>,
    cache_files: bool,
    std_cache: Mutex<HashMap<String, SharedModule>>,
    file_cache: Mutex<HashMap<PathBuf, SharedModule>>,
}

impl Resolver {
    /// `search_path`: folders tried after the importer's own (from `LABHOST_PATH`).
    /// `cache_files: false` (the REPL) re-reads a file module on every import.
    pub fn new(search_path: Vec<PathBuf>, cache_files: bool) -> Self {
        Resolver {
            search_path,
            cache_files,
            ..Default::default()
        }
    }

    /// Folders from `LABHOST_PATH` (colon separated).
    pub fn env_path() -> Vec<PathBuf> {
        crate::config::import_path()
    }

    fn resolve_std(
        &self,
        engine: &Engine,
        name: &str,
        path: &str,
        pos: Position,
    ) -> RhaiResultOf<SharedModule> {
        if let Some(m) = self
            .std_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(m.clone());
        }
        let Some((_, src)) = embedded().iter().find(|(n, _)| *n == name) else {
            return Err(EvalAltResult::ErrorModuleNotFound(path.into(), pos).into());
        };
        let m = compile_module(engine, src, &source_name(name))
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(source_name(name), e, pos)))?;
        self.std_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), m.clone());
        Ok(m)
    }

    fn candidates(&self, source: Option<&str>, path: &str) -> Vec<PathBuf> {
        let mut rel = PathBuf::from(path);
        if rel.extension().is_none_or(|x| x != "rhai") {
            let mut s = rel.into_os_string();
            s.push(".rhai");
            rel = PathBuf::from(s);
        }
        if rel.is_absolute() {
            return vec![rel];
        }
        let importer_dir = source
            .filter(|s| !s.starts_with('<'))
            .and_then(|s| Path::new(s).parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        std::iter::once(importer_dir)
            .chain(self.search_path.iter().cloned())
            .map(|d| d.join(&rel))
            .collect()
    }
}

fn compile_module(engine: &Engine, src: &str, source: &str) -> RhaiResultOf<SharedModule> {
    let mut ast = engine
        .compile(src)
        .map_err(|e| Box::new(EvalAltResult::from(e)))?;
    ast.set_source(source);
    Ok(Module::eval_ast_as_new(Scope::new(), &ast, engine)?.into())
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> RhaiResultOf<SharedModule> {
        if let Some(name) = path.strip_prefix("std/") {
            return self.resolve_std(engine, name, path, pos);
        }
        let Some(file) = self
            .candidates(source, path)
            .into_iter()
            .find(|p| p.is_file())
        else {
            return Err(EvalAltResult::ErrorModuleNotFound(path.into(), pos).into());
        };
        let file = file.canonicalize().unwrap_or(file);
        if self.cache_files {
            if let Some(m) = self
                .file_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&file)
            {
                return Ok(m.clone());
            }
        }
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| {
            let err = EvalAltResult::ErrorSystem(format!("cannot read module '{name}'"), e.into());
            Box::new(EvalAltResult::ErrorInModule(name.clone(), err.into(), pos))
        })?;
        let m = compile_module(engine, &text, &name)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))?;
        if self.cache_files {
            self.file_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(file, m.clone());
        }
        Ok(m)
    }
}

/// Guards against two stdlib modules with one name (the build script sorts, this checks).
pub fn names() -> &'static Vec<&'static str> {
    static N: OnceLock<Vec<&'static str>> = OnceLock::new();
    N.get_or_init(|| embedded().iter().map(|(n, _)| *n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_module_compiles_and_evaluates() {
        let engine = crate::script::engine::build(crate::script::engine::Options::default());
        assert!(!embedded().is_empty(), "stdlib/ has no modules");
        for (name, src) in embedded() {
            compile_module(&engine, src, &source_name(name))
                .unwrap_or_else(|e| panic!("std/{name} does not compile: {e}"));
        }
        let mut n = names().clone();
        n.dedup();
        assert_eq!(n.len(), embedded().len());
    }
}
