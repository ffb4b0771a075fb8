//! The metrics channel: a job appends JSON lines `{"name", "value", "step"}` to
//! `LABHOST_METRICS`; the supervisor reads whole new lines while it runs and hands them on.
//!
//! The path is labhost's: cleared of anything but a regular file before the job starts; the
//! job's first append makes the file (a job that reports nothing costs no inode). The file is
//! opened `O_NOFOLLOW`, checked to be a regular file, and read through that descriptor with
//! bounded, never blocking reads. A job that makes or replaces the path is followed only to
//! a regular file at the same place; a FIFO, device, directory or symlink there is refused
//! with one warning and nothing is read through it. Lines over [`MAX_LINE`] bytes and names
//! over MLflow's 250 characters are skipped, and warnings quote at most [`QUOTE`] characters
//! of a bad line.
//! A new attempt starts reading where the file ends, so a retry never reads its previous
//! attempt's points again.
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::store::Metric;

/// The longest metric line read (longer ones are skipped).
pub const MAX_LINE: usize = 64 * 1024;
/// The most read from the file in one pump (the rest comes at the next).
const MAX_READ: usize = 4 << 20;
/// MLflow's limit on metric names.
const MAX_NAME: usize = 250;
/// How much of a bad line a warning quotes.
const QUOTE: usize = 120;

/// Opens `path` for the tail without following a symlink or blocking on a FIFO: `None`
/// (with the reason) unless it is a regular file.
fn open_regular(path: &Path) -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symlink".to_string(),
            _ => e.to_string(),
        })?;
    let m = f.metadata().map_err(|e| e.to_string())?;
    if !m.file_type().is_file() {
        return Err(format!("it is not a regular file ({:?})", m.file_type()));
    }
    Ok(f)
}

