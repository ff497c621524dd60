//! The native snapshotter's copy (containerd's `native`): a parent chain of overlay-style
//! upper dirs merged, bottom-up, into one plain directory, for hosts without overlayfs.
//!
//! Each layer's `fs` is laid over what is there: a 0/0 character device (an overlay
//! whiteout) removes the name below, a directory with `trusted.overlay.opaque=y` replaces
//! the directory below instead of merging with it, anything else replaces what had its
//! name. Owners, modes (setuid bits after the owner), xattrs (`security.capability` too,
//! set after the owner; `trusted.overlay.*` dropped), access and modification times
//! (directories' after their content) and symbolic links are kept; names hard-linked to
//! each other within one layer stay hard links. Device nodes and fifos are made with
//! mknod.

use super::diff::{get_xattr, list_xattrs};
use super::unpack::{set_xattr, OVERLAY_OPAQUE_XATTR};
use crate::error::{Error, Result};
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Merges `layers` (nearest first, as [`super::Snapshotter::parent_dirs`] answers) into
/// `dest`, an existing directory.
pub(crate) fn flatten(layers: &[PathBuf], dest: &Path) -> Result<()> {
    for layer in layers.iter().rev() {
        Copy::new().layer(layer, dest).map_err(copy_error(dest))?;
    }
    Ok(())
}

/// Lays the entries of one overlay-style upper dir `layer` over `dest` as [`flatten`]
/// does, but leaves `dest`'s own owner, mode and times as they are (a staging dir's root
/// is no layer's root).
pub(crate) fn lay_over(layer: &Path, dest: &Path) -> Result<()> {
    Copy::new().dir(layer, dest).map_err(copy_error(dest))
}

fn copy_error(dest: &Path) -> impl FnOnce(Failed) -> Error + '_ {
    move |(path, e)| {
        Error::io(
            format!(
                "copy {} into the native snapshot {}",
                path.display(),
                dest.display()
            ),
            e,
        )
    }
}

type Failed = (PathBuf, io::Error);

fn at(path: &Path) -> impl FnOnce(io::Error) -> Failed + '_ {
    move |e| (path.to_path_buf(), e)
}

struct Copy {
    /// Within one layer: (dev, ino) of a multiply linked file to its first copy.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copy {
    fn new() -> Copy {
        Copy {
            links: HashMap::new(),
        }
    }

    fn layer(&mut self, src: &Path, dest: &Path) -> std::result::Result<(), Failed> {
        let meta = fs::symlink_metadata(src).map_err(at(src))?;
        if is_opaque(src).map_err(at(src))? {
            for entry in fs::read_dir(dest).map_err(at(dest))? {
                remove_any(&entry.map_err(at(dest))?.path())?;
            }
        }
        self.dir(src, dest)?;
        copy_meta(src, dest, &meta)
    }

    /// Lays the entries of directory `src` over directory `dest`.
    fn dir(&mut self, src: &Path, dest: &Path) -> std::result::Result<(), Failed> {
        for entry in fs::read_dir(src).map_err(at(src))? {
            let entry = entry.map_err(at(src))?;
            let from = entry.path();
            let to = dest.join(entry.file_name());
            let meta = fs::symlink_metadata(&from).map_err(at(&from))?;
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                remove_any(&to)?;
                continue;
            }
            if kind.is_dir() {
                let keep = !is_opaque(&from).map_err(at(&from))?
                    && fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
                if !keep {
                    remove_any(&to)?;
                    fs::create_dir(&to).map_err(at(&to))?;
                }
                self.dir(&from, &to)?;
                copy_meta(&from, &to, &meta)?;
                continue;
            }
            remove_any(&to)?;
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, &to).map_err(at(&to))?;
                    continue;
                }
                self.links.insert(key, to.clone());
            }
            if kind.is_file() {
                fs::copy(&from, &to).map_err(at(&from))?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(at(&from))?;
                std::os::unix::fs::symlink(target, &to).map_err(at(&to))?;
            } else {
                let sflag = if kind.is_char_device() {
                    SFlag::S_IFCHR
                } else if kind.is_block_device() {
                    SFlag::S_IFBLK
                } else if kind.is_fifo() {
                    SFlag::S_IFIFO
                } else {
                    SFlag::S_IFSOCK
                };
                nix::sys::stat::mknod(
                    &to,
                    sflag,
                    Mode::from_bits_truncate(meta.mode() & 0o7777),
                    meta.rdev(),
                )
                .map_err(|e| (to.clone(), io::Error::from(e)))?;
            }
            copy_meta(&from, &to, &meta)?;
        }
        Ok(())
    }
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    Ok(get_xattr(dir, OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y".as_slice()))
}

/// Removes `path`, whatever it is; nothing there is fine.
fn remove_any(path: &Path) -> std::result::Result<(), Failed> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err((path.to_path_buf(), e)),
        _ => Ok(()),
    }
}

/// Owner, then mode (a chown clears setuid bits), then xattrs (a chown clears
/// `security.capability`), then times.
fn copy_meta(src: &Path, dest: &Path, meta: &fs::Metadata) -> std::result::Result<(), Failed> {
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid())).map_err(at(dest))?;
    let symlink = meta.file_type().is_symlink();
    if !symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(at(dest))?;
    }
    for name in list_xattrs(src).map_err(at(src))? {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(shown) = std::str::from_utf8(&name) else {
            continue;
        };
        let Some(value) = get_xattr(src, shown).map_err(at(src))? else {
            continue;
        };
        if let Err(e) = set_xattr(dest, &name, &value) {
            match e.raw_os_error() {
                Some(libc::ENOTSUP) | Some(libc::EPERM) => tracing::warn!(
                    "native snapshot: {}: xattr {shown} not kept: {e}",
                    dest.display()
                ),
                _ => return Err((dest.to_path_buf(), e)),
            }
        }
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, dest, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| (dest.to_path_buf(), io::Error::from(e)))
}
