//! Images, content, leases and namespaces: what the image service stores and answers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed.
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest list.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip.
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, uncompressed (docker save).
pub const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign layer (never fetched).
pub const MEDIA_DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The annotation naming an image in an OCI image layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `media_type` is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

/// Whether `media_type` is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MEDIA_OCI_MANIFEST || media_type == MEDIA_DOCKER_MANIFEST
}

/// A platform: what an index entry runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `v8`, `v7`... or empty.
    #[serde(default)]
    pub variant: String,
}

impl Platform {
    /// This host's platform, in OCI's words (`linux/amd64`).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: if architecture == "arm64" {
                "v8".into()
            } else {
                String::new()
            },
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: String::new(),
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.into(),
                    architecture: arch.into(),
                    variant: variant.into(),
                })
            }
            _ => Err(format!(
                "bad platform {s:?}: expected os/architecture[/variant], e.g. linux/amd64"
            )),
        }
    }

    /// Whether an index entry's platform is this one (an empty variant here matches any
    /// variant there, except that arm64 prefers v8).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_empty()
                || other.variant.is_empty()
                || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A blob by content: media type, `sha256:<hex>` digest and size (OCI's descriptor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An image: a name in a namespace pointing at a manifest or index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The full reference, e.g. `127.0.0.1:5000/busybox:1.36` or `docker.io/library/alpine:3`.
    pub name: String,
    /// What it points at.
    pub target: Descriptor,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// Nanoseconds since the epoch.
    pub updated_ns: u64,
    /// The bytes of every blob it reaches that is in the content store (index, manifests,
    /// configs, layers), each counted once.
    pub size: u64,
}

/// A blob in the content store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// When it was committed, nanoseconds since the epoch.
    pub created_ns: u64,
}

/// A download not yet committed to the content store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestInfo {
    /// The ingest's key (`<digest>`).
    pub key: String,
    /// The digest it is to have.
    pub expected: String,
    /// Bytes written so far.
    pub offset: u64,
    /// Bytes expected.
    pub total: u64,
    /// Last written, nanoseconds since the epoch.
    pub updated_ns: u64,
}

/// A lease: while it lives, GC keeps what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Its id.
    pub id: String,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// When it stops holding anything, nanoseconds since the epoch; `None`: never.
    pub expires_ns: Option<u64>,
    /// The blobs (digests) it holds.
    pub content: Vec<String>,
    /// The ingests (keys) it holds.
    pub ingests: Vec<String>,
}

/// A namespace record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
}

/// Credentials for a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credentials {
    /// Whatever the daemon's docker `config.json` holds for the registry, else none.
    #[default]
    FromConfig,
    /// No credentials at all.
    Anonymous,
    /// A user and a password (or token), for basic auth or a bearer-token exchange.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
}

/// How to reach a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOptions {
    /// Plain HTTP instead of HTTPS (a loopback registry).
    pub plain_http: bool,
    /// Who to be.
    pub credentials: Credentials,
}

/// Pull an image from a registry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PullRequest {
    /// Namespace the image is recorded in (empty: `default`).
    pub namespace: String,
    /// `[registry/]repository[:tag|@digest]`; docker.io and `latest` by default.
    pub reference: String,
    /// Which platform to pick from an index; `None`: the host's.
    pub platform: Option<Platform>,
    /// Pull every platform of an index, not only the one picked.
    pub all_platforms: bool,
    /// Labels for the image record.
    pub labels: BTreeMap<String, String>,
    /// How to reach the registry.
    pub remote: RemoteOptions,
}

/// Push an image to a registry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PushRequest {
    /// Namespace of the image.
    pub namespace: String,
    /// The image's name in the store.
    pub image: String,
    /// Push under this reference instead of the image's name.
    pub reference: Option<String>,
    /// How to reach the registry.
    pub remote: RemoteOptions,
}

