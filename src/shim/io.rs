//! The process's stdio as the shim sets it up: plain files and fifos handed to the runtime
//! (as before logs), or pipes and a terminal that the shim drains for the process's whole
//! life into the CRI log (`--log`), the `--stdout` path (a terminal without a log) or
//! nowhere. A process never blocks on the shim: every output is read as soon as it is
//! readable, and log write errors lose bytes (counted) rather than stop reading.

use super::console::{self, ConsoleSocket};
use super::cri::{self, Stream};
use super::log_file::LogFile;
use super::ShimArgs;
use crate::layout::ShimDir;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// One read of an output, and the most one write of log entries holds.
const CHUNK: usize = 64 * 1024;

/// What the runtime gets as its stdio, and the console socket it is told about.
pub(super) struct RuntimeStdio {
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
    pub console: Option<ConsoleSocket>,
}

/// An output the shim reads: a pipe's read end or the terminal's master.
struct Source {
    file: File,
    stream: Stream,
    open: bool,
}

/// Where the outputs go.
enum Sink {
    Log(LogFile),
    Raw(File),
    Discard,
}

/// The terminal: its master, and the stdin fifo copied into it.
struct Terminal {
    master: File,
    stdin: Option<File>,
    holder: Option<File>,
    /// Read from stdin, not yet written to the master: `pending[start..end]`.
    pending: Vec<u8>,
    start: usize,
    end: usize,
}

/// A poll entry the IO registered, in order.
#[derive(Clone, Copy)]
pub(super) enum Slot {
    Source(usize),
    StdinIn,
    MasterOut,
}

/// The shim's part of the process's IO after the runtime has run.
pub(super) struct Io {
    sources: Vec<Source>,
    sink: Sink,
    /// Set up by [`Io::start`] when the process has a terminal.
    terminal: Option<Terminal>,
    wants_terminal: bool,
    /// The stdin fifo to copy into the terminal, until [`Io::start`] has one.
    terminal_stdin: Option<(File, Option<File>)>,
    /// A stdin fifo's write end that the shim holds (no terminal): see [`open_stdin`].
    stdin_holder: Option<File>,
    chunk: Vec<u8>,
    out: Vec<u8>,
    resize_warned: bool,
}

/// Opens the process's stdio as `args` say.
pub(super) fn prepare(args: &ShimArgs, dir: &ShimDir) -> Result<(RuntimeStdio, Io), String> {
    let null_out = || open_output(None).map_err(|e| format!("open /dev/null: {e}"));
    let sink = || -> Result<Sink, String> {
        Ok(match &args.log {
            Some(path) => Sink::Log(
                LogFile::open(
                    path,
                    args.log_max_size,
                    args.log_max_files,
                    dir.path().join("log-errors"),
                )
                .map_err(|e| format!("open log {}: {e}", path.display()))?,
            ),
            None if args.terminal => match &args.stdout {
                Some(path) => {
                    Sink::Raw(open_output(Some(path)).map_err(|e| format!("open stdout: {e}"))?)
                }
                None => Sink::Discard,
            },
            None => Sink::Discard,
        })
    };
    let mut io = Io {
        sources: Vec::new(),
        sink: Sink::Discard,
        terminal: None,
        wants_terminal: args.terminal,
        terminal_stdin: None,
        stdin_holder: None,
        chunk: Vec::new(),
        out: Vec::new(),
        resize_warned: false,
    };
    let stdio = if args.terminal {
        io.sink = sink()?;
        let (stdin, holder) = open_stdin(args.stdin.as_deref())?;
        if args.stdin.is_some() {
            set_nonblock(&stdin, true);
            io.terminal_stdin = Some((stdin, holder));
        }
        RuntimeStdio {
            stdin: File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?,
            stdout: null_out()?,
            stderr: null_out()?,
            console: Some(ConsoleSocket::bind(dir.path())?),
        }
    } else if args.log.is_some() {
        io.sink = sink()?;
        let (stdin, holder) = open_stdin(args.stdin.as_deref())?;
        io.stdin_holder = holder;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        io.sources.push(Source {
            file: out_r,
            stream: Stream::Stdout,
            open: true,
        });
        io.sources.push(Source {
            file: err_r,
            stream: Stream::Stderr,
            open: true,
        });
        RuntimeStdio {
            stdin,
            stdout: out_w,
            stderr: err_w,
            console: None,
        }
    } else {
        let (stdin, holder) = open_stdin(args.stdin.as_deref())?;
        io.stdin_holder = holder;
        RuntimeStdio {
            stdin,
            stdout: open_output(args.stdout.as_deref()).map_err(|e| format!("open stdout: {e}"))?,
            stderr: open_output(args.stderr.as_deref()).map_err(|e| format!("open stderr: {e}"))?,
            console: None,
        }
    };
    if !io.sources.is_empty() || args.terminal {
        io.chunk = vec![0; CHUNK];
        // Entries are written before they would pass CHUNK: this never grows (a growing
        // buffer would leave its smaller copies in the heap, and in the shim's RSS).
        if args.log.is_some() {
            io.out = Vec::with_capacity(CHUNK);
        }
    }
    Ok((stdio, io))
}

