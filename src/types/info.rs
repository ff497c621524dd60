//! What the supervisor answers about containers, processes and itself.

use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The state of a container or process (containerd's task Status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Created by the runtime, not yet started.
    Created,
    /// Its process is running.
    Running,
    /// Being frozen.
    Pausing,
    /// Frozen.
    Paused,
    /// Its process has exited.
    Stopped,
    /// The supervisor could not tell.
    Unknown,
}

impl Status {
    /// Every state, in lifecycle order (for tables and per-state counts).
    pub const ALL: [Status; 6] = [
        Status::Created,
        Status::Running,
        Status::Pausing,
        Status::Paused,
        Status::Stopped,
        Status::Unknown,
    ];

    /// Whether a container in this state still has its process and cgroup: created,
    /// running, pausing or paused (not stopped, not unknown).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Created | Status::Running | Status::Pausing | Status::Paused
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        })
    }
}

/// How a process ended: its exit code (128 + signal for a signal, 255 when unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExitStatus {
    /// The code, as a shell would report it.
    pub code: u32,
    /// When it exited, in nanoseconds since the epoch.
    pub exited_at_ns: u64,
}

/// The exit code recorded when the real one cannot be known (containerd's UnknownStatus).
pub const UNKNOWN_EXIT_CODE: u32 = 255;

/// One process as the supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// `init` or the exec id.
    pub id: String,
    /// Host pid (0 when never started).
    pub pid: u32,
    /// Running or stopped.
    pub status: Status,
    /// Set once it has exited.
    pub exit: Option<ExitStatus>,
    /// It has a pseudo-terminal (resizable; one output stream).
    #[serde(default)]
    pub terminal: bool,
    /// It has a stdin that `attach` writes into (`open_stdin`).
    #[serde(default)]
    pub stdin: bool,
    /// Its log, when the shim owns its output (CRI format; rotated files beside it as
    /// `<path>.1`, `<path>.2`, ...); `None` when it writes to paths it was given.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
}

/// One container as the supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerInfo {
    /// Namespace.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The bundle it was created from.
    pub bundle: PathBuf,
    /// The runtime binary driving it.
    pub runtime: PathBuf,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its state.
    pub status: Status,
    /// The init process's host pid.
    pub pid: u32,
    /// When it was created, in nanoseconds since the epoch.
    pub created_at_ns: u64,
    /// The init process's exit, once it has exited.
    pub exit: Option<ExitStatus>,
    /// Its exec processes, running or exited.
    pub execs: Vec<ProcessInfo>,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// How many times the policy restarted it.
    pub restarts: u32,
    /// How many of its processes the OOM killer killed.
    pub oom_kills: u32,
    /// Its last exit followed an OOM kill.
    pub exit_oom_killed: bool,
    /// In a list: a runtime call of its `operation` has run for over a second (its verbs
    /// wait or are refused), or it was registered a moment ago and did not answer in time
    /// (then only its name is known).
    #[serde(default)]
    pub busy: bool,
    /// The operation in flight, if any: `starting`, `checkpointing`, `restart-pending`,
    /// `restarting` or `deleting`; empty when idle.
    #[serde(default)]
    pub operation: String,
    /// The signal `stop` sends first: its image's StopSignal (the spec's
    /// `org.opencontainers.image.stopSignal` annotation), else SIGTERM (15).
    #[serde(default = "sigterm")]
    pub stop_signal: i32,
    /// The init process's log, when the shim owns its output (see
    /// [`ProcessInfo::log_path`]).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The init process has a pseudo-terminal.
    #[serde(default)]
    pub terminal: bool,
}

fn sigterm() -> i32 {
    libc::SIGTERM
}

impl ContainerInfo {
    /// A container known by name only.
    pub fn unknown(namespace: &str, id: &str) -> Self {
        ContainerInfo {
            namespace: namespace.to_string(),
            id: id.to_string(),
            bundle: PathBuf::new(),
            runtime: PathBuf::new(),
            labels: BTreeMap::new(),
            status: Status::Unknown,
            pid: 0,
            created_at_ns: 0,
            exit: None,
            execs: Vec::new(),
            restart: RestartPolicy::No,
            restarts: 0,
            oom_kills: 0,
            exit_oom_killed: false,
            busy: false,
            operation: String::new(),
            stop_signal: libc::SIGTERM,
            log_path: None,
            terminal: false,
        }
    }
}

/// One process in a container's cgroup, with the corral process it belongs to if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PidInfo {
    /// Host pid.
    pub pid: u32,
    /// `init` or an exec id when the pid is one of corral's processes.
    pub process_id: Option<String>,
}

/// The daemon's own counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DaemonInfo {
    /// Release.
    pub version: String,
    /// Containers in all namespaces.
    pub containers: usize,
    /// Of which running.
    pub running: usize,
    /// Event subscribers connected now.
    pub subscribers: usize,
    /// Subscribers cut off since start because they could not keep up.
    pub lagged_subscribers: u64,
    /// The last event's sequence number.
    pub last_seq: u64,
    /// Children (shims, runtime calls) registered with the reaper and not yet reaped.
    pub pending_children: usize,
    /// What this daemon can do and where it keeps things.
    pub features: Features,
}

/// A daemon's features (containerd's IntrospectionService, in short).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Features {
    /// The runtimes a create request can name: name -> binary (as found at start).
    pub runtimes: BTreeMap<String, PathBuf>,
    /// The runtime of a create that names none.
    pub default_runtime: PathBuf,
    /// Snapshotters: `overlayfs` and `native`, the default first (that of an image run
    /// that names none: `native` where the kernel has no overlayfs).
    pub snapshotters: Vec<String>,
    /// CRIU, for checkpoint and restore.
    pub criu: CriuFeature,
    /// The host's cgroup layout: `v1`, `v2` or `hybrid`.
    pub cgroups: String,
    /// Where container state lives.
    pub state_dir: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// Images, content, leases and namespace records.
    #[serde(default)]
    pub data_dir: PathBuf,
}

/// The CRIU binary and whether it can be used, as found at start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CriuFeature {
    /// The binary.
    pub path: PathBuf,
    /// Its version (`4.1.1`), if it answered.
    pub version: Option<String>,
    /// Why checkpoint and restore are unavailable, if they are.
    pub error: Option<String>,
}
