//! `Delete`: a live container only with `force` (it is thawed and SIGKILLed, and its exit
//! published first: `/tasks/exit` always comes before `/tasks/delete`), then
//! `runtime delete`, the state dir and leftover cgroups go, `/tasks/delete` is published and
//! the actor stops. Also what a failed create leaves is removed here.

use super::state::{Operation, Phase, Verb};
use super::Container;
use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result};
use crate::layout::ContainerDir;
use crate::runtime::{OciRuntime, RuntimeError};
use crate::types::*;
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Deletes the container: runtime state, state dir, cgroup.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Delete {
    /// Kill it first if it is running.
    pub force: bool,
}

impl Handler<Delete> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Delete { force }: Delete, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(Delete { force }, ctx);
        }
        if let Err(e) = self.guard(Verb::Delete { force }) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        if let Operation::RestartPending(timer) = self.life.op {
            ctx.cancel_future(timer);
        }
        self.set_op(Operation::Deleting);
        // A live (or created) container is killed, and its exit published, before deletion;
        // so is one whose exit is recorded but still held back by execs still exiting.
        let frozen = self.life.is_frozen();
        if self.init.exit.is_none() && self.init.pid > 0 {
            if let Some(process) = &self.init.process {
                let _ = process.signal(INIT_PROCESS, libc::SIGKILL);
            }
        }
        let exited = if self.init.pid > 0 && !self.gate.is_published() {
            let (tx, rx) = oneshot::channel();
            self.init.waiters.push(tx);
            Some(rx)
        } else {
            None
        };
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        let dir = self.dir.clone();
        let cgroup = self.record.cgroups.clone();
        let timeout = runtime.timeout();
        let log_dir = self.log_dir();
        let work = async move {
            if frozen {
                // "not paused": the pause had not happened yet, or the kill thawed it.
                match runtime.resume(&id).await {
                    Ok(()) | Err(RuntimeError::NotPaused { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(rx) = exited {
                if tokio::time::timeout(timeout, rx).await.is_err() {
                    return Err(Error::Timeout(format!(
                        "container {id} did not exit within {timeout:?} of SIGKILL"
                    )));
                }
            }
            if let Err(e) = runtime.delete(&id, false).await {
                tracing::debug!("plain delete of {id} failed ({e}); forcing");
                runtime.delete(&id, true).await?;
            }
            remove_everything(runtime, id, dir, cgroup).await;
            // Its logs go with it (as `docker rm` does); a log still being written by a
            // stray process of an exec is removed all the same.
            if let Err(e) = std::fs::remove_dir_all(&log_dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing the logs {}: {e}", log_dir.display());
                }
            }
            Ok(())
        };
        Box::pin(work.into_actor(self).map(|result: Result<()>, act, ctx| {
            act.set_op(Operation::Idle);
            if let Err(e) = result {
                // Still here: a restart the delete cancelled is due again.
                act.consider_restart(ctx);
                return Err(e);
            }
            let mut event = act.emit(Topic::TaskDelete, INIT_PROCESS, act.init.pid);
            if let Some(exit) = act.init.exit {
                event = event.exit(exit);
            }
            event.send();
            act.become_(Phase::Deleted);
            let info = act.info();
            ctx.stop();
            Ok(info)
        }))
    }
}

/// Removes what a failed create or a delete leaves: the runtime's state, the state dir,
/// the cgroup.
pub(super) async fn remove_everything(
    runtime: Arc<dyn OciRuntime>,
    id: String,
    dir: ContainerDir,
    cgroup: CgroupPaths,
) {
    if runtime.has_state(&id) {
        if let Err(e) = runtime.delete(&id, true).await {
            tracing::warn!("cleaning up {id}: {e}");
        }
    }
    remove_dir_settled(dir.path()).await;
    crate::cgroups::remove_leftovers(&cgroup);
}

/// Removes a directory a shim may still be writing its durable exitStatus into (it tells
/// the daemon first): the directory is then not empty for a moment. Tries again for a
/// while (about two seconds) before giving up; soon at first, since the shim's write takes
/// well under a millisecond on a tmpfs and a delete right after an exit meets it.
pub(super) async fn remove_dir_settled(path: &std::path::Path) {
    const ATTEMPTS: u32 = 250;
    for attempt in 0..ATTEMPTS {
        match std::fs::remove_dir_all(path) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempt + 1 < ATTEMPTS =>
            {
                let pause = if attempt < 50 { 1 } else { 10 };
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(e) => {
                tracing::warn!("cleaning up {}: {e}", path.display());
                break;
            }
        }
    }
}
