//! `Wait`: a process's exit status, at once if it is known (for the init process: once its
//! `/tasks/exit` is out, so a waiter never beats the event).

use super::state::Verb;
use super::Container;
use crate::error::{Error, Result};
use crate::types::*;
use actix::prelude::*;
use tokio::sync::oneshot;

/// Waits for a process to exit (returns at once if it has).
#[derive(Message)]
#[rtype(result = "Result<ExitStatus>")]
pub struct Wait {
    /// `None` for init.
    pub exec_id: Option<String>,
}

impl Handler<Wait> for Container {
    type Result = ResponseFuture<Result<ExitStatus>>;

    fn handle(&mut self, msg: Wait, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.guard(Verb::Wait) {
            return Box::pin(async move { Err(e) });
        }
        let published_init_exit = self.gate.published_exit();
        let key = self.key();
        let slot = match msg.exec_id.as_deref() {
            None => Ok(&mut self.init),
            Some(e) => self
                .execs
                .get_mut(e)
                .ok_or_else(|| Error::NotFound(format!("exec {e:?} in container {key}"))),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let done = match msg.exec_id {
            None => published_init_exit,
            Some(_) => slot.exit,
        };
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
