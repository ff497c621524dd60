//! `/proc/self/mountinfo`: which mounts use a snapshot's directory.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `major:minor` of the filesystem.
    pub dev: String,
    /// The directory of that filesystem mounted here (not `/` for a bind).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `overlay`, `ext4`...
    pub fstype: String,
    /// The filesystem's options (an overlay's `lowerdir=...,upperdir=...`).
    pub super_options: String,
}

/// This process's mounts.
pub(crate) fn read() -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    Ok(parse(&text))
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(Entry {
                dev: l[2].to_string(),
                root: PathBuf::from(unescape(l[3])),
                mount_point: PathBuf::from(unescape(l[4])),
                fstype: r[0].to_string(),
                super_options: unescape(r[2]),
            })
        })
        .collect()
}

/// The mount points of the mounts that use `dir` (a snapshot's directory, canonical):
/// mounted inside it, an overlay with a lower, upper or work dir inside it, or a bind of
/// something inside it.
pub(crate) fn users(table: &[Entry], dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_path_buf());
        }
    };
    // The mount `dir` is on, and where `dir` is inside that filesystem: a bind of `dir`
    // shows that path as its root.
    let host = table
        .iter()
        .filter(|e| dir.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.components().count());
    let inside = host.and_then(|h| {
        let rel = dir.strip_prefix(&h.mount_point).ok()?;
        Some((h.dev.clone(), h.root.join(rel)))
    });
    for e in table {
        if e.mount_point.starts_with(dir) {
            add(&e.mount_point);
            continue;
        }
        if e.fstype == "overlay" {
            let uses = e.super_options.split(',').any(|opt| {
                let Some((k, v)) = opt.split_once('=') else {
                    return false;
                };
                matches!(
                    k,
                    "lowerdir" | "upperdir" | "workdir" | "lowerdir+" | "datadir+"
                ) && v.split(':').any(|p| Path::new(p).starts_with(dir))
            });
            if uses {
                add(&e.mount_point);
                continue;
            }
        }
        if let Some((dev, root)) = &inside {
            if &e.dev == dev && e.root.starts_with(root) {
                add(&e.mount_point);
            }
        }
    }
    out
}

/// Whether something is mounted at `dir` (exactly there).
pub(crate) fn is_mounted(dir: &Path) -> Result<bool> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("resolve {}", dir.display()), e)),
    };
    Ok(read()?.iter().any(|e| e.mount_point == dir))
}
