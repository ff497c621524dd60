//! `Pause` (`runtime pause`, running → pausing → paused, back to running if it fails) and
//! `Resume` (`runtime resume`, paused → running), with `/tasks/paused` and `/tasks/resumed`.

use super::state::{Phase, Verb};
use super::Container;
use crate::error::{Error, Result};
use crate::types::*;
use actix::prelude::*;

/// Freezes the container (runtime `pause`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Pause;

/// Thaws the container (runtime `resume`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Resume;

impl Handler<Pause> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Pause, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Err(e) = self.guard(Verb::Pause) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        self.become_(Phase::Pausing);
        let paused = self.env.runtime.pause(&self.record.id);
        Box::pin(
            async move { paused.await.map_err(Error::from) }
                .into_actor(self)
                .map(|result, act, _| {
                    // A kill or an exit may have moved it on meanwhile.
                    if act.life.phase == Phase::Pausing {
                        act.become_(if result.is_ok() {
                            Phase::Paused
                        } else {
                            Phase::Running
                        });
                    }
                    result?;
                    // An init that exited meanwhile had its exit published already.
                    if act.init.exit.is_none() {
                        act.emit(Topic::TaskPaused, INIT_PROCESS, act.init.pid)
                            .send();
                    }
                    Ok(act.info())
                }),
        )
    }
}

impl Handler<Resume> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Err(e) = self.guard(Verb::Resume) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let resumed = self.env.runtime.resume(&self.record.id);
        Box::pin(
            async move { resumed.await.map_err(Error::from) }
                .into_actor(self)
                .map(|result, act, _| {
                    result?;
                    if act.life.phase == Phase::Paused {
                        act.become_(Phase::Running);
                    }
                    // An init that exited meanwhile had its exit published already.
                    if act.init.exit.is_none() {
                        act.emit(Topic::TaskResumed, INIT_PROCESS, act.init.pid)
                            .send();
                    }
                    Ok(act.info())
                }),
        )
    }
}
