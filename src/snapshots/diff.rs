//! A writable snapshot's upper dir turned back into an OCI layer: the inverse of
//! [`super::unpack::apply`], for checkpoints that carry a container's writable layer.
//!
//! - An overlay whiteout (a 0:0 character device) at `NAME` becomes an empty `.wh.NAME`;
//!   a directory with `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry inside it.
//! - Owners, modes (setuid bits included), mtimes (seconds) and xattrs (as PAX
//!   `SCHILY.xattr.*`; overlay's own `trusted.overlay.*` left out) are kept; a file with
//!   several links inside the dir is written once and then as hard links to that first
//!   path. Symlinks are kept as they are, devices and fifos as such.
//! - Entries are written in name order, so the same tree gives the same bytes.
//!
//! A native snapshot (a full copy, see `native.rs`) has no upper dir: its changes are found
//! against its parents' merged view, computed from their dirs without copying anything.
//! An entry is written when the parents do not have it, have it as another kind (directory
//! or not), or when its ctime is not older than the snapshot's `copied` stamp (made when
//! the copy was done; nothing can set a ctime back, so anything the container wrote,
//! chmod'ed or linked since is newer); the parents' entries it lacks become whiteouts.
//! Unchanged directories on the way to a change are written before it.
//!
//! The tar is hashed as it is written: its digest is its diff id (it is not compressed).

use super::unpack::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::oci_layout::{Descriptor, Hashing};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The media type of the layer written: an uncompressed OCI layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// A writable snapshot's changes, as [`crate::snapshots::Snapshotter::writable`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writable {
    /// An overlay upper dir: all of it is the change.
    Upper(PathBuf),
    /// A native snapshot: its full copy `fs`, its parents' dirs (nearest first), and the
    /// ctime (seconds, nanoseconds) of its `copied` stamp (`None`: not known, so every
    /// entry counts as changed).
    Native {
        /// The copy.
        fs: PathBuf,
        /// The parents' `fs` dirs, nearest first.
        layers: Vec<PathBuf>,
        /// When the copy was finished.
        copied: Option<(i64, i64)>,
    },
}

impl Writable {
    /// Writes the changes as an OCI layer tar to `out`; answers its descriptor. On failure
    /// `out` is removed.
    pub fn write_diff(&self, out: &Path) -> Result<Descriptor> {
        let (root, native) = match self {
            Writable::Upper(upper) => (upper.as_path(), None),
            Writable::Native { fs, layers, copied } => {
                let lower = merged(layers)
                    .map_err(|e| Error::io(format!("read the parents of {}", fs.display()), e))?;
                let native = NativeDiff {
                    lower,
                    copied: *copied,
                    pending: Vec::new(),
                };
                (fs.as_path(), Some(native))
            }
        };
        let what = || format!("write the diff of {} to {}", root.display(), out.display());
        let file = fs::File::create(out).map_err(|e| Error::io(what(), e))?;
        let mut writer = DiffWriter {
            root,
            tar: tar::Builder::new(Hashing::new(BufWriter::new(file))),
            links: HashMap::new(),
            native,
        };
        let written = (|| {
            writer.dir(root)?;
            let (_, digest, size) = writer.tar.into_inner()?.finish()?;
            Ok::<_, io::Error>(Descriptor {
                media_type: LAYER_MEDIA_TYPE.to_string(),
                digest,
                size,
            })
        })();
        written.map_err(|e| {
            let _ = fs::remove_file(out);
            Error::io(what(), e)
        })
    }
}

/// Writes the upper dir `upper` as an OCI layer tar to `out`; answers its descriptor.
pub fn write_diff(upper: &Path, out: &Path) -> Result<Descriptor> {
    Writable::Upper(upper.to_path_buf()).write_diff(out)
}

