//! Following a log as it is written, across rotations.
//!
//! The follower holds its files open, so a rotation (a rename) does not disturb the one it
//! is reading. At the end of the newest file it knows, it compares that file's inode with
//! the live `PATH`'s: if `PATH` is another file now, the old one was rotated, so it reads
//! the old one to its end (what was written before the rename) and goes on with the files
//! that are newer. It waits with inotify on the directory, never by sleeping.

use super::files::{live_ino, open_all, parent, LogPosition, Opened};
use super::read::{LineSplitter, CHUNK};
use super::LogEntry;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a [`Follower`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowFrom {
    /// The whole history, rotated files included.
    Start,
    /// Only what is written from now on.
    End,
    /// From a position taken earlier (by [`super::position_now`] or
    /// [`Follower::position`]); if its file was rotated away since, from the oldest file.
    Position(LogPosition),
}

/// A file being read, or queued to be read.
struct Source {
    file: File,
    ino: u64,
    /// How far it has been read.
    offset: u64,
}

impl From<Opened> for Source {
    fn from(o: Opened) -> Self {
        Source {
            file: o.file,
            ino: o.ino,
            offset: 0,
        }
    }
}

/// Reads a log as it grows, across rotations: it holds its files open, and at the end of
/// the newest one it knows it looks whether the log was rotated.
pub struct Follower {
    path: PathBuf,
    /// Open files not read to their end yet, oldest first; the front is being read.
    queue: VecDeque<Source>,
    /// The inode of the newest file queued so far: a rescan of the directory adds the
    /// files newer than it.
    newest_ino: Option<u64>,
    lines: LineSplitter,
    buf: Vec<u8>,
    inotify: Inotify,
    /// An eventfd a [`FollowerWaker`] writes to: ends a [`Follower::next_batch`] wait.
    wake: std::sync::Arc<std::os::fd::OwnedFd>,
}

/// Ends a [`Follower`]'s current (or next) wait early, from another thread: for when the
/// writer is known to be done (the process exited).
#[derive(Clone)]
pub struct FollowerWaker(std::sync::Arc<std::os::fd::OwnedFd>);

impl FollowerWaker {
    /// Wakes the follower.
    pub fn wake(&self) {
        use std::os::fd::AsRawFd;
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd we hold open.
        unsafe {
            libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len());
        }
    }
}

fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative result is a fresh descriptor that we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

