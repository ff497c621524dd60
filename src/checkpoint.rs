//! Checkpoints: CRIU images of a container's processes, kept under corrald's runtime root so
//! they outlive their container, listed, removed, and carried to another machine as one
//! OCI image-layout tar.
//!
//! ```text
//! <root>/_checkpoints/<namespace>/<id>/<name>/
//!     checkpoint.json   what was checkpointed, when, with which options, from which bundle
//!     config.json       the container's OCI spec at checkpoint time
//!     images/           CRIU's image files
//!     work/             CRIU's work files and dump.log
//!     rootfs-diff.tar   of a container run from an image: its writable layer, an OCI layer
//! ```
//!
//! As an OCI image (export to a tar, push to a registry) a checkpoint is a manifest whose
//! config is checkpoint.json and whose layers are the CRIU images (a tar), the writable
//! layer (if any) and the OCI spec; pushed, it is an index of that manifest and the base
//! image's manifest, so that the base image travels with it.

use crate::error::{Error, Result};
use crate::layout;
use crate::oci_layout::{self, Descriptor, Source};
use crate::types::validate_id;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The directory under the runtime root that holds checkpoints (not a valid namespace).
pub use crate::layout::CHECKPOINTS_DIR;
/// Where CRIU is looked for first: 4.2.1 built by scripts/install-deps.sh.
pub const DEFAULT_CRIU: &str = "/usr/local/sbin/criu";
/// Media type of the exported checkpoint's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.corral.checkpoint.config.v1+json";
/// Media type of the exported CRIU images layer.
pub const IMAGES_MEDIA_TYPE: &str = "application/vnd.corral.checkpoint.images.v1.tar";
/// Media type of the exported OCI runtime spec.
pub const SPEC_MEDIA_TYPE: &str = "application/vnd.oci.runtime.spec.v1+json";
/// Media type of the container's writable layer (an uncompressed OCI layer).
pub const RW_LAYER_MEDIA_TYPE: &str = crate::snapshots::diff::LAYER_MEDIA_TYPE;
/// The file of the writable layer in a checkpoint's directory.
pub const RW_LAYER_FILE: &str = "rootfs-diff.tar";
/// The annotation of the checkpoint's manifest in an index (its value: `ns/id:name`).
pub const CHECKPOINT_ANNOTATION: &str = "dev.corral.checkpoint";
/// The annotation of the base image's manifest in a checkpoint's index (its image name).
pub const BASE_IMAGE_ANNOTATION: &str = "dev.corral.checkpoint.base-image";
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The options of a checkpoint (containerd v0.2's Checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointOptions {
    /// Checkpoint established TCP connections.
    pub tcp: bool,
    /// Allow external unix sockets.
    pub unix_sockets: bool,
    /// Allow shell jobs (a controlling terminal).
    pub shell: bool,
    /// Stop the container after the dump (otherwise it keeps running).
    pub exit: bool,
    /// Namespaces to create empty instead of restoring ("network", ...).
    pub empty_ns: Vec<String>,
}

impl CheckpointOptions {
    /// The runtime flags shared by checkpoint and restore.
    pub fn runtime_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.tcp {
            out.push("--tcp-established".to_string());
        }
        if self.unix_sockets {
            out.push("--ext-unix-sk".to_string());
        }
        if self.shell {
            out.push("--shell-job".to_string());
        }
        for ns in &self.empty_ns {
            out.push(format!("--empty-ns={ns}"));
        }
        out
    }
}

/// One checkpoint, as stored in checkpoint.json and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Its name.
    pub name: String,
    /// The namespace of the container it came from.
    pub namespace: String,
    /// The container it came from.
    pub container_id: String,
    /// When it was taken, nanoseconds since the epoch.
    pub created_ns: u64,
    /// Its options.
    pub options: CheckpointOptions,
    /// The bundle the container ran from (restore uses it unless given another).
    pub bundle: PathBuf,
    /// Bytes on disk (filled in when listed).
    #[serde(default)]
    pub size: u64,
    /// The container's labels, given to the restored container.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The container's restart policy, given to the restored container.
    #[serde(default)]
    pub restart: crate::types::RestartPolicy,
    /// The image the container ran from (its rootfs a writable snapshot of it).
    #[serde(default)]
    pub base_image: Option<BaseImage>,
    /// The container's writable layer (`rootfs-diff.tar`), when it ran from an image.
    #[serde(default)]
    pub rw_layer: Option<crate::types::Descriptor>,
    /// The container's stdio options (terminal, open stdin, log rotation; paths are not
    /// kept): a restore gives the process the same kind of stdio, a terminal again for
    /// one that had one (CRIU restores the process on a new pty).
    #[serde(default)]
    pub stdio: crate::types::Stdio,
}