/// The merged view of overlay-style `layers` (nearest first): every path in it, and
/// whether it is a directory. Whiteouts remove a name and what is under it; an opaque
/// directory hides what was under its name below; a non-directory hides what was under it.
fn merged(layers: &[PathBuf]) -> io::Result<BTreeMap<PathBuf, bool>> {
    fn walk(root: &Path, rel: &Path, view: &mut BTreeMap<PathBuf, bool>) -> io::Result<()> {
        for entry in fs::read_dir(root.join(rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path())?;
            let ft = meta.file_type();
            let whiteout = ft.is_char_device() && meta.rdev() == 0;
            let keep_below = ft.is_dir()
                && view.get(&rel) == Some(&true)
                && get_xattr(&entry.path(), OVERLAY_OPAQUE_XATTR)?.as_deref() != Some(b"y");
            if !keep_below {
                let below: Vec<PathBuf> = descendants(view, &rel).map(|(p, _)| p.clone()).collect();
                for p in below {
                    view.remove(&p);
                }
            }
            if whiteout {
                view.remove(&rel);
                continue;
            }
            view.insert(rel.clone(), ft.is_dir());
            if ft.is_dir() {
                walk(root, &rel, view)?;
            }
        }
        Ok(())
    }
    let mut view = BTreeMap::new();
    for layer in layers.iter().rev() {
        walk(layer, Path::new(""), &mut view)?;
    }
    Ok(view)
}

/// The entries under `dir` in `view` (paths order component by component, so they follow
/// `dir` together).
fn descendants<'a>(
    view: &'a BTreeMap<PathBuf, bool>,
    dir: &'a Path,
) -> impl Iterator<Item = (&'a PathBuf, &'a bool)> + 'a {
    use std::ops::Bound;
    let from = if dir.as_os_str().is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(dir.to_path_buf())
    };
    view.range((from, Bound::Unbounded))
        .take_while(move |(p, _)| p.starts_with(dir))
}

/// What a native snapshot's diff needs besides the tree.
struct NativeDiff {
    /// The parents' merged view.
    lower: BTreeMap<PathBuf, bool>,
    /// The `copied` stamp's ctime.
    copied: Option<(i64, i64)>,
    /// Unchanged directories being walked: (relative path, path, written yet).
    pending: Vec<(PathBuf, PathBuf, bool)>,
}

impl NativeDiff {
    /// Whether `rel` is as the copy left it: the parents have it, as the same kind, and
    /// its ctime is older than the stamp.
    fn unchanged(&self, rel: &Path, meta: &fs::Metadata) -> bool {
        let Some(copied) = self.copied else {
            return false;
        };
        self.lower.get(rel) == Some(&meta.is_dir()) && (meta.ctime(), meta.ctime_nsec()) < copied
    }

    /// The names the parents have in directory `rel` (a directory there too).
    fn lower_names(&self, rel: &Path) -> Vec<std::ffi::OsString> {
        if !rel.as_os_str().is_empty() && self.lower.get(rel) != Some(&true) {
            return Vec::new();
        }
        descendants(&self.lower, rel)
            .filter(|(p, _)| p.parent() == Some(rel))
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_os_string()))
            .collect()
    }
}

struct DiffWriter<'a, W: Write> {
    root: &'a Path,
    tar: tar::Builder<W>,
    /// (dev, inode) of files with several links, and the first path written for them.
    links: HashMap<(u64, u64), PathBuf>,
    /// For a native snapshot: its parents' view and stamp.
    native: Option<NativeDiff>,
}

