//! What a document in the content store refers to: an index its manifests, a manifest its
//! config and layers. Used by GC (mark), export, push and image sizes.

use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::types::{is_index, is_manifest, Descriptor, Platform};
use std::collections::BTreeSet;

/// An entry of an index, or the config or a layer of a manifest.
#[derive(Clone, Debug)]
pub struct Child {
    /// Media type, digest and size.
    pub desc: Descriptor,
    /// For index entries.
    pub platform: Option<Platform>,
    /// A layer that lives elsewhere (Windows base layers, nondistributable ones): never
    /// fetched, pushed or exported.
    pub foreign: bool,
}

impl Child {
    /// As a plain descriptor.
    pub fn descriptor(&self) -> Descriptor {
        self.desc.clone()
    }

    /// Its digest.
    pub fn digest(&self) -> &str {
        &self.desc.digest
    }
}

/// The children of the document `bytes` of media type `media_type` (parsed by
/// [`crate::registry::manifest`]): an index's manifests, a manifest's config then layers;
/// nothing for any other blob. A document that says it is another type than its
/// descriptor does is [`Error::Corrupt`].
pub fn children(media_type: &str, bytes: &[u8], name: &str) -> Result<Vec<Child>> {
    let named = |e: Error| e.context(name);
    if is_index(media_type) {
        check_declared(media_type, bytes, name)?;
        return Ok(crate::registry::parse_index(bytes)
            .map_err(named)?
            .into_iter()
            .map(|e| Child {
                desc: e.descriptor,
                platform: e.platform,
                foreign: false,
            })
            .collect());
    }
    if !is_manifest(media_type) {
        return Ok(Vec::new());
    }
    check_declared(media_type, bytes, name)?;
    let m = crate::registry::parse_manifest(bytes).map_err(named)?;
    let mut out = vec![Child {
        desc: m.config,
        platform: None,
        foreign: false,
    }];
    out.extend(m.layers.into_iter().map(|l| Child {
        desc: l.descriptor,
        platform: None,
        foreign: l.foreign,
    }));
    Ok(out)
}

fn check_declared(media_type: &str, bytes: &[u8], name: &str) -> Result<()> {
    match crate::registry::media_type_of(bytes) {
        Ok(declared) if declared != media_type => Err(Error::Corrupt(format!(
            "{name}: described as {media_type} but says it is {declared}"
        ))),
        _ => Ok(()),
    }
}

/// Every digest reachable from `root` that is in the store (root included), each once:
/// what export writes and sizes count. Missing children are skipped (a single-platform
/// pull of an index leaves the other platforms out); a document that cannot be read is
/// logged and its children skipped.
pub fn reachable(store: &ContentStore, root: &Descriptor, out: &mut BTreeSet<String>) {
    if let Err(e) = walk(store, root, out) {
        tracing::warn!("cannot walk {}: {e}", root.digest);
    }
}

/// [`reachable`] for GC: a document that is there but cannot be read or parsed is an
/// error, not a gap (its children would be swept).
pub fn reachable_strict(
    store: &ContentStore,
    root: &Descriptor,
    out: &mut BTreeSet<String>,
) -> Result<()> {
    walk(store, root, out)
}

fn walk(store: &ContentStore, root: &Descriptor, out: &mut BTreeSet<String>) -> Result<()> {
    let mut stack = vec![root.clone()];
    let mut first_error = None;
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
            Err(e) => {
                first_error.get_or_insert(e.context(&format!("walk {}", desc.digest)));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
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
