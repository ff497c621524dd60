//! The daemon's side of the RPC: accept, check the peer, handshake, then serve requests
//! concurrently on each connection. A bad frame closes that connection with a clear error;
//! the daemon itself never goes down for a client's mistake.

use super::frame::{check_len, decode, encode, read_body, write_frame, MAX_FRAME};
use super::protocol::*;
use super::stdio::StdinChunk;
use crate::error::{Error, Result};
use crate::Handle;
use futures_util::future::{select, Either};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

/// Binds the socket (mode 0600), refusing if another daemon already listens on it.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    if path.exists() {
        if let Some(why) = socket_in_use(path) {
            return Err(Error::AlreadyExists(why));
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

/// How long [`socket_in_use`] waits for a socket that takes connections but answers none
/// to be released.
const HELD_SOCKET_WAIT: Duration = Duration::from_secs(5);

/// Why the socket at `path` is in use, or `None` if it is stale (nothing takes a
/// connection on it). A corrald answers the handshake: in use. A socket that takes
/// connections but answers none is a dead corrald's listener still held by one of its
/// children between fork and exec (a shim or runtime call being spawned when the daemon
/// was killed): that descriptor is closed at the child's exec, so the connect is tried
/// again until it is refused, for at most [`HELD_SOCKET_WAIT`].
fn socket_in_use(path: &Path) -> Option<String> {
    let deadline = Instant::now() + HELD_SOCKET_WAIT;
    loop {
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
            return None;
        };
        let answered = stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_millis(500))))
            .is_ok()
            && super::frame::write_frame_sync(
                &mut stream,
                &ClientFrame {
                    id: 1,
                    request: Request::Hello {
                        version: PROTOCOL_VERSION,
                        client: format!("corrald {} (socket check)", crate::VERSION),
                    },
                },
            )
            .is_ok()
            && matches!(
                super::frame::read_frame_sync::<_, ServerFrame>(&mut stream),
                Ok(Some(_))
            );
        if answered {
            return Some(format!(
                "another corrald is listening on {}",
                path.display()
            ));
        }
        if Instant::now() >= deadline {
            return Some(format!(
                "{} takes connections but no corrald answers on it (a process holds the \
                 socket open: find it with `ss -xlp`)",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Concurrent connections, at most (also at most a quarter of the soft `RLIMIT_NOFILE`).
pub const MAX_CONNECTIONS: usize = 1024;
/// Requests in flight on one connection, at most; past it the connection is not read.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 32;
/// Open streams (`Subscribe`, `Wait`) on one connection, at most; past it a new one gets
/// an error reply.
pub const MAX_STREAMS: usize = 64;
/// Encoded replies queued for one connection's writer, at most.
pub const REPLY_QUEUE: usize = 64;
/// A connection with nothing in flight, no stream and no new frame for this long is
/// closed; so is one whose replies could not be written for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A frame started but not finished within this long closes its connection.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames longer than this are large: their bytes count against [`LARGE_FRAME_BUDGET`].
pub const SMALL_FRAME: u32 = 64 * 1024;
/// Bytes of large frames being read or decoded, at most, across all connections (two
/// frames of the 4 MiB limit); a large frame waits for its share before it is read.
pub const LARGE_FRAME_BUDGET: usize = 2 * MAX_FRAME as usize;
/// Connections refused over the cap that are given a moment to send their Hello and read
/// the refusal, at most; past it they are closed at once (the refusal still written).
const MAX_REFUSING: usize = 64;
/// How long a refused connection is kept for its client to read the refusal.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The limits a server holds its clients to. [`ServerLimits::default`] is the constants
/// above; [`ServerLimits::from_env`] lets tests shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Concurrent connections, at most (lowered to a quarter of the soft `RLIMIT_NOFILE`).
    pub max_connections: usize,
    /// Requests in flight per connection, at most (backpressure past it).
    pub max_requests_in_flight: usize,
    /// Open streams per connection, at most (an error reply past it).
    pub max_streams: usize,
    /// Encoded replies queued per connection, at most.
    pub reply_queue: usize,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`FRAME_TIMEOUT`].
    pub frame_timeout: Duration,
    /// See [`LARGE_FRAME_BUDGET`] (raised to [`MAX_FRAME`] if lower).
    pub large_frame_budget: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: MAX_CONNECTIONS,
            max_requests_in_flight: MAX_REQUESTS_IN_FLIGHT,
            max_streams: MAX_STREAMS,
            reply_queue: REPLY_QUEUE,
            idle_timeout: IDLE_TIMEOUT,
            frame_timeout: FRAME_TIMEOUT,
            large_frame_budget: LARGE_FRAME_BUDGET,
        }
    }
}

