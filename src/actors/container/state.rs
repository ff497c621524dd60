//! A container's lifecycle as data: the phase it is in, the operation in flight, one guard
//! table ([`Lifecycle::allows`]) that every handler asks first, one whitelist of phase
//! changes ([`Lifecycle::transition`]), one projection to the wire [`Status`] and one
//! answer to "is it live?".
//!
//! ```text
//!   Unknown ─Init─► Creating ─ok─► Created ─start─► Running ◄─resume── Paused
//!                      │ (run/restore) └────────────►  │ │ └─pause─► Pausing ─┘
//!                      └─failed─► Deleted              │ └─checkpoint --exit─► Checkpointed
//!                     every live phase ─init exits─► Stopped ─restart─► Running
//!                     Stopped, Checkpointed, Created, Unknown ─delete─► Deleted
//! ```

use crate::error::Error;
use crate::types::Status;
use actix::SpawnHandle;
use std::fmt;

/// Why the init process stopped, as far as the restart policies care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// It exited by itself (or was killed by something other than a user).
    Exited,
    /// A user's kill (TERM, KILL, INT, QUIT) asked for it.
    ByUser,
}

/// Where a container is in its life (libcontainer's and containerd's states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not yet created, or adopted without a pid: nobody can tell.
    Unknown,
    /// Its init process is being created (or restored).
    Creating,
    /// Created by the runtime, not yet started.
    Created,
    /// Its init process runs.
    Running,
    /// Being frozen.
    Pausing,
    /// Frozen.
    Paused,
    /// Its init process has exited.
    Stopped(StopCause),
    /// Its init process was stopped by a checkpoint (`--exit`): never restarted by policy.
    Checkpointed,
    /// Deleted: the actor is stopping.
    Deleted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Unknown => "unknown",
            Phase::Creating => "being created",
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Pausing => "pausing",
            Phase::Paused => "paused",
            Phase::Stopped(_) => "stopped",
            Phase::Checkpointed => "stopped by a checkpoint",
            Phase::Deleted => "deleted",
        })
    }
}

/// The one operation a container may have in flight besides its processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Operation {
    /// Nothing.
    #[default]
    Idle,
    /// `runtime start` is running.
    Starting,
    /// A checkpoint is being taken; `exit` when it stops the container.
    Checkpointing {
        /// The dump stops the container.
        exit: bool,
    },
    /// The restart policy's timer is set.
    RestartPending(SpawnHandle),
    /// The init process is being run again.
    Restarting,
    /// The container is being deleted.
    Deleting,
}

impl Operation {
    /// Its short name on the wire (`ContainerInfo::operation`); empty when idle.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Idle => "",
            Operation::Starting => "starting",
            Operation::Checkpointing { .. } => "checkpointing",
            Operation::RestartPending(_) => "restart-pending",
            Operation::Restarting => "restarting",
            Operation::Deleting => "deleting",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Idle => "idle",
            Operation::Starting => "starting",
            Operation::Checkpointing { .. } => "being checkpointed",
            Operation::RestartPending(_) => "waiting to restart",
            Operation::Restarting => "restarting",
            Operation::Deleting => "being deleted",
        })
    }
}

/// What a client (or a timer) asks of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Create its init process.
    Init,
    /// Start a created container.
    Start,
    /// Run another process.
    Exec,
    /// Signal one process, or all of them.
    Kill,
    /// Wait for a process to exit.
    Wait,
    /// Delete it; `force` kills a live one first.
    Delete {
        /// Kill it first if it is live.
        force: bool,
    },
    /// Freeze it.
    Pause,
    /// Thaw it.
    Resume,
    /// Change its resource limits.
    Update,
    /// Read its cgroup statistics.
    Stats,
    /// List its pids.
    Pids,
    /// Close a process's stdin.
    CloseStdin,
    /// Take a checkpoint.
    Checkpoint,
    /// Run its init again (the restart policy).
    Restart,
}

impl Verb {
    /// Every verb, for the table's tests.
    #[cfg(test)]
    pub const ALL: [Verb; 15] = [
        Verb::Init,
        Verb::Start,
        Verb::Exec,
        Verb::Kill,
        Verb::Wait,
        Verb::Delete { force: false },
        Verb::Delete { force: true },
        Verb::Pause,
        Verb::Resume,
        Verb::Update,
        Verb::Stats,
        Verb::Pids,
        Verb::CloseStdin,
        Verb::Checkpoint,
        Verb::Restart,
    ];
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Init => "create",
            Verb::Start => "start",
            Verb::Exec => "exec",
            Verb::Kill => "kill",
            Verb::Wait => "wait",
            Verb::Delete { .. } => "delete",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Update => "update",
            Verb::Stats => "stats",
            Verb::Pids => "pids",
            Verb::CloseStdin => "close stdin",
            Verb::Checkpoint => "checkpoint",
            Verb::Restart => "restart",
        })
    }
}

/// Phase and operation together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// The phase.
    pub phase: Phase,
    /// The operation in flight.
    pub op: Operation,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::Unknown,
            op: Operation::Idle,
        }
    }
}

/// Why a verb was refused: the state it met and what would make it possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The verb.
    pub verb: Verb,
    /// The phase it met.
    pub phase: Phase,
    /// The operation it met.
    pub op: Operation,
    /// What the caller could do.
    pub hint: &'static str,
}

impl Refusal {
    /// The wire error, naming the container, its state and the verb.
    pub fn into_error(self, container: &str) -> Error {
        let state = match self.op {
            Operation::Idle | Operation::RestartPending(_) => self.phase.to_string(),
            op => op.to_string(),
        };
        Error::WrongState(format!(
            "container {container} is {state}: cannot {}; {}",
            self.verb, self.hint
        ))
    }
}

