//! The Container actor: one per container, the only owner of its state machine
//! (created -> running -> stopped) and of its processes. Every runtime call it makes has a
//! timeout, so a wedged runtime stalls this container only.
//!
//! Event order per container is kept here: every event of a container is published by its
//! actor, in order; the init process's /tasks/exit waits for a start in flight and for the
//! container's execs to exit, so create < start < (exec exits) < exit < delete.

use super::events::{Events, Publish};
use super::process::{CloseStdin, Process, ProcessExited, SignalProcess};
use crate::cgroups::set_kernel_memory;
use crate::error::{Error, Result};
use crate::launch::{self, LaunchedShim};
use crate::layout::{write_atomic, ContainerDir};
use crate::runtime::Runtime;
use crate::shim::{Mode, ShimArgs};
use crate::types::*;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// `state.json`: what the daemon needs to know about a container across restarts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Namespace.
    pub namespace: String,
    /// Container id (also the runtime's id, under a per-namespace runtime root).
    pub id: String,
    /// The bundle.
    pub bundle: PathBuf,
    /// The directory the runtime is given as its bundle when corral wrote the runtime's
    /// config.json itself (see `bundle::runtime_spec`); `None`: the bundle as it is.
    #[serde(default)]
    pub runtime_bundle: Option<PathBuf>,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// Extra global runtime arguments.
    pub runtime_args: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// Creation time.
    pub created_at_ns: u64,
    /// Where its cgroups are: expected at create, then read from its init process.
    #[serde(default)]
    pub cgroups: crate::cgroups::CgroupPaths,
    /// When to restart it.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How many times the policy restarted it.
    #[serde(default)]
    pub restarts: u32,
    /// Its last exit was asked for by a user (kill): on-failure and unless-stopped leave it.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The kernel's OOM-kill count for its cgroup when last looked at.
    #[serde(default)]
    pub oom_seen: u64,
    /// OOM kills reported so far.
    #[serde(default)]
    pub oom_kills: u32,
}

/// The first restart waits this long; each further one twice as long as the one before.
pub const RESTART_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long was healthy: the backoff starts over.
pub const RESTART_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// The marker a process directory gets once its /tasks/exit is in the journal; it holds the
/// pid whose exit it marks.
pub const EXIT_PUBLISHED: &str = "exit.published";

/// What a Container needs from the daemon's configuration.
#[derive(Clone)]
pub struct ContainerEnv {
    /// The corral-shim binary.
    pub shim: PathBuf,
    /// The runtime, with its per-namespace root.
    pub runtime: Runtime,
    /// How long a shim may take to answer.
    pub shim_timeout: Duration,
    /// Where events go.
    pub events: Addr<Events>,
    /// The CRIU binary, for checkpoint and restore.
    pub criu: PathBuf,
}

#[derive(Default)]
struct ProcessSlot {
    addr: Option<Addr<Process>>,
    pid: u32,
    exit: Option<ExitStatus>,
    waiters: Vec<oneshot::Sender<ExitStatus>>,
}

impl ProcessSlot {
    fn info(&self, id: &str) -> ProcessInfo {
        ProcessInfo {
            id: id.to_string(),
            pid: self.pid,
            status: if self.exit.is_some() {
                Status::Stopped
            } else if self.pid == 0 {
                Status::Created
            } else {
                Status::Running
            },
            exit: self.exit,
        }
    }

    fn resolve_waiters(&mut self) {
        if let Some(exit) = self.exit {
            for w in self.waiters.drain(..) {
                let _ = w.send(exit);
            }
        }
    }
}

/// One container.
pub struct Container {
    record: ContainerRecord,
    dir: ContainerDir,
    env: ContainerEnv,
    status: Status,
    init: ProcessSlot,
    execs: BTreeMap<String, ProcessSlot>,
    starting: bool,
    /// A checkpoint that stops the container is in flight: its exit waits for
    /// /tasks/checkpointed, and no policy restarts it.
    checkpointing_exit: bool,
    /// The last exit was a checkpoint's `--exit`.
    exited_by_checkpoint: bool,
    creating: bool,
    deleting: bool,
    init_exit_published: bool,
    /// Set for a container adopted at daemon start: the (process, pid) exits already journaled.
    adopt: Option<HashSet<(String, u32)>>,
    started_at_ns: u64,
    backoff_streak: u32,
    restart_timer: Option<SpawnHandle>,
    /// OOM kills in the current run of the init process.
    oom_this_run: bool,
    oom_watch: Option<SpawnHandle>,
    /// The cgroup's OOM kill counter file, kept open.
    oom_counter: Option<std::fs::File>,
}

/// Creates the container through its shim (and starts it when `start`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Init {
    /// `runc run --detach` instead of `runc create`.
    pub start: bool,
    /// Restore from this checkpoint (`runc restore --detach`) instead.
    pub restore: Option<RestoreFrom>,
    /// The runtime's config.json to write into the container's directory, if corral makes
    /// its own (then `runtime_bundle` is that directory).
    pub runtime_spec: Option<oci_spec::runtime::Spec>,
}

/// A checkpoint to restore a container from.
pub struct RestoreFrom {
    /// The checkpoint's directory (with `images/`).
    pub dir: PathBuf,
    /// The options it was taken with.
    pub options: crate::checkpoint::CheckpointOptions,
}

/// Starts a created container.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Start;

/// Runs another process in the container.
#[derive(Message)]
#[rtype(result = "Result<ProcessInfo>")]
pub struct Exec {
    /// Its id.
    pub exec_id: String,
    /// What to run.
    pub process: ExecProcess,
    /// Its stdio.
    pub stdio: Stdio,
}

/// Signals the init process, an exec, or (`all`) every process.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Kill {
    /// `None` for init.
    pub exec_id: Option<String>,
    /// Signal number.
    pub signal: i32,
    /// Every process in the container.
    pub all: bool,
}

/// Waits for a process to exit (returns at once if it has).
#[derive(Message)]
#[rtype(result = "Result<ExitStatus>")]
pub struct Wait {
    /// `None` for init.
    pub exec_id: Option<String>,
}

/// Deletes the container: runtime state, state dir, cgroup.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Delete {
    /// Kill it first if it is running.
    pub force: bool,
}

/// Reads the container's state.
#[derive(Message)]
#[rtype(result = "ContainerInfo")]
pub struct GetInfo;

/// Lists the pids in the container.
#[derive(Message)]
#[rtype(result = "Result<Vec<PidInfo>>")]
pub struct Pids;

/// Closes a process's stdin.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseProcessStdin {
    /// `None` for init.
    pub exec_id: Option<String>,
}

