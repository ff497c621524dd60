//! The image service's requests on the server side: pull and push as streams, the rest as
//! one answer each.

use super::protocol::*;
use super::server::reply;
use crate::error::{Error, Result};
use crate::Handle;
use std::time::Instant;
use tokio::sync::mpsc;

/// A pull or a push: its progress as it happens, then its answer. The transfer runs on the
/// image service and goes on if this client goes away.
pub(super) async fn stream_transfer(
    handle: Handle,
    id: u64,
    request: Request,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let kind = request.kind();
    let started = Instant::now();
    let (progress, mut heard) = mpsc::unbounded_channel();
    let images = handle.images().clone();
    let job = actix_rt::spawn(async move {
        match request {
            Request::ImagePull(req) => images.pull(req, Some(progress)).await.map(Reply::Image),
            Request::ImagePush(req) => images
                .push(req, Some(progress))
                .await
                .map(Reply::Descriptor),
            Request::CheckpointPush(req) => handle
                .push_checkpoint(req, Some(progress))
                .await
                .map(Reply::Descriptor),
            Request::CheckpointPull(req) => handle
                .pull_checkpoint(req, Some(progress))
                .await
                .map(Reply::Checkpoint),
            _ => Err(Error::Internal("not a transfer".into())),
        }
    });
    while let Some(p) = heard.recv().await {
        if !reply(
            &tx,
            ServerFrame {
                id,
                reply: Reply::Progress(p),
            },
        )
        .await
        {
            return;
        }
    }
    let reply = match job.await {
        Ok(r) => r.unwrap_or_else(Reply::Error),
        Err(e) => Reply::Error(Error::Internal(format!("{kind} failed: {e}"))),
    };
    let error = match &reply {
        Reply::Error(e) => Some(e),
        _ => None,
    };
    crate::metrics::rpc().observe(kind, started.elapsed(), error);
    let _ = self::reply(&tx, ServerFrame { id, reply }).await;
}

/// The image service's requests that are not streams.
pub(super) async fn dispatch(handle: &Handle, request: Request) -> Result<Reply> {
    let images = handle.images();
    match request {
        Request::ImageList { namespace } => images.list(&namespace).await.map(Reply::Images),
        Request::ImageInspect {
            namespace,
            name,
            platform,
        } => images
            .inspect(&namespace, &name, platform)
            .await
            .map(|d| Reply::ImageDetail(Box::new(d))),
        Request::ImageRemove {
            namespace,
            names,
            no_gc,
        } => images
            .remove(&namespace, names, no_gc)
            .await
            .map(|()| Reply::Ok),
        Request::ImageTag {
            namespace,
            source,
            target,
            force,
        } => images
            .tag(&namespace, &source, &target, force)
            .await
            .map(Reply::Image),
        Request::ImageImport(req) => images.import(req).await.map(Reply::Images),
        Request::ImageExport(req) => images.export(req).await.map(Reply::Size),
        Request::ContentList => images.content_list().await.map(Reply::Contents),
        Request::ContentInfo { digest } => images.content_info(&digest).await.map(Reply::Content),
        Request::ContentIngests => images.ingests().await.map(Reply::Ingests),
        Request::ContentRemove { digests } => {
            images.content_remove(digests).await.map(|()| Reply::Ok)
        }
        Request::LeaseCreate {
            namespace,
            id,
            labels,
            expires_secs,
        } => images
            .lease_create(
                &namespace,
                &id,
                labels,
                expires_secs.map(std::time::Duration::from_secs),
            )
            .await
            .map(Reply::Lease),
        Request::LeaseList { namespace } => images.lease_list(&namespace).await.map(Reply::Leases),
        Request::LeaseRemove {
            namespace,
            id,
            no_gc,
        } => images
            .lease_remove(&namespace, &id, no_gc)
            .await
            .map(|()| Reply::Ok),
        Request::Prune => images.prune().await.map(Reply::Pruned),
        Request::NamespaceCreate { name, labels } => images
            .namespace_create(&name, labels)
            .await
            .map(Reply::Namespace),
        Request::NamespaceList => handle.namespaces().await.map(Reply::Namespaces),
        Request::NamespaceLabel { name, labels } => images
            .namespace_label(&name, labels)
            .await
            .map(Reply::Namespace),
        Request::NamespaceRemove { name } => {
            handle.remove_namespace(&name).await.map(|()| Reply::Ok)
        }
        other => Err(Error::Internal(format!(
            "request {} has no handler",
            other.kind()
        ))),
    }
}
