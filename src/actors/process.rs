//! The Process actor: one per init or exec process. It watches its shim's exit fifo (an
//! async fd) and the reaper's word on the shim, turns the shim's death into an
//! [`ExitStatus`] (from `exitStatus`, or by the seed's rules when the shim died without
//! writing it), tells its Container, and stops. It also signals the process and closes its
//! stdin through the control fifo.

use crate::error::{Error, Result};
use crate::layout::{still_running, ShimDir};
use crate::types::{now_ns, ExitStatus, UNKNOWN_EXIT_CODE};
use actix::prelude::*;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

/// Sent to the owning Container when the process has exited.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProcessExited {
    /// `init` or the exec id.
    pub process_id: String,
    /// How it ended.
    pub status: ExitStatus,
}

/// Sends a signal to the process.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SignalProcess(pub i32);

/// Closes the process's stdin (control message `0`).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseStdin;

/// Resizes the process's terminal (control message `1 width height`).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct ResizeTerminal {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// One container process and its shim.
pub struct Process {
    process_id: String,
    dir: ShimDir,
    pid: i32,
    starttime: Option<u64>,
    exit_fd: Option<OwnedFd>,
    shim_exited: Option<oneshot::Receiver<i32>>,
    shim_pidfd: Option<OwnedFd>,
    /// A pidfd on the process itself: its exit is read from the kernel without waiting
    /// for the shim (`exit_watch.rs`).
    exit_pidfd: Option<OwnedFd>,
    owner: Recipient<ProcessExited>,
    done: bool,
    /// The exit fifo is watched: its hangup carries the shim's word on the exit.
    fifo_watched: bool,
}

/// How long a shim's death seen by the reaper or a pidfd waits for the exit fifo's hangup
/// (which comes at once, the shim being dead, but may be polled a moment later on a busy
/// machine): the fifo carries the exit code even when the state dir is full.
const FIFO_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl Process {
    /// A process whose shim is running; `shim_exited` is set when the shim is our child.
    pub fn new(
        process_id: String,
        dir: ShimDir,
        pid: i32,
        starttime: Option<u64>,
        exit_fd: OwnedFd,
        shim_exited: Option<oneshot::Receiver<i32>>,
        owner: Recipient<ProcessExited>,
    ) -> Self {
        Process {
            process_id,
            dir,
            pid,
            starttime,
            exit_fd: Some(exit_fd),
            shim_exited,
            shim_pidfd: None,
            exit_pidfd: None,
            owner,
            done: false,
            fifo_watched: false,
        }
    }

    /// Also watches the shim through a pidfd (a shim that is not our child, adopted at
    /// daemon start): its death is seen even if its exit fifo closed before we opened it.
    pub fn with_shim_pidfd(mut self, pidfd: Option<OwnedFd>) -> Self {
        self.shim_pidfd = pidfd;
        self
    }

    /// Also watches the process itself through a pidfd, for a process whose output the
    /// shim does not own (see `exit_watch.rs`): its exit is told as soon as the kernel
    /// tells, the shim's word then comes too late to matter.
    pub fn watch_exit_directly(mut self) -> Self {
        self.exit_pidfd = crate::exit_watch::open(self.pid, self.starttime);
        self
    }

    /// The shim is dead (reaper or pidfd): the fifo's hangup, if it is watched, has the
    /// exit code, so it gets a moment to be read first.
    fn shim_died(&mut self, ctx: &mut Context<Self>) {
        if self.fifo_watched {
            ctx.run_later(FIFO_GRACE, |act, ctx| act.shim_gone(&[], ctx));
        } else {
            self.shim_gone(&[], ctx);
        }
    }

    /// Called once the shim is gone, whichever way we learnt it.
    fn shim_gone(&mut self, message: &[u8], ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        // The shim's own word, from the fifo, is the fastest; else its exitStatus file.
        let status = match crate::layout::parse_exit_message(message) {
            Some((code, exited_at_ns)) => ExitStatus { code, exited_at_ns },
            None => exit_status_of(&self.dir, self.pid, self.starttime),
        };
        self.exited(status, ctx);
    }

    /// Tells the owner how the process ended, once, and stops.
    fn exited(&mut self, status: ExitStatus, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        tracing::debug!(process = %self.process_id, pid = self.pid, code = status.code, "process exited");
        self.owner.do_send(ProcessExited {
            process_id: self.process_id.clone(),
            status,
        });
        ctx.stop();
    }

    fn alive(&self) -> bool {
        !self.done
            && match self.starttime {
                Some(start) => still_running(self.pid, start),
                None => self.pid > 0,
            }
    }
}