impl Container {
    /// A container about to be created; nothing runs until [`Init`].
    pub fn new(record: ContainerRecord, dir: ContainerDir, env: ContainerEnv) -> Self {
        Container {
            record,
            dir,
            env,
            status: Status::Unknown,
            init: ProcessSlot::default(),
            execs: BTreeMap::new(),
            starting: false,
            checkpointing_exit: false,
            exited_by_checkpoint: false,
            creating: false,
            deleting: false,
            init_exit_published: false,
            adopt: None,
            started_at_ns: now_ns(),
            backoff_streak: 0,
            restart_timer: None,
            oom_this_run: false,
            oom_watch: None,
            oom_counter: None,
        }
    }

    /// Watches the cgroup for OOM kills (eventfd on v1, inotify on v2); each wake-up checks
    /// the kernel's kill counter.
    fn watch_oom(&mut self, fresh_cgroup: bool, ctx: &mut Context<Self>) {
        if let Some(old) = self.oom_watch.take() {
            ctx.cancel_future(old);
        }
        // The init process tells where its cgroups really are.
        if let Some(paths) = crate::cgroups::CgroupPaths::of_container(self.init.pid) {
            if paths != self.record.cgroups {
                self.record.cgroups = paths;
                self.save_record();
            }
        }
        let h = crate::cgroups::host();
        // A new cgroup (a new run) has its own counter: never read the old one.
        self.oom_counter = None;
        let notify = match crate::cgroups::oom::watch(h, &self.record.cgroups) {
            Ok((notify, counter)) => {
                self.oom_counter = Some(counter);
                Some(notify)
            }
            Err(e) => {
                tracing::warn!("{}: cannot watch for OOM kills: {e}", self.key());
                None
            }
        };
        if fresh_cgroup {
            // A new cgroup starts at 0 kills: one already counted happened in this run.
            self.record.oom_seen = 0;
            self.oom_this_run = false;
        }
        // Kills since the baseline (before we watched, or while the daemon was down).
        self.check_oom();
        let Some(fd) = notify else { return };
        let addr = ctx.address();
        let watch = async move {
            while crate::launch::readable(&fd).await {
                addr.do_send(CheckOom);
            }
        };
        self.oom_watch = Some(ctx.spawn(watch.into_actor(self)));
    }

    /// Publishes /tasks/oom for kills the kernel counted since we last looked.
    fn check_oom(&mut self) {
        let n = match &self.oom_counter {
            Some(file) => crate::cgroups::oom::kill_count_of(file),
            None => crate::cgroups::oom::kill_count(crate::cgroups::host(), &self.record.cgroups),
        };
        if n > self.record.oom_seen {
            self.record.oom_kills += (n - self.record.oom_seen) as u32;
            self.record.oom_seen = n;
            self.oom_this_run = true;
            self.save_record();
            self.publish(Topic::TaskOom, Some(INIT_PROCESS), self.init.pid, None);
        }
    }

    /// A container found in the state dir at daemon start; `published` holds the
    /// (process, pid) exits the journal already has. It adopts its processes when started.
    pub fn adopted(
        record: ContainerRecord,
        dir: ContainerDir,
        env: ContainerEnv,
        published: HashSet<(String, u32)>,
    ) -> Self {
        let mut c = Container::new(record, dir, env);
        c.adopt = Some(published);
        c
    }

    fn save_record(&self) {
        let saved = serde_json::to_vec_pretty(&self.record)
            .map_err(std::io::Error::other)
            .and_then(|json| write_atomic(&self.dir.state_json(), &json));
        if let Err(e) = saved {
            tracing::warn!("{}: cannot update state.json: {e}", self.key());
        }
    }

    /// Re-adopts this container's processes from their directories (daemon start).
    fn adopt_processes(&mut self, published: HashSet<(String, u32)>, ctx: &mut Context<Self>) {
        let mut exited = Vec::new();
        let mut entries: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        for process_id in entries {
            let dir = self.dir.process(&process_id);
            let is_init = process_id == INIT_PROCESS;
            let mut slot = ProcessSlot::default();
            match adopt_process(&dir) {
                Adopted::NeverStarted => {
                    tracing::warn!(
                        "{}: process {process_id} never started; removing its directory",
                        self.key()
                    );
                    let _ = std::fs::remove_dir_all(dir.path());
                    continue;
                }
                Adopted::Exited { pid, status } => {
                    slot.pid = pid as u32;
                    slot.exit = Some(status);
                    let marked = std::fs::read_to_string(dir.path().join(EXIT_PUBLISHED))
                        .is_ok_and(|m| m.trim() == pid.to_string());
                    let done = marked || published.contains(&(process_id.clone(), pid as u32));
                    if is_init {
                        self.init_exit_published = done;
                    } else if !done {
                        exited.push((status.exited_at_ns, process_id.clone()));
                    }
                }
                Adopted::Running {
                    pid,
                    starttime,
                    exit_fd,
                    shim_pidfd,
                } => {
                    slot.pid = pid as u32;
                    let process = Process::new(
                        process_id.clone(),
                        dir,
                        pid,
                        starttime,
                        exit_fd,
                        None,
                        ctx.address().recipient(),
                    )
                    .with_shim_pidfd(shim_pidfd);
                    slot.addr = Some(process.start());
                }
            }
            if is_init {
                self.init = slot;
            } else {
                self.execs.insert(process_id, slot);
            }
        }
        self.status = match (&self.init.exit, self.init.pid) {
            (Some(_), _) => Status::Stopped,
            (None, 0) => Status::Unknown,
            (None, _) => Status::Running,
        };
        // Exits that happened while the daemon was down: execs first, by exit time.
        exited.sort();
        for (_, process_id) in exited {
            if let Some(slot) = self.execs.get(&process_id) {
                self.publish_exit(&process_id, slot.pid, slot.exit);
            }
        }
        if self.init.exit.is_some() {
            // A restart pending when the daemon went down is due again now.
            self.init_exit_published_then_restart(ctx);
        } else if self.init.pid > 0 {
            self.watch_oom(false, ctx);
            self.refresh_status(ctx);
        }
        tracing::info!(
            "adopted {} ({}, pid {}, {} exec(s))",
            self.key(),
            self.status,
            self.init.pid,
            self.execs.len()
        );
    }

    fn init_exit_published_then_restart(&mut self, ctx: &mut Context<Self>) {
        self.maybe_publish_init_exit();
        self.consider_restart(ctx);
    }

