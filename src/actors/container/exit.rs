//! The exit path in the Container: the watch on each process's shim (futures on the
//! container's own context: the exit fifo, the reaper's word, a pidfd) reports the shim's
//! end here. An exec's exit is published at once; the init's goes through the exit gate,
//! which publishes it when nothing that must come first can still come, and then the
//! restart policy is asked (see `restart.rs`).

use super::exit_gate::Step;
use super::state::{Phase, StopCause};
use super::Container;
use crate::actors::process::{wait_hangup, Process, ShimWatch, FIFO_GRACE};
use crate::types::*;
use actix::prelude::*;

impl Container {
    /// Watches a process's shim: the returned [`Process`] goes into its slot, and whichever
    /// of `watch` tells first that the shim is gone ends it ([`Container::process_gone`]).
    pub(super) fn watch_process(
        &mut self,
        process_id: &str,
        pid: i32,
        starttime: Option<u64>,
        watch: ShimWatch,
        ctx: &mut Context<Self>,
    ) -> Process {
        self.watches = self.watches.wrapping_add(1);
        let token = self.watches;
        let mut process = Process::new(pid, starttime, token);
        if let Some(fd) = watch.exit_fd {
            process.fifo_watched = true;
            let id = process_id.to_string();
            ctx.spawn(
                wait_hangup(fd)
                    .into_actor(self)
                    .map(move |message, act, ctx| act.process_gone(&id, token, &message, ctx)),
            );
        }
        if let Some(pidfd) = watch.shim_pidfd {
            let id = process_id.to_string();
            ctx.spawn(
                crate::launch::exited(pidfd)
                    .into_actor(self)
                    .map(move |_, act, ctx| act.shim_died(id, token, ctx)),
            );
        }
        if let (Some(pidfd), Some(start)) = (watch.exit_pidfd, starttime) {
            let id = process_id.to_string();
            ctx.spawn(
                crate::exit_watch::exited(pidfd, pid, start)
                    .into_actor(self)
                    .map(move |code, act, ctx| {
                        // No answer from the kernel: the shim's fifo tells.
                        let Some(code) = code else { return };
                        if act.watched(&id, token).and_then(Option::take).is_some() {
                            let status = ExitStatus {
                                code,
                                exited_at_ns: now_ns(),
                            };
                            act.process_exited(&id, status, ctx);
                        }
                    }),
            );
        }
        if let Some(rx) = watch.shim_exited {
            let id = process_id.to_string();
            ctx.spawn(
                rx.into_actor(self)
                    .map(move |_, act, ctx| act.shim_died(id, token, ctx)),
            );
        }
        process
    }

    /// The slot's process if it is still the one watched under `token`.
    fn watched(&mut self, process_id: &str, token: u32) -> Option<&mut Option<Process>> {
        let slot = if process_id == INIT_PROCESS {
            &mut self.init
        } else {
            self.execs.get_mut(process_id)?
        };
        slot.process
            .as_ref()
            .is_some_and(|p| p.token == token)
            .then_some(&mut slot.process)
    }

    /// The shim is dead (reaper or pidfd): the fifo's hangup, if it is watched, has the
    /// exit code, so it gets a moment to be read first.
    fn shim_died(&mut self, process_id: String, token: u32, ctx: &mut Context<Self>) {
        let fifo_watched = match self.watched(&process_id, token) {
            Some(Some(p)) => p.fifo_watched,
            _ => return,
        };
        if fifo_watched {
            ctx.run_later(FIFO_GRACE, move |act, ctx| {
                act.process_gone(&process_id, token, &[], ctx)
            });
        } else {
            self.process_gone(&process_id, token, &[], ctx);
        }
    }

    /// Called once the shim is gone, whichever way we learnt it first; later word on the
    /// same shim finds the process gone from its slot and does nothing.
    fn process_gone(
        &mut self,
        process_id: &str,
        token: u32,
        message: &[u8],
        ctx: &mut Context<Self>,
    ) {
        let Some(process) = self.watched(process_id, token).and_then(Option::take) else {
            return;
        };
        let status = process.exit_status(&self.dir.process(process_id), process_id, message);
        self.process_exited(process_id, status, ctx);
    }

    fn process_exited(&mut self, process_id: &str, status: ExitStatus, ctx: &mut Context<Self>) {
        if process_id == INIT_PROCESS {
            self.init.exit = Some(status);
            // A checkpoint with --exit may have stopped it already, and says so.
            if self.life.phase != Phase::Checkpointed {
                let cause = if self.record.stopped_by_user {
                    StopCause::ByUser
                } else {
                    StopCause::Exited
                };
                // The summary goes with the exit's event, or below.
                self.transition(Phase::Stopped(cause));
            }
            let step = self.gate.init_exited(status);
            let publishing = matches!(step, Step::Publish(_));
            self.settle(step, ctx);
            // Its exit is listed even while the gate holds its event back.
            if !publishing {
                self.push_summary();
            }
            return;
        }
        let pid = match self.execs.get_mut(process_id) {
            Some(slot) => {
                slot.exit = Some(status);
                slot.pid
            }
            None => return,
        };
        self.emit_exit(process_id, pid, status);
        // Waiters hear of the exit after its event is out, as for the init process.
        if let Some(slot) = self.execs.get_mut(process_id) {
            slot.resolve_waiters();
        }
        let step = self.gate.exec_ended(process_id);
        self.settle(step, ctx);
    }
}
