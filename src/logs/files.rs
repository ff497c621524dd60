//! The files of one log: the live `PATH` and the rotated `PATH.1`, `PATH.2`, ...

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A place in a log: a file by its inode, and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The file's inode number.
    pub ino: u64,
    /// The offset in that file.
    pub offset: u64,
}

/// The live file's inode and size, `None` if there is no live file now.
pub fn position_now(path: &Path) -> io::Result<Option<LogPosition>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(LogPosition {
            ino: m.ino(),
            offset: m.len(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The log's existing files, oldest first: `PATH.k`, ..., `PATH.1`, then `PATH`.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated(path).into_iter().rev().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// The rotated files `PATH.i` found in the directory, by `i`, smallest (newest) first.
/// The directory is listed rather than probed `PATH.1`, `PATH.2`, ... until one is
/// missing, because a rotation in progress leaves a gap for a moment.
fn rotated(path: &Path) -> Vec<(u64, PathBuf)> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'.');
    let Ok(dir) = fs::read_dir(parent(path)) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file_name = e.file_name();
            let suffix = file_name.as_bytes().strip_prefix(prefix.as_slice())?;
            let i = rotation_index(suffix)?;
            Some((i, path.with_file_name(&file_name)))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found
}

/// The `i` of a `PATH.i` suffix: decimal digits, no leading zero, at least 1.
fn rotation_index(suffix: &[u8]) -> Option<u64> {
    if suffix.is_empty() || suffix[0] == b'0' || !suffix.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(suffix).ok()?.parse().ok()
}

/// The directory a log file is in (`.` for a bare file name).
pub(super) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An open log file.
pub(super) struct Opened {
    pub file: File,
    pub ino: u64,
    pub len: u64,
}

/// Opens every file of the log, oldest first, without duplicates. Holding them open keeps
/// their bytes readable even if a rotation renames or removes them meanwhile.
///
/// The files are opened newest first: if a rotation happens during the scan, a file may
/// be met twice under two names (it is then kept once, by inode), but none is skipped.
/// A live file created after the scan is found later by comparing inodes.
pub(super) fn open_all(path: &Path) -> io::Result<Vec<Opened>> {
    let mut names = vec![path.to_path_buf()];
    names.extend(rotated(path).into_iter().map(|(_, p)| p));
    let mut opened: Vec<Opened> = Vec::with_capacity(names.len());
    for p in names {
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let m = file.metadata()?;
        if opened.iter().any(|o| o.ino == m.ino()) {
            continue;
        }
        opened.push(Opened {
            file,
            ino: m.ino(),
            len: m.len(),
        });
    }
    opened.reverse();
    Ok(opened)
}

/// The live file's inode, `None` if there is none now.
pub(super) fn live_ino(path: &Path) -> io::Result<Option<u64>> {
    Ok(position_now(path)?.map(|p| p.ino))
}