    /// After a failed restart the init directory is gone: write back the last run's pid,
    /// exit and published marker, so a daemon restart still finds a stopped container.
    fn keep_last_exit_on_disk(&self) {
        let init = self.dir.process(INIT_PROCESS);
        let Some(exit) = self.init.exit else { return };
        let written = std::fs::create_dir_all(init.path())
            .and_then(|()| write_atomic(&init.pid_file(), self.init.pid.to_string().as_bytes()))
            .and_then(|()| init.write_exit_status(exit.code))
            .and_then(|()| {
                std::fs::write(init.path().join(EXIT_PUBLISHED), self.init.pid.to_string())
            });
        if let Err(e) = written {
            tracing::warn!("{}: cannot record the last exit: {e}", self.key());
        }
    }

    /// Asks the runtime whether an adopted container is created, running or paused.
    fn refresh_status(&mut self, ctx: &mut Context<Self>) {
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        ctx.spawn(
            async move { runtime.state(&id).await }
                .into_actor(self)
                .map(|result, act, _| match result {
                    Ok(status) if act.init.exit.is_none() => act.status = status,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{}: runtime state: {e}", act.key()),
                }),
        );
    }

    fn publish_exit(&self, process_id: &str, pid: u32, exit: Option<ExitStatus>) {
        let mark = self.dir.process(process_id).path().join(EXIT_PUBLISHED);
        self.publish_marked(
            Topic::TaskExit,
            Some(process_id),
            pid,
            exit,
            None,
            Some(mark),
        );
    }

    /// Schedules a restart if the policy wants one after the init process's exit.
    fn consider_restart(&mut self, ctx: &mut Context<Self>) {
        let Some(exit) = self.init.exit else { return };
        if self.deleting
            || self.restart_timer.is_some()
            || !self.init_exit_published
            || self.exited_by_checkpoint
        {
            return;
        }
        let by_user = self.record.stopped_by_user;
        let wanted = match self.record.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !by_user,
            RestartPolicy::OnFailure { max } => {
                exit.code != 0 && !by_user && max.is_none_or(|m| self.record.restarts < m)
            }
        };
        if !wanted {
            return;
        }
        let ran_for = Duration::from_nanos(exit.exited_at_ns.saturating_sub(self.started_at_ns));
        if ran_for >= RESTART_HEALTHY_AFTER {
            self.backoff_streak = 0;
        }
        let delay = RESTART_BACKOFF_BASE
            .saturating_mul(1u32 << self.backoff_streak.min(16))
            .min(RESTART_BACKOFF_MAX);
        self.backoff_streak += 1;
        tracing::info!(
            "{}: restarting in {delay:?} ({} policy, exit {})",
            self.key(),
            self.record.restart,
            exit.code
        );
        self.restart_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.restart_timer = None;
            act.restart(ctx);
        }));
    }

    /// Runs the init process again under the same id. Holds the mailbox while it runs, so
    /// nothing (a delete, a kill) interleaves with a half-made restart.
    fn restart(&mut self, ctx: &mut Context<Self>) {
        if self.deleting || self.status != Status::Stopped {
            return;
        }
        // A fifo of a client that has gone away is no place for output: /dev/null instead.
        let still_there = |p: &Option<PathBuf>| {
            p.clone()
                .filter(|p| p.exists() || p.parent().is_some_and(|d| d.is_dir()))
        };
        let stdio = Stdio {
            stdin: still_there(&self.record.stdio.stdin),
            stdout: still_there(&self.record.stdio.stdout),
            stderr: still_there(&self.record.stdio.stderr),
        };
        let args = self.shim_args(Mode::Run, &stdio);
        let runtime = self.env.runtime.clone();
        let shim = self.env.shim.clone();
        let timeout = self.env.shim_timeout;
        let dir = self.dir.clone();
        let execs: Vec<String> = self.execs.keys().cloned().collect();
        let id = self.record.id.clone();
        let work = async move {
            runtime.delete(&id, true).await?;
            for exec in execs {
                let _ = std::fs::remove_dir_all(dir.process(&exec).path());
            }
            let init = dir.process(INIT_PROCESS);
            let _ = std::fs::remove_dir_all(init.path());
            launch::launch(&shim, &init, &args, timeout).await
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| {
            act.record.restarts += 1;
            act.record.stopped_by_user = false;
            match result {
                Ok(shim) => {
                    act.execs.clear();
                    act.init = ProcessSlot {
                        pid: shim.pid as u32,
                        ..ProcessSlot::default()
                    };
                    act.init.addr = Some(act.watch(INIT_PROCESS, shim, ctx));
                    act.init_exit_published = false;
                    act.exited_by_checkpoint = false;
                    act.status = Status::Running;
                    act.started_at_ns = now_ns();
                    act.save_record();
                    act.publish_marked(
                        Topic::TaskStart,
                        Some(INIT_PROCESS),
                        act.init.pid,
                        None,
                        Some(act.record.restarts),
                        None,
                    );
                    // After the start event: an OOM kill already counted comes after it.
                    act.watch_oom(true, ctx);
                }
                Err(e) => {
                    act.save_record();
                    act.keep_last_exit_on_disk();
                    tracing::warn!("{}: restart {} failed: {e}", act.key(), act.record.restarts);
                    act.consider_restart(ctx);
                }
            }
        }));
    }

    fn key(&self) -> String {
        format!("{}/{}", self.record.namespace, self.record.id)
    }

    fn info(&self) -> ContainerInfo {
        ContainerInfo {
            namespace: self.record.namespace.clone(),
            id: self.record.id.clone(),
            bundle: self.record.bundle.clone(),
            runtime: self.record.runtime.clone(),
            labels: self.record.labels.clone(),
            status: self.status,
            pid: self.init.pid,
            created_at_ns: self.record.created_at_ns,
            exit: self.init.exit,
            execs: self.execs.iter().map(|(id, s)| s.info(id)).collect(),
            restart: self.record.restart,
            restarts: self.record.restarts,
            oom_kills: self.record.oom_kills,
            exit_oom_killed: self.init.exit.is_some() && self.oom_this_run,
        }
    }

    fn publish(&self, topic: Topic, process_id: Option<&str>, pid: u32, exit: Option<ExitStatus>) {
        self.publish_marked(topic, process_id, pid, exit, None, None);
    }

    fn publish_marked(
        &self,
        topic: Topic,
        process_id: Option<&str>,
        pid: u32,
        exit: Option<ExitStatus>,
        restarts: Option<u32>,
        mark: Option<PathBuf>,
    ) {
        let event = Event {
            seq: 0,
            timestamp_ns: 0,
            namespace: self.record.namespace.clone(),
            topic,
            container_id: self.record.id.clone(),
            process_id: process_id.map(str::to_string),
            pid: (pid > 0).then_some(pid),
            exit,
            bundle: (topic == Topic::TaskCreate).then(|| self.record.bundle.clone()),
            restarts,
            checkpoint: None,
        };
        self.env.events.do_send(Publish { event, mark });
    }

    fn shim_args(&self, mode: Mode, stdio: &Stdio) -> ShimArgs {
        ShimArgs {
            mode,
            runtime: self.env.runtime.path.clone(),
            root: self.env.runtime.root.clone(),
            id: self.record.id.clone(),
            bundle: self
                .record
                .runtime_bundle
                .clone()
                .unwrap_or_else(|| self.record.bundle.clone()),
            runtime_args: self.env.runtime.args.iter().map(Into::into).collect(),
            verb_args: Vec::new(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
        }
    }

    fn watch(
        &self,
        process_id: &str,
        shim: LaunchedShim,
        ctx: &mut Context<Self>,
    ) -> Addr<Process> {
        Process::new(
            process_id.to_string(),
            self.dir.process(process_id),
            shim.pid,
            shim.starttime,
            shim.exit_fd,
            Some(shim.shim_exited),
            ctx.address().recipient(),
        )
        .start()
    }

    /// Publishes the init process's exit once nothing may still come before it.
    fn maybe_publish_init_exit(&mut self) {
        let Some(exit) = self.init.exit else { return };
        if self.init_exit_published || self.starting || self.checkpointing_exit {
            return;
        }
        let live_execs: Vec<Option<Addr<Process>>> = self
            .execs
            .values()
            .filter(|s| s.exit.is_none())
            .map(|s| s.addr.clone())
            .collect();
        if !live_execs.is_empty() {
            // They die with the container's pid namespace; make sure of it when there is none.
            // An exec still launching reports (started or failed) before the init's exit.
            for addr in live_execs.into_iter().flatten() {
                addr.do_send(SignalProcess(libc::SIGKILL));
            }
            return;
        }
        // An OOM kill is told before the exit it caused, even when the exit was seen first.
        self.check_oom();
        self.init_exit_published = true;
        self.publish_exit(INIT_PROCESS, self.init.pid, Some(exit));
        self.init.resolve_waiters();
    }

    fn slot(&self, exec_id: Option<&str>) -> Result<&ProcessSlot> {
        match exec_id {
            None => Ok(&self.init),
            Some(e) => self
                .execs
                .get(e)
                .ok_or_else(|| Error::NotFound(format!("exec {e:?} in container {}", self.key()))),
        }
    }

    fn wrong_state(&self, want: &str) -> Error {
        Error::WrongState(format!(
            "container {} is {}; {want}",
            self.key(),
            self.status
        ))
    }
}

