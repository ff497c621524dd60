//! The Container actor: one per container, the only owner of its lifecycle and of its
//! processes. Every runtime call it makes has a timeout, so a wedged runtime stalls this
//! container only.
//!
//! The lifecycle is data ([`state`]: a phase, the operation in flight, one guard table that
//! every handler asks first); the held-back init exit is one type ([`exit_gate`]); the record
//! on disk has one reader and writer ([`record`]). Each verb has a file of its own: `create`,
//! `start`, `exec`, `kill`, `wait`, `delete`, `pause` (and resume), `update`, `checkpoint`,
//! `restore`, `exit` (the whole exit path), `restart` (policies and backoff), `oom`, `adopt`,
//! `inspect` (state, pids, stats) and `io` (stdin).
//!
//! Event order per container is kept here: every event of a container is published by its
//! actor, in order, so create < start < (exec exits) < exit < delete.

mod adopt;
mod checkpoint;
mod create;
mod delete;
mod exec;
mod exit;
pub mod exit_gate;
mod inspect;
mod io;
mod kill;
mod oom;
pub mod oom_set;
mod pause;
pub mod record;
pub mod restart;
mod restore;
pub mod slot;
mod start;
pub mod state;
pub mod summary;
mod update;
mod wait;

pub use checkpoint::Checkpoint;
pub use create::Init;
pub use delete::Delete;
pub use exec::{Exec, RemoveExec};
pub use inspect::{GetInfo, GetStats, Pids};
pub use io::{CloseProcessStdin, GetProcessStdio, ProcessStdio, ResizeProcess};
pub use kill::Kill;
pub use pause::{Pause, Resume};
pub use record::ContainerRecord;
pub use restart::{take_back_last_run, HoldRestarts, RestartNow};
pub use restore::RestoreFrom;
pub use start::Start;
pub use summary::Summary;
pub use update::Update;
pub use wait::Wait;

#[cfg(test)]
mod tests;

use super::events::{Events, Publish};
use super::process::{Process, ShimWatch};
use crate::error::Result;
use crate::launch::LaunchedShim;
use crate::layout::ContainerDir;
use crate::runtime::OciRuntime;
use crate::shim::{Mode, ShimArgs};
use crate::types::*;
use actix::prelude::*;
use exit_gate::{ExitGate, Step};
pub use slot::ProcessIo;
use slot::ProcessSlot;
use state::{Lifecycle, Phase, Verb};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a verb that comes during a restart waits for it before it is refused: a
/// restart takes tens of milliseconds, one whose runtime hangs up to `runtime_timeout` and
/// `shim_timeout` more.
pub const RESTART_WAIT: Duration = Duration::from_secs(2);

/// What a Container needs from the daemon's configuration: its runtime, and the rest,
/// which every container shares (one `Arc`, not a copy of each part per container: each
/// actix address cloned costs two allocations). The shared part is reached through it
/// (`env.events`, `env.logs`, ...).
#[derive(Clone)]
pub struct ContainerEnv {
    /// The runtime, with its per-namespace root.
    pub runtime: Arc<dyn OciRuntime>,
    /// The part every container shares.
    pub shared: Arc<SharedEnv>,
}

impl std::ops::Deref for ContainerEnv {
    type Target = SharedEnv;

    fn deref(&self) -> &SharedEnv {
        &self.shared
    }
}

/// The part of [`ContainerEnv`] that every container shares.
pub struct SharedEnv {
    /// How long a shim may take to answer.
    pub shim_timeout: Duration,
    /// Where events go.
    pub events: Addr<Events>,
    /// The CRIU binary, for checkpoint and restore.
    pub criu: PathBuf,
    /// Where logs go.
    pub logs: Arc<crate::config::LogSettings>,
    /// Where the container's summary goes whenever it changes (the Supervisor, which
    /// answers lists from them); `None` in tests of a lone container.
    pub supervisor: Option<Addr<super::supervisor::Supervisor>>,
    /// The one epoll set of every container's OOM notifier (`None` if it could not be
    /// made: OOM kills are then found when the init exits).
    pub oom_set: Option<Arc<oom_set::OomSet>>,
}

