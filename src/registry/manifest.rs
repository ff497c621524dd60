//! Image indexes and manifests, OCI or Docker schema 2, read down to what a pull, a push,
//! an import, an export or GC needs: the children of an index (with their platforms) and
//! the config and layers of a manifest. No network here: the documents are bytes.

use crate::error::{Error, Result};
use crate::types::{
    is_index, is_manifest, Descriptor, Platform, MEDIA_DOCKER_FOREIGN, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The Docker schema 1 manifest (signed or not): recognized to be refused.
pub const MEDIA_DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker's foreign layer, uncompressed (Windows base layers).
const MEDIA_DOCKER_FOREIGN_TAR: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// OCI's non-distributable layers (deprecated, but still seen).
const MEDIA_OCI_NONDISTRIBUTABLE_PREFIX: &str = "application/vnd.oci.image.layer.nondistributable.";

/// The largest index or manifest read into memory.
pub const MAX_MANIFEST: u64 = crate::content::MAX_DOCUMENT;

/// One entry of an index: a child manifest (or index) and what it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The child.
    pub descriptor: Descriptor,
    /// Its platform, when the index says.
    pub platform: Option<Platform>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A layer of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestLayer {
    /// The layer blob.
    pub descriptor: Descriptor,
    /// A foreign (non-distributable) layer: its media type says so, or it lists `urls` to
    /// fetch it from elsewhere. Not in the registry as a rule; a pull skips it.
    pub foreign: bool,
    /// Where else it can be fetched (foreign layers).
    pub urls: Vec<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRefs {
    /// The manifest's own media type (OCI or Docker).
    pub media_type: String,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<ManifestLayer>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ManifestRefs {
    /// The blobs a registry holds for this manifest: the config, then every layer that is
    /// not foreign.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(
            self.layers
                .iter()
                .filter(|l| !l.foreign)
                .map(|l| &l.descriptor),
        )
    }
}

/// Whether `digest` is `sha256:<64 lowercase hex>`, the only digests corral stores (a digest
/// becomes a file name: nothing else may pass).
pub fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ if digest
            .split_once(':')
            .is_some_and(|(alg, _)| alg != "sha256") =>
        {
            Err(format!(
                "unsupported digest {digest:?}: only sha256 is supported"
            ))
        }
        _ => Err(format!(
            "bad digest {digest:?}: expected sha256:<64 hex digits>"
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Just enough of any document to tell what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sniff {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

/// The media type a manifest or index document declares (its `mediaType`), else what its
/// shape says (OCI documents may leave `mediaType` out): `manifests` makes an OCI index,
/// `config` an OCI manifest, `schemaVersion` 1 a Docker schema 1 manifest. Not checked
/// against the four supported types: see [`check_media_type`].
pub fn media_type_of(bytes: &[u8]) -> Result<String> {
    let sniff: Sniff = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("not a manifest or an index: {e}")))?;
    if let Some(media_type) = sniff.media_type.filter(|m| !m.is_empty()) {
        return Ok(media_type);
    }
    if sniff.schema_version == Some(1) {
        return Ok(MEDIA_DOCKER_V1.to_string());
    }
    match (sniff.manifests.is_some(), sniff.config.is_some()) {
        (true, false) => Ok(MEDIA_OCI_INDEX.to_string()),
        (false, true) => Ok(MEDIA_OCI_MANIFEST.to_string()),
        _ => Err(Error::Corrupt(
            "neither a manifest nor an index: no mediaType, and not one shape or the other".into(),
        )),
    }
}

/// `media_type` if it is an index or a manifest (OCI or Docker schema 2), else
/// [`Error::InvalidArgument`] "unsupported media type X for `name`".
pub fn check_media_type(media_type: &str, name: &str) -> Result<()> {
    if is_index(media_type) || is_manifest(media_type) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "unsupported media type {media_type} for {name}"
        )))
    }
}

fn descriptor(raw: &RawDescriptor, what: &str) -> Result<Descriptor> {
    let media_type = match &raw.media_type {
        Some(m) if !m.is_empty() => m.clone(),
        _ => {
            return Err(Error::Corrupt(format!(
                "{what} {} has no mediaType",
                raw.digest
            )))
        }
    };
    check_digest(&raw.digest).map_err(|e| Error::Corrupt(format!("{what}: {e}")))?;
    Ok(Descriptor {
        media_type,
        digest: raw.digest.clone(),
        size: raw.size,
    })
}

