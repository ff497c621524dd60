//! The OCI runtime spec of a container made from an image, as containerd's `WithNewSpec`
//! and `WithImageConfig` (and docker) make it: corral's default spec
//! ([`crate::bundle::default_spec`]) with the image config's Entrypoint, Cmd, Env,
//! WorkingDir, User, Labels and StopSignal applied, then the caller's options.
//!
//! Pure: it reads the image's config JSON and, for the user, the rootfs's `/etc/passwd`
//! and `/etc/group` (resolved inside the rootfs: a symlink never leads out of it), and
//! writes nothing.

// Not wired into containers yet: create-from-image will call it.

use crate::error::{Error, Result};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Mount, Spec, User};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The PATH a container gets when its image sets none (docker's and containerd's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The annotation the image's StopSignal is recorded under in the spec.
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";

/// The most of `/etc/passwd` or `/etc/group` that is read.
pub const MAX_ETC_FILE: u64 = 1 << 20;

/// How many symlinks a path inside the rootfs may go through (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// The capabilities of a container made from an image: containerd's and docker's defaults
/// (an image's entrypoint often changes owners or drops to another user, which the
/// busybox bundle's three do not allow).
pub const IMAGE_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// What the caller asks of a container made from an image (corralctl's flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecOptions {
    /// `-- CMD...`: replaces the image's Cmd.
    pub args: Option<Vec<String>>,
    /// `--entrypoint`: replaces the image's Entrypoint and, unless `args` is given, clears
    /// its Cmd (as docker does). An empty list clears the Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `--env K=V`, appended to the image's Env; a later value of a key wins.
    pub env: Vec<String>,
    /// `--user`: `name`, `uid`, `uid:gid`, `name:group`...; replaces the image's User.
    pub user: Option<String>,
    /// `--cwd`: replaces the image's WorkingDir; absolute.
    pub cwd: Option<String>,
    /// `--hostname` (default `corral`).
    pub hostname: Option<String>,
    /// `--read-only`: a read-only root filesystem.
    pub read_only: bool,
    /// `--net host`: no network namespace of its own.
    pub host_network: bool,
    /// `--no-pivot-root`: for the runtime's command line, not in the spec.
    pub no_pivot_root: bool,
    /// `--mount type=bind,src=..,dst=..[,ro]`, see [`parse_mount`].
    pub mounts: Vec<MountSpec>,
    /// `--annotation K=V`: over the image's Labels.
    pub annotations: BTreeMap<String, String>,
    /// `--uidmap`/`--gidmap`: a user namespace with these maps ([`userns::apply`]).
    pub user_ns: Option<userns::UserNs>,
}

/// What a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A recursive bind mount of a host path.
    Bind,
    /// A fresh tmpfs.
    Tmpfs,
}

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Bind or tmpfs.
    pub kind: MountKind,
    /// The host path of a bind mount (absolute); `None` for a tmpfs.
    pub source: Option<PathBuf>,
    /// Where in the container (absolute).
    pub destination: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A spec made from an image, with what the caller needs beside it.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The runtime spec (root.path is the rootfs given).
    pub spec: Spec,
    #[allow(dead_code)] // read by stop once containers keep it (issue 11)
    /// The image's StopSignal (as the image wrote it, e.g. `SIGQUIT`), for stop.
    pub stop_signal: Option<String>,
    #[allow(dead_code)] // for the runtime's create once the CLI offers it (issue 11)
    /// `--no-pivot-root`, for the runtime's create.
    pub no_pivot_root: bool,
}

/// The part of an image config (OCI or docker) that a container's spec is made from.
#[derive(Debug, Default, Deserialize)]
struct ImageFile {
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    stop_signal: Option<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Makes the runtime spec of a container whose rootfs is `rootfs` (the unpacked image)
/// from the image's config JSON and the caller's options.
///
/// Args are Entrypoint + Cmd; Env is the default PATH (unless the image sets PATH), the
/// image's Env, then `opts.env` (a later value of a key replaces the earlier in its
/// place); cwd is `opts.cwd`, WorkingDir or `/`; the user is resolved against the
/// rootfs's `/etc/passwd` and `/etc/group` ([`resolve_user`]); Labels and then
/// `opts.annotations` become annotations, and StopSignal the annotation
/// [`STOP_SIGNAL_ANNOTATION`].
pub fn spec_from_image(config_json: &[u8], rootfs: &Path, opts: &SpecOptions) -> Result<ImageSpec> {
    let image: ImageFile = serde_json::from_slice(config_json)
        .map_err(|e| invalid(format!("the image config is not a JSON image config: {e}")))?;
    let config = image.config.unwrap_or_default();
    if !rootfs.is_dir() {
        return Err(invalid(format!(
            "rootfs {} does not exist or is not a directory",
            rootfs.display()
        )));
    }

    let mut spec = crate::bundle::default_spec();
    let mut process = spec.process().clone().unwrap_or_default();

    let entrypoint = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = match (&opts.args, &opts.entrypoint) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => config.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(invalid("image has no Entrypoint or Cmd; give a command"));
    }
    process.set_args(Some(args));

