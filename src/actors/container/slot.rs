//! One process of a container (init or an exec) as its Container sees it: the watched
//! [`Process`] while it runs, its pid, its exit, and the waiters for that exit.

use super::Process;
use crate::types::{ExitStatus, ProcessInfo, Status};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// One process of the container (init or an exec) as the container sees it.
#[derive(Default)]
pub(super) struct ProcessSlot {
    pub(super) process: Option<Process>,
    pub(super) pid: u32,
    pub(super) exit: Option<ExitStatus>,
    pub(super) waiters: Vec<oneshot::Sender<ExitStatus>>,
    /// Where its stdio goes, as launched.
    pub(super) io: ProcessIo,
}

/// A process's stdio as its shim was launched with it: what `attach`, `logs` and `resize`
/// need. Kept in the process's dir as `io` (one `key value` per line) for adoption.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessIo {
    /// The log the shim writes, when it owns the output.
    pub log: Option<PathBuf>,
    /// Where the log stood when this process was launched: its output starts there.
    pub log_start: Option<crate::logs::LogPosition>,
    /// The stdin fifo `attach` writes into (`open_stdin`).
    pub stdin_fifo: Option<PathBuf>,
    /// It has a pseudo-terminal.
    pub terminal: bool,
}

impl ProcessIo {
    /// Whether the daemon reads the process's exit from the kernel as well as from its
    /// shim: only when the shim owns none of its output (no log, no terminal), whose log
    /// must be complete before the exit is told.
    pub(super) fn kernel_tells_exit(&self) -> bool {
        self.log.is_none() && !self.terminal
    }

    /// The `io` file's text.
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(log) = &self.log {
            out.push_str(&format!("log {}\n", log.display()));
        }
        if let Some(p) = &self.log_start {
            out.push_str(&format!("log_start {} {}\n", p.ino, p.offset));
        }
        if let Some(f) = &self.stdin_fifo {
            out.push_str(&format!("stdin {}\n", f.display()));
        }
        if self.terminal {
            out.push_str("terminal 1\n");
        }
        out
    }

    /// Makes what the shim needs before it starts: the process dir and its fifos, the stdin
    /// fifo, the log's directory and file (so that where this process's output starts is
    /// known: `log_start`), and the `io` file.
    pub fn prepare(&mut self, dir: &crate::layout::ShimDir) -> crate::error::Result<()> {
        use crate::error::Error;
        crate::launch::prepare_dir(dir)?;
        if let Some(fifo) = &self.stdin_fifo {
            match nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::Internal(format!("mkfifo {}: {e}", fifo.display()))),
            }
        }
        if let Some(log) = &self.log {
            if let Some(parent) = log.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("create log dir {}", parent.display()), e))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("create log {}", log.display()), e))?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io(format!("stat log {}", log.display()), e))?;
            use std::os::unix::fs::MetadataExt;
            self.log_start = Some(crate::logs::LogPosition {
                ino: meta.ino(),
                offset: meta.len(),
            });
        }
        crate::layout::write_atomic(&dir.io_file(), self.to_text().as_bytes())
            .map_err(|e| Error::io("write the process's io file", e))
    }

    /// Reads an `io` file's text; unknown or malformed lines are skipped.
    pub(super) fn from_text(text: &str) -> ProcessIo {
        let mut io = ProcessIo::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            match key {
                "log" => io.log = Some(PathBuf::from(value)),
                "log_start" => {
                    let mut it = value.split(' ').filter_map(|v| v.parse::<u64>().ok());
                    if let (Some(ino), Some(offset)) = (it.next(), it.next()) {
                        io.log_start = Some(crate::logs::LogPosition { ino, offset });
                    }
                }
                "stdin" => io.stdin_fifo = Some(PathBuf::from(value)),
                "terminal" => io.terminal = value == "1",
                _ => {}
            }
        }
        io
    }
}

impl ProcessSlot {
    pub(super) fn info(&self, id: &str) -> ProcessInfo {
        ProcessInfo {
            id: id.to_string(),
            pid: self.pid,
            status: if self.exit.is_some() {
                Status::Stopped
            } else if self.pid == 0 {
                Status::Created
            } else {
                Status::Running
            },
            exit: self.exit,
            terminal: self.io.terminal,
            stdin: self.io.stdin_fifo.is_some(),
            log_path: self.io.log.clone(),
        }
    }

    pub(super) fn resolve_waiters(&mut self) {
        if let Some(exit) = self.exit {
            for w in self.waiters.drain(..) {
                let _ = w.send(exit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_file_round_trips() {
        let io = ProcessIo {
            log: Some("/var/lib/corral/logs/default/c1/init.log".into()),
            log_start: Some(crate::logs::LogPosition { ino: 42, offset: 7 }),
            stdin_fifo: Some("/run/corral/default/c1/init/stdin".into()),
            terminal: true,
        };
        assert_eq!(ProcessIo::from_text(&io.to_text()), io);
        assert_eq!(ProcessIo::from_text(""), ProcessIo::default());
        assert_eq!(
            ProcessIo::from_text("junk\nlog_start x y\n"),
            ProcessIo::default()
        );
    }
}
