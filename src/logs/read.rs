//! Reading a log's whole history, filtered, and the line splitter shared with the follower.

use super::files::open_all;
use super::{parse_entry, LogEntry};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The read buffer: the most bytes read from a file at a time.
pub(super) const CHUNK: usize = 64 * 1024;
/// The longest line kept while its newline has not come; a longer one is dropped whole.
pub(super) const MAX_PENDING: usize = 1024 * 1024;

/// What to read of a log's history. Both bounds are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only entries at or after this time (nanoseconds since the epoch).
    pub since_ns: Option<u64>,
    /// Only entries at or before this time.
    pub until_ns: Option<u64>,
    /// Only the last this many entries that pass the time bounds.
    pub tail: Option<usize>,
}

impl LogQuery {
    fn admits(&self, e: &LogEntry) -> bool {
        self.since_ns.is_none_or(|s| e.time_ns >= s) && self.until_ns.is_none_or(|u| e.time_ns <= u)
    }
}

/// Reads the whole history of the log at `path` (rotated files too), and returns the
/// entries `q` selects, oldest first. A log with no file at all is empty.
///
/// With `q.tail`, at most that many entries are held; without it, all of them: to send a
/// long history in batches, use [`for_each_entry`].
pub fn read_logs(path: &Path, q: &LogQuery) -> io::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    for_each_entry(path, q, |e| {
        out.push(e);
        true
    })?;
    Ok(out)
}

/// Calls `f` with each entry `q` selects from the log's whole history, oldest first, until
/// `f` returns false. Memory is one read buffer, plus `q.tail` entries when set.
pub fn for_each_entry(
    path: &Path,
    q: &LogQuery,
    mut f: impl FnMut(LogEntry) -> bool,
) -> io::Result<()> {
    match q.tail {
        Some(0) => Ok(()),
        Some(n) => {
            let mut ring: VecDeque<LogEntry> = VecDeque::with_capacity(n.min(4096));
            scan(path, &mut |e| {
                if q.admits(&e) {
                    if ring.len() == n {
                        ring.pop_front();
                    }
                    ring.push_back(e);
                }
                true
            })?;
            for e in ring {
                if !f(e) {
                    break;
                }
            }
            Ok(())
        }
        None => scan(path, &mut |e| !q.admits(&e) || f(e)),
    }
}

/// Every entry of every file, oldest first, until `f` returns false.
fn scan(path: &Path, f: &mut dyn FnMut(LogEntry) -> bool) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut batch = Vec::new();
    for mut opened in open_all(path)? {
        // A torn line at the end of a file is never completed by the next file.
        let mut lines = LineSplitter::default();
        loop {
            let n = lines.read_chunk(&mut opened.file, &mut buf, &mut batch)?;
            for e in batch.drain(..) {
                if !f(e) {
                    return Ok(());
                }
            }
            if n == 0 {
                break;
            }
        }
    }
    Ok(())
}

/// Splits a file's bytes into lines and parses them, keeping the start of a line whose
/// newline has not been read yet.
#[derive(Default)]
pub(super) struct LineSplitter {
    /// The bytes of the incomplete last line.
    pending: Vec<u8>,
    /// The incomplete line passed `MAX_PENDING`: skip up to its newline.
    dropping: bool,
}

impl LineSplitter {
    /// Bytes read but not returned yet: the incomplete line (0 while dropping one, which
    /// is as good as consumed).
    pub(super) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Reads once from `file` into `buf` and appends the complete lines' entries to `out`.
    /// Returns how many bytes were read: 0 at end of file.
    pub(super) fn read_chunk(
        &mut self,
        file: &mut File,
        buf: &mut [u8],
        out: &mut Vec<LogEntry>,
    ) -> io::Result<usize> {
        let n = loop {
            match file.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.feed(&buf[..n], out);
        Ok(n)
    }

    /// Splits `bytes` (what comes after what was fed before) into lines.
    pub(super) fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<LogEntry>) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let line = &bytes[..nl];
            bytes = &bytes[nl + 1..];
            if self.dropping {
                self.dropping = false;
            } else if self.pending.is_empty() {
                out.extend(parse_entry(line));
            } else if self.pending.len() + line.len() <= MAX_PENDING {
                self.pending.extend_from_slice(line);
                out.extend(parse_entry(&self.pending));
                self.pending.clear();
            } else {
                self.pending = Vec::new();
            }
        }
        if bytes.is_empty() || self.dropping {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_PENDING {
            self.pending = Vec::new();
            self.dropping = true;
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }
}
