//! Where corral puts shims and containers' cgroups, apart from corrald's own cgroup.
//!
//! A shim started by corrald would stay in corrald's cgroup, and a runtime places a
//! relative cgroupsPath under its own: stopping corrald's systemd unit (any KillMode but
//! `process`) would then kill every container, and on cgroup v2 the containers' parent
//! would hold corrald itself (the no-internal-processes rule stops runc from enabling
//! controllers below it). So, like podman's cgroupfs manager (conmon in
//! `<parent>/conmon`, containers in `<parent>/libpod-<id>`):
//!
//! - each shim moves itself into the shim cgroup ([`DEFAULT_SHIM_CGROUP`]) in every
//!   mounted hierarchy (v1 controllers, `name=systemd`, the unified one) before it runs
//!   the runtime, so the runtime, and the container until it gets its own, are there too;
//! - containers get cgroupsPath `<parent>/<namespace>/<id>` ([`DEFAULT_CGROUP_PARENT`]),
//!   absolute, so every runtime puts them in the same place whatever its own cgroup;
//!   `<parent>` and `<parent>/<namespace>` never hold a process;
//! - with runc's systemd cgroup driver (`--systemd-cgroup`), cgroupsPath is
//!   `corral.slice:corral-<namespace>:<id>` instead (a scope systemd owns).

use std::path::{Path, PathBuf};

/// Containers' cgroups are `<this>/<namespace>/<id>` unless configured otherwise.
pub const DEFAULT_CGROUP_PARENT: &str = "/corral";
/// Where shims go unless configured otherwise: beside the namespaces (`_` starts no
/// namespace name, so no namespace's cgroup can be this one).
pub const DEFAULT_SHIM_CGROUP: &str = "/corral/_shims";
/// The slice of containers' scopes under runc's systemd cgroup driver.
pub const SYSTEMD_SLICE: &str = "corral.slice";

/// Where shims and containers' cgroups go (corrald's `--cgroup-parent` and `--shim-cgroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupPlacement {
    /// Containers' cgroups are `<parent>/<namespace>/<id>` (cgroupfs drivers).
    pub parent: String,
    /// The shims' cgroup; None: shims stay in corrald's (the old way, for a daemon that
    /// cannot write to the cgroup hierarchies).
    pub shims: Option<String>,
}

impl Default for CgroupPlacement {
    fn default() -> Self {
        CgroupPlacement {
            parent: DEFAULT_CGROUP_PARENT.into(),
            shims: Some(DEFAULT_SHIM_CGROUP.into()),
        }
    }
}

impl CgroupPlacement {
    /// The cgroupsPath for a container of `namespace` run by a runtime with these global
    /// arguments; an error when they ask for the systemd driver and systemd is not PID 1.
    pub fn cgroups_path(
        &self,
        runtime_args: &[String],
        namespace: &str,
        id: &str,
    ) -> Result<String, String> {
        let systemd = uses_systemd_driver(runtime_args);
        if systemd && !systemd_running() {
            return Err(format!(
                "the runtime's arguments ({}) ask for the systemd cgroup driver, but systemd \
                 is not running as PID 1 on this host (/run/systemd/system is missing): drop \
                 --systemd-cgroup (options.systemd-cgroup in the runtimes table)",
                runtime_args.join(" ")
            ));
        }
        Ok(container_cgroups_path(&self.parent, systemd, namespace, id))
    }
}

/// Checks a configured cgroup path: absolute, without `.` or `..` components.
pub fn check_path(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{what} {path:?} must be an absolute cgroup path"));
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{what} {path:?} must not hold `.` or `..`"));
    }
    if path.trim_matches('/').is_empty() {
        return Err(format!(
            "{what} {path:?} is the root cgroup, which holds every process: name a cgroup below it"
        ));
    }
    Ok(())
}

/// Whether a runtime's global arguments select runc's (or crun's) systemd cgroup driver.
pub fn uses_systemd_driver(args: &[String]) -> bool {
    args.iter().any(|a| {
        a == "--systemd-cgroup" || a == "--systemd-cgroup=true" || a == "--systemd-cgroup=1"
    })
}

