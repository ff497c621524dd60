//! The CRI log file: appends, rotation by size, and write errors that never stop the
//! container (counted, reported in `log-errors`, retried on a reopened file).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often `log-errors` is rewritten at most while errors go on.
const ERRORS_EVERY: Duration = Duration::from_secs(1);

/// The log file a shim appends CRI entries to.
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    errors_path: PathBuf,
    dropped: u64,
    last_error: String,
    errors_written: Option<Instant>,
    errors_dirty: bool,
}

impl LogFile {
    /// Opens (creates) `path` for appending; `errors_path` is where lost bytes are reported.
    pub fn open(
        path: &Path,
        max_size: u64,
        max_files: u32,
        errors_path: PathBuf,
    ) -> std::io::Result<Self> {
        let mut log = LogFile {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            max_files: max_files.max(1),
            errors_path,
            dropped: 0,
            last_error: String::new(),
            errors_written: None,
            errors_dirty: false,
        };
        log.reopen()?;
        Ok(log)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = None;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `entries` (whole entries) with one write, rotating first if they would make
    /// the file larger than its maximum. On an error the bytes are counted as lost and the
    /// file is reopened on the next call.
    pub fn write(&mut self, entries: &[u8]) {
        if entries.is_empty() {
            return;
        }
        if self.file.is_none() {
            if let Err(e) = self.reopen() {
                return self.lost(entries.len(), &format!("reopen: {e}"));
            }
        }
        let len = entries.len() as u64;
        if self.max_size > 0 && self.size > 0 && self.size + len > self.max_size {
            self.file = None;
            if let Err(e) = rotate(&self.path, self.max_files) {
                // Keep logging into the file we have rather than lose the entries.
                self.note(&format!("rotate: {e}"));
            }
            if let Err(e) = self.reopen() {
                return self.lost(entries.len(), &format!("reopen: {e}"));
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut rest = entries;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(0) => return self.failed(rest.len(), "write returned 0"),
                Ok(n) => {
                    self.size += n as u64;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.failed(rest.len(), &e.to_string()),
            }
        }
    }

    fn failed(&mut self, lost: usize, error: &str) {
        self.file = None;
        self.lost(lost, error);
    }

    fn lost(&mut self, lost: usize, error: &str) {
        self.dropped += lost as u64;
        self.note(error);
    }

    fn note(&mut self, error: &str) {
        self.last_error.clear();
        self.last_error.push_str(error);
        self.errors_dirty = true;
        self.report(false);
    }

    /// Bytes lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How long until a pending `log-errors` update is due, if one is.
    pub fn report_due_in(&self) -> Option<Duration> {
        if !self.errors_dirty {
            return None;
        }
        Some(
            self.errors_written
                .map_or(Duration::ZERO, |t| ERRORS_EVERY.saturating_sub(t.elapsed())),
        )
    }

    /// Rewrites `log-errors` (`<dropped bytes> <last error>\n`) if something changed, at
    /// most once a second unless `now`.
    pub fn report(&mut self, now: bool) {
        if !self.errors_dirty {
            return;
        }
        if !now
            && self
                .errors_written
                .is_some_and(|t| t.elapsed() < ERRORS_EVERY)
        {
            return;
        }
        let line = format!("{} {}\n", self.dropped, self.last_error);
        if let Err(e) = crate::layout::write_atomic(&self.errors_path, line.as_bytes()) {
            eprintln!("corral-shim: write {}: {e}", self.errors_path.display());
        }
        self.errors_written = Some(Instant::now());
        self.errors_dirty = false;
    }
}

/// Shifts `path` to `path.1`, `path.1` to `path.2` and so on, keeping `max_files` files in
/// all (the live one included): with 1, the old file is removed.
pub fn rotate(path: &Path, max_files: u32) -> std::io::Result<()> {
    let numbered = |i: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    let ignore_missing = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if max_files <= 1 {
        return ignore_missing(std::fs::remove_file(path));
    }
    ignore_missing(std::fs::remove_file(numbered(max_files - 1)))?;
    for i in (1..max_files - 1).rev() {
        ignore_missing(std::fs::rename(numbered(i), numbered(i + 1)))?;
    }
    ignore_missing(std::fs::rename(path, numbered(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(p: PathBuf) -> Option<String> {
        std::fs::read_to_string(p).ok()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotation_keeps_n_files() {
        for n in 1..=3u32 {
            let dir = tmpdir(&format!("rot{n}"));
            let path = dir.join("c.log");
            let mut log = LogFile::open(&path, 10, n, dir.join("log-errors")).unwrap();
            for w in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
                log.write(w.as_bytes());
            }
            // Each write would pass 10 bytes: each one starts a fresh file.
            assert_eq!(read(path.clone()).as_deref(), Some("dddddd\n"), "n={n}");
            let one = read(dir.join("c.log.1"));
            let two = read(dir.join("c.log.2"));
            match n {
                1 => {
                    assert_eq!(names(&dir), ["c.log"]);
                }
                2 => {
                    assert_eq!(one.as_deref(), Some("cccccc\n"));
                    assert_eq!(names(&dir), ["c.log", "c.log.1"]);
                }
                _ => {
                    assert_eq!(one.as_deref(), Some("cccccc\n"));
                    assert_eq!(two.as_deref(), Some("bbbbbb\n"));
                    assert_eq!(names(&dir), ["c.log", "c.log.1", "c.log.2"]);
                }
            }
            assert_eq!(log.dropped(), 0);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn fills_up_to_the_limit_and_writes_big_chunks_whole() {
        let dir = tmpdir("fill");
        let path = dir.join("c.log");
        let mut log = LogFile::open(&path, 10, 2, dir.join("log-errors")).unwrap();
        log.write(b"12345");
        log.write(b"67890");
        assert_eq!(read(path.clone()).as_deref(), Some("1234567890"));
        log.write(&[b'x'; 25]);
        assert_eq!(read(path.clone()).unwrap().len(), 25);
        assert_eq!(read(dir.join("c.log.1")).as_deref(), Some("1234567890"));
        // Size 0 means never rotate; an existing file's size counts.
        drop(log);
        let mut log = LogFile::open(&path, 30, 2, dir.join("log-errors")).unwrap();
        log.write(b"123456");
        assert_eq!(read(path.clone()).unwrap().len(), 6);
        let mut never = LogFile::open(&dir.join("n.log"), 0, 1, dir.join("e")).unwrap();
        for _ in 0..100 {
            never.write(b"0123456789");
        }
        assert_eq!(read(dir.join("n.log")).unwrap().len(), 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_errors_are_counted_and_reported() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = tmpdir("err");
        let errors = dir.join("log-errors");
        let mut log = LogFile::open(Path::new("/dev/full"), 0, 1, errors.clone()).unwrap();
        log.write(b"abc\n");
        log.write(b"defgh\n");
        assert_eq!(log.dropped(), 10);
        // The first error is written at once, the second waits out the second.
        let first = read(errors.clone()).unwrap();
        assert!(first.starts_with("4 "), "{first}");
        assert!(log.report_due_in().is_some());
        log.report(true);
        let last = read(errors.clone()).unwrap();
        assert!(last.starts_with("10 "), "{last}");
        assert!(last.contains("space"), "{last}");
        assert!(log.report_due_in().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
