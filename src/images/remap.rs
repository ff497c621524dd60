//! Remapped snapshots, for containers with a user namespace (containerd's
//! `WithRemappedSnapshot`): the image's rootfs owned by the host ids the container's ids
//! map to, so that its root (a host id such as 100000) owns its files. Two ways:
//!
//! - **Idmapped** (where the snapshotter's probe says overlays over idmapped layers work,
//!   see `snapshots/idmap.rs`): the container's snapshot is prepared straight on the
//!   image's top chain id with the maps recorded in it; its overlay mounts every lower dir
//!   through an idmapped clone, so nothing is copied or chowned but its upper dir, which is
//!   owned by the host ids of the image's root dir's owner. No remapped snapshot is made.
//! - **A chowned copy** (everywhere else, and for native snapshots), below.
//!
//! A remapped snapshot is committed once per image and maps, as
//! `remap/<top chain id>/<uid map>/<gid map>` (each map `container:host:size[,...]`), on the
//! image's top chain id: an active snapshot `<that>-remap` is prepared there, mounted on
//! `<data>/remap-mount`, every entry of the merged tree is `lchown`ed to its host ids
//! (overlayfs copies each up into the snapshot's own dir), it is unmounted and committed.
//! The setuid and setgid bits, which a chown clears, are set again, and so is a file
//! capability (`security.capability`, also cleared), as a v3 one whose root is the
//! container root's host uid. An owner no range maps is an error naming the file
//! (containerd's rule since 1.7: nothing is guessed). A failure removes the half-made
//! snapshot and leaves nothing mounted.
//!
//! A container's writable snapshot is then prepared on the remapped one; a second
//! container of the same image and maps reuses it. GC keeps it while a snapshot is on it
//! (a parent of an active snapshot is rooted) and collects it after (it is no image's
//! chain id). The snapshotter's unpack lock is held from the remap's making to the
//! container's prepare on it: GC (which takes it first) cannot collect it in between, and
//! two containers never make the same remap at once.
//!
//! A native container (`--snapshotter native`) gets no remapped snapshot: its own copy
//! is chowned by the same walk right after it is made.
//!
//! The copy costs the image's size once per map; the idmapped way costs nothing per map
//! (see docs/operations.md for both times).

use super::snapevents::Snaps;
use super::spec::userns::{self, UserNs};
use super::Inner;
use crate::error::{Error, Result};
use crate::snapshots::idmap::IdMapping;
use crate::snapshots::{self, mountinfo, Flavor, Kind, Mount};
use crate::types::IdMap;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The xattr of a file's capabilities.
const CAPS_XATTR: &str = "security.capability";

/// The name of the remapped snapshot of the image whose top chain id is `parent`.
pub(crate) fn remap_name(parent: Option<&str>, ns: &UserNs) -> String {
    format!("remap/{}/{}", parent.unwrap_or("empty"), ns.key())
}

/// Where a remapped snapshot is mounted while it is made.
fn mount_dir(inner: &Inner) -> PathBuf {
    inner.snapshots.root().with_file_name("remap-mount")
}

