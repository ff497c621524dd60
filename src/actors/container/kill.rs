//! `Kill`: a signal to one process (checked against its start time), or to every process (`runtime kill --all`). A frozen container is thawed so the
//! signal lands. A user's TERM, KILL, INT or QUIT of the init counts for the restart
//! policies.

use super::state::{Phase, Verb};
use super::Container;
use crate::error::{Error, Result};
use crate::runtime::RuntimeError;
use crate::types::*;
use actix::prelude::*;

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

/// The signals that stop a process at a user's request, as the restart policies see them.
const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGKILL, libc::SIGINT, libc::SIGQUIT];

impl Container {
    /// The process a kill goes to, if the request fits the container.
    fn kill_target(&self, msg: &Kill) -> Result<&super::Process> {
        if msg.all && msg.exec_id.is_some() {
            return Err(Error::InvalidArgument(
                "--all applies to the container, not to one exec".to_string(),
            ));
        }
        let slot = self.slot(msg.exec_id.as_deref())?;
        let name = msg.exec_id.as_deref().unwrap_or(INIT_PROCESS);
        if slot.exit.is_some() {
            return Err(Error::WrongState(format!(
                "process {name} of container {} has already exited",
                self.key()
            )));
        }
        self.guard(Verb::Kill)?;
        slot.process.as_ref().ok_or_else(|| {
            Error::WrongState(format!(
                "process {name} of container {} is not started yet",
                self.key()
            ))
        })
    }
}

impl Handler<Kill> for Container {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: Kill, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Err(e) = self.kill_target(&msg) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        // Recorded before the signal, so the exit it causes already sees it (restart
        // policies); undone if the signal could not be sent.
        let was_stopped_by_user = self.record.stopped_by_user;
        if msg.exec_id.is_none() && STOP_SIGNALS.contains(&msg.signal) && !was_stopped_by_user {
            self.record.stopped_by_user = true;
            self.save_record();
        }
        let signalled = match self.kill_target(&msg) {
            _ if msg.all => Ok(()),
            Ok(process) => {
                process.signal(msg.exec_id.as_deref().unwrap_or(INIT_PROCESS), msg.signal)
            }
            Err(e) => Err(e),
        };
        let frozen = self.life.is_frozen();
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move {
                signalled?;
                if msg.all {
                    runtime.kill(&id, msg.signal, true).await?;
                }
                // A frozen process cannot act on a signal: thaw it so the signal lands.
                // (`runtime kill --all` thaws by itself: "not paused" is fine then.)
                if frozen {
                    match runtime.resume(&id).await {
                        Ok(()) | Err(RuntimeError::NotPaused { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(frozen)
            }
            .into_actor(self)
            .map(move |result: Result<bool>, act, _| {
                if result.is_err() && act.record.stopped_by_user != was_stopped_by_user {
                    act.record.stopped_by_user = was_stopped_by_user;
                    act.save_record();
                }
                if result? && act.life.is_frozen() {
                    act.become_(Phase::Running);
                    act.emit(Topic::TaskResumed, INIT_PROCESS, act.init.pid)
                        .send();
                }
                Ok(())
            }),
        )
    }
}
