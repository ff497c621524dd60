//! Mounting what the snapshotter answers: overlay and bind mounts (read-only binds as a
//! bind then a remount), idmapped overlays through `idmap.rs`, and unmounting.

use super::{idmap, Mount, MAX_MOUNT_DATA};
use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::path::Path;
use std::time::Duration;

/// The filesystem data of a mount: its options that are not flags, joined by commas.
fn mount_data(m: &Mount) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other if idmap::is_map_option(other) => {}
            other => data.push(other),
        }
    }
    if m.kind == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    (flags, data.join(","))
}

/// Refuses a mount whose options do not fit in one page, naming its layers.
pub(super) fn check_mount_data(m: &Mount) -> Result<()> {
    let (_, data) = mount_data(m);
    if data.len() <= MAX_MOUNT_DATA {
        return Ok(());
    }
    let layers = m
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .map_or(0, |l| l.split(':').count());
    Err(Error::InvalidArgument(format!(
        "{layers} layers do not fit in one overlay mount: its options are {} bytes, and a \
         mount takes at most {MAX_MOUNT_DATA} (a page); use an image with fewer layers or a \
         data dir with a shorter path",
        data.len()
    )))
}

/// Mounts `mounts` on `target`, in order (what [`Snapshotter::prepare`](super::Snapshotter::prepare), [`view`] and
/// [`Snapshotter::mounts`](super::Snapshotter::mounts) answer). A read-only bind is a bind then a read-only remount.
/// On failure, what was mounted is unmounted.
///
/// [`view`]: super::Snapshotter::view
pub fn mount(mounts: &[Mount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = unmount(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    check_mount_data(m)?;
    let (flags, data) = mount_data(m);
    let failed = |what: &str, e: Errno| {
        let msg = format!(
            "{what} {} {} on {}: {}",
            m.kind,
            m.source,
            target.display(),
            e.desc()
        );
        match e {
            Errno::EPERM | Errno::EACCES => Error::PermissionDenied(msg),
            _ => Error::Internal(msg),
        }
    };
    match m.kind.as_str() {
        "bind" => {
            let readonly = flags.contains(MsFlags::MS_RDONLY);
            let bind = flags & !MsFlags::MS_RDONLY;
            nix::mount::mount(
                Some(m.source.as_str()),
                target,
                None::<&str>,
                bind,
                None::<&str>,
            )
            .map_err(|e| failed("mount", e))?;
            if readonly {
                let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
                if let Err(e) =
                    nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
                {
                    let _ = unmount(target);
                    return Err(failed("remount read-only", e));
                }
            }
            Ok(())
        }
        "overlay" => match idmap::IdMapping::of_options(&m.options)? {
            Some(mapping) => idmap::mount_overlay(target, flags, &data, &mapping),
            None => nix::mount::mount(
                Some(m.source.as_str()),
                target,
                Some("overlay"),
                flags,
                Some(data.as_str()),
            )
            .map_err(|e| failed("mount", e)),
        },
        other => Err(Error::InvalidArgument(format!(
            "mount kind {other:?}: only overlay and bind are known"
        ))),
    }
}

/// Unmounts `target` (never lazily): retried for up to a second while it is busy, then
/// `WrongState`. Nothing mounted there is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    let mut busy = 0;
    loop {
        match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EBUSY) if busy < 50 => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::EBUSY) => {
                return Err(Error::WrongState(format!(
                    "unmount {}: still busy after a second (a process has a file open or \
                     its working directory there)",
                    target.display()
                )))
            }
            Err(e) => {
                return Err(Error::Internal(format!(
                    "unmount {}: {}",
                    target.display(),
                    e.desc()
                )))
            }
        }
    }
}

/// [`unmount`], and if it stays busy, a lazy unmount (`MNT_DETACH`): the mount leaves the
/// tree now and goes when its last user does. Only for cleanup paths that must not fail
/// (a test's guard, a shutdown); the snapshot stays in use until then, and
/// [`Snapshotter::remove`](super::Snapshotter::remove) of it can fail meanwhile.
pub fn unmount_or_detach(target: &Path) -> Result<()> {
    match unmount(target) {
        Err(Error::WrongState(m)) => {
            tracing::warn!("{m}: detaching it");
            nix::mount::umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| Error::Internal(format!("detach {}: {}", target.display(), e.desc())))
        }
        other => other,
    }
}
