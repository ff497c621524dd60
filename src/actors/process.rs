//! One container process (init or an exec) and its shim, as its Container watches it. It
//! is not an actor of its own: the Container runs the watch (the shim's exit fifo, the
//! reaper's word on the shim, or a pidfd for an adopted shim) as futures on its own context
//! (`Container::watch_process`), which saves each process a task, a mailbox and their
//! addresses (about 1 KiB). [`Process`] signals the process (checked against its start
//! time) and writes to its shim's control fifo; [`exit_status_of`] turns a shim's death
//! without a word into an [`ExitStatus`].

use crate::error::{Error, Result};
use crate::layout::{still_running, ShimDir};
use crate::types::{now_ns, ExitStatus, UNKNOWN_EXIT_CODE};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

/// One container process and its shim, while it runs. Its directory is not kept (the
/// container derives it from the process id when needed: a path less per process).
pub struct Process {
    pid: i32,
    starttime: Option<u64>,
    /// Which watch is this process's: a watch's futures that outlive it (the process
    /// replaced by a restart) find another token and do nothing.
    pub(crate) token: u32,
    /// The exit fifo is watched: its hangup carries the shim's word on the exit.
    pub(crate) fifo_watched: bool,
}

/// What tells that a shim is gone: its exit fifo (hangs up when it exits, after its exit
/// message), the reaper's oneshot (our child), a pidfd (an adopted shim).
pub struct ShimWatch {
    /// The read end of the exit fifo.
    pub exit_fd: Option<OwnedFd>,
    /// Fires when the reaper reaps the shim.
    pub shim_exited: Option<oneshot::Receiver<i32>>,
    /// A pidfd on a shim that is not our child.
    pub shim_pidfd: Option<OwnedFd>,
    /// A pidfd on the process itself, for one whose output the shim does not own: its
    /// exit is read from the kernel without waiting for the shim (`exit_watch.rs`).
    pub exit_pidfd: Option<OwnedFd>,
}

/// How long a shim's death seen by the reaper or a pidfd waits for the exit fifo's hangup
/// (which comes at once, the shim being dead, but may be polled a moment later on a busy
/// machine): the fifo carries the exit code even when the state dir is full.
pub const FIFO_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl Process {
    /// A process whose shim is running, watched under `token`.
    pub fn new(pid: i32, starttime: Option<u64>, token: u32) -> Self {
        Process {
            pid,
            starttime,
            token,
            fifo_watched: false,
        }
    }

    /// How it ended, once its shim (with its directory `dir`) is gone: the shim's own word
    /// from the fifo (the fastest), else its `exitStatus` file, else by the seed's rules.
    pub fn exit_status(&self, dir: &ShimDir, process_id: &str, message: &[u8]) -> ExitStatus {
        let status = match crate::layout::parse_exit_message(message) {
            Some((code, exited_at_ns)) => ExitStatus { code, exited_at_ns },
            None => exit_status_of(dir, self.pid, self.starttime),
        };
        tracing::debug!(process = %process_id, pid = self.pid, code = status.code, "process exited");
        status
    }

    fn alive(&self) -> bool {
        match self.starttime {
            Some(start) => still_running(self.pid, start),
            None => self.pid > 0,
        }
    }

    /// Sends signal `sig` to the process (0 only checks that it is there), after checking
    /// the pid against its recorded start time.
    pub fn signal(&self, process_id: &str, sig: i32) -> Result<()> {
        let gone = || {
            Error::WrongState(format!(
                "process {process_id} (pid {}) has already exited",
                self.pid
            ))
        };
        if !self.alive() {
            return Err(gone());
        }
        let signal = match sig {
            0 => None,
            n => Some(
                nix::sys::signal::Signal::try_from(n)
                    .map_err(|_| Error::InvalidArgument(format!("invalid signal {sig}")))?,
            ),
        };
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(gone()),
            Err(e) => Err(Error::io(
                format!("kill {} with signal {sig}", self.pid),
                std::io::Error::from(e),
            )),
        }
    }

    /// Closes the process's stdin (control message `0`) through its shim's directory `dir`.
    pub fn close_stdin(&self, dir: &ShimDir) -> Result<()> {
        control(dir, "0 0 0\n")
    }

    /// Resizes the process's terminal (control message `1 width height`).
    pub fn resize(&self, dir: &ShimDir, width: u16, height: u16) -> Result<()> {
        control(dir, &format!("1 {width} {height}\n"))
    }
}

/// Writes one control message to the shim's control fifo.
fn control(dir: &ShimDir, message: &str) -> Result<()> {
    let path = dir.control_fifo();
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    fifo.write_all(message.as_bytes())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
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
pub async fn wait_hangup(fd: OwnedFd) -> Vec<u8> {
    let mut got = Vec::new();
    // SAFETY: the OwnedFd is moved into the AsyncFd and owns the descriptor until the AsyncFd
    // is dropped; OwnedFd::as_raw_fd always returns that same descriptor.
    let Ok(afd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else {
        return got;
    };
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return got;
        };
        // The buffer lives between awaits only: not kept in every waiting watch.
        let mut buf = [0u8; 64];
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
