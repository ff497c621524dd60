//! Bundles of containers made from images: `<data>/bundles/<ns>/<id>/` holds `config.json`
//! (the spec from the image's config) and `rootfs/`, where the writable snapshot
//! `container/<ns>/<id>` (prepared on the image's top chain id) is mounted.
//!
//! A container record (`containers.rs`) owns the snapshot; a task made from it mounts the
//! snapshot at the bundle's rootfs and has `config.json` written from the record's spec; a
//! task deleted unmounts it (the snapshot stays); the record removed removes the snapshot.
//!
//! The bundle lives in the data dir, not in the container's state dir, so that removing a
//! container's state never walks into its mounted rootfs. Release unmounts first, checks
//! `/proc/self/mountinfo`, and only then removes the snapshot and the directory.

use super::{spec, Inner};
use crate::error::{Error, Result};
use crate::snapshots;
use crate::types::ImageRun;
use std::path::{Path, PathBuf};

/// The root of the image bundles in a data dir.
pub(crate) fn bundles_root(inner: &Inner) -> PathBuf {
    inner.snapshots.root().with_file_name("bundles")
}

/// The bundle dir of a container.
pub(crate) fn bundle_dir(inner: &Inner, ns: &str, id: &str) -> PathBuf {
    bundles_root(inner).join(ns).join(id)
}

/// The writable snapshot of container `ns/id`.
pub(crate) fn snapshot_key(ns: &str, id: &str) -> String {
    format!("container/{ns}/{id}")
}

/// Whether `path` is the bundle of an image container (made by [`prepare`]).
pub(crate) fn is_image_bundle(inner: &Inner, path: &Path) -> bool {
    path.starts_with(bundles_root(inner))
}

fn spec_options(run: &ImageRun) -> Result<spec::SpecOptions> {
    Ok(spec::SpecOptions {
        args: run.args.clone(),
        entrypoint: run.entrypoint.clone(),
        env: run.env.clone(),
        user: run.user.clone(),
        cwd: run.cwd.clone(),
        hostname: run.hostname.clone(),
        read_only: run.read_only,
        host_network: run.host_network,
        mounts: run
            .mounts
            .iter()
            .map(|m| spec::parse_mount(m))
            .collect::<Result<Vec<_>>>()?,
        user_ns: spec::userns::UserNs::from_maps(&run.uid_maps, &run.gid_maps)?,
        ..spec::SpecOptions::default()
    })
}

/// What [`make`] made: the spec (JSON text, root path `rootfs`) and the image's full name.
pub(crate) struct Made {
    pub(crate) spec: String,
    pub(crate) image: String,
}

/// Unpacks the image (if not yet), prepares the container's writable snapshot, mounts it
/// at the bundle's rootfs (an overlay with `volatile` when asked: see
/// [`with_volatile`]) and computes the spec from the image's config; the rootfs stays
/// mounted. On failure nothing is left mounted or made.
pub(crate) fn make(
    inner: &Inner,
    ns: &str,
    id: &str,
    run: &ImageRun,
    volatile: bool,
) -> Result<Made> {
    let snapshotter = crate::types::snapshotter_of(run, inner.default_snapshotter)
        .map_err(Error::InvalidArgument)?;
    let flavor = snapshots::Flavor::of_snapshotter(snapshotter);
    let opts = spec_options(run)?;
    let dir = bundle_dir(inner, ns, id);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(format!(
                "a bundle for container {ns}/{id} already exists at {} (delete the container \
                 first)",
                dir.display()
            )))
        }
        Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
    }
    // A failure before the snapshot is ours leaves any snapshot of that name alone.
    let prepared = (|| {
        let report = super::unpack::unpack(inner, ns, &run.image, run.platform.clone())?;
        let detail = inner.inspect(ns, &run.image, run.platform.clone())?;
        let parent = (!report.chain_id.is_empty()).then_some(report.chain_id.as_str());
        let mounts = super::remap::prepare(
            inner,
            &inner.snaps(ns),
            flavor,
            &snapshot_key(ns, id),
            parent,
            opts.user_ns.as_ref(),
        )?;
        let mounts = if volatile {
            with_volatile(mounts)
        } else {
            mounts
        };
        Ok((detail, mounts))
    })();
    let (detail, mounts) = match prepared {
        Ok(p) => p,
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing {}: {cleanup}", dir.display());
            }
            return Err(e);
        }
    };
    let made = (|| {
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
        snapshots::mount(&mounts, &rootfs)?;
        let made = spec::spec_from_image(detail.config.as_bytes(), &rootfs, &opts)
            .map_err(|e| e.context(&format!("image {}", detail.info.name)))?;
        let mut spec = made.spec;
        set_bundle_root(&mut spec);
        let json =
            serde_json::to_string_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Made {
            spec: json,
            image: detail.info.name.clone(),
        })
    })();
    if made.is_err() {
        if let Err(cleanup) = release(inner, ns, id) {
            tracing::warn!("cleaning up the bundle of {ns}/{id}: {cleanup}");
        }
    }
    made
}

/// The mounts with overlay's `volatile` option added to a writable overlay (one with an
/// upper dir): the kernel then skips every sync of the upper filesystem, the one at
/// unmount included (about 6 ms of a `run --rm` from an image on ext4). Only for a rootfs
/// removed with its snapshot after one run: after a crash a volatile upper dir may have
/// lost writes, and overlayfs refuses to mount it again until its `work/incompat/volatile`
/// marker is removed. A bind mount (no parent layers) has nothing to skip and is kept.
pub(crate) fn with_volatile(mut mounts: Vec<snapshots::Mount>) -> Vec<snapshots::Mount> {
    for m in &mut mounts {
        if m.kind == "overlay" && m.options.iter().any(|o| o.starts_with("upperdir=")) {
            m.options.push("volatile".into());
        }
    }
    mounts
}

