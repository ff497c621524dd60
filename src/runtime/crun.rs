//! crun on a hybrid cgroup host. crun (1.8) refuses a host whose cgroup2 mount at
//! `/sys/fs/cgroup/unified` has controllers ("cgroups in hybrid mode not supported"): it
//! reads `cgroup.controllers` there. Every crun call corral makes (from the shim for
//! create, run, exec and restore, from the daemon for the others) therefore runs in a
//! mount namespace of its own where `/dev/null` is bind-mounted over that file; crun then
//! uses the v1 controllers only (the unified hierarchy's, hugetlb here, go unused).

use std::path::Path;

/// The file crun reads to refuse a hybrid host.
const UNIFIED_CONTROLLERS: &str = "/sys/fs/cgroup/unified/cgroup.controllers";

/// Whether `binary` is crun (by its file name: `crun`, `crun-1.8`...).
pub fn is_crun(binary: &Path) -> bool {
    binary
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("crun"))
}

/// Whether calls of `binary` need [`hide_unified_controllers`]: crun on a hybrid host
/// whose unified hierarchy has controllers.
pub fn needs_private_cgroupfs(binary: &Path) -> bool {
    is_crun(binary) && hybrid_with_controllers()
}

fn hybrid_with_controllers() -> bool {
    static HYBRID: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HYBRID.get_or_init(|| match crate::cgroups::host() {
        crate::cgroups::Hierarchy::V1 {
            unified: Some(_), ..
        } => std::fs::read_to_string(UNIFIED_CONTROLLERS).is_ok_and(|c| !c.trim().is_empty()),
        _ => false,
    })
}

/// Between fork and exec of a crun call: a mount namespace of its own (a slave of the
/// host's, so that nothing mounted here leaks out) with the unified hierarchy's controller
/// list empty.
///
/// Only async-signal-safe calls on static strings: this runs in the child of a
/// multithreaded daemon.
pub fn hide_unified_controllers() -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: unshare and mount take flags and NUL-terminated static strings; neither
    // allocates nor touches memory of this process.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"/dev/null".as_ptr(),
            c"/sys/fs/cgroup/unified/cgroup.controllers".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))
    }
}

/// Sets [`hide_unified_controllers`] up for `cmd` when its binary needs it.
pub fn prepare(cmd: &mut std::process::Command, binary: &Path) {
    use std::os::unix::process::CommandExt;
    if needs_private_cgroupfs(binary) {
        // SAFETY: see hide_unified_controllers: async-signal-safe.
        unsafe {
            cmd.pre_exec(hide_unified_controllers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_is_told_by_its_name() {
        assert!(is_crun(Path::new("/usr/bin/crun")));
        assert!(is_crun(Path::new("crun-1.8")));
        assert!(!is_crun(Path::new("/usr/sbin/runc")));
        assert!(!is_crun(Path::new("/usr/local/bin/youki")));
        assert!(!needs_private_cgroupfs(Path::new("/usr/sbin/runc")));
    }

    #[test]
    fn the_controllers_are_hidden_only_in_the_child() {
        if !hybrid_with_controllers() {
            eprintln!("not a hybrid host with unified controllers: nothing to hide");
            return;
        }
        let mut cmd = std::process::Command::new("cat");
        cmd.arg(UNIFIED_CONTROLLERS);
        prepare(&mut cmd, Path::new("/usr/bin/crun"));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"", "crun sees no controllers");
        let host = std::fs::read_to_string(UNIFIED_CONTROLLERS).unwrap();
        assert!(!host.trim().is_empty(), "the host's file is untouched");
    }
}
