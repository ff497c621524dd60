//! OCI bundles: loading and checking a bundle's config.json, and making a runnable busybox
//! bundle from the host's busybox-static so a newcomer needs no image.

use crate::error::{Error, Result};
use oci_spec::runtime::Spec;
use std::fs;
use std::path::{Path, PathBuf};

/// Loads `<bundle>/config.json`, with errors that name the bundle and what is wrong.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let config = crate::layout::bundle_config(bundle);
    if !bundle.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "bundle {} does not exist or is not a directory",
            bundle.display()
        )));
    }
    if !config.is_file() {
        return Err(Error::InvalidArgument(format!(
            "bundle {} has no config.json",
            bundle.display()
        )));
    }
    Spec::load(&config).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} is not a valid OCI runtime spec: {e}",
            config.display()
        ))
    })
}

/// Checks a bundle for create: absolute path, a valid spec with a process, an existing
/// rootfs. Returns the canonical bundle path and the spec.
pub fn check(bundle: &Path) -> Result<(PathBuf, Spec)> {
    let canonical = fs::canonicalize(bundle)
        .map_err(|e| Error::InvalidArgument(format!("bundle {}: {e}", bundle.display())))?;
    let spec = load_spec(&canonical)?;
    let process = spec.process().as_ref().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}/config.json has no process to run",
            canonical.display()
        ))
    })?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "{}/config.json: process.args is empty",
            canonical.display()
        )));
    }
    if let Some(root) = spec.root() {
        let rootfs = canonical.join(root.path());
        if !rootfs.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "bundle {}: rootfs {} does not exist",
                canonical.display(),
                rootfs.display()
            )));
        }
    }
    Ok((canonical, spec))
}

/// The signal `stop` sends first: the spec's `org.opencontainers.image.stopSignal`
/// annotation (an image's StopSignal, as `SIGQUIT`, `QUIT` or a number), else SIGTERM.
pub fn stop_signal(spec: &Spec) -> Result<i32> {
    let annotation = crate::images::spec::STOP_SIGNAL_ANNOTATION;
    match spec.annotations().as_ref().and_then(|a| a.get(annotation)) {
        None => Ok(libc::SIGTERM),
        Some(s) => crate::types::parse_signal(s).map_err(|e| {
            Error::InvalidArgument(format!("the spec's annotation {annotation}: {e}"))
        }),
    }
}

/// The spec the runtime is given for a container whose own spec names no cgroupsPath:
/// corral's `cgroups_path` (`<parent>/<namespace>/<id>`, so one id in two namespaces never
/// shares a cgroup, see [`crate::cgroups::placement`]) and an absolute root path (the
/// bundle dir changes). `None` when the spec names its cgroupsPath: then it is used as it
/// is.
pub fn runtime_spec(spec: &Spec, bundle: &Path, cgroups_path: &str) -> Option<Spec> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    if linux
        .cgroups_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty())
    {
        return None;
    }
    let mut out = spec.clone();
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
    out.set_linux(Some(linux));
    if let Some(mut root) = out.root().clone() {
        if root.path().is_relative() {
            root.set_path(bundle.join(root.path()));
        }
        out.set_root(Some(root));
    }
    // runc resolves a relative bind source against the bundle dir, which is no longer the
    // user's: make such sources absolute too.
    if let Some(mut mounts) = out.mounts().clone() {
        for m in mounts.iter_mut() {
            let bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
            if let Some(src) = m.source().clone().filter(|s| bind && s.is_relative()) {
                m.set_source(Some(bundle.join(src)));
            }
        }
        out.set_mounts(Some(mounts));
    }
    Some(out)
}

/// Makes the runtime's spec ask for a terminal exactly when the process has one (`runc`
/// refuses a console socket without `process.terminal`, and a terminal without one). The
/// spec corral writes (`runtime`) is changed; a bundle's own spec used as it is cannot be,
/// so a mismatch there is an error naming the bundle.
pub fn set_terminal(
    spec: &Spec,
    runtime: Option<&mut Spec>,
    bundle: &Path,
    stdio: &crate::types::Stdio,
) -> crate::error::Result<()> {
    let terminal = stdio.terminal;
    let has = |s: &Spec| {
        s.process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    };
    match runtime {
        Some(out) => {
            let mut process = out.process().clone().unwrap_or_default();
            process.set_terminal(Some(terminal));
            // runc sizes the pty itself before the process starts: the size is right from
            // the process's first instruction (the shim's resize may come after it).
            if let Some(size) = stdio.console_size.filter(|_| terminal) {
                process.set_console_size(Some(console_box(size)));
            }
            out.set_process(Some(process));
            Ok(())
        }
        None if has(spec) != terminal => Err(crate::error::Error::InvalidArgument(format!(
            "bundle {}: its config.json sets process.terminal to {}, and the process {} a \
             terminal; corral uses that spec as it is (it names its cgroupsPath): change it",
            bundle.display(),
            has(spec),
            if terminal {
                "asks for"
            } else {
                "does not ask for"
            }
        ))),
        None => Ok(()),
    }
}

