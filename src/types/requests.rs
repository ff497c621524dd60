//! What clients ask for: creates, execs, signals, stops, resources, stdio.

use super::*;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a process's stdio goes.
///
/// With neither `stdout` nor `stderr` given, the shim owns both: it drains them for the
/// process's whole life and writes them to the process's log (CRI format, rotated; see
/// [`ProcessInfo::log_path`]), which `logs` reads and `attach` follows. A path given is
/// written by the process itself (a file or a fifo); the other one then goes to /dev/null.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    /// Read as the process's stdin (a file or a fifo); `None` for /dev/null, or for the
    /// daemon's own stdin fifo with `open_stdin`.
    pub stdin: Option<PathBuf>,
    /// Written with the process's stdout.
    pub stdout: Option<PathBuf>,
    /// Written with the process's stderr.
    pub stderr: Option<PathBuf>,
    /// Give the process a stdin that `attach` writes into (docker's `-i`): a fifo the
    /// daemon makes; the process sees end-of-file only on `close_stdin`.
    #[serde(default)]
    pub open_stdin: bool,
    /// Give the process a pseudo-terminal (`-t`): stdout and stderr are one stream, the
    /// terminal's, and the process can be resized.
    #[serde(default)]
    pub terminal: bool,
    /// The terminal's initial size.
    #[serde(default)]
    pub console_size: Option<ConsoleSize>,
    /// Rotate the log when it would grow past this many bytes; `None` for the daemon's
    /// default, `Some(0)` never.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// Keep this many log files, the live one included (at least 1); `None` for the
    /// daemon's default.
    #[serde(default)]
    pub log_max_files: Option<u32>,
}

/// A terminal's size, in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

impl Stdio {
    /// Checks that every path given is absolute and the options fit together; `what`
    /// starts the error ("exec ", or "").
    pub fn check_absolute(&self, what: &str) -> Result<()> {
        for (name, path) in [
            ("stdin", &self.stdin),
            ("stdout", &self.stdout),
            ("stderr", &self.stderr),
        ] {
            if let Some(p) = path.as_ref().filter(|p| !p.is_absolute()) {
                return Err(Error::InvalidArgument(format!(
                    "{what}{name} path {} must be absolute",
                    p.display()
                )));
            }
        }
        let bad = |msg: &str| Err(Error::InvalidArgument(format!("{what}{msg}")));
        if self.open_stdin && self.stdin.is_some() {
            return bad("stdin: give a stdin path or open_stdin, not both");
        }
        if self.terminal && self.stderr.is_some() {
            return bad("stderr path: a terminal has one output stream; give stdout only");
        }
        if self.console_size.is_some() && !self.terminal {
            return bad("console size: the process has no terminal");
        }
        if self
            .console_size
            .is_some_and(|c| c.width == 0 || c.height == 0)
        {
            return bad("console size: width and height must be at least 1");
        }
        if self.log_max_files == Some(0) {
            return bad("log max files: at least 1 (the live file)");
        }
        if !self.logged() && (self.log_max_size.is_some() || self.log_max_files.is_some()) {
            return bad(
                "log options: the process writes to the stdout/stderr paths given, not to a log",
            );
        }
        Ok(())
    }

    /// Whether the shim writes the process's output to its log (no output path given).
    pub fn logged(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}

/// What a client asks for to create a container.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CreateRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The OCI bundle: a directory with config.json and its rootfs.
    pub bundle: PathBuf,
    /// The runtime binary; `None` for the daemon's default.
    pub runtime: Option<PathBuf>,
    /// Extra global arguments for the runtime (before the verb).
    pub runtime_args: Vec<String>,
    /// Free-form labels, filterable in `list`.
    pub labels: BTreeMap<String, String>,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// Start it too, in one runtime call (`runc run --detach`).
    pub start: bool,
    /// When to restart it after its process exits.
    pub restart: RestartPolicy,
    /// Run an image instead of a bundle: the daemon unpacks it, mounts a writable snapshot
    /// on it as the rootfs and writes the spec from its config (`bundle` is then ignored
    /// and reported as the bundle it made).
    #[serde(default)]
    pub image: Option<Box<ImageRun>>,
    /// Have the runtime move the rootfs and chroot instead of `pivot_root` (`runc create
    /// --no-pivot`): for hosts whose root is an initramfs, where pivot_root fails.
    #[serde(default)]
    pub no_pivot_root: bool,
}

