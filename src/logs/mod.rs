//! Container logs in the CRI format: parsing, reading the history across rotated files,
//! and following the live file.
//!
//! The shim writes one entry per line: `<timestamp> <stream> <tag> <content>\n`, where the
//! timestamp is RFC 3339 with nanoseconds (`2026-12-07T02:39:49.123456789Z`), the stream is
//! `stdout` or `stderr`, and the tag is `F` (a full line: the process wrote content + `\n`)
//! or `P` (a partial line: the process wrote the content alone, and the line goes on in the
//! next entry of the same stream). The content is raw bytes, maybe not UTF-8.
//!
//! To rebuild what a process wrote, per stream: a `P` entry gives its content, an `F` entry
//! its content followed by `\n`.
//!
//! Rotation: the live file is `PATH`; older files are `PATH.1` (the newest rotated one),
//! `PATH.2`, and so on. The shim rotates by renaming `PATH.i` to `PATH.(i+1)` and `PATH`
//! to `PATH.1`, then creating a new `PATH`.
//!
//! Malformed lines (garbage, a torn line) are skipped, never an error. A last line without
//! its `\n` is still being written: [`read_logs`] skips it, and a [`Follower`] returns it
//! once its newline arrives. All of it is blocking code, for a thread.

mod files;
mod follow;
mod read;
mod time;

#[cfg(test)]
mod tests;

pub use files::{log_files, position_now, LogPosition};
pub use follow::{FollowFrom, Follower, FollowerWaker};
pub use read::{for_each_entry, read_logs, LogQuery};
pub use time::{format_time, parse_time};

use serde::{Deserialize, Serialize};

/// Which output of the process an entry came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl LogStream {
    /// The stream's name in the file: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a log file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When the shim read the output, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Which output it came from.
    pub stream: LogStream,
    /// True for a `P` entry: the process wrote `content` without a newline.
    pub partial: bool,
    /// The bytes, without the newline of a full line.
    pub content: Vec<u8>,
}

/// Parses one line of a log file (without its `\n`); `None` if it is malformed.
///
/// The tag may carry `:`-separated extras after `F` or `P`, as kubelet allows.
pub fn parse_entry(line: &[u8]) -> Option<LogEntry> {
    let (time, rest) = split_space(line)?;
    let (stream, rest) = split_space(rest)?;
    let (tag, content) = split_space(rest)?;
    let time_ns = crate::types::parse_rfc3339(std::str::from_utf8(time).ok()?)?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match tag.split(|&b| b == b':').next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(LogEntry {
        time_ns,
        stream,
        partial,
        content: content.to_vec(),
    })
}

/// Splits at the first space: the field before it and the rest after it.
fn split_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Removes a log and its rotated files (`PATH`, `PATH.1`, ...).
pub fn remove_files(path: &std::path::Path) {
    for file in log_files(path) {
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_file(path);
}

/// Where [`release_orphans`] moves the logs of containers that are gone but wrote output.
pub const ORPHANED_DIR: &str = "_orphaned";

/// After adoption, the log dirs (`<dir>/<namespace>/<id>`) of containers that are not
/// `live` (a daemon killed while it created or deleted one): empty ones are removed; one
/// holding output is moved to `<dir>/_orphaned/<namespace>.<id>.<now_ns>`, so no line is
/// lost and the id is free for a new container.
pub fn release_orphans(dir: &std::path::Path, live: &std::collections::HashSet<(String, String)>) {
    let Ok(namespaces) = std::fs::read_dir(dir) else {
        return;
    };
    for ns in namespaces.flatten() {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        if ns_name == ORPHANED_DIR || !ns.path().is_dir() {
            continue;
        }
        let Ok(ids) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            let id_name = id.file_name().to_string_lossy().into_owned();
            if live.contains(&(ns_name.clone(), id_name.clone())) {
                continue;
            }
            let path = id.path();
            let has_output = std::fs::read_dir(&path).is_ok_and(|files| {
                files
                    .flatten()
                    .any(|f| f.metadata().is_ok_and(|m| m.is_file() && m.len() > 0))
            });
            if !has_output {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!("removing the empty logs {}: {e}", path.display());
                }
                continue;
            }
            let kept = dir
                .join(ORPHANED_DIR)
                .join(format!("{ns_name}.{id_name}.{}", crate::types::now_ns()));
            let moved = std::fs::create_dir_all(dir.join(ORPHANED_DIR))
                .and_then(|()| std::fs::rename(&path, &kept));
            match moved {
                Ok(()) => tracing::warn!(
                    "the logs of {ns_name}/{id_name}, which is gone, are kept in {}",
                    kept.display()
                ),
                Err(e) => tracing::warn!("keeping the logs {}: {e}", path.display()),
            }
        }
        // A namespace dir left empty goes too.
        let _ = std::fs::remove_dir(ns.path());
    }
}

#[cfg(test)]
mod orphan_tests {
    use super::*;

    #[test]
    fn orphaned_logs_are_kept_if_they_hold_output_and_removed_if_empty() {
        let dir = std::env::temp_dir().join(format!("corral-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (ns, id, text) in [
            ("default", "live", "x"),
            ("default", "gone", "out"),
            ("ns2", "empty", ""),
        ] {
            std::fs::create_dir_all(dir.join(ns).join(id)).unwrap();
            std::fs::write(dir.join(ns).join(id).join("init.log"), text).unwrap();
        }
        let live = [("default".to_string(), "live".to_string())]
            .into_iter()
            .collect();
        release_orphans(&dir, &live);
        assert!(dir.join("default/live/init.log").exists());
        assert!(!dir.join("default/gone").exists());
        assert!(!dir.join("ns2").exists(), "an emptied namespace dir goes");
        let kept: Vec<_> = std::fs::read_dir(dir.join(ORPHANED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].starts_with("default.gone."), "{kept:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