/// A pipe whose read end (ours) does not block; both ends close on exec (the runtime gets
/// its write end as a dup'ed stdio descriptor, which does not).
fn pipe() -> Result<(File, File), String> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let r = File::from(r);
    set_nonblock(&r, true);
    Ok((r, File::from(w)))
}

impl Io {
    /// After the runtime succeeded: takes the terminal it sent (sized to `size`).
    pub fn start(
        &mut self,
        console: Option<ConsoleSocket>,
        size: Option<(u16, u16)>,
    ) -> Result<(), String> {
        let Some(socket) = console else {
            return Ok(());
        };
        let master = socket.receive_master()?;
        drop(socket);
        if let Some((w, h)) = size {
            console::resize(&master, w, h).map_err(|e| format!("set the terminal's size: {e}"))?;
        }
        set_nonblock(&master, true);
        let reader = master
            .try_clone()
            .map_err(|e| format!("dup the terminal: {e}"))?;
        self.sources.push(Source {
            file: reader,
            stream: Stream::Stdout,
            open: true,
        });
        let (stdin, holder) = match self.terminal_stdin.take() {
            Some((stdin, holder)) => (Some(stdin), holder),
            None => (None, None),
        };
        self.terminal = Some(Terminal {
            master,
            pending: if stdin.is_some() {
                vec![0; CHUNK]
            } else {
                Vec::new()
            },
            stdin,
            holder,
            start: 0,
            end: 0,
        });
        Ok(())
    }

