//! What a document in the content store refers to: an index its manifests, a manifest its
//! config and layers. Used by GC (mark), export, push and image sizes.

use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::types::{is_index, is_manifest, Descriptor, Platform, MEDIA_DOCKER_FOREIGN};
use serde::Deserialize;
use std::collections::BTreeSet;

/// An entry of an index, or a layer or config of a manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct Child {
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size.
    pub size: u64,
    /// For index entries.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Foreign layers carry where to get them; corral never does.
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Child {
    /// As a plain descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    /// A layer that lives elsewhere (Windows base layers) and is never fetched.
    pub fn foreign(&self) -> bool {
        self.media_type == MEDIA_DOCKER_FOREIGN || !self.urls.is_empty()
    }
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Child>>,
    #[serde(default)]
    config: Option<Child>,
    #[serde(default)]
    layers: Option<Vec<Child>>,
}

/// The children of the document `bytes` of media type `media_type`: an index's manifests,
/// a manifest's config then layers; nothing for any other blob.
pub fn children(media_type: &str, bytes: &[u8], name: &str) -> Result<Vec<Child>> {
    if !is_index(media_type) && !is_manifest(media_type) {
        return Ok(Vec::new());
    }
    let doc: Doc = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("{media_type} {name}: {e}")))?;
    if let Some(declared) = &doc.media_type {
        if declared != media_type {
            return Err(Error::Corrupt(format!(
                "{name}: described as {media_type} but says it is {declared}"
            )));
        }
    }
    if is_index(media_type) {
        return doc
            .manifests
            .ok_or_else(|| Error::Corrupt(format!("index {name} has no manifests")));
    }
    let config = doc
        .config
        .ok_or_else(|| Error::Corrupt(format!("manifest {name} has no config")))?;
    let mut out = vec![config];
    out.extend(doc.layers.unwrap_or_default());
    Ok(out)
}

/// Every digest reachable from `root` that is in the store (root included), each once:
/// what GC keeps and export writes. Missing children are skipped (a single-platform pull
/// of an index leaves the other platforms out).
pub fn reachable(store: &ContentStore, root: &Descriptor, out: &mut BTreeSet<String>) {
    let mut stack = vec![root.clone()];
    while let Some(desc) = stack.pop() {
        if !store.contains(&desc.digest) || !out.insert(desc.digest.clone()) {
            continue;
        }
        if !is_index(&desc.media_type) && !is_manifest(&desc.media_type) {
            continue;
        }
        match store
            .read_document(&desc.digest)
            .and_then(|b| children(&desc.media_type, &b, &desc.digest))
        {
            Ok(kids) => stack.extend(kids.iter().map(Child::descriptor)),
            Err(e) => tracing::warn!("cannot walk {}: {e}", desc.digest),
        }
    }
}

/// The bytes of what [`reachable`] finds.
pub fn size(store: &ContentStore, root: &Descriptor) -> u64 {
    let mut set = BTreeSet::new();
    reachable(store, root, &mut set);
    set.iter()
        .filter_map(|d| store.info(d).ok())
        .map(|i| i.size)
        .sum()
}
