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

/// Removes the cgroup at `relative` (e.g. `/web-1`) from every hierarchy where it is left.
pub fn remove_leftovers(relative: &str) {
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|c| c == "..") {
        return;
    }
    for hierarchy in hierarchies() {
        let path = hierarchy.join(relative);
        if path.is_dir() {
            if let Err(e) = std::fs::remove_dir(&path) {
                tracing::warn!("cannot remove leftover cgroup {}: {e}", path.display());
            }
        }
    }
}

/// Whether any hierarchy still has a cgroup at `relative`.
pub fn exists_anywhere(relative: &str) -> bool {
    let relative = relative.trim_start_matches('/');
    !relative.is_empty() && hierarchies().iter().any(|h| h.join(relative).is_dir())
}
