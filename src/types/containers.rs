//! Container records: a container as metadata, apart from its task (containerd 1.x's
//! `containers.Container`), and the requests that make, change and run them.

use super::{ImageRun, RestartPolicy, Stdio};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The overlayfs snapshotter (the default where the kernel has overlayfs).
pub const SNAPSHOTTER_OVERLAYFS: &str = "overlayfs";

/// The native (copying) snapshotter: the default where the kernel has no overlayfs.
pub const SNAPSHOTTER_NATIVE: &str = "native";

/// The snapshotter an [`ImageRun`] names: `overlayfs` or `native`, `None` the daemon's
/// `default`; any other name is an error naming it and the known ones.
pub fn snapshotter_of(run: &ImageRun, default: &'static str) -> Result<&'static str, String> {
    match run.snapshotter.as_deref() {
        None => Ok(default),
        Some(name) => snapshotter_named(name),
    }
}

/// The snapshotter called `name`, or an error naming it and the known ones.
pub fn snapshotter_named(name: &str) -> Result<&'static str, String> {
    match name {
        SNAPSHOTTER_OVERLAYFS => Ok(SNAPSHOTTER_OVERLAYFS),
        SNAPSHOTTER_NATIVE => Ok(SNAPSHOTTER_NATIVE),
        other => Err(format!(
            "unknown snapshotter {other:?} (known: {SNAPSHOTTER_OVERLAYFS}, \
             {SNAPSHOTTER_NATIVE})"
        )),
    }
}

/// A container record: what a task is made from. Kept in the data dir's metadata, so it
/// outlives its tasks and a reboot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    /// Its namespace.
    pub namespace: String,
    /// Its id (a task made from it has the same id).
    pub id: String,
    /// Free labels (a task made from it gets them too).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The image it was made from, by its full name.
    #[serde(default)]
    pub image: Option<String>,
    /// The OCI runtime spec as JSON text (root path `rootfs`): computed at create from the
    /// image's config with the snapshot mounted; `ContainerUpdate` may replace it, for the
    /// next task.
    pub spec: String,
    /// The snapshotter of its rootfs (`overlayfs` or `native`).
    pub snapshotter: String,
    /// Its writable snapshot (`container/<ns>/<id>`), mounted as a task's rootfs.
    pub snapshot_key: String,
    /// The runtime of its tasks: a name the daemon knows or a path; `None`: the daemon's
    /// default.
    #[serde(default)]
    pub runtime: Option<PathBuf>,
    /// Extra global arguments for that runtime (before the verb).
    #[serde(default)]
    pub runtime_args: Vec<String>,
    /// Extensions: name to JSON text, kept for their owner (containerd's extensions).
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// Nanoseconds since the epoch.
    pub updated_ns: u64,
}

/// Make a container record from an image: unpack it, prepare its writable snapshot,
/// compute and store the spec; no task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerCreateRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// The container's id.
    pub id: String,
    /// The image and how its config becomes the spec.
    pub image: ImageRun,
    /// The runtime of its tasks; `None`: the daemon's default.
    pub runtime: Option<PathBuf>,
    /// Extra global arguments for that runtime.
    pub runtime_args: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Extensions: name to JSON text.
    pub extensions: BTreeMap<String, String>,
}

/// Change a container record (each `Some` field replaces, labels merge).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerUpdateRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// The container's id.
    pub id: String,
    /// Labels to set; an empty value removes the label.
    pub labels: BTreeMap<String, String>,
    /// A new runtime (a name the daemon knows or a path).
    pub runtime: Option<PathBuf>,
    /// New runtime arguments.
    pub runtime_args: Option<Vec<String>>,
    /// A new OCI spec, as JSON text; its root path is set to `rootfs`. Used by the next task.
    pub spec: Option<String>,
    /// Extensions to set (name to JSON text); an empty text removes one.
    pub extensions: BTreeMap<String, String>,
}

/// Make a task from a container record and start it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskStartRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// The container's id.
    pub id: String,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// When to restart it after its process exits.
    pub restart: RestartPolicy,
    /// The runtime moves the rootfs and chroots instead of `pivot_root` (as
    /// [`super::CreateRequest::no_pivot_root`]).
    pub no_pivot_root: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshotter_names_are_overlayfs_native_or_the_default() {
        let named = |n: Option<&str>| ImageRun {
            snapshotter: n.map(str::to_string),
            ..ImageRun::default()
        };
        assert_eq!(
            snapshotter_of(&named(None), SNAPSHOTTER_NATIVE),
            Ok(SNAPSHOTTER_NATIVE)
        );
        assert_eq!(
            snapshotter_of(&named(None), SNAPSHOTTER_OVERLAYFS),
            Ok(SNAPSHOTTER_OVERLAYFS)
        );
        assert_eq!(
            snapshotter_of(&named(Some("overlayfs")), SNAPSHOTTER_NATIVE),
            Ok(SNAPSHOTTER_OVERLAYFS)
        );
        assert_eq!(
            snapshotter_of(&named(Some("native")), SNAPSHOTTER_OVERLAYFS),
            Ok(SNAPSHOTTER_NATIVE)
        );
        assert_eq!(
            snapshotter_of(&named(Some("zfs")), SNAPSHOTTER_OVERLAYFS),
            Err("unknown snapshotter \"zfs\" (known: overlayfs, native)".to_string())
        );
    }
}