impl Actor for Container {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(published) = self.adopt.take() {
            self.adopt_processes(published, ctx);
        }
    }
}

/// What a process directory says about its process at daemon start.
enum Adopted {
    /// The runtime never wrote a pid: its create or exec did not finish.
    NeverStarted,
    /// It has exited (during the downtime, or before).
    Exited { pid: i32, status: ExitStatus },
    /// Its shim is alive: watch it.
    Running {
        pid: i32,
        starttime: Option<u64>,
        exit_fd: std::os::fd::OwnedFd,
        shim_pidfd: Option<std::os::fd::OwnedFd>,
    },
}

/// Reads a process directory. The exit fifo is opened before the shim's liveness is
/// checked: a shim alive at the check is seen to hang up later; one dead by then is
/// handled now, by its exitStatus or by the rules for a shim that died without one.
fn adopt_process(dir: &crate::layout::ShimDir) -> Adopted {
    let Some(pid) = dir.read_pid() else {
        return Adopted::NeverStarted;
    };
    let starttime = dir.read_starttime();
    if let Some((code, at)) = dir.read_exit_status() {
        let status = ExitStatus {
            code,
            exited_at_ns: at,
        };
        return Adopted::Exited { pid, status };
    }
    let exit_fd = launch::open_exit_fifo(dir).ok();
    // The pidfd is opened before the start time is checked, so it is the shim's if the check
    // passes. It covers a shim that closed its fifo before we opened it and has yet to exit.
    let shim = dir.read_shim_pid();
    let shim_pidfd = shim.and_then(|(spid, _)| launch::pidfd(spid));
    let shim_alive = shim.is_some_and(|(spid, start)| crate::layout::still_running(spid, start));
    match exit_fd {
        Some(exit_fd) if shim_alive => Adopted::Running {
            pid,
            starttime,
            exit_fd,
            shim_pidfd,
        },
        _ => Adopted::Exited {
            pid,
            status: super::process::exit_status_of(dir, pid, starttime),
        },
    }
}

/// Removes what a failed create or a delete leaves: the runtime's state, the state dir,
/// the cgroup.
async fn remove_everything(
    runtime: Runtime,
    id: String,
    dir: PathBuf,
    cgroup: crate::cgroups::CgroupPaths,
) {
    if runtime.has_state(&id) {
        if let Err(e) = runtime.delete(&id, true).await {
            tracing::warn!("cleaning up {id}: {e}");
        }
    }
    // A shim may still be writing its durable exitStatus (it tells the daemon first): the
    // directory is then not empty for a moment. Try again for a while before giving up.
    for attempt in 0..200 {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempt < 199 => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => {
                tracing::warn!("cleaning up {}: {e}", dir.display());
                break;
            }
        }
    }
    crate::cgroups::remove_leftovers(&cgroup);
}