/// Whether systemd runs as PID 1 (what `sd_booted()` checks).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The cgroupsPath corral gives a container whose spec names none.
pub fn container_cgroups_path(parent: &str, systemd: bool, namespace: &str, id: &str) -> String {
    if systemd {
        // runc makes the scope `<prefix>-<name>.scope`: a `-` in the namespace is escaped
        // the way systemd-escape does, so that `a-b`/`c` and `a`/`b-c` stay apart.
        format!(
            "{SYSTEMD_SLICE}:corral-{}:{id}",
            namespace.replace('-', "\\x2d")
        )
    } else {
        format!("{}/{namespace}/{id}", parent.trim_end_matches('/'))
    }
}

/// The cgroup path (in every hierarchy) a `slice:prefix:name` cgroupsPath stands for, as
/// runc's systemd driver makes it; None when `path` is not of that form.
pub fn systemd_cgroup(path: &str) -> Option<String> {
    let mut parts = path.split(':');
    let (Some(slice), Some(prefix), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if slice.contains('/') || name.is_empty() {
        return None;
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    // A slice `a-b.slice` lives in `a.slice/a-b.slice`.
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    let mut dir = String::new();
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        dir.push('/');
        dir.push_str(&acc);
        dir.push_str(".slice");
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{dir}/{unit}"))
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub dir: PathBuf,
    /// A v1 cpuset hierarchy (a new cgroup there has no cpus nor mems until given some).
    pub cpuset: bool,
}

/// Every cgroup hierarchy mounted at its root, once each, read from `mountinfo` text.
pub fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut rest = after.split(' ');
        let (Some(fstype), Some(_source), Some(super_opts)) =
            (rest.next(), rest.next(), rest.next())
        else {
            continue;
        };
        if fields.len() < 5 || fields[3] != "/" {
            continue; // a bind mount of a cgroup below the root: not a hierarchy's root
        }
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        // One hierarchy is one superblock: mounted twice, it shows the same device.
        let key = fields[2].to_string();
        if seen.contains(&key) {
            continue;
        }
        let cpuset = fstype == "cgroup" && super_opts.split(',').any(|o| o == "cpuset");
        seen.push(key);
        out.push(Mount {
            dir: PathBuf::from(unescape(fields[4])),
            cpuset,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&code, 8) {
                out.push(n as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

/// This host's cgroup hierarchies.
pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mounts(&t))
        .unwrap_or_default()
}

/// Makes `cgroup` in every hierarchy (with its parents), giving each new v1 cpuset level
/// its parent's cpus and mems (else no process could join it). Errors name the directory.
pub fn prepare(cgroup: &str) -> Result<(), String> {
    let rel = cgroup.trim_matches('/');
    for mount in mounts() {
        let mut dir = mount.dir.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let parent = dir.clone();
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create cgroup {}: {e}", dir.display())),
            }
            if mount.cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let mine = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                    if mine.trim().is_empty() {
                        let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                        std::fs::write(dir.join(file), theirs.trim()).map_err(|e| {
                            format!("cannot write {}: {e}", dir.join(file).display())
                        })?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Moves process `pid` into `cgroup` in every hierarchy, making the cgroup first where it
/// is missing. Errors name the file that refused.
pub fn enter(cgroup: &str, pid: u32) -> Result<(), String> {
    prepare(cgroup)?;
    let rel = cgroup.trim_matches('/');
    for mount in mounts() {
        let procs = mount.dir.join(rel).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            format!(
                "cannot move pid {pid} into {}: {e}{}",
                procs.display(),
                realtime_hint(&e, pid)
            )
        })?;
    }
    Ok(())
}

/// Why a move into a v1 `cpu` cgroup fails with EINVAL for a real-time process (one run
/// under `chrt -f`/`-r`, or a child of one): it may only join a cgroup with a
/// `cpu.rt_runtime_us` budget, and new cgroups have none.
fn realtime_hint(e: &std::io::Error, pid: u32) -> &'static str {
    // SAFETY: sched_getscheduler only reads the policy of `pid`.
    let policy =
        unsafe { libc::sched_getscheduler(pid as libc::pid_t) } & !libc::SCHED_RESET_ON_FORK;
    if e.raw_os_error() == Some(libc::EINVAL)
        && (policy == libc::SCHED_FIFO || policy == libc::SCHED_RR)
    {
        " (the process has a real-time scheduling policy: on cgroup v1 it may only join a \
         cpu cgroup with a cpu.rt_runtime_us budget; run corrald without chrt, or give \
         the cgroup a budget)"
    } else {
        ""
    }
}

/// Moves process `pid`, just made by its runtime, into its cgroup in the hierarchies where
/// the runtime left it in the cgroup of the shim that ran the runtime. youki (0.7) joins
/// only the v1 controller hierarchies (its `libcgroups` v1 manager), never `name=systemd`
/// nor the unified one, so on a hybrid host its containers would stay in the shim cgroup
/// there (and in corrald's unit under systemd). runc and crun join every hierarchy: then,
/// as when the runtime placed it nowhere, this moves nothing.
pub fn follow_runtime(pid: u32) -> Result<(), String> {
    // A process that is gone already (a `run` of `true`) has nothing left to move.
    let Ok(process) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Ok(());
    };
    let parent = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let Some((left, target)) = left_behind(&process, &parent) else {
        return Ok(());
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    for controllers in left {
        let Some(root) = hierarchy_dir(&mountinfo, &controllers) else {
            continue; // not mounted here: nothing to join
        };
        let dir = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        let procs = dir.join("cgroup.procs");
        match std::fs::write(&procs, pid.to_string()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()), // it exited
            Err(e) => {
                return Err(format!(
                    "cannot move pid {pid} into {}: {e}",
                    procs.display()
                ))
            }
        }
    }
    Ok(())
}

/// From `/proc/PID/cgroup` texts of a new process and of its runtime's parent: the
/// hierarchies (by their controllers field) where the process is still in the parent's
/// cgroup, and the one cgroup it has in every other. None when there is nothing to do:
/// placed everywhere, nowhere, or in different cgroups (then no one path is its own).
fn left_behind(process: &str, parent: &str) -> Option<(Vec<String>, String)> {
    let lines = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                Some((ctrls.to_string(), path.to_string()))
            })
            .collect()
    };
    let parent = lines(parent);
    let (left, placed): (Vec<_>, Vec<_>) = lines(process)
        .into_iter()
        .partition(|(ctrls, path)| parent.iter().any(|(c, p)| c == ctrls && p == path));
    let target = placed.first()?.1.clone();
    if left.is_empty() || target == "/" || placed.iter().any(|(_, p)| *p != target) {
        return None;
    }
    Some((left.into_iter().map(|(c, _)| c).collect(), target))
}

