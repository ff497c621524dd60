//! The CRI log format: one entry per line, `<RFC3339Nano UTC> <stream> <F|P> <content>\n`.
//!
//! `F` ends a line (its newline is not repeated in the content), `P` is a piece of one: the
//! bytes read so far ended without a newline, or the line was longer than [`MAX_LINE`].
//! Content is raw bytes and never holds a newline.

/// The longest content of one entry; a longer line is cut into `P` pieces.
pub const MAX_LINE: usize = 16 * 1024;

/// The length of a [`timestamp`]: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const TIMESTAMP_LEN: usize = 30;

/// The most one entry's header (timestamp, stream, tag and spaces) adds to its content.
pub const ENTRY_OVERHEAD: usize = TIMESTAMP_LEN + " stdout F \n".len();

/// Which of the process's outputs an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout (and a terminal's whole output).
    Stdout,
    /// The process's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// `secs.nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, always nine
/// fraction digits), by hand into a fixed buffer (no allocation on the log path); the days
/// become a civil date with [`crate::types::civil_from_days`].
pub fn timestamp(secs: u64, nanos: u32) -> [u8; TIMESTAMP_LEN] {
    let in_day = secs % 86_400;
    let (year, month, day) = crate::types::civil_from_days((secs / 86_400) as i64);

    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, in_day / 3600);
    put(14, 2, in_day / 60 % 60);
    put(17, 2, in_day % 60);
    put(20, 9, u64::from(nanos.min(999_999_999)));
    out
}

/// Now, as a [`timestamp`].
pub fn now() -> [u8; TIMESTAMP_LEN] {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    timestamp(d.as_secs(), d.subsec_nanos())
}

/// Cuts `chunk` into entries and appends them to `out`; before an entry that would make
/// `out` longer than `limit`, hands `out` to `flush` (which writes and empties it). Every
/// entry of a chunk carries the same timestamp `ts`.
pub fn encode(
    ts: &[u8; TIMESTAMP_LEN],
    stream: Stream,
    chunk: &[u8],
    out: &mut Vec<u8>,
    mut flush: impl FnMut(&mut Vec<u8>),
    limit: usize,
) {
    let mut rest = chunk;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        let (content, full, used) = match find_newline(window) {
            Some(i) => (&rest[..i], true, i + 1),
            None => {
                let n = rest.len().min(MAX_LINE);
                (&rest[..n], false, n)
            }
        };
        if !out.is_empty() && out.len() + content.len() + ENTRY_OVERHEAD > limit {
            flush(out);
        }
        out.extend_from_slice(ts);
        out.push(b' ');
        out.extend_from_slice(stream.name());
        out.extend_from_slice(if full { b" F " } else { b" P " });
        out.extend_from_slice(content);
        out.push(b'\n');
        rest = &rest[used..];
    }
}

