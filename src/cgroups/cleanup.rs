//! Cgroup housekeeping: the runtime removes a container's cgroups on delete; this removes
//! any it left behind (empty directories only: rmdir refuses a cgroup with processes).

use std::path::Path;

/// The mount points of this host's cgroup hierarchies (v1 controllers and the v2 mount).
pub fn hierarchies() -> Vec<std::path::PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()]; // pure v2
    }
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a container's cgroups from every hierarchy where they are left.
pub fn remove_leftovers(paths: &super::CgroupPaths) {
    for hierarchy in hierarchies() {
        let name = hierarchy
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let controller = if name == "unified" { "" } else { name.as_str() };
        // A hierarchy named after several controllers (cpu,cpuacct) uses the first one's path.
        let first = controller.split(',').next().unwrap_or("");
        let relative = paths.get(first).trim_start_matches('/');
        if relative.is_empty() || relative.split('/').any(|c| c == "..") {
            continue;
        }
        let path = hierarchy.join(relative);
        if path.is_dir() {
            if let Err(e) = std::fs::remove_dir(&path) {
                tracing::warn!("cannot remove leftover cgroup {}: {e}", path.display());
            }
        }
        // corral's own `<namespace>/<id>` paths leave the (empty) namespace level behind on
        // purpose: removing it would race a create that runc is making under it.
    }
}

/// The directories of a container's cgroups that still exist.
pub fn existing(paths: &super::CgroupPaths) -> Vec<std::path::PathBuf> {
    hierarchies()
        .into_iter()
        .filter_map(|h| {
            let name = h.file_name()?.to_string_lossy().into_owned();
            let controller = if name == "unified" {
                String::new()
            } else {
                name
            };
            let first = controller.split(',').next().unwrap_or("").to_string();
            let relative = paths.get(&first).trim_start_matches('/').to_string();
            let dir = h.join(relative);
            (!paths.get(&first).trim_start_matches('/').is_empty() && dir.is_dir()).then_some(dir)
        })
        .collect()
}
