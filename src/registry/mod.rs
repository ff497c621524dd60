//! Registries: resolving, pulling and pushing images over the OCI distribution API.
//!
//! [`manifest`] reads indexes and manifests and knows nothing of the network; import,
//! export and GC use it too.

pub mod manifest;
pub mod reference;

pub use manifest::{
    check_digest, check_media_type, media_type_of, parse_index, parse_manifest, select_platform,
    sha256_digest, IndexEntry, ManifestLayer, ManifestRefs, MAX_MANIFEST,
};
pub use reference::ImageRef;
