//! The client's stdio calls: attach (output in, stdin out on the same connection), logs,
//! resize, and removing an exec.

use super::client::{unexpected, Client};
use super::frame::write_frame_sync;
use super::protocol::*;
use crate::error::{Error, Result};
use crate::logs::LogEntry;
use crate::types::*;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

impl Client {
    /// Resizes a process's terminal.
    pub fn resize(
        &mut self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
        size: ConsoleSize,
    ) -> Result<()> {
        match self.call(Request::Resize {
            namespace: namespace.into(),
            id: id.into(),
            exec_id: exec_id.map(Into::into),
            size,
        })? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes an exited exec; its id is free again. Returns its last state.
    pub fn remove_exec(&mut self, namespace: &str, id: &str, exec_id: &str) -> Result<ProcessInfo> {
        match self.call(Request::ExecRemove {
            namespace: namespace.into(),
            id: id.into(),
            exec_id: exec_id.into(),
        })? {
            Reply::Process(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Attaches to a process: this connection becomes the attach. Read its output with
    /// [`Attached`]'s iterator; write its stdin (with `req.stdin`) through
    /// [`Attached::input`], from another thread if you like.
    pub fn attach(mut self, req: AttachRequest) -> Result<Attached> {
        let id = self.send(Request::Attach(req))?;
        self.attached(id, false)
    }

    /// Runs a container in the foreground in one request: created and started (its state
    /// is returned), then this connection is an attach to its init from its launch (as
    /// [`Client::attach`]). With `req.remove`, the daemon deletes it after its exit: read
    /// the outcome with [`Attached::removed`] once the iterator has given the exit.
    pub fn run(mut self, req: RunRequest) -> Result<(ContainerInfo, Attached)> {
        let removes = req.remove;
        let id = self.send(Request::Run(req))?;
        let info = match self.receive(id)? {
            Reply::Container(info) => info,
            other => return Err(unexpected(&other)),
        };
        Ok((info, self.attached(id, removes)?))
    }

    /// This connection as the attach of request `id`.
    fn attached(self, id: u64, removes: bool) -> Result<Attached> {
        let writer = self
            .stream
            .try_clone()
            .map_err(|e| Error::io("clone the connection", e))?;
        Ok(Attached {
            client: self,
            id,
            writer,
            ids: Arc::new(AtomicU64::new(1 << 62)),
            done: false,
            exited: false,
            removes,
        })
    }

    /// Reads a process's log: batches of entries until the end (with `req.follow`, until
    /// the process exits).
    pub fn logs(mut self, req: LogsRequest) -> Result<LogReader> {
        let id = self.send(Request::Logs(req))?;
        Ok(LogReader {
            client: self,
            id,
            done: false,
        })
    }
}

/// An attach: an iterator of output, then the exit (last).
pub struct Attached {
    client: Client,
    id: u64,
    writer: UnixStream,
    ids: Arc<AtomicU64>,
    done: bool,
    /// The exit was read.
    exited: bool,
    /// A `Run` with `remove`: the delete's outcome follows the exit.
    removes: bool,
}

impl Attached {
    /// After the exit of a `Run` with `remove`: the delete's outcome (the container's last
    /// state); `None` for an attach that deletes nothing, or before the exit was read.
    pub fn removed(&mut self) -> Option<Result<ContainerInfo>> {
        if !self.removes || !self.exited {
            return None;
        }
        self.removes = false;
        Some(match self.client.receive(self.id) {
            Ok(Reply::Container(info)) => Ok(info),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        })
    }

    /// A writer for the process's stdin (and its terminal's size) on this connection.
    pub fn input(&self) -> Result<AttachInput> {
        Ok(AttachInput {
            stream: self
                .writer
                .try_clone()
                .map_err(|e| Error::io("clone the connection", e))?,
            attach: self.id,
            ids: self.ids.clone(),
        })
    }
}

impl Iterator for Attached {
    type Item = Result<AttachItem>;

    fn next(&mut self) -> Option<Result<AttachItem>> {
        if self.done {
            return None;
        }
        let item = match self.client.receive(self.id) {
            Ok(Reply::Output { stderr, data }) => {
                return Some(Ok(AttachItem::Output { stderr, data }))
            }
            Ok(Reply::Exit(exit)) => {
                self.exited = true;
                Ok(AttachItem::Exit(exit))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        };
        self.done = true;
        Some(item)
    }
}

/// Writes an attached process's stdin, and resizes its terminal, over the attach's
/// connection. Nothing is answered (a resize's error is not seen here: use
/// [`Client::resize`] on a connection of its own to see one).
pub struct AttachInput {
    stream: UnixStream,
    attach: u64,
    ids: Arc<AtomicU64>,
}

impl AttachInput {
    fn send(&mut self, request: Request) -> Result<()> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        write_frame_sync(&mut self.stream, &ClientFrame { id, request })
    }

    /// Sends bytes to the process's stdin.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        // Frames well under the limit: a terminal sends little, a pipe 64 KiB at a time.
        for chunk in data.chunks(256 * 1024) {
            self.send(Request::AttachInput {
                attach: self.attach,
                data: chunk.to_vec(),
                close: false,
            })?;
        }
        Ok(())
    }

    /// Closes the process's stdin: it reads end-of-file.
    pub fn close(&mut self) -> Result<()> {
        self.send(Request::AttachInput {
            attach: self.attach,
            data: Vec::new(),
            close: true,
        })
    }

    /// Resizes the attached process's terminal.
    pub fn resize(
        &mut self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
        size: ConsoleSize,
    ) -> Result<()> {
        self.send(Request::Resize {
            namespace: namespace.into(),
            id: id.into(),
            exec_id: exec_id.map(Into::into),
            size,
        })
    }
}

/// A `logs` reply: an iterator of batches of entries.
pub struct LogReader {
    client: Client,
    id: u64,
    done: bool,
}

impl Iterator for LogReader {
    type Item = Result<Vec<LogEntry>>;

    fn next(&mut self) -> Option<Result<Vec<LogEntry>>> {
        if self.done {
            return None;
        }
        match self.client.receive(self.id) {
            Ok(Reply::LogEntries(entries)) => Some(Ok(entries)),
            Ok(Reply::Ok) => {
                self.done = true;
                None
            }
            Ok(other) => {
                self.done = true;
                Some(Err(unexpected(&other)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