/// Where the hierarchy with these `/proc/PID/cgroup` controllers (`name=systemd`,
/// `cpu,cpuacct`, empty for the unified one) is mounted at its root, from `mountinfo`.
fn hierarchy_dir(mountinfo: &str, controllers: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut rest = after.split(' ');
        let (fstype, _source, opts) = (rest.next()?, rest.next()?, rest.next()?);
        if fields.len() < 5 || fields[3] != "/" {
            return None;
        }
        let matches = if controllers.is_empty() {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup"
                && controllers
                    .split(',')
                    .all(|c| opts.split(',').any(|o| o == c))
        };
        matches.then(|| PathBuf::from(unescape(fields[4])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-time thread's EINVAL gets the hint; a normal one's, or another error, not.
    #[test]
    fn a_realtime_process_is_told_why_it_cannot_join_a_cpu_cgroup() {
        let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        std::thread::spawn(move || {
            // SAFETY: plain syscalls on this thread's own id.
            let tid = unsafe { libc::gettid() } as u32;
            assert_eq!(realtime_hint(&einval, tid), "");
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: param is a valid sched_param for the call.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                eprintln!("not root or no real-time budget: the hint is not tried");
                return;
            }
            assert!(realtime_hint(&einval, tid).contains("cpu.rt_runtime_us"));
            assert_eq!(realtime_hint(&eacces, tid), "");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn hierarchies_a_runtime_left_are_found() {
        let shim = "12:pids:/corral/_shims\n3:cpu:/corral/_shims\n1:name=systemd:/corral/_shims\n0::/corral/_shims\n";
        // youki: the controllers joined, name=systemd and the unified one left.
        let youki = "12:pids:/corral/ns/c\n3:cpu:/corral/ns/c\n1:name=systemd:/corral/_shims\n0::/corral/_shims\n";
        assert_eq!(
            left_behind(youki, shim),
            Some((
                vec!["name=systemd".to_string(), String::new()],
                "/corral/ns/c".to_string()
            ))
        );
        // runc: everywhere; a runtime that placed it nowhere; two different places.
        let runc = shim.replace("_shims", "ns/c");
        assert_eq!(left_behind(&runc, shim), None);
        assert_eq!(left_behind(shim, shim), None);
        let split = "12:pids:/a\n3:cpu:/b\n0::/corral/_shims\n";
        assert_eq!(left_behind(split, shim), None);

        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
            31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
            35 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
            36 25 0:32 /x /mnt/x rw - cgroup cgroup rw,pids\n";
        let dir = |c: &str| hierarchy_dir(mountinfo, c);
        assert_eq!(dir(""), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            dir("name=systemd"),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(dir("cpu"), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert_eq!(dir("pids"), None, "a bind mount below the root is not one");
    }

    #[test]
    fn configured_paths_are_checked() {
        assert!(check_path("--shim-cgroup", "/corral/_shims").is_ok());
        assert!(check_path("--shim-cgroup", "corral").is_err());
        assert!(check_path("--shim-cgroup", "/a/../b").is_err());
        assert!(check_path("--cgroup-parent", "/").is_err());
    }

    #[test]
    fn cgroupfs_paths_are_absolute_and_per_namespace() {
        assert_eq!(
            container_cgroups_path("/corral", false, "ns", "web"),
            "/corral/ns/web"
        );
        assert_eq!(
            container_cgroups_path("/corral/", false, "ns", "web"),
            "/corral/ns/web"
        );
    }

    #[test]
    fn systemd_paths_are_slice_prefix_name() {
        let p = container_cgroups_path("/corral", true, "default", "web");
        assert_eq!(p, "corral.slice:corral-default:web");
        assert_eq!(
            systemd_cgroup(&p).as_deref(),
            Some("/corral.slice/corral-default-web.scope")
        );
        // Namespaces with `-` cannot meet ids with `-`.
        let a = container_cgroups_path("/corral", true, "a-b", "c");
        let b = container_cgroups_path("/corral", true, "a", "b-c");
        assert_ne!(systemd_cgroup(&a), systemd_cgroup(&b));
        assert_eq!(
            systemd_cgroup("system.slice:docker:x").as_deref(),
            Some("/system.slice/docker-x.scope")
        );
        assert_eq!(
            systemd_cgroup("a-b.slice::x").as_deref(),
            Some("/a.slice/a-b.slice/x.scope")
        );
        assert_eq!(systemd_cgroup("/corral/ns/web"), None);
        assert_eq!(systemd_cgroup("a:b"), None);
    }

    #[test]
    fn the_systemd_driver_without_systemd_is_a_clear_error() {
        let p = CgroupPlacement::default();
        assert_eq!(
            p.cgroups_path(&[], "ns", "web").as_deref(),
            Ok("/corral/ns/web")
        );
        let systemd = p.cgroups_path(&["--systemd-cgroup".into()], "ns", "web");
        if systemd_running() {
            assert_eq!(systemd.as_deref(), Ok("corral.slice:corral-ns:web"));
        } else {
            let e = systemd.unwrap_err();
            assert!(e.contains("systemd is not running as PID 1"), "{e}");
            assert!(e.contains("--systemd-cgroup"), "{e}");
        }
    }

    #[test]
    fn the_systemd_driver_is_told_from_the_arguments() {
        assert!(uses_systemd_driver(&["--systemd-cgroup".into()]));
        assert!(uses_systemd_driver(&["--systemd-cgroup=true".into()]));
        assert!(!uses_systemd_driver(&["--systemd-cgroup=false".into()]));
        assert!(!uses_systemd_driver(&["--debug".into()]));
    }

    #[test]
    fn mountinfo_lists_each_hierarchy_once() {
        let text = "\
30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
35 30 0:30 / /mnt/again rw - cgroup cgroup rw,cpuset,clone_children
36 30 0:31 /sub /mnt/sub rw - cgroup cgroup rw,memory
37 30 0:32 / /mnt/with\\040space rw - cgroup cgroup rw,pids
";
        let m = parse_mounts(text);
        let dirs: Vec<_> = m.iter().map(|m| m.dir.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/mnt/with space"
            ]
        );
        assert_eq!(
            m.iter().map(|m| m.cpuset).collect::<Vec<_>>(),
            [false, false, false, true, false]
        );
        // This host: every hierarchy found.
        assert!(!mounts().is_empty());
    }
}