impl Lifecycle {
    /// The guard table: may `verb` run now?
    pub fn allows(&self, verb: Verb) -> Result<(), Refusal> {
        use Operation as O;
        use Phase as P;
        let refuse = |hint| {
            Err(Refusal {
                verb,
                phase: self.phase,
                op: self.op,
                hint,
            })
        };
        if self.phase == P::Deleted && verb != Verb::Wait {
            return refuse("it is gone");
        }
        match verb {
            Verb::Wait => Ok(()),
            Verb::Init => match self.phase {
                P::Unknown if self.op == O::Idle => Ok(()),
                _ => refuse("it exists already"),
            },
            Verb::Delete { force } => match (self.phase, self.op) {
                // A start or a checkpoint holds the init's exit back; it ends within the
                // runtime's timeout, and the delete is for after it.
                (P::Creating, _) | (_, O::Deleting | O::Starting | O::Checkpointing { .. }) => {
                    refuse("try again when that is done")
                }
                (P::Running | P::Pausing | P::Paused | P::Unknown, _) if !force => {
                    refuse("kill it first, or delete with --force")
                }
                _ => Ok(()),
            },
            Verb::Start => match (self.phase, self.op) {
                (P::Created, O::Idle) => Ok(()),
                (_, O::Starting) => refuse("it is already starting"),
                _ => refuse("only a created container can be started"),
            },
            Verb::Exec => match (self.phase, self.op) {
                (_, O::Deleting) => refuse("it is being deleted"),
                (P::Running, _) => Ok(()),
                (P::Paused | P::Pausing, _) => refuse("resume it first"),
                _ => refuse("exec needs a running container"),
            },
            Verb::Pause => match (self.phase, self.op) {
                (_, O::Deleting) => refuse("it is being deleted"),
                (_, O::Checkpointing { .. }) => refuse("wait for the checkpoint in flight"),
                (P::Running, _) => Ok(()),
                _ => refuse("only a running container can be paused"),
            },
            Verb::Resume => match (self.phase, self.op) {
                (_, O::Deleting) => refuse("it is being deleted"),
                (P::Paused, _) => Ok(()),
                _ => refuse("only a paused container can be resumed"),
            },
            Verb::Update => match (self.phase, self.op) {
                (_, O::Deleting) => refuse("it is being deleted"),
                (P::Created | P::Running | P::Paused, _) => Ok(()),
                _ => refuse("only a live container can be updated"),
            },
            Verb::Checkpoint => match (self.phase, self.op) {
                (_, O::Deleting) => refuse("it is being deleted"),
                (_, O::Checkpointing { .. }) => refuse("wait for the checkpoint in flight"),
                (P::Running, O::Idle) => Ok(()),
                (P::Paused | P::Pausing, _) => refuse("resume it first"),
                _ => refuse("only a running container can be checkpointed"),
            },
            Verb::Kill => match self.phase {
                P::Stopped(_) | P::Checkpointed => refuse("its process has already exited"),
                _ => Ok(()),
            },
            Verb::Stats => match self.phase {
                P::Stopped(_) | P::Checkpointed => refuse("a stopped container has no statistics"),
                _ => Ok(()),
            },
            Verb::Pids | Verb::CloseStdin => Ok(()),
            Verb::Restart => match (self.phase, self.op) {
                (P::Stopped(_) | P::Checkpointed, O::Idle | O::RestartPending(_)) => Ok(()),
                _ => refuse("only a stopped container is restarted"),
            },
        }
    }

    /// Moves to `to` if the whitelist has that step; a refusal names both phases.
    pub fn transition(&mut self, to: Phase) -> Result<(), Error> {
        use Phase as P;
        let allowed = match (self.phase, to) {
            (from, to) if from == to => true,
            (P::Unknown, P::Creating) => true,
            // Adoption: the runtime's word, or the exit found on disk.
            (P::Unknown, P::Created | P::Running | P::Paused | P::Stopped(_)) => true,
            (P::Creating, P::Created | P::Running | P::Deleted) => true,
            (P::Created, P::Running) => true,
            // Created and Paused: an adopted container takes the runtime's word.
            (P::Running, P::Pausing | P::Paused | P::Created | P::Checkpointed) => true,
            (P::Pausing, P::Paused | P::Running) => true,
            (P::Paused, P::Running) => true,
            // The init process can exit from every live phase.
            (P::Created | P::Running | P::Pausing | P::Paused, P::Stopped(_)) => true,
            (P::Stopped(_), P::Running | P::Checkpointed) => true,
            // A user's restart of a container a checkpoint stopped.
            (P::Checkpointed, P::Running) => true,
            (P::Stopped(_), P::Stopped(_)) => true,
            (_, P::Deleted) => true,
            _ => false,
        };
        if !allowed {
            return Err(Error::Internal(format!(
                "invalid state transition: {} to {}",
                self.phase, to
            )));
        }
        self.phase = to;
        Ok(())
    }

    /// The wire status.
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Unknown | Phase::Creating => Status::Unknown,
            Phase::Created => Status::Created,
            Phase::Running => Status::Running,
            Phase::Pausing => Status::Pausing,
            Phase::Paused => Status::Paused,
            Phase::Stopped(_) | Phase::Checkpointed | Phase::Deleted => Status::Stopped,
        }
    }

    /// Whether its init process may be running: created, running, pausing or paused.
    pub fn is_live(&self) -> bool {
        self.status().is_live()
    }

    /// Whether it is frozen (or being frozen): a signal needs a thaw to land.
    pub fn is_frozen(&self) -> bool {
        matches!(self.phase, Phase::Paused | Phase::Pausing)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
