//! Everything corral does with cgroups itself (no cgroups-rs, no runtime fork): where a
//! host mounts them and where a container's are ([`Hierarchy`], [`host`], [`CgroupPaths`]),
//! statistics ([`stats`]), OOM notification ([`oom`]), the v1 kernel memory limits runc 1.1
//! ignores (`kmem`), the removal of cgroups a runtime left behind ([`cleanup`]) and where
//! shims and containers' cgroups go, apart from corrald's ([`placement`]).
//!
//! Works on cgroup v1, v2 and hybrid hosts (v1 controllers plus a cgroup2 mount at
//! `<root>/unified`).

pub mod cleanup;
pub mod oom;
pub mod placement;
pub mod stats;

mod error;
mod kmem;

pub use cleanup::{existing, hierarchies, remove_leftovers};
pub use error::CgroupError;
pub(crate) use kmem::set_kernel_memory;
pub use stats::{
    hugepage_sizes, stats_v2, BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats,
    MemoryEntry, MemoryStats, PidsStats, Stats, Throttling,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// How a host mounts its cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// v1 controllers under `<root>/<controller>`, maybe with a cgroup2 mount at `<root>/unified`.
    V1 {
        /// Usually /sys/fs/cgroup.
        root: PathBuf,
        /// The hybrid cgroup2 mount, if any.
        unified: Option<PathBuf>,
    },
    /// One cgroup2 hierarchy at `root`.
    V2 {
        /// Usually /sys/fs/cgroup.
        root: PathBuf,
    },
}

/// Where one container's cgroup is in each hierarchy: controller name -> path, with `""`
/// for the cgroup2 (unified) hierarchy. Read from `/proc/<pid>/cgroup`, because a runtime
/// may place a cgroup relative to its own (runc does when the spec sets no cgroupsPath).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths(pub BTreeMap<String, String>);

impl CgroupPaths {
    /// The same path in every hierarchy.
    pub fn uniform(path: &str) -> Self {
        CgroupPaths(BTreeMap::from([(String::new(), path.to_string())]))
    }

    /// Parses `/proc/<pid>/cgroup` text: `N:ctrl1,ctrl2:/path` and `0::/path`. A
    /// controller whose path is the unified one is not kept ([`CgroupPaths::get`] falls
    /// back to it): a container usually has one path everywhere, and the daemon holds one
    /// of these per container.
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                map.insert(String::new(), path.to_string());
            }
            for c in ctrls.split(',').filter(|c| !c.is_empty()) {
                map.insert(c.trim_start_matches("name=").to_string(), path.to_string());
            }
        }
        if let Some(unified) = map.get("").cloned() {
            map.retain(|c, p| c.is_empty() || *p != unified);
        }
        CgroupPaths(map)
    }

    /// Where a runtime like runc puts a new container's cgroups: the spec's cgroupsPath
    /// when absolute, the scope runc's systemd driver makes for `slice:prefix:name`, else
    /// that path (or the id) under the runtime's own cgroups: `runtime_cgroup` when the
    /// shim that runs it moved there, else the daemon's.
    pub fn expected(spec_path: Option<&str>, id: &str, runtime_cgroup: Option<&str>) -> Self {
        let wanted = spec_path.filter(|p| !p.is_empty()).unwrap_or(id);
        if wanted.starts_with('/') {
            return Self::uniform(wanted);
        }
        if let Some(scope) = placement::systemd_cgroup(wanted) {
            return Self::uniform(&scope);
        }
        let own = match runtime_cgroup {
            Some(cgroup) => Self::uniform(cgroup),
            None => Self::of_pid(std::process::id()).unwrap_or_else(|| Self::uniform("/")),
        };
        CgroupPaths(
            own.0
                .into_iter()
                .map(|(c, p)| {
                    let joined = format!("{}/{wanted}", p.trim_end_matches('/'));
                    (c, joined)
                })
                .collect(),
        )
    }

    /// The cgroups of a live process (`/` is taken as it is: corrald may run in a root
    /// cgroup; see [`CgroupPaths::of_container`] for a container's).
    pub fn of_pid(pid: u32) -> Option<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Some(Self::parse(&text)).filter(|p| !p.0.is_empty())
    }

    /// The cgroups of a container's process, or None when they cannot be told: unreadable
    /// or empty `/proc/<pid>/cgroup`, or a `/` anywhere. A container never lives in a root
    /// cgroup, but on v1 the kernel shows an exiting or zombie task in `/` everywhere, and
    /// taking that would watch the root memory cgroup (whose OOM counter stays 0).
    pub fn of_container(pid: u32) -> Option<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::container_paths(&text)
    }

    /// [`CgroupPaths::of_container`] on `/proc/<pid>/cgroup` text.
    fn container_paths(text: &str) -> Option<Self> {
        let paths = Self::parse(text);
        (!paths.0.is_empty() && paths.0.values().all(|p| p != "/")).then_some(paths)
    }

    /// The path in `controller`'s hierarchy (the unified path where it has none of its own).
    pub fn get(&self, controller: &str) -> &str {
        self.0
            .get(controller)
            .or_else(|| self.0.get(""))
            .map(String::as_str)
            .unwrap_or("/")
    }
}

