//! Registries: resolving, pulling and pushing images over the OCI distribution API.
//!
//! The one module of corral that uses `oci-client` (its API changes often): everything
//! else sees [`Remote`], [`BlobBody`] and corral's own [`Error`](crate::Error)s, mapped in
//! one place (`errors.rs`) so that every message names the registry and the reference.
//! [`manifest`] reads indexes and manifests and knows nothing of the network; import,
//! export and GC use it too.

mod auth;
mod errors;
pub mod manifest;
pub mod reference;
mod remote;

pub use manifest::{
    check_digest, check_media_type, media_type_of, parse_index, parse_manifest, select_platform,
    IndexEntry, ManifestLayer, ManifestRefs, MAX_MANIFEST,
};
pub use reference::ImageRef;
pub use remote::{BlobBody, ByteStream, Remote};

/// The full, normalized name of a reference: `busybox` is `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> crate::Result<String> {
    ImageRef::parse(reference).map(|r| r.to_string())
}
