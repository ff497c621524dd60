//! Unpacking an image: each layer, base first, applied into a snapshot committed under its
//! chain id. A layer whose chain id is already committed is not unpacked again.
//!
//! For each layer not there yet: `extract-<chain id>` is prepared on the previous chain id,
//! the blob is applied straight into its `fs` (for a layer with parents that is the
//! overlay's upper dir, so whiteouts land there in overlay form, as containerd's overlay
//! differ does), the filesystem is synced, and it is committed as the chain id. On any
//! failure (a diff id that does not match, a full disk, a broken tar) the `extract-*`
//! snapshot is removed. Unpacks run one at a time (the snapshotter's unpack lock), so an
//! `extract-*` snapshot found on the way was left by a crash, and is removed.

use super::snapevents::Snaps;
use super::Inner;
use crate::error::{Error, Result};
use crate::registry::ManifestLayer;
use crate::snapshots::{unpack, Kind};
use crate::types::{Platform, UnpackReport, UnpackedLayer};
use std::os::fd::AsRawFd;

pub(crate) fn unpack(
    inner: &Inner,
    ns: &str,
    name: &str,
    platform: Option<Platform>,
) -> Result<UnpackReport> {
    let detail = inner.inspect(ns, name, platform)?;
    let image = detail.info.name.clone();
    let manifest = crate::registry::parse_manifest(detail.manifest.as_bytes())
        .map_err(|e| e.context(&format!("image {image}")))?;
    let diff_ids = diff_ids(detail.config.as_bytes())
        .map_err(|e| e.context(&format!("image {image}: config")))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Corrupt(format!(
            "image {image}: its manifest has {} layers but its config {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = unpack::chain_ids(&diff_ids);
    let snaps = &inner.snaps(ns);
    let _one_at_a_time = snaps.unpack_lock();
    let mut report = UnpackReport {
        image: image.clone(),
        manifest: crate::content::digest_of(detail.manifest.as_bytes()),
        layers: Vec::new(),
        chain_id: chains.last().cloned().unwrap_or_default(),
        bytes: 0,
    };
    let mut parent: Option<&str> = None;
    for ((layer, diff_id), chain) in manifest.layers.iter().zip(&diff_ids).zip(&chains) {
        let digest = &layer.descriptor.digest;
        let bytes = match snaps.stat(chain) {
            Ok(info) if info.kind == Kind::Committed => None,
            Ok(info) => {
                return Err(Error::WrongState(format!(
                    "snapshot {chain} (layer {digest} of image {image}) is {}, not committed",
                    info.kind
                )))
            }
            Err(Error::NotFound(_)) => Some(
                unpack_layer(inner, snaps, layer, diff_id, chain, parent)
                    .map_err(|e| e.context(&format!("unpack {image}")))?,
            ),
            Err(e) => return Err(e),
        };
        report.bytes += bytes.unwrap_or(0);
        report.layers.push(UnpackedLayer {
            digest: digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain.clone(),
            unpacked: bytes.is_some(),
            bytes: bytes.unwrap_or(0),
        });
        parent = Some(chain);
    }
    Ok(report)
}

/// The config's `rootfs.diff_ids`.
pub(super) fn diff_ids(config: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(|e| Error::Corrupt(format!("no rootfs.diff_ids: {e}")))?;
    for d in &c.rootfs.diff_ids {
        crate::content::digest_hex(d).map_err(|e| Error::Corrupt(e.to_string()))?;
    }
    Ok(c.rootfs.diff_ids)
}

/// Applies one layer into `extract-<chain>` and commits it as `chain`; its uncompressed
/// bytes. On failure nothing of it is left.
fn unpack_layer(
    inner: &Inner,
    snaps: &Snaps,
    layer: &ManifestLayer,
    diff_id: &str,
    chain: &str,
    parent: Option<&str>,
) -> Result<u64> {
    let desc = &layer.descriptor;
    if layer.foreign {
        return Err(Error::InvalidArgument(format!(
            "layer {} is foreign ({}): it is never fetched, so it cannot be unpacked",
            desc.digest, desc.media_type
        )));
    }
    let blob = inner.content.open_blob(&desc.digest).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!(
            "layer {} is not in the content store (pull the image again)",
            desc.digest
        )),
        other => other,
    })?;
    let key = format!("extract-{chain}");
    if snaps.stat(&key).is_ok() {
        tracing::info!("removing snapshot {key}, left by an unpack that did not finish");
        snaps.remove(&key)?;
    }
    snaps.prepare(&key, parent)?;
    let applied = (|| {
        let fs_dir = snaps.fs_dir(&key)?;
        let lowers = snaps.parent_dirs(&key)?;
        let applied = unpack::apply(
            blob,
            &fs_dir,
            &lowers,
            &unpack::Layer {
                digest: &desc.digest,
                media_type: &desc.media_type,
                diff_id: Some(diff_id),
            },
        )?;
        sync_fs(&fs_dir)?;
        snaps.commit(chain, &key)?;
        Ok(applied)
    })();
    match applied {
        Ok(a) => {
            tracing::info!(
                layer = %desc.digest,
                chain_id = %chain,
                bytes = a.bytes,
                entries = a.entries,
                "layer unpacked"
            );
            Ok(a.bytes)
        }
        Err(e) => {
            // Emptied first: on a full disk, removing the record needs room for the
            // metadata file.
            if let Ok(fs_dir) = snaps.fs_dir(&key) {
                let _ = std::fs::remove_dir_all(&fs_dir);
            }
            if let Err(e2) = snaps.remove(&key) {
                tracing::warn!("cannot remove snapshot {key} after a failed unpack: {e2}");
            }
            Err(e)
        }
    }
}

/// Flushes the filesystem holding `dir` (before a commit: a committed layer is never
/// half on disk after a crash).
fn sync_fs(dir: &std::path::Path) -> Result<()> {
    let f =
        std::fs::File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?;
    nix::unistd::syncfs(f.as_raw_fd())
        .map_err(|e| Error::io(format!("syncfs {}", dir.display()), e.into()))
}