/// What a layer (or any blob) of a pull or push is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BlobState {
    /// Asking the registry what the reference is.
    Resolving,
    /// Another pull is downloading it; waiting for that one.
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Checking its digest and size.
    Verifying,
    /// Unpacking into a snapshot.
    Extracting,
    /// Was already there.
    Exists,
    /// Committed.
    Done,
    /// Failed (the pull's error says why).
    Failed,
    /// Bytes are leaving (a push).
    Uploading,
}

impl fmt::Display for BlobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobState::Resolving => "resolving",
            BlobState::Waiting => "waiting",
            BlobState::Downloading => "downloading",
            BlobState::Verifying => "verifying",
            BlobState::Extracting => "extracting",
            BlobState::Exists => "exists",
            BlobState::Done => "done",
            BlobState::Failed => "failed",
            BlobState::Uploading => "uploading",
        })
    }
}

/// One step of a pull's or a push's progress: a blob's state and bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The blob (or the reference, while resolving).
    pub digest: String,
    /// Its media type (empty while resolving).
    pub media_type: String,
    /// What it is doing.
    pub state: BlobState,
    /// Bytes so far.
    pub offset: u64,
    /// Bytes in all.
    pub total: u64,
}

/// An image with its documents as JSON text (`image inspect`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageDetail {
    /// The record.
    pub info: ImageInfo,
    /// The index, when the image is one.
    pub index: Option<String>,
    /// The manifest picked for the platform.
    pub manifest: String,
    /// Its config.
    pub config: String,
    /// The platform picked (from the index, or the config's).
    pub platform: Option<Platform>,
}

/// Read images from a tar on the daemon's host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImportRequest {
    /// Namespace the images are recorded in.
    pub namespace: String,
    /// An OCI image layout tar or a `docker save` tar (absolute path).
    pub file: PathBuf,
    /// For index entries whose `org.opencontainers.image.ref.name` is only a tag: the
    /// repository to put before it (`example.com/app` makes `example.com/app:TAG`).
    pub base_name: Option<String>,
    /// Labels for the image records.
    pub labels: BTreeMap<String, String>,
}

/// Write images to an OCI image layout tar on the daemon's host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Namespace of the images.
    pub namespace: String,
    /// Their names.
    pub names: Vec<String>,
    /// The tar to write (absolute path; replaced only when complete).
    pub file: PathBuf,
}

/// What a garbage collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Ingests removed.
    pub ingests: u64,
    /// Expired leases removed.
    pub leases: u64,
    /// Committed snapshots removed (layers no image unpacks to and nothing is on).
    #[serde(default)]
    pub snapshots: u64,
}

/// One layer of an [`UnpackReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackedLayer {
    /// The layer blob's digest.
    pub digest: String,
    /// The digest of its uncompressed tar (the config's `rootfs.diff_ids[i]`).
    pub diff_id: String,
    /// The chain id of the layers up to this one: the committed snapshot's name.
    pub chain_id: String,
    /// Whether it was unpacked now (else its snapshot was already there).
    pub unpacked: bool,
    /// Bytes of uncompressed tar applied (0 when not unpacked now).
    pub bytes: u64,
}

/// What unpacking an image into snapshots did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackReport {
    /// The image's full name.
    pub image: String,
    /// The digest of the manifest unpacked (the platform's, from an index).
    pub manifest: String,
    /// The layers, base first.
    pub layers: Vec<UnpackedLayer>,
    /// The top layer's chain id: the committed snapshot a container's root is prepared on
    /// (empty for an image without layers).
    pub chain_id: String,
    /// Bytes of uncompressed tar applied now, every layer together.
    pub bytes: u64,
}

