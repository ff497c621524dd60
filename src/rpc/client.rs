//! A blocking client for the RPC, used by corralctl and the tests. One request at a time;
//! [`Client::subscribe`] turns the connection into an event stream.

use super::frame::{read_frame_sync, write_frame_sync};
use super::protocol::*;
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::Path;

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
    stream: UnixStream,
    next_id: u64,
    daemon: String,
}

impl Client {
    /// Connects and does the handshake.
    pub fn connect(path: &Path) -> Result<Client> {
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
        };
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: format!("corral {}", crate::VERSION),
        };
        match client.call(hello)? {
            Reply::Hello { daemon, .. } => client.daemon = daemon,
            other => return Err(unexpected(&other)),
        }
        Ok(client)
    }

    /// The daemon's release, from the handshake.
    pub fn daemon_version(&self) -> &str {
        &self.daemon
    }

    fn send(&mut self, request: Request) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame_sync(&mut self.stream, &ClientFrame { id, request })?;
        Ok(id)
    }

    fn receive(&mut self, id: u64) -> Result<Reply> {
        loop {
            let frame: ServerFrame = read_frame_sync(&mut self.stream)?
                .ok_or_else(|| Error::Internal("corrald closed the connection".into()))?;
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
}

fn unexpected(reply: &Reply) -> Error {
    Error::Protocol(format!("unexpected reply {reply:?}"))
}

/// Events from a subscription, in order; ends with `Err(Lagged)` if it fell behind.
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
