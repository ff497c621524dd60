//! Idmapped lower layers: an overlay whose lower dirs are seen through a user namespace's
//! id maps, so that an image's files owned by uid 0 appear owned by the host uid the
//! container's root is (containerd 2.x's overlay snapshotter with `uidmap=`/`gidmap=`
//! mount options, and its `core/mount/mount_idmapped_linux.go`).
//!
//! An active snapshot prepared with an [`IdMapping`] has two more options in its overlay
//! mount, `uidmap=C:H:S[,...]` and `gidmap=...`. `mount_overlay` turns them into:
//!
//! 1. a user namespace with those maps, as an fd: a child cloned into a new user
//!    namespace (it only waits), its `uid_map` and `gid_map` written, its
//!    `/proc/<pid>/ns/user` opened, the child killed and reaped;
//! 2. per lower dir a detached clone (`open_tree(OPEN_TREE_CLONE)`) idmapped with that fd
//!    and read-only (`mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY)`);
//! 3. the overlay mounted with `lowerdir=/proc/self/fd/N:...` naming those clones (the
//!    overlay keeps its own private copies of its layers, so the fds are closed right
//!    after: nothing but the overlay itself is ever mounted, and nothing is left behind).
//!
//! The upper dir is not idmapped: what the container writes lands there with its host ids.
//! Mountinfo shows such an overlay's lower dirs as the `/proc/self/fd/N` paths it was
//! given, not the snapshot dirs.
//!
//! Whether this works depends on the kernel (idmapped mounts: 5.12; overlayfs over
//! idmapped layers: 5.19; a detached mount as a layer: 6.15, early 2025; containerd's
//! temporary mount points, which 5.19 takes, are not done here) and on the filesystem of
//! the data dir (ext4, xfs, btrfs, tmpfs can be idmapped): `probe` tries it once per
//! snapshotter, and the caller falls back to a chowned copy when it does not.

use crate::error::{Error, Result};
use crate::types::IdMap;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The mount option of the uid map.
pub const UIDMAP: &str = "uidmap";
/// The mount option of the gid map.
pub const GIDMAP: &str = "gidmap";

/// An environment variable that, set to anything but empty or `0`, makes `probe` answer
/// that idmapped mounts do not work: for tests of the fallback (the chowned copy). Read by
/// each probe (once per snapshotter). Not for production.
pub const NO_IDMAP_ENV: &str = "CORRAL_NO_IDMAP";

/// The id maps an active snapshot's lower dirs are seen through (recorded in its
/// metadata as `"idmap"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// The uid map (container id, host id, size).
    pub uids: Vec<IdMap>,
    /// The gid map.
    pub gids: Vec<IdMap>,
}