impl<W: Write> DiffWriter<'_, W> {
    fn dir(&mut self, dir: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        if self.native.is_some() {
            self.native_whiteouts(dir, &names)?;
        }
        for name in names {
            let path = dir.join(&name);
            let rel = path
                .strip_prefix(self.root)
                .map_err(io::Error::other)?
                .to_path_buf();
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if let Some(native) = &mut self.native {
                if native.unchanged(&rel, &meta) {
                    if ft.is_dir() {
                        native.pending.push((rel, path.clone(), false));
                        self.dir(&path)?;
                        if let Some(n) = &mut self.native {
                            n.pending.pop();
                        }
                    }
                    continue;
                }
                self.flush_pending()?;
            } else if ft.is_char_device() && meta.rdev() == 0 {
                let mut whiteout = rel.clone();
                let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                whiteout.set_file_name(wh);
                let mut h = header(&meta, tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                self.tar.append_data(&mut h, whiteout, io::empty())?;
                continue;
            }
            self.xattrs(&path)?;
            if ft.is_dir() {
                let mut h = header(&meta, tar::EntryType::Directory);
                self.tar.append_data(&mut h, &rel, io::empty())?;
                if get_xattr(&path, OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                    let mut h = header(&meta, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    self.tar
                        .append_data(&mut h, rel.join(OPAQUE_MARKER), io::empty())?;
                }
                self.dir(&path)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let mut h = header(&meta, tar::EntryType::Symlink);
                self.tar.append_link(&mut h, &rel, target)?;
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut h = header(&meta, tar::EntryType::Link);
                        self.tar.append_link(&mut h, &rel, first)?;
                        continue;
                    }
                    self.links.insert(key, rel.clone());
                }
                let mut h = header(&meta, tar::EntryType::Regular);
                h.set_size(meta.len());
                self.tar.append_data(&mut h, &rel, fs::File::open(&path)?)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    // Sockets have no tar form (and no meaning once their process is gone).
                    continue;
                };
                let mut h = header(&meta, kind);
                let dev = meta.rdev();
                h.set_device_major(libc::major(dev))?;
                h.set_device_minor(libc::minor(dev))?;
                self.tar.append_data(&mut h, &rel, io::empty())?;
            }
        }
        Ok(())
    }

    /// Whiteouts for the names the parents have in `dir` and the copy no longer does.
    fn native_whiteouts(&mut self, dir: &Path, names: &[std::ffi::OsString]) -> io::Result<()> {
        let rel = dir.strip_prefix(self.root).map_err(io::Error::other)?;
        let Some(native) = &self.native else {
            return Ok(());
        };
        let mut gone: Vec<_> = native
            .lower_names(rel)
            .into_iter()
            .filter(|n| names.binary_search(n).is_err())
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        gone.sort();
        self.flush_pending()?;
        let meta = fs::symlink_metadata(dir)?;
        for name in gone {
            let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
            wh.push(&name);
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o644);
            self.tar.append_data(&mut h, rel.join(wh), io::empty())?;
        }
        Ok(())
    }

    /// Writes the unchanged directories above what is written next, once each.
    fn flush_pending(&mut self) -> io::Result<()> {
        let Some(native) = &mut self.native else {
            return Ok(());
        };
        let todo: Vec<(PathBuf, PathBuf)> = native
            .pending
            .iter_mut()
            .filter(|(_, _, written)| !*written)
            .map(|(rel, path, written)| {
                *written = true;
                (rel.clone(), path.clone())
            })
            .collect();
        for (rel, path) in todo {
            let meta = fs::symlink_metadata(&path)?;
            self.xattrs(&path)?;
            let mut h = header(&meta, tar::EntryType::Directory);
            self.tar.append_data(&mut h, &rel, io::empty())?;
        }
        Ok(())
    }

    /// A PAX header with the xattrs of `path` (but overlay's own), for the entry after it.
    fn xattrs(&mut self, path: &Path) -> io::Result<()> {
        let mut records = Vec::new();
        for name in list_xattrs(path)? {
            if name.starts_with(b"trusted.overlay.") {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&name) else {
                continue;
            };
            if let Some(value) = get_xattr(path, text)? {
                records.extend(pax_record(&format!("SCHILY.xattr.{text}"), &value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.tar.append(&h, &records[..])
    }
}

/// A tar header with `meta`'s owner, mode and mtime.
fn header(meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_size(0);
    h
}

/// One PAX record: `<len> <key>=<value>\n`, its length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = c_path(path)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: p is NUL-terminated; buf is valid for buf.len() bytes.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: both strings are NUL-terminated; buf is valid for buf.len() bytes.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::unpack::{apply, Layer};
    use std::os::unix::fs::PermissionsExt;

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        crate::snapshots::unpack::set_xattr(path, name.as_bytes(), value).unwrap();
    }

    /// An overlay upper dir (whiteout, opaque dir, hard links, a setuid file owned by
    /// someone else with an xattr, a symlink, a fifo) written as a layer and applied over
    /// the same lower again gives the same upper dir.
    #[test]
    fn an_upper_dir_round_trips_through_its_layer() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (mknod, trusted.* xattrs, chown)");
            return;
        }
        let base = std::env::temp_dir().join(format!("corral-diff-{}", crate::now_ns()));
        let (upper, lower, back) = (base.join("upper"), base.join("lower"), base.join("back"));
        for d in [&upper, &lower, &back] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::write(lower.join("d/old"), b"old").unwrap();
        fs::write(lower.join("gone"), b"gone").unwrap();

        fs::write(upper.join("a"), b"hello").unwrap();
        std::os::unix::fs::chown(upper.join("a"), Some(1000), Some(1001)).unwrap();
        fs::set_permissions(upper.join("a"), fs::Permissions::from_mode(0o4750)).unwrap();
        set_xattr(&upper.join("a"), "user.corral", b"yes");
        fs::hard_link(upper.join("a"), upper.join("b")).unwrap();
        std::os::unix::fs::symlink("a", upper.join("s")).unwrap();
        nix::unistd::mkfifo(
            &upper.join("p"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir(upper.join("d")).unwrap();
        set_xattr(&upper.join("d"), OVERLAY_OPAQUE_XATTR, b"y");
        fs::write(upper.join("d/new"), b"new").unwrap();

        let tar = base.join("layer.tar");
        let desc = write_diff(&upper, &tar).unwrap();
        assert_eq!(desc.size, fs::metadata(&tar).unwrap().len());
        let again = write_diff(&upper, &base.join("again.tar")).unwrap();
        assert_eq!(again.digest, desc.digest, "the same tree, the same bytes");
        let layer = Layer {
            digest: &desc.digest,
            media_type: &desc.media_type,
            diff_id: Some(&desc.digest),
        };
        let lowers = vec![lower.clone()];
        apply(fs::File::open(&tar).unwrap(), &back, &lowers, &layer).unwrap();

        let a = fs::symlink_metadata(back.join("a")).unwrap();
        assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (1000, 1001, 0o4750));
        assert_eq!(fs::read(back.join("a")).unwrap(), b"hello");
        assert_eq!(
            get_xattr(&back.join("a"), "user.corral").unwrap().unwrap(),
            b"yes"
        );
        assert_eq!(fs::symlink_metadata(back.join("b")).unwrap().ino(), a.ino());
        assert_eq!(fs::read_link(back.join("s")).unwrap(), Path::new("a"));
        assert!(fs::symlink_metadata(back.join("p"))
            .unwrap()
            .file_type()
            .is_fifo());
        let gone = fs::symlink_metadata(back.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        assert_eq!(
            get_xattr(&back.join("d"), OVERLAY_OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(fs::read(back.join("d/new")).unwrap(), b"new");
        assert!(!back.join("d/old").exists() && !back.join(".wh.gone").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    /// Every path under `root` with its kind, mode and content (or link target).
    fn tree(root: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let m = fs::symlink_metadata(&path).unwrap();
                let (kind, data) = if m.is_dir() {
                    todo.push(path.clone());
                    ("dir", Vec::new())
                } else if m.file_type().is_symlink() {
                    let t = fs::read_link(&path).unwrap();
                    ("symlink", t.as_os_str().as_bytes().to_vec())
                } else {
                    ("file", fs::read(&path).unwrap())
                };
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, (kind.to_string(), m.mode() & 0o7777, data));
            }
        }
        out
    }

    /// A native copy changed every way a container can (a file rewritten, one added, one
    /// and a directory deleted, a directory replaced by a file, a mode changed, a new
    /// directory) gives a layer holding just those changes, which laid over the same parents
    /// gives the same tree back.
    #[test]
    fn a_native_copys_changes_round_trip_through_its_layer() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (mknod, trusted.* xattrs)");
            return;
        }
        let base = std::env::temp_dir().join(format!("corral-ndiff-{}", crate::now_ns()));
        let (l1, l2, copy, up, back) = (
            base.join("l1"),
            base.join("l2"),
            base.join("copy"),
            base.join("up"),
            base.join("back"),
        );
        for d in [&l1, &l2, &copy, &up, &back] {
            fs::create_dir_all(d).unwrap();
        }
        for dir in ["d", "dir2", "rep", "deep/er"] {
            fs::create_dir_all(l1.join(dir)).unwrap();
        }
        for (f, text) in [
            ("d/a", "1"),
            ("d/b", "b"),
            ("gone", "g"),
            ("keep", "k"),
            ("mode", "m"),
            ("dir2/x", "x"),
            ("rep/y", "y"),
            ("deep/er/z", "z"),
        ] {
            fs::write(l1.join(f), text).unwrap();
        }
        fs::create_dir_all(l2.join("d")).unwrap();
        fs::write(l2.join("d/a"), "2").unwrap();
        nix::sys::stat::mknod(
            &l2.join("d/b"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let layers = vec![l2.clone(), l1.clone()];
        crate::snapshots::native::flatten(&layers, &copy).unwrap();
        let stamp = base.join("copied");
        crate::snapshots::write_stamp(&stamp).unwrap();
        let m = fs::metadata(&stamp).unwrap();
        let copied = Some((m.ctime(), m.ctime_nsec()));

        fs::write(copy.join("d/a"), "3").unwrap();
        fs::write(copy.join("new"), "new").unwrap();
        fs::remove_file(copy.join("gone")).unwrap();
        fs::remove_dir_all(copy.join("dir2")).unwrap();
        fs::remove_dir_all(copy.join("rep")).unwrap();
        fs::write(copy.join("rep"), "now a file").unwrap();
        fs::set_permissions(copy.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir_all(copy.join("nd")).unwrap();
        fs::write(copy.join("nd/f"), "f").unwrap();
        fs::write(copy.join("deep/er/z"), "zz").unwrap();

        let writable = Writable::Native {
            fs: copy.clone(),
            layers: layers.clone(),
            copied,
        };
        let tar = base.join("layer.tar");
        let desc = writable.write_diff(&tar).unwrap();
        let mut names: Vec<String> = tar::Archive::new(fs::File::open(&tar).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        let expected = [
            ".wh.dir2",
            ".wh.gone",
            "d",
            "d/a",
            "deep",
            "deep/er",
            "deep/er/z",
            "mode",
            "nd",
            "nd/f",
            "new",
            "rep",
        ];
        assert_eq!(names, expected, "the layer holds just the changes");

        let layer = Layer {
            digest: &desc.digest,
            media_type: &desc.media_type,
            diff_id: Some(&desc.digest),
        };
        apply(fs::File::open(&tar).unwrap(), &up, &layers, &layer).unwrap();
        let all = vec![up.clone(), l2.clone(), l1.clone()];
        crate::snapshots::native::flatten(&all, &back).unwrap();
        assert_eq!(tree(&back), tree(&copy));

        // Without a stamp every entry counts as changed: a bigger layer, the same tree.
        let unstamped = Writable::Native {
            fs: copy.clone(),
            layers: layers.clone(),
            copied: None,
        };
        let whole = unstamped.write_diff(&base.join("whole.tar")).unwrap();
        assert!(whole.size > desc.size);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record("SCHILY.xattr.user.a", b"yes");
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        let long = pax_record("k", &[b'x'; 95]);
        let text = String::from_utf8(long.clone()).unwrap();
        assert_eq!(
            text.split_once(' ').unwrap().0.parse::<usize>().unwrap(),
            long.len()
        );
    }
}
