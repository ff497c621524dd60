use super::read::{LineSplitter, MAX_PENDING};
use super::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 2026-12-07T00:00:00Z, the entries' base time.
const BASE: u64 = 1_796_601_600 * 1_000_000_000;

/// A fresh directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("corral-logs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn log(&self) -> PathBuf {
        self.0.join("ctr.log")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Entry `i` as the shim writes it: at BASE + i µs, on stdout, full, "line i".
fn line(i: u64) -> String {
    format!("{} stdout F line {i}\n", format_time(BASE + i * 1000))
}

fn numbers(entries: &[LogEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            let s = std::str::from_utf8(&e.content).unwrap();
            s.strip_prefix("line ").unwrap().parse().unwrap()
        })
        .collect()
}

/// Writes like the shim: appends to PATH, rotates by renames, keeps `files` files in all.
struct Writer {
    path: PathBuf,
    file: File,
    files: usize,
}

impl Writer {
    fn new(path: &Path, files: usize) -> Writer {
        Writer {
            path: path.to_path_buf(),
            file: append(path),
            files,
        }
    }
    fn write(&mut self, s: &str) {
        self.file.write_all(s.as_bytes()).unwrap();
    }
    fn lines(&mut self, range: std::ops::Range<u64>) {
        for i in range {
            self.write(&line(i));
        }
    }
    fn rotate(&mut self) {
        let rotated = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        for i in (1..self.files - 1).rev() {
            if rotated(i).exists() {
                fs::rename(rotated(i), rotated(i + 1)).unwrap();
            }
        }
        fs::rename(&self.path, rotated(1)).unwrap();
        self.file = append(&self.path);
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

// ---- parsing ----

#[test]
fn parses_full_and_partial_entries() {
    let e = parse_entry(b"2026-12-07T02:39:49.123456789Z stdout F hello world").unwrap();
    assert_eq!(
        e.time_ns,
        parse_time("2026-12-07T02:39:49.123456789Z").unwrap()
    );
    assert_eq!(e.stream, LogStream::Stdout);
    assert!(!e.partial);
    assert_eq!(e.content, b"hello world");

    let e = parse_entry(b"2026-12-07T02:39:49.000000001Z stderr P  two  spaces ").unwrap();
    assert_eq!(e.stream, LogStream::Stderr);
    assert!(e.partial);
    assert_eq!(e.content, b" two  spaces ");

    // An empty line, bytes that are not UTF-8, and a tag with kubelet's extras.
    let e = parse_entry(b"2026-12-07T02:39:49Z stdout F ").unwrap();
    assert_eq!(e.content, b"");
    let e = parse_entry(b"2026-12-07T02:39:49Z stdout F \xff\xfe\x00").unwrap();
    assert_eq!(e.content, b"\xff\xfe\x00");
    let e = parse_entry(b"2026-12-07T02:39:49Z stdout P:x=1 abc").unwrap();
    assert!(e.partial);
    assert_eq!(e.content, b"abc");
}

#[test]
fn rejects_malformed_lines() {
    for bad in [
        &b""[..],
        b"garbage",
        b"2026-12-07T02:39:49Z stdout F",
        b"2026-12-07T02:39:49Z stdout",
        b"2026-12-07T02:39:49Z stdin F x",
        b"2026-12-07T02:39:49Z stdout X x",
        b"2026-12-07T02:39:49Z stdout FF x",
        b"2026-12-07 stdout F x",
        b"2026-13-07T02:39:49Z stdout F x",
        b"2026-12-07T02:39:49 stdout F x",
        b"\xff\xfe stdout F x",
        b"stdout F 2026-12-07T02:39:49Z",
    ] {
        assert_eq!(parse_entry(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn splitter_holds_a_torn_line_until_its_newline() {
    let mut s = LineSplitter::default();
    let mut out = Vec::new();
    let (a, b) = (line(1), line(2));
    let (b1, b2) = b.split_at(25);
    s.feed(format!("{a}{b1}").as_bytes(), &mut out);
    assert_eq!(numbers(&out), [1]);
    assert_eq!(s.pending_len(), b1.len());
    s.feed(b2.as_bytes(), &mut out);
    assert_eq!(numbers(&out), [1, 2]);
    assert_eq!(s.pending_len(), 0);
    // Garbage between good lines is skipped.
    s.feed(format!("junk\n\n{}", line(3)).as_bytes(), &mut out);
    assert_eq!(numbers(&out), [1, 2, 3]);
}

#[test]
fn splitter_drops_a_line_longer_than_the_cap() {
    let mut s = LineSplitter::default();
    let mut out = Vec::new();
    let head = format!("{} stdout F ", format_time(BASE));
    s.feed(head.as_bytes(), &mut out);
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..(MAX_PENDING / chunk.len() + 1) {
        s.feed(&chunk, &mut out);
    }
    assert!(s.pending_len() <= MAX_PENDING);
    s.feed(
        format!("tail of the long line\n{}", line(7)).as_bytes(),
        &mut out,
    );
    assert_eq!(numbers(&out), [7]);
    // A line just under the cap is kept whole.
    let long = format!("{head}{}\n", "b".repeat(MAX_PENDING - head.len() - 1));
    for part in long.as_bytes().chunks(4096) {
        s.feed(part, &mut out);
    }
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].content.len(), MAX_PENDING - head.len() - 1);
}

#[test]
fn partial_entries_rebuild_the_output() {
    let lines = [
        b"2026-12-07T00:00:00Z stdout P abc".as_slice(),
        b"2026-12-07T00:00:00Z stderr F oops",
        b"2026-12-07T00:00:01Z stdout F def",
        b"2026-12-07T00:00:02Z stdout P no newline",
    ];
    let mut stdout = Vec::new();
    for e in lines.iter().filter_map(|l| parse_entry(l)) {
        if e.stream == LogStream::Stdout {
            stdout.extend_from_slice(&e.content);
            if !e.partial {
                stdout.push(b'\n');
            }
        }
    }
    assert_eq!(stdout, b"abcdef\nno newline");
}

// ---- time ----

#[test]
fn time_formats_and_parses_back() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_time("1970-01-01T00:00:00.000000001Z"), Some(1));
    // A leap day, and the day after it.
    let leap = parse_time("2024-02-29T23:59:59.999999999Z").unwrap();
    assert_eq!(format_time(leap), "2024-02-29T23:59:59.999999999Z");
    assert_eq!(format_time(leap + 1), "2024-03-01T00:00:00.000000000Z");
    assert_eq!(parse_time("2023-02-29T00:00:00Z"), None);
    assert_eq!(
        parse_time("2000-02-29T00:00:00Z")
            .map(format_time)
            .as_deref(),
        Some("2000-02-29T00:00:00.000000000Z")
    );
    assert_eq!(parse_time("1900-02-29T00:00:00Z"), None);
    assert_eq!(format_time(BASE), "2026-12-07T00:00:00.000000000Z");
    for ns in [
        0,
        1,
        999_999_999,
        BASE + 123_456_789,
        4_102_444_800 * 1_000_000_000 - 1,
    ] {
        assert_eq!(parse_time(&format_time(ns)), Some(ns), "{ns}");
    }
}

#[test]
fn time_parses_fractions_and_offsets() {
    let t = |s: &str| parse_time(s);
    let base = BASE + (2 * 3600 + 39 * 60 + 49) * 1_000_000_000;
    assert_eq!(t("2026-12-07T02:39:49Z"), Some(base));
    assert_eq!(t("2026-12-07T02:39:49.5Z"), Some(base + 500_000_000));
    assert_eq!(t("2026-12-07T02:39:49.123Z"), Some(base + 123_000_000));
    assert_eq!(t("2026-12-07T02:39:49.123456Z"), Some(base + 123_456_000));
    // Beyond nanoseconds is dropped.
    assert_eq!(
        t("2026-12-07T02:39:49.123456789999Z"),
        Some(base + 123_456_789)
    );
    assert_eq!(t("2026-12-07T04:39:49+02:00"), Some(base));
    assert_eq!(t("2026-12-06T21:09:49.5-05:30"), Some(base + 500_000_000));
    assert_eq!(t("2026-12-07T02:39:49+00:00"), Some(base));
    for bad in [
        "2026-12-07T02:39:49",
        "2026-12-07T02:39:49.Z",
        "2026-12-07T24:00:00Z",
        "2026-12-07T02:39:49+0200",
        "2026-12-32T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T01:00:00+02:00",
        "",
        "yesterday",
        "10x",
        "1h30",
        "1.",
        "-5m",
    ] {
        assert_eq!(t(bad), None, "{bad}");
    }
}

#[test]
fn time_parses_unix_seconds_and_durations_ago() {
    assert_eq!(parse_time("0"), Some(0));
    assert_eq!(parse_time("1796601600"), Some(BASE));
    assert_eq!(parse_time("1796601600.25"), Some(BASE + 250_000_000));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let near = |s: &str, ago_secs: f64| {
        let got = parse_time(s).unwrap();
        let want = now - (ago_secs * 1e9) as u64;
        // Generous: the clock moves on between `now` and the parse.
        assert!(got.abs_diff(want) < 5_000_000_000, "{s}: {got} vs {want}");
    };
    near("45s", 45.0);
    near("10m", 600.0);
    near("1h30m", 5400.0);
    near("1.5h", 5400.0);
    near("2h0m30s", 7230.0);
    near("300ms", 0.3);
    // Longer ago than the epoch is the epoch.
    assert_eq!(parse_time("1000000h"), Some(0));
}

// ---- reading the history ----

/// Three files: PATH.2 has entries 0..10, PATH.1 10..20, PATH 20..30, plus garbage and a
/// torn last line in PATH.
fn three_files(s: &Scratch) -> PathBuf {
    let path = s.log();
    let mut w = Writer::new(&path, 3);
    w.lines(0..10);
    w.write("not a log line\n");
    w.rotate();
    w.lines(10..20);
    w.rotate();
    w.lines(20..30);
    w.write(&line(30)[..20]);
    path
}

#[test]
fn log_files_lists_oldest_first() {
    let s = Scratch::new("files");
    let path = three_files(&s);
    // Names that only look like rotated files are not.
    fs::write(format!("{}.bak", path.display()), "x").unwrap();
    fs::write(format!("{}.0", path.display()), "x").unwrap();
    fs::write(s.0.join("other.log.1"), "x").unwrap();
    let p = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    assert_eq!(log_files(&path), [p(".2"), p(".1"), p("")]);
    assert!(log_files(&s.0.join("none.log")).is_empty());
}

#[test]
fn read_logs_filters_across_rotated_files() {
    let s = Scratch::new("read");
    let path = three_files(&s);
    let all = read_logs(&path, &LogQuery::default()).unwrap();
    assert_eq!(numbers(&all), (0..30).collect::<Vec<_>>());

    let at = |i: u64| BASE + i * 1000;
    let q = |since: Option<u64>, until: Option<u64>, tail: Option<usize>| LogQuery {
        since_ns: since.map(at),
        until_ns: until.map(at),
        tail,
    };
    let got = |q: LogQuery| numbers(&read_logs(&path, &q).unwrap());
    assert_eq!(got(q(Some(8), Some(12), None)), [8, 9, 10, 11, 12]);
    assert_eq!(got(q(Some(25), None, None)), [25, 26, 27, 28, 29]);
    assert_eq!(got(q(None, Some(2), None)), [0, 1, 2]);
    assert_eq!(got(q(None, None, Some(3))), [27, 28, 29]);
    assert_eq!(
        got(q(None, Some(15), Some(7))),
        (9..=15).collect::<Vec<_>>()
    );
    assert_eq!(got(q(Some(5), Some(7), Some(100))), [5, 6, 7]);
    assert_eq!(got(q(None, None, Some(0))), Vec::<u64>::new());
    assert_eq!(got(q(Some(31), None, None)), Vec::<u64>::new());

    // Streaming stops when asked.
    let mut seen = Vec::new();
    for_each_entry(&path, &LogQuery::default(), |e| {
        seen.push(e);
        seen.len() < 4
    })
    .unwrap();
    assert_eq!(numbers(&seen), [0, 1, 2, 3]);
}

#[test]
fn read_logs_of_a_missing_log_is_empty() {
    let s = Scratch::new("missing");
    assert!(read_logs(&s.log(), &LogQuery::default())
        .unwrap()
        .is_empty());
    assert_eq!(position_now(&s.log()).unwrap(), None);
    // Only rotated files, between a rotation's rename and the new file.
    let p1 = PathBuf::from(format!("{}.1", s.log().display()));
    fs::write(&p1, line(1)).unwrap();
    assert_eq!(
        numbers(&read_logs(&s.log(), &LogQuery::default()).unwrap()),
        [1]
    );
}

// ---- following ----

/// Collects entries until `n` came or 10 s passed.
fn collect(f: &mut Follower, n: usize) -> Vec<LogEntry> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(f.next_batch(Duration::from_millis(200)).unwrap());
    }
    got
}