fn show(map: &[IdMap]) -> String {
    map.iter()
        .map(IdMap::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl IdMapping {
    /// Its two mount options: `uidmap=C:H:S[,...]`, `gidmap=...`.
    pub fn options(&self) -> [String; 2] {
        [
            format!("{UIDMAP}={}", show(&self.uids)),
            format!("{GIDMAP}={}", show(&self.gids)),
        ]
    }

    /// The mapping a mount's options carry (`None` without a `uidmap=` and a `gidmap=`);
    /// a malformed map, or one given without the other, is an error.
    pub fn of_options(options: &[String]) -> Result<Option<IdMapping>> {
        let find = |name: &str| {
            options
                .iter()
                .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
        };
        let parse = |name: &str, v: &str| -> Result<Vec<IdMap>> {
            v.split(',')
                .map(|r| {
                    IdMap::parse(r)
                        .map_err(|e| Error::InvalidArgument(format!("mount option {name}: {e}")))
                })
                .collect()
        };
        match (find(UIDMAP), find(GIDMAP)) {
            (None, None) => Ok(None),
            (Some(u), Some(g)) => Ok(Some(IdMapping {
                uids: parse(UIDMAP, u)?,
                gids: parse(GIDMAP, g)?,
            })),
            _ => Err(Error::InvalidArgument(
                "mount options uidmap= and gidmap= go together: one is missing".into(),
            )),
        }
    }

    /// `uid C:H:S,... gid C:H:S,...`, for messages.
    pub fn describe(&self) -> String {
        format!("uid {} gid {}", show(&self.uids), show(&self.gids))
    }
}

/// Whether a mount option is one of the maps (not filesystem data).
pub(crate) fn is_map_option(o: &str) -> bool {
    [UIDMAP, GIDMAP]
        .iter()
        .any(|n| o.strip_prefix(n).is_some_and(|r| r.starts_with('=')))
}

/// Kills (SIGKILL) and reaps the user namespace's child when dropped.
struct Child(libc::pid_t);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on a pid this process cloned and has not reaped yet (so
        // the pid cannot have been reused). __WALL: the child has no exit signal.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.0, &mut status, libc::__WALL) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

/// A user namespace with `mapping`'s maps, as an fd (the process made to own it is gone).
fn userns_fd(mapping: &IdMapping) -> std::io::Result<OwnedFd> {
    // SAFETY: clone(2) without CLONE_VM and with no stack given: the child is a copy of
    // this process (one thread, its memory copied on write) that calls nothing but pause(2),
    // which is async-signal-safe, until it is killed. Its exit signal is 0, so no SIGCHLD
    // reaches the daemon's reaper (which reaps registered pids only anyway).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWUSER as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        loop {
            // SAFETY: see above; the child never returns from here.
            unsafe {
                libc::pause();
            }
        }
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let child = Child(pid as libc::pid_t);
    let write_map = |file: &str, map: &[IdMap]| -> std::io::Result<()> {
        let text: String = map
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect();
        // One write: the kernel takes a map in a single write(2).
        fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/{file}", child.0))?
            .write_all(text.as_bytes())
            .map_err(|e| std::io::Error::new(e.kind(), format!("write {file}: {e}")))
    };
    write_map("uid_map", &mapping.uids)?;
    write_map("gid_map", &mapping.gids)?;
    let ns = fs::File::open(format!("/proc/{}/ns/user", child.0))?;
    drop(child);
    Ok(ns.into())
}

/// A detached, read-only clone of the directory `dir` (not recursive), idmapped through
/// `userns`.
fn idmapped_clone(dir: &Path, userns: &OwnedFd) -> std::io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: path is NUL-terminated and alive across the call; open_tree returns a new fd
    // (or -1), which is owned here from then on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("open_tree: {e}")));
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // Read-only as well (containerd's too): a lower dir is never written, and a clone that
    // somehow outlived its overlay could not be written through.
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the empty path is NUL-terminated; attr is a valid mount_attr of the size
    // given, alive across the call; both fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY): {e}"),
        ));
    }
    Ok(tree)
}

/// Mounts an overlay on `target` whose `lowerdir=` dirs (in `data`, the filesystem data
/// without the map options) are idmapped by `mapping`. Nothing but the overlay is left
/// mounted, whatever happens.
pub(crate) fn mount_overlay(
    target: &Path,
    flags: nix::mount::MsFlags,
    data: &str,
    mapping: &IdMapping,
) -> Result<()> {
    let failed = |what: String, e: std::io::Error| {
        let msg = format!(
            "idmapped overlay on {} ({}): {what}: {e}",
            target.display(),
            mapping.describe()
        );
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied(msg),
            _ => Error::Internal(msg),
        }
    };
    let userns = userns_fd(mapping).map_err(|e| failed("a user namespace".into(), e))?;
    let mut clones = Vec::new();
    let mut options = Vec::new();
    for opt in data.split(',') {
        let Some(lowers) = opt.strip_prefix("lowerdir=") else {
            options.push(opt.to_string());
            continue;
        };
        let mut fds = Vec::new();
        for dir in lowers.split(':') {
            let clone = idmapped_clone(Path::new(dir), &userns)
                .map_err(|e| failed(format!("lower dir {dir}"), e))?;
            fds.push(format!("/proc/self/fd/{}", clone.as_raw_fd()));
            clones.push(clone);
        }
        options.push(format!("lowerdir={}", fds.join(":")));
    }
    if clones.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "idmapped overlay on {}: no lowerdir= to idmap",
            target.display()
        )));
    }
    let data = options.join(",");
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| failed("mount".into(), std::io::Error::from(e)))
    // `clones` and `userns` close here: the overlay holds its own references.
}