impl Handler<Init> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(
        &mut self,
        Init {
            start,
            restore,
            runtime_spec,
        }: Init,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let start = start || restore.is_some();
        self.creating = true;
        let mode = match (&restore, start) {
            (Some(_), _) => Mode::Restore,
            (None, true) => Mode::Run,
            (None, false) => Mode::Create,
        };
        let mut args = self.shim_args(mode, &self.record.stdio);
        if let Some(from) = &restore {
            args.runtime_args.push("--criu".into());
            args.runtime_args.push(self.env.criu.clone().into());
            let work = self.dir.process(INIT_PROCESS).path().join("criu");
            args.verb_args.push("--image-path".into());
            args.verb_args.push(from.dir.join("images").into());
            args.verb_args.push("--work-path".into());
            args.verb_args.push(work.into());
            args.verb_args
                .extend(from.options.runtime_flags().into_iter().map(Into::into));
        }
        let shim = self.env.shim.clone();
        let timeout = self.env.shim_timeout;
        let runtime = self.env.runtime.clone();
        let dir = self.dir.clone();
        let record = self.record.clone();
        let work = async move {
            let result = async {
                std::fs::create_dir_all(dir.path())
                    .map_err(|e| Error::io(format!("create {}", dir.path().display()), e))?;
                let json = serde_json::to_vec_pretty(&record)
                    .map_err(|e| Error::Internal(format!("encode state.json: {e}")))?;
                write_atomic(&dir.state_json(), &json)
                    .map_err(|e| Error::io("write state.json", e))?;
                if let Some(spec) = &runtime_spec {
                    let config = dir.path().join("config.json");
                    spec.save(&config)
                        .map_err(|e| Error::Internal(format!("write {}: {e}", config.display())))?;
                }
                launch::launch(&shim, &dir.process(INIT_PROCESS), &args, timeout).await
            }
            .await;
            let result = match result {
                Err(Error::RuntimeFailed { op, id, stderr }) if op == "restore" => {
                    let criu = crate::checkpoint::criu_errors(
                        &dir.process(INIT_PROCESS).path().join("criu"),
                    );
                    let stderr = if criu.is_empty() {
                        stderr
                    } else {
                        format!("{stderr}\nCRIU said:\n{criu}")
                    };
                    Err(Error::RuntimeFailed { op, id, stderr })
                }
                other => other,
            };
            if result.is_err() {
                remove_everything(
                    runtime,
                    record.id.clone(),
                    dir.path().to_path_buf(),
                    record.cgroups.clone(),
                )
                .await;
            }
            result
        };
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            act.creating = false;
            match result {
                Ok(shim) => {
                    act.init.pid = shim.pid as u32;
                    act.init.addr = Some(act.watch(INIT_PROCESS, shim, ctx));
                    act.status = if start {
                        Status::Running
                    } else {
                        Status::Created
                    };
                    act.started_at_ns = now_ns();
                    act.publish(Topic::TaskCreate, Some(INIT_PROCESS), act.init.pid, None);
                    if start {
                        act.publish(Topic::TaskStart, Some(INIT_PROCESS), act.init.pid, None);
                    }
                    // After create and start: an OOM kill already counted comes after them.
                    act.watch_oom(true, ctx);
                    Ok(act.info())
                }
                Err(e) => {
                    ctx.stop();
                    Err(e)
                }
            }
        }))
    }
}

impl Handler<Start> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, _: Start, _: &mut Context<Self>) -> Self::Result {
        if self.status != Status::Created || self.starting || self.deleting {
            let err = if self.starting {
                Error::WrongState(format!("container {} is already starting", self.key()))
            } else {
                self.wrong_state("only a created container can be started")
            };
            return Box::pin(actix::fut::ready(Err(err)));
        }
        self.starting = true;
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move { runtime.start(&id).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.starting = false;
                    let result = result.map(|()| {
                        if act.init.exit.is_none() {
                            act.status = Status::Running;
                        }
                        act.publish(Topic::TaskStart, Some(INIT_PROCESS), act.init.pid, None);
                        act.info()
                    });
                    act.started_at_ns = now_ns();
                    act.maybe_publish_init_exit();
                    act.consider_restart(ctx);
                    result
                }),
        )
    }
}

impl Handler<ProcessExited> for Container {
    type Result = ();

    fn handle(&mut self, msg: ProcessExited, ctx: &mut Context<Self>) {
        if msg.process_id == INIT_PROCESS {
            self.init.exit = Some(msg.status);
            self.init.addr = None;
            self.status = Status::Stopped;
            self.maybe_publish_init_exit();
            self.consider_restart(ctx);
            return;
        }
        let pid = match self.execs.get_mut(&msg.process_id) {
            Some(slot) => {
                slot.exit = Some(msg.status);
                slot.addr = None;
                slot.pid
            }
            None => return,
        };
        self.publish_exit(&msg.process_id, pid, Some(msg.status));
        // Waiters hear of the exit after its event is out, as for the init process.
        if let Some(slot) = self.execs.get_mut(&msg.process_id) {
            slot.resolve_waiters();
        }
        self.maybe_publish_init_exit();
        self.consider_restart(ctx);
    }
}

fn process_spec_json(bundle: &std::path::Path, process: ExecProcess) -> Result<String> {
    match process {
        ExecProcess::SpecJson(json) => {
            serde_json::from_str::<oci_spec::runtime::Process>(&json).map_err(|e| {
                Error::InvalidArgument(format!("exec process spec is not a valid OCI process: {e}"))
            })?;
            Ok(json)
        }
        ExecProcess::Args(args) => {
            if args.is_empty() {
                return Err(Error::InvalidArgument(
                    "exec needs a command to run".to_string(),
                ));
            }
            let spec = crate::bundle::load_spec(bundle)?;
            let mut process = spec.process().clone().unwrap_or_default();
            process.set_args(Some(args));
            process.set_terminal(Some(false));
            serde_json::to_string(&process)
                .map_err(|e| Error::Internal(format!("encode process.json: {e}")))
        }
    }
}

impl Handler<Exec> for Container {
    type Result = ResponseActFuture<Self, Result<ProcessInfo>>;

