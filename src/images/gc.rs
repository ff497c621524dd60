//! Garbage collection: mark from the roots, sweep the rest.
//!
//! Roots of blobs: every image of every namespace (index → manifests → config and layers),
//! and every unexpired lease (the blobs and ingests it holds; a pull holds its lease from
//! before its first byte). Expired leases are removed first.
//!
//! Roots of snapshots: for every image of every namespace and each of its manifests in the
//! content store, the chain ids of its config's `rootfs.diff_ids`; every active snapshot and
//! view (a container's root, a user's, an `extract-*` left by a crash: GC never removes
//! one, except a half-made remapped snapshot `remap/...-remap`, see `remap.rs`); and every
//! parent of a rooted snapshot. Committed snapshots not rooted are removed,
//! children before parents. One that cannot go (mounted, or given a child since it was
//! listed) is logged and kept, and the collection goes on.
//!
//! Locks, always taken in this order (so no two paths can wait on each other):
//!
//! 1. the snapshotter's unpack lock (`Snapshotter::unpack_lock`),
//! 2. the metadata lock (`Inner::meta`),
//! 3. the snapshotter's own record lock (taken and released inside each of its calls).
//!
//! GC holds 1 and 2 from mark to sweep: nothing can be added to a root between the two, and
//! no unpack is running, so no `extract-*` snapshot is about to be committed and no
//! committed layer is about to get a child from an unpack (GC waits for a running unpack to
//! end). `Images::unpack` takes the metadata lock only before it takes the unpack lock (to
//! look the image up, released at once), never while holding it; so GC, waiting for the
//! unpack lock, holds nothing the unpack needs. Taking the unpack lock first also keeps a
//! long unpack from stalling pulls behind a waiting GC's metadata lock. The snapshotter
//! never takes 1 or 2.

use super::snapevents::Snaps;
use super::{poisoned, walk, Inner};
use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::snapshots::{Info, Kind};
use crate::types::{is_index, is_manifest, now_ns, Descriptor, PruneReport};
use std::collections::{BTreeMap, BTreeSet};