    let image_env = config.env.clone().unwrap_or_default();
    process.set_env(Some(merge_env(&image_env, &opts.env)?));

    let (cwd, from) = match (&opts.cwd, &config.working_dir) {
        (Some(c), _) => (c.clone(), "--cwd"),
        (None, Some(w)) if !w.is_empty() => (w.clone(), "the image's WorkingDir"),
        _ => ("/".to_string(), "the default"),
    };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "working directory {cwd:?} (from {from}) is not absolute"
        )));
    }
    process.set_cwd(PathBuf::from(cwd));

    let user = opts
        .user
        .clone()
        .or_else(|| config.user.clone())
        .unwrap_or_default();
    let (uid, gid, additional) = resolve_user(rootfs, &user)?;
    let mut u = User::default();
    u.set_uid(uid);
    u.set_gid(gid);
    u.set_additional_gids((!additional.is_empty()).then_some(additional));
    process.set_user(u);

    if let Some(mut caps) = process.capabilities().clone() {
        let set: HashSet<Capability> = IMAGE_CAPABILITIES.iter().copied().collect();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        process.set_capabilities(Some(caps));
    }
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(opts.read_only));
    spec.set_root(Some(root));

    if let Some(h) = &opts.hostname {
        check_hostname(h)?;
        spec.set_hostname(Some(h.clone()));
    }

    if opts.host_network {
        if let Some(mut linux) = spec.linux().clone() {
            if let Some(mut ns) = linux.namespaces().clone() {
                ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
                linux.set_namespaces(Some(ns));
            }
            spec.set_linux(Some(linux));
        }
    }

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &opts.mounts {
        check_mount(m)?;
        // A mount of the caller's at a default's destination replaces it (as docker does).
        mounts.retain(|d| d.destination() != &m.destination);
        mounts.push(to_oci_mount(m));
    }
    spec.set_mounts(Some(mounts));

    let mut annotations = spec.annotations().clone().unwrap_or_default();
    for (k, v) in config.labels.iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }
    let stop_signal = config
        .stop_signal
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(s) = &stop_signal {
        annotations.insert(STOP_SIGNAL_ANNOTATION.to_string(), s.clone());
    }
    for (k, v) in &opts.annotations {
        annotations.insert(k.clone(), v.clone());
    }
    spec.set_annotations(Some(annotations.into_iter().collect()));
    if let Some(ns) = &opts.user_ns {
        userns::apply(&mut spec, ns)?;
    }

    Ok(ImageSpec {
        spec,
        stop_signal,
        no_pivot_root: opts.no_pivot_root,
    })
}

/// The default PATH unless the image sets one, the image's Env, then the caller's: a later
/// value of a key replaces the earlier in its place. A caller's entry without `=` is an
/// error; an image's is skipped.
fn merge_env(image: &[String], extra: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut put = |kv: &str| {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = kv.to_string(),
            None => out.push(kv.to_string()),
        }
    };
    let image_has_path = image.iter().any(|e| e.starts_with("PATH="));
    if !image_has_path {
        put(DEFAULT_PATH);
    }
    for e in image {
        if e.split_once('=').is_some_and(|(k, _)| !k.is_empty()) {
            put(e);
        }
    }
    for e in extra {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => put(e),
            _ => {
                return Err(invalid(format!(
                    "environment variable {e:?} is not KEY=VALUE"
                )))
            }
        }
    }
    Ok(out)
}

fn check_hostname(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "hostname {h:?}: want 1 to 64 letters, digits, '-', '.' or '_'"
        )))
    }
}

fn check_container_path(p: &Path, what: &str) -> Result<()> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "mount {what} {} must be absolute and without '..'",
            p.display()
        )));
    }
    Ok(())
}

