//! A process's stdio through its shim's control fifo: close stdin (control message 0).

use super::state::Verb;
use super::Container;
use crate::actors::process::CloseStdin;
use crate::error::{Error, Result};
use crate::types::*;
use actix::prelude::*;

/// Closes a process's stdin.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseProcessStdin {
    /// `None` for init.
    pub exec_id: Option<String>,
}

impl Handler<CloseProcessStdin> for Container {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: CloseProcessStdin, _: &mut Context<Self>) -> Self::Result {
        let addr = self.guard(Verb::CloseStdin).and_then(|()| {
            let slot = self.slot(msg.exec_id.as_deref())?;
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
