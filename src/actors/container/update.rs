//! `Update`: `runtime update --<flag>=<value>... ID` on a created, running or paused
//! container. A refusal names the seed field (`Memory`, `CPUQuota`, ...) the runtime's
//! message points at. The kernel memory limits are written by corral itself (runc 1.1
//! ignores them) and read back.

use super::state::Verb;
use super::Container;
use crate::error::{Error, Result};
use crate::runtime::RuntimeError;
use crate::types::*;
use actix::prelude::*;

/// Changes resource limits (runtime `update`).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Update(pub Resources);

/// One field to change: its seed name, the runtime's flag and the value.
type Field = (&'static str, &'static str, String);

/// The client's error for a refused update: the field the runtime's text points at (by
/// cgroup file or wording), else the only field given, else all of them.
pub(super) fn refusal(id: &str, fields: &[Field], err: RuntimeError) -> Error {
    let Some(stderr) = err.stderr().map(str::to_string) else {
        return err.into();
    };
    if matches!(err, RuntimeError::Launch(_)) {
        return err.into();
    }
    let field = resource_field_of(&stderr)
        .or_else(|| (fields.len() == 1).then(|| fields[0].0))
        .map(str::to_string)
        .unwrap_or_else(|| fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", "));
    Error::InvalidArgument(format!(
        "update of container {id}: {field} refused: {stderr}"
    ))
}

impl Handler<Update> for Container {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, Update(resources): Update, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(Update(resources), ctx);
        }
        let fields = resources.fields();
        let refuse = if fields.is_empty() {
            Err(Error::InvalidArgument(
                "update needs at least one resource to change".into(),
            ))
        } else {
            self.guard(Verb::Update)
        };
        if let Err(e) = refuse {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        // runc 1.1 ignores the kernel memory limits (with a warning): corral writes those
        // cgroup files itself and reads them back.
        let (kernel, fields): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .partition(|(name, _, _)| name.starts_with("Kernel"));
        let memory_dir = crate::cgroups::host().dir("memory", self.record.cgroups.get("memory"));
        let v2 = matches!(crate::cgroups::host(), crate::cgroups::Hierarchy::V2 { .. });
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        Box::pin(
            async move {
                for (name, _, value) in &kernel {
                    crate::cgroups::set_kernel_memory(&memory_dir, v2, name, value).map_err(
                        |why| {
                            Error::InvalidArgument(format!(
                                "update of container {id}: {name} refused: {why}"
                            ))
                        },
                    )?;
                }
                if fields.is_empty() {
                    return Ok(());
                }
                let flags = fields
                    .iter()
                    .map(|(_, flag, value)| format!("{flag}={value}"))
                    .collect();
                runtime
                    .update(&id, flags)
                    .await
                    .map_err(|e| refusal(&id, &fields, e))
            }
            .into_actor(self),
        )
    }
}
