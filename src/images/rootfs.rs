//! Bundles of containers made from images: `<data>/bundles/<ns>/<id>/` holds `config.json`
//! (the spec from the image's config) and `rootfs/`, where the writable snapshot
//! `container/<ns>/<id>` (prepared on the image's top chain id) is mounted.
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

fn snapshot_key(ns: &str, id: &str) -> String {
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

/// Unpacks the image (if not yet), prepares and mounts the container's writable snapshot,
/// and writes the spec; returns the bundle dir. On failure nothing is left mounted or
/// made.
pub(crate) fn prepare(inner: &Inner, ns: &str, id: &str, run: &ImageRun) -> Result<PathBuf> {
    let opts = spec_options(run)?;
    let dir = bundle_dir(inner, ns, id);
    if dir.exists() {
        return Err(Error::AlreadyExists(format!(
            "a bundle for container {ns}/{id} already exists at {} (delete the container \
             first)",
            dir.display()
        )));
    }
    let report = super::unpack::unpack(inner, ns, &run.image, run.platform.clone())?;
    let detail = inner.inspect(ns, &run.image, run.platform.clone())?;
    let key = snapshot_key(ns, id);
    let parent = (!report.chain_id.is_empty()).then_some(report.chain_id.as_str());
    let mounts = super::remap::prepare(inner, &key, parent, opts.user_ns.as_ref())?;
    let rootfs = dir.join("rootfs");
    let made = (|| {
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
        snapshots::mount(&mounts, &rootfs)?;
        let made = spec::spec_from_image(detail.config.as_bytes(), &rootfs, &opts)
            .map_err(|e| e.context(&format!("image {}", detail.info.name)))?;
        let mut spec = made.spec;
        // The bundle's own relative root, as runc expects.
        if let Some(root) = spec.root().clone() {
            let mut root = root;
            root.set_path(PathBuf::from("rootfs"));
            spec.set_root(Some(root));
        }
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        let config = dir.join("config.json");
        std::fs::write(&config, json)
            .map_err(|e| Error::io(format!("write {}", config.display()), e))?;
        Ok(())
    })();
    if let Err(e) = made {
        if let Err(cleanup) = release(inner, ns, id) {
            tracing::warn!("cleaning up the bundle of {ns}/{id}: {cleanup}");
        }
        return Err(e);
    }
    Ok(dir)
}

/// Unmounts the container's rootfs, removes its snapshot and its bundle dir. A bundle that
/// is not there is fine (released already).
pub(crate) fn release(inner: &Inner, ns: &str, id: &str) -> Result<()> {
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
    match inner.snapshots.remove(&snapshot_key(ns, id)) {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
    }
}

/// The bundles of containers that no longer exist (`live`: the containers there are, as
/// `(namespace, id)`), released; for the start after a reboot, when the state dir is new
/// and the data dir still holds them.
pub(crate) fn release_orphans(inner: &Inner, live: &[(String, String)]) -> Vec<(String, String)> {
    let root = bundles_root(inner);
    let mut released = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(&root) else {
        return released;
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
            match release(inner, &ns_name, &id_name) {
                Ok(()) => released.push((ns_name.clone(), id_name)),
                Err(e) => tracing::warn!("cannot release the bundle of {ns_name}/{id_name}: {e}"),
            }
        }
    }
    released
}
