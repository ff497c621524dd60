//! Container records (containerd 1.x's `containers.Container`): made from an image with its
//! writable snapshot and spec, kept in the metadata apart from their tasks, labelled,
//! updated, and removed with their snapshot. The bundles their tasks run from are
//! `rootfs.rs`'s.

use super::{ns_or_default, rootfs, Images, Inner};
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

impl Images {
    /// Makes a container record from an image: unpacks it, prepares the writable snapshot
    /// `container/<ns>/<id>`, computes the spec with the snapshot mounted and records it.
    /// `rootfs` says whether the rootfs stays mounted for a task made right after (`run`),
    /// and how. The caller checks that no task has the id.
    pub async fn container_create(
        &self,
        req: ContainerCreateRequest,
        rootfs: RootfsAfterCreate,
    ) -> Result<ContainerMeta> {
        let ns = ns_or_default(&req.namespace)?;
        validate_id("container id", &req.id)?;
        for (name, text) in &req.extensions {
            check_extension(name, text)?;
        }
        self.blocking(move |inner| create(inner, &ns, req, rootfs))
            .await
    }

    /// One container record.
    pub async fn container_get(&self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        let ns = ns_or_default(namespace)?;
        let id = id.to_string();
        self.blocking(move |inner| inner.container(&ns, &id)).await
    }