fn check_mount(m: &MountSpec) -> Result<()> {
    check_container_path(&m.destination, "destination")?;
    if m.destination == Path::new("/") {
        return Err(invalid("mount destination / would cover the rootfs"));
    }
    match (m.kind, &m.source) {
        (MountKind::Bind, Some(src)) => check_container_path(src, "source"),
        (MountKind::Bind, None) => Err(invalid("a bind mount needs src=")),
        (MountKind::Tmpfs, _) => Ok(()),
    }
}

fn to_oci_mount(m: &MountSpec) -> Mount {
    let mut out = Mount::default();
    out.set_destination(m.destination.clone());
    let rw = if m.read_only { "ro" } else { "rw" }.to_string();
    match m.kind {
        MountKind::Bind => {
            out.set_typ(Some("bind".to_string()));
            out.set_source(m.source.clone());
            out.set_options(Some(vec!["rbind".to_string(), "rprivate".to_string(), rw]));
        }
        MountKind::Tmpfs => {
            out.set_typ(Some("tmpfs".to_string()));
            out.set_source(Some(PathBuf::from("tmpfs")));
            out.set_options(Some(vec![
                "nosuid".to_string(),
                "nodev".to_string(),
                "mode=1777".to_string(),
                rw,
            ]));
        }
    }
    out
}

/// Parses a `--mount`: comma-separated `type=bind|tmpfs` (default bind),
/// `src=`/`source=`, `dst=`/`destination=`/`target=`, and `ro`/`readonly`[`=true|false`]
/// or `rw`. Paths are absolute, without `..`.
pub fn parse_mount(s: &str) -> Result<MountSpec> {
    let bad = |part: &str, why: &str| invalid(format!("--mount {s:?}: {part:?} {why}"));
    let mut kind = MountKind::Bind;
    let mut source = None;
    let mut destination = None;
    let mut read_only = false;
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (part, None),
        };
        match (key, value) {
            ("type", Some("bind")) => kind = MountKind::Bind,
            ("type", Some("tmpfs")) => kind = MountKind::Tmpfs,
            ("type", _) => return Err(bad(part, "is not a known type (bind, tmpfs)")),
            ("src" | "source", Some(v)) if !v.is_empty() => source = Some(PathBuf::from(v)),
            ("dst" | "destination" | "target", Some(v)) if !v.is_empty() => {
                destination = Some(PathBuf::from(v))
            }
            ("ro" | "readonly", None | Some("true" | "1")) => read_only = true,
            ("ro" | "readonly", Some("false" | "0")) | ("rw", None) => read_only = false,
            ("src" | "source" | "dst" | "destination" | "target", _) => {
                return Err(bad(part, "needs a path"))
            }
            ("ro" | "readonly", _) => return Err(bad(part, "wants true or false")),
            _ => return Err(bad(part, "is not a known option (type, src, dst, ro)")),
        }
    }
    let destination =
        destination.ok_or_else(|| invalid(format!("--mount {s:?}: no dst= given")))?;
    let m = MountSpec {
        kind,
        source: if kind == MountKind::Tmpfs {
            None
        } else {
            source
        },
        destination,
        read_only,
    };
    if kind == MountKind::Bind && m.source.is_none() {
        return Err(invalid(format!("--mount {s:?}: a bind mount needs src=")));
    }
    check_mount(&m).map_err(|e| e.context(&format!("--mount {s:?}")))?;
    Ok(m)
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .filter(|e| !e.name.is_empty())
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .filter(|e| !e.name.is_empty())
        .collect()
}