/// The process an exec runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ExecProcess {
    /// Run these arguments with the container's own process settings (env, cwd, user).
    Args(Vec<String>),
    /// A full OCI process spec, as JSON.
    SpecJson(String),
}

/// What a client asks for to run another process in a running container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The new process's id, unique within the container.
    pub exec_id: String,
    /// What to run.
    pub process: ExecProcess,
    /// Its stdio.
    pub stdio: Stdio,
}

/// A signal for one process, or for all of a container's processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KillRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The exec to signal; `None` for the init process.
    pub exec_id: Option<String>,
    /// The signal number.
    pub signal: i32,
    /// Every process of the container (init only).
    pub all: bool,
}

/// Stop (or restart) a container: its stop signal, then SIGKILL after a grace period.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StopRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The first signal; 0 for the container's own stop signal (its image's StopSignal,
    /// else SIGTERM: [`ContainerInfo::stop_signal`]).
    pub signal: i32,
    /// How long the process may take to exit before SIGKILL, in milliseconds.
    pub timeout_ms: u64,
}

/// Names one process: a container's init (exec_id `None`) or one of its execs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessRef {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The exec; `None` for the init process.
    pub exec_id: Option<String>,
}

/// New resource limits for a running container (containerd v0.2's Resource); `None` leaves
/// a value as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU shares (relative weight).
    pub cpu_shares: Option<u64>,
    /// Block I/O weight, 10-1000.
    pub blkio_weight: Option<u16>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds (-1 for none).
    pub cpu_quota: Option<i64>,
    /// CPUs allowed, e.g. "0-1".
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed, e.g. "0".
    pub cpuset_mems: Option<String>,
    /// Kernel memory limit in bytes.
    pub kernel_memory: Option<i64>,
    /// Kernel TCP buffer limit in bytes.
    pub kernel_tcp_memory: Option<i64>,
    /// Memory limit in bytes (-1 for none).
    pub memory: Option<i64>,
    /// Memory soft limit in bytes.
    pub memory_reservation: Option<i64>,
    /// Memory + swap limit in bytes (-1 for none).
    pub memory_swap: Option<i64>,
    /// Most processes (-1 for none).
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// Each field that is set: (seed name, runtime flag, value).
    pub fn fields(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        let mut push = |name, flag, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, flag, v));
            }
        };
        push(
            "CPUShares",
            "--cpu-share",
            self.cpu_shares.map(|v| v.to_string()),
        );
        push(
            "BlkioWeight",
            "--blkio-weight",
            self.blkio_weight.map(|v| v.to_string()),
        );
        push(
            "CPUPeriod",
            "--cpu-period",
            self.cpu_period.map(|v| v.to_string()),
        );
        push(
            "CPUQuota",
            "--cpu-quota",
            self.cpu_quota.map(|v| v.to_string()),
        );
        push("CpusetCpus", "--cpuset-cpus", self.cpuset_cpus.clone());
        push("CpusetMems", "--cpuset-mems", self.cpuset_mems.clone());
        push(
            "KernelMemory",
            "--kernel-memory",
            self.kernel_memory.map(|v| v.to_string()),
        );
        push(
            "KernelTCPMemory",
            "--kernel-memory-tcp",
            self.kernel_tcp_memory.map(|v| v.to_string()),
        );
        push("Memory", "--memory", self.memory.map(|v| v.to_string()));
        push(
            "MemoryReservation",
            "--memory-reservation",
            self.memory_reservation.map(|v| v.to_string()),
        );
        push(
            "MemorySwap",
            "--memory-swap",
            self.memory_swap.map(|v| v.to_string()),
        );
        push(
            "PidsLimit",
            "--pids-limit",
            self.pids_limit.map(|v| v.to_string()),
        );
        out
    }
}