impl ServerLimits {
    /// The defaults, with overrides meant for tests: `CORRAL_RPC_IDLE_TIMEOUT_MS`,
    /// `CORRAL_RPC_FRAME_TIMEOUT_MS` and `CORRAL_RPC_MAX_CONNECTIONS` (unparsable or zero
    /// values are ignored).
    pub fn from_env() -> Self {
        fn var(name: &str) -> Option<u64> {
            std::env::var(name)
                .ok()?
                .parse()
                .ok()
                .filter(|&v: &u64| v > 0)
        }
        let mut limits = ServerLimits::default();
        if let Some(ms) = var("CORRAL_RPC_IDLE_TIMEOUT_MS") {
            limits.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = var("CORRAL_RPC_FRAME_TIMEOUT_MS") {
            limits.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = var("CORRAL_RPC_MAX_CONNECTIONS") {
            limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        limits
    }

    /// `max_connections`, lowered to a quarter of the soft `RLIMIT_NOFILE` so that clients
    /// never take the fds the containers need.
    pub fn connection_cap(&self) -> usize {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        self.max_connections.min(soft / 4).max(1)
    }
}

/// Accepts connections forever, each served on its own task, with
/// [`ServerLimits::from_env`].
pub async fn serve(handle: Handle, listener: UnixListener) {
    serve_with(handle, listener, ServerLimits::from_env()).await
}

/// Accepts connections forever, each served on its own task, within `limits`.
pub async fn serve_with(handle: Handle, listener: UnixListener, limits: ServerLimits) {
    let cap = limits.connection_cap();
    tracing::debug!(?limits, cap, "serving the RPC");
    let connections = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let large = Arc::new(Semaphore::new(
        limits.large_frame_budget.max(MAX_FRAME as usize),
    ));
    let limits = Arc::new(limits);
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(slot) = connections.clone().try_acquire_owned() else {
                    refuse(stream, cap, &refusing);
                    continue;
                };
                let handle = handle.clone();
                let limits = limits.clone();
                let large = large.clone();
                actix_rt::spawn(async move {
                    if let Err(e) = connection(handle, stream, &limits, &large).await {
                        tracing::debug!("connection closed: {e}");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                // EMFILE and friends: the listener stays readable, so back off rather than
                // spin, and say so at most once a second.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    if suppressed > 0 {
                        tracing::warn!("accept: {e} (and {suppressed} more accept errors)");
                    } else {
                        tracing::warn!("accept: {e}");
                    }
                    last_warning = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Tells a connection over the cap so, as a connection-level error its Hello reads, then
/// closes it.
fn refuse(stream: UnixStream, cap: usize, refusing: &Arc<Semaphore>) {
    let error = Error::Internal(format!(
        "too many connections: corrald serves at most {cap} connections at once; try again later"
    ));
    if let Ok(bytes) = encode(&error_frame(0, error)) {
        // The socket's buffer is empty: this small frame fits without waiting.
        let _ = stream.try_write(&bytes);
    }
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return; // closed at once
    };
    // Closing before the client has written its Hello would fail that write (EPIPE)
    // before it reads the refusal: linger briefly, discarding what it sends.
    actix_rt::spawn(async move {
        let mut stream = stream;
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(permit);
    });
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

async fn connection(
    handle: Handle,
    stream: UnixStream,
    limits: &ServerLimits,
    large: &Semaphore,
) -> Result<()> {
    let allowed = peer_allowed(&stream);
    let (mut reader, mut writer) = stream.into_split();
    if let Err(e) = allowed {
        let _ = write_frame(&mut writer, &error_frame(0, e.clone())).await;
        return Err(e);
    }
    // Replies travel encoded: a queued reply costs its size, an empty queue next to nothing.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.reply_queue.max(1));
    let stall = limits.idle_timeout;
    let writer_task = actix_rt::spawn(async move {
        let mut room = SocketRoom::default();
        while let Some(bytes) = rx.recv().await {
            room.make(&writer, bytes.len());
            // A client that reads none of its replies for this long is gone: dropping the
            // queue ends its requests and its connection.
            match tokio::time::timeout(stall, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!("connection closed: its replies were not read for {stall:?}");
                    break;
                }
            }
        }
    });
    let result = serve_requests(handle, &mut reader, &tx, limits, large).await;
    if let Err(e) = &result {
        // Best effort: a writer that is stuck does not hold the connection open.
        let _ = tx.try_send(encode_reply(error_frame(0, e.clone())));
    }
    drop(tx);
    let _ = writer_task.await;
    result
}

/// A connection's send buffer, raised for large replies (a list of a thousand containers
/// is about 200 KiB, the default buffer 208 KiB with its overhead counted): a reply that
/// fits is written in one go, without waiting for the client to read part of it first,
/// which on a loaded machine costs a scheduling round trip each time.
#[derive(Default)]
struct SocketRoom {
    /// The `SO_SNDBUF` asked for last (0: the system's default).
    asked: usize,
}

impl SocketRoom {
    /// Replies up to this size fit the default buffer.
    const DEFAULT_FITS: usize = 64 * 1024;

    /// Makes room for a reply of `len` bytes: twice it (the kernel counts each buffer's
    /// overhead against the room), up to twice [`MAX_FRAME`]; the kernel caps it at
    /// `net.core.wmem_max`. Never lowered: it is room, not memory, until replies fill it.
    fn make(&mut self, writer: &tokio::net::unix::OwnedWriteHalf, len: usize) {
        if len <= Self::DEFAULT_FITS || len <= self.asked / 2 {
            return;
        }
        let want = (2 * len).min(2 * MAX_FRAME as usize);
        let stream: &UnixStream = writer.as_ref();
        let fd = std::os::fd::AsFd::as_fd(stream);
        match nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &want) {
            Ok(()) => self.asked = want,
            Err(e) => {
                tracing::debug!("cannot raise a connection's send buffer to {want} bytes: {e}");
                // Not asked again for every reply.
                self.asked = usize::MAX;
            }
        }
    }
}

fn error_frame(id: u64, error: Error) -> ServerFrame {
    ServerFrame {
        id,
        reply: Reply::Error(error),
    }
}

/// Encodes a reply; one too big to encode is answered with an error, never left hanging.
fn encode_reply(frame: ServerFrame) -> Vec<u8> {
    let id = frame.id;
    encode(&frame)
        .or_else(|e| encode(&error_frame(id, e)))
        .unwrap_or_default()
}

/// Sends a reply to the connection's writer; `false` if the connection is gone.
pub(super) async fn reply(tx: &mpsc::Sender<Vec<u8>>, frame: ServerFrame) -> bool {
    tx.send(encode_reply(frame)).await.is_ok()
}

/// A frame's payload, with its share of the large-frame budget (held until decoded).
type Payload<'a> = (Vec<u8>, Option<SemaphorePermit<'a>>);

/// Reads the next frame's payload within the limits: waits up to the idle timeout for its
/// first byte (longer while the connection is busy), then up to the frame timeout for
/// the rest, a large frame's wait for its share of the budget included.
/// `Ok(None)` on a clean end of stream between frames.
async fn next_payload<'a>(
    reader: &mut tokio::net::unix::OwnedReadHalf,
    tx: &mpsc::Sender<Vec<u8>>,
    limits: &ServerLimits,
    large: &'a Semaphore,
    busy: impl Fn() -> bool,
) -> Result<Option<Payload<'a>>> {
    let mut len = [0u8; 4];
    let got = loop {
        // One `read` is cancel-safe: a timeout loses no byte.
        let read = std::pin::pin!(reader.read(&mut len));
        let gone = std::pin::pin!(tx.closed());
        match tokio::time::timeout(limits.idle_timeout, select(read, gone)).await {
            Ok(Either::Left((Ok(0), _))) => return Ok(None),
            Ok(Either::Left((Ok(n), _))) => break n,
            Ok(Either::Left((Err(e), _))) => return Err(Error::io("read frame", e)),
            Ok(Either::Right(_)) => {
                return Err(Error::Protocol("replies not read: closed".into()));
            }
            Err(_) if busy() => continue,
            Err(_) => {
                return Err(Error::Protocol(format!(
                    "idle for {} ms: closed",
                    limits.idle_timeout.as_millis()
                )))
            }
        }
    };
    // From its first byte, the whole frame (its share of the budget included) has the frame
    // timeout: a frame waiting for the budget behind stalled ones is closed with them.
    let rest = async {
        reader
            .read_exact(&mut len[got..])
            .await
            .map_err(|e| Error::Protocol(format!("frame cut short: {e}")))?;
        let len = u32::from_be_bytes(len);
        check_len(len)?;
        let share = if len > SMALL_FRAME {
            Some(
                large
                    .acquire_many(len)
                    .await
                    .map_err(|_| Error::Internal("the large-frame budget is gone".into()))?,
            )
        } else {
            None
        };
        read_body(reader, len).await.map(|p| Some((p, share)))
    };
    match tokio::time::timeout(limits.frame_timeout, rest).await {
        Ok(payload) => payload,
        Err(_) => Err(Error::Protocol(format!(
            "frame not finished within {} ms: closed",
            limits.frame_timeout.as_millis()
        ))),
    }
}

async fn serve_requests(
    handle: Handle,
    reader: &mut tokio::net::unix::OwnedReadHalf,
    tx: &mpsc::Sender<Vec<u8>>,
    limits: &ServerLimits,
    large: &Semaphore,
) -> Result<()> {
    let (first, share) = next_payload(reader, tx, limits, large, || false)
        .await?
        .ok_or_else(|| Error::Protocol("connection closed before the handshake".into()))?;
    let hello: ClientFrame = decode(&first)?;
    drop((first, share));
    match hello.request {
        Request::Hello { version, .. } if version == PROTOCOL_VERSION => {
            let reply = Reply::Hello {
                version: PROTOCOL_VERSION,
                daemon: crate::VERSION.to_string(),
            };
            let _ = self::reply(
                tx,
                ServerFrame {
                    id: hello.id,
                    reply,
                },
            )
            .await;
        }
        Request::Hello { version, .. } => {
            return Err(Error::Protocol(format!(
                "client speaks protocol {version}; this daemon speaks {PROTOCOL_VERSION}"
            )))
        }
        _ => return Err(Error::Protocol("the first frame must be Hello".into())),
    }
    let max_requests = limits.max_requests_in_flight.max(1);
    let in_flight = Arc::new(Semaphore::new(max_requests));
    let mut streams: Vec<actix_rt::task::JoinHandle<()>> = Vec::new();
    // The stdin of this connection's attaches, by the Attach request's frame id.
    let mut inputs: std::collections::HashMap<u64, mpsc::Sender<StdinChunk>> =
        std::collections::HashMap::new();
    let result = loop {
        // Backpressure: with every slot taken, the connection is not read until a request
        // finishes (the kernel's socket buffer then stalls the client).
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break Ok(());
        };
        let busy = || {
            in_flight.available_permits() + 1 < max_requests
                || streams.iter().any(|t| !t.is_finished())
        };
        let (payload, share) = match next_payload(reader, tx, limits, large, busy).await {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let frame: ClientFrame = match decode(&payload) {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        drop((payload, share));
        // Stdin for an attach goes to it in order, inline (never a task of its own, which
        // could reorder it); waiting while the process does not read is backpressure.
        if let Request::AttachInput {
            attach,
            data,
            close,
        } = frame.request
        {
            drop(permit);
            if let Some(input) = inputs.get(&attach) {
                if input.send(StdinChunk { data, close }).await.is_err() {
                    inputs.remove(&attach);
                }
            }
            // An attach that has ended takes no more input: dropped, as a terminal would.
            continue;
        }
        let handle = handle.clone();
        let tx = tx.clone();
        if matches!(
            frame.request,
            Request::Subscribe(_)
                | Request::Attach(_)
                | Request::Run(_)
                | Request::Logs(_)
                | Request::Wait(_)
                | Request::ImagePull(_)
                | Request::ImagePush(_)
                | Request::CheckpointPush(_)
                | Request::CheckpointPull(_)
        ) {
            // Streams have their own cap, and hold no request slot.
            drop(permit);
            // Kept to be aborted if the client goes; finished ones are let go at once, or a
            // long-lived connection would hold every wait it ever made.
            streams.retain(|t| !t.is_finished());
            if streams.len() >= limits.max_streams {
                let error = Error::Protocol(format!(
                    "too many streams: at most {} streams (Subscribe, Wait, Attach, Run, \
                     Logs, ImagePull, ImagePush, CheckpointPush, CheckpointPull) per \
                     connection",
                    limits.max_streams
                ));
                if !reply(&tx, error_frame(frame.id, error)).await {
                    break Ok(());
                }
                continue;
            }
            inputs.retain(|_, input| !input.is_closed());
            let input =
                if let Request::Attach(crate::types::AttachRequest { stdin: true, .. })
                | Request::Run(crate::types::RunRequest { stdin: true, .. }) = &frame.request
                {
                    let (input_tx, input_rx) = mpsc::channel(8);
                    inputs.insert(frame.id, input_tx);
                    Some(input_rx)
                } else {
                    None
                };
            streams.push(actix_rt::spawn(async move {
                match frame.request {
                    Request::Subscribe(filter) => stream_events(handle, frame.id, filter, tx).await,
                    Request::Attach(req) => {
                        super::stdio::stream_attach(handle, frame.id, req, input, tx).await
                    }
                    Request::Run(req) => {
                        super::stdio::stream_run(handle, frame.id, req, input, tx).await
                    }
                    Request::Logs(req) => {
                        super::stdio::stream_logs(handle, frame.id, req, tx).await
                    }
                    request @ (Request::ImagePull(_)
                    | Request::ImagePush(_)
                    | Request::CheckpointPush(_)
                    | Request::CheckpointPull(_)) => {
                        super::images::stream_transfer(handle, frame.id, request, tx).await
                    }
                    request => answer(&handle, frame.id, request, &tx).await,
                }
            }));
        } else {
            actix_rt::spawn(async move {
                answer(&handle, frame.id, frame.request, &tx).await;
                drop(permit);
            });
        }
    };
    // The client is gone: its subscriptions and waits have nobody to answer.
    for task in streams {
        task.abort();
    }
    result
}

async fn answer(handle: &Handle, id: u64, request: Request, tx: &mpsc::Sender<Vec<u8>>) {
    let kind = request.kind();
    let started = Instant::now();
    if let Request::List { namespace, labels } = request {
        // Made from the containers' summaries as they are kept, encoded.
        let (bytes, error) = match handle.list_frame(id, &namespace, labels).await {
            Ok(bytes) => (bytes, None),
            Err(e) => (encode_reply(error_frame(id, e.clone())), Some(e)),
        };
        crate::metrics::rpc().observe(kind, started.elapsed(), error.as_ref());
        let _ = tx.send(bytes).await;
        return;
    }
    let reply = dispatch(handle, request).await;
    let error = match &reply {
        Reply::Error(e) => Some(e),
        _ => None,
    };
    crate::metrics::rpc().observe(kind, started.elapsed(), error);
    let _ = self::reply(tx, ServerFrame { id, reply }).await;
}

async fn stream_events(
    handle: Handle,
    id: u64,
    filter: crate::types::EventFilter,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let mut events = match handle.subscribe(filter).await {
        Ok(s) => s,
        Err(e) => {
            let _ = reply(&tx, error_frame(id, e)).await;
            return;
        }
    };
    while let Some(item) = events.next().await {
        let reply = match item {
            Ok(event) => Reply::Event(event),
            Err(e) => Reply::Error(e),
        };
        if !self::reply(&tx, ServerFrame { id, reply }).await {
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
        Request::Resize {
            namespace,
            id,
            exec_id,
            size,
        } => handle
            .resize(&namespace, &id, exec_id.as_deref(), size)
            .await
            .map(|()| Reply::Ok),
        Request::ExecRemove {
            namespace,
            id,
            exec_id,
        } => handle
            .remove_exec(&namespace, &id, &exec_id)
            .await
            .map(Reply::Process),
        Request::AttachInput { .. } => Err(Error::Internal("served inline".into())),
        Request::Subscribe(_)
        | Request::Attach(_)
        | Request::Run(_)
        | Request::Logs(_)
        | Request::ImagePull(_)
        | Request::ImagePush(_)
        | Request::CheckpointPush(_)
        | Request::CheckpointPull(_) => Err(Error::Internal("served as a stream".into())),
        request @ (Request::ContainerCreate(_)
        | Request::ContainerList { .. }
        | Request::ContainerGet { .. }
        | Request::ContainerUpdate(_)
        | Request::ContainerRemove { .. }
        | Request::TaskStart(_)
        | Request::TaskDelete { .. }) => super::containers::dispatch(handle, request).await,
        request => super::images::dispatch(handle, request).await,
    };
    result.unwrap_or_else(Reply::Error)
}
