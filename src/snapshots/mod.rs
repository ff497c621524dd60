//! Snapshots: the overlayfs directories that image layers are unpacked into and that
//! containers' root filesystems will be mounted from, after containerd's overlay
//! snapshotter.
//!
//! A snapshot is a directory `<data>/snapshots/overlayfs/<n>/` (`fs/`, and `work/` for an
//! active one), numbered so that paths stay short and many layers fit in one overlay mount.
//! Its record (name, kind, parent, times) is in `<data>/snapshots/metadata.json`, rewritten
//! atomically on every change. A snapshot is named by a key (containerd's): layers are
//! committed under their chain id, `extract-<chain id>` is the active snapshot a layer is
//! unpacked into, and later a container's root will be an active snapshot of its own.
//!
//! - **Active**: writable. Its mounts are a read-write bind of its `fs` when it has no
//!   parent, else an overlay: `lowerdir=` its parents' `fs` (nearest first), `upperdir=`
//!   its `fs`, `workdir=` its `work`.
//! - **View**: read-only. A read-only bind of its parent's `fs` (of its own empty `fs` with
//!   no parent), an overlay of lowerdirs only with several parents.
//! - **Committed**: read-only for good, a parent for others; never mounted itself.
//!
//! An active overlay snapshot may be **idmapped** ([`Snapshotter::prepare_idmapped`], for
//! a container with a user namespace): its record keeps the id maps and its overlay mount
//! carries `uidmap=`/`gidmap=` options, from which [`mount()`] mounts its lower dirs through
//! idmapped clones (`idmap.rs`); whether that works here is probed once
//! ([`Snapshotter::idmap_support`]).
//!
//! **Native** snapshots (containerd's `native` snapshotter, for hosts without overlayfs):
//! an active snapshot or a view prepared with [`Flavor::Native`] has in its `fs` a full
//! copy of its parents' merged view (`native.rs` flattens the chain, whiteouts and opaque
//! directories applied), and its mounts are one bind of that `fs` (`rw`; a view's `ro`).
//! The committed chain stays as unpacked (overlay-style upper dirs) for both: only the
//! native prepare copies. A native snapshot cannot be committed (it is no upper dir), and
//! its dir sits under `overlayfs/` with the others; its record says `"flavor": "native"`
//! (no field: overlay). The copy is made under the record lock, so other snapshot calls
//! wait for it.
//!
//! Everything here is synchronous file I/O and mount(2), called from blocking threads.
//! One process owns a data dir (`Images::open` holds its lock); a [`Snapshotter`] is
//! opened once and cloned.

pub mod diff;
pub mod idmap;
mod mount;
pub(crate) mod mountinfo;
pub(crate) mod native;
pub mod unpack;

use mount::check_mount_data;
pub use mount::{mount, unmount, unmount_or_detach};

#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::types::now_ns;
use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The directory of the snapshot dirs, under the snapshotter's root.
pub const OVERLAY_DIR: &str = "overlayfs";

/// A native snapshot's stamp, beside its `fs`, written when its copy is done: what the
/// copy holds with an older ctime is as the parents have it ([`diff::Writable::Native`]).
const COPIED_STAMP: &str = "copied";

/// The metadata file, under the snapshotter's root.
pub const METADATA_FILE: &str = "metadata.json";

/// The most bytes of options one mount(2) takes: one page, with its NUL.
pub const MAX_MOUNT_DATA: usize = 4095;

/// What a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable (a layer being unpacked, a container's root).
    Active,
    /// Read-only, on a committed parent.
    View,
    /// Read-only for good; what others are prepared on.
    Committed,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        })
    }
}

/// How a snapshot is laid out and mounted: the snapshotter it is of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// overlayfs: its `fs` is an upper dir over its parents' (`overlayfs`).
    #[default]
    Overlay,
    /// A full copy of its parents' merged view, bind mounted (`native`).
    Native,
}

impl Flavor {
    fn is_overlay(&self) -> bool {
        *self == Flavor::Overlay
    }

    /// The flavor of a snapshotter's name (`native`; anything else: overlay).
    pub fn of_snapshotter(name: &str) -> Flavor {
        if name == crate::types::SNAPSHOTTER_NATIVE {
            Flavor::Native
        } else {
            Flavor::Overlay
        }
    }
}

