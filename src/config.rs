//! The supervisor's settings and their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One named OCI runtime: the binary and the global arguments it always gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEntry {
    /// A path, or a name looked up in PATH.
    pub binary: PathBuf,
    /// Global arguments placed before a request's own `runtime_args`.
    pub args: Vec<String>,
}

/// The name of the runtime every [`Config`] has unless it redefines it.
pub const DEFAULT_RUNTIME: &str = "runc";

/// The supervisor's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where container state lives (`<state>/<namespace>/<id>/...`).
    pub state_dir: PathBuf,
    /// The runtime's state root; each namespace gets `<root>/<namespace>`.
    pub runtime_root: PathBuf,
    /// The default runtime: a name in [`Config::runtimes`], a path, or a name looked up
    /// in PATH.
    pub runtime: PathBuf,
    /// Named runtimes a create request can ask for by name; `runc` (from PATH, no
    /// arguments) unless redefined.
    pub runtimes: BTreeMap<String, RuntimeEntry>,
    /// The corral-shim binary.
    pub shim: PathBuf,
    /// How long one runtime call may take.
    pub runtime_timeout: Duration,
    /// How long a shim may take to create or exec its process.
    pub shim_timeout: Duration,
    /// The CRIU binary for checkpoint and restore.
    pub criu: PathBuf,
    /// Images, content, leases and namespaces: persistent, apart from the volatile
    /// state dir. One daemon per data dir (it is locked).
    pub data_dir: PathBuf,
    /// Containers' logs (`<dir>/<namespace>/<id>/<process>.log`), written by their shims;
    /// `None` for `<data_dir>/logs`.
    pub log_dir: Option<PathBuf>,
    /// A log is rotated when it would grow past this many bytes (0: never), unless the
    /// process asks otherwise ([`crate::Stdio::log_max_size`]).
    pub log_max_size: u64,
    /// How many log files a process keeps, the live one included (at least 1).
    pub log_max_files: u32,
    /// Where shims and containers' cgroups go, apart from corrald's own cgroup.
    pub cgroups: crate::cgroups::placement::CgroupPlacement,
    /// The snapshotter of containers from images that name none, and of restores of
    /// their checkpoints: `overlayfs` or `native`; `None` for overlayfs, or native when
    /// the kernel has no overlayfs.
    pub snapshotter: Option<String>,
}

/// Where containers' logs go and how they rotate, as the containers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// `<dir>/<namespace>/<id>/<process>.log`.
    pub dir: PathBuf,
    /// The default rotation size in bytes (0: never).
    pub max_size: u64,
    /// The default number of files kept.
    pub max_files: u32,
}

/// The default size at which a container's log is rotated: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// The default number of log files a process keeps: 3.
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/corral";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/corral";
/// The default runtime root.
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/corral-runc";
/// The version of this library and its binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: DEFAULT_STATE_DIR.into(),
            runtime_root: DEFAULT_RUNTIME_ROOT.into(),
            runtime: DEFAULT_RUNTIME.into(),
            runtimes: default_runtimes(),
            shim: default_shim_path(),
            runtime_timeout: Duration::from_secs(30),
            shim_timeout: Duration::from_secs(60),
            criu: default_criu_path(),
            data_dir: DEFAULT_DATA_DIR.into(),
            log_dir: None,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            cgroups: Default::default(),
            snapshotter: None,
        }
    }
}

/// The runtimes table every config starts from: `runc` from PATH, no arguments.
pub fn default_runtimes() -> BTreeMap<String, RuntimeEntry> {
    BTreeMap::from([(
        DEFAULT_RUNTIME.to_string(),
        RuntimeEntry {
            binary: DEFAULT_RUNTIME.into(),
            args: Vec::new(),
        },
    )])
}

/// `corral-shim` beside the current executable (or beside its parent dir, for test and
/// example binaries under target/), else the bare name for a PATH lookup.
pub fn default_shim_path() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("corral-shim");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("corral-shim")
}

/// CRIU 4.2.1 at /usr/local/sbin/criu when there, else `criu` from PATH.
pub fn default_criu_path() -> PathBuf {
    let built = PathBuf::from(crate::checkpoint::DEFAULT_CRIU);
    if built.is_file() {
        built
    } else {
        PathBuf::from("criu")
    }
}