/// The image a checkpointed container ran from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// Its name in the image store.
    pub name: String,
    /// The manifest its rootfs was unpacked from.
    pub manifest: crate::types::Descriptor,
    /// That manifest's platform, when the image is an index.
    #[serde(default)]
    pub platform: Option<crate::types::Platform>,
}

/// Push a checkpoint to a registry (`checkpoint push`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckpointPushRequest {
    /// The checkpointed container's namespace.
    pub namespace: String,
    /// The checkpointed container.
    pub id: String,
    /// The checkpoint.
    pub name: String,
    /// `[registry/]repository[:tag]` to push it under.
    pub reference: String,
    /// How to reach the registry.
    pub remote: crate::types::RemoteOptions,
}

/// Pull a checkpoint from a registry (`checkpoint pull`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckpointPullRequest {
    /// The namespace the checkpoint (and its base image) is stored in (empty: `default`).
    pub namespace: String,
    /// `[registry/]repository[:tag|@digest]`.
    pub reference: String,
    /// Store it under this container id instead of the recorded one.
    pub as_id: Option<String>,
    /// And under this name instead of the recorded one.
    pub as_name: Option<String>,
    /// How to reach the registry.
    pub remote: crate::types::RemoteOptions,
}

/// A checkpoint as an OCI manifest: the manifest's bytes and descriptor, and every blob it
/// names (config, CRIU images, writable layer, spec) with where its bytes are.
pub struct CheckpointManifest {
    /// The checkpoint.
    pub info: CheckpointInfo,
    /// The manifest document.
    pub manifest: Vec<u8>,
    /// Its descriptor.
    pub desc: Descriptor,
    /// The blobs it names.
    pub blobs: Vec<(Descriptor, Source)>,
}

/// The writable layer's file in a checkpoint's directory.
pub fn rw_layer_path(dir: &Path) -> PathBuf {
    dir.join(RW_LAYER_FILE)
}

/// Where checkpoints live: `<runtime root>/_checkpoints`.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    root: PathBuf,
}

