//! The snapshot events: every snapshot the image service prepares, commits or removes
//! (a layer's `extract-*` snapshot and its chain id at unpack, a container's writable
//! snapshot, a remapped copy, GC's removals, a restore's snapshot) goes through
//! [`Snaps`], which does it on the snapshotter and, once it is done, publishes containerd's
//! `/snapshot/prepare` (key, parent), `/snapshot/commit` (key, name) or `/snapshot/remove`
//! (key) in the namespace of the request that caused it.
//!
//! Layers' snapshots are shared by every namespace: their events go to the namespace whose
//! unpack made them, and GC's removals to the namespace of the request that ran GC
//! (`default` for `prune`, which names none).

use super::Inner;
use crate::actors::events::Publish;
use crate::error::Result;
use crate::snapshots::idmap::IdMapping;
use crate::snapshots::{Flavor, Mount, Snapshotter};
use crate::types::{Event, SnapshotEventInfo, Topic};

/// The snapshotter as the image service uses it: its changes are published. Reads
/// (`stat`, `fs_dir`, `list`, ...) go straight to the snapshotter.
pub(crate) struct Snaps<'a> {
    inner: &'a Inner,
    ns: &'a str,
}

impl std::ops::Deref for Snaps<'_> {
    type Target = Snapshotter;
    fn deref(&self) -> &Snapshotter {
        &self.inner.snapshots
    }
}

impl Snaps<'_> {
    /// Prepares the active snapshot `key` on `parent`; its mounts.
    pub(crate) fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.prepare_as(Flavor::Overlay, key, parent)
    }

    /// Prepares the active snapshot `key` of `flavor` on `parent`; its mounts.
    pub(crate) fn prepare_as(
        &self,
        flavor: Flavor,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Vec<Mount>> {
        self.prepared(key, parent, |s| s.prepare_as(flavor, key, parent))
    }

    /// Prepares the active overlay snapshot `key` on `parent` with idmapped lower dirs;
    /// its mounts.
    pub(crate) fn prepare_idmapped(
        &self,
        key: &str,
        parent: Option<&str>,
        mapping: IdMapping,
    ) -> Result<Vec<Mount>> {
        self.prepared(key, parent, |s| s.prepare_idmapped(key, parent, mapping))
    }

    /// Prepares `key` on `parent` by `make`, then publishes it.
    fn prepared(
        &self,
        key: &str,
        parent: Option<&str>,
        make: impl FnOnce(&Snapshotter) -> Result<Vec<Mount>>,
    ) -> Result<Vec<Mount>> {
        let mounts = make(&self.inner.snapshots)?;
        self.publish(
            Topic::SnapshotPrepare,
            key,
            parent.map(str::to_string),
            None,
        );
        Ok(mounts)
    }

    /// Commits the active snapshot `key` as `name`.
    pub(crate) fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.inner.snapshots.commit(name, key)?;
        self.publish(Topic::SnapshotCommit, key, None, Some(name.to_string()));
        Ok(())
    }

    /// Removes the snapshot `key` (active or committed).
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        self.inner.snapshots.remove(key)?;
        self.publish(Topic::SnapshotRemove, key, None, None);
        Ok(())
    }

    fn publish(&self, topic: Topic, key: &str, parent: Option<String>, name: Option<String>) {
        if let Some(events) = &self.inner.events {
            let snapshot = SnapshotEventInfo {
                key: key.to_string(),
                parent,
                name,
            };
            events.do_send(Publish {
                event: Event::about_snapshot(self.ns, topic, snapshot),
                mark: None,
            });
        }
    }
}

impl Inner {
    /// The snapshotter, publishing its changes in namespace `ns`.
    pub(crate) fn snaps<'a>(&'a self, ns: &'a str) -> Snaps<'a> {
        Snaps { inner: self, ns }
    }
}