/// Which seed field a cgroup file (or a runtime's wording) belongs to.
pub fn resource_field_of(text: &str) -> Option<&'static str> {
    const FILES: &[(&str, &str)] = &[
        ("memory.kmem.tcp.limit_in_bytes", "KernelTCPMemory"),
        ("memory.kmem.limit_in_bytes", "KernelMemory"),
        ("memory.memsw.limit_in_bytes", "MemorySwap"),
        ("memory.soft_limit_in_bytes", "MemoryReservation"),
        ("memory.limit_in_bytes", "Memory"),
        ("memory.swap.max", "MemorySwap"),
        ("memory.low", "MemoryReservation"),
        ("memory.max", "Memory"),
        ("cpu.shares", "CPUShares"),
        ("cpu.weight", "CPUShares"),
        ("cpu.cfs_period_us", "CPUPeriod"),
        ("cpu.cfs_quota_us", "CPUQuota"),
        ("cpu.max", "CPUQuota"),
        ("cpuset.cpus", "CpusetCpus"),
        ("cpuset.mems", "CpusetMems"),
        ("blkio.weight", "BlkioWeight"),
        ("io.weight", "BlkioWeight"),
        ("pids.max", "PidsLimit"),
        ("memory+swap", "MemorySwap"),
        ("memory limit", "Memory"),
        ("kernel memory", "KernelMemory"),
        ("cpu-quota", "CPUQuota"),
        ("cpu-period", "CPUPeriod"),
    ];
    FILES
        .iter()
        .find(|(f, _)| text.contains(f))
        .map(|(_, n)| *n)
}

/// Parses a signal given as a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::InvalidArgument(format!(
            "signal {n} is out of range 1-64"
        )));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::InvalidArgument(format!("unknown signal {s:?}")))
}

/// Where an attach's output starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachFrom {
    /// Only what the process writes from now on (`docker attach`).
    #[default]
    Now,
    /// Everything the process has written since it was launched (a foreground `run` or
    /// `exec` that attaches after starting the process, so nothing is missed).
    Launch,
}

/// Join a running process's stdio: its output (from its log) and, with `stdin`, its input.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The exec; `None` for the init process.
    pub exec_id: Option<String>,
    /// Write into the process's stdin (it needs `open_stdin`).
    pub stdin: bool,
    /// Where the output starts.
    pub from: AttachFrom,
}

/// Run a container in the foreground in one request (protocol 6): create and start it,
/// attach to its init from its launch, and with `remove` delete it once it has exited
/// (`corralctl run --rm`, without `-d`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRequest {
    /// The container to create; it is started whatever `create.start` says.
    pub create: CreateRequest,
    /// Write into the init's stdin (it needs `open_stdin`), as [`AttachRequest::stdin`].
    pub stdin: bool,
    /// Delete the container after its exit (its output and exit sent first); a container
    /// made from an image gets its rootfs overlay mounted `volatile` (no sync at unmount).
    pub remove: bool,
}

/// What an attach receives, in order: output, then the process's exit (last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachItem {
    /// Bytes the process wrote, as it wrote them.
    Output {
        /// From stderr (a terminal's output is all stdout).
        stderr: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The process exited; nothing follows.
    Exit(ExitStatus),
}

/// Read a process's log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogsRequest {
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The exec; `None` for the init process.
    pub exec_id: Option<String>,
    /// Keep following the log until the process exits.
    pub follow: bool,
    /// Only entries at or after this time (ns since the epoch).
    pub since_ns: Option<u64>,
    /// Only entries before this time (ns since the epoch).
    pub until_ns: Option<u64>,
    /// Only the last this many entries of the history (following goes on after them).
    pub tail: Option<usize>,
}
