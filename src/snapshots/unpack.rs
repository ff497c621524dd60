//! Applying a layer: a tar stream (plain, gzip or zstd, as its media type says) written
//! into a snapshot's `fs` directory, in overlay form.
//!
//! - The uncompressed stream is hashed as it is read, the end-of-archive blocks and any
//!   padding after them included: that is the layer's diff id, checked against the image
//!   config's `rootfs.diff_ids[i]` after the last byte (`Corrupt` naming both digests).
//! - Whiteouts: `.wh.NAME` becomes an overlay whiteout (a 0:0 character device) at `NAME`,
//!   `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory. For a bottom
//!   layer (no lower dirs) there is nothing to hide: a whiteout only removes what the
//!   layer itself had there, and an opaque marker is skipped. Other `.wh..wh.*` (aufs
//!   bookkeeping) are skipped.
//! - Nothing escapes the target: a path with `..` or an absolute path is refused, every
//!   directory on the way to an entry is checked with lstat (a symlink there, planted by an
//!   earlier entry or a lower layer, is refused: entries are never written through one),
//!   the entry itself is replaced (never opened through a symlink), and a hard link may
//!   only point at an earlier entry of the same tree. Symlinks are kept as they are.
//! - Owners (lchown, when running as root), modes (with setuid bits, after the owner),
//!   mtimes (directories' at the end) and `SCHILY.xattr.*` xattrs are kept; PAX `uid`,
//!   `gid` and `mtime` win over the header's. `trusted.overlay.*` xattrs in a layer are
//!   dropped (a layer cannot forge overlay metadata). Device nodes are made with mknod.
//! - A directory missing on the way to an entry is made like the lower layers' one (mode
//!   and owner), else 0755 root.
//! - A full disk is `NoSpace` naming the layer; the caller removes the half-written
//!   snapshot.

use crate::error::{Error, Result};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The opaque marker of a directory (AUFS' name, the OCI layer spec's).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The prefix of a whiteout's name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The xattr overlayfs reads to hide the lower layers' content of a directory.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one member or several).
    Gzip,
    /// zstd (one frame or several; skippable frames skipped).
    Zstd,
}

impl Compression {
    /// What a layer media type says: OCI's `...tar`, `...tar+gzip`, `...tar+zstd`
    /// (non-distributable ones too) and Docker's `...diff.tar.gzip`, `...diff.tar`.
    pub fn of_media_type(media_type: &str) -> Result<Compression> {
        let m = media_type;
        if m.ends_with("tar+gzip") || m.ends_with("tar.gzip") {
            Ok(Compression::Gzip)
        } else if m.ends_with("tar+zstd") || m.ends_with("tar.zstd") {
            Ok(Compression::Zstd)
        } else if m.ends_with(".tar") || m.ends_with("layer.v1.tar") {
            Ok(Compression::None)
        } else {
            Err(Error::InvalidArgument(format!(
                "layer media type {media_type:?} cannot be unpacked: only tar, tar+gzip and \
                 tar+zstd layers are supported"
            )))
        }
    }
}

/// The chain ids of a stack of layers (OCI image spec): `chainID(L0) = diffID(L0)`,
/// `chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => crate::content::digest_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The layer being applied.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a> {
    /// Its blob's digest (named in errors).
    pub digest: &'a str,
    /// Its blob's media type (the compression).
    pub media_type: &'a str,
    /// The diff id the uncompressed tar must hash to (the config's `rootfs.diff_ids[i]`);
    /// `None`: not checked.
    pub diff_id: Option<&'a str>,
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub bytes: u64,
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
}

/// Applies the layer `blob` to `target` (a snapshot's `fs`, empty or holding what earlier
/// failed attempts left is the caller's business), whose lower dirs are `lowers` (nearest
/// first; empty for a bottom layer).
pub fn apply(blob: impl Read, target: &Path, lowers: &[PathBuf], layer: &Layer) -> Result<Applied> {
    let compression = Compression::of_media_type(layer.media_type)?;
    let raw = BufReader::with_capacity(1 << 17, blob);
    let plain: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(ZstdFrames::new(raw)),
    };
    let mut hashing = Hashing {
        inner: plain,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut applier = Applier::new(target, lowers, layer.digest);
    let mut entries = 0;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let iter = archive.entries().map_err(|e| applier.read_error(e))?;
        for entry in iter {
            let mut entry = entry.map_err(|e| applier.read_error(e))?;
            applier.entry(&mut entry)?;
            entries += 1;
        }
    }
    // The rest of the stream (end-of-archive blocks, padding) is part of the diff id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| applier.read_error(e))?;
    applier.finish()?;
    let diff_id = format!(
        "sha256:{}",
        crate::content::hex(&hashing.hasher.finalize_reset())
    );
    if let Some(expected) = layer.diff_id {
        if expected != diff_id {
            return Err(Error::Corrupt(format!(
                "layer {}: its uncompressed content has digest {diff_id}, but the image \
                 config's rootfs.diff_ids says {expected}",
                layer.digest
            )));
        }
    }
    Ok(Applied {
        diff_id,
        bytes: hashing.bytes,
        entries,
    })
}

