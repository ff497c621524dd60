//! OOM notification. On cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`. On cgroup v2: inotify on `memory.events`. Either one only wakes
//! the Container; the truth is the kernel's `oom_kill` counter (in `memory.oom_control` on
//! v1, `memory.events` on v2), read again before an exit is published, so /tasks/oom always
//! comes before /tasks/exit even when the exit is seen first.

use super::{CgroupError, CgroupPaths, Hierarchy};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How many processes of `cgroup` the kernel's OOM killer has killed (`oom_kill` in
/// `memory.oom_control` on v1, `memory.events` on v2). None when it cannot be read: the
/// cgroup is gone. systemd removes a scope (runc's systemd driver) as soon as it is empty,
/// so after an OOM kill of its init this often comes before corrald looks. Read by path
/// each time: a file kept open would cost the daemon a descriptor per container.
pub fn kill_count(h: &Hierarchy, cgroups: &CgroupPaths) -> Option<u64> {
    let dir = h.dir("memory", cgroups.get("memory"));
    match h {
        Hierarchy::V1 { .. } => read_kill_count(&dir.join("memory.oom_control")),
        Hierarchy::V2 { .. } => read_kill_count(&dir.join("memory.events")),
    }
}

/// The `oom_kill` line of a counter file.
fn read_kill_count(path: &Path) -> Option<u64> {
    crate::layout::read_small(path, &mut [0u8; 1024])?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Kills of a parent cgroup's descendants that each container saw on its own counter,
/// by the parent's `memory.events` path.
static CLAIMED: std::sync::Mutex<BTreeMap<PathBuf, u64>> = std::sync::Mutex::new(BTreeMap::new());

fn claimed(parent: &Path) -> u64 {
    let map = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    map.get(parent).copied().unwrap_or(0)
}

/// The OOM-kill counter of a container's parent cgroup, for when the container's own
/// cgroup is gone before its counter was read. On cgroup v2 a cgroup's `memory.events`
/// counts the kills of its descendants too, and the parent (`corral.slice`, or
/// `<parent>/<namespace>`) outlives the container. Kills that containers under the same
/// parent saw on their own counters are claimed ([`ParentCounter::claim`]): a container
/// whose cgroup vanished takes only a kill nobody else saw.
pub struct ParentCounter {
    path: PathBuf,
    /// The parent's counter, and the claimed kills, when the watch began.
    base: u64,
    claimed_base: u64,
}

impl ParentCounter {
    /// The parent's counter of a container's cgroup; None on cgroup v1 (its
    /// `memory.oom_control` counts the cgroup's own kills only) or when it cannot be read.
    pub fn open(h: &Hierarchy, cgroups: &CgroupPaths) -> Option<Self> {
        let Hierarchy::V2 { .. } = h else { return None };
        let dir = h.dir("memory", cgroups.get("memory"));
        let path = dir.parent()?.join("memory.events");
        let base = read_kill_count(&path)?;
        let claimed_base = claimed(&path);
        Some(ParentCounter {
            path,
            base,
            claimed_base,
        })
    }

    /// Records `n` kills a container saw on its own counter.
    pub fn claim(&self, n: u64) {
        let mut map = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(self.path.clone()).or_insert(0) += n;
    }

    /// Takes one kill counted in the parent since the watch began that no container
    /// claimed; false when there is none.
    pub fn claim_unseen(&self) -> bool {
        let Some(now) = read_kill_count(&self.path) else {
            return false;
        };
        let mut map = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = map.entry(self.path.clone()).or_insert(0);
        let since = now.saturating_sub(self.base);
        let claimed_since = claimed.saturating_sub(self.claimed_base);
        if since > claimed_since {
            *claimed += 1;
            true
        } else {
            false
        }
    }
}

/// An fd that becomes readable when `cgroup` may have had an OOM event; the count is read
/// with [`kill_count`]. On v1 the registration outlives the control file's descriptor
/// (the kernel keeps only the eventfd), so only the eventfd is kept.
pub fn watch(h: &Hierarchy, cgroups: &CgroupPaths) -> Result<OwnedFd, CgroupError> {
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
            Ok(efd.into())
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
            Ok(fd)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory standing for a cgroup2 mount.
    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "corral-{name}-{}-{}",
            std::process::id(),
            crate::types::now_ns()
        ))
    }

    #[test]
    fn the_counter_is_read_after_each_wake_up() {
        let dir = scratch("oom");
        std::fs::create_dir_all(dir.join("web")).unwrap();
        let events = dir.join("web/memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n").unwrap();
        let h = Hierarchy::V2 { root: dir.clone() };
        let paths = CgroupPaths::uniform("/web");
        assert_eq!(kill_count(&h, &paths), Some(1));
        let notify = watch(&h, &paths).unwrap();
        // The inotify fd wakes up on a change of memory.events.
        let mut buf = [0u8; 4096];
        assert!(
            nix::unistd::read(notify.as_raw_fd(), &mut buf).is_err(),
            "nothing yet"
        );
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").unwrap();
        assert!(nix::unistd::read(notify.as_raw_fd(), &mut buf).unwrap() > 0);
        assert_eq!(kill_count(&h, &paths), Some(2));
        let gone = CgroupPaths::uniform("/gone");
        assert_eq!(
            kill_count(&h, &gone),
            None,
            "a cgroup that is gone has no count"
        );
        let e = watch(&h, &gone).unwrap_err();
        assert!(e.to_string().contains("gone/memory.events"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Two containers under one parent; the kills each saw are claimed, so one whose
    /// cgroup vanished takes only a kill the parent counted and nobody claimed, once.
    #[test]
    fn a_vanished_cgroup_takes_an_unclaimed_kill_of_its_parent() {
        let dir = scratch("oom-parent");
        let events = |kills: u64| format!("low 0\nhigh 0\nmax 9\noom {kills}\noom_kill {kills}\n");
        for c in ["a", "b"] {
            std::fs::create_dir_all(dir.join("slice").join(c)).unwrap();
            std::fs::write(dir.join("slice").join(c).join("memory.events"), events(0)).unwrap();
        }
        let parent_events = dir.join("slice/memory.events");
        std::fs::write(&parent_events, events(3)).unwrap();
        let h = Hierarchy::V2 { root: dir.clone() };
        let a = ParentCounter::open(&h, &CgroupPaths::uniform("/slice/a")).unwrap();
        let b = ParentCounter::open(&h, &CgroupPaths::uniform("/slice/b")).unwrap();
        assert!(
            !a.claim_unseen(),
            "the 3 kills before the watch are nobody's"
        );
        // b sees a kill on its own counter and claims it; the parent counts it too.
        std::fs::write(&parent_events, events(4)).unwrap();
        b.claim(1);
        assert!(!a.claim_unseen(), "b's kill is not a's");
        // A kill nobody saw (a's cgroup went before a looked): a takes it, once.
        std::fs::write(&parent_events, events(5)).unwrap();
        assert!(a.claim_unseen());
        assert!(!a.claim_unseen());
        assert!(!b.claim_unseen(), "a took it");
        let gone = CgroupPaths::uniform("/nowhere/x");
        assert!(ParentCounter::open(&h, &gone).is_none());
        let v1 = Hierarchy::V1 {
            root: dir.clone(),
            unified: None,
        };
        assert!(ParentCounter::open(&v1, &CgroupPaths::uniform("/slice/a")).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
