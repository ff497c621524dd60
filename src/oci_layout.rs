//! OCI image layouts as tar files, streamed both ways: a blob goes from a file on disk into
//! the tar (and from the tar into a file) through a hasher, so memory never grows with a
//! blob's size, and every blob read back is checked against its digest while it streams.

use crate::content::hex;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The largest JSON document (index, manifest, config) read into memory.
pub const MAX_JSON: u64 = 1 << 20;

/// A blob: its media type, `sha256:<hex>` digest and size (the one descriptor type).
pub use crate::types::Descriptor;

impl Descriptor {
    /// The descriptor of bytes in memory.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", hex(&Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }

    /// As OCI JSON (`mediaType`, `digest`, `size`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        })
    }

    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, flushed, and the `sha256:<hex>` digest and size of what was written.
    pub fn finish(mut self) -> io::Result<(W, String, u64)> {
        self.inner.flush()?;
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        Ok((self.inner, digest, self.len))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where a blob's bytes are, for the writer.
pub enum Source {
    /// In memory (small JSON documents).
    Bytes(Vec<u8>),
    /// In a file, streamed.
    File(PathBuf),
}

/// Writes `<file>`: `oci-layout`, `index.json` (with `index`'s manifests) and each blob
/// under `blobs/sha256/`, streaming file blobs. `mtime` (seconds) stamps every entry.
pub fn write_tar(
    file: &Path,
    index: &serde_json::Value,
    blobs: Vec<(Descriptor, Source)>,
    mtime: u64,
) -> io::Result<u64> {
    let out = File::create(file)?;
    let mut tarball = tar::Builder::new(BufWriter::new(out));
    let header = |size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_cksum();
        h
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tarball.append_data(&mut header(layout.len() as u64), "oci-layout", &layout[..])?;
    let index = serde_json::to_vec_pretty(index).map_err(io::Error::other)?;
    tarball.append_data(&mut header(index.len() as u64), "index.json", &index[..])?;
    for (desc, source) in blobs {
        let path = format!("blobs/sha256/{}", desc.hex());
        match source {
            Source::Bytes(bytes) => {
                tarball.append_data(&mut header(bytes.len() as u64), path, &bytes[..])?
            }
            Source::File(p) => {
                let f = File::open(&p)?;
                let size = f.metadata()?.len();
                if size != desc.size {
                    return Err(io::Error::other(format!(
                        "{} changed while it was exported",
                        p.display()
                    )));
                }
                tarball.append_data(&mut header(size), path, f)?
            }
        }
    }
    let mut writer = tarball.into_inner()?;
    writer.flush()?;
    drop(writer);
    Ok(fs::metadata(file)?.len())
}

/// An OCI layout read from a tar into a staging directory: its index, and each blob as a
/// file named by its digest's hex, every one checked against its digest.
pub struct StagedLayout {
    /// The staging directory (removed when this is dropped).
    pub dir: PathBuf,
    /// `index.json`.
    pub index: serde_json::Value,
}

impl StagedLayout {
    /// The staged file of a blob (`sha256:<hex>`), if the tar had it.
    pub fn blob(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        is_hex_digest(hex)
            .then(|| self.dir.join(hex))
            .filter(|p| p.is_file())
    }

    /// A small JSON blob, parsed (refused past [`MAX_JSON`]).
    pub fn json(&self, digest: &str) -> Result<serde_json::Value, String> {
        let path = self
            .blob(digest)
            .ok_or_else(|| format!("missing blob {digest}"))?;
        read_json(File::open(&path).map_err(|e| e.to_string())?)
            .map_err(|e| format!("blob {digest}: {e}"))
    }
}

impl Drop for StagedLayout {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reads an OCI layout tar, streaming each blob into `staging` (created, and removed again
/// on failure) through a hasher; a blob whose digest does not match is an error naming it.
pub fn read_tar(file: &Path, staging: &Path) -> Result<StagedLayout, String> {
    fs::create_dir_all(staging).map_err(|e| format!("create {}: {e}", staging.display()))?;
    let mut staged = StagedLayout {
        dir: staging.to_path_buf(),
        index: serde_json::Value::Null,
    };
    let f = File::open(file).map_err(|e| e.to_string())?;
    let mut index = None;
    let mut archive = tar::Archive::new(f);
    for entry in archive.entries().map_err(|e| format!("not a tar: {e}"))? {
        let mut entry = entry.map_err(|e| format!("not a tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./");
        if path == "index.json" {
            index = Some(read_json(&mut entry).map_err(|e| format!("index.json: {e}"))?);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            if !is_hex_digest(hex) {
                return Err(format!("{path:?} is not a sha256 blob name"));
            }
            let out = File::create(staging.join(hex)).map_err(|e| e.to_string())?;
            let mut sink = Hashing::new(BufWriter::new(out));
            io::copy(&mut entry, &mut sink).map_err(|e| format!("blob {hex}: {e}"))?;
            let (_, digest, _) = sink.finish().map_err(|e| e.to_string())?;
            if digest != format!("sha256:{hex}") {
                return Err(format!("blob {hex} does not match its digest"));
            }
        }
    }
    staged.index = index.ok_or("no index.json: not an OCI image layout")?;
    Ok(staged)
}

fn read_json(reader: impl Read) -> Result<serde_json::Value, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(format!("larger than {MAX_JSON} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_round_trips_and_a_bad_blob_is_named() {
        let root = std::env::temp_dir().join(format!("corral-layout-tar-{}", crate::now_ns()));
        fs::create_dir_all(&root).unwrap();
        let big = root.join("big");
        let mut w = Hashing::new(File::create(&big).unwrap());
        for i in 0..1000u32 {
            w.write_all(&i.to_le_bytes().repeat(256)).unwrap();
        }
        let (_, digest, size) = w.finish().unwrap();
        let big_desc = Descriptor {
            media_type: "application/x-big".into(),
            digest: digest.clone(),
            size,
        };
        let small = Descriptor::of("application/json", b"{\"a\":1}");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [small.json()]});
        let tarball = root.join("out.tar");
        write_tar(
            &tarball,
            &index,
            vec![
                (small.clone(), Source::Bytes(b"{\"a\":1}".to_vec())),
                (big_desc, Source::File(big.clone())),
            ],
            0,
        )
        .unwrap();
        let staged = read_tar(&tarball, &root.join("staging")).unwrap();
        assert_eq!(
            staged.index["manifests"][0]["digest"],
            small.digest.as_str()
        );
        assert_eq!(staged.json(&small.digest).unwrap()["a"], 1);
        let back = staged.blob(&digest).unwrap();
        assert_eq!(fs::read(back).unwrap(), fs::read(&big).unwrap());
        assert!(staged.blob("sha256:../../etc/passwd").is_none());
        drop(staged);
        assert!(
            !root.join("staging").exists(),
            "staging goes with the layout"
        );

        // A blob whose bytes do not match its name.
        let forged = root.join("forged.tar");
        let mut b = tar::Builder::new(File::create(&forged).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_cksum();
        b.append_data(
            &mut h,
            format!("blobs/sha256/{}", "0".repeat(64)),
            &b"abc"[..],
        )
        .unwrap();
        b.finish().unwrap();
        let e = read_tar(&forged, &root.join("staging2")).err().unwrap();
        assert!(e.contains("does not match"), "{e}");
        fs::remove_dir_all(root).unwrap();
    }
}
