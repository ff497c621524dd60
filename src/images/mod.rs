//! The image service: the content store, images, leases and namespaces of the data dir,
//! pull and push, import and export, and garbage collection.
//!
//! It runs on a tokio runtime of its own (two worker threads and a blocking pool, started
//! by the first request that needs it, so that an idle daemon does not carry it), not on
//! the actors' thread: HTTP, hashing and disk writes of a pull never delay an exit event,
//! a `list` or a `kill`. Every public method may be awaited from any runtime (it spawns
//! onto the service's and awaits the join handle).

mod archive;
mod checkpoint;
mod containers;
mod gc;
mod leases;
mod namespaces;
mod pull;
mod push;
mod remap;
mod rootfs;
mod snapevents;
pub(crate) mod spec;
pub(crate) mod store;
mod unpack;
pub(crate) mod walk;

#[cfg(test)]
mod tests;

pub use containers::RootfsAfterCreate;

use crate::actors::events::{Events, Publish};
use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::types::*;
use actix::Addr;
use nix::fcntl::{Flock, FlockArg};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{image_info, ImageRecord, Metadata};

/// How long a pull's lease holds what it downloaded if the pull does not finish.
pub const PULL_LEASE: Duration = Duration::from_secs(24 * 3600);

/// The label naming the reference a pull's lease is for.
pub const LEASE_LABEL_PULL: &str = "corral.pull";

/// Progress of a pull or a push, as it happens.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<Progress>;

/// The image service (cheap to clone).
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) content: ContentStore,
    /// `<data>/snapshots`: what images are unpacked into.
    pub(crate) snapshots: crate::snapshots::Snapshotter,
    meta: Mutex<Metadata>,
    /// Started at the first request that needs it: an idle daemon does not carry it.
    runtime: std::sync::OnceLock<tokio::runtime::Runtime>,
    /// Held while the runtime is being started.
    starting: Mutex<()>,
    /// Blobs being downloaded now, by digest: later pulls of the same blob wait for it.
    downloads: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// Namespaces known to be recorded (a cache that never waits for the metadata lock).
    pub(crate) known_namespaces: Mutex<std::collections::HashSet<String>>,
    events: Option<Addr<Events>>,
    /// The snapshotter of an image run that names none (`overlayfs` or `native`).
    pub(crate) default_snapshotter: &'static str,
    _lock: Flock<std::fs::File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // May be dropped on another runtime's thread, where a blocking shutdown panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn poisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The namespace a request names (empty: `default`), checked.
fn ns_or_default(ns: &str) -> Result<String> {
    let ns = namespace_or_default(ns);
    validate_id("namespace", ns)?;
    Ok(ns.to_string())
}

impl Images {
    /// Opens the data dir (creating it), locks it for this process alone, and starts the
    /// service's runtime. `events` receives `/images/...` and `/namespaces/...` events.
    pub fn open(data_dir: &Path, events: Option<Addr<Events>>) -> Result<Images> {
        Images::open_with(data_dir, events, crate::types::SNAPSHOTTER_OVERLAYFS)
    }

