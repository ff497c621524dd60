//! Container records and their tasks on the server side: one answer each.

use super::protocol::*;
use crate::error::{Error, Result};
use crate::Handle;

/// `ContainerCreate` ... `TaskDelete`.
pub(super) async fn dispatch(handle: &Handle, request: Request) -> Result<Reply> {
    let one = |r: crate::types::ContainerMeta| Reply::ContainerMeta(Box::new(r));
    match request {
        Request::ContainerCreate(req) => handle.create_container(*req).await.map(one),
        Request::ContainerList { namespace, labels } => handle
            .containers(&namespace, labels)
            .await
            .map(Reply::ContainerMetas),
        Request::ContainerGet { namespace, id } => {
            handle.container_record(&namespace, &id).await.map(one)
        }
        Request::ContainerUpdate(req) => handle.update_container(req).await.map(one),
        Request::ContainerRemove { namespace, id } => {
            handle.remove_container(&namespace, &id).await.map(one)
        }
        Request::TaskStart(req) => handle.start_task(req).await.map(Reply::Container),
        Request::TaskDelete {
            namespace,
            id,
            force,
        } => handle
            .delete_task(&namespace, &id, force)
            .await
            .map(Reply::Container),
        other => Err(Error::Internal(format!(
            "request {} has no handler",
            other.kind()
        ))),
    }
}