/// A container from an image: the image and how its config is turned into the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRun {
    /// The image's name in the container's namespace (pulled or imported before).
    pub image: String,
    /// Replaces the image's Cmd (`-- CMD...`).
    pub args: Option<Vec<String>>,
    /// Replaces the image's Entrypoint (and its Cmd, unless `args` are given).
    pub entrypoint: Option<Vec<String>>,
    /// `K=V`, after the image's Env (a key given again wins).
    pub env: Vec<String>,
    /// `name`, `uid`, `uid:gid` or `name:group`, resolved in the image's /etc/passwd and
    /// /etc/group; the image's User by default.
    pub user: Option<String>,
    /// The working directory (absolute); the image's WorkingDir, else `/`.
    pub cwd: Option<String>,
    /// The container's hostname.
    pub hostname: Option<String>,
    /// A read-only rootfs.
    pub read_only: bool,
    /// The host's network namespace.
    pub host_network: bool,
    /// `type=bind,src=/host,dst=/in[,ro]` or `type=tmpfs,dst=/in`, each.
    pub mounts: Vec<String>,
    /// Which manifest of an index; the host's by default.
    pub platform: Option<Platform>,
    /// User-namespace uid mappings (`--uidmap`); empty with `gid_maps` empty: no user
    /// namespace. Given without `gid_maps`, they map gids too. The rootfs is then a
    /// remapped snapshot owned by the mapped host ids.
    #[serde(default)]
    pub uid_maps: Vec<IdMap>,
    /// User-namespace gid mappings (`--gidmap`); given without `uid_maps`, they map uids
    /// too.
    #[serde(default)]
    pub gid_maps: Vec<IdMap>,
    /// The snapshotter of the rootfs (`--snapshotter`): `None` or `overlayfs`, the only
    /// one there is; any other name is refused.
    #[serde(default)]
    pub snapshotter: Option<String>,
}

/// One range of a user namespace's uid or gid map: container ids `container_id ..
/// container_id + size` are host ids `host_id .. host_id + size` (a line of
/// `/proc/<pid>/uid_map`; `ctr run --uidmap 0:100000:65536`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMap {
    /// The first id inside the container.
    pub container_id: u32,
    /// The host id it is.
    pub host_id: u32,
    /// How many ids (at least 1).
    pub size: u32,
}

impl IdMap {
    /// The most ranges one map may have (the kernel's limit since Linux 4.15).
    pub const MAX_RANGES: usize = 340;

    /// Parses `CONTAINER:HOST:SIZE` (decimal) and checks it: size at least 1 and neither
    /// range past `u32::MAX` (4294967295 itself is never a valid id).
    pub fn parse(s: &str) -> Result<IdMap, String> {
        let bad = |why: &str| format!("bad id map {s:?}: {why}");
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [c, h, n] = parts[..] else {
            return Err(bad("want CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536"));
        };
        let num = |what: &str, v: &str| {
            v.trim().parse::<u32>().map_err(|_| {
                bad(&format!(
                    "{what} {v:?} is not a number from 0 to 4294967294"
                ))
            })
        };
        let map = IdMap {
            container_id: num("container id", c)?,
            host_id: num("host id", h)?,
            size: num("size", n)?,
        };
        map.check().map_err(|why| bad(&why))?;
        Ok(map)
    }

    /// Checks one range: size at least 1, and neither range reaching `u32::MAX`.
    pub fn check(&self) -> Result<(), String> {
        if self.size == 0 {
            return Err("size 0: a range maps at least one id".to_string());
        }
        for (what, start) in [("container", self.container_id), ("host", self.host_id)] {
            if u64::from(start) + u64::from(self.size) > u64::from(u32::MAX) {
                return Err(format!(
                    "{what} ids {start} + {} pass 4294967294, the largest id",
                    self.size
                ));
            }
        }
        Ok(())
    }

    /// The host id of container id `id`, if this range maps it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.container_id)?;
        (off < self.size).then(|| self.host_id + off)
    }

    /// The container id of host id `id`, if this range maps it.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.host_id)?;
        (off < self.size).then(|| self.container_id + off)
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container_id, self.host_id, self.size)
    }
}