    /// [`Images::open`], with the snapshotter of an image run that names none
    /// (`overlayfs` or `native`; see [`crate::snapshots::default_snapshotter`]).
    pub fn open_with(
        data_dir: &Path,
        events: Option<Addr<Events>>,
        default_snapshotter: &'static str,
    ) -> Result<Images> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("create {}", data_dir.display()), e))?;
        let lock_path = data_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            Error::AlreadyExists(format!(
                "data dir {} is in use by another corrald ({e}); give each daemon its own \
                 --data-dir",
                data_dir.display()
            ))
        })?;
        let content = ContentStore::open(&data_dir.join("content"))?;
        let meta = Metadata::open(data_dir)?;
        let snapshots = crate::snapshots::Snapshotter::open(&data_dir.join("snapshots"))?;
        let known_namespaces = Mutex::new(meta.db.namespaces.keys().cloned().collect());
        Ok(Images {
            inner: Arc::new(Inner {
                content,
                snapshots,
                meta: Mutex::new(meta),
                runtime: std::sync::OnceLock::new(),
                starting: Mutex::new(()),
                downloads: Mutex::new(HashMap::new()),
                known_namespaces,
                events,
                default_snapshotter,
                _lock: lock,
            }),
        })
    }

    /// Runs `f` on the service's runtime and waits for it.
    async fn run<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.inner.runtime()?;
        rt.spawn(f(self.inner.clone()))
            .await
            .map_err(|e| Error::Internal(format!("image service task failed: {e}")))?
    }

    /// Runs blocking `f` on the service's blocking pool and waits for it.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(|inner| async move {
            tokio::task::spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| Error::Internal(format!("image service task failed: {e}")))?
        })
        .await
    }

    // ---- images ----

    /// The images of a namespace, by name.
    pub async fn list(&self, namespace: &str) -> Result<Vec<ImageInfo>> {
        let ns = ns_or_default(namespace)?;
        self.blocking(move |inner| {
            let records: Vec<(String, ImageRecord)> = poisoned(&inner.meta)
                .db
                .images
                .get(&ns)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            Ok(records
                .iter()
                .map(|(name, r)| image_info(name, r, walk::size(&inner.content, &r.target)))
                .collect())
        })
        .await
    }

    /// One image, by its name (or a short name that normalizes to it).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<ImageInfo> {
        let ns = ns_or_default(namespace)?;
        let name = name.to_string();
        self.blocking(move |inner| {
            let (name, r) = inner.find_image(&ns, &name)?;
            Ok(image_info(&name, &r, walk::size(&inner.content, &r.target)))
        })
        .await
    }

    /// An image with its documents: the index (if any), the manifest picked for
    /// `platform` (the host's by default) and its config, as JSON text.
    pub async fn inspect(
        &self,
        namespace: &str,
        name: &str,
        platform: Option<Platform>,
    ) -> Result<ImageDetail> {
        let ns = ns_or_default(namespace)?;
        let name = name.to_string();
        self.blocking(move |inner| inner.inspect(&ns, &name, platform))
            .await
    }

    /// Removes images; then runs GC unless `no_gc`.
    pub async fn remove(&self, namespace: &str, names: Vec<String>, no_gc: bool) -> Result<()> {
        let ns = ns_or_default(namespace)?;
        self.blocking(move |inner| {
            // All or nothing: every name must name an image before any goes.
            let full = names
                .iter()
                .map(|n| inner.find_image(&ns, n).map(|(full, _)| full))
                .collect::<Result<Vec<String>>>()?;
            inner.change(|db| {
                if let Some(m) = db.images.get_mut(&ns) {
                    for name in &full {
                        m.remove(name);
                    }
                }
                Ok(())
            })?;
            for name in &full {
                inner.publish(&ns, Topic::ImageDelete, name);
            }
            if !no_gc {
                gc::collect(inner, &ns)?;
            }
            Ok(())
        })
        .await
    }

    /// Gives the image `source` a second name `target` (replacing what `target` named when
    /// `force`).
    pub async fn tag(
        &self,
        namespace: &str,
        source: &str,
        target: &str,
        force: bool,
    ) -> Result<ImageInfo> {
        let ns = ns_or_default(namespace)?;
        let (source, target) = (source.to_string(), crate::registry::normalize(target)?);
        self.blocking(move |inner| {
            let (_, r) = inner.find_image(&ns, &source)?;
            let exists = inner.image_exists(&ns, &target);
            if exists && !force {
                return Err(Error::AlreadyExists(format!(
                    "image {target} in namespace {ns} (--force replaces it)"
                )));
            }
            let record = inner.put_image(&ns, &target, r.target.clone(), r.labels.clone())?;
            Ok(image_info(
                &target,
                &record,
                walk::size(&inner.content, &record.target),
            ))
        })
        .await
    }

    /// Pulls an image; `progress` hears about every blob as it goes. The pull goes on if
    /// the caller stops waiting for it.
    pub async fn pull(
        &self,
        req: PullRequest,
        progress: Option<ProgressSender>,
    ) -> Result<ImageInfo> {
        ns_or_default(&req.namespace)?;
        self.run(move |inner| pull::pull(inner, req, progress))
            .await
    }

    /// Pushes an image to a registry; answers the descriptor pushed.
    pub async fn push(
        &self,
        req: PushRequest,
        progress: Option<ProgressSender>,
    ) -> Result<Descriptor> {
        ns_or_default(&req.namespace)?;
        self.run(move |inner| push::push(inner, req, progress))
            .await
    }

    /// Reads an OCI image layout tar or a `docker save` tar and records its images.
    pub async fn import(&self, req: ImportRequest) -> Result<Vec<ImageInfo>> {
        ns_or_default(&req.namespace)?;
        self.blocking(move |inner| archive::import(inner, req))
            .await
    }

    /// Writes images to an OCI image layout tar; answers its size.
    pub async fn export(&self, req: ExportRequest) -> Result<u64> {
        ns_or_default(&req.namespace)?;
        self.blocking(move |inner| archive::export(inner, req))
            .await
    }

    /// Unpacks an image's layers (the manifest for `platform`, the host's by default,
    /// from an index) into committed snapshots named by their chain ids; a layer already
    /// unpacked is skipped.
    pub async fn unpack(
        &self,
        namespace: &str,
        name: &str,
        platform: Option<Platform>,
    ) -> Result<UnpackReport> {
        let ns = ns_or_default(namespace)?;
        let name = name.to_string();
        self.blocking(move |inner| unpack::unpack(inner, &ns, &name, platform))
            .await
    }

    /// Whether `bundle` is the bundle of a task made from a container record (under
    /// `<data>/bundles/`).
    pub fn is_image_bundle(&self, bundle: &Path) -> bool {
        rootfs::is_image_bundle(&self.inner, bundle)
    }

    /// After a reboot: the bundles of tasks not in `live` (`(namespace, id)`) are unmounted;
    /// those with no container record are released with their snapshots.
    pub(crate) async fn release_orphan_bundles(
        &self,
        live: Vec<(String, String)>,
    ) -> Result<rootfs::Orphans> {
        if !rootfs::bundles_root(&self.inner).exists() {
            return Ok(rootfs::Orphans::default());
        }
        self.blocking(move |inner| Ok(rootfs::release_orphans(inner, &live)))
            .await
    }

    /// The snapshotter of the data dir (for corral's own tests; not a stable API).
    #[doc(hidden)]
    pub fn snapshotter(&self) -> crate::snapshots::Snapshotter {
        self.inner.snapshots.clone()
    }

    // ---- content ----

    /// Every blob.
    pub async fn content_list(&self) -> Result<Vec<ContentInfo>> {
        self.blocking(|inner| inner.content.list()).await
    }

    /// One blob.
    pub async fn content_info(&self, digest: &str) -> Result<ContentInfo> {
        let digest = digest.to_string();
        self.blocking(move |inner| inner.content.info(&digest))
            .await
    }

    /// The downloads not yet committed.
    pub async fn ingests(&self) -> Result<Vec<IngestInfo>> {
        self.blocking(|inner| inner.content.ingests()).await
    }

    /// Removes blobs nothing refers to; a blob an image or a live lease holds is refused,
    /// naming who holds it.
    pub async fn content_remove(&self, digests: Vec<String>) -> Result<()> {
        self.blocking(move |inner| gc::remove_content(inner, &digests))
            .await
    }
}