/// One container.
pub struct Container {
    record: ContainerRecord,
    dir: ContainerDir,
    env: ContainerEnv,
    life: Lifecycle,
    gate: ExitGate,
    init: ProcessSlot,
    execs: BTreeMap<String, ProcessSlot>,
    /// For a container adopted at daemon start: the (process, pid) exits already journaled
    /// (boxed: a word, not a set's 48 bytes, in every container; only adopted ones have it).
    #[allow(clippy::box_collection)]
    adopt: Option<Box<HashSet<(String, u32)>>>,
    started_at_ns: u64,
    backoff_streak: u32,
    oom: oom::OomWatch,
    /// Verbs that came while a restart ran, handled again once it is over.
    after_restart: Vec<oneshot::Sender<()>>,
    /// A fingerprint of the summary last pushed to the Supervisor (not the summary itself:
    /// that is kept once, there).
    pushed: std::cell::Cell<u64>,
    /// How many process watches were started: each process's token.
    watches: u32,
}

impl Container {
    /// A container about to be created; nothing runs until [`Init`].
    pub fn new(record: ContainerRecord, dir: ContainerDir, env: ContainerEnv) -> Self {
        Container {
            record,
            dir,
            env,
            life: Lifecycle::default(),
            gate: ExitGate::default(),
            init: ProcessSlot::default(),
            execs: BTreeMap::new(),
            adopt: None,
            started_at_ns: now_ns(),
            backoff_streak: 0,
            oom: oom::OomWatch::default(),
            after_restart: Vec::new(),
            pushed: std::cell::Cell::new(0),
            watches: 0,
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
        c.adopt = Some(Box::new(published));
        c
    }

    fn key(&self) -> String {
        format!("{}/{}", self.record.namespace, self.record.id)
    }

    /// The guard table's answer for `verb`, as the wire error a client gets.
    fn guard(&self, verb: Verb) -> Result<()> {
        self.life
            .allows(verb)
            .map_err(|refusal| refusal.into_error(&self.key()))
    }

    /// Moves to `to`; a step the whitelist lacks is logged and not taken (never a panic).
    fn become_(&mut self, to: Phase) {
        self.transition(to);
        self.push_summary();
    }

    /// [`Container::become_`] without the summary: for a caller that pushes it itself.
    fn transition(&mut self, to: Phase) {
        if let Err(e) = self.life.transition(to) {
            tracing::warn!("{}: {e}", self.key());
        }
    }

    /// Sets the operation in flight, and tells the Supervisor.
    fn set_op(&mut self, op: state::Operation) {
        self.life.op = op;
        self.push_summary();
    }

    /// Tells the Supervisor this container's state if it changed since it was last told:
    /// lists, namespace-wide info and the metrics' counts are answered from these summaries
    /// without asking each container. Called on every change of phase or operation, with
    /// every event, and by [`Container::info`], so every answer that carries the state
    /// brings the summary up to date first.
    fn push_summary(&self) {
        let info = self.state_now();
        if self.summary_changed(&info) {
            self.send_summary(Box::new(info));
        }
    }

    /// Whether `info` differs from the summary last pushed (and it is the last one now).
    fn summary_changed(&self, info: &ContainerInfo) -> bool {
        if self.env.supervisor.is_none() {
            return false;
        }
        let fingerprint = summary::fingerprint(info);
        fingerprint != self.pushed.replace(fingerprint)
    }

    fn send_summary(&self, info: Box<ContainerInfo>) {
        if let Some(supervisor) = &self.env.supervisor {
            supervisor.do_send(summary::Summary(info));
        }
    }

    fn save_record(&self) {
        if let Err(e) = self.record.save(&self.dir) {
            tracing::warn!("{}: {e}", self.key());
        }
    }

    /// The container's state (and, if it changed, pushed to the Supervisor first).
    fn info(&self) -> ContainerInfo {
        let info = self.state_now();
        if self.summary_changed(&info) {
            self.send_summary(Box::new(info.clone()));
        }
        info
    }

    fn state_now(&self) -> ContainerInfo {
        let exit = self.init.exit;
        ContainerInfo {
            namespace: self.record.namespace.clone(),
            id: self.record.id.clone(),
            bundle: self.record.bundle.clone(),
            runtime: self.record.runtime.clone(),
            labels: self.record.labels.clone(),
            status: self.life.status(),
            pid: self.init.pid,
            created_at_ns: self.record.created_at_ns,
            exit,
            execs: self.execs.iter().map(|(id, s)| s.info(id)).collect(),
            restart: self.record.restart,
            restarts: self.record.restarts,
            oom_kills: self.record.oom_kills,
            exit_oom_killed: exit.is_some() && self.oom.killed_this_run(),
            busy: false,
            operation: self.life.op.name().to_string(),
            stop_signal: self.record.stop_signal,
            log_path: self.init.io.log.clone(),
            terminal: self.init.io.terminal,
        }
    }

    /// The one event builder: an event of this container about `process_id`. Sending it
    /// pushes the summary too, so a client acting on the event lists the change.
    fn emit(&self, topic: Topic, process_id: &str, pid: u32) -> Emit<'_> {
        Emit {
            container: self,
            event: Event {
                seq: 0,
                timestamp_ns: 0,
                namespace: self.record.namespace.clone(),
                topic,
                container_id: self.record.id.clone(),
                process_id: Some(process_id.to_string()),
                pid: (pid > 0).then_some(pid),
                exit: None,
                bundle: (topic == Topic::TaskCreate).then(|| self.record.bundle.clone()),
                restarts: None,
                checkpoint: None,
                image: None,
                snapshot: None,
            },
            mark: None,
        }
    }