    fn handle(&mut self, msg: Exec, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            validate_id("exec id", &msg.exec_id)?;
            for (name, path) in [
                ("stdin", &msg.stdio.stdin),
                ("stdout", &msg.stdio.stdout),
                ("stderr", &msg.stdio.stderr),
            ] {
                if let Some(p) = path.as_ref().filter(|p| !p.is_absolute()) {
                    return Err(Error::InvalidArgument(format!(
                        "exec {name} path {} must be absolute",
                        p.display()
                    )));
                }
            }
            // Process dirs sit beside state.json and corral's own config.json.
            let exec_dir = self.dir.process(&msg.exec_id);
            if exec_dir.path().exists() && !exec_dir.path().is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "exec id {:?} is the name of a file in the container's state directory",
                    msg.exec_id
                )));
            }
            if msg.exec_id == INIT_PROCESS {
                return Err(Error::InvalidArgument(format!(
                    "exec id {INIT_PROCESS:?} is reserved for the container's own process"
                )));
            }
            if self.status != Status::Running || self.deleting {
                return Err(self.wrong_state("exec needs a running container"));
            }
            if self.execs.contains_key(&msg.exec_id) {
                return Err(Error::AlreadyExists(format!(
                    "exec {:?} in container {}",
                    msg.exec_id,
                    self.key()
                )));
            }
            let json = process_spec_json(&self.record.bundle, msg.process)?;
            let dir = self.dir.process(&msg.exec_id);
            launch::prepare_dir(&dir)?;
            write_atomic(&dir.process_json(), json.as_bytes())
                .map_err(|e| Error::io("write process.json", e))?;
            Ok(dir)
        })();
        let dir = match prepared {
            Ok(dir) => dir,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let exec_id = msg.exec_id;
        self.execs.insert(exec_id.clone(), ProcessSlot::default());
        self.publish(Topic::TaskExecAdded, Some(&exec_id), 0, None);
        let args = self.shim_args(Mode::Exec, &msg.stdio);
        let shim = self.env.shim.clone();
        let timeout = self.env.shim_timeout;
        let work = async move {
            let result = launch::launch(&shim, &dir, &args, timeout).await;
            if result.is_err() {
                let _ = std::fs::remove_dir_all(dir.path());
            }
            result
        };
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(shim) => {
                        let pid = shim.pid as u32;
                        let addr = act.watch(&exec_id, shim, ctx);
                        let slot = act.execs.entry(exec_id.clone()).or_default();
                        slot.pid = pid;
                        slot.addr = Some(addr);
                        act.publish(Topic::TaskExecStarted, Some(&exec_id), pid, None);
                        let info = act.execs[&exec_id].info(&exec_id);
                        act.maybe_publish_init_exit();
                        Ok(info)
                    }
                    Err(e) => {
                        act.execs.remove(&exec_id);
                        act.maybe_publish_init_exit();
                        Err(e)
                    }
                }),
        )
    }
}

impl Handler<Kill> for Container {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: Kill, _: &mut Context<Self>) -> Self::Result {
        let target = self.slot(msg.exec_id.as_deref()).and_then(|slot| {
            if msg.all && msg.exec_id.is_some() {
                return Err(Error::InvalidArgument(
                    "--all applies to the container, not to one exec".to_string(),
                ));
            }
            if slot.exit.is_some() {
                return Err(Error::WrongState(format!(
                    "process {} of container {} has already exited",
                    msg.exec_id.as_deref().unwrap_or(INIT_PROCESS),
                    self.key()
                )));
            }
            match &slot.addr {
                Some(addr) => Ok(addr.clone()),
                None => Err(Error::WrongState(format!(
                    "process {} of container {} is not started yet",
                    msg.exec_id.as_deref().unwrap_or(INIT_PROCESS),
                    self.key()
                ))),
            }
        });
        let addr = match target {
            Ok(addr) => addr,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // Recorded before the signal, so the exit it causes already sees it (restart policies);
        // undone if the signal could not be sent.
        let was_stopped_by_user = self.record.stopped_by_user;
        if msg.exec_id.is_none()
            && [libc::SIGTERM, libc::SIGKILL, libc::SIGINT, libc::SIGQUIT].contains(&msg.signal)
            && !was_stopped_by_user
        {
            self.record.stopped_by_user = true;
            self.save_record();
        }
        let paused = matches!(self.status, Status::Paused | Status::Pausing);
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move {
                if msg.all {
                    runtime.kill(&id, msg.signal, true).await?;
                } else {
                    addr.send(SignalProcess(msg.signal))
                        .await
                        .unwrap_or_else(|_| {
                            Err(Error::WrongState("the process has already exited".into()))
                        })?;
                }
                // A frozen process cannot act on a signal: thaw it so the signal lands.
                // (`runc kill --all` thaws by itself: "not paused" is fine then.)
                if paused {
                    match runtime.call("resume", &[&id], &id).await {
                        Err(Error::RuntimeFailed { stderr, .. })
                            if stderr.contains("not paused") => {}
                        other => other.map(drop)?,
                    }
                }
                Ok(paused)
            }
            .into_actor(self)
            .map(move |result: Result<bool>, act, _| {
                if result.is_err() && act.record.stopped_by_user != was_stopped_by_user {
                    act.record.stopped_by_user = was_stopped_by_user;
                    act.save_record();
                }
                if result? && matches!(act.status, Status::Paused | Status::Pausing) {
                    act.status = Status::Running;
                    act.publish(Topic::TaskResumed, Some(INIT_PROCESS), act.init.pid, None);
                }
                Ok(())
            }),
        )
    }
}

impl Handler<Wait> for Container {
    type Result = ResponseFuture<Result<ExitStatus>>;

    fn handle(&mut self, msg: Wait, _: &mut Context<Self>) -> Self::Result {
        let is_init = msg.exec_id.is_none();
        let slot = match msg.exec_id.as_deref() {
            None => Ok(&mut self.init),
            Some(e) => self
                .execs
                .get_mut(e)
                .ok_or_else(|| Error::NotFound(format!("exec {e:?} in container"))),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        // The init exit counts once its event is out, so a waiter never beats the event.
        let done = slot.exit.filter(|_| !is_init || self.init_exit_published);
        if let Some(exit) = done {
            return Box::pin(async move { Ok(exit) });
        }
        let (tx, rx) = oneshot::channel();
        // Waiters whose callers went away (a client that disconnected, a timed-out wait)
        // are let go, or a long-lived process would collect them.
        slot.waiters.retain(|w| !w.is_closed());
        slot.waiters.push(tx);
        Box::pin(async move {
            rx.await.map_err(|_| {
                Error::NotFound(
                    "the process is gone: its container was deleted, or its exec failed to start"
                        .into(),
                )
            })
        })
    }
}

impl Handler<Delete> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Delete { force }: Delete, ctx: &mut Context<Self>) -> Self::Result {
        if self.deleting || self.creating {
            let doing = if self.deleting { "deleted" } else { "created" };
            return Box::pin(actix::fut::ready(Err(Error::WrongState(format!(
                "container {} is being {doing}; try again when that is done",
                self.key()
            )))));
        }
        let live = matches!(
            self.status,
            Status::Running | Status::Pausing | Status::Paused | Status::Unknown
        ) && self.init.exit.is_none();
        if live && !force {
            return Box::pin(actix::fut::ready(Err(
                self.wrong_state("kill it first, or delete with --force")
            )));
        }
        self.deleting = true;
        if let Some(timer) = self.restart_timer.take() {
            ctx.cancel_future(timer);
        }
        // A live (or created) container is killed, and its exit published, before deletion;
        // so is one whose exit is recorded but still held back (a start or a checkpoint in
        // flight, execs still exiting): /tasks/exit always comes before /tasks/delete.
        let frozen = matches!(self.status, Status::Paused | Status::Pausing);
        if self.init.exit.is_none() && self.init.pid > 0 {
            if let Some(addr) = &self.init.addr {
                addr.do_send(SignalProcess(libc::SIGKILL));
            }
        }
        let exited = if self.init.pid > 0 && !self.init_exit_published {
            let (tx, rx) = oneshot::channel();
            self.init.waiters.push(tx);
            Some(rx)
        } else {
            None
        };
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        let dir = self.dir.path().to_path_buf();
        let cgroup = self.record.cgroups.clone();
        let timeout = runtime.timeout;
        let work = async move {
            if frozen {
                // "not paused": the pause had not happened yet, or the kill thawed it.
                match runtime.call("resume", &[&id], &id).await {
                    Err(Error::RuntimeFailed { stderr, .. }) if stderr.contains("not paused") => {}
                    other => other.map(drop)?,
                }
            }
            if let Some(rx) = exited {
                if tokio::time::timeout(timeout, rx).await.is_err() {
                    return Err(Error::Timeout(format!(
                        "container {id} did not exit within {timeout:?} of SIGKILL"
                    )));
                }
            }
            if let Err(e) = runtime.delete(&id, false).await {
                tracing::debug!("plain delete of {id} failed ({e}); forcing");
                runtime.delete(&id, true).await?;
            }
            remove_everything(runtime, id, dir, cgroup).await;
            Ok(())
        };
        Box::pin(work.into_actor(self).map(|result: Result<()>, act, ctx| {
            act.deleting = false;
            if let Err(e) = result {
                // Still here: a restart the delete cancelled is due again.
                act.consider_restart(ctx);
                return Err(e);
            }
            act.publish(
                Topic::TaskDelete,
                Some(INIT_PROCESS),
                act.init.pid,
                act.init.exit,
            );
            let info = act.info();
            ctx.stop();
            Ok(info)
        }))
    }
}