impl Inner {
    /// The service's runtime, started on first use (two workers, a blocking pool of 8).
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let _starting = poisoned(&self.starting);
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("corral-images")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the image service's runtime", e))?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    pub(crate) fn change<T>(&self, f: impl FnOnce(&mut store::Db) -> Result<T>) -> Result<T> {
        poisoned(&self.meta).change(f)
    }

    pub(crate) fn with_meta<T>(&self, f: impl FnOnce(&Metadata) -> T) -> T {
        f(&poisoned(&self.meta))
    }

    pub(crate) fn publish(&self, namespace: &str, topic: Topic, name: &str) {
        if let Some(events) = &self.events {
            events.do_send(Publish {
                event: Event::about(namespace, topic, name),
                mark: None,
            });
        }
    }

    /// Records a namespace implicitly (a container, image or lease was made in it); only
    /// an explicit `namespace create` publishes `/namespaces/create`, as in containerd.
    fn ensure_namespace(&self, ns: &str) -> Result<()> {
        self.change(|db| Ok(db.ensure_namespace(ns)))?;
        poisoned(&self.known_namespaces).insert(ns.to_string());
        Ok(())
    }

    fn image_exists(&self, ns: &str, name: &str) -> bool {
        self.with_meta(|m| m.db.images.get(ns).is_some_and(|i| i.contains_key(name)))
    }

    /// The image `name` names in `ns`: the exact name, else its normalized form
    /// (`busybox` is `docker.io/library/busybox:latest`).
    pub(crate) fn find_image(&self, ns: &str, name: &str) -> Result<(String, ImageRecord)> {
        let normalized = crate::registry::normalize(name).ok();
        self.with_meta(|m| {
            let images = m.db.images.get(ns);
            let exact = images
                .and_then(|i| i.get(name))
                .map(|r| (name.to_string(), r.clone()));
            exact
                .or_else(|| {
                    let n = normalized.as_ref()?;
                    images
                        .and_then(|i| i.get(n))
                        .map(|r| (n.clone(), r.clone()))
                })
                .ok_or_else(|| Error::NotFound(format!("image {name} in namespace {ns}")))
        })
    }

    /// Records (or repoints) an image and tells subscribers.
    pub(crate) fn put_image(
        &self,
        ns: &str,
        name: &str,
        target: Descriptor,
        labels: BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let (record, topic) = self.change(|db| {
            db.ensure_namespace(ns);
            let now = now_ns();
            let images = db.images.entry(ns.to_string()).or_default();
            let (record, topic) = match images.get(name) {
                Some(old) if old.target == target && old.labels == labels => (old.clone(), None),
                Some(old) => (
                    ImageRecord {
                        target,
                        labels,
                        created_ns: old.created_ns,
                        updated_ns: now,
                    },
                    Some(Topic::ImageUpdate),
                ),
                None => (
                    ImageRecord {
                        target,
                        labels,
                        created_ns: now,
                        updated_ns: now,
                    },
                    Some(Topic::ImageCreate),
                ),
            };
            images.insert(name.to_string(), record.clone());
            Ok((record, topic))
        })?;
        if let Some(topic) = topic {
            self.publish(ns, topic, name);
        }
        Ok(record)
    }

    fn inspect(&self, ns: &str, name: &str, platform: Option<Platform>) -> Result<ImageDetail> {
        let (name, r) = self.find_image(ns, name)?;
        let info = image_info(&name, &r, walk::size(&self.content, &r.target));
        let top = self.content.read_document(&r.target.digest)?;
        let explicit = platform.is_some();
        let want = platform.unwrap_or_else(Platform::host);
        let (index, manifest_desc, picked) = if is_index(&r.target.media_type) {
            let entries = walk::children(&r.target.media_type, &top, &name)?;
            let stored = |e: &&walk::Child| self.content.contains(&e.desc.digest);
            let matching = entries
                .iter()
                .filter(stored)
                .find(|e| e.platform.as_ref().is_some_and(|p| want.matches(p)));
            if explicit && matching.is_none() {
                return Err(Error::NotFound(format!(
                    "no {want} manifest of image {name} is in the content store"
                )));
            }
            let entry = matching
                .or_else(|| entries.iter().find(stored))
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no manifest of image {name} is in the content store"
                    ))
                })?;
            (
                Some(String::from_utf8_lossy(&top).into_owned()),
                entry.descriptor(),
                entry.platform.clone(),
            )
        } else {
            (None, r.target.clone(), None)
        };
        let manifest = self.content.read_document(&manifest_desc.digest)?;
        let kids = walk::children(&manifest_desc.media_type, &manifest, &name)?;
        let config_desc = kids
            .first()
            .ok_or_else(|| Error::Corrupt(format!("manifest of {name} has no config")))?;
        let config = self.content.read_document(config_desc.digest())?;
        let platform = picked.or_else(|| {
            let v: serde_json::Value = serde_json::from_slice(&config).ok()?;
            Some(Platform {
                os: v.get("os")?.as_str()?.to_string(),
                architecture: v.get("architecture")?.as_str()?.to_string(),
                variant: v
                    .get("variant")
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string(),
            })
        });
        Ok(ImageDetail {
            info,
            index,
            manifest: String::from_utf8_lossy(&manifest).into_owned(),
            config: String::from_utf8_lossy(&config).into_owned(),
            platform,
        })
    }
}