#[test]
fn follower_from_start_reads_the_history_then_new_lines() {
    let s = Scratch::new("start");
    let path = three_files(&s);
    let mut f = Follower::open(&path, FollowFrom::Start).unwrap();
    assert_eq!(numbers(&collect(&mut f, 30)), (0..30).collect::<Vec<_>>());
    // The torn line completes.
    let mut w = OpenOptions::new().append(true).open(&path).unwrap();
    w.write_all(&line(30).as_bytes()[20..]).unwrap();
    w.write_all(line(31).as_bytes()).unwrap();
    assert_eq!(numbers(&collect(&mut f, 2)), [30, 31]);
    assert!(f.next_batch(Duration::from_millis(50)).unwrap().is_empty());
}

#[test]
fn follower_from_end_sees_only_new_lines() {
    let s = Scratch::new("end");
    let path = three_files(&s);
    let mut w = OpenOptions::new().append(true).open(&path).unwrap();
    w.write_all(b"\n").unwrap(); // ends the torn line (as garbage)
    let mut f = Follower::open(&path, FollowFrom::End).unwrap();
    assert!(f.next_batch(Duration::ZERO).unwrap().is_empty());
    w.write_all(line(40).as_bytes()).unwrap();
    assert_eq!(numbers(&collect(&mut f, 1)), [40]);
}