    /// `/tasks/exit` of a process, with the marker its directory gets once it is journaled.
    fn emit_exit(&self, process_id: &str, pid: u32, exit: ExitStatus) {
        self.emit(Topic::TaskExit, process_id, pid)
            .exit(exit)
            .marked(self.dir.process(process_id).exit_published())
            .send();
    }

    /// Acts on what the exit gate says: kill live execs, or publish the init's exit (after
    /// any OOM kill it caused), answer its waiters and ask the restart policy.
    fn settle(&mut self, step: Step, ctx: &mut Context<Self>) {
        match step {
            Step::Wait => {}
            Step::KillExecs => {
                // They die with the container's pid namespace; make sure of it when there
                // is none. An exec still launching reports (started or failed) first.
                for (id, slot) in self.execs.iter().filter(|(_, s)| s.exit.is_none()) {
                    if let Some(process) = &slot.process {
                        let _ = process.signal(id, libc::SIGKILL);
                    }
                }
            }
            Step::Publish(exit) => {
                self.check_oom_at_exit(&exit);
                self.emit_exit(INIT_PROCESS, self.init.pid, exit);
                self.init.resolve_waiters();
                self.consider_restart(ctx);
            }
        }
    }

    /// The shim's arguments for one process, and its stdio as [`ProcessIo`]: with no
    /// output path given, the shim writes the process's log
    /// (`<log dir>/<namespace>/<id>/<process>.log`).
    fn shim_args(&self, mode: Mode, process_id: &str, stdio: &Stdio) -> (ShimArgs, ProcessIo) {
        let runtime = &self.env.runtime;
        let dir = self.dir.process(process_id);
        let io = ProcessIo {
            log: stdio
                .logged()
                .then(|| self.log_dir().join(format!("{process_id}.log"))),
            log_start: None,
            stdin_fifo: stdio.open_stdin.then(|| dir.stdin_fifo()),
            terminal: stdio.terminal,
        };
        let args = ShimArgs {
            mode,
            runtime: runtime.binary().to_path_buf(),
            root: runtime.root().to_path_buf(),
            id: self.record.id.clone(),
            bundle: self
                .record
                .runtime_bundle
                .clone()
                .unwrap_or_else(|| self.record.bundle.clone()),
            runtime_args: runtime.global_args().iter().map(Into::into).collect(),
            // The verbs that set up the rootfs take it; exec joins a set-up container.
            verb_args: if self.record.no_pivot_root && mode != Mode::Exec {
                vec!["--no-pivot".into()]
            } else {
                Vec::new()
            },
            stdin: io.stdin_fifo.clone().or_else(|| stdio.stdin.clone()),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            log: io.log.clone(),
            log_max_size: stdio.log_max_size.unwrap_or(self.env.logs.max_size),
            log_max_files: stdio.log_max_files.unwrap_or(self.env.logs.max_files),
            terminal: stdio.terminal,
            console_size: stdio.console_size.map(|c| (c.width, c.height)),
            cgroup: None, // the runtime's launch sets its shims' cgroup
            dir: None,    // and `launch` the process's directory
        };
        (args, io)
    }

    /// This container's log directory: `<log dir>/<namespace>/<id>`.
    fn log_dir(&self) -> PathBuf {
        self.env
            .logs
            .dir
            .join(&self.record.namespace)
            .join(&self.record.id)
    }