/// Readies the metrics path of an attempt: anything but a regular file at it — a symlink,
/// FIFO or folder a previous attempt left — is removed.
fn prepare(path: &Path) -> std::io::Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_file() {
            if m.is_dir() {
                std::fs::remove_dir_all(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

/// A line quoted in a warning: at most [`QUOTE`] characters.
fn quote(line: &str) -> String {
    let mut q: String = line.chars().take(QUOTE).collect();
    if q.len() < line.len() {
        q.push_str(&format!("… ({} bytes)", line.len()));
    }
    q
}

/// The metric of one line, or why not.
fn parse_line(line: &str) -> Result<Metric, String> {
    match serde_json::from_str::<Metric>(line) {
        Ok(m) if m.name.chars().count() > MAX_NAME => Err(format!(
            "a metric name of {} characters (at most {MAX_NAME})",
            m.name.chars().count()
        )),
        Ok(m) if m.value.is_finite() || m.value.is_nan() => Ok(m),
        _ => Err(format!(
            "not a metric line (want {{\"name\":…,\"value\":…,\"step\":…}}): {}",
            quote(line)
        )),
    }
}

/// Follows a job's metrics file: each `pump` hands the lines written since the last one to
/// `metrics`.
pub(super) struct MetricsTail {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    line_no: u64,
    /// In a line over [`MAX_LINE`]: skipping to its end.
    skipping: bool,
    /// The path was refused: said once, not read again.
    refused: bool,
    /// The file the attempt started with and where its lines began: [`MetricsTail::rewind`]
    /// reads the attempt's points again from there.
    origin: Option<File>,
    start: u64,
}

impl MetricsTail {
    /// The tail of the attempt's metrics file, which the job makes with its first append; it
    /// starts at the end of a file earlier attempts left (what they wrote is theirs), or at
    /// the start of the file the job makes.
    pub(super) fn new(path: PathBuf) -> Self {
        if let Err(e) = prepare(&path) {
            tracing::warn!("{}: cannot clear the metrics path: {e}", path.display());
        }
        let file = open_regular(&path).ok();
        let offset = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        let origin = file.as_ref().and_then(|f| f.try_clone().ok());
        MetricsTail {
            path,
            file,
            offset,
            line_no: 0,
            skipping: false,
            refused: false,
            origin,
            start: offset,
        }
    }

    /// Reads the attempt's lines again from their start at the next pump (their receiver
    /// changed: the job supervisor records them itself once its host is gone).
    pub(super) fn rewind(&mut self) {
        self.file = self.origin.as_ref().and_then(|f| f.try_clone().ok());
        self.offset = self.start;
        self.line_no = 0;
        self.skipping = false;
        self.refused = false;
    }

    /// Whether the path still names the file we read; if the job put another regular file
    /// there, that one is read from its start. Anything else is refused once.
    fn follow(&mut self) {
        if self.refused {
            return;
        }
        let now = std::fs::symlink_metadata(&self.path);
        let same = match (&now, self.file.as_ref().and_then(|f| f.metadata().ok())) {
            (Ok(n), Some(cur)) => n.dev() == cur.dev() && n.ino() == cur.ino(),
            _ => false,
        };
        if same {
            return;
        }
        let Ok(n) = now else {
            // Deleted: what was written before stays readable through our descriptor.
            return;
        };
        match open_regular(&self.path) {
            Ok(f) if n.file_type().is_file() => {
                // Finish the old file first: its last lines are the job's too.
                self.file = Some(f);
                self.offset = 0;
                self.skipping = false;
            }
            Ok(_) => {}
            Err(why) => {
                tracing::warn!(
                    "{}: the job replaced its metrics file and {why}: not read (metrics stay those read so far)",
                    self.path.display()
                );
                self.refused = true;
                self.file = None;
            }
        }
    }

    /// New complete lines since the last read (at most [`MAX_READ`] bytes of them).
    fn read(&mut self) -> Vec<Metric> {
        let Some(f) = &self.file else {
            return Vec::new();
        };
        // Sized by what the file holds past the offset: most looks find nothing new, and a
        // zeroed MAX_READ buffer per look was most of a short job's cost.
        let avail = match f.metadata() {
            Ok(m) => m.len().saturating_sub(self.offset).min(MAX_READ as u64) as usize,
            Err(_) => return Vec::new(),
        };
        if avail == 0 {
            return Vec::new();
        }
        let mut buf = vec![0u8; avail];
        let n = match f.read_at(&mut buf, self.offset) {
            Ok(n) => n,
            Err(_) => return Vec::new(),
        };
        buf.truncate(n);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + nl];
            start += nl + 1;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            self.line_no += 1;
            if line.len() > MAX_LINE {
                tracing::warn!(
                    "{}:{}: a line of {} bytes (at most {MAX_LINE}): skipped",
                    self.path.display(),
                    self.line_no,
                    line.len()
                );
                continue;
            }
            let line = String::from_utf8_lossy(line);
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(&line) {
                Ok(m) => out.push(m),
                Err(why) => tracing::warn!("{}:{}: {why}", self.path.display(), self.line_no),
            }
        }
        // Only whole lines: a writer may be half-way through the last one — unless it is
        // already over the limit, then it is skipped to its end.
        if n - start > MAX_LINE {
            if !self.skipping {
                self.line_no += 1;
                tracing::warn!(
                    "{}:{}: a line over {MAX_LINE} bytes: skipped",
                    self.path.display(),
                    self.line_no
                );
            }
            self.skipping = true;
            start = n;
        }
        self.offset += start as u64;
        out
    }

    pub(super) fn pump(&mut self, metrics: &mut (dyn FnMut(Vec<Metric>) + Send)) {
        // What the current file holds first (bounded: a file that grows without end is
        // read on at the next pump), then whether the path moved on.
        for _ in 0..16 {
            let before = self.offset;
            let batch = self.read();
            if !batch.is_empty() {
                metrics(batch);
            }
            if self.offset == before {
                break;
            }
        }
        self.follow();
        let batch = self.read();
        if !batch.is_empty() {
            metrics(batch);
        }
    }
}

/// Reads the complete lines of a metrics file from `offset` (for tests and tools; jobs use
/// [`MetricsTail`]): bad lines are skipped with a warning naming the file and line.
pub fn read_metrics(path: &Path, offset: &mut u64, line_no: &mut u64) -> Vec<Metric> {
    let Ok(f) = open_regular(path) else {
        return Vec::new();
    };
    let mut t = MetricsTail {
        path: path.to_path_buf(),
        file: Some(f),
        offset: *offset,
        line_no: *line_no,
        skipping: false,
        refused: false,
        origin: None,
        start: *offset,
    };
    let out = t.read();
    *offset = t.offset;
    *line_no = t.line_no;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(t: &mut MetricsTail) -> Vec<Metric> {
        let mut got = Vec::new();
        t.pump(&mut |b| got.extend(b));
        got
    }

    fn append(p: &Path, s: &[u8]) {
        use std::io::Write;
        // As a job's `>>`: the first append makes the file.
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .unwrap()
            .write_all(s)
            .unwrap();
    }

    #[test]
    fn a_replaced_path_is_followed_only_to_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut t = MetricsTail::new(p.clone());
        append(&p, b"{\"name\":\"a\",\"value\":1,\"step\":1}\n");
        assert_eq!(pump(&mut t).len(), 1);
        // Deleted and made again: the new file's lines are read.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "{\"name\":\"a\",\"value\":2,\"step\":2}\n").unwrap();
        let got = pump(&mut t);
        assert_eq!((got.len(), got[0].value), (1, 2.0));
        // A symlink to a file with metric lines outside: refused, nothing read.
        let outside = d.path().join("outside.jsonl");
        std::fs::write(&outside, "{\"name\":\"x\",\"value\":9,\"step\":1}\n").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&outside, &p).unwrap();
        assert!(pump(&mut t).is_empty());
        assert!(pump(&mut t).is_empty());
    }

    #[test]
    fn a_fifo_or_a_folder_at_the_path_is_never_opened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut t = MetricsTail::new(p.clone());
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Would block forever if opened for reading without O_NONBLOCK.
        assert!(pump(&mut t).is_empty());
        // The next attempt clears the path; its job's append makes a regular file there.
        let mut t2 = MetricsTail::new(p.clone());
        assert!(std::fs::symlink_metadata(&p).is_err());
        append(&p, b"{\"name\":\"a\",\"value\":1,\"step\":1}\n");
        assert_eq!(pump(&mut t2).len(), 1);
    }

    #[test]
    fn long_lines_and_long_names_are_skipped_and_memory_stays_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut t = MetricsTail::new(p.clone());
        let big = format!(
            "{{\"name\":\"{}\",\"value\":1,\"step\":1}}\n",
            "n".repeat(300)
        );
        append(&p, big.as_bytes());
        let huge = vec![b'x'; 10 << 20];
        append(&p, &huge);
        assert!(pump(&mut t).is_empty());
        append(&p, b"\n{\"name\":\"ok\",\"value\":3,\"step\":1}\n");
        let mut got = Vec::new();
        for _ in 0..5 {
            got.extend(pump(&mut t));
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].name, "ok");
    }

    #[test]
    fn a_rewound_tail_reads_the_attempts_lines_again_and_only_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"name\":\"a\",\"value\":1,\"step\":1}\n").unwrap();
        let mut t = MetricsTail::new(p.clone());
        append(&p, b"{\"name\":\"a\",\"value\":2,\"step\":1}\n");
        assert_eq!(pump(&mut t).len(), 1);
        append(&p, b"{\"name\":\"a\",\"value\":3,\"step\":2}\n");
        t.rewind();
        let got: Vec<f64> = pump(&mut t).iter().map(|m| m.value).collect();
        assert_eq!(got, vec![2.0, 3.0]);
        assert!(pump(&mut t).is_empty());
    }

    #[test]
    fn the_file_is_the_jobs_to_make_and_read_from_its_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut t = MetricsTail::new(p.clone());
        // A job that reports nothing leaves no file.
        assert!(pump(&mut t).is_empty());
        assert!(!p.exists());
        append(&p, b"{\"name\":\"a\",\"value\":1,\"step\":1}\n");
        append(&p, b"{\"name\":\"a\",\"value\":2,\"step\":2}\n");
        let got: Vec<f64> = pump(&mut t).iter().map(|m| m.value).collect();
        assert_eq!(got, vec![1.0, 2.0]);
        // Rewound (its receiver changed), the attempt's points come again from the start.
        t.rewind();
        assert_eq!(pump(&mut t).len(), 2);
        assert!(pump(&mut t).is_empty());
    }

    #[test]
    fn a_new_attempt_reads_only_its_own_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"name\":\"a\",\"value\":1,\"step\":1}\n").unwrap();
        let mut t = MetricsTail::new(p.clone());
        append(&p, b"{\"name\":\"a\",\"value\":2,\"step\":1}\n");
        let got = pump(&mut t);
        assert_eq!((got.len(), got[0].value), (1, 2.0));
    }
}