#[test]
fn follower_from_end_waits_for_a_missing_file() {
    let s = Scratch::new("end-missing");
    let path = s.log();
    let mut f = Follower::open(&path, FollowFrom::End).unwrap();
    assert!(f.next_batch(Duration::from_millis(20)).unwrap().is_empty());
    assert_eq!(f.position(), None);
    fs::write(&path, line(1)).unwrap();
    assert_eq!(numbers(&collect(&mut f, 1)), [1]);
}

#[test]
fn follower_from_position_resumes_there() {
    let s = Scratch::new("position");
    let path = s.log();
    let mut w = Writer::new(&path, 3);
    w.lines(0..5);
    let pos = position_now(&path).unwrap().unwrap();
    w.lines(5..8);
    w.rotate();
    w.lines(8..10);
    let mut f = Follower::open(&path, FollowFrom::Position(pos)).unwrap();
    assert_eq!(numbers(&collect(&mut f, 5)), [5, 6, 7, 8, 9]);

    // A follower's own position resumes after what it returned.
    let mut g = Follower::open(&path, FollowFrom::Start).unwrap();
    let first = g.next_batch(Duration::ZERO).unwrap();
    assert_eq!(numbers(&first), (0..8).collect::<Vec<_>>());
    let here = g.position().unwrap();
    let mut h = Follower::open(&path, FollowFrom::Position(here)).unwrap();
    assert_eq!(numbers(&h.drain_to_end().unwrap()), [8, 9]);

    // Rotated away since: from the oldest file there is.
    w.rotate();
    w.lines(10..11);
    w.rotate();
    w.lines(11..12);
    let mut f = Follower::open(&path, FollowFrom::Position(pos)).unwrap();
    assert_eq!(numbers(&f.drain_to_end().unwrap()), [8, 9, 10, 11]);
}