/// Prepares the container's writable snapshot `key` of `flavor`: on `parent` (the
/// image's top chain id) without a user namespace, else on the remapped snapshot of
/// `parent` for `ns`, made first if it is not there. A native snapshot with a user
/// namespace is its own copy chowned instead (no remapped snapshot: making one mounts an
/// overlay, which a host on the native snapshotter may not have). Its mounts.
pub(crate) fn prepare(
    inner: &Inner,
    snaps: &Snaps,
    flavor: Flavor,
    key: &str,
    parent: Option<&str>,
    ns: Option<&UserNs>,
) -> Result<Vec<Mount>> {
    let Some(ns) = ns else {
        return snaps.prepare_as(flavor, key, parent);
    };
    if flavor == Flavor::Native {
        let mounts = snaps.prepare_as(flavor, key, parent)?;
        let started = Instant::now();
        match snaps.fs_dir(key).and_then(|fs| chown_tree(&fs, ns)) {
            Ok(entries) => {
                tracing::info!(
                    snapshot = key,
                    entries,
                    ms = started.elapsed().as_millis() as u64,
                    "chowned a native snapshot for its user namespace"
                );
                return Ok(mounts);
            }
            Err(e) => {
                if let Err(r) = snaps.remove(key) {
                    tracing::warn!("snapshot {key}: {r}");
                }
                return Err(e.context(&format!("native snapshot {key}")));
            }
        }
    }
    match snaps.idmap_support() {
        Ok(()) => return prepare_idmapped(snaps, key, parent, ns),
        Err(why) => tracing::info!(
            snapshot = key,
            "a chowned copy for the user namespace (no idmapped mounts here: {why})"
        ),
    }
    let _no_gc = snaps.unpack_lock();
    let name = remap_name(parent, ns);
    match snaps.stat(&name) {
        Ok(_) => tracing::debug!("reusing remapped snapshot {name}"),
        Err(Error::NotFound(_)) => make(snaps, &name, parent, ns, &mount_dir(inner))?,
        Err(e) => return Err(e),
    }
    let mounts = snaps.prepare_as(flavor, key, Some(&name))?;
    // The upper dir is the root directory of the container: owned as the remapped one's
    // (containerd's overlay snapshotter does this for every snapshot with a parent).
    let owned = (|| {
        let like = std::fs::metadata(snaps.fs_dir(&name)?)
            .map_err(|e| Error::io(format!("stat the root of {name}"), e))?;
        let upper = snaps.fs_dir(key)?;
        std::os::unix::fs::lchown(&upper, Some(like.uid()), Some(like.gid()))
            .map_err(|e| Error::io(format!("chown {}", upper.display()), e))
    })();
    if let Err(e) = owned {
        if let Err(r) = snaps.remove(key) {
            tracing::warn!("snapshot {key}: {r}");
        }
        return Err(e);
    }
    Ok(mounts)
}

/// Prepares the container's snapshot `key` on `parent` with its lower dirs idmapped by
/// `ns`'s maps, and chowns its upper dir (the container's `/`) to the host ids of the
/// owner of the image's root dir (containerd's overlay snapshotter does the same). On
/// failure the snapshot is removed. Its mounts.
fn prepare_idmapped(
    snaps: &Snaps,
    key: &str,
    parent: Option<&str>,
    ns: &UserNs,
) -> Result<Vec<Mount>> {
    let started = Instant::now();
    let mapping = IdMapping {
        uids: ns.uids.clone(),
        gids: ns.gids.clone(),
    };
    let mounts = snaps.prepare_idmapped(key, parent, mapping.clone())?;
    let owned = (|| {
        let (uid, gid) = match snaps.parent_dirs(key)?.first() {
            Some(top) => {
                let m = std::fs::symlink_metadata(top)
                    .map_err(|e| Error::io(format!("stat {}", top.display()), e))?;
                (m.uid(), m.gid())
            }
            None => (0, 0),
        };
        // Container root is always mapped (checked with the maps); an owner of `/` no
        // range maps would show as the overflow id inside: the container's root gets it.
        let root = (ns.host_uid(0).unwrap_or(0), ns.host_gid(0).unwrap_or(0));
        let host_uid = ns.host_uid(uid).unwrap_or(root.0);
        let host_gid = ns.host_gid(gid).unwrap_or(root.1);
        let upper = snaps.fs_dir(key)?;
        std::os::unix::fs::lchown(&upper, Some(host_uid), Some(host_gid))
            .map_err(|e| Error::io(format!("chown {}", upper.display()), e))
    })();
    if let Err(e) = owned {
        if let Err(r) = snaps.remove(key) {
            tracing::warn!("snapshot {key}: {r}");
        }
        return Err(e.context(&format!("idmapped snapshot {key}")));
    }
    tracing::info!(
        snapshot = key,
        parent = parent.unwrap_or(""),
        maps = %mapping.describe(),
        ms = started.elapsed().as_millis() as u64,
        "prepared an idmapped snapshot for a user namespace (no copy)"
    );
    Ok(mounts)
}

