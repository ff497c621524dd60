//! The exit path in the Container: a Process actor reports its shim's end
//! (`ProcessExited`). An exec's exit is published at once; the init's goes through the
//! exit gate, which publishes it when nothing that must come first can still come, and then
//! the restart policy is asked (see `restart.rs`).

use super::state::{Phase, StopCause};
use super::Container;
use crate::actors::process::ProcessExited;
use crate::types::*;
use actix::prelude::*;

impl Handler<ProcessExited> for Container {
    type Result = ();

    fn handle(&mut self, msg: ProcessExited, ctx: &mut Context<Self>) {
        if msg.process_id == INIT_PROCESS {
            self.init.exit = Some(msg.status);
            self.init.addr = None;
            // A checkpoint with --exit may have stopped it already, and says so.
            if self.life.phase != Phase::Checkpointed {
                let cause = if self.record.stopped_by_user {
                    StopCause::ByUser
                } else {
                    StopCause::Exited
                };
                self.become_(Phase::Stopped(cause));
            }
            let step = self.gate.init_exited(msg.status);
            self.settle(step, ctx);
            // Its exit is listed even while the gate holds its event back.
            self.push_summary();
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
        self.emit_exit(&msg.process_id, pid, msg.status);
        // Waiters hear of the exit after its event is out, as for the init process.
        if let Some(slot) = self.execs.get_mut(&msg.process_id) {
            slot.resolve_waiters();
        }
        let step = self.gate.exec_ended(&msg.process_id);
        self.settle(step, ctx);
    }
}
