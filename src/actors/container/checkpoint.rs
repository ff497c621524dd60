//! `Checkpoint`: `runtime checkpoint` (CRIU) of a running container into the checkpoint
//! store, `/tasks/checkpointed` on success. With `exit` the dump stops the container: its
//! exit waits for `/tasks/checkpointed`, it counts as a user's stop, and no policy
//! restarts it. A failed dump quotes CRIU's own error lines and the container runs on.
//!
//! A container run from an image also has its writable layer (the snapshot's upper dir, or
//! a native snapshot's changes against its image) written into the checkpoint as an OCI layer, after the dump: with `exit` its processes
//! are gone by then, so the files match the memory state the dump saw.

use super::exit_gate::Hold;
use super::state::{Operation, Phase, StopCause, Verb};
use super::Container;
use crate::checkpoint::{BaseImage, CheckpointInfo, CheckpointOptions, CheckpointStore};
use crate::error::{Error, Result};
use crate::layout::write_atomic;
use crate::runtime::{CheckpointCall, RuntimeError};
use crate::snapshots::diff::Writable;
use crate::types::*;
use actix::prelude::*;
use std::path::{Path, PathBuf};

/// Takes a checkpoint of the running container.
#[derive(Message)]
#[rtype(result = "Result<CheckpointInfo>")]
pub struct Checkpoint {
    /// Its name.
    pub name: String,
    /// Its options.
    pub options: CheckpointOptions,
    /// Where checkpoints are kept.
    pub store: CheckpointStore,
    /// For a container run from an image: its writable layer and its image.
    pub rootfs: Option<(Writable, BaseImage)>,
}

impl Container {
    /// Checks the request and makes the checkpoint's directory with the container's spec.
    fn prepare_checkpoint(&self, msg: &Checkpoint) -> Result<PathBuf> {
        self.guard(Verb::Checkpoint)?;
        crate::checkpoint::check_criu(&self.env.criu)?;
        let dir = msg
            .store
            .dir(&self.record.namespace, &self.record.id, &msg.name)?;
        if dir.exists() {
            return Err(Error::AlreadyExists(format!(
                "checkpoint {:?} of container {}",
                msg.name,
                self.key()
            )));
        }
        let spec = crate::layout::bundle_config(&self.record.bundle);
        std::fs::create_dir_all(crate::layout::checkpoint_images(&dir))
            .and_then(|()| std::fs::copy(spec, crate::layout::checkpoint_spec(&dir)))
            .map_err(|e| Error::io(format!("prepare {}", dir.display()), e))?;
        Ok(dir)
    }
}

/// A failed dump: the checkpoint dir goes, and CRIU's error lines (its log went with the
/// dir) are quoted instead of runc's pointer to that log.
fn failed_dump(dir: &Path, e: Error) -> Error {
    let criu = crate::checkpoint::criu_errors(&crate::layout::checkpoint_work(dir));
    let _ = std::fs::remove_dir_all(dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    match e {
        Error::RuntimeFailed { op, id, stderr } => {
            let kept: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("log file:"))
                .collect();
            let kept = kept.join("\n");
            let stderr = if criu.is_empty() {
                kept
            } else {
                format!("{kept}\nCRIU said:\n{criu}")
            };
            Error::RuntimeFailed { op, id, stderr }
        }
        other => other,
    }
}

/// After the dump: a failed one cleaned up (see [`failed_dump`]), else the writable
/// layer written into the checkpoint (if the container runs from an image).
async fn written_layer(
    dumped: std::result::Result<(), RuntimeError>,
    runtime: &std::sync::Arc<dyn crate::runtime::OciRuntime>,
    id: &str,
    dir: &Path,
    upper: Option<Writable>,
) -> Result<Option<Descriptor>> {
    match dumped {
        Ok(()) => {}
        Err(e @ RuntimeError::Timeout { .. }) => {
            // The runtime and CRIU were killed (their whole process group) mid-dump: a
            // cgroup CRIU froze stays frozen, so thaw it; the container runs on.
            match runtime.resume(id).await {
                Ok(()) | Err(RuntimeError::NotPaused { .. }) => {}
                Err(thaw) => tracing::warn!("{id}: thaw after a timed-out dump: {thaw}"),
            }
            return Err(failed_dump(dir, e.into()));
        }
        Err(e) => return Err(failed_dump(dir, e.into())),
    }
    let Some(upper) = upper else {
        return Ok(None);
    };
    let out = crate::checkpoint::rw_layer_path(dir);
    let written = actix_rt::task::spawn_blocking(move || upper.write_diff(&out))
        .await
        .map_err(|e| Error::Internal(format!("write the writable layer: {e}")))
        .and_then(|r| r);
    match written {
        Ok(desc) => Ok(Some(desc)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(dir);
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
            Err(e.context("checkpoint the writable layer"))
        }
    }
}

