//! The metrics channel: a job appends JSON lines `{"name", "value", "step"}` to
//! `LABHOST_METRICS`; the supervisor reads whole new lines while it runs and hands them on.
use std::path::{Path, PathBuf};

use crate::store::Metric;

/// Reads new complete lines of the metrics file from `offset`; bad lines are skipped with a
/// warning naming the file and line.
pub fn read_metrics(path: &Path, offset: &mut u64, line_no: &mut u64) -> Vec<Metric> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    // Only whole lines: a writer may be half-way through the last one.
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&buf[..end]).lines() {
        *line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Metric>(line) {
            Ok(m) if m.value.is_finite() || m.value.is_nan() => out.push(m),
            _ => tracing::warn!(
                "{}:{}: not a metric line (want {{\"name\":…,\"value\":…,\"step\":…}}): {line}",
                path.display(),
                line_no
            ),
        }
    }
    out
}

/// Follows a job's metrics file: each `pump` hands the lines written since the last one to
/// `metrics`.
pub(super) struct MetricsTail {
    path: PathBuf,
    offset: u64,
    line_no: u64,
}

impl MetricsTail {
    pub(super) fn new(path: PathBuf) -> Self {
        MetricsTail {
            path,
            offset: 0,
            line_no: 0,
        }
    }

    pub(super) fn pump(&mut self, metrics: &mut (dyn FnMut(Vec<Metric>) + Send)) {
        let batch = read_metrics(&self.path, &mut self.offset, &mut self.line_no);
        if !batch.is_empty() {
            metrics(batch);
        }
    }
}
