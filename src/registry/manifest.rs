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
mod tests {
    use super::*;
    use crate::types::{MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LIST};

    fn d(n: u8) -> String {
        format!("sha256:{}", crate::content::hex(&[n; 32]))
    }

    fn oci_index() -> String {
        format!(
            r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1000,
      "platform": {{"architecture": "amd64", "os": "linux"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1001,
      "platform": {{"architecture": "arm", "os": "linux", "variant": "v6"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1002,
      "platform": {{"architecture": "arm", "os": "linux", "variant": "v7"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1003,
      "platform": {{"architecture": "arm64", "os": "linux", "variant": "v8"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 566,
      "annotations": {{"vnd.docker.reference.type": "attestation-manifest",
                       "vnd.docker.reference.digest": "{}"}},
      "platform": {{"architecture": "unknown", "os": "unknown"}}}}
  ]
}}"#,
            d(1),
            d(2),
            d(3),
            d(4),
            d(5),
            d(1)
        )
    }

    fn docker_list() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
        "digest": "{}", "platform": {{"architecture": "amd64", "os": "linux"}}}},
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
        "digest": "{}", "platform": {{"architecture": "arm64", "os": "linux"}}}},
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1125,
        "digest": "{}", "platform": {{"architecture": "amd64", "os": "windows",
        "os.version": "10.0.17763.5329"}}}}
   ]
}}"#,
            d(11),
            d(12),
            d(13)
        )
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn digests_and_hex() {
        assert_eq!(
            crate::content::digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        check_digest(&d(7)).unwrap();
        for bad in [
            "sha256:",
            "sha256:abc",
            "sha256:../../../../etc/passwd",
            &d(7).to_uppercase(),
            &format!("{}0", d(7)),
            "nothing",
        ] {
            let e = check_digest(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(check_digest("sha512:00")
            .unwrap_err()
            .contains("only sha256"));
    }

    #[test]
    fn oci_index_entries() {
        let entries = parse_index(oci_index().as_bytes()).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].descriptor.digest, d(1));
        assert_eq!(entries[0].descriptor.size, 1000);
        assert_eq!(entries[0].platform, Some(p("linux/amd64")));
        assert_eq!(entries[3].platform, Some(p("linux/arm64/v8")));
        assert_eq!(
            entries[4].annotations["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        assert_eq!(
            media_type_of(oci_index().as_bytes()).unwrap(),
            MEDIA_OCI_INDEX
        );
    }

    #[test]
    fn platform_selection() {
        let idx = oci_index();
        let pick = |s: &str| select_platform(idx.as_bytes(), &p(s), "x:1").map(|d| d.digest);
        assert_eq!(pick("linux/amd64").unwrap(), d(1));
        assert_eq!(pick("linux/arm/v7").unwrap(), d(3), "exact variant first");
        assert_eq!(pick("linux/arm/v6").unwrap(), d(2));
        assert_eq!(
            pick("linux/arm").unwrap(),
            d(2),
            "any variant when none asked"
        );
        assert_eq!(pick("linux/arm64").unwrap(), d(4));
        assert_eq!(pick("linux/arm64/v8").unwrap(), d(4));
        match pick("linux/s390x") {
            Err(Error::NotFound(m)) => assert_eq!(
                m,
                "no linux/s390x manifest in x:1 (it has: linux/amd64, linux/arm/v6, \
                 linux/arm/v7, linux/arm64/v8)"
            ),
            other => panic!("{other:?}"),
        }

        let list = docker_list();
        let pick = |s: &str| select_platform(list.as_bytes(), &p(s), "y").map(|d| d.digest);
        assert_eq!(pick("linux/amd64").unwrap(), d(11));
        // A list without variants still serves a host that says v8.
        assert_eq!(pick("linux/arm64/v8").unwrap(), d(12));
        assert_eq!(pick("windows/amd64").unwrap(), d(13));
        match pick("linux/ppc64le") {
            Err(Error::NotFound(m)) => {
                assert!(
                    m.ends_with("(it has: linux/amd64, linux/arm64, windows/amd64)"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(media_type_of(list.as_bytes()).unwrap(), MEDIA_DOCKER_LIST);
    }

    #[test]
    fn select_platform_refuses_a_manifest_and_garbage() {
        let m = docker_manifest();
        assert!(matches!(
            select_platform(m.as_bytes(), &p("linux/amd64"), "z"),
            Err(Error::Corrupt(msg)) if msg.starts_with("z: ")
        ));
        assert!(matches!(
            select_platform(b"{", &p("linux/amd64"), "z"),
            Err(Error::Corrupt(_))
        ));
        let empty = r#"{"schemaVersion":2,"manifests":[]}"#;
        match select_platform(empty.as_bytes(), &p("linux/amd64"), "z") {
            Err(Error::NotFound(m)) => assert!(m.ends_with("(it has: no platforms)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    fn docker_manifest() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1469,
      "digest": "{}"
   }},
   "layers": [
      {{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "size": 1718332879, "digest": "{}",
        "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/{}"]}},
      {{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "size": 3408729, "digest": "{}"}}
   ]
}}"#,
            d(20),
            d(21),
            d(21),
            d(22)
        )
    }

    #[test]
    fn docker_manifest_refs() {
        let m = parse_manifest(docker_manifest().as_bytes()).unwrap();
        assert_eq!(m.media_type, crate::types::MEDIA_DOCKER_MANIFEST);
        assert_eq!(m.config.media_type, MEDIA_DOCKER_CONFIG);
        assert_eq!(m.config.digest, d(20));
        assert_eq!(m.config.size, 1469);
        assert_eq!(m.layers.len(), 2);
        assert!(m.layers[0].foreign);
        assert_eq!(m.layers[0].urls.len(), 1);
        assert!(!m.layers[1].foreign);
        assert_eq!(m.layers[1].descriptor.media_type, MEDIA_DOCKER_LAYER_GZIP);
        let blobs: Vec<&str> = m.blobs().map(|d| d.digest.as_str()).collect();
        assert_eq!(blobs, [d(20), d(22)]);
    }

    #[test]
    fn oci_manifest_refs() {
        // No mediaType at the top: allowed by OCI, recognized by its shape.
        let doc = format!(
            r#"{{"schemaVersion": 2,
  "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "{}", "size": 7}},
  "layers": [
    {{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "{}", "size": 32,
      "annotations": {{"a": "b"}}}},
    {{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "digest": "{}", "size": 9}},
    {{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "{}", "size": 3,
      "urls": ["https://elsewhere.example/blob"]}}
  ],
  "annotations": {{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}}}"#,
            d(30),
            d(31),
            d(32),
            d(33)
        );
        assert_eq!(media_type_of(doc.as_bytes()).unwrap(), MEDIA_OCI_MANIFEST);
        let m = parse_manifest(doc.as_bytes()).unwrap();
        assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
        assert_eq!(m.config.digest, d(30));
        assert_eq!(
            m.layers.iter().map(|l| l.foreign).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(m.layers[0].annotations["a"], "b");
        assert_eq!(m.annotations.len(), 1);
        // An empty image: no layers at all is fine.
        let empty = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}",
                "config":{{"mediaType":"x","digest":"{}","size":2}}}}"#,
            d(1)
        );
        assert!(parse_manifest(empty.as_bytes()).unwrap().layers.is_empty());
    }

    #[test]
    fn hostile_or_unsupported_documents() {
        // A digest that would walk out of the content store.
        let doc = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../x","size":1},"layers":[]}"#;
        assert!(
            matches!(parse_manifest(doc.as_bytes()), Err(Error::Corrupt(m)) if m.contains("sha256:../../x"))
        );
        // A negative size.
        let doc = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":-1}}}}"#,
            d(1)
        );
        assert!(matches!(
            parse_manifest(doc.as_bytes()),
            Err(Error::Corrupt(_))
        ));
        // A child without a media type.
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1}}]}}"#,
            d(1)
        );
        assert!(
            matches!(parse_index(doc.as_bytes()), Err(Error::Corrupt(m)) if m.contains("no mediaType"))
        );
        // Schema 1.
        let v1 = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#;
        assert_eq!(media_type_of(v1.as_bytes()).unwrap(), MEDIA_DOCKER_V1);
        match check_media_type(MEDIA_DOCKER_V1, "x:1") {
            Err(Error::InvalidArgument(m)) => assert_eq!(
                m,
                format!("unsupported media type {MEDIA_DOCKER_V1} for x:1")
            ),
            other => panic!("{other:?}"),
        }
        check_media_type(MEDIA_DOCKER_LIST, "x").unwrap();
        let v3 = format!(
            r#"{{"schemaVersion":3,"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            d(1)
        );
        assert!(matches!(
            parse_manifest(v3.as_bytes()),
            Err(Error::InvalidArgument(_))
        ));
        // A manifest is not an index and the other way round.
        assert!(parse_index(docker_manifest().as_bytes()).is_err());
        assert!(matches!(
            parse_manifest(docker_list().as_bytes()),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(media_type_of(b"[]"), Err(Error::Corrupt(_))));
        assert!(matches!(media_type_of(b"{}"), Err(Error::Corrupt(_))));
    }
}