/// The exit status of a process whose shim is gone: what the shim wrote, or by the rules
/// for a shim that died without writing it: the process still alive and now orphaned is
/// killed (137); gone or replaced by another process with its pid, 255. The result is
/// written to `exitStatus` so that it is the same after a daemon restart.
pub fn exit_status_of(dir: &ShimDir, pid: i32, starttime: Option<u64>) -> ExitStatus {
    if let Some((code, at)) = dir.read_exit_status() {
        return ExitStatus {
            code,
            exited_at_ns: at,
        };
    }
    let orphan_alive = starttime.is_some_and(|s| still_running(pid, s));
    let code = if orphan_alive {
        tracing::warn!(pid, dir = %dir.path().display(), "shim died without recording an exit; killing its orphaned process");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        137
    } else {
        tracing::warn!(pid, dir = %dir.path().display(), "shim died without recording an exit and the process is gone: exit unknown");
        UNKNOWN_EXIT_CODE
    };
    if let Err(e) = dir.write_exit_status(code) {
        tracing::warn!("cannot record exit status in {}: {e}", dir.path().display());
    }
    ExitStatus {
        code,
        exited_at_ns: now_ns(),
    }
}

/// Resolves when the fifo's writer (the shim) is gone: read returns end-of-file. Returns
/// what the shim wrote before (its exit message), if anything.
async fn wait_hangup(fd: OwnedFd) -> Vec<u8> {
    let mut got = Vec::new();
    // SAFETY: the OwnedFd is moved into the AsyncFd and owns the descriptor until the AsyncFd
    // is dropped; OwnedFd::as_raw_fd always returns that same descriptor.
    let Ok(afd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else {
        return got;
    };
    let mut buf = [0u8; 64];
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return got;
        };
        match nix::unistd::read(afd.get_ref().as_raw_fd(), &mut buf) {
            Ok(0) => return got,
            Ok(n) => {
                if got.len() < 256 {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return got,
        }
    }
}

impl Actor for Process {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(fd) = self.exit_fd.take() {
            self.fifo_watched = true;
            ctx.spawn(
                wait_hangup(fd)
                    .into_actor(self)
                    .map(|message, act, ctx| act.shim_gone(&message, ctx)),
            );
        }
        if let (Some(pidfd), Some(start)) = (self.exit_pidfd.take(), self.starttime) {
            let pid = self.pid;
            ctx.spawn(
                crate::exit_watch::exited(pidfd, pid, start)
                    .into_actor(self)
                    .map(|code, act, ctx| {
                        // No answer from the kernel: the shim's fifo tells.
                        if let Some(code) = code {
                            let exited_at_ns = now_ns();
                            act.exited(ExitStatus { code, exited_at_ns }, ctx);
                        }
                    }),
            );
        }
        if let Some(pidfd) = self.shim_pidfd.take() {
            ctx.spawn(
                crate::launch::exited(pidfd)
                    .into_actor(self)
                    .map(|_, act, ctx| act.shim_died(ctx)),
            );
        }
        if let Some(rx) = self.shim_exited.take() {
            ctx.spawn(rx.into_actor(self).map(|_, act, ctx| act.shim_died(ctx)));
        }
    }
}

impl Handler<SignalProcess> for Process {
    type Result = Result<()>;

    fn handle(&mut self, SignalProcess(sig): SignalProcess, _: &mut Context<Self>) -> Result<()> {
        if !self.alive() {
            return Err(Error::WrongState(format!(
                "process {} (pid {}) has already exited",
                self.process_id, self.pid
            )));
        }
        // Signal 0 only checks that the process is there.
        let signal = match sig {
            0 => None,
            n => Some(
                nix::sys::signal::Signal::try_from(n)
                    .map_err(|_| Error::InvalidArgument(format!("invalid signal {sig}")))?,
            ),
        };
        // The pid was checked against its start time just above.
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => {
                return Err(Error::WrongState(format!(
                    "process {} (pid {}) has already exited",
                    self.process_id, self.pid
                )))
            }
            Err(e) => {
                return Err(Error::io(
                    format!("kill {} with signal {sig}", self.pid),
                    std::io::Error::from(e),
                ))
            }
        }
        Ok(())
    }
}

impl Process {
    /// Writes one control message to the shim's control fifo.
    fn control(&self, message: &str) -> Result<()> {
        let path = self.dir.control_fifo();
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        fifo.write_all(message.as_bytes())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }
}

impl Handler<CloseStdin> for Process {
    type Result = Result<()>;

    fn handle(&mut self, _: CloseStdin, _: &mut Context<Self>) -> Result<()> {
        self.control("0 0 0\n")
    }
}

impl Handler<ResizeTerminal> for Process {
    type Result = Result<()>;

    fn handle(&mut self, msg: ResizeTerminal, _: &mut Context<Self>) -> Result<()> {
        self.control(&format!("1 {} {}\n", msg.width, msg.height))
    }
}
