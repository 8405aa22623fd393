//! The CRI container log format: `<RFC3339Nano> <stream> <P|F> <text>\n`, one record per
//! line of output; `P` marks a record that does not end a line (a chunk that ended without a
//! newline, or a piece of a line longer than the record limit).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest text of one record; longer lines are split into partial records.
pub const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CriLogError {
    #[error("log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Appends CRI records to a file, reopened by path on request (after rotation).
pub struct CriLog {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
}

fn open(path: &Path) -> Result<File, CriLogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| CriLogError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Now, as RFC 3339 with nanoseconds in UTC.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

impl CriLog {
    /// Opens (creating) the log at `path`; `None` discards output.
    pub fn open(path: Option<&Path>) -> Result<Self, CriLogError> {
        let file = path.map(open).transpose()?;
        Ok(CriLog {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            file,
            buf: Vec::new(),
        })
    }

    pub fn reopen(&mut self) -> Result<(), CriLogError> {
        if self.file.is_some() {
            self.file = Some(open(&self.path)?);
        }
        Ok(())
    }

    /// Writes one chunk of output read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), CriLogError> {
        if self.file.is_none() || data.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        encode(&mut self.buf, &timestamp(), stream, data);
        let file = self.file.as_mut().expect("checked above");
        file.write_all(&self.buf).map_err(|source| CriLogError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Encodes one chunk as CRI records into `out`.
pub fn encode(out: &mut Vec<u8>, ts: &str, stream: Stream, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        let (line, full, consumed) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl <= MAX_RECORD => (&rest[..nl], true, nl + 1),
            _ if rest.len() > MAX_RECORD => (&rest[..MAX_RECORD], false, MAX_RECORD),
            _ => (rest, false, rest.len()),
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(if full { b" F " } else { b" P " });
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = &rest[consumed..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(stream: Stream, data: &[u8]) -> String {
        let mut out = Vec::new();
        encode(&mut out, "T", stream, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_lines_are_f_records() {
        assert_eq!(
            enc(Stream::Stdout, b"a\nbc\n"),
            "T stdout F a\nT stdout F bc\n"
        );
    }

    #[test]
    fn chunk_without_newline_ends_in_a_partial_record() {
        assert_eq!(
            enc(Stream::Stderr, b"a\nhalf"),
            "T stderr F a\nT stderr P half\n"
        );
    }

    #[test]
    fn empty_line_is_an_empty_full_record() {
        assert_eq!(enc(Stream::Stdout, b"\n"), "T stdout F \n");
    }

    #[test]
    fn long_lines_are_split_at_the_limit() {
        let mut data = vec![b'x'; MAX_RECORD * 2 + 5];
        data.push(b'\n');
        let text = enc(Stream::Stdout, &data);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("T stdout P ") && lines[0].len() == 11 + MAX_RECORD);
        assert!(lines[1].starts_with("T stdout P ") && lines[1].len() == 11 + MAX_RECORD);
        assert_eq!(lines[2], "T stdout F xxxxx");
    }

    #[test]
    fn line_of_exactly_the_limit_is_one_full_record() {
        let mut data = vec![b'y'; MAX_RECORD];
        data.push(b'\n');
        let text = enc(Stream::Stdout, &data);
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("T stdout F y"));
    }

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let ts = timestamp();
        assert!(chrono::DateTime::parse_from_rfc3339(&ts).is_ok(), "{ts}");
        assert_eq!(ts.len(), "2024-01-01T00:00:00.123456789Z".len());
    }

    #[test]
    fn reopen_follows_the_path_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(Some(&path)).unwrap();
        log.write(Stream::Stdout, b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"two\n").unwrap();
        let old = std::fs::read_to_string(dir.path().join("c.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.ends_with(" stdout F one\n") && !old.contains("two"));
        assert!(new.ends_with(" stdout F two\n") && !new.contains("one"));
    }
}
