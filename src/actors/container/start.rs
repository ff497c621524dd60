//! `Start`: `runtime start` of a created container. The init's exit waits for it, so
//! `/tasks/start` comes first.

use super::exit_gate::Hold;
use super::state::{Operation, Phase, Verb};
use super::Container;
use crate::error::{Error, Result};
use crate::types::*;
use actix::prelude::*;

/// Starts a created container.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Start;

impl Handler<Start> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Start, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Err(e) = self.guard(Verb::Start) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        self.set_op(Operation::Starting);
        self.gate.hold(Hold::Start);
        let started = self.env.runtime.start(&self.record.id);
        Box::pin(
            async move { started.await.map_err(Error::from) }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.set_op(Operation::Idle);
                    let result = result.map(|()| {
                        if act.init.exit.is_none() {
                            act.become_(Phase::Running);
                        }
                        act.emit(Topic::TaskStart, INIT_PROCESS, act.init.pid)
                            .send();
                        act.info()
                    });
                    act.started_at_ns = now_ns();
                    let step = act.gate.release(Hold::Start);
                    act.settle(step, ctx);
                    result
                }),
        )
    }
}