fn dir_size(path: &Path) -> u64 {
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl CheckpointStore {
    /// The store under a runtime root.
    pub fn new(runtime_root: &Path) -> Self {
        CheckpointStore {
            root: runtime_root.join(CHECKPOINTS_DIR),
        }
    }

    /// A checkpoint's directory (names are checked).
    pub fn dir(&self, namespace: &str, id: &str, name: &str) -> Result<PathBuf> {
        validate_id("namespace", namespace)?;
        validate_id("container id", id)?;
        validate_id("checkpoint name", name)?;
        Ok(self.root.join(namespace).join(id).join(name))
    }

    /// Reads one checkpoint's record, with its size.
    pub fn get(&self, namespace: &str, id: &str, name: &str) -> Result<CheckpointInfo> {
        let dir = self.dir(namespace, id, name)?;
        let text = fs::read(layout::checkpoint_json(&dir)).map_err(|_| {
            Error::NotFound(format!("checkpoint {name:?} of container {namespace}/{id}"))
        })?;
        let mut info: CheckpointInfo = serde_json::from_slice(&text).map_err(|e| {
            Error::Internal(format!(
                "{}/checkpoint.json is unreadable: {e}",
                dir.display()
            ))
        })?;
        info.size = dir_size(&dir);
        Ok(info)
    }

    /// The checkpoints of a container (which may have been deleted), oldest first.
    pub fn list(&self, namespace: &str, id: &str) -> Result<Vec<CheckpointInfo>> {
        validate_id("namespace", namespace)?;
        validate_id("container id", id)?;
        let mut out: Vec<CheckpointInfo> = fs::read_dir(self.root.join(namespace).join(id))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| self.get(namespace, id, &name).ok())
            .collect();
        out.sort_by_key(|c| c.created_ns);
        Ok(out)
    }

    /// Removes one checkpoint.
    pub fn remove(&self, namespace: &str, id: &str, name: &str) -> Result<()> {
        self.get(namespace, id, name)?;
        let dir = self.dir(namespace, id, name)?;
        fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove {}", dir.display()), e))?;
        // Leave no empty per-container directory behind.
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }

    /// A checkpoint as an OCI manifest (see [`CheckpointManifest`]); its CRIU images are
    /// packed into the tar `staged` (hashed as they are written: memory does not grow with
    /// the checkpoint's size), which the caller removes when done.
    pub fn manifest(
        &self,
        namespace: &str,
        id: &str,
        name: &str,
        staged: &Path,
    ) -> Result<CheckpointManifest> {
        let info = self.get(namespace, id, name)?;
        let dir = self.dir(namespace, id, name)?;
        let config = serde_json::to_vec_pretty(&CheckpointInfo {
            size: 0,
            ..info.clone()
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let spec = fs::read(layout::checkpoint_spec(&dir))
            .map_err(|e| Error::io("read config.json", e))?;
        let images = pack_images(&layout::checkpoint_images(&dir), staged)
            .map_err(|e| Error::io(format!("pack the CRIU images into {}", staged.display()), e))?;
        let config_desc = Descriptor::of(CONFIG_MEDIA_TYPE, &config);
        let spec_desc = Descriptor::of(SPEC_MEDIA_TYPE, &spec);
        let mut layers = vec![images.json()];
        let mut blobs = vec![
            (config_desc.clone(), Source::Bytes(config)),
            (images, Source::File(staged.to_path_buf())),
        ];
        if let Some(rw) = &info.rw_layer {
            layers.push(rw.json());
            blobs.push((rw.clone(), Source::File(rw_layer_path(&dir))));
        }
        layers.push(spec_desc.json());
        blobs.push((spec_desc, Source::Bytes(spec)));
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config_desc.json(),
            "layers": layers,
            "annotations": {"org.opencontainers.image.created": crate::types::format_time(info.created_ns)},
        }))
        .map_err(|e| Error::Internal(e.to_string()))?;
        let desc = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest);
        Ok(CheckpointManifest {
            info,
            manifest,
            desc,
            blobs,
        })
    }

    /// Writes a checkpoint as an OCI image-layout tar: the manifest of
    /// [`CheckpointStore::manifest`] and its blobs, streamed.
    pub fn export(&self, namespace: &str, id: &str, name: &str, file: &Path) -> Result<u64> {
        let mut staged = file.as_os_str().to_owned();
        staged.push(format!(".images-{}.tar", std::process::id()));
        let staged = PathBuf::from(staged);
        let written = (|| {
            let m = self.manifest(namespace, id, name, &staged)?;
            let mut index_entry = m.desc.json();
            index_entry["annotations"] = serde_json::json!({
                "org.opencontainers.image.ref.name": format!("{namespace}/{id}:{name}"),
                CHECKPOINT_ANNOTATION: format!("{namespace}/{id}:{name}"),
            });
            let index = serde_json::json!({"schemaVersion": 2, "manifests": [index_entry]});
            let mut blobs = vec![(m.desc, Source::Bytes(m.manifest))];
            blobs.extend(m.blobs);
            oci_layout::write_tar(file, &index, blobs, m.info.created_ns / 1_000_000_000)
                .map_err(|e| Error::io(format!("write {}", file.display()), e))
        })();
        let _ = fs::remove_file(&staged);
        written
    }

    /// Reads a tar written by [`CheckpointStore::export`] and stores the checkpoint under the
    /// namespace, container and name it records. Every blob streams through a hasher into a
    /// staging dir and is checked against its digest; the images are unpacked from there.
    pub fn import(&self, file: &Path) -> Result<CheckpointInfo> {
        let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", file.display()));
        if let Err(e) = fs::File::open(file) {
            return Err(bad(e.to_string()));
        }
        let staging = self.root.join(format!(
            ".import-{}-{}",
            std::process::id(),
            crate::types::now_ns()
        ));
        let staged = oci_layout::read_tar(file, &staging).map_err(bad)?;
        let digest = staged.index["manifests"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let manifest = staged
            .json(&digest)
            .map_err(|e| bad(format!("manifest: {e}")))?;
        let blob = |d: &str| staged.blob(d);
        self.install(&manifest, &blob, (None, None, None))
            .map_err(|e| e.context(&file.display().to_string()))
    }

    /// Stores the checkpoint `manifest` names (its blobs found by `blob`), under the
    /// namespace, container and name it records, or those `target` gives (namespace, id,
    /// name). Nothing is left of it if it fails.
    pub fn install(
        &self,
        manifest: &serde_json::Value,
        blob: &dyn Fn(&str) -> Option<PathBuf>,
        target: (Option<String>, Option<String>, Option<String>),
    ) -> Result<CheckpointInfo> {
        let bad = |why: String| Error::InvalidArgument(why);
        let digest_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
        if config_type != CONFIG_MEDIA_TYPE {
            return Err(bad(format!(
                "not a corral checkpoint: its config's media type is {config_type:?}, not \
                 {CONFIG_MEDIA_TYPE}"
            )));
        }
        let config_digest = digest_of(&manifest["config"]["digest"]);
        let config = blob(&config_digest)
            .ok_or_else(|| bad(format!("missing blob {config_digest}")))
            .and_then(|p| {
                let bytes =
                    fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                serde_json::from_slice::<CheckpointInfo>(&bytes)
                    .map_err(|e| bad(format!("checkpoint config: {e}")))
            })?;
        let mut info = config;
        let (ns, id, name) = target;
        info.namespace = ns.unwrap_or(info.namespace);
        info.container_id = id.unwrap_or(info.container_id);
        info.name = name.unwrap_or(info.name);
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let layer = |media: &str| -> Result<Option<(PathBuf, String)>> {
            let Some(l) = layers.iter().find(|l| l["mediaType"] == media) else {
                return Ok(None);
            };
            let digest = digest_of(&l["digest"]);
            let path = blob(&digest).ok_or_else(|| bad(format!("missing blob {digest}")))?;
            Ok(Some((path, digest)))
        };
        let need = |media: &str| layer(media)?.ok_or_else(|| bad(format!("no {media} layer")));
        let (images, spec) = (need(IMAGES_MEDIA_TYPE)?.0, need(SPEC_MEDIA_TYPE)?.0);
        let rw = layer(RW_LAYER_MEDIA_TYPE)?;
        match (&info.rw_layer, &rw) {
            (Some(want), Some((_, got))) if want.digest != *got => {
                return Err(bad(format!(
                    "the writable layer is {got}, but the checkpoint records {}",
                    want.digest
                )))
            }
            (Some(want), None) => {
                return Err(bad(format!(
                    "the writable layer {} the checkpoint records is not there",
                    want.digest
                )))
            }
            _ => {}
        }
        let dir = self.dir(&info.namespace, &info.container_id, &info.name)?;
        if dir.exists() {
            return Err(Error::AlreadyExists(format!(
                "checkpoint {:?} of container {}/{}",
                info.name, info.namespace, info.container_id
            )));
        }
        let unpack = || -> std::io::Result<()> {
            fs::create_dir_all(layout::checkpoint_images(&dir))?;
            tar::Archive::new(fs::File::open(&images)?).unpack(layout::checkpoint_images(&dir))?;
            fs::copy(&spec, layout::checkpoint_spec(&dir))?;
            if let Some((path, _)) = &rw {
                fs::copy(path, rw_layer_path(&dir))?;
            }
            fs::write(
                layout::checkpoint_json(&dir),
                serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?,
            )
        };
        if let Err(e) = unpack() {
            let _ = fs::remove_dir_all(&dir);
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
            return Err(Error::io(format!("unpack into {}", dir.display()), e));
        }
        self.get(&info.namespace, &info.container_id, &info.name)
    }
}