    /// The container records of a namespace whose labels include all of `labels`.
    pub async fn container_list(
        &self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<ContainerMeta>> {
        let ns = ns_or_default(namespace)?;
        self.blocking(move |inner| {
            Ok(inner.with_meta(|m| {
                m.db.containers
                    .get(&ns)
                    .map(|c| {
                        c.values()
                            .filter(|r| labels.iter().all(|(k, v)| r.labels.get(k) == Some(v)))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default()
            }))
        })
        .await
    }

    /// Changes a container record: labels merge (an empty value removes one), the rest
    /// replaces; publishes `/containers/update` when something changed.
    pub async fn container_update(&self, req: ContainerUpdateRequest) -> Result<ContainerMeta> {
        let ns = ns_or_default(&req.namespace)?;
        for (name, text) in &req.extensions {
            if !text.is_empty() {
                check_extension(name, text)?;
            }
        }
        let spec = match &req.spec {
            Some(text) => {
                let what = format!("the spec given for container {ns}/{}", req.id);
                let spec = rootfs::parse_spec(text, &what)?;
                Some(
                    serde_json::to_string_pretty(&spec)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                )
            }
            None => None,
        };
        self.blocking(move |inner| {
            let (record, changed) = inner.change(|db| {
                let record = db
                    .containers
                    .get_mut(&ns)
                    .and_then(|c| c.get_mut(&req.id))
                    .ok_or_else(|| not_found(&ns, &req.id))?;
                let before = record.clone();
                merge(&mut record.labels, req.labels);
                merge(&mut record.extensions, req.extensions);
                if let Some(runtime) = req.runtime {
                    record.runtime = Some(runtime);
                }
                if let Some(args) = req.runtime_args {
                    record.runtime_args = args;
                }
                if let Some(spec) = spec {
                    record.spec = spec;
                }
                let changed = *record != before;
                if changed {
                    record.updated_ns = now_ns();
                }
                Ok((record.clone(), changed))
            })?;
            if changed {
                inner.publish_container(&record, Topic::ContainerUpdate);
            }
            Ok(record)
        })
        .await
    }

    /// Removes a container record with its snapshot (containerd's `WithSnapshotCleanup`):
    /// unmounts a rootfs still mounted, removes the snapshot and the bundle dir, then the
    /// record. The caller checks that it has no task.
    pub async fn container_remove(&self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        let ns = ns_or_default(namespace)?;
        let id = id.to_string();
        self.blocking(move |inner| {
            let record = inner.container(&ns, &id)?;
            rootfs::release(inner, &ns, &id)?;
            inner.change(|db| {
                if let Some(c) = db.containers.get_mut(&ns) {
                    c.remove(&id);
                    if c.is_empty() {
                        db.containers.remove(&ns);
                    }
                }
                Ok(())
            })?;
            inner.publish_container(&record, Topic::ContainerDelete);
            Ok(record)
        })
        .await
    }

    /// Whether container `ns/id` has a record.
    pub async fn container_exists(&self, namespace: &str, id: &str) -> Result<bool> {
        match self.container_get(namespace, id).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The bundle a task of container `ns/id` runs from: its snapshot mounted at the
    /// bundle's rootfs (unless it is already) and `config.json` written from the record's
    /// spec. Returns the record and the bundle dir.
    pub async fn task_bundle(&self, namespace: &str, id: &str) -> Result<(ContainerMeta, PathBuf)> {
        let ns = ns_or_default(namespace)?;
        let id = id.to_string();
        self.blocking(move |inner| {
            let record = inner.container(&ns, &id)?;
            let dir = rootfs::mount_task_bundle(inner, &ns, &id, &record.spec)?;
            Ok((record, dir))
        })
        .await
    }

    /// Unmounts the rootfs of a task that is gone and removes its bundle dir; the record and
    /// its snapshot stay. A bundle with no record (a container made before records) is
    /// released whole.
    pub async fn task_unmount(&self, namespace: &str, id: &str) -> Result<()> {
        let ns = ns_or_default(namespace)?;
        let id = id.to_string();
        self.blocking(move |inner| match inner.container(&ns, &id) {
            Ok(_) => rootfs::unmount(inner, &ns, &id),
            Err(Error::NotFound(_)) => rootfs::release(inner, &ns, &id),
            Err(e) => Err(e),
        })
        .await
    }
}

/// What [`Images::container_create`] leaves of the rootfs it mounted to compute the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsAfterCreate {
    /// Unmounted: a record alone (`container create`).
    Unmounted,
    /// Mounted, for the task made right after (`run`).
    Mounted,
    /// Mounted, an overlay with the `volatile` option (no sync of its upper dir at
    /// unmount), for a task deleted after its one run with the record and snapshot
    /// (`run --rm`): a volatile upper dir is not to be trusted after a crash, and this
    /// one is removed before then or by the crash's own cleanup.
    Volatile,
}

fn not_found(ns: &str, id: &str) -> Error {
    Error::NotFound(format!("container {id} in namespace {ns}"))
}

/// Sets `changes` into `map`; an empty value removes the key.
fn merge(map: &mut BTreeMap<String, String>, changes: BTreeMap<String, String>) {
    for (k, v) in changes {
        if v.is_empty() {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
}

/// An extension must have a name and hold JSON text.
fn check_extension(name: &str, text: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("an extension needs a name".into()));
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| ())
        .map_err(|e| Error::InvalidArgument(format!("extension {name} is not JSON: {e}")))
}

fn create(
    inner: &Inner,
    ns: &str,
    req: ContainerCreateRequest,
    after: RootfsAfterCreate,
) -> Result<ContainerMeta> {
    let id = req.id.as_str();
    if inner.container(ns, id).is_ok() {
        return Err(Error::AlreadyExists(format!(
            "container {id} in namespace {ns} (corralctl container rm {id} removes it)"
        )));
    }
    let snapshotter =
        snapshotter_of(&req.image, inner.default_snapshotter).map_err(Error::InvalidArgument)?;
    let made = rootfs::make(
        inner,
        ns,
        id,
        &req.image,
        after == RootfsAfterCreate::Volatile,
    )?;
    let now = now_ns();
    let record = ContainerMeta {
        namespace: ns.to_string(),
        id: id.to_string(),
        labels: req.labels,
        image: Some(made.image),
        spec: made.spec,
        snapshotter: snapshotter.to_string(),
        snapshot_key: rootfs::snapshot_key(ns, id),
        runtime: req.runtime,
        runtime_args: req.runtime_args,
        extensions: req.extensions,
        created_ns: now,
        updated_ns: now,
    };
    let recorded = inner.change(|db| {
        db.ensure_namespace(ns);
        let records = db.containers.entry(ns.to_string()).or_default();
        if records.contains_key(id) {
            return Err(Error::AlreadyExists(format!(
                "container {id} in namespace {ns}"
            )));
        }
        records.insert(id.to_string(), record.clone());
        Ok(())
    });
    let done = recorded.and_then(|()| {
        if after == RootfsAfterCreate::Unmounted {
            rootfs::unmount(inner, ns, id)
        } else {
            Ok(())
        }
    });
    if let Err(e) = done {
        if let Err(cleanup) = rootfs::release(inner, ns, id) {
            tracing::warn!("cleaning up container {ns}/{id}: {cleanup}");
        }
        let _ = inner.change(|db| {
            if let Some(c) = db.containers.get_mut(ns) {
                c.remove(id);
            }
            Ok(())
        });
        return Err(e);
    }
    super::poisoned(&inner.known_namespaces).insert(ns.to_string());
    inner.publish_container(&record, Topic::ContainerCreate);
    Ok(record)
}

impl Inner {
    /// Container record `ns/id`.
    pub(crate) fn container(&self, ns: &str, id: &str) -> Result<ContainerMeta> {
        self.with_meta(|m| m.db.containers.get(ns).and_then(|c| c.get(id)).cloned())
            .ok_or_else(|| not_found(ns, id))
    }

    /// Publishes a `/containers/...` event about `record`.
    fn publish_container(&self, record: &ContainerMeta, topic: Topic) {
        if let Some(events) = &self.events {
            let mut event = Event::about(&record.namespace, topic, "");
            event.container_id = record.id.clone();
            event.image = record.image.clone();
            events.do_send(crate::actors::events::Publish { event, mark: None });
        }
    }
}
