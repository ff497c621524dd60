//! Checkpoints of containers run from images, on the image side: which image a container's
//! writable snapshot is on, a checkpoint pushed to and pulled from a registry (with its
//! base image), and the bundle a restore runs on (the base image unpacked, a writable
//! snapshot on it with the checkpoint's writable layer applied, mounted as the rootfs).
//!
//! Pushed, a checkpoint is an OCI index of two manifests: the checkpoint's (annotated
//! [`CHECKPOINT_ANNOTATION`]; see [`crate::checkpoint`]) and the base image's (annotated
//! [`BASE_IMAGE_ANNOTATION`] with its name, and with its platform), so that the base
//! image's blobs travel with it. Pull fetches both with the image pull's machinery under a
//! lease, stores the checkpoint in the checkpoint store and records the base image.

use super::{Images, Inner, ProgressSender};
use crate::checkpoint::{
    rw_layer_path, BaseImage, CheckpointInfo, CheckpointPullRequest, CheckpointPushRequest,
    CheckpointStore, BASE_IMAGE_ANNOTATION, CHECKPOINT_ANNOTATION,
};
use crate::error::{Error, Result};
use crate::oci_layout::Source;
use crate::registry::Remote;
use crate::snapshots::diff::Writable;
use crate::snapshots::{unpack, Flavor};
use crate::types::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::block_in_place;