impl Handler<Checkpoint> for Container {
    type Result = ResponseActFuture<Self, Result<CheckpointInfo>>;

    fn handle(&mut self, msg: Checkpoint, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        let dir = match self.prepare_checkpoint(&msg) {
            Ok(dir) => dir,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let info = CheckpointInfo {
            name: msg.name.clone(),
            namespace: self.record.namespace.clone(),
            container_id: self.record.id.clone(),
            created_ns: now_ns(),
            options: msg.options.clone(),
            bundle: self.record.bundle.clone(),
            size: 0,
            labels: self.record.labels.clone(),
            restart: self.record.restart,
            base_image: msg.rootfs.as_ref().map(|(_, base)| base.clone()),
            rw_layer: None,
            stdio: Stdio {
                stdin: None,
                stdout: None,
                stderr: None,
                ..self.record.stdio.clone()
            },
        };
        let upper = msg.rootfs.map(|(upper, _)| upper);
        let exit = msg.options.exit;
        let was_stopped_by_user = self.record.stopped_by_user;
        self.set_op(Operation::Checkpointing { exit });
        if exit {
            // The dump stops the container: a user's doing, not a failure to restart from.
            self.record.stopped_by_user = true;
            self.save_record();
            self.gate.hold(Hold::Checkpoint);
        }
        let call = CheckpointCall {
            criu: self.env.criu.clone(),
            image_path: crate::layout::checkpoint_images(&dir),
            work_path: crate::layout::checkpoint_work(&dir),
            leave_running: !exit,
            flags: msg.options.runtime_flags(),
        };
        let runtime = self.env.runtime.clone();
        // A container that runs on after the dump is frozen from before it until its
        // writable layer is written (as containerd does), so the files match the memory.
        let freeze = upper.is_some() && !exit;
        let id = self.record.id.clone();
        let store = msg.store;
        let work = async move {
            if freeze {
                if let Err(e) = runtime.pause(&id).await {
                    return Err(failed_dump(&dir, e.into()));
                }
            }
            let dumped = runtime.checkpoint(&id, call).await;
            let written = written_layer(dumped, &runtime, &id, &dir, upper).await;
            if freeze {
                match runtime.resume(&id).await {
                    // A timed-out dump was thawed already.
                    Ok(()) | Err(RuntimeError::NotPaused { .. }) => {}
                    Err(e) => tracing::warn!("{id}: resume after the checkpoint: {e}"),
                }
            }
            let mut info = info;
            info.rw_layer = written?;
            let json =
                serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
            write_atomic(&crate::layout::checkpoint_json(&dir), &json)
                .map_err(|e| Error::io("write checkpoint.json", e))?;
            store.get(&info.namespace, &info.container_id, &info.name)
        };
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            act.set_op(Operation::Idle);
            match &result {
                Ok(info) => {
                    if exit {
                        act.become_(Phase::Checkpointed);
                        act.record.exited_by_checkpoint = true;
                        act.save_record();
                    }
                    act.emit(Topic::TaskCheckpointed, INIT_PROCESS, act.init.pid)
                        .checkpoint(&info.name)
                        .send();
                }
                Err(_) if act.record.stopped_by_user != was_stopped_by_user => {
                    // The dump failed and the container still runs: it was not stopped.
                    act.record.stopped_by_user = was_stopped_by_user;
                    act.save_record();
                    if act.life.phase == Phase::Stopped(StopCause::ByUser) {
                        act.become_(Phase::Stopped(StopCause::Exited));
                    }
                }
                Err(_) => {}
            }
            if exit {
                // The exit the dump caused (if seen already) comes after /tasks/checkpointed.
                let step = act.gate.release(Hold::Checkpoint);
                act.settle(step, ctx);
            }
            result
        }))
    }
}