impl Handler<GetInfo> for Container {
    type Result = MessageResult<GetInfo>;

    fn handle(&mut self, _: GetInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.info())
    }
}

impl Handler<Pids> for Container {
    type Result = ResponseActFuture<Self, Result<Vec<PidInfo>>>;

    fn handle(&mut self, _: Pids, _: &mut Context<Self>) -> Self::Result {
        if matches!(self.status, Status::Stopped) {
            return Box::pin(actix::fut::ready(Ok(Vec::new())));
        }
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move { runtime.ps(&id).await }
                .into_actor(self)
                .map(|result, act, _| {
                    let pids = result?;
                    let known: BTreeMap<u32, String> =
                        std::iter::once((act.init.pid, INIT_PROCESS.to_string()))
                            .chain(act.execs.iter().map(|(id, s)| (s.pid, id.clone())))
                            .collect();
                    let mut seen = BTreeSet::new();
                    Ok(pids
                        .into_iter()
                        .filter(|p| seen.insert(*p))
                        .map(|pid| PidInfo {
                            pid,
                            process_id: known.get(&pid).cloned(),
                        })
                        .collect())
                }),
        )
    }
}

impl Handler<CloseProcessStdin> for Container {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: CloseProcessStdin, _: &mut Context<Self>) -> Self::Result {
        let addr = self.slot(msg.exec_id.as_deref()).and_then(|slot| {
            slot.addr.clone().ok_or_else(|| {
                Error::WrongState(format!(
                    "process {} of container {} is not running",
                    msg.exec_id.as_deref().unwrap_or(INIT_PROCESS),
                    self.key()
                ))
            })
        });
        Box::pin(async move {
            addr?
                .send(CloseStdin)
                .await
                .unwrap_or_else(|_| Err(Error::WrongState("the process has exited".into())))
        })
    }
}

/// Wakes the Container to look at the cgroup's OOM-kill counter.
#[derive(Message)]
#[rtype(result = "()")]
struct CheckOom;

impl Handler<CheckOom> for Container {
    type Result = ();

    fn handle(&mut self, _: CheckOom, _: &mut Context<Self>) {
        self.check_oom();
    }
}

/// Freezes the container (runtime `pause`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Pause;

/// Thaws the container (runtime `resume`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Resume;

/// Changes resource limits (runtime `update`).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Update(pub Resources);

/// Reads statistics from the container's cgroup.
#[derive(Message)]
#[rtype(result = "Result<crate::cgroups::Stats>")]
pub struct GetStats;

impl Handler<Pause> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, _: Pause, _: &mut Context<Self>) -> Self::Result {
        if self.status != Status::Running || self.deleting {
            return Box::pin(actix::fut::ready(Err(
                self.wrong_state("only a running container can be paused")
            )));
        }
        self.status = Status::Pausing;
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move { runtime.call("pause", &[&id], &id).await }
                .into_actor(self)
                .map(|result, act, _| {
                    let paused = result.is_ok();
                    if act.status == Status::Pausing {
                        act.status = if paused {
                            Status::Paused
                        } else {
                            Status::Running
                        };
                    }
                    result?;
                    // An init that exited meanwhile had its exit published already.
                    if act.init.exit.is_none() {
                        act.publish(Topic::TaskPaused, Some(INIT_PROCESS), act.init.pid, None);
                    }
                    Ok(act.info())
                }),
        )
    }
}

impl Handler<Resume> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, _: Resume, _: &mut Context<Self>) -> Self::Result {
        if self.status != Status::Paused || self.deleting {
            return Box::pin(actix::fut::ready(Err(
                self.wrong_state("only a paused container can be resumed")
            )));
        }
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move { runtime.call("resume", &[&id], &id).await }
                .into_actor(self)
                .map(|result, act, _| {
                    result?;
                    if act.status == Status::Paused {
                        act.status = Status::Running;
                    }
                    act.publish(Topic::TaskResumed, Some(INIT_PROCESS), act.init.pid, None);
                    Ok(act.info())
                }),
        )
    }
}

