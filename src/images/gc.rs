//! Garbage collection: mark from the roots, sweep the rest.
//!
//! Roots: every image of every namespace (index → manifests → config and layers), and every
//! unexpired lease (the blobs and ingests it holds; a pull holds its lease from before its
//! first byte). Expired leases are removed first. The metadata lock is held from mark to
//! sweep, so nothing can be added to a root between the two.

use super::{poisoned, walk, Inner};
use crate::error::{Error, Result};
use crate::types::{now_ns, PruneReport};
use std::collections::BTreeSet;

/// Runs one collection.
pub(crate) fn collect(inner: &Inner) -> Result<PruneReport> {
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
    for images in meta.db.images.values() {
        for image in images.values() {
            // A document that cannot be read stops the collection: what it refers to
            // would otherwise be swept as unreachable.
            walk::reachable_strict(&inner.content, &image.target, &mut keep)?;
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
    drop(meta);
    tracing::info!(
        blobs = report.blobs,
        bytes = report.bytes,
        ingests = report.ingests,
        leases = report.leases,
        "garbage collected"
    );
    Ok(report)
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
