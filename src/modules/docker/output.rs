//! The multiplexed output stream, reassembled into whole lines per stream.

use crate::runtime::Stream;

/// Splits chunks into lines per stream, so a line is never interleaved with another.
#[derive(Default)]
pub(super) struct Lines {
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Lines {
    pub(super) fn push(&mut self, s: Stream, data: &[u8], emit: &mut dyn FnMut(Stream, &str)) {
        let buf = if s == Stream::Out {
            &mut self.out
        } else {
            &mut self.err
        };
        buf.extend_from_slice(data);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            emit(
                s,
                String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'),
            );
        }
    }

    pub(super) fn flush(&mut self, emit: &mut dyn FnMut(Stream, &str)) {
        for (s, buf) in [(Stream::Out, &mut self.out), (Stream::Err, &mut self.err)] {
            if !buf.is_empty() {
                emit(s, &String::from_utf8_lossy(buf));
                buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_reassembled_per_stream() {
        let mut l = Lines::default();
        let mut got = Vec::new();
        let mut emit = |s: Stream, t: &str| got.push((s, t.to_string()));
        l.push(Stream::Out, b"ab", &mut emit);
        l.push(Stream::Err, b"e1\n", &mut emit);
        l.push(Stream::Out, b"c\nd", &mut emit);
        l.flush(&mut emit);
        assert_eq!(
            got,
            vec![
                (Stream::Err, "e1".into()),
                (Stream::Out, "abc".into()),
                (Stream::Out, "d".into())
            ]
        );
    }
}