/// Packs a checkpoint's CRIU images into the tar `out`, hashing it as it is written.
fn pack_images(images: &Path, out: &Path) -> std::io::Result<Descriptor> {
    let sink = oci_layout::Hashing::new(std::io::BufWriter::new(fs::File::create(out)?));
    let mut tarball = tar::Builder::new(sink);
    tarball.follow_symlinks(false);
    tarball.append_dir_all(".", images)?;
    let (_, digest, size) = tarball.into_inner()?.finish()?;
    Ok(Descriptor {
        media_type: IMAGES_MEDIA_TYPE.to_string(),
        digest,
        size,
    })
}

/// CRIU's version as (major, minor, patch), or why it cannot be used.
pub fn criu_version(criu: &Path) -> Result<(u32, u32, u32)> {
    let out = std::process::Command::new(criu)
        .arg("--version")
        .output()
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "CRIU not found at {} ({e}): checkpoint and restore need CRIU 4.1 or later (scripts/install-deps.sh builds it); give corrald --criu PATH",
                criu.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{} --version printed no version", criu.display()))
        })?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Ok((
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ))
}

/// Checks that CRIU can checkpoint here: present, and 4.1 or later (older ones fail on
/// kernel 6.13+ with "vdso: Unexpected rt vDSO area bounds").
pub fn check_criu(criu: &Path) -> Result<()> {
    let v = criu_version(criu)?;
    if v < (4, 1, 0) {
        return Err(Error::InvalidArgument(format!(
            "CRIU at {} is {}.{}.{}, too old for this kernel: 4.1 or later is needed (scripts/install-deps.sh builds 4.2.1)",
            criu.display(),
            v.0,
            v.1,
            v.2
        )));
    }
    Ok(())
}