/// The host's hierarchy, detected once.
pub fn host() -> &'static Hierarchy {
    static HOST: std::sync::OnceLock<Hierarchy> = std::sync::OnceLock::new();
    HOST.get_or_init(|| Hierarchy::detect(Path::new("/sys/fs/cgroup")))
}

impl Hierarchy {
    /// Looks at `root` (normally /sys/fs/cgroup) to tell v1, v2 or hybrid.
    pub fn detect(root: &Path) -> Hierarchy {
        if root.join("cgroup.controllers").exists() {
            return Hierarchy::V2 {
                root: root.to_path_buf(),
            };
        }
        let unified = root.join("unified");
        Hierarchy::V1 {
            root: root.to_path_buf(),
            unified: unified
                .join("cgroup.controllers")
                .exists()
                .then_some(unified),
        }
    }

    /// The directory of `cgroup` for a v1 `controller` (or the v2 directory).
    pub fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let rel = cgroup.trim_start_matches('/');
        match self {
            Hierarchy::V1 { root, .. } => root.join(controller).join(rel),
            Hierarchy::V2 { root } => root.join(rel),
        }
    }

    /// The cgroup2 directory of `cgroup`, if the host has a cgroup2 mount.
    pub fn v2_dir(&self, cgroup: &str) -> Option<PathBuf> {
        let rel = cgroup.trim_start_matches('/');
        match self {
            Hierarchy::V1 { unified, .. } => unified.as_ref().map(|u| u.join(rel)),
            Hierarchy::V2 { root } => Some(root.join(rel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_parses() {
        let p = CgroupPaths::parse(
            "9:name=systemd:/p2\n4:memory:/process_api/x/p2\n2:cpu,cpuacct:/p2\n0::/p2\n",
        );
        assert_eq!(p.get("memory"), "/process_api/x/p2");
        assert_eq!(p.get("cpuacct"), "/p2");
        assert_eq!(p.get("systemd"), "/p2");
        assert_eq!(p.get("pids"), "/p2", "falls back to the unified path");
        assert_eq!(
            p.0.len(),
            2,
            "{p:?}: only what differs from the unified path"
        );
    }

    #[test]
    fn an_exiting_container_process_tells_nothing() {
        let live = "9:name=systemd:/ns/web\n4:memory:/process_api/x/ns/web\n\
                    2:cpu,cpuacct:/ns/web\n0::/ns/web\n";
        let p = CgroupPaths::container_paths(live).expect("a live container's cgroups");
        assert_eq!(p.get("memory"), "/process_api/x/ns/web");
        assert_eq!(p, CgroupPaths::parse(live));
        // What v1 shows for a zombie or exiting task: `/` in every hierarchy.
        let zombie = "9:name=systemd:/\n4:memory:/\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(CgroupPaths::container_paths(zombie), None);
        // One `/` is enough to distrust the whole text.
        let partial = "4:memory:/\n2:cpu,cpuacct:/ns/web\n0::/ns/web\n";
        assert_eq!(CgroupPaths::container_paths(partial), None);
        assert_eq!(CgroupPaths::container_paths(""), None);
        assert_eq!(CgroupPaths::container_paths("garbage\n"), None);
        assert_eq!(CgroupPaths::of_container(u32::MAX), None, "no such process");
        // corrald's own cgroups may well be `/`: of_pid keeps them.
        assert!(CgroupPaths::of_pid(std::process::id()).is_some());
    }
}