impl Follower {
    /// Starts following the log at `path`. Its directory must exist; the files need not.
    pub fn open(path: &Path, from: FollowFrom) -> io::Result<Follower> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // Watched before the files are looked at, so no change after that is missed.
        inotify.add_watch(
            parent(path),
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM,
        )?;
        let mut follower = Follower {
            path: path.to_path_buf(),
            queue: VecDeque::new(),
            newest_ino: None,
            lines: LineSplitter::default(),
            buf: vec![0u8; CHUNK],
            inotify,
            wake: std::sync::Arc::new(eventfd()?),
        };
        match from {
            FollowFrom::Start => follower.push(open_all(path)?.into_iter().map(Source::from)),
            FollowFrom::End => match File::open(path) {
                Ok(mut file) => {
                    let m = file.metadata()?;
                    file.seek(SeekFrom::Start(m.len()))?;
                    follower.push([Source {
                        file,
                        ino: m.ino(),
                        offset: m.len(),
                    }]);
                }
                // Between a rotation's rename and the new file: what comes next is newer
                // than the newest rotated file.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    follower.newest_ino = open_all(path)?.last().map(|o| o.ino);
                }
                Err(e) => return Err(e),
            },
            FollowFrom::Position(pos) => {
                let mut all = open_all(path)?;
                if let Some(i) = all.iter().position(|o| o.ino == pos.ino) {
                    let opened = all.remove(i);
                    // Beyond the end, the inode was reused by another file: read it all.
                    let len = opened.len;
                    let mut first = Source::from(opened);
                    if pos.offset <= len {
                        first.file.seek(SeekFrom::Start(pos.offset))?;
                        first.offset = pos.offset;
                    }
                    let newer: Vec<Opened> = all.drain(i..).collect();
                    follower.push([first]);
                    follower.push(newer.into_iter().map(Source::from));
                } else {
                    follower.push(all.into_iter().map(Source::from));
                }
            }
        }
        Ok(follower)
    }

    /// Returns the entries available now; if there are none, waits up to `wait` for some
    /// and returns what came (maybe nothing). A batch holds at most what one read of 64 KiB
    /// gave (plus the line that read completed).
    pub fn next_batch(&mut self, wait: Duration) -> io::Result<Vec<LogEntry>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            // Events before this read are consumed; any after it wake the poll below.
            self.drain_events();
            self.read_available(&mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            // Rounded up, so a wait does not end a little early and spin.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                let mut buf = [0u8; 8];
                use std::os::fd::AsRawFd;
                let _ = nix::unistd::read(self.wake.as_raw_fd(), &mut buf);
                self.drain_events();
                self.read_available(&mut out)?;
                return Ok(out);
            }
        }
    }

    /// A handle that ends this follower's waits early.
    pub fn waker(&self) -> FollowerWaker {
        FollowerWaker(self.wake.clone())
    }

    /// Reads everything present now, across rotations, without waiting: for when the
    /// process has exited. A last line without its newline is not returned.
    pub fn drain_to_end(&mut self) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        loop {
            let before = out.len();
            self.read_available(&mut out)?;
            if out.len() == before {
                return Ok(out);
            }
        }
    }

    /// Where the next entry will be read from (after the entries returned so far), to
    /// resume with [`FollowFrom::Position`]; `None` while no file is open.
    pub fn position(&self) -> Option<LogPosition> {
        self.queue.front().map(|s| LogPosition {
            ino: s.ino,
            offset: s.offset.saturating_sub(self.lines.pending_len() as u64),
        })
    }

    /// Queues files (oldest first) after those already queued.
    fn push(&mut self, files: impl IntoIterator<Item = Source>) {
        for s in files {
            self.newest_ino = Some(s.ino);
            self.queue.push_back(s);
        }
    }

    /// Opens the files newer than the newest queued one. If that one is not among them
    /// any more (rotated away), every file there is newer.
    fn queue_newer(&mut self) -> io::Result<()> {
        let mut all = open_all(&self.path)?;
        if let Some(i) = self
            .newest_ino
            .and_then(|ino| all.iter().position(|o| o.ino == ino))
        {
            all.drain(..=i);
        }
        self.push(all.into_iter().map(Source::from));
        Ok(())
    }

    /// Finishes the front file: a torn line at its end is dropped with it.
    fn pop_front(&mut self) {
        self.queue.pop_front();
        self.lines = LineSplitter::default();
    }

    /// One read from the front file; its entries go to `out`. Returns the bytes read.
    fn read_front(&mut self, out: &mut Vec<LogEntry>) -> io::Result<usize> {
        let Some(src) = self.queue.front_mut() else {
            return Ok(0);
        };
        let n = self.lines.read_chunk(&mut src.file, &mut self.buf, out)?;
        src.offset += n as u64;
        Ok(n)
    }

    /// Reads until a read gives entries, or until nothing more is there now.
    fn read_available(&mut self, out: &mut Vec<LogEntry>) -> io::Result<()> {
        let start = out.len();
        loop {
            if self.queue.is_empty() {
                self.queue_newer()?;
                if self.queue.is_empty() {
                    return Ok(());
                }
            }
            if self.read_front(out)? > 0 {
                if out.len() > start {
                    return Ok(());
                }
                continue;
            }
            // At the end of the front file.
            if self.queue.len() > 1 {
                self.pop_front();
                continue;
            }
            let front_ino = self.queue.front().map(|s| s.ino);
            match live_ino(&self.path)? {
                Some(ino) if Some(ino) != front_ino => {
                    // PATH is a new file, so the front one was renamed: whatever was
                    // written to it before is readable now. Read that first.
                    let n = self.read_front(out)?;
                    if out.len() > start {
                        return Ok(());
                    }
                    if n > 0 {
                        continue;
                    }
                    self.queue_newer()?;
                    self.pop_front();
                }
                // Still the live file, or between a rotation's rename and the new file
                // (its creation will wake the wait).
                _ => return Ok(()),
            }
        }
    }

    /// Discards the inotify events queued: they only say "look again".
    fn drain_events(&mut self) {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
    }
}