/// Resolves a `--user` (or an image's User) against `<rootfs>/etc/passwd` and
/// `<rootfs>/etc/group` as docker does, to (uid, gid, additional gids):
///
/// - empty: root (uid 0, with root's gid and groups if passwd has it);
/// - `name` or `uid`: passwd's entry, with its gid and the groups that list the name;
///   a numeric uid that passwd lacks is uid with gid 0 and no groups;
/// - `user:group`: the user as above, the group by name from /etc/group or by number,
///   and no additional groups (the group given is the only one).
///
/// An unknown name is InvalidArgument naming it and the file. The files are read inside
/// the rootfs (symlinks resolved within it, never out of it), at most [`MAX_ETC_FILE`].
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>)> {
    let user = user.trim();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if group_part.is_some_and(|g| g.is_empty() || g.contains(':'))
        || (user_part.is_empty() && group_part.is_some())
    {
        return Err(invalid(format!(
            "user {user:?}: want name, uid, name:group or uid:gid"
        )));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let group_numeric = group_part.and_then(|g| g.parse::<u32>().ok());

    // Only read what is needed: a numeric uid:gid needs no file at all.
    let passwd = if numeric_uid.is_some() && group_numeric.is_some() {
        Vec::new()
    } else {
        read_in_rootfs(rootfs, "etc/passwd")?
            .map(|t| parse_passwd(&t))
            .unwrap_or_default()
    };
    let entry = match numeric_uid {
        Some(uid) => passwd.iter().find(|e| e.uid == uid),
        None => passwd.iter().find(|e| e.name == user_part),
    };
    let (uid, mut gid, name) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.clone())),
        (None, Some(uid)) => (uid, 0, None),
        (None, None) => {
            return Err(invalid(format!(
                "user {user_part:?} is not in {}/etc/passwd",
                rootfs.display()
            )))
        }
    };

    let need_groups = group_numeric.is_none() && (group_part.is_some() || name.is_some());
    let groups = if need_groups {
        read_in_rootfs(rootfs, "etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut additional = Vec::new();
    match group_part {
        Some(g) => {
            gid = match group_numeric {
                Some(n) => n,
                None => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        invalid(format!(
                            "group {g:?} is not in {}/etc/group",
                            rootfs.display()
                        ))
                    })?,
            };
        }
        None => {
            if let Some(name) = &name {
                for g in groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                {
                    if g.gid != gid && !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    Ok((uid, gid, additional))
}

/// Reads `rel` (relative, e.g. `etc/passwd`) inside `rootfs` as if `rootfs` were `/`:
/// every symlink on the way is resolved against the rootfs (an absolute target starts at
/// the rootfs, `..` stops at it), through file descriptors so that nothing outside can be
/// reached. `None` if it does not exist; an error if it is not a regular file or is larger
/// than [`MAX_ETC_FILE`].
fn read_in_rootfs(rootfs: &Path, rel: &str) -> Result<Option<String>> {
    use nix::fcntl::{openat, readlinkat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let shown = rootfs.join(rel);
    let io = |e: nix::errno::Errno| Error::io(shown.display(), std::io::Error::from(e));
    let open = |dir: &OwnedFd, name: &OsString, flags: OFlag| -> nix::Result<OwnedFd> {
        let fd = openat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: openat just returned this fd, which nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let root: OwnedFd = File::open(rootfs)
        .map_err(|e| Error::io(rootfs.display(), e))?
        .into();
    let push = |stack: &mut Vec<OsString>, path: &Path| {
        let comps: Vec<OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect();
        stack.extend(comps.into_iter().rev());
    };
    let mut stack = Vec::new();
    push(&mut stack, Path::new(rel));
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(name) = stack.pop() {
        if name == ".." {
            dirs.pop();
            continue;
        }
        let cur = dirs.last().unwrap_or(&root);
        let fd = match open(cur, &name, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let st = fstat(fd.as_raw_fd()).map_err(io)?;
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if fmt == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(invalid(format!(
                    "{}: too many symlinks inside the rootfs",
                    shown.display()
                )));
            }
            let target =
                PathBuf::from(readlinkat(Some(cur.as_raw_fd()), name.as_os_str()).map_err(io)?);
            if target.is_absolute() {
                dirs.clear();
            }
            push(&mut stack, &target);
            continue;
        }
        if !stack.is_empty() {
            if fmt != SFlag::S_IFDIR {
                return Ok(None);
            }
            dirs.push(fd);
            continue;
        }
        if fmt != SFlag::S_IFREG {
            return Err(invalid(format!(
                "{} is not a regular file",
                shown.display()
            )));
        }
        if st.st_size as u64 > MAX_ETC_FILE {
            return Err(invalid(format!(
                "{} is larger than {MAX_ETC_FILE} bytes",
                shown.display()
            )));
        }
        // Opened again by name, for reading; O_NOFOLLOW refuses it if it became a symlink.
        let file = File::from(open(cur, &name, OFlag::O_RDONLY | OFlag::O_NONBLOCK).map_err(io)?);
        let mut bytes = Vec::new();
        file.take(MAX_ETC_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(shown.display(), e))?;
        if bytes.len() as u64 > MAX_ETC_FILE {
            return Err(invalid(format!(
                "{} is larger than {MAX_ETC_FILE} bytes",
                shown.display()
            )));
        }
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(None)
}

pub mod userns;

#[cfg(test)]
mod tests;