fn check_schema(schema_version: u32, what: &str) -> Result<()> {
    if schema_version == 2 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "unsupported {what} schemaVersion {schema_version} (only 2 is)"
        )))
    }
}

/// The children of an index (OCI image index or Docker manifest list).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<IndexEntry>> {
    let raw: RawIndex = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("not an image index: {e}")))?;
    check_schema(raw.schema_version, "index")?;
    if let Some(media_type) = raw.media_type.as_deref().filter(|m| !m.is_empty()) {
        if !is_index(media_type) {
            return Err(Error::Corrupt(format!(
                "not an image index: its mediaType is {media_type}"
            )));
        }
    }
    raw.manifests
        .iter()
        .map(|m| {
            Ok(IndexEntry {
                descriptor: descriptor(m, "index entry")?,
                platform: m.platform.as_ref().map(|p| Platform {
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone().unwrap_or_default(),
                }),
                annotations: m.annotations.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// The config and layers of an image manifest (OCI or Docker schema 2).
pub fn parse_manifest(bytes: &[u8]) -> Result<ManifestRefs> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("not an image manifest: {e}")))?;
    check_schema(raw.schema_version, "manifest")?;
    let media_type = match raw.media_type.as_deref().filter(|m| !m.is_empty()) {
        Some(m) if is_manifest(m) => m.to_string(),
        Some(m) => {
            return Err(Error::Corrupt(format!(
                "not an image manifest: its mediaType is {m}"
            )))
        }
        None => MEDIA_OCI_MANIFEST.to_string(),
    };
    let layers = raw
        .layers
        .iter()
        .map(|l| {
            let descriptor = descriptor(l, "layer")?;
            let urls = l.urls.clone().unwrap_or_default();
            let foreign = !urls.is_empty()
                || descriptor.media_type == MEDIA_DOCKER_FOREIGN
                || descriptor.media_type == MEDIA_DOCKER_FOREIGN_TAR
                || descriptor
                    .media_type
                    .starts_with(MEDIA_OCI_NONDISTRIBUTABLE_PREFIX);
            Ok(ManifestLayer {
                descriptor,
                foreign,
                urls,
                annotations: l.annotations.clone().unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ManifestRefs {
        media_type,
        config: descriptor(&raw.config, "config")?,
        layers,
        annotations: raw.annotations.unwrap_or_default(),
    })
}

/// The manifest for `platform` in an index (OCI index or Docker list): the entry with the
/// same os, architecture and variant, else the first with the same os and architecture (any
/// variant). [`Error::NotFound`] "no linux/arm64 manifest in `name` (it has: ...)" otherwise.
pub fn select_platform(index: &[u8], platform: &Platform, name: &str) -> Result<Descriptor> {
    let entries = parse_index(index).map_err(|e| match e {
        Error::Corrupt(m) => Error::Corrupt(format!("{name}: {m}")),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{name}: {m}")),
        other => other,
    })?;
    let candidates: Vec<(&IndexEntry, &Platform)> = entries
        .iter()
        .filter(|e| is_manifest(&e.descriptor.media_type) || is_index(&e.descriptor.media_type))
        .filter_map(|e| e.platform.as_ref().map(|p| (e, p)))
        .collect();
    let same_arch = |p: &Platform| p.os == platform.os && p.architecture == platform.architecture;
    let found = candidates
        .iter()
        .find(|(_, p)| same_arch(p) && p.variant == platform.variant)
        .or_else(|| candidates.iter().find(|(_, p)| same_arch(p)));
    if let Some((entry, _)) = found {
        return Ok(entry.descriptor.clone());
    }
    let mut has: Vec<String> = Vec::new();
    for (_, p) in &candidates {
        // Attestations and other artifacts stand in an index as unknown/unknown.
        let s = p.to_string();
        if p.os != "unknown" && !has.contains(&s) {
            has.push(s);
        }
    }
    let has = if has.is_empty() {
        "no platforms".to_string()
    } else {
        has.join(", ")
    };
    Err(Error::NotFound(format!(
        "no {platform} manifest in {name} (it has: {has})"
    )))
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
