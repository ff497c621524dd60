//! The content store: blobs by digest under `<data>/content/blobs/sha256/<hex>`.
//!
//! A blob is written to an ingest first (`<data>/content/ingest/<hex>/data`, with its
//! expected descriptor beside it) and renamed into place only after its size and digest
//! verify, so a blob is never visible half-written. An ingest left by a failed or
//! interrupted download keeps its bytes: the next download of the same digest resumes from
//! them (the bytes already there are hashed again, then the rest is asked for with a Range).
//!
//! Everything here is synchronous file I/O, called from the image service's own threads,
//! never from an actor.

use crate::error::{Error, Result};
use crate::types::{ContentInfo, Descriptor, IngestInfo};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[cfg(test)]
mod tests;

/// The prefix of the keys of ingests whose digest is not known in advance.
pub const UNNAMED: &str = "unnamed-";

/// The largest document (index, manifest, config) read whole into memory.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Checks that `digest` is `sha256:` and 64 lowercase hex digits; returns the hex.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        Error::InvalidArgument(format!(
            "bad digest {digest:?}: only sha256:<64 hex digits> is supported"
        ))
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::InvalidArgument(format!(
            "bad digest {digest:?}: expected sha256:<64 lowercase hex digits>"
        )));
    }
    Ok(hex)
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The blobs on disk.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store at `root` (`<data>/content`).
    pub fn open(root: &Path) -> Result<Self> {
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// Where the blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    fn ingest_dir(&self, key: &str) -> Result<PathBuf> {
        if let Some(name) = key.strip_prefix(UNNAMED) {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Ok(self.root.join("ingest").join(key));
            }
            return Err(Error::InvalidArgument(format!("bad ingest key {key:?}")));
        }
        Ok(self.root.join("ingest").join(digest_hex(key)?))
    }

    /// An ingest for bytes whose digest is not known in advance (an import of a
    /// `docker save` layer): `key` (from [`ContentStore::unnamed_key`]) names it, and
    /// [`Ingest::commit`] files it under the digest it hashes to.
    pub fn ingest_unnamed(&self, key: &str) -> Result<Ingest> {
        if !key.starts_with(UNNAMED) {
            return Err(Error::InvalidArgument(format!("bad ingest key {key:?}")));
        }
        let dir = self.ingest_dir(key)?;
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let data = dir.join("data");
        let file =
            File::create(&data).map_err(|e| Error::io(format!("create {}", data.display()), e))?;
        Ok(Ingest {
            dir,
            data,
            file,
            hasher: Sha256::new(),
            offset: 0,
            expected: Descriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
            },
            blob: self.root.join("blobs/sha256"),
        })
    }

    /// A fresh key for [`ContentStore::ingest_unnamed`].
    pub fn unnamed_key() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{UNNAMED}{}-{}-{}",
            std::process::id(),
            crate::types::now_ns(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Whether the blob is committed.
    pub fn contains(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// One blob.
    pub fn info(&self, digest: &str) -> Result<ContentInfo> {
        let path = self.blob_path(digest)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(ContentInfo {
                digest: digest.to_string(),
                size: m.len(),
                created_ns: mtime_ns(&m),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("content {digest}")))
            }
            Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
        }
    }

    /// Every committed blob, by digest.
    pub fn list(&self) -> Result<Vec<ContentInfo>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        {
            let entry = entry.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let digest = format!("sha256:{name}");
            if digest_hex(&digest).is_err() {
                continue;
            }
            if let Ok(m) = entry.metadata() {
                out.push(ContentInfo {
                    digest,
                    size: m.len(),
                    created_ns: mtime_ns(&m),
                });
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Removes a blob (the caller checked nothing refers to it).
    pub fn delete(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("content {digest}")))
            }
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    /// Opens a committed blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("content {digest}"))
            } else {
                Error::io(format!("open {}", path.display()), e)
            }
        })
    }

    /// Reads a small committed blob (a manifest, an index, a config) whole, checking its
    /// size against [`MAX_DOCUMENT`] and its digest.
    pub fn read_document(&self, digest: &str) -> Result<Vec<u8>> {
        let mut file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("read content {digest}"), e))?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(Error::Corrupt(format!(
                "content {digest} is larger than {MAX_DOCUMENT} bytes: not a manifest, index or config"
            )));
        }
        let actual = digest_of(&bytes);
        if actual != digest {
            return Err(Error::Corrupt(format!(
                "content {digest} on disk has digest {actual}"
            )));
        }
        Ok(bytes)
    }

    /// Commits bytes held in memory (a manifest or config) as the blob `expected`
    /// (checking size and digest); a blob already there is left as it is.
    pub fn write_blob(&self, expected: &Descriptor, bytes: &[u8]) -> Result<()> {
        if self.contains(&expected.digest) {
            return Ok(());
        }
        let mut ingest = self.ingest(expected)?;
        ingest.restart()?;
        ingest.write(bytes)?;
        ingest.commit().map(|_| ())
    }

    /// Opens the ingest for `expected` (creating it, or resuming the bytes an earlier one
    /// left). `expected.size` 0 means the size is not known in advance (an import).
    pub fn ingest(&self, expected: &Descriptor) -> Result<Ingest> {
        let dir = self.ingest_dir(&expected.digest)?;
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let meta = serde_json::to_vec(expected).map_err(|e| Error::Internal(e.to_string()))?;
        fs::write(dir.join("expected"), meta)
            .map_err(|e| Error::io(format!("write {}/expected", dir.display()), e))?;
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data)
            .map_err(|e| Error::io(format!("open {}", data.display()), e))?;
        // Resume: hash what an earlier attempt wrote.
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io(format!("read {}", data.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let mut ingest = Ingest {
            dir,
            data,
            file,
            hasher,
            offset,
            expected: expected.clone(),
            blob: self.blob_path(&expected.digest)?,
        };
        if expected.size > 0 && offset > expected.size {
            ingest.restart()?;
        }
        Ok(ingest)
    }

    /// The ingests on disk (downloads not yet committed).
    pub fn ingests(&self) -> Result<Vec<IngestInfo>> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        {
            let Ok(entry) = entry else { continue };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let expected = fs::read(entry.path().join("expected"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Descriptor>(&b).ok());
            let data = fs::metadata(entry.path().join("data")).ok();
            out.push(IngestInfo {
                key: if name.starts_with(UNNAMED) {
                    name.clone()
                } else {
                    format!("sha256:{name}")
                },
                expected: expected
                    .as_ref()
                    .map_or_else(String::new, |d| d.digest.clone()),
                total: expected.map_or(0, |d| d.size),
                offset: data.as_ref().map_or(0, |m| m.len()),
                updated_ns: data.as_ref().map_or(0, mtime_ns),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes an ingest and its bytes.
    pub fn remove_ingest(&self, key: &str) -> Result<()> {
        let dir = self.ingest_dir(key)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// The bytes the store holds on disk: blobs and ingests.
    pub fn usage(&self) -> u64 {
        let blobs: u64 = self.list().map_or(0, |l| l.iter().map(|c| c.size).sum());
        let ingests: u64 = self
            .ingests()
            .map_or(0, |l| l.iter().map(|i| i.offset).sum());
        blobs + ingests
    }
}

/// One blob being written: hashed and counted as it goes, committed only when it matches.
pub struct Ingest {
    dir: PathBuf,
    data: PathBuf,
    file: File,
    hasher: Sha256,
    offset: u64,
    expected: Descriptor,
    blob: PathBuf,
}

impl Ingest {
    /// Bytes written so far (where a resumed download starts).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// What it is to become.
    pub fn expected(&self) -> &Descriptor {
        &self.expected
    }

    /// Drops what was written and starts again from byte 0 (the source ignored a Range).
    pub fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .map_err(|e| Error::io(format!("truncate {}", self.data.display()), e))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Appends bytes. More bytes than the expected size is [`Error::Corrupt`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.offset + bytes.len() as u64;
        if self.expected.size > 0 && end > self.expected.size {
            return Err(Error::Corrupt(format!(
                "blob {}: more than the {} bytes its descriptor gives",
                self.expected.digest, self.expected.size
            )));
        }
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("write blob {}", self.expected.digest), e))?;
        self.hasher.update(bytes);
        self.offset = end;
        Ok(())
    }

    /// Checks size and digest, then moves the bytes into place. A mismatch removes the
    /// ingest and is [`Error::Corrupt`], naming both digests.
    pub fn commit(self) -> Result<Descriptor> {
        let digest = format!("sha256:{}", hex(&self.hasher.clone().finalize()));
        if self.expected.digest.is_empty() {
            // Unnamed: filed under what it hashed to.
            let blob = self.blob.join(digest_hex(&digest)?);
            let desc = Descriptor {
                media_type: String::new(),
                digest,
                size: self.offset,
            };
            return self.place(&blob).map(|()| desc);
        }
        let wrong_size = self.expected.size > 0 && self.offset != self.expected.size;
        if wrong_size || digest != self.expected.digest {
            let _ = fs::remove_dir_all(&self.dir);
            return Err(Error::Corrupt(if wrong_size {
                format!(
                    "blob {}: got {} bytes, its descriptor gives {}",
                    self.expected.digest, self.offset, self.expected.size
                )
            } else {
                format!(
                    "blob {}: the bytes received have digest {digest}",
                    self.expected.digest
                )
            }));
        }
        let blob = self.blob.clone();
        let desc = Descriptor {
            size: self.offset,
            ..self.expected.clone()
        };
        self.place(&blob).map(|()| desc)
    }

    fn place(self, blob: &Path) -> Result<()> {
        let what = || format!("blob {}", blob.display());
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("sync {}", what()), e))?;
        fs::rename(&self.data, blob).map_err(|e| Error::io(format!("commit {}", what()), e))?;
        if let Some(parent) = blob.parent() {
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        Ok(())
    }
}