impl Handler<Update> for Container {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, Update(resources): Update, _: &mut Context<Self>) -> Self::Result {
        let fields = resources.fields();
        let refuse = if fields.is_empty() {
            Some(Error::InvalidArgument(
                "update needs at least one resource to change".into(),
            ))
        } else if !matches!(
            self.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            Some(self.wrong_state("only a live container can be updated"))
        } else {
            None
        };
        if let Some(e) = refuse {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        // runc 1.1 ignores the kernel memory limits (with a warning): corral writes those
        // cgroup files itself and reads them back.
        let (kernel, fields): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .partition(|(name, _, _)| name.starts_with("Kernel"));
        let memory_dir = crate::cgroups::host().dir("memory", self.record.cgroups.get("memory"));
        let v2 = matches!(crate::cgroups::host(), crate::cgroups::Hierarchy::V2 { .. });
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move {
                for (name, _, value) in &kernel {
                    set_kernel_memory(&memory_dir, v2, name, value).map_err(|why| {
                        Error::InvalidArgument(format!(
                            "update of container {id}: {name} refused: {why}"
                        ))
                    })?;
                }
                if fields.is_empty() {
                    return Ok(());
                }
                let mut args: Vec<String> = Vec::new();
                for (_, flag, value) in &fields {
                    args.push(format!("{flag}={value}"));
                }
                args.push(id.clone());
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                runtime
                    .call("update", &refs, &id)
                    .await
                    .map(drop)
                    .map_err(|e| match e {
                        Error::RuntimeFailed { stderr, .. } => {
                            let field = resource_field_of(&stderr)
                                .or_else(|| (fields.len() == 1).then(|| fields[0].0))
                                .map(str::to_string)
                                .unwrap_or_else(|| {
                                    fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
                                });
                            Error::InvalidArgument(format!(
                                "update of container {id}: {field} refused: {stderr}"
                            ))
                        }
                        other => other,
                    })
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetStats> for Container {
    type Result = Result<crate::cgroups::Stats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        if matches!(self.status, Status::Stopped | Status::Unknown) && self.init.exit.is_some() {
            return Err(self.wrong_state("a stopped container has no statistics"));
        }
        crate::cgroups::host().stats(&self.record.cgroups)
    }
}

/// Takes a checkpoint of the running container.
#[derive(Message)]
#[rtype(result = "Result<crate::checkpoint::CheckpointInfo>")]
pub struct Checkpoint {
    /// Its name.
    pub name: String,
    /// Its options.
    pub options: crate::checkpoint::CheckpointOptions,
    /// Where checkpoints are kept.
    pub store: crate::checkpoint::CheckpointStore,
}

impl Handler<Checkpoint> for Container {
    type Result = ResponseActFuture<Self, Result<crate::checkpoint::CheckpointInfo>>;

    fn handle(&mut self, msg: Checkpoint, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            if self.status != Status::Running || self.deleting {
                let hint = if self.status == Status::Paused {
                    "resume it first"
                } else {
                    "only a running container can be checkpointed"
                };
                return Err(self.wrong_state(hint));
            }
            crate::checkpoint::check_criu(&self.env.criu)?;
            let dir = msg
                .store
                .dir(&self.record.namespace, &self.record.id, &msg.name)?;
            if dir.exists() {
                return Err(Error::AlreadyExists(format!(
                    "checkpoint {:?} of container {}",
                    msg.name,
                    self.key()
                )));
            }
            std::fs::create_dir_all(dir.join("images"))
                .and_then(|()| {
                    std::fs::copy(
                        self.record.bundle.join("config.json"),
                        dir.join("config.json"),
                    )
                })
                .map_err(|e| Error::io(format!("prepare {}", dir.display()), e))?;
            Ok(dir)
        })();
        let dir = match prepared {
            Ok(dir) => dir,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let mut runtime = self.env.runtime.clone();
        runtime.args.extend([
            "--criu".to_string(),
            self.env.criu.to_string_lossy().into_owned(),
        ]);
        let info = crate::checkpoint::CheckpointInfo {
            name: msg.name.clone(),
            namespace: self.record.namespace.clone(),
            container_id: self.record.id.clone(),
            created_ns: now_ns(),
            options: msg.options.clone(),
            bundle: self.record.bundle.clone(),
            size: 0,
            labels: self.record.labels.clone(),
            restart: self.record.restart,
        };
        let was_stopped_by_user = self.record.stopped_by_user;
        if msg.options.exit {
            // The dump stops the container: a user's doing, not a failure to restart from.
            self.record.stopped_by_user = true;
            self.save_record();
            self.checkpointing_exit = true;
        }
        let id = self.record.id.clone();
        let store = msg.store;
        let work = async move {
            let images = dir.join("images").to_string_lossy().into_owned();
            let work_dir = dir.join("work").to_string_lossy().into_owned();
            let mut args = vec!["--image-path", &images, "--work-path", &work_dir];
            if !info.options.exit {
                args.push("--leave-running");
            }
            let flags = info.options.runtime_flags();
            args.extend(flags.iter().map(String::as_str));
            args.push(&id);
            let result = runtime.call("checkpoint", &args, &id).await;
            if let Err(e) = result {
                let criu = crate::checkpoint::criu_errors(&dir.join("work"));
                let _ = std::fs::remove_dir_all(&dir);
                if let Some(parent) = dir.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
                return Err(match e {
                    Error::RuntimeFailed { op, id, stderr } => {
                        // runc points at CRIU's log, which went with the failed checkpoint:
                        // its error lines are quoted here instead.
                        let kept: Vec<&str> = stderr
                            .lines()
                            .filter(|l| !l.starts_with("log file:"))
                            .collect();
                        let kept = kept.join("\n");
                        let stderr = if criu.is_empty() {
                            kept
                        } else {
                            format!("{kept}\nCRIU said:\n{criu}")
                        };
                        Error::RuntimeFailed { op, id, stderr }
                    }
                    other => other,
                });
            }
            let json =
                serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
            write_atomic(&dir.join("checkpoint.json"), &json)
                .map_err(|e| Error::io("write checkpoint.json", e))?;
            store.get(&info.namespace, &info.container_id, &info.name)
        };
        let exit = msg.options.exit;
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            act.checkpointing_exit = false;
            if result.is_err() && act.record.stopped_by_user != was_stopped_by_user {
                // The dump failed and the container still runs: it was not stopped after all.
                act.record.stopped_by_user = was_stopped_by_user;
                act.save_record();
            }
            let info = match result {
                Ok(info) => info,
                Err(e) => {
                    act.maybe_publish_init_exit();
                    act.consider_restart(ctx);
                    return Err(e);
                }
            };
            act.exited_by_checkpoint = exit;
            let event = Event {
                seq: 0,
                timestamp_ns: 0,
                namespace: act.record.namespace.clone(),
                topic: Topic::TaskCheckpointed,
                container_id: act.record.id.clone(),
                process_id: Some(INIT_PROCESS.to_string()),
                pid: Some(act.init.pid),
                exit: None,
                bundle: None,
                restarts: None,
                checkpoint: Some(info.name.clone()),
            };
            act.env.events.do_send(Publish { event, mark: None });
            // The exit the dump caused (if seen already) comes after /tasks/checkpointed.
            act.maybe_publish_init_exit();
            Ok(info)
        }))
    }
}
