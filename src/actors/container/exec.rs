//! `Exec`: another process in a running container, through its own shim
//! (`runtime exec --detach`). `/tasks/exec-added` comes before the launch and
//! `/tasks/exec-started` after it; a failed launch leaves no trace but its error.

use super::state::Verb;
use super::{Container, ProcessSlot};
use crate::error::{Error, Result};
use crate::layout::write_atomic;
use crate::shim::Mode;
use crate::types::*;
use actix::prelude::*;

/// Runs another process in the container.
#[derive(Message)]
#[rtype(result = "Result<ProcessInfo>")]
pub struct Exec {
    /// Its id.
    pub exec_id: String,
    /// What to run.
    pub process: ExecProcess,
    /// Its stdio.
    pub stdio: Stdio,
}

/// The exec's `process.json`: a validated OCI process, or the bundle's process with `args`.
fn process_spec_json(bundle: &std::path::Path, process: ExecProcess) -> Result<String> {
    match process {
        ExecProcess::SpecJson(json) => {
            serde_json::from_str::<oci_spec::runtime::Process>(&json).map_err(|e| {
                Error::InvalidArgument(format!("exec process spec is not a valid OCI process: {e}"))
            })?;
            Ok(json)
        }
        ExecProcess::Args(args) => {
            if args.is_empty() {
                return Err(Error::InvalidArgument(
                    "exec needs a command to run".to_string(),
                ));
            }
            let spec = crate::bundle::load_spec(bundle)?;
            let mut process = spec.process().clone().unwrap_or_default();
            process.set_args(Some(args));
            process.set_terminal(Some(false));
            serde_json::to_string(&process)
                .map_err(|e| Error::Internal(format!("encode process.json: {e}")))
        }
    }
}

impl Container {
    /// Checks an exec request and writes its process dir.
    fn prepare_exec(&self, msg: &mut Exec) -> Result<crate::layout::ShimDir> {
        validate_id("exec id", &msg.exec_id)?;
        msg.stdio.check_absolute("exec ")?;
        // Process dirs sit beside state.json and corral's own config.json.
        let dir = self.dir.process(&msg.exec_id);
        if dir.path().exists() && !dir.path().is_dir() {
            return Err(Error::InvalidArgument(format!(
                "exec id {:?} is the name of a file in the container's state directory",
                msg.exec_id
            )));
        }
        if msg.exec_id == INIT_PROCESS {
            return Err(Error::InvalidArgument(format!(
                "exec id {INIT_PROCESS:?} is reserved for the container's own process"
            )));
        }
        self.guard(Verb::Exec)?;
        if self.execs.contains_key(&msg.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {:?} in container {}",
                msg.exec_id,
                self.key()
            )));
        }
        let process = std::mem::replace(&mut msg.process, ExecProcess::Args(Vec::new()));
        let json = process_spec_json(&self.record.bundle, process)?;
        crate::launch::prepare_dir(&dir)?;
        write_atomic(&dir.process_json(), json.as_bytes())
            .map_err(|e| Error::io("write process.json", e))?;
        Ok(dir)
    }
}

impl Handler<Exec> for Container {
    type Result = ResponseActFuture<Self, Result<ProcessInfo>>;

    fn handle(&mut self, mut msg: Exec, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        let dir = match self.prepare_exec(&mut msg) {
            Ok(dir) => dir,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let exec_id = msg.exec_id;
        self.execs.insert(exec_id.clone(), ProcessSlot::default());
        self.gate.exec_added(&exec_id);
        self.emit(Topic::TaskExecAdded, &exec_id, 0).send();
        let args = self.shim_args(Mode::Exec, &msg.stdio);
        let launched = self
            .env
            .runtime
            .launch(dir.clone(), args, self.env.shim_timeout);
        let work = async move {
            let result = launched.await.map_err(Error::from);
            if result.is_err() {
                let _ = std::fs::remove_dir_all(dir.path());
            }
            result
        };
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(shim) => {
                        let pid = shim.pid as u32;
                        let addr = act.watch(&exec_id, shim, ctx);
                        let slot = act.execs.entry(exec_id.clone()).or_default();
                        slot.pid = pid;
                        slot.addr = Some(addr);
                        act.emit(Topic::TaskExecStarted, &exec_id, pid).send();
                        let info = act.execs[&exec_id].info(&exec_id);
                        let step = act.gate.exec_launched();
                        act.settle(step, ctx);
                        Ok(info)
                    }
                    Err(e) => {
                        act.execs.remove(&exec_id);
                        let step = act.gate.exec_ended(&exec_id);
                        act.settle(step, ctx);
                        Err(e)
                    }
                }),
        )
    }
}
