//! The daemon's side of the RPC: accept, check the peer, handshake, then serve requests
//! concurrently on each connection. A bad frame closes that connection with a clear error;
//! the daemon itself never goes down for a client's mistake.

use super::frame::{decode, encode, read_payload, write_frame};
use super::protocol::*;
use crate::error::{Error, Result};
use crate::Handle;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Binds the socket (mode 0600), refusing if another daemon already listens on it.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::AlreadyExists(format!(
                "another corrald is listening on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    Ok(listener)
}

/// Accepts connections forever, each served on its own task.
pub async fn serve(handle: Handle, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handle = handle.clone();
                actix_rt::spawn(async move {
                    if let Err(e) = connection(handle, stream).await {
                        tracing::debug!("connection closed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn peer_allowed(stream: &UnixStream) -> Result<()> {
    let cred = stream
        .peer_cred()
        .map_err(|e| Error::io("read peer credentials", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "uid {} may not use this daemon (only root and uid {me})",
            cred.uid()
        )))
    }
}

async fn connection(handle: Handle, stream: UnixStream) -> Result<()> {
    let allowed = peer_allowed(&stream);
    let (mut reader, mut writer) = stream.into_split();
    if let Err(e) = allowed {
        let _ = write_frame(&mut writer, &error_frame(0, e.clone())).await;
        return Err(e);
    }
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(256);
    let writer_task = actix_rt::spawn(async move {
        while let Some(frame) = rx.recv().await {
            // A reply too big to encode is answered with an error, never left hanging.
            let id = frame.id;
            let bytes = match encode(&frame) {
                Ok(bytes) => bytes,
                Err(e) => match encode(&error_frame(id, e)) {
                    Ok(bytes) => bytes,
                    Err(_) => break,
                },
            };
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let result = serve_requests(handle, &mut reader, &tx).await;
    if let Err(e) = &result {
        let _ = tx.send(error_frame(0, e.clone())).await;
    }
    drop(tx);
    let _ = writer_task.await;
    result
}

fn error_frame(id: u64, error: Error) -> ServerFrame {
    ServerFrame {
        id,
        reply: Reply::Error(error),
    }
}

async fn serve_requests(
    handle: Handle,
    reader: &mut tokio::net::unix::OwnedReadHalf,
    tx: &mpsc::Sender<ServerFrame>,
) -> Result<()> {
    let first = read_payload(reader)
        .await?
        .ok_or_else(|| Error::Protocol("connection closed before the handshake".into()))?;
    let hello: ClientFrame = decode(&first)?;
    match hello.request {
        Request::Hello { version, .. } if version == PROTOCOL_VERSION => {
            let reply = Reply::Hello {
                version: PROTOCOL_VERSION,
                daemon: crate::VERSION.to_string(),
            };
            let _ = tx
                .send(ServerFrame {
                    id: hello.id,
                    reply,
                })
                .await;
        }
        Request::Hello { version, .. } => {
            return Err(Error::Protocol(format!(
                "client speaks protocol {version}; this daemon speaks {PROTOCOL_VERSION}"
            )))
        }
        _ => return Err(Error::Protocol("the first frame must be Hello".into())),
    }
    let mut streams = Vec::new();
    let result = loop {
        let payload = match read_payload(reader).await {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let frame: ClientFrame = match decode(&payload) {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let handle = handle.clone();
        let tx = tx.clone();
        let streaming = matches!(frame.request, Request::Subscribe(_) | Request::Wait(_));
        let task = actix_rt::spawn(async move {
            if let Request::Subscribe(filter) = frame.request {
                stream_events(handle, frame.id, filter, tx).await;
                return;
            }
            let kind = frame.request.kind();
            let started = std::time::Instant::now();
            let reply = dispatch(&handle, frame.request).await;
            let error = match &reply {
                Reply::Error(e) => Some(e),
                _ => None,
            };
            crate::metrics::rpc().observe(kind, started.elapsed(), error);
            let _ = tx
                .send(ServerFrame {
                    id: frame.id,
                    reply,
                })
                .await;
        });
        if streaming {
            // Kept to be aborted if the client goes; finished ones are let go at once, or a
            // long-lived connection would hold every wait it ever made.
            streams.retain(|t: &actix_rt::task::JoinHandle<()>| !t.is_finished());
            streams.push(task);
        }
    };
    // The client is gone: its subscriptions and waits have nobody to answer.
    for task in streams {
        task.abort();
    }
    result
}

async fn stream_events(
    handle: Handle,
    id: u64,
    filter: crate::types::EventFilter,
    tx: mpsc::Sender<ServerFrame>,
) {
    let mut events = match handle.subscribe(filter).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(error_frame(id, e)).await;
            return;
        }
    };
    while let Some(item) = events.next().await {
        let reply = match item {
            Ok(event) => Reply::Event(event),
            Err(e) => Reply::Error(e),
        };
        if tx.send(ServerFrame { id, reply }).await.is_err() {
            return;
        }
    }
}

async fn dispatch(handle: &Handle, request: Request) -> Reply {
    let result: Result<Reply> = match request {
        Request::Hello { .. } => Err(Error::Protocol("Hello may only be sent once".into())),
        Request::Version => Ok(Reply::Version {
            daemon: crate::VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
        }),
        Request::Create(req) => handle.create(req).await.map(Reply::Container),
        Request::Start { namespace, id } => {
            handle.start(&namespace, &id).await.map(Reply::Container)
        }
        Request::Exec(req) => handle.exec(req).await.map(Reply::Process),
        Request::Kill(req) => handle.kill(req).await.map(|()| Reply::Ok),
        Request::Stop(req) => handle.stop(req).await.map(Reply::Exit),
        Request::Restart(req) => handle.restart(req).await.map(Reply::Container),
        Request::Wait(p) => handle
            .wait(&p.namespace, &p.id, p.exec_id.as_deref())
            .await
            .map(Reply::Exit),
        Request::Delete {
            namespace,
            id,
            force,
        } => handle
            .delete(&namespace, &id, force)
            .await
            .map(Reply::Container),
        Request::State { namespace, id } => {
            handle.state(&namespace, &id).await.map(Reply::Container)
        }
        Request::List { namespace, labels } => {
            handle.list(&namespace, labels).await.map(Reply::Containers)
        }
        Request::Pids { namespace, id } => handle.pids(&namespace, &id).await.map(Reply::Pids),
        Request::CloseStdin(p) => handle
            .close_stdin(&p.namespace, &p.id, p.exec_id.as_deref())
            .await
            .map(|()| Reply::Ok),
        Request::Info => handle.info().await.map(Reply::Info),
        Request::Health => Ok(Reply::Health {
            serving: handle.health().await,
        }),
        Request::Pause { namespace, id } => {
            handle.pause(&namespace, &id).await.map(Reply::Container)
        }
        Request::Resume { namespace, id } => {
            handle.resume(&namespace, &id).await.map(Reply::Container)
        }
        Request::Update {
            namespace,
            id,
            resources,
        } => handle
            .update(&namespace, &id, resources)
            .await
            .map(|()| Reply::Ok),
        Request::Checkpoint {
            namespace,
            id,
            name,
            options,
        } => handle
            .checkpoint(&namespace, &id, &name, options)
            .await
            .map(Reply::Checkpoint),
        Request::Checkpoints { namespace, id } => {
            handle.checkpoints(&namespace, &id).map(Reply::Checkpoints)
        }
        Request::CheckpointRemove {
            namespace,
            id,
            name,
        } => handle
            .remove_checkpoint(&namespace, &id, &name)
            .map(|()| Reply::Ok),
        Request::CheckpointExport {
            namespace,
            id,
            name,
            file,
        } => handle
            .export_checkpoint(&namespace, &id, &name, file)
            .await
            .map(Reply::Size),
        Request::CheckpointImport { file } => {
            handle.import_checkpoint(file).await.map(Reply::Checkpoint)
        }
        Request::Restore {
            namespace,
            id,
            name,
            new_id,
            bundle,
        } => handle
            .restore(&namespace, &id, &name, new_id.as_deref(), bundle)
            .await
            .map(Reply::Container),
        Request::Stats { namespace, ids } => {
            handle.stats_of(&namespace, ids).await.map(Reply::Stats)
        }
        Request::Subscribe(_) => Err(Error::Internal("subscribe is served as a stream".into())),
    };
    result.unwrap_or_else(Reply::Error)
}
