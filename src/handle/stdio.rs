//! A process's stdio on the [`Handle`]: `attach` (its output from its log, its stdin
//! through its fifo), `logs`, `resize` and removing an exited exec.
//!
//! Output is read from the log the shim writes, never from the process itself: the shim
//! always drains the process (it never blocks on a slow client), and an attach or a
//! `logs -f` is a reader of that file (one thread each, woken by inotify). Once the
//! process's exit is known the log is complete (the shim writes its last entries before it
//! reports the exit), so the stream ends with the whole output, then the exit.

use super::Handle;
use crate::actors::container::{self, ProcessStdio};
use crate::error::{Error, Result};
use crate::logs::{FollowFrom, Follower, FollowerWaker, LogEntry, LogStream};
use crate::types::*;
use futures_util::future::{select, Either};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// The file in a process's dir where its shim counts the output it could not log.
pub const LOG_ERRORS: &str = "log-errors";

/// How long a follower waits for more output before it looks at its client again (the
/// exit wakes it at once).
const FOLLOW_WAIT: Duration = Duration::from_millis(500);
/// Attaches and `logs` readers at once, at most (a thread each): past it, new ones are
/// refused (`Unavailable`) rather than let clients spawn threads without bound.
pub const MAX_READERS: usize = 512;

static READERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_READERS`]; given back when dropped.
struct ReaderSlot;

impl ReaderSlot {
    fn take() -> Result<ReaderSlot> {
        use std::sync::atomic::Ordering;
        let taken = READERS.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_READERS {
            READERS.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Unavailable(format!(
                "{MAX_READERS} attaches and log readers are open already: try again later"
            )));
        }
        Ok(ReaderSlot)
    }
}

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        READERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Entries per `logs` batch, at most.
const LOGS_BATCH: usize = 512;

/// A live attach: the process's output, then its exit; and its stdin if asked for.
pub struct Attachment {
    output: mpsc::Receiver<Result<AttachItem>>,
    stdin: Option<AttachStdin>,
}

impl Attachment {
    /// The next output, or the exit (last); `None` after the exit.
    pub async fn next(&mut self) -> Option<Result<AttachItem>> {
        self.output.recv().await
    }

    /// The process's stdin, if the attach asked for it (once).
    pub fn take_stdin(&mut self) -> Option<AttachStdin> {
        self.stdin.take()
    }
}

/// An attached process's stdin: bytes written go to the process in order.
pub struct AttachStdin {
    fifo: tokio::net::unix::pipe::Sender,
    handle: Handle,
    namespace: String,
    id: String,
    exec_id: Option<String>,
}

impl AttachStdin {
    /// Writes `data` to the process's stdin (waits while the process does not read).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.fifo.write_all(data).await.map_err(|e| {
            Error::WrongState(format!(
                "stdin of process {} of container {}/{}: {e}",
                self.exec_id.as_deref().unwrap_or(INIT_PROCESS),
                self.namespace,
                self.id
            ))
        })
    }

    /// Closes the process's stdin: it reads end-of-file (containerd's `CloseIO`).
    pub async fn close(self) -> Result<()> {
        drop(self.fifo);
        self.handle
            .close_stdin(&self.namespace, &self.id, self.exec_id.as_deref())
            .await
    }
}

/// A `logs` reply: batches of entries; it ends after the history, or with `follow` once
/// the process has exited and its last entries are sent.
pub struct Logs {
    batches: mpsc::Receiver<Result<Vec<LogEntry>>>,
}

impl Logs {
    /// The next batch; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Vec<LogEntry>>> {
        self.batches.recv().await
    }
}

/// The exit of a process being followed, set by a task that waits for it; setting it wakes
/// the follower.
struct ExitFlag {
    exit: Mutex<Option<Result<ExitStatus>>>,
    waker: FollowerWaker,
}

impl ExitFlag {
    fn new(follower: &Follower) -> Arc<ExitFlag> {
        Arc::new(ExitFlag {
            exit: Mutex::new(None),
            waker: follower.waker(),
        })
    }

    fn set(&self, exit: Result<ExitStatus>) {
        if let Ok(mut g) = self.exit.lock() {
            *g = Some(exit);
        }
        self.waker.wake();
    }

    fn take(&self) -> Option<Result<ExitStatus>> {
        self.exit.lock().ok().and_then(|mut g| g.take())
    }
}

fn process_name(exec_id: Option<&str>) -> &str {
    exec_id.unwrap_or(INIT_PROCESS)
}

impl Handle {
    /// Resizes a process's terminal.
    pub async fn resize(
        &self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
        size: ConsoleSize,
    ) -> Result<()> {
        let msg = container::ResizeProcess {
            exec_id: exec_id.map(str::to_string),
            width: size.width,
            height: size.height,
        };
        self.ask(namespace, id, msg).await?
    }

    /// The bytes of output each logged process of `container` lost to log write errors (a
    /// full or failing disk), as its shim counts them in its `log-errors` file; only
    /// processes that lost some.
    pub fn log_losses(&self, container: &ContainerInfo) -> Vec<(String, u64)> {
        let dir = self
            .features
            .state_dir
            .join(namespace_or_default(&container.namespace))
            .join(&container.id);
        let logged = container
            .log_path
            .is_some()
            .then_some(INIT_PROCESS)
            .into_iter()
            .chain(
                container
                    .execs
                    .iter()
                    .filter(|p| p.log_path.is_some())
                    .map(|p| p.id.as_str()),
            );
        logged
            .filter_map(|process| {
                let text = std::fs::read_to_string(dir.join(process).join(LOG_ERRORS)).ok()?;
                let lost = text.split_whitespace().next()?.parse::<u64>().ok()?;
                (lost > 0).then(|| (process.to_string(), lost))
            })
            .collect()
    }

    /// Removes an exited exec (its record, directory and log); its id is free again.
    pub async fn remove_exec(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<ProcessInfo> {
        let msg = container::RemoveExec {
            exec_id: exec_id.to_string(),
        };
        self.ask(namespace, id, msg).await?
    }

    async fn process_stdio(
        &self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
    ) -> Result<(ProcessStdio, std::path::PathBuf)> {
        let msg = container::GetProcessStdio {
            exec_id: exec_id.map(str::to_string),
        };
        let stdio = self.ask(namespace, id, msg).await??;
        let log = stdio.io.log.clone().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "process {} of container {}/{id} writes to the stdio paths it was given, \
                 not to a log",
                process_name(exec_id),
                namespace_or_default(namespace)
            ))
        })?;
        Ok((stdio, log))
    }

    /// Sets `flag` once the process's exit is known (or waiting for it failed). The
    /// watch ends too when the returned sender is dropped (the reader is done): a client
    /// that leaves an attach of a long-lived process leaves nothing behind.
    fn watch_exit(
        &self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
        flag: Arc<ExitFlag>,
    ) -> oneshot::Sender<()> {
        let handle = self.clone();
        let (ns, id, exec) = (
            namespace.to_string(),
            id.to_string(),
            exec_id.map(str::to_string),
        );
        let (done, reader_gone) = oneshot::channel();
        actix_rt::spawn(async move {
            let wait = std::pin::pin!(handle.wait(&ns, &id, exec.as_deref()));
            if let Either::Left((exit, _)) = select(wait, reader_gone).await {
                flag.set(exit);
            }
        });
        done
    }

    /// Joins a process's stdio: its output (from its log: see [`AttachFrom`]) until it
    /// exits, then its exit; with `stdin`, a writer into its stdin.
    pub async fn attach(&self, req: AttachRequest) -> Result<Attachment> {
        let exec = req.exec_id.as_deref();
        let (stdio, log) = self.process_stdio(&req.namespace, &req.id, exec).await?;
        let key = format!(
            "process {} of container {}/{}",
            process_name(exec),
            namespace_or_default(&req.namespace),
            req.id
        );
        if stdio.exit.is_some() && req.from == AttachFrom::Now {
            return Err(Error::WrongState(format!(
                "{key} has exited: nothing to attach to (its output is in its logs)"
            )));
        }
        let stdin = if req.stdin {
            let fifo = stdio.io.stdin_fifo.clone().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{key} has no stdin to attach to: start it with open_stdin (-i)"
                ))
            })?;
            // No reader (ENXIO): the process closed its stdin or has exited. Its output and
            // exit are still worth having; the input has nowhere to go and is dropped.
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&fifo) {
                Ok(sender) => Some(AttachStdin {
                    fifo: sender,
                    handle: self.clone(),
                    namespace: req.namespace.clone(),
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                }),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
                Err(e) => {
                    return Err(Error::io(
                        format!("{key}: open its stdin {}", fifo.display()),
                        e,
                    ))
                }
            }
        } else {
            None
        };
        let from = match (req.from, stdio.io.log_start) {
            (AttachFrom::Now, _) => FollowFrom::End,
            (AttachFrom::Launch, Some(pos)) => FollowFrom::Position(pos),
            (AttachFrom::Launch, None) => FollowFrom::Start,
        };
        // The follower opens the log before the exit can be seen: what is written between
        // is read either way.
        let follower = Follower::open(&log, from)
            .map_err(|e| Error::io(format!("open {}", log.display()), e))?;
        let flag = ExitFlag::new(&follower);
        let slot = ReaderSlot::take()?;
        let watch = self.watch_exit(&req.namespace, &req.id, exec, flag.clone());
        let (tx, rx) = mpsc::channel(16);
        std::thread::Builder::new()
            .name("corral-attach".into())
            .spawn(move || {
                follow_output(follower, flag, tx);
                drop((watch, slot));
            })
            .map_err(|e| Error::Internal(format!("start an attach thread: {e}")))?;
        Ok(Attachment { output: rx, stdin })
    }

    /// Reads a process's log: its history (filtered by time, its tail), then with `follow`
    /// what it writes until it exits.
    pub async fn logs(&self, req: LogsRequest) -> Result<Logs> {
        let exec = req.exec_id.as_deref();
        let (stdio, log) = self.process_stdio(&req.namespace, &req.id, exec).await?;
        let slot = ReaderSlot::take()?;
        let follower = Follower::open(&log, FollowFrom::Start)
            .map_err(|e| Error::io(format!("open {}", log.display()), e))?;
        let flag = ExitFlag::new(&follower);
        let mut watch = None;
        if req.follow {
            if let Some(exit) = stdio.exit {
                flag.set(Ok(exit));
            } else {
                watch = Some(self.watch_exit(&req.namespace, &req.id, exec, flag.clone()));
            }
        }
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("corral-logs".into())
            .spawn(move || {
                read_logs(follower, req, flag, tx);
                drop((watch, slot));
            })
            .map_err(|e| Error::Internal(format!("start a logs thread: {e}")))?;
        Ok(Logs { batches: rx })
    }
}

/// Output items from log entries: consecutive entries of one stream in one item; `P` is
/// the content alone, `F` the content and its newline.
fn to_output(entries: Vec<LogEntry>) -> Vec<AttachItem> {
    let mut out: Vec<AttachItem> = Vec::new();
    for e in entries {
        let stderr = e.stream == LogStream::Stderr;
        let mut data = e.content;
        if !e.partial {
            data.push(b'\n');
        }
        match out.last_mut() {
            Some(AttachItem::Output {
                stderr: last,
                data: buf,
            }) if *last == stderr => buf.extend_from_slice(&data),
            _ => out.push(AttachItem::Output { stderr, data }),
        }
    }
    out
}

fn io_error(e: std::io::Error) -> Error {
    Error::io("read the log", e)
}

/// How a follow ended.
enum Followed {
    /// The exit is known, and every entry up to it was handed over.
    Exited(Result<ExitStatus>),
    /// The reader went away (`send` refused), or `stop` held.
    Stopped,
}

/// Hands the log's entries to `send` as they come, until the process's exit is known
/// (then the rest of the log), `send` refuses them (the reader left) or `stop` holds. The
/// one loop of both attach and `logs -f`.
fn follow_until_exit(
    follower: &mut Follower,
    flag: &ExitFlag,
    mut send: impl FnMut(Vec<LogEntry>) -> bool,
    stop: impl Fn() -> bool,
) -> std::io::Result<Followed> {
    loop {
        if let Some(exit) = flag.take() {
            let rest = follower.drain_to_end()?;
            return Ok(if send(rest) {
                Followed::Exited(exit)
            } else {
                Followed::Stopped
            });
        }
        if stop() {
            return Ok(Followed::Stopped);
        }
        if !send(follower.next_batch(FOLLOW_WAIT)?) {
            return Ok(Followed::Stopped);
        }
    }
}

/// The attach thread: sends output until the exit is known, then the rest and the exit.
fn follow_output(
    mut follower: Follower,
    flag: Arc<ExitFlag>,
    tx: mpsc::Sender<Result<AttachItem>>,
) {
    let send_all = |entries: Vec<LogEntry>| {
        to_output(entries)
            .into_iter()
            .all(|item| tx.blocking_send(Ok(item)).is_ok())
    };
    let last = match follow_until_exit(&mut follower, &flag, send_all, || tx.is_closed()) {
        Ok(Followed::Exited(exit)) => exit.map(AttachItem::Exit),
        Ok(Followed::Stopped) => return,
        Err(e) => Err(io_error(e)),
    };
    let _ = tx.blocking_send(last);
}

/// The logs thread: the filtered history, then (following) new entries until the exit.
fn read_logs(
    mut follower: Follower,
    req: LogsRequest,
    flag: Arc<ExitFlag>,
    tx: mpsc::Sender<Result<Vec<LogEntry>>>,
) {
    let keep = |e: &LogEntry| {
        req.since_ns.is_none_or(|s| e.time_ns >= s) && req.until_ns.is_none_or(|u| e.time_ns < u)
    };
    let send = |mut entries: Vec<LogEntry>| -> bool {
        entries.retain(keep);
        entries
            .chunks(LOGS_BATCH)
            .all(|c| tx.blocking_send(Ok(c.to_vec())).is_ok())
    };
    let history = match follower.drain_to_end() {
        Ok(mut h) => {
            h.retain(keep);
            if let Some(n) = req.tail {
                let cut = h.len().saturating_sub(n);
                h.drain(..cut);
            }
            h
        }
        Err(e) => {
            let _ = tx.blocking_send(Err(io_error(e)));
            return;
        }
    };
    if !send(history) || !req.follow {
        return;
    }
    let past_until = || req.until_ns.is_some_and(|u| now_ns() >= u);
    // The exit itself is not sent: `logs` ends with `Ok` (a failed wait, the container
    // gone, leaves the entries sent as all there is).
    if let Err(e) = follow_until_exit(&mut follower, &flag, send, || {
        past_until() || tx.is_closed()
    }) {
        let _ = tx.blocking_send(Err(io_error(e)));
    }
}
