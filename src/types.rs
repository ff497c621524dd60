//! The vocabulary shared by the library, the RPC and the CLI: ids, states, requests, events.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The process id of a container's init process.
pub const INIT_PROCESS: &str = "init";
/// The longest id accepted for containers, namespaces and execs.
pub const MAX_ID_LEN: usize = 128;

/// Checks an id: letters, digits and `_ . -`, starting with a letter or digit, at most
/// 128 characters. `what` names the field in the error ("container id", "namespace").
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("{what} {id:?} {why}")));
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if id.len() > MAX_ID_LEN {
        return bad(&format!(
            "is {} characters long; at most {MAX_ID_LEN} are allowed",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(&format!(
            "contains {c:?}; only letters, digits and '_', '.', '-' are allowed"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or a digit");
    }
    Ok(())
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn format_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let micros = (ns % 1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (UTC) into nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let mut nanos = 0u64;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nanos = digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32);
    }
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000 + nanos)
}

/// The namespace a request means: `default` when it names none.
pub fn namespace_or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    }
}

/// A container's name: its namespace and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerKey {
    /// The namespace, `default` unless given.
    pub namespace: String,
    /// The id, unique within the namespace.
    pub id: String,
}

impl ContainerKey {
    /// Builds a key and validates both parts.
    pub fn new(namespace: &str, id: &str) -> Result<Self> {
        validate_id("namespace", namespace)?;
        validate_id("container id", id)?;
        Ok(ContainerKey {
            namespace: namespace.to_string(),
            id: id.to_string(),
        })
    }
}

impl fmt::Display for ContainerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.id)
    }
}

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

/// Where a process's stdio goes: a path each (file or fifo), `None` for /dev/null.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    /// Read as the process's stdin.
    pub stdin: Option<PathBuf>,
    /// Written with the process's stdout.
    pub stdout: Option<PathBuf>,
    /// Written with the process's stderr.
    pub stderr: Option<PathBuf>,
}

impl Stdio {
    /// Checks that every path given is absolute; `what` starts the error ("exec ", or "").
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
        Ok(())
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
    /// The first signal (SIGTERM unless the caller says otherwise).
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
    /// It did not answer a list in time (a restart in flight holds it): the other fields
    /// are its last known state, or only its name if it never answered.
    #[serde(default)]
    pub busy: bool,
    /// The operation in flight, if any: `starting`, `checkpointing`, `restart-pending`,
    /// `restarting` or `deleting`; empty when idle.
    #[serde(default)]
    pub operation: String,
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
        }
    }
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

/// One process in a container's cgroup, with the corral process it belongs to if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PidInfo {
    /// Host pid.
    pub pid: u32,
    /// `init` or an exec id when the pid is one of corral's processes.
    pub process_id: Option<String>,
}

/// Event topics: the public contract of what happened, in containerd's vocabulary.
/// Serialized as the topic path (`"/tasks/exit"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum Topic {
    /// A container was created.
    TaskCreate,
    /// Its init process started.
    TaskStart,
    /// An exec was added.
    TaskExecAdded,
    /// An exec started.
    TaskExecStarted,
    /// A process exited.
    TaskExit,
    /// A container was deleted.
    TaskDelete,
    /// The kernel's OOM killer killed a process of the container.
    TaskOom,
    /// The container was frozen.
    TaskPaused,
    /// The container was thawed.
    TaskResumed,
    /// A checkpoint of the container was taken.
    TaskCheckpointed,
}

impl Topic {
    /// The topic's path, e.g. `/tasks/exit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::TaskCreate => "/tasks/create",
            Topic::TaskStart => "/tasks/start",
            Topic::TaskExecAdded => "/tasks/exec-added",
            Topic::TaskExecStarted => "/tasks/exec-started",
            Topic::TaskExit => "/tasks/exit",
            Topic::TaskDelete => "/tasks/delete",
            Topic::TaskOom => "/tasks/oom",
            Topic::TaskPaused => "/tasks/paused",
            Topic::TaskResumed => "/tasks/resumed",
            Topic::TaskCheckpointed => "/tasks/checkpointed",
        }
    }
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 10] = [
        Topic::TaskCreate,
        Topic::TaskStart,
        Topic::TaskExecAdded,
        Topic::TaskExecStarted,
        Topic::TaskExit,
        Topic::TaskDelete,
        Topic::TaskOom,
        Topic::TaskPaused,
        Topic::TaskResumed,
        Topic::TaskCheckpointed,
    ];
}

