//! The server's stdio streams: `Attach` (output out, `AttachInput` in) and `Logs`.

use super::protocol::*;
use super::server::reply;
use crate::error::Error;
use crate::types::*;
use crate::Handle;
use tokio::sync::mpsc;

/// One `AttachInput` frame, routed to its attach.
pub(super) struct StdinChunk {
    pub(super) data: Vec<u8>,
    pub(super) close: bool,
}

fn frame(id: u64, reply: Reply) -> ServerFrame {
    ServerFrame { id, reply }
}

/// Serves one attach: its output and exit to the client; its input (if any) to the
/// process, from a task of its own so a process that does not read never holds output up.
pub(super) async fn stream_attach(
    handle: Handle,
    id: u64,
    req: AttachRequest,
    input: Option<mpsc::Receiver<StdinChunk>>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    match handle.attach(req).await {
        Ok(attachment) => {
            copy_attachment(attachment, id, input, &tx).await;
        }
        Err(e) => {
            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
        }
    }
}

/// How [`copy_attachment`] ended.
enum Copied {
    /// The exit was sent: the output before it is complete.
    Exited,
    /// The attach failed (its error was sent).
    Failed,
    /// The client is gone.
    Gone,
}

/// Sends an attachment's output, then its exit (or its error), under frame `id`; writes
/// the client's input (if any) to the process from a task of its own.
async fn copy_attachment(
    mut attachment: crate::handle::Attachment,
    id: u64,
    input: Option<mpsc::Receiver<StdinChunk>>,
    tx: &mpsc::Sender<Vec<u8>>,
) -> Copied {
    let stdin = match (attachment.take_stdin(), input) {
        (Some(mut stdin), Some(mut input)) => {
            let tx = tx.clone();
            Some(actix_rt::spawn(async move {
                while let Some(chunk) = input.recv().await {
                    if !chunk.data.is_empty() {
                        if let Err(e) = stdin.write(&chunk.data).await {
                            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
                            return;
                        }
                    }
                    if chunk.close {
                        if let Err(e) = stdin.close().await {
                            tracing::debug!("attach {id}: close stdin: {e}");
                        }
                        return;
                    }
                }
            }))
        }
        _ => None,
    };
    let copied = loop {
        let (ended, reply_) = match attachment.next().await {
            Some(Ok(AttachItem::Output { stderr, data })) => (None, Reply::Output { stderr, data }),
            Some(Ok(AttachItem::Exit(exit))) => (Some(Copied::Exited), Reply::Exit(exit)),
            Some(Err(e)) => (Some(Copied::Failed), Reply::Error(e)),
            None => (
                Some(Copied::Failed),
                Reply::Error(Error::Internal("the attach ended without the exit".into())),
            ),
        };
        if !reply(tx, frame(id, reply_)).await {
            break Copied::Gone;
        }
        if let Some(ended) = ended {
            break ended;
        }
    };
    if let Some(task) = stdin {
        task.abort();
    }
    copied
}

/// Serves one `Run`: creates and starts the container (`Container`), copies its init's
/// output and exit as an attach from its launch does, and with `remove` deletes it after
/// the exit (`Container`, its last state, or the delete's `Error`, last). A client that
/// leaves before the exit (or detaches) leaves it running, as after an `Attach`.
pub(super) async fn stream_run(
    handle: Handle,
    id: u64,
    req: RunRequest,
    input: Option<mpsc::Receiver<StdinChunk>>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let RunRequest {
        mut create,
        stdin,
        remove,
    } = req;
    create.start = true;
    let (namespace, cid) = (create.namespace.clone(), create.id.clone());
    // A failed create leaves nothing behind (the Supervisor and the image service undo
    // their parts): there is nothing to delete.
    let created = if remove {
        handle.create_removable(create).await
    } else {
        handle.create(create).await
    };
    let info = match created {
        Ok(info) => info,
        Err(e) => {
            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
            return;
        }
    };
    if !reply(&tx, frame(id, Reply::Container(info))).await {
        return;
    }
    let attach = AttachRequest {
        namespace: namespace.clone(),
        id: cid.clone(),
        exec_id: None,
        stdin,
        from: AttachFrom::Launch,
    };
    let copied = match handle.attach(attach).await {
        Ok(attachment) => copy_attachment(attachment, id, input, &tx).await,
        Err(e) => {
            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
            Copied::Failed
        }
    };
    if !remove {
        return;
    }
    // The delete runs on a task of its own: this one is aborted if the client leaves,
    // and a delete cut in half would leave an image container's record and snapshot.
    let deleted = match copied {
        Copied::Exited => {
            let handle = handle.clone();
            actix_rt::spawn(async move { handle.delete(&namespace, &cid, false).await })
        }
        Copied::Failed => {
            // As `run --rm` always did after a failed attach: killed if it runs, deleted.
            let handle = handle.clone();
            actix_rt::spawn(async move {
                let deleted = handle.delete(&namespace, &cid, true).await;
                if let Err(e) = &deleted {
                    if !matches!(e, Error::NotFound(_)) {
                        tracing::warn!("run --rm of {namespace}/{cid}: delete: {e}");
                    }
                }
                deleted
            });
            return;
        }
        Copied::Gone => return,
    };
    let last = match deleted.await {
        Ok(Ok(info)) => Reply::Container(info),
        Ok(Err(e)) => Reply::Error(e),
        Err(e) => Reply::Error(Error::Internal(format!("the delete's task failed: {e}"))),
    };
    let _ = reply(&tx, frame(id, last)).await;
}

/// Serves one `Logs`: batches of entries, then `Ok`.
pub(super) async fn stream_logs(
    handle: Handle,
    id: u64,
    req: LogsRequest,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let mut logs = match handle.logs(req).await {
        Ok(l) => l,
        Err(e) => {
            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
            return;
        }
    };
    while let Some(batch) = logs.next().await {
        let (last, reply_) = match batch {
            Ok(entries) => (false, Reply::LogEntries(entries)),
            Err(e) => (true, Reply::Error(e)),
        };
        if !reply(&tx, frame(id, reply_)).await || last {
            return;
        }
    }
    let _ = reply(&tx, frame(id, Reply::Ok)).await;
}
