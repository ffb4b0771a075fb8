//! A job's log within its `log_limit`: when `stdout.log` (or `stderr.log`) reaches half of
//! the limit it becomes `stdout.log.1` (the part before that is dropped) and a new file
//! starts with a line saying so. The latest output — where an error is — is always kept, and
//! the two files together never hold more than the limit (plus that line).
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

pub(super) struct CappedLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    written: u64,
    limit: u64,
    /// The current file holds nothing but the line a rotation starts it with.
    fresh: bool,
}

impl CappedLog {
    /// The log at `path` (opened for appending; what an earlier attempt wrote counts).
    pub(super) fn open(path: PathBuf, limit: u64) -> std::io::Result<CappedLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let written = file.metadata()?.len();
        Ok(CappedLog {
            path,
            file,
            written,
            limit,
            fresh: written == 0,
        })
    }

    fn half(&self) -> u64 {
        (self.limit / 2).max(1)
    }

    /// `stdout.log` → `stdout.log.1`, and a new `stdout.log` that says what happened.
    fn rotate(&mut self) -> std::io::Result<()> {
        let mut older = self.path.clone().into_os_string();
        older.push(".1");
        std::fs::rename(&self.path, &older)?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let line = format!(
            "[labhost] log_limit {}: the output before this line is in {name}.1, older output was dropped\n",
            crate::util::format_bytes(self.limit)
        );
        self.file.write_all(line.as_bytes())?;
        self.written = line.len() as u64;
        self.fresh = true;
        Ok(())
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = self.half().saturating_sub(self.written) as usize;
            if rest.len() <= room {
                self.put(rest)?;
                break;
            }
            // Up to the last whole line that fits, then a new file (a line longer than a
            // whole file is cut).
            let cut = rest[..room]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|i| i + 1)
                .or(self.fresh.then_some(room.max(1)));
            if let Some(c) = cut {
                self.put(&rest[..c])?;
                rest = &rest[c..];
            }
            self.rotate()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl CappedLog {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.file.write_all(b)?;
        self.written += b.len() as u64;
        self.fresh = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_log_keeps_the_latest_output_within_its_limit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        let mut log = CappedLog::open(p.clone(), 2048).unwrap();
        for i in 0..1000 {
            writeln!(log, "line {i:04}").unwrap();
        }
        let now = std::fs::read_to_string(&p).unwrap();
        let before = std::fs::read_to_string(d.path().join("stdout.log.1")).unwrap();
        assert!(now.starts_with(
            "[labhost] log_limit 2.0KiB: the output before this line is in stdout.log.1"
        ));
        assert!(now.ends_with("line 0999\n"), "{now}");
        assert!(now.len() <= 1024 && before.len() <= 1024);
        // Whole lines, none missing between the two files, the latest kept.
        let nums: Vec<usize> = before
            .lines()
            .chain(now.lines())
            .filter(|l| !l.starts_with("[labhost]"))
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert_eq!(nums.last(), Some(&999));
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums.len() > 100);
        // One write larger than the whole limit is cut into files of its size.
        let mut log = CappedLog::open(d.path().join("big.log"), 2048).unwrap();
        log.write_all(&[b'x'; 10_000]).unwrap();
        assert!(std::fs::metadata(d.path().join("big.log")).unwrap().len() <= 1024);
    }
}
