//! A blocking client for the RPC, used by corralctl and the tests. One request at a time;
//! [`Client::subscribe`] turns the connection into an event stream, and
//! [`Client::subscribe_resuming`] follows events across daemon restarts.

use super::frame::{read_frame_sync, write_frame_sync};
use super::protocol::*;
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The reply's payload if it is the expected variant, else a protocol error.
macro_rules! expect_reply {
    ($reply:expr, Reply::Ok) => {
        match $reply {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    };
    ($reply:expr, $variant:path) => {
        match $reply {
            $variant(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    };
}

/// A connection to corrald.
pub struct Client {
    pub(super) stream: UnixStream,
    next_id: u64,
    daemon: String,
    /// The handshake's frame id while its answer is unread ([`Client::connect_pipelined`]).
    hello: Option<u64>,
}

impl Client {
    /// Connects and does the handshake.
    pub fn connect(path: &Path) -> Result<Client> {
        let mut client = Client::connect_pipelined(path)?;
        if let Some(hello) = client.hello {
            client.receive(hello)?;
        }
        Ok(client)
    }

    /// Connects and sends the handshake without waiting for its answer, so that the first
    /// request follows it at once: one round trip fewer, for a client that makes a request
    /// right away (corralctl). The answer, or the daemon's refusal (a protocol it does not
    /// speak, too many connections), is read with the first request's reply.
    pub fn connect_pipelined(path: &Path) -> Result<Client> {
        let stream = UnixStream::connect(path).map_err(|e| {
            Error::Internal(format!(
                "cannot connect to corrald at {}: {e} (is corrald running?)",
                path.display()
            ))
        })?;
        let mut client = Client {
            stream,
            next_id: 1,
            daemon: String::new(),
            hello: None,
        };
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: format!("corral {}", crate::VERSION),
        };
        client.hello = Some(client.send(hello)?);
        Ok(client)
    }

    /// The daemon's release, from the handshake (empty while its answer is unread).
    pub fn daemon_version(&self) -> &str {
        &self.daemon
    }

    pub(super) fn send(&mut self, request: Request) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = write_frame_sync(&mut self.stream, &ClientFrame { id, request }) {
            // A daemon that refused the handshake has said why, then closed.
            if let Some(hello) = self.hello {
                self.receive(hello)?;
            }
            return Err(e);
        }
        Ok(id)
    }

    pub(super) fn receive(&mut self, id: u64) -> Result<Reply> {
        loop {
            let frame: ServerFrame = read_frame_sync(&mut self.stream)?
                .ok_or_else(|| Error::Internal("corrald closed the connection".into()))?;
            if self.hello.is_some_and(|hello| hello == frame.id) {
                self.hello = None;
                match frame.reply {
                    Reply::Hello { daemon, .. } => self.daemon = daemon,
                    Reply::Error(e) => return Err(e),
                    other => return Err(unexpected(&other)),
                }
                if frame.id == id {
                    return Ok(Reply::Ok);
                }
                continue;
            }
            match frame.reply {
                Reply::Error(e) if frame.id == id || frame.id == 0 => return Err(e),
                reply if frame.id == id => return Ok(reply),
                _ => continue,
            }
        }
    }

    /// Sends one request and returns its reply (an `Error` reply becomes `Err`).
    pub fn call(&mut self, request: Request) -> Result<Reply> {
        let id = self.send(request)?;
        self.receive(id)
    }

    /// Creates (and with `req.start`, starts) a container.
    pub fn create(&mut self, req: CreateRequest) -> Result<ContainerInfo> {
        expect_reply!(self.call(Request::Create(req))?, Reply::Container)
    }

    /// Starts a created container.
    pub fn start(&mut self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        let req = Request::Start {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// Runs another process in a container.
    pub fn exec(&mut self, req: ExecRequest) -> Result<ProcessInfo> {
        expect_reply!(self.call(Request::Exec(req))?, Reply::Process)
    }

    /// Signals a process (or all, with `req.all`).
    pub fn kill(&mut self, req: KillRequest) -> Result<()> {
        expect_reply!(self.call(Request::Kill(req))?, Reply::Ok)
    }

    /// Waits for a process to exit.
    pub fn wait(&mut self, namespace: &str, id: &str, exec_id: Option<&str>) -> Result<ExitStatus> {
        let req = Request::Wait(ProcessRef {
            namespace: namespace.into(),
            id: id.into(),
            exec_id: exec_id.map(Into::into),
        });
        expect_reply!(self.call(req)?, Reply::Exit)
    }

    /// Stops a container: its signal, then SIGKILL after `req.timeout_ms`; returns its exit.
    pub fn stop(&mut self, req: StopRequest) -> Result<ExitStatus> {
        expect_reply!(self.call(Request::Stop(req))?, Reply::Exit)
    }

    /// Stops a container if it is live, then runs its init again under the same id.
    pub fn restart(&mut self, req: StopRequest) -> Result<ContainerInfo> {
        expect_reply!(self.call(Request::Restart(req))?, Reply::Container)
    }

    /// Deletes a container.
    pub fn delete(&mut self, namespace: &str, id: &str, force: bool) -> Result<ContainerInfo> {
        let req = Request::Delete {
            namespace: namespace.into(),
            id: id.into(),
            force,
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// A container's state.
    pub fn state(&mut self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        let req = Request::State {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// The containers of a namespace with all of `labels`.
    pub fn list(
        &mut self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<ContainerInfo>> {
        let req = Request::List {
            namespace: namespace.into(),
            labels,
        };
        expect_reply!(self.call(req)?, Reply::Containers)
    }

    /// The pids of a container.
    pub fn pids(&mut self, namespace: &str, id: &str) -> Result<Vec<PidInfo>> {
        let req = Request::Pids {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Pids)
    }

    /// Closes a process's stdin.
    pub fn close_stdin(&mut self, namespace: &str, id: &str, exec_id: Option<&str>) -> Result<()> {
        let req = Request::CloseStdin(ProcessRef {
            namespace: namespace.into(),
            id: id.into(),
            exec_id: exec_id.map(Into::into),
        });
        expect_reply!(self.call(req)?, Reply::Ok)
    }

    /// The daemon's release and protocol version.
    pub fn version(&mut self) -> Result<(String, u32)> {
        match self.call(Request::Version)? {
            Reply::Version { daemon, protocol } => Ok((daemon, protocol)),
            other => Err(unexpected(&other)),
        }
    }

    /// Freezes a container.
    pub fn pause(&mut self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        let req = Request::Pause {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// Thaws a container.
    pub fn resume(&mut self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        let req = Request::Resume {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// Changes a container's resource limits.
    pub fn update(&mut self, namespace: &str, id: &str, resources: Resources) -> Result<()> {
        let req = Request::Update {
            namespace: namespace.into(),
            id: id.into(),
            resources,
        };
        expect_reply!(self.call(req)?, Reply::Ok)
    }

    /// Statistics of the named containers (every live one of the namespace when empty).
    pub fn stats(
        &mut self,
        namespace: &str,
        ids: Vec<String>,
    ) -> Result<Vec<(String, crate::cgroups::Stats)>> {
        let req = Request::Stats {
            namespace: namespace.into(),
            ids,
        };
        expect_reply!(self.call(req)?, Reply::Stats)
    }

    /// Takes a checkpoint of a running container.
    pub fn checkpoint(
        &mut self,
        namespace: &str,
        id: &str,
        name: &str,
        options: crate::checkpoint::CheckpointOptions,
    ) -> Result<crate::checkpoint::CheckpointInfo> {
        let req = Request::Checkpoint {
            namespace: namespace.into(),
            id: id.into(),
            name: name.into(),
            options,
        };
        expect_reply!(self.call(req)?, Reply::Checkpoint)
    }

    /// The checkpoints of a container.
    pub fn checkpoints(
        &mut self,
        namespace: &str,
        id: &str,
    ) -> Result<Vec<crate::checkpoint::CheckpointInfo>> {
        let req = Request::Checkpoints {
            namespace: namespace.into(),
            id: id.into(),
        };
        expect_reply!(self.call(req)?, Reply::Checkpoints)
    }

    /// Removes a checkpoint.
    pub fn remove_checkpoint(&mut self, namespace: &str, id: &str, name: &str) -> Result<()> {
        let req = Request::CheckpointRemove {
            namespace: namespace.into(),
            id: id.into(),
            name: name.into(),
        };
        expect_reply!(self.call(req)?, Reply::Ok)
    }

    /// Writes a checkpoint to an OCI image-layout tar; returns its size.
    pub fn export_checkpoint(
        &mut self,
        namespace: &str,
        id: &str,
        name: &str,
        file: &Path,
    ) -> Result<u64> {
        let req = Request::CheckpointExport {
            namespace: namespace.into(),
            id: id.into(),
            name: name.into(),
            file: file.to_path_buf(),
        };
        expect_reply!(self.call(req)?, Reply::Size)
    }

    /// Reads a checkpoint from such a tar.
    pub fn import_checkpoint(&mut self, file: &Path) -> Result<crate::checkpoint::CheckpointInfo> {
        let req = Request::CheckpointImport {
            file: file.to_path_buf(),
        };
        expect_reply!(self.call(req)?, Reply::Checkpoint)
    }

    /// Creates and starts a container from a checkpoint.
    pub fn restore(
        &mut self,
        namespace: &str,
        id: &str,
        name: &str,
        new_id: Option<&str>,
        bundle: Option<&Path>,
    ) -> Result<ContainerInfo> {
        let req = Request::Restore {
            namespace: namespace.into(),
            id: id.into(),
            name: name.into(),
            new_id: new_id.map(Into::into),
            bundle: bundle.map(Path::to_path_buf),
        };
        expect_reply!(self.call(req)?, Reply::Container)
    }

    /// The daemon's counters and features.
    pub fn info(&mut self) -> Result<DaemonInfo> {
        expect_reply!(self.call(Request::Info)?, Reply::Info)
    }

    /// Whether the daemon is serving.
    pub fn health(&mut self) -> Result<bool> {
        match self.call(Request::Health)? {
            Reply::Health { serving } => Ok(serving),
            other => Err(unexpected(&other)),
        }
    }

    /// Turns this connection into a stream of events that pass `filter`.
    pub fn subscribe(mut self, filter: EventFilter) -> Result<Subscription> {
        let id = self.send(Request::Subscribe(filter))?;
        Ok(Subscription { client: self, id })
    }

    /// Follows the events that pass `filter` on `socket`, across lost connections: when
    /// the daemon goes away (or the subscription lags), connects again, retrying every
    /// 100 to 500 ms for up to `reconnect` after the loss, and resumes from the sequence
    /// number after the last event it yielded (`since: Seq(last + 1)`), skipping any event
    /// at or below it: no gap and no duplicate, as far as the journal keeps them.
    /// `Duration::ZERO` never reconnects after a loss of the daemon (lagging is still
    /// resumed). Without `filter.since`, the stream starts at the daemon's next event.
    pub fn subscribe_resuming(
        socket: &Path,
        filter: EventFilter,
        reconnect: Duration,
    ) -> Result<ResumingSubscription> {
        let mut client = Client::connect(socket)?;
        let mut filter = filter;
        if filter.since.is_none() {
            // A fixed starting point, so that a loss before the first event loses nothing.
            let last = client.info()?.last_seq;
            filter.since = Some(Since::Seq(last + 1));
        }
        let current = Some(client.subscribe(filter.clone())?);
        Ok(ResumingSubscription {
            socket: socket.to_path_buf(),
            filter,
            reconnect,
            current,
            last_seq: None,
            done: false,
        })
    }
}

pub(super) fn unexpected(reply: &Reply) -> Error {
    Error::Protocol(format!("unexpected reply {reply:?}"))
}

/// Events from a subscription, in order; `Err(Truncated)` first if the journal no longer
/// holds what `since` asked for (the stream goes on); ends with `Err(Lagged)` if it fell
/// behind.
pub struct Subscription {
    client: Client,
    id: u64,
}

impl Subscription {
    /// Sets a read timeout for [`Iterator::next`] (`None` blocks).
    pub fn set_timeout(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        self.client
            .stream
            .set_read_timeout(timeout)
            .map_err(|e| Error::io("set timeout", e))
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        match self.client.receive(self.id) {
            Ok(Reply::Event(e)) => Some(Ok(e)),
            Ok(other) => Some(Err(unexpected(&other))),
            Err(Error::Internal(m)) if m.contains("closed the connection") => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// What a [`ResumingSubscription`] yields.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Resumed {
    /// An event, each exactly once, in increasing sequence order.
    Event(Event),
    /// The journal no longer holds the events asked for; the replay starts at `first_kept`.
    Truncated {
        /// The oldest sequence number kept.
        first_kept: u64,
    },
    /// The subscription fell behind and is resumed from `first_missed` on a new connection.
    Lagged {
        /// The first sequence number not delivered on the old connection.
        first_missed: u64,
    },
    /// The daemon went away after the event `last_seq` (`None`: before any event);
    /// reconnecting.
    Lost {
        /// The last sequence number yielded.
        last_seq: Option<u64>,
        /// How the connection ended.
        error: Error,
    },
    /// Connected again; events resume from `since`.
    Reconnected {
        /// Where the new subscription starts.
        since: Since,
    },
}

/// A subscription that reconnects and resumes by sequence number
/// ([`Client::subscribe_resuming`]). `Err` ends it: the daemon did not come back in time
/// (or reconnecting is off), or it answered with an error.
pub struct ResumingSubscription {
    socket: PathBuf,
    filter: EventFilter,
    reconnect: Duration,
    current: Option<Subscription>,
    last_seq: Option<u64>,
    done: bool,
}

/// How often a lost subscription tries to connect again, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);

impl ResumingSubscription {
    /// The last sequence number yielded, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Where a new subscription starts: after the last event yielded, or where this one
    /// started.
    fn resume_point(&self) -> Option<Since> {
        match self.last_seq {
            Some(seq) => Some(Since::Seq(seq + 1)),
            None => self.filter.since,
        }
    }

    fn resubscribe(&mut self, since: Option<Since>) -> Result<()> {
        let filter = EventFilter {
            since,
            ..self.filter.clone()
        };
        self.current = Some(Client::connect(&self.socket)?.subscribe(filter)?);
        Ok(())
    }

    /// Connects again within the reconnect timeout; the error is the last attempt's.
    fn reconnect(&mut self, lost: &Error) -> Result<Since> {
        let since = self.resume_point().unwrap_or(Since::Seq(0));
        let deadline = Instant::now() + self.reconnect;
        let mut pause = RETRY_FIRST;
        let mut last_error = lost.clone();
        while Instant::now() < deadline {
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(RETRY_MAX);
            match self.resubscribe(Some(since)) {
                Ok(()) => return Ok(since),
                Err(e) => last_error = e,
            }
        }
        Err(Error::Internal(format!(
            "{} and did not come back within {:?} ({last_error})",
            went_away(self.last_seq),
            self.reconnect
        )))
    }
}

/// "corrald went away after event N" (or "before any event").
pub fn went_away(last_seq: Option<u64>) -> String {
    match last_seq {
        Some(seq) => format!("corrald went away after event {seq}"),
        None => "corrald went away before any event".into(),
    }
}

impl Iterator for ResumingSubscription {
    type Item = Result<Resumed>;

    fn next(&mut self) -> Option<Result<Resumed>> {
        if self.done {
            return None;
        }
        loop {
            let Some(sub) = self.current.as_mut() else {
                // Lost on the previous call: connect again (or give up).
                let lost = Error::Internal("corrald closed the connection".into());
                return Some(match self.reconnect(&lost) {
                    Ok(since) => Ok(Resumed::Reconnected { since }),
                    Err(e) => {
                        self.done = true;
                        Err(e)
                    }
                });
            };
            let frame: Result<Option<ServerFrame>> = read_frame_sync(&mut sub.client.stream);
            let reply = match frame {
                Ok(Some(frame)) if frame.id == sub.id || frame.id == 0 => frame.reply,
                Ok(Some(_)) => continue,
                // The connection ended or broke: the daemon went away.
                Ok(None) | Err(Error::Internal(_)) => {
                    let error = match frame {
                        Err(e) => e,
                        _ => Error::Internal("corrald closed the connection".into()),
                    };
                    self.current = None;
                    if self.reconnect.is_zero() {
                        self.done = true;
                        return Some(Err(Error::Internal(went_away(self.last_seq))));
                    }
                    return Some(Ok(Resumed::Lost {
                        last_seq: self.last_seq,
                        error,
                    }));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match reply {
                Reply::Event(e) if self.last_seq.is_some_and(|last| e.seq <= last) => continue,
                Reply::Event(e) => {
                    self.last_seq = Some(e.seq);
                    return Some(Ok(Resumed::Event(e)));
                }
                Reply::Error(Error::Truncated { first_kept, .. }) => {
                    return Some(Ok(Resumed::Truncated { first_kept }));
                }
                Reply::Error(Error::Lagged { first_missed }) => {
                    self.current = None;
                    return Some(match self.resubscribe(Some(Since::Seq(first_missed))) {
                        Ok(()) => Ok(Resumed::Lagged { first_missed }),
                        // The daemon went away meanwhile: the next call reconnects.
                        Err(_) if !self.reconnect.is_zero() => Ok(Resumed::Lagged { first_missed }),
                        Err(e) => {
                            self.done = true;
                            Err(e)
                        }
                    });
                }
                Reply::Error(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                other => {
                    self.done = true;
                    return Some(Err(unexpected(&other)));
                }
            }
        }
    }
}