/// How long a push's or a pull's lease holds its blobs if it does not finish.
const TRANSFER_LEASE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Images {
    /// The writable layer and the base image of container `ns/id`, if it runs from an
    /// image (its bundle made by [`Images::container_create`]).
    pub async fn checkpoint_base(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<(Writable, BaseImage)>> {
        let (ns, id) = (super::ns_or_default(namespace)?, id.to_string());
        self.blocking(move |inner| base_of(inner, &ns, &id)).await
    }

    /// Pushes a checkpoint, with its base image, to a registry; answers the index pushed.
    pub async fn checkpoint_push(
        &self,
        store: CheckpointStore,
        req: CheckpointPushRequest,
        progress: Option<ProgressSender>,
    ) -> Result<Descriptor> {
        super::ns_or_default(&req.namespace)?;
        self.run(move |inner| push(inner, store, req, progress))
            .await
    }

    /// Pulls a checkpoint pushed by [`Images::checkpoint_push`] into the checkpoint store,
    /// and its base image into the image store.
    pub async fn checkpoint_pull(
        &self,
        store: CheckpointStore,
        req: CheckpointPullRequest,
        progress: Option<ProgressSender>,
    ) -> Result<CheckpointInfo> {
        super::ns_or_default(&req.namespace)?;
        if let Some(id) = &req.as_id {
            validate_id("container id", id)?;
        }
        if let Some(name) = &req.as_name {
            validate_id("checkpoint name", name)?;
        }
        self.run(move |inner| pull(inner, store, req, progress))
            .await
    }

    /// Makes the bundle container `ns/id` is restored on from the checkpoint in `dir`: its
    /// base image unpacked, a writable snapshot on it with the checkpoint's writable layer
    /// applied, mounted as `rootfs`, and the checkpoint's spec. Released like any image
    /// bundle without a record ([`Images::task_unmount`]); on failure nothing is left.
    pub async fn prepare_checkpoint_bundle(
        &self,
        namespace: &str,
        id: &str,
        dir: PathBuf,
        info: CheckpointInfo,
    ) -> Result<PathBuf> {
        let ns = super::ns_or_default(namespace)?;
        validate_id("container id", id)?;
        let id = id.to_string();
        self.blocking(move |inner| prepare(inner, &ns, &id, &dir, &info))
            .await
    }
}

fn base_of(inner: &Inner, ns: &str, id: &str) -> Result<Option<(Writable, BaseImage)>> {
    let key = super::rootfs::snapshot_key(ns, id);
    let snap = match inner.snapshots.stat(&key) {
        Ok(s) => s,
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if snap.idmap.is_some() {
        // Its restore would need the same idmapped snapshot, which restore does not make.
        return Err(Error::InvalidArgument(format!(
            "container {ns}/{id} has a user namespace (its rootfs is an idmapped snapshot): \
             checkpoints of such containers are not supported yet"
        )));
    }
    let writable = inner.snapshots.writable(&key)?;
    let parent = snap.parent.unwrap_or_default();
    let names: Vec<String> = inner.with_meta(|m| {
        m.db.images
            .get(ns)
            .map(|i| i.keys().cloned().collect())
            .unwrap_or_default()
    });
    for name in names {
        let Ok(detail) = inner.inspect(ns, &name, None) else {
            continue;
        };
        let Ok(diff_ids) = super::unpack::diff_ids(detail.config.as_bytes()) else {
            continue;
        };
        if unpack::chain_ids(&diff_ids)
            .last()
            .cloned()
            .unwrap_or_default()
            == parent
        {
            let manifest = Descriptor::of(
                &crate::registry::media_type_of(detail.manifest.as_bytes())?,
                detail.manifest.as_bytes(),
            );
            let base = BaseImage {
                name,
                manifest,
                platform: detail.index.as_ref().and(detail.platform),
            };
            return Ok(Some((writable, base)));
        }
    }
    Err(Error::NotFound(format!(
        "the image container {ns}/{id} runs from (its layers' chain id {parent}) is no \
         longer in namespace {ns}: a checkpoint needs its base image"
    )))
}

/// Writes a blob from `source` into the content store (unless it is there).
fn store_blob(inner: &Inner, desc: &Descriptor, source: &Source) -> Result<()> {
    if inner.content.contains(&desc.digest) {
        return Ok(());
    }
    match source {
        Source::Bytes(bytes) => inner.content.write_blob(desc, bytes),
        Source::File(path) => {
            let what = |e| Error::io(format!("read {}", path.display()), e);
            let mut file = std::fs::File::open(path).map_err(what)?;
            let mut ingest = inner.content.ingest(desc)?;
            ingest.restart()?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(what)?;
                if n == 0 {
                    break;
                }
                ingest.write(&buf[..n])?;
            }
            ingest.commit().map(drop)
        }
    }
}

async fn push(
    inner: Arc<Inner>,
    store: CheckpointStore,
    req: CheckpointPushRequest,
    progress: Option<ProgressSender>,
) -> Result<Descriptor> {
    let ns = namespace_or_default(&req.namespace).to_string();
    let remote = Remote::new(&req.reference, &req.remote)?;
    let dir = store.dir(&ns, &req.id, &req.name)?;
    store.get(&ns, &req.id, &req.name)?;
    let staged = dir.join(format!(".push-images-{}.tar", now_ns()));
    let lease = format!("checkpoint-push-{}", now_ns());
    let labels = BTreeMap::from([(
        "corral.checkpoint.push".to_string(),
        format!("{ns}/{}:{}", req.id, req.name),
    )]);
    block_in_place(|| inner.create_lease(&ns, &lease, labels, Some(TRANSFER_LEASE)))?;
    let pushed = async {
        let index = block_in_place(|| {
            let m = store.manifest(&ns, &req.id, &req.name, &staged)?;
            for (desc, source) in &m.blobs {
                inner.lease_hold(&ns, &lease, &desc.digest)?;
                store_blob(&inner, desc, source)?;
            }
            inner.lease_hold(&ns, &lease, &m.desc.digest)?;
            inner.content.write_blob(&m.desc, &m.manifest)?;
            let mut entries = vec![serde_json::json!({
                "mediaType": m.desc.media_type,
                "digest": m.desc.digest,
                "size": m.desc.size,
                "annotations": {
                    CHECKPOINT_ANNOTATION: format!("{ns}/{}:{}", req.id, req.name),
                },
            })];
            if let Some(base) = &m.info.base_image {
                if !inner.content.contains(&base.manifest.digest) {
                    return Err(Error::NotFound(format!(
                        "the checkpoint's base image {} (manifest {}) is not in the content \
                         store",
                        base.name, base.manifest.digest
                    )));
                }
                let mut entry = base.manifest.json();
                entry["annotations"] = serde_json::json!({ BASE_IMAGE_ANNOTATION: base.name });
                if let Some(p) = &base.platform {
                    entry["platform"] =
                        serde_json::to_value(p).map_err(|e| Error::Internal(e.to_string()))?;
                }
                entries.push(entry);
            }
            let bytes = serde_json::to_vec_pretty(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_INDEX,
                "manifests": entries,
            }))
            .map_err(|e| Error::Internal(e.to_string()))?;
            let desc = Descriptor::of(MEDIA_OCI_INDEX, &bytes);
            inner.lease_hold(&ns, &lease, &desc.digest)?;
            inner.content.write_blob(&desc, &bytes)?;
            Ok(desc)
        })?;
        let _ = std::fs::remove_file(&staged);
        super::push::push_tree(&inner, &remote, &index, true, &progress).await?;
        Ok(index)
    }
    .await
    .map_err(|e: Error| e.context(&format!("push checkpoint to {}", remote.name())));
    let _ = std::fs::remove_file(&staged);
    // Its blobs are the checkpoint's and the base image's: the copies go at the next GC.
    block_in_place(|| inner.lease_drop(&ns, &lease));
    pushed
}

