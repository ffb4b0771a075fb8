//! Error kinds shared by every module API and the process exit codes.
use std::fmt;

/// Process exit codes (documented in the README).
pub mod exit {
    pub const OK: u8 = 0;
    /// The script failed: syntax error, runtime error, uncaught throw.
    pub const SCRIPT: u8 = 1;
    /// Bad command line or unreadable script file.
    pub const USAGE: u8 = 2;
    /// Interrupted by Ctrl-C / SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// An error from a module's typed API. `kind` is machine readable (`fs.not_found`,
/// `sh.timeout`, …) and becomes `e.kind` in a script's `catch (e)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabError {
    pub kind: String,
    pub message: String,
}

impl LabError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        LabError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The one kind that is not an error but a stop: the user pressed Ctrl-C.
    pub fn cancelled() -> Self {
        LabError::new(CANCELLED, "cancelled")
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == CANCELLED
    }
}

/// Kind used for cancellation; the bridge turns it into a non-catchable termination.
pub const CANCELLED: &str = "cancelled";

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LabError {}

/// Shorthand result for module APIs.
pub type LabResult<T> = Result<T, LabError>;

/// Maps an I/O error on `path` to a kinded error in module `m` (`fs.not_found`, …).
pub fn io_err(m: &str, what: &str, path: &std::path::Path, e: &std::io::Error) -> LabError {
    use std::io::ErrorKind as K;
    let k = match e.kind() {
        K::NotFound => "not_found",
        K::PermissionDenied => "permission_denied",
        K::AlreadyExists => "already_exists",
        K::IsADirectory => "is_a_directory",
        K::NotADirectory => "not_a_directory",
        K::DirectoryNotEmpty => "directory_not_empty",
        K::InvalidData => "invalid_data",
        _ => "io",
    };
    LabError::new(
        format!("{m}.{k}"),
        format!("{what} '{}': {}", path.display(), strip_os_code(e)),
    )
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn strip_os_code(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