/// An OCI console size.
pub fn console_box(size: crate::types::ConsoleSize) -> oci_spec::runtime::Box {
    oci_spec::runtime::BoxBuilder::default()
        .width(u64::from(size.width))
        .height(u64::from(size.height))
        .build()
        .unwrap_or_default()
}

/// Where the runtime (run from `runtime_cgroup`, or from corrald's when None) will put
/// `id`'s cgroups under `spec` (see [`CgroupPaths::expected`](crate::cgroups::CgroupPaths::expected)).
pub fn cgroup_paths(
    spec: &Spec,
    id: &str,
    runtime_cgroup: Option<&str>,
) -> crate::cgroups::CgroupPaths {
    let spec_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    crate::cgroups::CgroupPaths::expected(spec_path.as_deref(), id, runtime_cgroup)
}

/// The defaults every spec corral makes starts from (a busybox bundle's, an image's):
/// `runc spec`'s (the pid, ipc, uts, mount, network and cgroup namespaces, `/proc`, `/dev`,
/// `/dev/pts`, `/dev/shm`, `/dev/mqueue` and `/sys` mounts, the masked and read-only paths,
/// AUDIT_WRITE, KILL and NET_BIND_SERVICE, no new privileges, 1024 open files, `sh` as
/// root in `/`), with no terminal, a writable `rootfs` and the hostname `corral`.
pub(crate) fn default_spec() -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    if let Some(mut root) = spec.root().clone() {
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
    }
    spec.set_hostname(Some("corral".to_string()));
    spec
}

/// Where the host's busybox-static is looked for.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Makes a runnable bundle in `dir` from the host's busybox-static: `rootfs/bin/busybox`
/// with its applet links, and a config.json with the runc defaults that runs `args`
/// (default `sh`), with no terminal and a writable rootfs.
pub fn make_busybox(dir: &Path, args: &[String]) -> Result<()> {
    let busybox = BUSYBOX_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::NotFound(
                "busybox: none at /bin/busybox or /usr/bin/busybox (apt-get install busybox-static)"
                    .to_string(),
            )
        })?;
    let io = |what: &Path, e: std::io::Error| Error::io(what.display(), e);
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        let p = rootfs.join(sub);
        fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    let target = bin.join("busybox");
    fs::copy(busybox, &target).map_err(|e| io(&target, e))?;
    // Ask the host's busybox, not the fresh copy: a fork on another thread may still hold
    // the copy open for writing, and exec'ing it would fail with ETXTBSY.
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| io(&target, e))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| io(&link, e))?;
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(|e| io(&rootfs, e))?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").map_err(|e| io(&rootfs, e))?;

    let mut spec = default_spec();
    let mut process = spec.process().clone().unwrap_or_default();
    let args = if args.is_empty() {
        vec!["sh".to_string()]
    } else {
        args.to_vec()
    };
    process.set_args(Some(args));
    spec.set_process(Some(process));
    let config = crate::layout::bundle_config(dir);
    spec.save(&config)
        .map_err(|e| Error::Internal(format!("write {}: {e}", config.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_spec_names_the_namespace_and_keeps_paths_working() {
        let mut spec = Spec::default();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut m = oci_spec::runtime::Mount::default();
        m.set_destination("/data".into());
        m.set_typ(Some("bind".into()));
        m.set_source(Some("data".into()));
        m.set_options(Some(vec!["rbind".into()]));
        mounts.push(m);
        spec.set_mounts(Some(mounts));
        let out = runtime_spec(&spec, Path::new("/b"), "/corral/ns1/web").unwrap();
        let cg = out
            .linux()
            .as_ref()
            .unwrap()
            .cgroups_path()
            .clone()
            .unwrap();
        assert_eq!(cg, PathBuf::from("/corral/ns1/web"));
        assert_eq!(
            cgroup_paths(&out, "web", Some("/corral/_shims")),
            crate::cgroups::CgroupPaths::uniform("/corral/ns1/web")
        );
        assert_eq!(
            out.root().as_ref().unwrap().path(),
            &PathBuf::from("/b/rootfs")
        );
        let data = out
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/data"))
            .unwrap();
        assert_eq!(data.source().as_ref().unwrap(), &PathBuf::from("/b/data"));
        // A spec that names its cgroupsPath is used as it is.
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(Some("/mine".into()));
        spec.set_linux(Some(linux));
        assert!(runtime_spec(&spec, Path::new("/b"), "/corral/ns1/web").is_none());
        // ... and a relative one is placed under the runtime's cgroup, the shims'.
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(Some("mine".into()));
        spec.set_linux(Some(linux));
        assert_eq!(
            cgroup_paths(&spec, "web", Some("/corral/_shims")),
            crate::cgroups::CgroupPaths::uniform("/corral/_shims/mine")
        );
    }
}