/// A reader that hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Every frame of a zstd stream, decoded by ruzstd (pure Rust).
struct ZstdFrames<R> {
    source: R,
    decoder: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
    frames: u64,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        ZstdFrames {
            source,
            decoder: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
            frames: 0,
        }
    }
}

fn zstd_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    if self.frames == 0 {
                        return Err(zstd_error("empty stream"));
                    }
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => {
                        self.in_frame = true;
                        self.frames += 1;
                    }
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let want = u64::from(length);
                        let skipped =
                            io::copy(&mut (&mut self.source).take(want), &mut io::sink())?;
                        if skipped != want {
                            return Err(zstd_error("truncated skippable frame"));
                        }
                        continue;
                    }
                    Err(e) => return Err(zstd_error(e)),
                }
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let more = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(more))
                    .map_err(zstd_error)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                self.in_frame = false;
            }
        }
    }
}

/// What a tar entry says about itself, PAX records applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'a> {
    root: &'a Path,
    lowers: &'a [PathBuf],
    layer: &'a str,
    as_root: bool,
    /// Relative paths known to be real directories of the target.
    dirs: HashSet<PathBuf>,
    /// Directories' mtimes, set at the end (their entries change them meanwhile).
    dir_times: Vec<(PathBuf, TimeSpec)>,
    buf: Vec<u8>,
}

fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A PAX time, `SECONDS[.FRACTION]`.
fn parse_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10)? as i64;
        nanos += d * 10i64.pow(8 - i as u32);
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Sets an xattr of `path` (not following a symlink).
pub(crate) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; value is a valid
    // buffer of value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl<'a> Applier<'a> {
    fn new(root: &'a Path, lowers: &'a [PathBuf], layer: &'a str) -> Self {
        Applier {
            root,
            lowers,
            layer,
            as_root: nix::unistd::geteuid().is_root(),
            dirs: HashSet::new(),
            dir_times: Vec::new(),
            buf: vec![0; 1 << 17],
        }
    }

    fn corrupt(&self, path: &Path, why: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!(
            "layer {}: entry {}: {why}",
            self.layer,
            path.display()
        ))
    }

    /// A failure to read the layer: its tar or compression is broken, or the blob cannot
    /// be read.
    fn read_error(&self, e: io::Error) -> Error {
        if e.raw_os_error().is_some() {
            Error::io(format!("layer {}: read", self.layer), e)
        } else {
            Error::Corrupt(format!("layer {}: {e}", self.layer))
        }
    }

    /// A failure to write what the layer holds (`NoSpace` on a full disk).
    fn write_error(&self, rel: &Path, what: &str, e: io::Error) -> Error {
        Error::io(format!("layer {}: {what} {}", self.layer, rel.display()), e)
    }

    /// A path of the archive, relative: `.` and empty components dropped, `..` and
    /// absolute paths refused.
    fn relative(&self, raw: &[u8], what: &str) -> Result<PathBuf> {
        if raw.first() == Some(&b'/') {
            return Err(Error::Corrupt(format!(
                "layer {}: {what} {}: absolute paths are refused",
                self.layer,
                shown(raw)
            )));
        }
        let mut out = PathBuf::new();
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    return Err(Error::Corrupt(format!(
                        "layer {}: {what} {}: '..' in a path is refused",
                        self.layer,
                        shown(raw)
                    )))
                }
                c => out.push(OsStr::from_bytes(c)),
            }
        }
        Ok(out)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, rel: &Path) -> Result<Meta> {
        let bad = |e: io::Error| self.corrupt(rel, format!("bad header: {e}"));
        let h = entry.header();
        let mode = h.mode().map_err(bad)? & 0o7777;
        let mut uid = h.uid().map_err(bad)?;
        let mut gid = h.gid().map_err(bad)?;
        let mut mtime = TimeSpec::new(h.mtime().map_err(bad)? as i64, 0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let (k, v) = (ext.key_bytes(), ext.value_bytes());
                match k {
                    b"uid" => uid = parse_num(v).ok_or_else(|| self.corrupt(rel, "bad PAX uid"))?,
                    b"gid" => gid = parse_num(v).ok_or_else(|| self.corrupt(rel, "bad PAX gid"))?,
                    b"mtime" => {
                        mtime = parse_time(v).ok_or_else(|| self.corrupt(rel, "bad PAX mtime"))?
                    }
                    _ => {
                        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                            xattrs.push((name.to_vec(), v.to_vec()));
                        }
                    }
                }
            }
        }
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| self.corrupt(rel, format!("{what} {v} is too large")))
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
            xattrs,
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let rel = self.relative(&raw, "entry")?;
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            // The root itself (`./`): the snapshot's own directory stays as it is.
            return Ok(());
        };
        let (name, parent) = (name.to_owned(), parent.to_path_buf());
        let meta = self.meta(entry, &rel)?;
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                return self.opaque(&parent);
            }
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
                return Ok(()); // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs)
            }
            return self.whiteout(&parent.join(OsStr::from_bytes(hidden)), &meta);
        }
        self.ensure_dirs(&parent, &rel)?;
        let full = self.root.join(&rel);
        match kind {
            T::Directory => {
                if !self.clear(&rel, true)? {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .map_err(|e| self.write_error(&rel, "create", e))?;
                }
                self.dirs.insert(rel.clone());
                self.owner(&full, &rel, &meta)?;
                self.mode(&full, &rel, meta.mode)?;
                self.xattrs(&full, &rel, &meta)?;
                self.dir_times.push((rel, meta.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(&rel, false)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&full)
                    .map_err(|e| self.write_error(&rel, "create", e))?;
                let mut buf = std::mem::take(&mut self.buf);
                let copied = (|| loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.read_error(e)),
                    };
                    file.write_all(&buf[..n])
                        .map_err(|e| self.write_error(&rel, "write", e))?;
                })();
                self.buf = buf;
                copied?;
                self.owner(&full, &rel, &meta)?;
                file.set_permissions(fs::Permissions::from_mode(meta.mode))
                    .map_err(|e| self.write_error(&rel, "chmod", e))?;
                drop(file);
                self.xattrs(&full, &rel, &meta)?;
                self.times(&full, &rel, meta.mtime)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.corrupt(&rel, "a symlink without a target"))?
                    .into_owned();
                self.clear(&rel, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                    .map_err(|e| self.write_error(&rel, "symlink", e))?;
                self.owner(&full, &rel, &meta)?;
                self.xattrs(&full, &rel, &meta)?;
                self.times(&full, &rel, meta.mtime)?;
            }
            T::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.corrupt(&rel, "a hard link without a target"))?
                    .into_owned();
                let target = self.relative(&raw_target, "hard link target")?;
                if target.as_os_str().is_empty() {
                    return Err(self.corrupt(&rel, "a hard link to the root"));
                }
                self.check_dirs(target.parent().unwrap_or(Path::new("")), &rel)?;
                let tfull = self.root.join(&target);
                match fs::symlink_metadata(&tfull) {
                    Ok(m) if m.is_dir() => {
                        return Err(self.corrupt(
                            &rel,
                            format!("a hard link to the directory {}", target.display()),
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(self.corrupt(
                            &rel,
                            format!(
                                "a hard link to {}, which no earlier entry of the layer made",
                                target.display()
                            ),
                        ))
                    }
                    Err(e) => return Err(self.write_error(&target, "stat", e)),
                }
                if target == rel {
                    return Ok(());
                }
                self.clear(&rel, false)?;
                fs::hard_link(&tfull, &full).map_err(|e| self.write_error(&rel, "link", e))?;
            }
            T::Char | T::Block | T::Fifo => {
                let kind_flag = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                self.clear(&rel, false)?;
                nix::sys::stat::mknod(
                    &full,
                    kind_flag,
                    Mode::from_bits_truncate(meta.mode & 0o777),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| self.write_error(&rel, "mknod", io::Error::from(e)))?;
                self.owner(&full, &rel, &meta)?;
                self.mode(&full, &rel, meta.mode)?;
                self.xattrs(&full, &rel, &meta)?;
                self.times(&full, &rel, meta.mtime)?;
            }
            other => {
                return Err(self.corrupt(&rel, format!("unsupported entry type {other:?}")));
            }
        }
        Ok(())
    }

    /// Removes what is at `rel` (a directory whole), unless it is a directory and
    /// `keep_dir`; whether a directory was kept.
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Result<bool> {
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.write_error(rel, "stat", e)),
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(&full).map_err(|e| self.write_error(rel, "remove", e))?;
                self.dirs.retain(|d| !d.starts_with(rel));
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(&full).map_err(|e| self.write_error(rel, "remove", e))?;
                Ok(false)
            }
        }
    }

    /// Makes sure every component of `rel_dir` is a real directory of the target (made
    /// when missing), never a symlink.
    fn ensure_dirs(&mut self, rel_dir: &Path, entry: &Path) -> Result<()> {
        let mut cur = PathBuf::new();
        for comp in rel_dir.components() {
            cur.push(comp);
            if self.dirs.contains(&cur) {
                continue;
            }
            let full = self.root.join(&cur);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.corrupt(
                        entry,
                        format!(
                            "{} is a symlink: entries are never written through one",
                            cur.display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(self.corrupt(entry, format!("{} is not a directory", cur.display())))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.make_dir_like_lower(&cur, entry)?
                }
                Err(e) => return Err(self.write_error(&cur, "stat", e)),
            }
            self.dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// Checks, without making anything, that `rel_dir` is made of real directories.
    fn check_dirs(&self, rel_dir: &Path, entry: &Path) -> Result<()> {
        let mut cur = PathBuf::new();
        for comp in rel_dir.components() {
            cur.push(comp);
            if self.dirs.contains(&cur) {
                continue;
            }
            match fs::symlink_metadata(self.root.join(&cur)) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(self.corrupt(
                        entry,
                        format!(
                            "its hard link target's directory {} is not a directory of the \
                             layer (missing, or a symlink)",
                            cur.display()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// A directory missing from this layer on the way to an entry: made as the nearest
    /// lower layer has it (mode, owner, mtime), else 0755.
    fn make_dir_like_lower(&mut self, rel: &Path, entry: &Path) -> Result<()> {
        let mut like = None;
        for lower in self.lowers {
            match fs::symlink_metadata(lower.join(rel)) {
                Ok(m) if m.is_dir() => {
                    like = Some(m);
                    break;
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.corrupt(
                        entry,
                        format!(
                            "{} is a symlink in a lower layer: entries are never written \
                             through one",
                            rel.display()
                        ),
                    ))
                }
                // A file or a whiteout: what is below it is hidden.
                Ok(_) => break,
                Err(_) => continue,
            }
        }
        let full = self.root.join(rel);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&full)
            .map_err(|e| self.write_error(rel, "create", e))?;
        if let Some(m) = like {
            let meta = Meta {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: TimeSpec::new(m.mtime(), m.mtime_nsec()),
                xattrs: Vec::new(),
            };
            self.owner(&full, rel, &meta)?;
            self.mode(&full, rel, meta.mode)?;
            self.dir_times.push((rel.to_path_buf(), meta.mtime));
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, meta: &Meta) -> Result<()> {
        self.ensure_dirs(rel.parent().unwrap_or(Path::new("")), rel)?;
        self.clear(rel, false)?;
        if self.lowers.is_empty() {
            return Ok(()); // a bottom layer: nothing below to hide
        }
        let full = self.root.join(rel);
        nix::sys::stat::mknod(&full, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| self.write_error(rel, "make the whiteout", io::Error::from(e)))?;
        self.owner(&full, rel, meta)
    }

    fn opaque(&mut self, rel_dir: &Path) -> Result<()> {
        if self.lowers.is_empty() {
            return Ok(());
        }
        self.ensure_dirs(rel_dir, &rel_dir.join(OPAQUE_MARKER))?;
        set_xattr(
            &self.root.join(rel_dir),
            OVERLAY_OPAQUE_XATTR.as_bytes(),
            b"y",
        )
        .map_err(|e| self.write_error(rel_dir, "mark opaque", e))
    }

    fn owner(&self, full: &Path, rel: &Path, meta: &Meta) -> Result<()> {
        if !self.as_root {
            return Ok(());
        }
        std::os::unix::fs::lchown(full, Some(meta.uid), Some(meta.gid))
            .map_err(|e| self.write_error(rel, "chown", e))
    }

    fn mode(&self, full: &Path, rel: &Path, mode: u32) -> Result<()> {
        fs::set_permissions(full, fs::Permissions::from_mode(mode))
            .map_err(|e| self.write_error(rel, "chmod", e))
    }

    fn xattrs(&self, full: &Path, rel: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if name.starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Err(e) = set_xattr(full, name, value) {
                match e.raw_os_error() {
                    // The filesystem has no such xattrs, or not on this kind of file
                    // (user.* on a symlink).
                    Some(libc::ENOTSUP) | Some(libc::EPERM) => tracing::warn!(
                        "layer {}: {}: xattr {} not kept: {e}",
                        self.layer,
                        rel.display(),
                        shown(name)
                    ),
                    _ => return Err(self.write_error(rel, "set an xattr on", e)),
                }
            }
        }
        Ok(())
    }

    fn times(&self, full: &Path, rel: &Path, mtime: TimeSpec) -> Result<()> {
        nix::sys::stat::utimensat(
            None,
            full,
            &mtime,
            &mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.write_error(rel, "set the times of", io::Error::from(e)))
    }

    fn finish(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (rel, mtime) in dirs.iter().rev() {
            // A directory replaced later by a file keeps that file's own time.
            if !self.dirs.contains(rel) {
                continue;
            }
            self.times(&self.root.join(rel), rel, *mtime)?;
        }
        Ok(())
    }
}