/// The checkpoint's and the base image's entries of a pulled index, or why it is not a
/// corral checkpoint.
fn entries_of(
    name: &str,
    top: &Descriptor,
    bytes: &[u8],
) -> Result<(Descriptor, Option<IndexEntryOf>)> {
    let not =
        |why: String| Error::InvalidArgument(format!("{name} is not a corral checkpoint: {why}"));
    if !is_index(&top.media_type) {
        return Err(not(format!(
            "its media type is {} (an image: `image pull` pulls it)",
            top.media_type
        )));
    }
    let entries = crate::registry::parse_index(bytes)?;
    let ckpt = entries
        .iter()
        .find(|e| e.annotations.contains_key(CHECKPOINT_ANNOTATION))
        .ok_or_else(|| {
            not(format!(
                "its media type is {}, and none of its manifests is annotated {}",
                top.media_type, CHECKPOINT_ANNOTATION
            ))
        })?;
    let base = entries.iter().find_map(|e| {
        let name = e.annotations.get(BASE_IMAGE_ANNOTATION)?;
        Some((e.descriptor.clone(), name.clone(), e.platform.clone()))
    });
    Ok((ckpt.descriptor.clone(), base))
}

/// An index entry: its manifest, the name annotated, its platform.
type IndexEntryOf = (Descriptor, String, Option<Platform>);

async fn pull(
    inner: Arc<Inner>,
    store: CheckpointStore,
    req: CheckpointPullRequest,
    progress: Option<ProgressSender>,
) -> Result<CheckpointInfo> {
    let ns = namespace_or_default(&req.namespace).to_string();
    let remote = Remote::new(&req.reference, &req.remote)?;
    let name = remote.name();
    let (top, top_bytes) = super::pull::resolve(&remote, &progress)
        .await
        .map_err(|e| e.context(&format!("pull checkpoint {name}")))?;
    let (ckpt, base) = entries_of(&name, &top, &top_bytes)?;
    let lease = format!("checkpoint-pull-{}", now_ns());
    let labels = BTreeMap::from([(super::LEASE_LABEL_PULL.to_string(), name.clone())]);
    block_in_place(|| inner.create_lease(&ns, &lease, labels, Some(TRANSFER_LEASE)))?;
    let pulled = async {
        let all = PullRequest {
            namespace: ns.clone(),
            reference: req.reference.clone(),
            all_platforms: true,
            ..PullRequest::default()
        };
        super::pull::fetch_all(
            &inner,
            &remote,
            &ns,
            &lease,
            &top,
            &top_bytes,
            &Platform::host(),
            &all,
            &progress,
        )
        .await?;
        block_in_place(|| install(&inner, &store, &ns, &req, &ckpt, base))
    }
    .await
    .map_err(|e: Error| e.context(&format!("pull checkpoint {name}")));
    // What the checkpoint needs is in the checkpoint store now, the base image's blobs are
    // held by its image record: the lease has done its work (or the pull failed).
    block_in_place(|| inner.lease_drop(&ns, &lease));
    pulled
}

