//! OOM notification. On cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`. On cgroup v2: inotify on `memory.events`. Either one only wakes
//! the Container; the truth is the kernel's `oom_kill` counter (in `memory.oom_control` on
//! v1, `memory.events` on v2), read again before an exit is published, so /tasks/oom always
//! comes before /tasks/exit even when the exit is seen first.

use super::{CgroupError, CgroupPaths, Hierarchy};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How many processes of `cgroup` the kernel's OOM killer has killed; 0 if unknown.
pub fn kill_count(h: &Hierarchy, cgroups: &CgroupPaths) -> u64 {
    let dir = h.dir("memory", cgroups.get("memory"));
    let path = match h {
        Hierarchy::V1 { .. } => dir.join("memory.oom_control"),
        Hierarchy::V2 { .. } => dir.join("memory.events"),
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// The kill counter read through an open file (`memory.oom_control` on v1, `memory.events`
/// on v2): no path lookup on the exit path, where the cgroup is being torn down.
pub fn kill_count_of(counter: &File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 512];
    let n = counter.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// An fd that becomes readable when `cgroup` may have had an OOM event, and the open file
/// to read the kill counter from ([`kill_count_of`]).
pub fn watch(h: &Hierarchy, cgroups: &CgroupPaths) -> Result<(OwnedFd, File), CgroupError> {
    let dir = h.dir("memory", cgroups.get("memory"));
    match h {
        Hierarchy::V1 { .. } => {
            let control_path = dir.join("memory.oom_control");
            let control =
                File::open(&control_path).map_err(|e| CgroupError::io("open", &control_path, e))?;
            // SAFETY: eventfd returns a new descriptor (or -1), which we own at once.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if efd < 0 {
                let e = io::Error::last_os_error();
                return Err(CgroupError::io("create an eventfd for", &control_path, e));
            }
            // SAFETY: efd is a fresh, valid descriptor nobody else owns.
            let efd = unsafe { OwnedFd::from_raw_fd(efd) };
            let ec_path = dir.join("cgroup.event_control");
            let register = |e| CgroupError::io("register an eventfd in", &ec_path, e);
            let mut ec = OpenOptions::new()
                .write(true)
                .open(&ec_path)
                .map_err(register)?;
            ec.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())
                .map_err(register)?;
            Ok((efd, control))
        }
        Hierarchy::V2 { .. } => {
            let events = dir.join("memory.events");
            let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes().to_vec())
                .map_err(|e| CgroupError::io("watch", &events, io::Error::other(e)))?;
            // SAFETY: inotify_init1 returns a new descriptor (or -1), owned at once.
            let ino = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if ino < 0 {
                let e = io::Error::last_os_error();
                return Err(CgroupError::io(
                    "create an inotify instance for",
                    &events,
                    e,
                ));
            }
            // SAFETY: ino is a fresh, valid descriptor nobody else owns.
            let ino = unsafe { OwnedFd::from_raw_fd(ino) };
            // SAFETY: a valid inotify fd and a NUL-terminated path.
            if unsafe { libc::inotify_add_watch(ino.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) }
                < 0
            {
                let e = io::Error::last_os_error();
                return Err(CgroupError::io("watch", &events, e));
            }
            let counter = File::open(&events).map_err(|e| CgroupError::io("open", &events, e))?;
            Ok((ino, counter))
        }
    }
}
