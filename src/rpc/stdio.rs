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
    let mut attachment = match handle.attach(req).await {
        Ok(a) => a,
        Err(e) => {
            let _ = reply(&tx, frame(id, Reply::Error(e))).await;
            return;
        }
    };
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
    loop {
        let (last, reply_) = match attachment.next().await {
            Some(Ok(AttachItem::Output { stderr, data })) => {
                (false, Reply::Output { stderr, data })
            }
            Some(Ok(AttachItem::Exit(exit))) => (true, Reply::Exit(exit)),
            Some(Err(e)) => (true, Reply::Error(e)),
            None => (
                true,
                Reply::Error(Error::Internal("the attach ended without the exit".into())),
            ),
        };
        if !reply(&tx, frame(id, reply_)).await || last {
            break;
        }
    }
    if let Some(task) = stdin {
        task.abort();
    }
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