/// Removes what a crash in the middle of making a remap left: the mount at
/// `<data>/remap-mount` and the active snapshots `remap/...-remap`; how many snapshots
/// went. For GC, which holds the unpack lock (so no remap is being made).
pub(crate) fn remove_half_made(inner: &Inner, snaps: &Snaps) -> Result<u64> {
    let dir = mount_dir(inner);
    if mountinfo::is_mounted(&dir)? {
        snapshots::unmount_or_detach(&dir)?;
    }
    let mut removed = 0;
    for s in snaps.list()? {
        if s.kind == Kind::Active && s.name.starts_with("remap/") && s.name.ends_with("-remap") {
            match snaps.remove(&s.name) {
                Ok(()) => {
                    tracing::info!("removed the half-made remapped snapshot {}", s.name);
                    removed += 1;
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!("GC keeps snapshot {}: {e}", s.name),
            }
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(removed)
}

/// Makes the committed snapshot `name`: `parent` chowned by `ns`'s maps.
fn make(snaps: &Snaps, name: &str, parent: Option<&str>, ns: &UserNs, dir: &Path) -> Result<()> {
    let started = Instant::now();
    let tmp = format!("{name}-remap");
    // What a crash in the middle left (only this function, under the unpack lock, mounts
    // there).
    if mountinfo::is_mounted(dir)? {
        snapshots::unmount_or_detach(dir)?;
    }
    match snaps.remove(&tmp) {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let mounts = snaps.prepare(&tmp, parent)?;
    let made = (|| -> Result<u64> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        snapshots::mount(&mounts, dir)?;
        let walked = chown_tree(dir, ns);
        let unmounted = snapshots::unmount(dir);
        let entries = walked?;
        unmounted?;
        snaps.commit(name, &tmp)?;
        Ok(entries)
    })();
    match made {
        Ok(entries) => {
            let _ = std::fs::remove_dir(dir);
            tracing::info!(
                snapshot = name,
                entries,
                ms = started.elapsed().as_millis() as u64,
                "made a remapped snapshot"
            );
            Ok(())
        }
        Err(e) => {
            if mountinfo::is_mounted(dir).unwrap_or(true) {
                if let Err(u) = snapshots::unmount_or_detach(dir) {
                    tracing::warn!("remapped snapshot {name}: unmount {}: {u}", dir.display());
                }
            }
            match snaps.remove(&tmp) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(r) => tracing::warn!("remapped snapshot {name}: remove {tmp}: {r}"),
            }
            let _ = std::fs::remove_dir(dir);
            Err(e.context(&format!("remapped snapshot {name}")))
        }
    }
}

/// `lchown`s every entry under `root` (not crossing into other filesystems, never
/// following a symlink) from its container ids to their host ids; how many entries.
fn chown_tree(root: &Path, ns: &UserNs) -> Result<u64> {
    let top = std::fs::symlink_metadata(root).map_err(|e| Error::io(root.display(), e))?;
    let dev = top.dev();
    // The ids a hard-linked inode had when first met: a second name of the same inode
    // is already chowned (or, if overlayfs copied up only the first name, is chowned now).
    let mut linked: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut entries = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let shown = || format!("/{}", path.strip_prefix(root).unwrap_or(&path).display());
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(shown(), e))?;
        entries += 1;
        let (uid, gid) = if !meta.is_dir() && meta.nlink() > 1 {
            *linked.entry(meta.ino()).or_insert((meta.uid(), meta.gid()))
        } else {
            (meta.uid(), meta.gid())
        };
        let unmapped = |what: &str, id: u32, flag: &str| {
            Error::InvalidArgument(format!(
                "{} is owned by {what} {id}, which {flag} does not map",
                shown()
            ))
        };
        let host_uid = ns
            .host_uid(uid)
            .ok_or_else(|| unmapped("uid", uid, "--uidmap"))?;
        let host_gid = ns
            .host_gid(gid)
            .ok_or_else(|| unmapped("gid", gid, "--gidmap"))?;
        if (meta.uid(), meta.gid()) != (host_uid, host_gid) {
            chown_keeping_mode(&path, &meta, host_uid, host_gid, ns)
                .map_err(|e| Error::io(format!("chown {}", shown()), e))?;
        }
        if meta.is_dir() {
            let list = std::fs::read_dir(&path).map_err(|e| Error::io(shown(), e))?;
            for entry in list {
                let entry = entry.map_err(|e| Error::io(shown(), e))?;
                let p = entry.path();
                // A directory of another filesystem (something mounted inside) is not
                // entered; files are chowned whatever device overlayfs reports for them.
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() && m.dev() != dev => continue,
                    _ => stack.push(p),
                }
            }
        }
    }
    Ok(entries)
}