/// Stores the pulled checkpoint and records its base image (if it is not there already).
fn install(
    inner: &Inner,
    store: &CheckpointStore,
    ns: &str,
    req: &CheckpointPullRequest,
    ckpt: &Descriptor,
    base: Option<IndexEntryOf>,
) -> Result<CheckpointInfo> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&inner.content.read_document(&ckpt.digest)?)
            .map_err(|e| Error::Corrupt(format!("checkpoint manifest {}: {e}", ckpt.digest)))?;
    if let Some((desc, name, platform)) = &base {
        match inner.inspect(ns, name, platform.clone()) {
            Ok(d) if crate::content::digest_of(d.manifest.as_bytes()) == desc.digest => {}
            Ok(d) => {
                return Err(Error::AlreadyExists(format!(
                    "image {name} in namespace {ns} is another image (manifest {}) than the \
                     checkpoint's base image (manifest {}): remove or rename it first",
                    crate::content::digest_of(d.manifest.as_bytes()),
                    desc.digest
                )))
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let blob = |d: &str| {
        inner
            .content
            .blob_path(d)
            .ok()
            .filter(|p| inner.content.contains(d) && p.is_file())
    };
    let target = (Some(ns.to_string()), req.as_id.clone(), req.as_name.clone());
    let info = store.install(&manifest, &blob, target)?;
    if let Some((desc, name, _)) = base {
        if inner.find_image(ns, &name).is_err() {
            if let Err(e) = inner.put_image(ns, &name, desc, BTreeMap::new()) {
                let _ = store.remove(&info.namespace, &info.container_id, &info.name);
                return Err(e);
            }
        }
    }
    Ok(info)
}

fn prepare(
    inner: &Inner,
    ns: &str,
    id: &str,
    dir: &Path,
    info: &CheckpointInfo,
) -> Result<PathBuf> {
    let base = info.base_image.as_ref().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "checkpoint {:?} has no base image: restore it on a bundle",
            info.name
        ))
    })?;
    let bundle = super::rootfs::bundle_dir(inner, ns, id);
    if bundle.exists() {
        return Err(Error::AlreadyExists(format!(
            "a bundle for container {ns}/{id} already exists at {} (delete the container \
             first)",
            bundle.display()
        )));
    }
    let report = super::unpack::unpack(inner, ns, &base.name, base.platform.clone())
        .map_err(|e| e.context(&format!("the checkpoint's base image {}", base.name)))?;
    if report.manifest != base.manifest.digest {
        return Err(Error::InvalidArgument(format!(
            "image {} in namespace {ns} is now manifest {}, not the checkpoint's base image \
             (manifest {})",
            base.name, report.manifest, base.manifest.digest
        )));
    }
    let key = super::rootfs::snapshot_key(ns, id);
    let parent = (!report.chain_id.is_empty()).then_some(report.chain_id.as_str());
    let flavor = Flavor::of_snapshotter(inner.default_snapshotter);
    let mounts = inner.snaps(ns).prepare_as(flavor, &key, parent)?;
    let rootfs = bundle.join("rootfs");
    let made = (|| {
        if let Some(rw) = &info.rw_layer {
            let path = rw_layer_path(dir);
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            let layer = unpack::Layer {
                digest: &rw.digest,
                media_type: &rw.media_type,
                diff_id: Some(&rw.digest),
            };
            inner
                .snapshots
                .apply_layer(&key, file, &layer)
                .map_err(|e| e.context("the checkpoint's writable layer"))?;
        }
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
        crate::snapshots::mount(&mounts, &rootfs)?;
        let spec_path = crate::layout::checkpoint_spec(dir);
        let mut spec: serde_json::Value = std::fs::read(&spec_path)
            .map_err(|e| Error::io(format!("read {}", spec_path.display()), e))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", spec_path.display())))
            })?;
        spec["root"]["path"] = serde_json::Value::String("rootfs".into());
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        let config = bundle.join("config.json");
        std::fs::write(&config, json)
            .map_err(|e| Error::io(format!("write {}", config.display()), e))
    })();
    if let Err(e) = made {
        if let Err(cleanup) = super::rootfs::release(inner, ns, id) {
            tracing::warn!("cleaning up the restore bundle of {ns}/{id}: {cleanup}");
        }
        return Err(e);
    }
    Ok(bundle)
}
