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
///
/// Kept compact, since the daemon holds one per container: each distinct path once, with
/// the controllers that use it (on a v1 host a container's nine controllers share one path;
/// as a map of their own strings they took about 1.4 KiB a container). Serialized as the
/// map (`state.json`'s `cgroups`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct CgroupPaths {
    /// The cgroup2 path (the `""` controller), which other controllers fall back to.
    unified: Option<Box<str>>,
    /// Every other path, once, with its controllers (sorted, joined by commas); in path
    /// order, so that equal paths compare equal.
    groups: Vec<(Box<str>, Box<str>)>,
}

impl From<BTreeMap<String, String>> for CgroupPaths {
    fn from(mut map: BTreeMap<String, String>) -> Self {
        let unified = map.remove("").map(String::into_boxed_str);
        let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (controller, path) in map {
            by_path.entry(path).or_default().push(controller);
        }
        CgroupPaths {
            unified,
            groups: by_path
                .into_iter()
                .map(|(path, controllers)| (path.into(), controllers.join(",").into()))
                .collect(),
        }
    }
}

impl From<CgroupPaths> for BTreeMap<String, String> {
    fn from(paths: CgroupPaths) -> Self {
        paths.to_map()
    }
}

impl CgroupPaths {
    /// The same path in every hierarchy.
    pub fn uniform(path: &str) -> Self {
        CgroupPaths {
            unified: Some(path.into()),
            groups: Vec::new(),
        }
    }

    /// As a map: controller name -> path, `""` for the unified path.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(unified) = &self.unified {
            map.insert(String::new(), unified.to_string());
        }
        for (path, controllers) in &self.groups {
            for controller in controllers.split(',') {
                map.insert(controller.to_string(), path.to_string());
            }
        }
        map
    }

    /// No path at all.
    pub fn is_empty(&self) -> bool {
        self.unified.is_none() && self.groups.is_empty()
    }

    /// Every path it holds (each once).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.unified
            .iter()
            .chain(self.groups.iter().map(|(path, _)| path))
            .map(|p| &**p)
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
        CgroupPaths::from(map)
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
        CgroupPaths::from(
            own.to_map()
                .into_iter()
                .map(|(c, p)| {
                    let joined = format!("{}/{wanted}", p.trim_end_matches('/'));
                    (c, joined)
                })
                .collect::<BTreeMap<_, _>>(),
        )
    }

    /// The cgroups of a live process (`/` is taken as it is: corrald may run in a root
    /// cgroup; see [`CgroupPaths::of_container`] for a container's).
    pub fn of_pid(pid: u32) -> Option<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Some(Self::parse(&text)).filter(|p| !p.is_empty())
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
        (!paths.is_empty() && paths.paths().all(|p| p != "/")).then_some(paths)
    }

    /// The path in `controller`'s hierarchy (the unified path where it has none of its own).
    pub fn get(&self, controller: &str) -> &str {
        let own = (!controller.is_empty())
            .then(|| {
                self.groups
                    .iter()
                    .find(|(_, controllers)| controllers.split(',').any(|c| c == controller))
            })
            .flatten()
            .map(|(path, _)| path);
        own.or(self.unified.as_ref()).map_or("/", |p| &**p)
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
            p.to_map().len(),
            2,
            "{p:?}: only what differs from the unified path"
        );
    }

    #[test]
    fn paths_are_kept_once_and_serialized_as_the_map() {
        // A v1 host: no unified path of the container's own, every controller in one place.
        let text = "9:name=systemd:/ns/web\n8:pids:/ns/web\n4:memory:/ns/web\n\
                    3:cpuset:/ns/web\n2:cpu,cpuacct:/ns/web\n1:blkio:/other\n0::/\n";
        let p = CgroupPaths::parse(text);
        assert_eq!(p.groups.len(), 2, "{p:?}: one entry per distinct path");
        assert_eq!(p.get("memory"), "/ns/web");
        assert_eq!(p.get("cpuacct"), "/ns/web");
        assert_eq!(p.get("cpu"), "/ns/web");
        assert_eq!(p.get("systemd"), "/ns/web");
        assert_eq!(p.get("blkio"), "/other");
        assert_eq!(p.get("cpu,cpuacct"), "/", "a controller is matched whole");
        assert_eq!(p.get("freezer"), "/", "none of its own: the unified path");
        assert_eq!(p.get(""), "/");
        // state.json keeps the map, and reads it back to the same value.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["memory"], "/ns/web");
        assert_eq!(json["cpuacct"], "/ns/web");
        assert_eq!(json[""], "/");
        assert_eq!(json.as_object().unwrap().len(), 8);
        let back: CgroupPaths = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        // The same paths compare equal however they were put together.
        let mut map = p.to_map();
        assert_eq!(CgroupPaths::from(map.clone()), p);
        map.insert("pids".into(), "/moved".into());
        assert_ne!(CgroupPaths::from(map), p);
        assert!(CgroupPaths::default().is_empty());
        assert_eq!(CgroupPaths::default().get("memory"), "/");
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