/// Whether `/proc/filesystems` (its text) lists overlayfs.
pub fn lists_overlay(filesystems: &str) -> bool {
    filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// The snapshotter of an image run that names none: `overlayfs` if the kernel has it
/// (listed in `/proc/filesystems`, or loaded by a trial overlay mount in `scratch`, which
/// is made and removed), else `native`.
pub fn default_snapshotter(scratch: &Path) -> &'static str {
    let listed = || fs::read_to_string("/proc/filesystems").is_ok_and(|t| lists_overlay(&t));
    if listed() || (trial_overlay_mount(scratch) && listed()) {
        crate::types::SNAPSHOTTER_OVERLAYFS
    } else {
        crate::types::SNAPSHOTTER_NATIVE
    }
}

/// Mounts an overlay of empty dirs in `scratch` (which the kernel loads the module for)
/// and unmounts it; whether it mounted. `scratch` is removed after.
fn trial_overlay_mount(scratch: &Path) -> bool {
    let made = (|| -> std::io::Result<()> {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(scratch.join(d))?;
        }
        Ok(())
    })();
    let mounted = made.is_ok() && {
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            scratch.join("lower").display(),
            scratch.join("upper").display(),
            scratch.join("work").display()
        );
        let target = scratch.join("merged");
        let ok = nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .is_ok();
        if ok {
            let _ = unmount_or_detach(&target);
        }
        ok
    };
    let _ = fs::remove_dir_all(scratch);
    mounted
}

/// A snapshot as answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Its key (a committed layer's: its chain id).
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The committed snapshot it is on.
    pub parent: Option<String>,
    /// Its directory's number: `<root>/overlayfs/<id>`.
    pub id: u64,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// Nanoseconds since the epoch (a commit updates it).
    pub updated_ns: u64,
    /// Overlay or native.
    #[serde(default)]
    pub flavor: Flavor,
    /// The id maps its lower dirs are mounted through (an idmapped snapshot of a
    /// container with a user namespace; see `idmap.rs`).
    #[serde(default)]
    pub idmap: Option<idmap::IdMapping>,
}

/// What a snapshot's own `fs` directory holds (its parents not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes on disk (blocks × 512), each inode once.
    pub size: u64,
    /// Inodes (files, directories, links...), each once.
    pub inodes: u64,
}

/// One mount, as containerd describes it: `kind` `overlay` or `bind`, what to mount, and
/// its options (`ro`, `rw`, `rbind` are flags; the rest is the filesystem's data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `overlay` or `bind`.
    pub kind: String,
    /// What is mounted: `overlay`, or the directory bound.
    pub source: String,
    /// `lowerdir=...`, `upperdir=...`, `workdir=...`, `rbind`, `ro`, `rw`.
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    kind: Kind,
    #[serde(default)]
    parent: Option<String>,
    created_ns: u64,
    updated_ns: u64,
    #[serde(default, skip_serializing_if = "Flavor::is_overlay")]
    flavor: Flavor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idmap: Option<idmap::IdMapping>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Db {
    #[serde(default)]
    version: u32,
    /// The number the next snapshot's directory gets (never reused).
    #[serde(default)]
    next_id: u64,
    #[serde(default)]
    snapshots: BTreeMap<String, Record>,
}