/// The host id the probe maps container id 0 to.
const PROBE_HOST_ID: u32 = 2_000_000_000;

/// Tries an overlay over an idmapped lower dir in `dir` (made and removed): whether a
/// file owned by 0 in the lower dir shows as owned by the mapped id. `Err` says why not.
pub(crate) fn probe(dir: &Path) -> std::result::Result<(), String> {
    if std::env::var(NO_IDMAP_ENV).is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err(format!("{NO_IDMAP_ENV} is set"));
    }
    let merged = dir.join("merged");
    let clear = || -> std::result::Result<(), String> {
        if super::mountinfo::is_mounted(&merged).map_err(|e| e.to_string())? {
            super::unmount_or_detach(&merged).map_err(|e| e.to_string())?;
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("remove {}: {e}", dir.display())),
        }
    };
    clear()?;
    let tried = (|| -> std::result::Result<(), String> {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(dir.join(d)).map_err(|e| format!("create {d}: {e}"))?;
        }
        fs::write(dir.join("lower/f"), b"").map_err(|e| format!("write lower/f: {e}"))?;
        let map = vec![IdMap {
            container_id: 0,
            host_id: PROBE_HOST_ID,
            size: 1,
        }];
        let mount = super::Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: [
                format!("lowerdir={}", dir.join("lower").display()),
                format!("upperdir={}", dir.join("upper").display()),
                format!("workdir={}", dir.join("work").display()),
            ]
            .into_iter()
            .chain(
                IdMapping {
                    uids: map.clone(),
                    gids: map,
                }
                .options(),
            )
            .collect(),
        };
        super::mount(&[mount], &merged).map_err(|e| e.to_string())?;
        let seen = fs::symlink_metadata(merged.join("f")).map(|m| (m.uid(), m.gid()));
        super::unmount(&merged).map_err(|e| e.to_string())?;
        match seen {
            Ok(ids) if ids == (PROBE_HOST_ID, PROBE_HOST_ID) => Ok(()),
            Ok((u, g)) => Err(format!(
                "a file owned by 0:0 showed as {u}:{g} through the idmapped layer, not \
                 {PROBE_HOST_ID}:{PROBE_HOST_ID}"
            )),
            Err(e) => Err(format!("stat through the idmapped overlay: {e}")),
        }
    })();
    let cleared = clear();
    tried.and(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maps_go_into_mount_options_and_back() {
        let m = IdMapping {
            uids: vec![
                IdMap {
                    container_id: 0,
                    host_id: 100000,
                    size: 1000,
                },
                IdMap {
                    container_id: 1000,
                    host_id: 300000,
                    size: 10,
                },
            ],
            gids: vec![IdMap {
                container_id: 0,
                host_id: 100000,
                size: 65536,
            }],
        };
        let opts = m.options();
        assert_eq!(
            opts,
            [
                "uidmap=0:100000:1000,1000:300000:10".to_string(),
                "gidmap=0:100000:65536".to_string()
            ]
        );
        let mut all = vec!["lowerdir=/a".to_string()];
        all.extend(opts);
        assert_eq!(IdMapping::of_options(&all).unwrap(), Some(m));
        assert!(is_map_option("uidmap=0:1:1") && !is_map_option("uidmapx=1"));
        assert_eq!(
            IdMapping::of_options(&["lowerdir=/a".to_string()]).unwrap(),
            None
        );
        let err = IdMapping::of_options(&["uidmap=0:1:1".to_string()]).unwrap_err();
        assert!(err.to_string().contains("one is missing"), "{err}");
        let err = IdMapping::of_options(&["uidmap=0:1".to_string(), "gidmap=0:1:1".to_string()])
            .unwrap_err();
        assert!(err.to_string().contains("mount option uidmap"), "{err}");
    }
}