impl From<Topic> for String {
    fn from(t: Topic) -> String {
        t.as_str().to_string()
    }
}

impl TryFrom<String> for Topic {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Topic, String> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown topic {s:?}"))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as published to subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Monotonic sequence number, daemon-wide.
    pub seq: u64,
    /// When it was published, nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The container's namespace.
    pub namespace: String,
    /// What happened.
    pub topic: Topic,
    /// The container.
    pub container_id: String,
    /// `init` or the exec id, for process events.
    pub process_id: Option<String>,
    /// The process's host pid, when there is one.
    pub pid: Option<u32>,
    /// The exit, for /tasks/exit and /tasks/delete.
    pub exit: Option<ExitStatus>,
    /// The bundle, for /tasks/create.
    pub bundle: Option<PathBuf>,
    /// For /tasks/start after a restart by policy: how many restarts so far.
    pub restarts: Option<u32>,
    /// For /tasks/checkpointed: the checkpoint's name.
    pub checkpoint: Option<String>,
}

/// Which events a subscriber wants.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only this namespace; `None` for all.
    pub namespace: Option<String>,
    /// Only this container; `None` for all.
    pub container_id: Option<String>,
    /// Replay from the journal first, from here on; `None` for new events only.
    pub since: Option<Since>,
}

/// Where an event replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Since {
    /// Events with this sequence number and later.
    Seq(u64),
    /// Events published at or after this time (nanoseconds since the epoch).
    Time(u64),
}

impl Since {
    /// Whether `event` is at or after this point.
    pub fn admits(&self, event: &Event) -> bool {
        match *self {
            Since::Seq(s) => event.seq >= s,
            Since::Time(t) => event.timestamp_ns >= t,
        }
    }
}

/// When a container is restarted after its process exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit not caused by a user's kill, at most `max` times if given.
    OnFailure {
        /// The most restarts; `None` for no limit.
        max: Option<u32>,
    },
    /// After every exit.
    Always,
    /// After every exit not caused by a user's kill.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "restart policy {s:?} is not one of no, on-failure[:MAX], always, unless-stopped"
            ))
        };
        Ok(match s {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max: None },
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure {
                    max: Some(n.parse().map_err(|_| bad())?),
                },
                None => return Err(bad()),
            },
        })
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.since.is_none_or(|s| s.admits(event))
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| *n == event.namespace)
            && self
                .container_id
                .as_ref()
                .is_none_or(|c| *c == event.container_id)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("container id", "web-1.a_b").is_ok());
        for bad in ["", ".", "..", "a/b", "-x", "a b", "é", &"x".repeat(129)] {
            let err = validate_id("container id", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        }
        assert!(validate_id("container id", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn live_states() {
        let live: Vec<Status> = [
            Status::Created,
            Status::Running,
            Status::Pausing,
            Status::Paused,
            Status::Stopped,
            Status::Unknown,
        ]
        .into_iter()
        .filter(|s| s.is_live())
        .collect();
        assert_eq!(
            live,
            [
                Status::Created,
                Status::Running,
                Status::Pausing,
                Status::Paused
            ]
        );
    }

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn restart_policies_parse_and_print() {
        for p in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            assert_eq!(p.parse::<RestartPolicy>().unwrap().to_string(), p);
        }
        for bad in ["", "sometimes", "on-failure:x", "on-failure:-1"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_formats_as_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_time(1_700_000_000_123_456_000),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000_123_456_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
    }
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
    /// Snapshotters: none yet (corral runs bundles, it has no images).
    pub snapshotters: Vec<String>,
    /// CRIU, for checkpoint and restore.
    pub criu: CriuFeature,
    /// The host's cgroup layout: `v1`, `v2` or `hybrid`.
    pub cgroups: String,
    /// Where container state lives.
    pub state_dir: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
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