#[test]
fn follower_finishes_a_file_rotated_away_while_it_waited() {
    let s = Scratch::new("rotated-away");
    let path = s.log();
    let mut w = Writer::new(&path, 3);
    w.lines(0..2);
    let mut f = Follower::open(&path, FollowFrom::Start).unwrap();
    assert_eq!(numbers(&f.next_batch(Duration::ZERO).unwrap()), [0, 1]);
    // Written, then rotated three times: the file the follower holds is removed.
    w.lines(2..4);
    w.rotate();
    w.lines(4..6);
    w.rotate();
    w.lines(6..8);
    w.rotate();
    w.lines(8..10);
    assert_eq!(log_files(&path).len(), 3);
    assert_eq!(
        numbers(&f.drain_to_end().unwrap()),
        (2..10).collect::<Vec<_>>()
    );
}

#[test]
fn follower_follows_a_writer_that_rotates() {
    let s = Scratch::new("follow-rotation");
    let path = s.log();
    let mut w = Writer::new(&path, 20);
    let mut f = Follower::open(&path, FollowFrom::Start).unwrap();
    const LINES: u64 = 600;
    let writer = std::thread::spawn(move || {
        for i in 0..LINES {
            w.lines(i..i + 1);
            if i % 50 == 49 {
                w.rotate();
            }
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let got = collect(&mut f, LINES as usize);
    writer.join().unwrap();
    assert_eq!(numbers(&got), (0..LINES).collect::<Vec<_>>());
    assert!(f.next_batch(Duration::from_millis(20)).unwrap().is_empty());
}

#[test]
fn follower_wakes_up_when_a_line_is_written() {
    let s = Scratch::new("latency");
    let path = s.log();
    let mut w = Writer::new(&path, 3);
    let mut f = Follower::open(&path, FollowFrom::End).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.lines(0..1);
        w
    });
    let started = Instant::now();
    let got = f.next_batch(Duration::from_secs(1)).unwrap();
    let waited = started.elapsed();
    writer.join().unwrap();
    // No time bound asserted (a loaded machine); the line is there in this one call.
    assert_eq!(numbers(&got), [0], "after {waited:?}");
}

#[test]
fn follower_drains_without_waiting_and_skips_a_torn_end() {
    let s = Scratch::new("drain");
    let path = three_files(&s);
    let mut f = Follower::open(&path, FollowFrom::Start).unwrap();
    let started = Instant::now();
    assert_eq!(
        numbers(&f.drain_to_end().unwrap()),
        (0..30).collect::<Vec<_>>()
    );
    assert!(f.drain_to_end().unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}