/// The bundle's own relative root, as runc expects.
fn set_bundle_root(spec: &mut oci_spec::runtime::Spec) {
    if let Some(mut root) = spec.root().clone() {
        root.set_path(PathBuf::from("rootfs"));
        spec.set_root(Some(root));
    }
}

/// Parses a spec given as JSON text (a container record's, or one a user gives) and sets
/// its root path to the bundle's `rootfs`; `what` names it in the error.
pub(crate) fn parse_spec(text: &str, what: &str) -> Result<oci_spec::runtime::Spec> {
    let mut spec: oci_spec::runtime::Spec = serde_json::from_str(text)
        .map_err(|e| Error::InvalidArgument(format!("{what} is not an OCI runtime spec: {e}")))?;
    if spec.process().is_none() {
        return Err(Error::InvalidArgument(format!(
            "{what} has no process to run"
        )));
    }
    if spec.root().is_none() {
        spec.set_root(Some(oci_spec::runtime::Root::default()));
    }
    set_bundle_root(&mut spec);
    Ok(spec)
}

/// Makes the bundle a task runs from: the snapshot mounted at `rootfs` (unless it is
/// already) and `config.json` written from `spec`; returns the bundle dir. On failure a
/// mount made here is undone.
pub(crate) fn mount_task_bundle(inner: &Inner, ns: &str, id: &str, spec: &str) -> Result<PathBuf> {
    let spec = parse_spec(spec, &format!("the spec of container {ns}/{id}"))?;
    let dir = bundle_dir(inner, ns, id);
    let rootfs = dir.join("rootfs");
    let mounted_here = if snapshots::mountinfo::is_mounted(&rootfs)? {
        false
    } else {
        let mounts = inner.snapshots.mounts(&snapshot_key(ns, id))?;
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
        snapshots::mount(&mounts, &rootfs)?;
        true
    };
    let written = (|| {
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        let config = dir.join("config.json");
        // Not fsync'ed: it is made again from the record at every task start, and a task
        // does not outlive a power loss (the daemon keeps its own copy for runc).
        crate::layout::write_atomic(&config, &json)
            .map_err(|e| Error::io(format!("write {}", config.display()), e))
    })();
    if let Err(e) = written {
        if mounted_here {
            if let Err(cleanup) = unmount(inner, ns, id) {
                tracing::warn!("unmounting the rootfs of {ns}/{id}: {cleanup}");
            }
        }
        return Err(e);
    }
    Ok(dir)
}

/// Unmounts the container's rootfs and removes its bundle dir, keeping its snapshot (a
/// task deleted, its container record kept). A bundle that is not there is fine.
pub(crate) fn unmount(inner: &Inner, ns: &str, id: &str) -> Result<()> {
    let dir = bundle_dir(inner, ns, id);
    let rootfs = dir.join("rootfs");
    if snapshots::mountinfo::is_mounted(&rootfs)? {
        snapshots::unmount(&rootfs)?;
    }
    if snapshots::mountinfo::is_mounted(&rootfs)? {
        return Err(Error::WrongState(format!(
            "the rootfs of {ns}/{id} at {} is still mounted",
            rootfs.display()
        )));
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
    }
}

/// Unmounts the container's rootfs, removes its bundle dir and its snapshot. A bundle or
/// snapshot that is not there is fine (released already).
pub(crate) fn release(inner: &Inner, ns: &str, id: &str) -> Result<()> {
    unmount(inner, ns, id)?;
    match inner.snaps(ns).remove(&snapshot_key(ns, id)) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bundles of tasks that no longer exist (`live`: the tasks there are, as
/// `(namespace, id)`), for the start after a reboot, when the state dir is new and the data
/// dir still holds them: a bundle whose container record exists is unmounted only (the
/// record and its snapshot are kept for its next task); one without is released. Returns
/// the released ones and the unmounted ones.
pub(crate) fn release_orphans(inner: &Inner, live: &[(String, String)]) -> Orphans {
    let root = bundles_root(inner);
    let mut orphans = Orphans::default();
    let Ok(namespaces) = std::fs::read_dir(&root) else {
        return orphans;
    };
    for ns in namespaces.flatten() {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        let Ok(ids) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            let id_name = id.file_name().to_string_lossy().into_owned();
            if live.iter().any(|(n, i)| *n == ns_name && *i == id_name) {
                continue;
            }
            let recorded = inner.with_meta(|m| {
                m.db.containers
                    .get(&ns_name)
                    .is_some_and(|c| c.contains_key(&id_name))
            });
            let (done, list) = if recorded {
                (unmount(inner, &ns_name, &id_name), &mut orphans.unmounted)
            } else {
                (release(inner, &ns_name, &id_name), &mut orphans.released)
            };
            match done {
                Ok(()) => list.push((ns_name.clone(), id_name)),
                Err(e) => tracing::warn!("cannot release the bundle of {ns_name}/{id_name}: {e}"),
            }
        }
    }
    orphans
}

/// What [`release_orphans`] did, as `(namespace, id)`.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    /// Bundles with no container record: unmounted, their snapshots and dirs removed.
    pub(crate) released: Vec<(String, String)>,
    /// Bundles of container records: unmounted, their dirs removed, snapshots kept.
    pub(crate) unmounted: Vec<(String, String)>,
}
