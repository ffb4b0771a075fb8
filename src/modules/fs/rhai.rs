//! Rhai binding for `fs`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

pub fn module() -> Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    use std::path::Path;

    use crate::bridge::{decode, OrRhai};
    use crate::modules::fs as m;

    /// Reads a UTF-8 text file and returns its contents.
    /// Errors: `fs.not_found`, `fs.permission_denied`, `fs.invalid_data` (not UTF-8).
    ///
    /// ```rhai
    /// fs::write("notes.txt", "hello");
    /// assert_eq(fs::read("notes.txt"), "hello");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn read(ctx: NativeCallContext, path: &str) -> Result<String, Box<EvalAltResult>> {
        m::read(Path::new(path)).or_rhai(&ctx)
    }

    /// Writes text to a file atomically (temp file + rename): readers see the old or the new
    /// contents, never half of them. The folder must exist.
    ///
    /// ```rhai
    /// fs::write("config.json", "{}");
    /// fs::write("config.json", `{"lr": 0.1}`);
    /// assert_eq(fs::read("config.json"), `{"lr": 0.1}`);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn write(ctx: NativeCallContext, path: &str, text: &str) -> Result<(), Box<EvalAltResult>> {
        m::write_atomic(Path::new(path), text.as_bytes()).or_rhai(&ctx)
    }

    /// Appends text to a file, creating it if missing.
    ///
    /// ```rhai
    /// fs::append("log.txt", "a\n");
    /// fs::append("log.txt", "b\n");
    /// assert_eq(fs::read("log.txt"), "a\nb\n");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn append(
        ctx: NativeCallContext,
        path: &str,
        text: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        m::append(Path::new(path), text).or_rhai(&ctx)
    }

    /// True if the path exists (file, folder or anything else).
    ///
    /// ```rhai
    /// assert(!fs::exists("nope.txt"));
    /// fs::write("yes.txt", "");
    /// assert(fs::exists("yes.txt"));
    /// ```
    #[rhai_fn(volatile)]
    pub fn exists(path: &str) -> bool {
        Path::new(path).exists()
    }

    /// Creates a folder and any missing parents (`mkdir -p`). An existing folder is fine.
    ///
    /// ```rhai
    /// fs::mkdir("runs/exp1/outputs");
    /// fs::mkdir("runs/exp1/outputs");
    /// assert(fs::exists("runs/exp1/outputs"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn mkdir(ctx: NativeCallContext, path: &str) -> Result<(), Box<EvalAltResult>> {
        m::mkdir(Path::new(path)).or_rhai(&ctx)
    }

    /// Removes a file or an empty folder. Missing paths are an error (`fs.not_found`).
    ///
    /// ```rhai
    /// fs::write("tmp.txt", "x");
    /// fs::remove("tmp.txt");
    /// assert(!fs::exists("tmp.txt"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn remove(ctx: NativeCallContext, path: &str) -> Result<(), Box<EvalAltResult>> {
        m::remove(Path::new(path), m::RemoveOpts::default()).or_rhai(&ctx)
    }

    /// Removes with options: `recursive` (a folder tree), `missing_ok` (no error if absent).
    ///
    /// ```rhai
    /// fs::mkdir("out/a/b");
    /// fs::remove("out", #{recursive: true});
    /// fs::remove("out", #{missing_ok: true});
    /// assert(!fs::exists("out"));
    /// ```
    #[rhai_fn(name = "remove", return_raw, volatile)]
    pub fn remove_with(
        ctx: NativeCallContext,
        path: &str,
        opts: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let opts: m::RemoveOpts = decode(&ctx, "fs::remove options", opts.into())?;
        m::remove(Path::new(path), opts).or_rhai(&ctx)
    }

    /// Names of the entries in a folder, sorted.
    ///
    /// ```rhai
    /// fs::mkdir("d");
    /// fs::write("d/b.txt", "");
    /// fs::write("d/a.txt", "");
    /// assert_eq(fs::list("d"), ["a.txt", "b.txt"]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn list(ctx: NativeCallContext, dir: &str) -> Result<Array, Box<EvalAltResult>> {
        Ok(m::list(Path::new(dir))
            .or_rhai(&ctx)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Paths matching a glob pattern, sorted. `*` matches within a folder, `**` across folders.
    ///
    /// ```rhai
    /// fs::mkdir("g/sub");
    /// fs::write("g/x.csv", "");
    /// fs::write("g/sub/y.csv", "");
    /// fs::write("g/z.txt", "");
    /// assert_eq(fs::glob("g/**/*.csv"), ["g/sub/y.csv", "g/x.csv"]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn glob(ctx: NativeCallContext, pattern: &str) -> Result<Array, Box<EvalAltResult>> {
        Ok(m::glob(pattern)
            .or_rhai(&ctx)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Copies a file (into a folder if `dst` is one) or a whole folder tree.
    ///
    /// ```rhai
    /// fs::mkdir("src/inner");
    /// fs::write("src/inner/f.txt", "data");
    /// fs::copy("src", "dst");
    /// assert_eq(fs::read("dst/inner/f.txt"), "data");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn copy(ctx: NativeCallContext, src: &str, dst: &str) -> Result<(), Box<EvalAltResult>> {
        m::copy(Path::new(src), Path::new(dst)).or_rhai(&ctx)
    }

    /// Joins two path parts. An absolute second part replaces the first.
    ///
    /// ```rhai
    /// assert_eq(fs::join("runs", "exp1"), "runs/exp1");
    /// ```
    #[rhai_fn(name = "join")]
    pub fn join2(a: &str, b: &str) -> String {
        m::join(&[a.to_string(), b.to_string()])
    }

    /// Joins an array of path parts.
    ///
    /// ```rhai
    /// assert_eq(fs::join(["runs", "exp1", "metrics.jsonl"]), "runs/exp1/metrics.jsonl");
    /// ```
    #[rhai_fn(name = "join")]
    pub fn join_all(parts: Array) -> String {
        let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        m::join(&parts)
    }

    /// The folder part of a path (`""` if there is none).
    ///
    /// ```rhai
    /// assert_eq(fs::parent("runs/exp1/model.pt"), "runs/exp1");
    /// ```
    pub fn parent(path: &str) -> String {
        m::parent(path)
    }

    /// The file name without its last extension.
    ///
    /// ```rhai
    /// assert_eq(fs::stem("runs/model.best.pt"), "model.best");
    /// ```
    pub fn stem(path: &str) -> String {
        m::stem(path)
    }

    /// The last component of a path.
    ///
    /// ```rhai
    /// assert_eq(fs::file_name("runs/exp1/model.pt"), "model.pt");
    /// ```
    pub fn file_name(path: &str) -> String {
        m::file_name(path)
    }

    /// The extension without the dot (`""` if none).
    ///
    /// ```rhai
    /// assert_eq(fs::extension("config.yaml"), "yaml");
    /// ```
    pub fn extension(path: &str) -> String {
        m::extension(path)
    }
}
