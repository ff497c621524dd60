//! A terminal for the process: the console socket the runtime sends the pty master to, and
//! the master's window size.

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The socket's name in the shim's directory.
pub const SOCKET: &str = "console.sock";

/// The longest path a unix socket address holds (sun_path, without its NUL).
const SUN_PATH_MAX: usize = 107;

/// The bound console socket, removed when dropped.
pub struct ConsoleSocket {
    listener: UnixListener,
    bound: PathBuf,
    /// The path the runtime is told (`--console-socket`).
    pub for_runtime: PathBuf,
}

impl ConsoleSocket {
    /// Binds `console.sock` in `dir`, the shim's working directory. It is bound by its
    /// relative name and, when `dir` is too long for a socket address, the runtime is given
    /// a short path to the same socket through `/proc/<shim pid>/cwd`.
    pub fn bind(dir: &Path) -> Result<Self, String> {
        let bound = dir.join(SOCKET);
        let _ = std::fs::remove_file(&bound);
        let short = bound.as_os_str().len() <= SUN_PATH_MAX;
        let listener = UnixListener::bind(if short {
            bound.as_path()
        } else {
            Path::new(SOCKET)
        })
        .map_err(|e| format!("bind {}: {e}", bound.display()))?;
        let for_runtime = if short {
            bound.clone()
        } else {
            PathBuf::from(format!("/proc/{}/cwd/{SOCKET}", std::process::id()))
        };
        Ok(ConsoleSocket {
            listener,
            bound,
            for_runtime,
        })
    }

    /// Takes the pty master the runtime sent (it connects and sends before it exits, so
    /// once it has exited the connection is waiting or will never come).
    pub fn receive_master(&self) -> Result<File, String> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| format!("console socket: {e}"))?;
        let (conn, _) = self.listener.accept().map_err(|e| {
            format!("the runtime sent no terminal on its console socket ({e}): is process.terminal true?")
        })?;
        conn.set_nonblocking(false)
            .map_err(|e| format!("console socket: {e}"))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receive the terminal: {e}"))?;
        let mut master = None;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| format!("receive the terminal: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS hands us new descriptors that nothing else owns.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(File::from(owned));
                    }
                }
            }
        }
        master.ok_or_else(|| "the runtime's console message held no descriptor".to_string())
    }
}

impl AsFd for ConsoleSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.bound);
    }
}

/// Sets the terminal's size: `width` columns, `height` rows.
pub fn resize(master: &File, width: u16, height: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call;
    // the descriptor is open (borrowed from `master`).
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