    /// Adds what the IO waits for to `fds`, and what each entry is to `slots`.
    pub fn register<'a>(&'a self, fds: &mut Vec<PollFd<'a>>, slots: &mut Vec<Slot>) {
        for (i, s) in self.sources.iter().enumerate() {
            if s.open {
                fds.push(PollFd::new(s.file.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Source(i));
            }
        }
        if let Some(t) = &self.terminal {
            if t.start < t.end {
                fds.push(PollFd::new(t.master.as_fd(), PollFlags::POLLOUT));
                slots.push(Slot::MasterOut);
            } else if let Some(stdin) = &t.stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::StdinIn);
            }
        }
    }

    /// Serves what `poll` found ready: `revents[i]` is for `slots[i]`.
    pub fn service(&mut self, slots: &[Slot], revents: &[PollFlags]) {
        let ready =
            PollFlags::POLLIN | PollFlags::POLLOUT | PollFlags::POLLHUP | PollFlags::POLLERR;
        for (slot, rev) in slots.iter().zip(revents) {
            if !rev.intersects(ready) {
                continue;
            }
            match *slot {
                Slot::Source(i) => self.read_source(i),
                Slot::StdinIn => self.read_stdin(),
                Slot::MasterOut => self.write_master(),
            }
        }
        if let Sink::Log(log) = &mut self.sink {
            log.report(false);
        }
    }

    /// How long `poll` may wait: until a due `log-errors` update, else forever.
    pub fn timeout(&self) -> PollTimeout {
        match &self.sink {
            Sink::Log(log) => match log.report_due_in() {
                Some(d) => millis(d),
                None => PollTimeout::NONE,
            },
            _ => PollTimeout::NONE,
        }
    }

    /// Control `0`: close stdin. The held write end goes, so the process (or, with a
    /// terminal, the shim's copy) sees end-of-file once the clients' writers are gone.
    pub fn close_stdin(&mut self) {
        self.stdin_holder = None;
        if let Some(t) = &mut self.terminal {
            t.holder = None;
        }
        if let Some((_, holder)) = &mut self.terminal_stdin {
            *holder = None;
        }
    }

    /// Control `1 W H`: resize the terminal.
    pub fn resize(&mut self, width: u16, height: u16) {
        match &self.terminal {
            Some(t) => {
                if let Err(e) = console::resize(&t.master, width, height) {
                    eprintln!("corral-shim: resize the terminal to {width}x{height}: {e}");
                }
            }
            None if !self.resize_warned => {
                self.resize_warned = true;
                let why = if self.wants_terminal {
                    "not yet received"
                } else {
                    "this process has none"
                };
                eprintln!("corral-shim: resize ignored: no terminal ({why})");
            }
            None => {}
        }
    }

    /// After the process exited: reads the outputs until end-of-file, or for at most
    /// `within` when some other process still holds a write end (or the terminal), then
    /// writes the last report of lost bytes.
    pub fn drain(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.sources.iter().any(|s| s.open) {
                break;
            }
            let mut slots = Vec::new();
            let revents: Vec<PollFlags> = {
                let mut fds = Vec::new();
                for (i, s) in self.sources.iter().enumerate() {
                    if s.open {
                        fds.push(PollFd::new(s.file.as_fd(), PollFlags::POLLIN));
                        slots.push(Slot::Source(i));
                    }
                }
                match poll(&mut fds, millis(left)) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("corral-shim: poll while draining: {e}");
                        break;
                    }
                }
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                    .collect()
            };
            self.service(&slots, &revents);
        }
        if let Sink::Log(log) = &mut self.sink {
            log.report(true);
            if log.dropped() > 0 {
                eprintln!(
                    "corral-shim: {} bytes of output lost (log-errors)",
                    log.dropped()
                );
            }
        }
    }

    fn read_source(&mut self, i: usize) {
        let Some(source) = self.sources.get_mut(i) else {
            return;
        };
        let n = match (&source.file).read(&mut self.chunk) {
            Ok(0) => {
                source.open = false;
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            // EIO: the terminal's last slave is closed; anything else: it cannot be read.
            Err(e) => {
                if e.raw_os_error() != Some(libc::EIO) {
                    eprintln!("corral-shim: read {:?}: {e}", source.stream);
                }
                source.open = false;
                return;
            }
        };
        let data = &self.chunk[..n];
        match &mut self.sink {
            Sink::Log(log) => {
                let ts = cri::now();
                cri::encode(
                    &ts,
                    source.stream,
                    data,
                    &mut self.out,
                    |out| {
                        log.write(out);
                        out.clear();
                    },
                    CHUNK,
                );
                log.write(&self.out);
                self.out.clear();
            }
            Sink::Raw(file) => {
                // A reader that went away loses the output; the process goes on.
                let _ = file.write_all(data);
            }
            Sink::Discard => {}
        }
    }

    fn read_stdin(&mut self) {
        let Some(t) = &mut self.terminal else {
            return;
        };
        let Some(stdin) = &t.stdin else {
            return;
        };
        match (&*stdin).read(&mut t.pending) {
            Ok(0) => {
                t.stdin = None;
                t.holder = None;
                t.pending = Vec::new();
            }
            Ok(n) => {
                t.start = 0;
                t.end = n;
                self.write_master();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => {
                eprintln!("corral-shim: read stdin: {e}");
                t.stdin = None;
                t.holder = None;
            }
        }
    }

    fn write_master(&mut self) {
        let Some(t) = &mut self.terminal else {
            return;
        };
        while t.start < t.end {
            match (&t.master).write(&t.pending[t.start..t.end]) {
                Ok(n) => t.start += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // The terminal is gone: stdin has nowhere to go.
                    eprintln!("corral-shim: write to the terminal: {e}");
                    t.stdin = None;
                    t.holder = None;
                    t.start = 0;
                    t.end = 0;
                    return;
                }
            }
        }
        t.start = 0;
        t.end = 0;
    }
}

/// `d` as a poll timeout, rounded up to the next millisecond.
fn millis(d: Duration) -> PollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// Opens a fifo for writing without blocking on a missing reader (falls back to O_RDWR).
pub(super) fn open_writer(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        other => other,
    }
}

fn is_fifo(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn set_nonblock(file: &File, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    if let Ok(flags) = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL) {
        let mut flags = OFlag::from_bits_truncate(flags);
        flags.set(OFlag::O_NONBLOCK, on);
        let _ = fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

/// The container's stdout or stderr: /dev/null, a fifo (never blocks on a missing reader),
/// or a file (created, appended to).
fn open_output(path: Option<&Path>) -> std::io::Result<File> {
    let Some(path) = path else {
        return OpenOptions::new().write(true).open("/dev/null");
    };
    if is_fifo(path) {
        let file = open_writer(path)?;
        set_nonblock(&file, false);
        Ok(file)
    } else {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
    }
}

/// The container's stdin, and for a fifo a write end the shim holds so that the container
/// sees end-of-file only when asked to (control `0`), not when a client disconnects.
fn open_stdin(path: Option<&Path>) -> Result<(File, Option<File>), String> {
    let err = |e: std::io::Error| format!("open stdin: {e}");
    let Some(path) = path else {
        return Ok((File::open("/dev/null").map_err(err)?, None));
    };
    if is_fifo(path) {
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(err)?;
        let holder = OpenOptions::new().write(true).open(path).map_err(err)?;
        set_nonblock(&reader, false);
        Ok((reader, Some(holder)))
    } else {
        Ok((File::open(path).map_err(err)?, None))
    }
}