/// CRIU's own error lines from a log in `work` (dump.log, restore.log).
pub fn criu_errors(work: &Path) -> String {
    let mut out = Vec::new();
    for log in ["dump.log", "restore.log"] {
        if let Ok(text) = fs::read_to_string(work.join(log)) {
            out.extend(
                text.lines()
                    .filter(|l| l.contains("Error") || l.contains("error:"))
                    .filter(|l| !l.contains("RLIMIT_NOFILE") && !l.contains("kdat"))
                    .map(str::to_string),
            );
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_import_round_trip_checks_digests() {
        let base = std::env::temp_dir().join(format!("corral-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let store = CheckpointStore::new(&base.join("root"));
        let dir = store.dir("default", "c1", "one").unwrap();
        fs::create_dir_all(dir.join("images")).unwrap();
        fs::write(dir.join("images/pages-1.img"), vec![7u8; 10_000]).unwrap();
        fs::write(dir.join("config.json"), b"{\"ociVersion\":\"1.0.2\"}").unwrap();
        let rw = b"a writable layer, as a tar would be".to_vec();
        fs::write(dir.join(RW_LAYER_FILE), &rw).unwrap();
        let info = CheckpointInfo {
            name: "one".into(),
            namespace: "default".into(),
            container_id: "c1".into(),
            created_ns: 1,
            options: CheckpointOptions {
                exit: true,
                ..Default::default()
            },
            bundle: "/b".into(),
            size: 0,
            labels: [("app".to_string(), "web".to_string())].into(),
            restart: crate::types::RestartPolicy::Always,
            stdio: crate::types::Stdio {
                terminal: true,
                ..Default::default()
            },
            base_image: Some(BaseImage {
                name: "example.com/app:1".into(),
                manifest: Descriptor::of(MANIFEST_MEDIA_TYPE, b"{}"),
                platform: None,
            }),
            rw_layer: Some(Descriptor::of(RW_LAYER_MEDIA_TYPE, &rw)),
        };
        fs::write(
            dir.join("checkpoint.json"),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        assert_eq!(store.list("default", "c1").unwrap().len(), 1);
        let file = base.join("one.tar");
        store.export("default", "c1", "one", &file).unwrap();
        assert!(matches!(store.import(&file), Err(Error::AlreadyExists(_))));
        store.remove("default", "c1", "one").unwrap();
        assert!(store.list("default", "c1").unwrap().is_empty());
        let back = store.import(&file).unwrap();
        assert_eq!(back.options, info.options);
        assert_eq!((&back.labels, back.restart), (&info.labels, info.restart));
        assert_eq!(
            fs::read(dir.join("images/pages-1.img")).unwrap(),
            vec![7u8; 10_000]
        );
        assert_eq!(fs::read(dir.join(RW_LAYER_FILE)).unwrap(), rw);
        assert_eq!(
            (&back.base_image, &back.rw_layer),
            (&info.base_image, &info.rw_layer)
        );
        // A corrupted blob is refused.
        let mut bytes = fs::read(&file).unwrap();
        let at = bytes.windows(4).position(|w| w == [7, 7, 7, 7]).unwrap();
        bytes[at] = 8;
        fs::write(&file, bytes).unwrap();
        store.remove("default", "c1", "one").unwrap();
        assert!(matches!(
            store.import(&file),
            Err(Error::InvalidArgument(_))
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