/// The first `\n` in `bytes`, eight bytes at a time (the release build is tuned for size,
/// which leaves a byte loop unvectorised; this keeps the log path well above 300 MiB/s).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w) ^ NL;
        if (x.wrapping_sub(LO) & !x & HI) != 0 {
            // A zero byte: exactly where, byte by byte (the SWAR test may flag a byte
            // past a real zero, never one before it).
            return word.iter().position(|&b| b == b'\n').map(|i| at + i);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &[u8; TIMESTAMP_LEN] = b"2026-12-07T02:39:49.000000001Z";

    fn enc(stream: Stream, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all = Vec::new();
        encode(TS, stream, chunk, &mut out, |o| all.append(o), 64 * 1024);
        all.append(&mut out);
        all
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn timestamps() {
        assert_eq!(&timestamp(0, 0), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(&timestamp(0, 5), b"1970-01-01T00:00:00.000000005Z");
        // 2024-02-29 (a leap day) 12:34:56.
        assert_eq!(
            &timestamp(1_709_210_096, 123_456_789),
            b"2024-02-29T12:34:56.123456789Z"
        );
        // The day after: 2024-03-01T00:00:00.
        assert_eq!(
            &timestamp(1_709_251_200, 0),
            b"2024-03-01T00:00:00.000000000Z"
        );
        // 2000 is a leap year (divisible by 400): 2000-12-31T23:59:59 is day 366.
        assert_eq!(
            &timestamp(978_307_199, 999_999_999),
            b"2000-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            &timestamp(4_102_444_800, 0),
            b"2100-01-01T00:00:00.000000000Z"
        );
        let now = now();
        assert_eq!(now.len(), TIMESTAMP_LEN);
        assert_eq!(now[TIMESTAMP_LEN - 1], b'Z');
    }

    #[test]
    fn full_and_partial_lines() {
        let ts = std::str::from_utf8(TS).unwrap();
        assert_eq!(
            lines(&enc(Stream::Stdout, b"hello\n")),
            [format!("{ts} stdout F hello")]
        );
        assert_eq!(
            lines(&enc(Stream::Stderr, b"a\nbc\n\nd")),
            [
                format!("{ts} stderr F a"),
                format!("{ts} stderr F bc"),
                format!("{ts} stderr F "),
                format!("{ts} stderr P d"),
            ]
        );
        // An empty line keeps the space after its tag.
        assert_eq!(
            enc(Stream::Stdout, b"\n"),
            format!("{ts} stdout F \n").into_bytes()
        );
        assert!(enc(Stream::Stdout, b"").is_empty());
        // Raw bytes, not escaped.
        let out = enc(Stream::Stdout, b"\xff\t\r\x1b[0m\n");
        assert!(out.ends_with(b" stdout F \xff\t\r\x1b[0m\n"));
    }

    #[test]
    fn long_lines_are_cut_into_pieces() {
        let mut line = vec![b'x'; MAX_LINE * 2 + 10];
        line.push(b'\n');
        let out = enc(Stream::Stdout, &line);
        let entries: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(entries.len(), 3);
        let head = TIMESTAMP_LEN + " stdout P ".len();
        assert_eq!(&entries[0][TIMESTAMP_LEN..head], b" stdout P ");
        assert_eq!(entries[0].len() - head, MAX_LINE);
        assert_eq!(&entries[1][TIMESTAMP_LEN..head], b" stdout P ");
        assert_eq!(entries[1].len() - head, MAX_LINE);
        assert_eq!(&entries[2][TIMESTAMP_LEN..head], b" stdout F ");
        assert_eq!(entries[2].len() - head, 10);
        // Exactly MAX_LINE bytes and its newline: one full entry.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(lines(&enc(Stream::Stdout, &exact)).len(), 1);
    }

    #[test]
    fn flushes_before_the_limit() {
        let chunk = b"0123456789\n".repeat(100);
        let mut out = Vec::new();
        let mut writes = Vec::new();
        let limit = 10 * (ENTRY_OVERHEAD + 10);
        encode(
            TS,
            Stream::Stdout,
            &chunk,
            &mut out,
            |o| writes.push(std::mem::take(o)),
            limit,
        );
        writes.push(out);
        assert!(writes.iter().all(|w| w.len() <= limit));
        let all: Vec<u8> = writes.concat();
        assert_eq!(lines(&all).len(), 100);
        assert!(writes.iter().all(|w| w.ends_with(b"\n")));
    }

    #[test]
    fn newline_search() {
        for len in 0..40 {
            for nl in 0..=len {
                let mut v = vec![b'a'; len];
                if nl < len {
                    v[nl] = b'\n';
                }
                let want = (nl < len).then_some(nl);
                assert_eq!(find_newline(&v), want, "len {len} nl {nl}");
            }
        }
        // Bytes next to '\n' (0x0b, 0x09) and high bytes do not match.
        assert_eq!(find_newline(b"\x0b\x09\x8a\xff\x0a"), Some(4));
    }
}
