//! The metadata of the data dir: namespaces, images, leases and container records, in one
//! JSON file (`<data>/metadata.json`) rewritten atomically (temporary file, fsync, rename,
//! fsync of the directory) on every change, so a crash leaves either the old or the new file.

use crate::error::{Error, Result};
use crate::types::{now_ns, ContainerMeta, Descriptor, ImageInfo, LeaseInfo, NamespaceInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One namespace's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    #[serde(default)]
    pub created_ns: u64,
}

/// One image's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// What it points at.
    pub target: Descriptor,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// Nanoseconds since the epoch.
    pub updated_ns: u64,
}

/// One lease's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_ns: u64,
    /// When it lapses; `None`: never.
    pub expires_ns: Option<u64>,
    /// Blobs it holds.
    #[serde(default)]
    pub content: BTreeSet<String>,
    /// Ingests it holds.
    #[serde(default)]
    pub ingests: BTreeSet<String>,
}

impl LeaseRecord {
    /// Whether it still holds what it names at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.expires_ns.is_none_or(|t| t > now)
    }

    /// As answered.
    pub fn info(&self, id: &str) -> LeaseInfo {
        LeaseInfo {
            id: id.to_string(),
            labels: self.labels.clone(),
            created_ns: self.created_ns,
            expires_ns: self.expires_ns,
            content: self.content.iter().cloned().collect(),
            ingests: self.ingests.iter().cloned().collect(),
        }
    }
}

/// Everything in `metadata.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Db {
    /// The file's format version.
    #[serde(default)]
    pub version: u32,
    /// Namespaces by name.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    /// Images by namespace, then name.
    #[serde(default)]
    pub images: BTreeMap<String, BTreeMap<String, ImageRecord>>,
    /// Leases by namespace, then id.
    #[serde(default)]
    pub leases: BTreeMap<String, BTreeMap<String, LeaseRecord>>,
    /// Container records by namespace, then id (absent in files written before them).
    #[serde(default)]
    pub containers: BTreeMap<String, BTreeMap<String, ContainerMeta>>,
}

/// The metadata file and what it holds.
pub struct Metadata {
    path: PathBuf,
    /// What the file holds (the caller saves after changing it).
    pub db: Db,
}

impl Metadata {
    /// Reads `<dir>/metadata.json` (an absent file is an empty store).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("metadata.json");
        let db = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Db {
                version: 1,
                ..Db::default()
            },
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        Ok(Metadata { path, db })
    }

    /// Writes the file anew, atomically.
    pub fn save(&self) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(&self.db).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.path, &bytes)
    }

    /// Changes the store and saves it; on a failed save the change is undone, so memory
    /// and disk agree.
    pub fn change<T>(&mut self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let before = self.db.clone();
        let out = f(&mut self.db)?;
        if let Err(e) = self.save() {
            self.db = before;
            return Err(e);
        }
        Ok(out)
    }
}

impl Db {
    /// Records the namespace if it is not yet (images, leases and containers create it).
    pub fn ensure_namespace(&mut self, name: &str) -> bool {
        if self.namespaces.contains_key(name) {
            return false;
        }
        self.namespaces.insert(
            name.to_string(),
            NamespaceRecord {
                labels: BTreeMap::new(),
                created_ns: now_ns(),
            },
        );
        true
    }

    /// One namespace as answered.
    pub fn namespace_info(&self, name: &str) -> Option<NamespaceInfo> {
        self.namespaces.get(name).map(|r| NamespaceInfo {
            name: name.to_string(),
            labels: r.labels.clone(),
        })
    }

    /// Every lease at `now` that still holds, with its namespace.
    pub fn live_leases(&self, now: u64) -> impl Iterator<Item = (&str, &str, &LeaseRecord)> {
        self.leases.iter().flat_map(move |(ns, leases)| {
            leases
                .iter()
                .filter(move |(_, l)| l.live(now))
                .map(move |(id, l)| (ns.as_str(), id.as_str(), l))
        })
    }
}

/// Replaces the file `path` with `bytes` atomically: `<path>.tmp` (`metadata.json.tmp`),
/// fsync, rename, fsync of the directory. A crash leaves the old file
/// or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// An image record as answered (`size` filled in by the caller).
pub fn image_info(name: &str, r: &ImageRecord, size: u64) -> ImageInfo {
    ImageInfo {
        name: name.to_string(),
        target: r.target.clone(),
        labels: r.labels.clone(),
        created_ns: r.created_ns,
        updated_ns: r.updated_ns,
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written before container records (version 1, no `containers`) still loads;
    /// one with records reads back what was written.
    #[test]
    fn files_without_container_records_load_and_records_round_trip() {
        let dir = std::env::temp_dir().join(format!("corral-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = r#"{"version":1,"namespaces":{"default":{"labels":{},"created_ns":5}},
            "images":{},"leases":{}}"#;
        std::fs::write(dir.join("metadata.json"), old).unwrap();
        let mut meta = Metadata::open(&dir).unwrap();
        assert!(meta.db.containers.is_empty());
        assert_eq!(meta.db.namespaces["default"].created_ns, 5);
        let record = ContainerMeta {
            namespace: "default".into(),
            id: "c1".into(),
            image: Some("demo.local/app:1".into()),
            spec: "{}".into(),
            snapshotter: "overlayfs".into(),
            snapshot_key: "container/default/c1".into(),
            ..ContainerMeta::default()
        };
        meta.change(|db| {
            db.containers
                .entry("default".into())
                .or_default()
                .insert("c1".into(), record.clone());
            Ok(())
        })
        .unwrap();
        let again = Metadata::open(&dir).unwrap();
        assert_eq!(again.db.version, 1);
        assert_eq!(again.db.containers["default"]["c1"], record);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
