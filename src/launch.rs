//! Starting a shim from the daemon: make its directory and fifos, open the exit fifo's read
//! end first, start `corral-shim` (which starts a session of its own), and read its one-line
//! answer.

use crate::error::{Error, Result};
use crate::layout::{proc_starttime, write_atomic, ShimDir};
use crate::shim::ShimArgs;
use nix::sys::stat::Mode;
use std::fs::{self, File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// A shim that answered `ok`: its container process is created (or running).
pub struct LaunchedShim {
    /// The container process's host pid.
    pub pid: i32,
    /// The container process's start time, if it could be read.
    pub starttime: Option<u64>,
    /// The read end of the exit fifo: hangs up when the shim is gone.
    pub exit_fd: OwnedFd,
    /// Fires when the reaper reaps the shim.
    pub shim_exited: oneshot::Receiver<i32>,
}

/// Creates `dir` with its fifos; idempotent.
pub fn prepare_dir(dir: &ShimDir) -> Result<()> {
    fs::create_dir_all(dir.path())
        .map_err(|e| Error::io(format!("create {}", dir.path().display()), e))?;
    for fifo in [dir.exit_fifo(), dir.control_fifo()] {
        match nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::Internal(format!("mkfifo {}: {e}", fifo.display()))),
        }
    }
    Ok(())
}

/// Opens the exit fifo's read end without blocking. Open it before the shim can exit: a
/// hang-up is only reported to a reader that was open while a writer was.
pub fn open_exit_fifo(dir: &ShimDir) -> Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.exit_fifo())
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {}", dir.exit_fifo().display()), e))
}

/// Starts a shim in `dir` and waits up to `timeout` for its answer.
pub async fn launch(
    shim_bin: &Path,
    dir: &ShimDir,
    args: &ShimArgs,
    timeout: Duration,
) -> Result<LaunchedShim> {
    prepare_dir(dir)?;
    let exit_fd = open_exit_fifo(dir)?;
    let (sync_r, sync_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    let log = File::create(dir.shim_log()).map_err(|e| Error::io("create shim.log", e))?;
    let mut cmd = Command::new(shim_bin);
    // The shim's directory as an argument, not as the child's working directory: asked to
    // change directory, std forks here rather than use `posix_spawn` (seen in strace).
    let args = ShimArgs {
        dir: Some(dir.path().to_path_buf()),
        ..args.clone()
    };
    cmd.args(args.to_args())
        // corrald's own: a runtime that sees NOTIFY_SOCKET (runc) passes it into the
        // container and waits for the container's READY=1, so under a Type=notify unit
        // `runc create`/`run -d` would never return.
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::from(sync_w))
        .stderr(Stdio::from(log));
    // No `pre_exec` either (the shim calls `setsid` itself, first thing): std then starts
    // it with `posix_spawn` (a vfork-style clone that copies no page tables) rather than a
    // fork of the whole daemon, whose page tables grow with the containers it supervises.
    let (child, shim_exited) = crate::reaper::spawn(&mut cmd)
        .map_err(|e| Error::Internal(format!("cannot start shim {}: {e}", shim_bin.display())))?;
    // Our copy of the answer pipe's write end must go, or we would never see its end.
    drop(cmd);
    let shim_pid = child.id() as i32;
    drop(child);
    if let Some(start) = proc_starttime(shim_pid) {
        let _ = write_atomic(
            &dir.shim_pid_file(),
            format!("{shim_pid} {start}").as_bytes(),
        );
    }
    let answer = async {
        let mut text = String::new();
        if let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(sync_r) {
            let _ = rx.read_to_string(&mut text).await;
        }
        text
    };
    let answer = match tokio::time::timeout(timeout, answer).await {
        Ok(text) => text,
        Err(_) => {
            let kill = |pid: i32| {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            };
            kill(shim_pid);
            // The runtime may have started the process before the shim was stuck: nobody
            // would watch it, so it goes too (checked against its start time).
            if let (Some(pid), Some(start)) = (dir.read_pid(), dir.read_starttime()) {
                if crate::layout::same_process(pid, start) {
                    kill(pid);
                }
            }
            return Err(Error::Timeout(format!(
                "shim for {} {} did not answer within {timeout:?}",
                args.mode.verb(),
                args.id
            )));
        }
    };
    let answer = answer.trim();
    if let Some(pid) = answer.strip_prefix("ok ") {
        let pid: i32 = pid
            .trim()
            .parse()
            .map_err(|_| Error::Internal(format!("shim answered {answer:?}")))?;
        return Ok(LaunchedShim {
            pid,
            starttime: dir.read_starttime(),
            exit_fd,
            shim_exited,
        });
    }
    if let Some(msg) = answer.strip_prefix("err ") {
        return Err(Error::RuntimeFailed {
            op: args.mode.verb().to_string(),
            id: args.id.clone(),
            stderr: msg.to_string(),
        });
    }
    let log = fs::read_to_string(dir.shim_log()).unwrap_or_default();
    Err(Error::Internal(format!(
        "shim for {} {} exited without answering: {}",
        args.mode.verb(),
        args.id,
        log.trim()
    )))
}

/// A pidfd for `pid` (readable once that process has exited), if the kernel has them.
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a fresh descriptor that we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Resolves once the process behind `pidfd` has exited.
pub async fn exited(pidfd: OwnedFd) {
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
    let Ok(afd) = (unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }) else {
        return;
    };
    let _ = afd.readable().await;
}