/// The snapshotter (cheap to clone).
#[derive(Clone)]
pub struct Snapshotter {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<data>/snapshots`, canonical.
    root: PathBuf,
    db: Mutex<Db>,
    /// Held by an image unpack from its first layer to its last: unpacks run one at a
    /// time, so an `extract-*` snapshot found is one a crash left.
    unpacking: Mutex<()>,
    /// Whether overlays over idmapped lower dirs work here (probed at first use), else
    /// why not.
    idmap_support: std::sync::OnceLock<std::result::Result<(), String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a snapshot key: not empty, at most 1024 bytes, no control characters. Keys are
/// never paths (directories are numbered), so `/` and `:` are fine.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 || key.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "bad snapshot key {key:?}: 1 to 1024 bytes, no control characters"
        )));
    }
    Ok(())
}

impl Snapshotter {
    /// Opens (creating) the snapshotter at `root` (`<data>/snapshots`). Directories under
    /// `overlayfs/` that no record names (a crash between making one and recording it, or
    /// between forgetting one and removing it) are removed, unless something is mounted
    /// from them.
    pub fn open(root: &Path) -> Result<Snapshotter> {
        let dirs = root.join(OVERLAY_DIR);
        fs::create_dir_all(&dirs)
            .map_err(|e| Error::io(format!("create {}", dirs.display()), e))?;
        let root = fs::canonicalize(root)
            .map_err(|e| Error::io(format!("resolve {}", root.display()), e))?;
        let path = root.join(METADATA_FILE);
        let db = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Db {
                version: 1,
                next_id: 1,
                ..Db::default()
            },
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let s = Snapshotter {
            inner: Arc::new(Inner {
                root,
                db: Mutex::new(db),
                unpacking: Mutex::new(()),
                idmap_support: std::sync::OnceLock::new(),
            }),
        };
        s.remove_orphans();
        Ok(s)
    }

    /// `<data>/snapshots`, canonical.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.inner.root.join(OVERLAY_DIR).join(id.to_string())
    }

    fn remove_orphans(&self) {
        let db = lock(&self.inner.db);
        let known: std::collections::BTreeSet<u64> = db.snapshots.values().map(|r| r.id).collect();
        let dirs = self.inner.root.join(OVERLAY_DIR);
        let Ok(entries) = fs::read_dir(&dirs) else {
            return;
        };
        let table = mountinfo::read().unwrap_or_default();
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if known.contains(&id) {
                continue;
            }
            let dir = entry.path();
            let users = mountinfo::users(&table, &dir);
            if !users.is_empty() {
                tracing::warn!(
                    "snapshot dir {} is recorded nowhere but mounted at {}: left alone",
                    dir.display(),
                    show_paths(&users)
                );
                continue;
            }
            match fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!("removed snapshot dir {} (recorded nowhere)", dir.display())
                }
                Err(e) => tracing::warn!("cannot remove snapshot dir {}: {e}", dir.display()),
            }
        }
    }

    /// Changes the records and saves them; on a failed save nothing changed.
    fn change<T>(db: &mut Db, path: &Path, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let mut next = db.clone();
        let out = f(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| Error::Internal(e.to_string()))?;
        crate::images::store::write_atomic(path, &bytes)?;
        *db = next;
        Ok(out)
    }

    fn metadata_path(&self) -> PathBuf {
        self.inner.root.join(METADATA_FILE)
    }

    /// A new active (writable) snapshot `key` on the committed `parent`; its mounts.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(Kind::Active, Flavor::Overlay, key, parent, None)
    }

    /// A new active overlay snapshot `key` on `parent` whose lower dirs are mounted
    /// idmapped by `mapping` (its mounts carry `uidmap=` and `gidmap=`; see `idmap.rs`);
    /// its mounts. Its upper dir is not idmapped: the caller chowns it.
    pub fn prepare_idmapped(
        &self,
        key: &str,
        parent: Option<&str>,
        mapping: idmap::IdMapping,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, Flavor::Overlay, key, parent, Some(mapping))
    }

    /// Whether overlays over idmapped lower dirs work for this snapshotter (the kernel,
    /// the data dir's filesystem), else why not: tried once, in `<root>/idmap-probe` (made
    /// and removed), at the first call, and logged.
    pub fn idmap_support(&self) -> &std::result::Result<(), String> {
        self.inner.idmap_support.get_or_init(|| {
            let answer = idmap::probe(&self.inner.root.join("idmap-probe"));
            match &answer {
                Ok(()) => tracing::info!(
                    "idmapped mounts work here: the rootfs of a container with a user \
                     namespace is an overlay over idmapped layers"
                ),
                Err(why) => tracing::warn!(
                    "no idmapped mounts here ({why}): the rootfs of a container with a user \
                     namespace is a chowned copy of its image"
                ),
            }
            answer
        })
    }

    /// A new read-only view `key` of the committed `parent`; its mounts.
    pub fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(Kind::View, Flavor::Overlay, key, parent, None)
    }

    /// [`Snapshotter::prepare`] of the given flavor: a native one's `fs` is a copy of
    /// `parent`'s merged view, made now.
    pub fn prepare_as(
        &self,
        flavor: Flavor,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, flavor, key, parent, None)
    }

    /// [`Snapshotter::view`] of the given flavor.
    pub fn view_as(&self, flavor: Flavor, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(Kind::View, flavor, key, parent, None)
    }

    fn create(
        &self,
        kind: Kind,
        flavor: Flavor,
        key: &str,
        parent: Option<&str>,
        idmap: Option<idmap::IdMapping>,
    ) -> Result<Vec<Mount>> {
        check_key(key)?;
        let mut db = lock(&self.inner.db);
        if db.snapshots.contains_key(key) {
            return Err(Error::AlreadyExists(format!("snapshot {key}")));
        }
        if let Some(p) = parent {
            match db.snapshots.get(p) {
                None => return Err(Error::NotFound(format!("parent snapshot {p}"))),
                Some(r) if r.kind != Kind::Committed => {
                    return Err(Error::InvalidArgument(format!(
                        "parent snapshot {p} is {}: only a committed snapshot can be a parent",
                        r.kind
                    )))
                }
                Some(_) => {}
            }
        }
        let id = db.next_id.max(1);
        let now = now_ns();
        let record = Record {
            id,
            kind,
            parent: parent.map(str::to_string),
            created_ns: now,
            updated_ns: now,
            flavor,
            idmap,
        };
        let lowers = self.chain(&db, parent)?;
        // Refused before anything is made when its mount could not be done.
        let mounts = self.mounts_for(key, &record, &lowers)?;
        let dir = self.dir(id);
        let make = || -> std::io::Result<()> {
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            let mut b = fs::DirBuilder::new();
            b.mode(0o700).create(&dir)?;
            b.mode(0o755).create(dir.join("fs"))?;
            if kind == Kind::Active && flavor == Flavor::Overlay {
                b.mode(0o711).create(dir.join("work"))?;
            }
            Ok(())
        };
        make().map_err(|e| Error::io(format!("create snapshot dir {}", dir.display()), e))?;
        if flavor == Flavor::Native {
            let layers: Vec<PathBuf> = lowers.iter().map(|id| self.dir(*id).join("fs")).collect();
            let copied = native::flatten(&layers, &dir.join("fs")).and_then(|()| {
                write_stamp(&dir.join(COPIED_STAMP))
                    .map_err(|e| Error::io(format!("write {}/{COPIED_STAMP}", dir.display()), e))
            });
            if let Err(e) = copied {
                let _ = fs::remove_dir_all(&dir);
                return Err(e.context(&format!("native snapshot {key}")));
            }
        }
        let saved = Self::change(&mut db, &self.metadata_path(), |db| {
            db.next_id = id + 1;
            db.snapshots.insert(key.to_string(), record);
            Ok(())
        });
        if let Err(e) = saved {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(mounts)
    }

    /// The ids of `parent` and its ancestors, nearest first.
    fn chain(&self, db: &Db, parent: Option<&str>) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut next = parent.map(str::to_string);
        while let Some(name) = next {
            let r = db.snapshots.get(&name).ok_or_else(|| {
                Error::Corrupt(format!("snapshot metadata: parent {name} is not recorded"))
            })?;
            out.push(r.id);
            if out.len() > db.snapshots.len() {
                return Err(Error::Corrupt(format!(
                    "snapshot metadata: the parents of {name} loop"
                )));
            }
            next = r.parent.clone();
        }
        Ok(out)
    }

    fn fs_path(&self, id: u64) -> String {
        self.dir(id).join("fs").display().to_string()
    }

    fn mounts_for(&self, key: &str, r: &Record, lowers: &[u64]) -> Result<Vec<Mount>> {
        let shown = self.inner.root.display().to_string();
        if shown.contains([':', ',', '\\']) || shown.chars().any(char::is_whitespace) {
            return Err(Error::InvalidArgument(format!(
                "snapshot dir {shown}: overlay mount options cannot name a path with ':', ',', \
                 '\\' or white space; choose another --data-dir"
            )));
        }
        let lowerdir = || {
            let dirs: Vec<String> = lowers.iter().map(|id| self.fs_path(*id)).collect();
            format!("lowerdir={}", dirs.join(":"))
        };
        let bind = |source: String, mode: &str| Mount {
            kind: "bind".into(),
            source,
            options: vec!["rbind".into(), mode.into()],
        };
        let mounts = match (r.kind, lowers) {
            (Kind::Committed, _) => {
                return Err(Error::InvalidArgument(format!(
                    "snapshot {key} is committed: prepare or view a snapshot on it to mount it"
                )))
            }
            (Kind::Active, _) if r.flavor == Flavor::Native => vec![bind(self.fs_path(r.id), "rw")],
            (Kind::View, _) if r.flavor == Flavor::Native => vec![bind(self.fs_path(r.id), "ro")],
            (Kind::Active, []) => vec![bind(self.fs_path(r.id), "rw")],
            (Kind::Active, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: [
                    lowerdir(),
                    format!("upperdir={}", self.fs_path(r.id)),
                    format!("workdir={}", self.dir(r.id).join("work").display()),
                ]
                .into_iter()
                .chain(r.idmap.iter().flat_map(idmap::IdMapping::options))
                .collect(),
            }],
            (Kind::View, []) => vec![bind(self.fs_path(r.id), "ro")],
            (Kind::View, [only]) => vec![bind(self.fs_path(*only), "ro")],
            (Kind::View, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![lowerdir()],
            }],
        };
        for m in &mounts {
            check_mount_data(m)
                .map_err(|e| e.context(&format!("snapshot {key} ({} layers)", lowers.len())))?;
        }
        Ok(mounts)
    }

    /// The mounts of an active snapshot or a view.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        let lowers = self.chain(&db, r.parent.as_deref())?;
        self.mounts_for(key, r, &lowers)
    }

    /// A snapshot's own directory, `fs` (the upper dir of an active one with parents).
    pub fn fs_dir(&self, key: &str) -> Result<PathBuf> {
        let db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        Ok(self.dir(r.id).join("fs"))
    }

    /// The `fs` directories of a snapshot's parents, nearest first (its lower dirs).
    pub fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        let db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        Ok(self
            .chain(&db, r.parent.as_deref())?
            .into_iter()
            .map(|id| self.dir(id).join("fs"))
            .collect())
    }

    /// The changes of the active snapshot `key`, to be written as a layer: its upper dir,
    /// or for a native one its copy, parents and `copied` stamp.
    pub fn writable(&self, key: &str) -> Result<diff::Writable> {
        let db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        let dir = self.dir(r.id);
        if r.flavor.is_overlay() {
            return Ok(diff::Writable::Upper(dir.join("fs")));
        }
        let layers = self.chain(&db, r.parent.as_deref())?;
        Ok(diff::Writable::Native {
            fs: dir.join("fs"),
            layers: layers
                .into_iter()
                .map(|id| self.dir(id).join("fs"))
                .collect(),
            copied: fs::symlink_metadata(dir.join(COPIED_STAMP))
                .ok()
                .map(|m| (m.ctime(), m.ctime_nsec())),
        })
    }

    /// Applies a layer to the active snapshot `key`: into its upper dir (overlay), or for a
    /// native one laid over its copy (the layer is applied to a staging upper dir beside
    /// it, then merged in as the copy was made, whiteouts removing names). The staging dir
    /// is removed either way.
    pub fn apply_layer(
        &self,
        key: &str,
        blob: impl std::io::Read,
        layer: &unpack::Layer,
    ) -> Result<unpack::Applied> {
        let flavor = self.stat(key)?.flavor;
        let fs_dir = self.fs_dir(key)?;
        let lowers = self.parent_dirs(key)?;
        if flavor.is_overlay() {
            return unpack::apply(blob, &fs_dir, &lowers, layer);
        }
        let stage = fs_dir.with_file_name("stage");
        let _ = fs::remove_dir_all(&stage);
        let applied = fs::DirBuilder::new()
            .mode(0o700)
            .create(&stage)
            .map_err(|e| Error::io(format!("create {}", stage.display()), e))
            .and_then(|()| unpack::apply(blob, &stage, &lowers, layer))
            .and_then(|applied| native::lay_over(&stage, &fs_dir).map(|()| applied));
        if let Err(e) = fs::remove_dir_all(&stage) {
            tracing::warn!("snapshot {key}: cannot remove {}: {e}", stage.display());
        }
        applied
    }

    /// Commits the active snapshot `key` as `name` (read-only from then on). Refused while
    /// it is mounted.
    pub fn commit(&self, name: &str, key: &str) -> Result<()> {
        check_key(name)?;
        let mut db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        if r.kind != Kind::Active {
            return Err(Error::InvalidArgument(format!(
                "snapshot {key} is {}: only an active snapshot can be committed",
                r.kind
            )));
        }
        if r.flavor == Flavor::Native {
            return Err(Error::InvalidArgument(format!(
                "snapshot {key} is native (a full copy, not a layer): only an overlayfs \
                 snapshot can be committed"
            )));
        }
        if db.snapshots.contains_key(name) {
            return Err(Error::AlreadyExists(format!("snapshot {name}")));
        }
        let users = mountinfo::users(&mountinfo::read()?, &self.dir(r.id));
        if !users.is_empty() {
            return Err(Error::WrongState(format!(
                "snapshot {key} is mounted at {}: unmount it before committing it",
                show_paths(&users)
            )));
        }
        Self::change(&mut db, &self.metadata_path(), |db| {
            let mut r = db
                .snapshots
                .remove(key)
                .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
            r.kind = Kind::Committed;
            r.updated_ns = now_ns();
            db.snapshots.insert(name.to_string(), r);
            Ok(())
        })
    }

    /// Removes a snapshot and its directory. Refused while it has children (named) and
    /// while anything is mounted from it (in this process's mount namespace).
    pub fn remove(&self, key: &str) -> Result<()> {
        let mut db = lock(&self.inner.db);
        let r = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))?;
        let id = r.id;
        let children: Vec<&str> = db
            .snapshots
            .iter()
            .filter(|(_, c)| c.parent.as_deref() == Some(key))
            .map(|(n, _)| n.as_str())
            .collect();
        if !children.is_empty() {
            let shown: Vec<&str> = children.iter().take(5).copied().collect();
            let more = if children.len() > 5 { ", ..." } else { "" };
            return Err(Error::WrongState(format!(
                "snapshot {key} has {} children ({}{more}): remove them first",
                children.len(),
                shown.join(", ")
            )));
        }
        let dir = self.dir(id);
        let users = mountinfo::users(&mountinfo::read()?, &dir);
        if !users.is_empty() {
            return Err(Error::WrongState(format!(
                "snapshot {key} is mounted at {}: unmount it first",
                show_paths(&users)
            )));
        }
        Self::change(&mut db, &self.metadata_path(), |db| {
            db.snapshots.remove(key);
            Ok(())
        })?;
        drop(db);
        // Forgotten first: a directory left by a failure here is an orphan, removed at the
        // next open.
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("snapshot {key}: cannot remove {}: {e}", dir.display());
            }
        }
        Ok(())
    }

    /// One snapshot.
    pub fn stat(&self, key: &str) -> Result<Info> {
        let db = lock(&self.inner.db);
        db.snapshots
            .get(key)
            .map(|r| info(key, r))
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))
    }

    /// Every snapshot, by name.
    pub fn list(&self) -> Result<Vec<Info>> {
        let db = lock(&self.inner.db);
        Ok(db.snapshots.iter().map(|(k, r)| info(k, r)).collect())
    }

    /// What a snapshot's own `fs` holds: bytes on disk and inodes, hard links once; mounts
    /// below it are not entered.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let fs_dir = self.fs_dir(key)?;
        disk_usage(&fs_dir)
    }

    /// Held by an image unpack from its first layer to its last.
    pub(crate) fn unpack_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.inner.unpacking)
    }
}

/// Writes the empty file `path` with a ctime newer than that of anything written before
/// the call. File times come from the kernel's coarse clock (a tick of a few
/// milliseconds), so a copy that took less than a tick has the ctime a stamp written right
/// after it would get: the stamp is made again until its ctime has moved on (a tick or
/// two, at most a second).
pub(crate) fn write_stamp(path: &Path) -> std::io::Result<()> {
    let ctime = |p: &Path| fs::symlink_metadata(p).map(|m| (m.ctime(), m.ctime_nsec()));
    let _ = fs::remove_file(path);
    fs::write(path, b"")?;
    let first = ctime(path)?;
    for _ in 0..1000 {
        std::thread::sleep(Duration::from_millis(1));
        fs::remove_file(path)?;
        fs::write(path, b"")?;
        if ctime(path)? > first {
            return Ok(());
        }
    }
    Err(std::io::Error::other(
        "the file clock did not move in a second",
    ))
}

fn info(name: &str, r: &Record) -> Info {
    Info {
        name: name.to_string(),
        kind: r.kind,
        parent: r.parent.clone(),
        id: r.id,
        created_ns: r.created_ns,
        updated_ns: r.updated_ns,
        flavor: r.flavor,
        idmap: r.idmap.clone(),
    }
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn disk_usage(dir: &Path) -> Result<Usage> {
    let top =
        fs::symlink_metadata(dir).map_err(|e| Error::io(format!("stat {}", dir.display()), e))?;
    let dev = top.dev();
    let mut seen = std::collections::HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![(dir.to_path_buf(), top)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
            continue;
        }
        usage.inodes += 1;
        usage.size += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        let entries =
            fs::read_dir(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            let p = entry.path();
            let m = fs::symlink_metadata(&p)
                .map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
            if m.dev() == dev {
                stack.push((p, m));
            }
        }
    }
    Ok(usage)
}
