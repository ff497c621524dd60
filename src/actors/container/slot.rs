//! One process of a container (init or an exec) as its Container sees it: the Process actor
//! watching it, its pid, its exit, and the waiters for that exit.

use super::Process;
use crate::types::{ExitStatus, ProcessInfo, Status};
use actix::Addr;
use tokio::sync::oneshot;

/// One process of the container (init or an exec) as the container sees it.
#[derive(Default)]
pub(super) struct ProcessSlot {
    pub(super) addr: Option<Addr<Process>>,
    pub(super) pid: u32,
    pub(super) exit: Option<ExitStatus>,
    pub(super) waiters: Vec<oneshot::Sender<ExitStatus>>,
}

impl ProcessSlot {
    pub(super) fn info(&self, id: &str) -> ProcessInfo {
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

    pub(super) fn resolve_waiters(&mut self) {
        if let Some(exit) = self.exit {
            for w in self.waiters.drain(..) {
                let _ = w.send(exit);
            }
        }
    }
}
