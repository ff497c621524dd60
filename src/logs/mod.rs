//! PLACEHOLDER until the logs module lands (replaced on merge).
use serde::{Deserialize, Serialize};

/// Stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStream {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

/// Entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// time
    pub time_ns: u64,
    /// stream
    pub stream: LogStream,
    /// partial
    pub partial: bool,
    /// content
    pub content: Vec<u8>,
}

/// Position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    /// inode
    pub ino: u64,
    /// offset
    pub offset: u64,
}

/// Removes a log and its rotated files.
pub fn remove_files(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        if std::fs::remove_file(std::path::Path::new(&name)).is_err() {
            break;
        }
    }
}

/// Where following starts.
#[derive(Clone, Copy, Debug)]
pub enum FollowFrom {
    /// Start.
    Start,
    /// End.
    End,
    /// Position.
    Position(LogPosition),
}

/// Follower.
pub struct Follower;

impl Follower {
    /// Open.
    pub fn open(_path: &std::path::Path, _from: FollowFrom) -> std::io::Result<Follower> {
        Ok(Follower)
    }
    /// Next.
    pub fn next_batch(&mut self, wait: std::time::Duration) -> std::io::Result<Vec<LogEntry>> {
        std::thread::sleep(wait);
        Ok(Vec::new())
    }
    /// Drain.
    pub fn drain_to_end(&mut self) -> std::io::Result<Vec<LogEntry>> {
        Ok(Vec::new())
    }
}
