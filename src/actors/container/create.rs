//! `Init`: writes the record (and corral's own runtime config), then creates the init
//! process through its shim: `create`, `run` when starting at once, or `restore`.

use super::delete::remove_everything;
use super::state::{Phase, Verb};
use super::{restore, Container, RestoreFrom};
use crate::error::{Error, Result};
use crate::shim::Mode;
use crate::types::*;
use actix::prelude::*;

/// Creates the container through its shim (and starts it when `start`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Init {
    /// `runc run --detach` instead of `runc create`.
    pub start: bool,
    /// Restore from this checkpoint (`runc restore --detach`) instead.
    pub restore: Option<RestoreFrom>,
    /// The runtime's config.json to write into the container's directory, if corral makes
    /// its own (then `runtime_bundle` is that directory).
    pub runtime_spec: Option<oci_spec::runtime::Spec>,
}

impl Handler<Init> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Init, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.guard(Verb::Init) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        self.become_(Phase::Creating);
        let start = msg.start || msg.restore.is_some();
        let mode = match (&msg.restore, start) {
            (Some(_), _) => Mode::Restore,
            (None, true) => Mode::Run,
            (None, false) => Mode::Create,
        };
        let init_dir = self.dir.process(INIT_PROCESS);
        let (mut args, mut io) = self.shim_args(mode, INIT_PROCESS, &self.record.stdio);
        if let Some(from) = &msg.restore {
            restore::add_args(&mut args, from, &self.env.criu, &init_dir);
        }
        let runtime = self.env.runtime.clone();
        let timeout = self.env.shim_timeout;
        let dir = self.dir.clone();
        let record = self.record.clone();
        let runtime_spec = msg.runtime_spec;
        let restoring = msg.restore.is_some();
        let log_dir = self.log_dir();
        let work = async move {
            let result = async {
                std::fs::create_dir_all(dir.path())
                    .map_err(|e| Error::io(format!("create {}", dir.path().display()), e))?;
                record.save(&dir)?;
                if let Some(spec) = &runtime_spec {
                    let config = dir.runtime_config();
                    spec.save(&config)
                        .map_err(|e| Error::Internal(format!("write {}: {e}", config.display())))?;
                }
                io.prepare(&init_dir)?;
                let shim = runtime
                    .launch(init_dir.clone(), args, timeout)
                    .await
                    .map_err(Error::from)?;
                Ok((shim, io))
            }
            .await;
            let result = match result {
                Err(e) if restoring => Err(restore::with_criu_errors(e, &init_dir)),
                other => other,
            };
            if result.is_err() {
                remove_everything(runtime, record.id.clone(), dir, record.cgroups.clone()).await;
                let _ = std::fs::remove_dir_all(&log_dir);
            }
            result
        };
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok((shim, io)) => {
                        act.init.pid = shim.pid as u32;
                        act.init.io = io;
                        act.init.process = Some(act.watch(INIT_PROCESS, shim, ctx));
                        act.become_(if start {
                            Phase::Running
                        } else {
                            Phase::Created
                        });
                        act.started_at_ns = now_ns();
                        act.emit(Topic::TaskCreate, INIT_PROCESS, act.init.pid)
                            .send();
                        if start {
                            act.emit(Topic::TaskStart, INIT_PROCESS, act.init.pid)
                                .send();
                        }
                        // After create and start: an OOM kill already counted comes after them.
                        act.watch_oom(true, ctx);
                        Ok(act.info())
                    }
                    Err(e) => {
                        act.become_(Phase::Deleted);
                        ctx.stop();
                        Err(e)
                    }
                }),
        )
    }
}
