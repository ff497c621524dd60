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
/// Its `terminal` is the request's: runc refuses a console socket without it.
fn process_spec_json(
    bundle: &std::path::Path,
    process: ExecProcess,
    stdio: &Stdio,
) -> Result<String> {
    let terminal = stdio.terminal;
    let size = stdio
        .console_size
        .filter(|_| terminal)
        .map(crate::bundle::console_box);
    match process {
        ExecProcess::SpecJson(json) => {
            let mut process =
                serde_json::from_str::<oci_spec::runtime::Process>(&json).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "exec process spec is not a valid OCI process: {e}"
                    ))
                })?;
            if process.terminal().unwrap_or(false) == terminal && size.is_none() {
                return Ok(json);
            }
            process.set_terminal(Some(terminal));
            if size.is_some() {
                process.set_console_size(size);
            }
            serde_json::to_string(&process)
                .map_err(|e| Error::Internal(format!("encode process.json: {e}")))
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
            process.set_terminal(Some(terminal));
            process.set_console_size(size);
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
        let json = process_spec_json(&self.record.bundle, process, &msg.stdio)?;
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
        let (args, mut io) = self.shim_args(Mode::Exec, &exec_id, &msg.stdio);
        if let Err(e) = io.prepare(&dir) {
            let _ = std::fs::remove_dir_all(dir.path());
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let log = io.log.clone();
        self.execs.insert(
            exec_id.clone(),
            ProcessSlot {
                io,
                ..ProcessSlot::default()
            },
        );
        self.gate.exec_added(&exec_id);
        self.emit(Topic::TaskExecAdded, &exec_id, 0).send();
        let launched = self
            .env
            .runtime
            .launch(dir.clone(), args, self.env.shim_timeout);
        let work = async move {
            let result = launched.await.map_err(Error::from);
            if result.is_err() {
                let _ = std::fs::remove_dir_all(dir.path());
                if let Some(log) = log {
                    crate::logs::remove_files(&log);
                }
            }
            result
        };
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(shim) => {
                        let pid = shim.pid as u32;
                        let process = act.watch(&exec_id, shim, ctx);
                        let slot = act.execs.entry(exec_id.clone()).or_default();
                        slot.pid = pid;
                        slot.process = Some(process);
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
                        act.push_summary();
                        Err(e)
                    }
                }),
        )
    }
}

/// Removes an exited exec: its record, its directory and its log; its id is free again.
/// Publishes `/tasks/delete` with the exec's id as the process (containerd's
/// `DeleteProcess`).
#[derive(Message)]
#[rtype(result = "Result<ProcessInfo>")]
pub struct RemoveExec {
    /// The exec.
    pub exec_id: String,
}

impl Handler<RemoveExec> for Container {
    type Result = ResponseActFuture<Self, Result<ProcessInfo>>;

    fn handle(&mut self, msg: RemoveExec, _: &mut Context<Self>) -> Self::Result {
        let checked = self
            .slot(Some(&msg.exec_id))
            .and_then(|slot| match slot.exit {
                Some(exit) => Ok((exit, slot.pid, slot.io.log.clone())),
                None => Err(Error::WrongState(format!(
                    "exec {:?} of container {} is {}: kill it or wait for it first",
                    msg.exec_id,
                    self.key(),
                    if slot.pid == 0 { "starting" } else { "running" }
                ))),
            });
        let (exit, pid, log) = match checked {
            Ok(parts) => parts,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // The slot stays until its files are gone: an exec of the same id meanwhile is
        // refused, never removed with them.
        let dir = self.dir.process(&msg.exec_id);
        let work = async move {
            super::delete::remove_dir_settled(dir.path()).await;
            if let Some(log) = log {
                crate::logs::remove_files(&log);
            }
        };
        let exec_id = msg.exec_id;
        Box::pin(work.into_actor(self).map(move |(), act, _| {
            let slot = act.execs.remove(&exec_id);
            act.emit(Topic::TaskDelete, &exec_id, pid).exit(exit).send();
            slot.map(|s| s.info(&exec_id)).ok_or_else(|| {
                Error::NotFound(format!("exec {exec_id:?} in container {}", act.key()))
            })
        }))
    }
}
