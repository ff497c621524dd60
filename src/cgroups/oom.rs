//! OOM notification. On cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`. On cgroup v2: inotify on `memory.events`. Either one only wakes
//! the Container; the truth is the kernel's `oom_kill` counter (in `memory.oom_control` on
//! v1, `memory.events` on v2), read again before an exit is published, so /tasks/oom always
//! comes before /tasks/exit even when the exit is seen first.

use super::{CgroupError, CgroupPaths, Hierarchy};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
            let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| CgroupError::io("create an eventfd for", &control_path, e.into()))?;
            let ec_path = dir.join("cgroup.event_control");
            let register = |e| CgroupError::io("register an eventfd in", &ec_path, e);
            let mut ec = OpenOptions::new()
                .write(true)
                .open(&ec_path)
                .map_err(register)?;
            ec.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())
                .map_err(register)?;
            Ok((efd.into(), control))
        }
        Hierarchy::V2 { .. } => {
            let events = dir.join("memory.events");
            let ino =
                Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(|e| {
                    CgroupError::io("create an inotify instance for", &events, e.into())
                })?;
            ino.add_watch(&events, AddWatchFlags::IN_MODIFY)
                .map_err(|e| CgroupError::io("watch", &events, e.into()))?;
            // nix's Inotify does not give up its OwnedFd: keep a duplicate (close-on-exec,
            // same inotify instance and watch) and let the original close.
            let fd = ino
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| CgroupError::io("duplicate the inotify fd for", &events, e))?;
            let counter = File::open(&events).map_err(|e| CgroupError::io("open", &events, e))?;
            Ok((fd, counter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_read_through_the_open_file() {
        let dir = std::env::temp_dir().join(format!(
            "corral-oom-{}-{}",
            std::process::id(),
            crate::types::now_ns()
        ));
        std::fs::create_dir_all(dir.join("web")).unwrap();
        let events = dir.join("web/memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n").unwrap();
        let h = Hierarchy::V2 { root: dir.clone() };
        let paths = CgroupPaths::uniform("/web");
        assert_eq!(kill_count(&h, &paths), 1);
        let (notify, counter) = watch(&h, &paths).unwrap();
        assert_eq!(kill_count_of(&counter), 1);
        // The inotify fd wakes up on a change of memory.events; the open file sees it.
        let mut buf = [0u8; 4096];
        assert!(
            nix::unistd::read(notify.as_raw_fd(), &mut buf).is_err(),
            "nothing yet"
        );
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").unwrap();
        assert!(nix::unistd::read(notify.as_raw_fd(), &mut buf).unwrap() > 0);
        assert_eq!(kill_count_of(&counter), 2);
        let gone = CgroupPaths::uniform("/gone");
        assert_eq!(kill_count(&h, &gone), 0, "unknown reads as 0");
        let e = watch(&h, &gone).unwrap_err();
        assert!(e.to_string().contains("gone/memory.events"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