    /// Watches a launched shim (see `exit.rs`). A process whose output its shim does not
    /// own has its exit read from the kernel as well (`exit_watch.rs`); a logged or
    /// terminal one's comes from its shim, after the shim has drained its output.
    fn watch(&mut self, process_id: &str, shim: LaunchedShim, ctx: &mut Context<Self>) -> Process {
        let io = if process_id == INIT_PROCESS {
            Some(&self.init.io)
        } else {
            self.execs.get(process_id).map(|slot| &slot.io)
        };
        let watch = ShimWatch {
            exit_fd: Some(shim.exit_fd),
            shim_exited: Some(shim.shim_exited),
            shim_pidfd: None,
            exit_pidfd: io
                .is_some_and(ProcessIo::kernel_tells_exit)
                .then(|| crate::exit_watch::open(shim.pid, shim.starttime))
                .flatten(),
        };
        self.watch_process(process_id, shim.pid, shim.starttime, watch, ctx)
    }

    /// Whether a restart is running: verbs that would change the container wait for it
    /// ([`Container::after_restart`]), reads are answered at once.
    fn restarting(&self) -> bool {
        self.life.op == state::Operation::Restarting
    }

    /// A verb that came during a restart, handled once the restart is over, so it never
    /// interleaves with a half-made restart (the mailbox, and so lists and state, keep
    /// moving meanwhile). It is handled inside the same actor future, so its answer is
    /// delivered even when it stops the actor (a delete). A restart stuck in a runtime call
    /// is not waited for: after [`RESTART_WAIT`] the verb is refused (`WrongState`) and
    /// changes nothing.
    fn after_restart<M, T>(
        &mut self,
        msg: M,
        _: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<T>>
    where
        M: Message<Result = Result<T>> + 'static,
        T: 'static,
        Container: Handler<M, Result = ResponseActFuture<Self, Result<T>>>,
    {
        let (tx, rx) = oneshot::channel();
        self.after_restart.push(tx);
        Box::pin(
            async move { tokio::time::timeout(RESTART_WAIT, rx).await.is_ok() }
                .into_actor(self)
                .then(move |over, act, ctx| {
                    if over {
                        return <Container as Handler<M>>::handle(act, msg, ctx);
                    }
                    let refused = crate::Error::WrongState(format!(
                        "container {} is restarting: its runtime has not finished for {:?}; \
                         try again later",
                        act.key(),
                        RESTART_WAIT
                    ));
                    Box::pin(actix::fut::ready(Err(refused)))
                }),
        )
    }

    fn slot(&self, exec_id: Option<&str>) -> Result<&ProcessSlot> {
        match exec_id {
            None => Ok(&self.init),
            Some(e) => self.execs.get(e).ok_or_else(|| {
                crate::Error::NotFound(format!("exec {e:?} in container {}", self.key()))
            }),
        }
    }
}

/// An event being built: set what it carries, then [`Emit::send`] it.
struct Emit<'a> {
    container: &'a Container,
    event: Event,
    mark: Option<PathBuf>,
}

impl Emit<'_> {
    fn exit(mut self, exit: ExitStatus) -> Self {
        self.event.exit = Some(exit);
        self
    }

    fn restarts(mut self, n: u32) -> Self {
        self.event.restarts = Some(n);
        self
    }

    fn checkpoint(mut self, name: &str) -> Self {
        self.event.checkpoint = Some(name.to_string());
        self
    }

    /// Creates `path` (holding the event's pid) once the event is in the journal.
    fn marked(mut self, path: PathBuf) -> Self {
        self.mark = Some(path);
        self
    }

    /// Sends the event, then the container's summary if it changed. The event goes first
    /// so that the Events actor, woken first, publishes it before the Supervisor files the
    /// summary (the exit path's latency). A client still lists the change once it has the
    /// event: the Container, Events and Supervisor share one thread, so the summary is in
    /// the Supervisor's mailbox before this handler returns, before the event is out and
    /// so before any list the event can prompt.
    fn send(self) {
        self.container.env.events.do_send(Publish {
            event: self.event,
            mark: self.mark,
        });
        self.container.push_summary();
    }
}

impl Actor for Container {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(published) = self.adopt.take() {
            self.adopt_processes(*published, ctx);
        }
        self.push_summary();
    }
}