/// `lchown`s one entry, then sets again what the chown cleared: the setuid and setgid
/// bits and a file capability.
fn chown_keeping_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    uid: u32,
    gid: u32,
    ns: &UserNs,
) -> std::io::Result<()> {
    let symlink = meta.file_type().is_symlink();
    let caps = if symlink || !meta.is_file() {
        None
    } else {
        get_xattr(path, CAPS_XATTR)?
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if symlink {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o6000 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some(caps) = caps {
        let root = ns.host_uid(0).unwrap_or(0);
        snapshots::unpack::set_xattr(
            path,
            CAPS_XATTR.as_bytes(),
            &caps_for_root(&caps, root, &ns.uids),
        )?;
    }
    Ok(())
}

/// A `security.capability` value for a user namespace whose root is host uid `root`: a
/// v2 one becomes v3 with that root; a v3 one gets its root id mapped (`uids`); anything
/// else is kept as it is.
pub(crate) fn caps_for_root(caps: &[u8], root: u32, uids: &[IdMap]) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xFF00_0000;
    const V2: u32 = 0x0200_0000;
    const V3: u32 = 0x0300_0000;
    let Some(magic) = caps
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return caps.to_vec();
    };
    match (magic & REVISION_MASK, caps.len()) {
        (V2, 20) => {
            let mut out = ((magic & !REVISION_MASK) | V3).to_le_bytes().to_vec();
            out.extend_from_slice(&caps[4..20]);
            out.extend_from_slice(&root.to_le_bytes());
            out
        }
        (V3, 24) => {
            let old = u32::from_le_bytes([caps[20], caps[21], caps[22], caps[23]]);
            let mut out = caps.to_vec();
            let new = userns::to_host(uids, old).unwrap_or(root);
            out[20..24].copy_from_slice(&new.to_le_bytes());
            out
        }
        _ => caps.to_vec(),
    }
}

/// An xattr of `path` (not following a symlink); `None` if it has none of that name.
fn get_xattr(path: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and live across the call; buf is a valid
    // buffer of buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r >= 0 {
        buf.truncate(r as usize);
        return Ok(Some(buf));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_capability_becomes_v3_with_the_containers_root_and_a_v3_one_is_mapped() {
        let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec();
        v2.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let v3 = caps_for_root(&v2, 100000, &[]);
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[..4], &0x0300_0001u32.to_le_bytes());
        assert_eq!(&v3[4..20], &v2[4..20]);
        assert_eq!(&v3[20..], &100000u32.to_le_bytes());
        let map = [IdMap {
            container_id: 0,
            host_id: 200000,
            size: 10,
        }];
        let mut in_ns = v3.clone();
        in_ns[20..24].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            &caps_for_root(&in_ns, 200000, &map)[20..],
            &200003u32.to_le_bytes()
        );
        assert_eq!(caps_for_root(&[1, 2], 5, &map), vec![1, 2]);
    }

    #[test]
    fn the_remap_name_says_the_image_and_the_maps() {
        let ns = UserNs::from_maps(
            &[IdMap {
                container_id: 0,
                host_id: 100000,
                size: 65536,
            }],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no user namespace"));
        assert_eq!(
            remap_name(Some("sha256:ab"), &ns),
            "remap/sha256:ab/0:100000:65536/0:100000:65536"
        );
        assert_eq!(
            remap_name(None, &ns),
            "remap/empty/0:100000:65536/0:100000:65536"
        );
    }
}