/// Runs one collection; the snapshots it removes are published in namespace `ns`.
pub(crate) fn collect(inner: &Inner, ns: &str) -> Result<PruneReport> {
    let _no_unpack = inner.snapshots.unpack_lock();
    let mut meta = poisoned(&inner.meta);
    let now = now_ns();
    let mut report = PruneReport::default();
    let expired: usize = meta
        .db
        .leases
        .values()
        .map(|m| m.values().filter(|l| !l.live(now)).count())
        .sum();
    if expired > 0 {
        meta.change(|db| {
            for leases in db.leases.values_mut() {
                leases.retain(|_, l| l.live(now));
            }
            db.leases.retain(|_, m| !m.is_empty());
            Ok(())
        })?;
        report.leases = expired as u64;
    }
    let mut keep = BTreeSet::new();
    let mut keep_ingests = BTreeSet::new();
    let mut chains = BTreeSet::new();
    for images in meta.db.images.values() {
        for image in images.values() {
            // A document that cannot be read stops the collection: what it refers to
            // would otherwise be swept as unreachable.
            walk::reachable_strict(&inner.content, &image.target, &mut keep)?;
            image_chains(&inner.content, &image.target, &mut chains, 0)?;
        }
    }
    for (_, _, lease) in meta.db.live_leases(now) {
        keep.extend(lease.content.iter().cloned());
        keep_ingests.extend(lease.ingests.iter().cloned());
    }
    for blob in inner.content.list()? {
        if keep.contains(&blob.digest) {
            continue;
        }
        match inner.content.delete(&blob.digest) {
            Ok(()) => {
                report.blobs += 1;
                report.bytes += blob.size;
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for ingest in inner.content.ingests()? {
        if keep_ingests.contains(&ingest.key) {
            continue;
        }
        inner.content.remove_ingest(&ingest.key)?;
        report.ingests += 1;
    }
    let snaps = inner.snaps(ns);
    report.snapshots = super::remap::remove_half_made(inner, &snaps)?;
    report.snapshots += sweep_snapshots(&snaps, &chains)?;
    drop(meta);
    tracing::info!(
        blobs = report.blobs,
        bytes = report.bytes,
        ingests = report.ingests,
        leases = report.leases,
        snapshots = report.snapshots,
        "garbage collected"
    );
    Ok(report)
}

/// Adds the chain ids of the image whose top document is `desc` (each manifest in the
/// store: its config's layers). A manifest or config not in the store, or a config with no
/// `rootfs.diff_ids` (not an image that can be unpacked), roots nothing; a document that
/// cannot be read stops the collection.
fn image_chains(
    content: &ContentStore,
    desc: &Descriptor,
    out: &mut BTreeSet<String>,
    depth: usize,
) -> Result<()> {
    if depth > 8 || !(is_index(&desc.media_type) || is_manifest(&desc.media_type)) {
        return Ok(());
    }
    let bytes = match content.read_document(&desc.digest) {
        Ok(b) => b,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let kids = walk::children(&desc.media_type, &bytes, &desc.digest)?;
    if is_index(&desc.media_type) {
        for k in &kids {
            image_chains(content, &k.desc, out, depth + 1)?;
        }
        return Ok(());
    }
    let Some(config) = kids.first() else {
        return Ok(());
    };
    let config = match content.read_document(config.digest()) {
        Ok(b) => b,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Ok(diff_ids) = super::unpack::diff_ids(&config) {
        out.extend(crate::snapshots::unpack::chain_ids(&diff_ids));
    }
    Ok(())
}

/// The committed snapshots to remove, children before parents: those neither in `chains`,
/// nor active or a view, nor a parent of one of these.
pub(crate) fn unrooted(list: &[Info], chains: &BTreeSet<String>) -> Vec<String> {
    let by_name: BTreeMap<&str, &Info> = list.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut rooted: BTreeSet<&str> = BTreeSet::new();
    for s in list {
        if s.kind != Kind::Committed || chains.contains(&s.name) {
            let mut next = Some(s.name.as_str());
            while let Some(name) = next {
                if !rooted.insert(name) {
                    break;
                }
                next = by_name.get(name).and_then(|i| i.parent.as_deref());
            }
        }
    }
    // Depth: how many parents a snapshot has (bounded, in case the records loop).
    let depth = |s: &Info| {
        let mut n = 0usize;
        let mut next = s.parent.as_deref();
        while let Some(p) = next {
            n += 1;
            if n > list.len() {
                break;
            }
            next = by_name.get(p).and_then(|i| i.parent.as_deref());
        }
        n
    };
    let mut out: Vec<(usize, &str)> = list
        .iter()
        .filter(|s| s.kind == Kind::Committed && !rooted.contains(s.name.as_str()))
        .map(|s| (depth(s), s.name.as_str()))
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    out.into_iter().map(|(_, n)| n.to_string()).collect()
}

/// Removes the committed snapshots not rooted; how many went. One refused (mounted, or
/// with a child) is logged and kept.
fn sweep_snapshots(snaps: &Snaps, chains: &BTreeSet<String>) -> Result<u64> {
    let mut removed = 0;
    for name in unrooted(&snaps.list()?, chains) {
        match snaps.remove(&name) {
            Ok(()) => removed += 1,
            Err(Error::NotFound(_)) => {}
            Err(Error::WrongState(m)) => tracing::warn!("GC keeps snapshot {name}: {m}"),
            Err(e) => return Err(e.context(&format!("GC: remove snapshot {name}"))),
        }
    }
    Ok(removed)
}

/// Removes blobs by hand; refused for a blob an image reaches or a live lease holds.
pub(crate) fn remove_content(inner: &Inner, digests: &[String]) -> Result<()> {
    let meta = poisoned(&inner.meta);
    let now = now_ns();
    for digest in digests {
        crate::content::digest_hex(digest)?;
    }
    for digest in digests {
        for (ns, images) in &meta.db.images {
            for (name, image) in images {
                let mut reached = BTreeSet::new();
                walk::reachable(&inner.content, &image.target, &mut reached);
                if reached.contains(digest) {
                    return Err(Error::WrongState(format!(
                        "content {digest} is part of image {name} in namespace {ns}: remove \
                         the image instead"
                    )));
                }
            }
        }
        if let Some((ns, id, _)) = meta
            .db
            .live_leases(now)
            .find(|(_, _, l)| l.content.contains(digest))
        {
            return Err(Error::WrongState(format!(
                "content {digest} is held by lease {id} in namespace {ns}"
            )));
        }
        inner.content.delete(digest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unrooted;
    use crate::snapshots::{Info, Kind};
    use std::collections::BTreeSet;

    fn snap(name: &str, kind: Kind, parent: Option<&str>) -> Info {
        Info {
            name: name.into(),
            kind,
            parent: parent.map(str::to_string),
            id: 0,
            created_ns: 0,
            updated_ns: 0,
            flavor: Default::default(),
            idmap: None,
        }
    }

    #[test]
    fn unrooted_committed_snapshots_go_children_first_and_roots_keep_their_parents() {
        let list = vec![
            // An image's chain: a ← b ← c, c rooted.
            snap("a", Kind::Committed, None),
            snap("b", Kind::Committed, Some("a")),
            snap("c", Kind::Committed, Some("b")),
            // A removed image's chain on the shared a: a ← d ← e.
            snap("d", Kind::Committed, Some("a")),
            snap("e", Kind::Committed, Some("d")),
            // An active snapshot on an unrooted chain x ← y keeps it.
            snap("x", Kind::Committed, None),
            snap("y", Kind::Committed, Some("x")),
            snap("ctr", Kind::Active, Some("y")),
            // A view, and an extract-* left behind: never removed.
            snap("v", Kind::View, None),
            snap("extract-z", Kind::Active, Some("z")),
            snap("z", Kind::Committed, None),
            // Nothing on it.
            snap("lone", Kind::Committed, None),
        ];
        let chains: BTreeSet<String> = ["c".to_string()].into();
        assert_eq!(unrooted(&list, &chains), vec!["e", "d", "lone"]);
        assert!(unrooted(&list[..3], &BTreeSet::new()) == vec!["c", "b", "a"]);
    }
}
