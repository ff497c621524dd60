//! Joining a process's stdio from this terminal (`run` and `exec` in the foreground,
//! `attach`): its output to ours byte for byte, our stdin to it, our terminal in raw mode
//! while it has a pseudo-terminal, SIGWINCH as a resize, other signals forwarded to it, and
//! the detach keys.
//!
//! Signals are blocked in every thread and taken by one thread with `sigwait`, so none of
//! them can kill corralctl with its terminal left raw; the raw mode is undone by a guard on
//! every return, and again by [`restore_terminal`] before the process exits.

use crate::Ctl;
use corral::rpc::{AttachInput, Client};
use corral::*;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{mpsc, Arc, Mutex};

/// The signals passed on to the attached process (SIGWINCH is a resize instead).
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// How one attach behaves.
pub struct Options {
    /// Where the output starts.
    pub from: AttachFrom,
    /// Send our stdin to the process (it has `open_stdin`).
    pub stdin: bool,
    /// The process has a pseudo-terminal: raw mode (when our stdin is a terminal too) and
    /// resizes.
    pub tty: bool,
    /// The bytes that detach, or none.
    pub detach_keys: Vec<u8>,
}

/// How an attach ended.
pub enum Ended {
    /// The process exited.
    Exited(ExitStatus),
    /// The user typed the detach keys: the process runs on.
    Detached,
}

/// The signal set corralctl takes itself while attached.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks the signals an attach handles, in this thread and every thread it starts later:
/// call it before starting the process (a Ctrl-C while it starts is then forwarded once
/// it runs, not lost with the container left behind).
pub fn block_signals() {
    let _ = handled().thread_block();
}

/// Parses docker's detach keys: `ctrl-p,ctrl-q`, single characters, or `` for none.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|key| {
            if let Some(c) = key.strip_prefix("ctrl-") {
                match c.as_bytes() {
                    [b] if b.is_ascii_alphabetic() => Ok(b.to_ascii_lowercase() - b'a' + 1),
                    [b @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(b - b'@'),
                    _ => Err(format!(
                        "detach key {key:?}: ctrl- takes a-z, @, [, \\, ], ^ or _"
                    )),
                }
            } else if key.len() == 1 && key.is_ascii() {
                Ok(key.as_bytes()[0])
            } else {
                Err(format!(
                    "detach key {key:?} is neither a character nor ctrl-<char>"
                ))
            }
        })
        .collect()
}

/// Finds the detach keys in a stream of input, holding back a partial match until the
/// next byte shows whether it was one.
pub struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    /// A matcher for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        DetachMatcher { keys, matched: 0 }
    }

    /// The bytes of `data` to pass on, and whether the keys were typed (what follows them
    /// is dropped).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return (out, false);
        }
        for &b in data {
            if b != self.keys[self.matched] {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b != self.keys[0] {
                    out.push(b);
                    continue;
                }
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                return (out, true);
            }
        }
        (out, false)
    }
}

/// The terminal settings to put back, while our terminal is raw.
static SAVED_TERMIOS: Mutex<Option<Termios>> = Mutex::new(None);

/// Puts our terminal back as it was before raw mode (a no-op when it is not raw).
pub fn restore_terminal() {
    let saved = SAVED_TERMIOS.lock().ok().and_then(|mut g| g.take());
    if let Some(t) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &t);
    }
}

/// Our terminal in raw mode while it lives (every byte, Ctrl-C included, goes to the
/// process, whose own terminal interprets it).
struct RawMode;

impl RawMode {
    /// Raw mode if our stdin is a terminal; `None` if it is not (or cannot be set).
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false) {
            return None;
        }
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if let Ok(mut g) = SAVED_TERMIOS.lock() {
            *g = Some(saved);
        }
        if termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw).is_err() {
            restore_terminal();
            return None;
        }
        Some(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The size of our terminal (stdin's, else stdout's), if we have one.
pub fn terminal_size() -> Option<ConsoleSize> {
    [libc::STDIN_FILENO, libc::STDOUT_FILENO]
        .into_iter()
        .find_map(|fd| {
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which lives
            // for the call; on a descriptor that is not a terminal it fails with ENOTTY.
            let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
            (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some(ConsoleSize {
                width: ws.ws_col,
                height: ws.ws_row,
            })
        })
}

/// Attaches to process `exec_id` (None: the init) of container `id` and copies until it
/// exits or the user detaches.
pub fn attach(ctl: &Ctl, id: &str, exec_id: Option<&str>, opts: Options) -> Result<Ended, Error> {
    ignore_sigpipe();
    let request = AttachRequest {
        namespace: ctl.namespace.clone(),
        id: id.to_string(),
        exec_id: exec_id.map(str::to_string),
        stdin: opts.stdin,
        from: opts.from,
    };
    let attached = ctl.client()?.attach(request.clone())?;
    follow(ctl, id, exec_id, opts, attached, Some(request))
}

/// Copies the attach of a `Run` (made by [`Client::run`] after [`ignore_sigpipe`]) to
/// the init of container `id` until it exits or the user detaches.
pub fn run(
    ctl: &Ctl,
    id: &str,
    opts: Options,
    attached: corral::rpc::Attached,
) -> Result<Ended, Error> {
    follow(ctl, id, None, opts, attached, None)
}

/// Our signals taken (see [`block_signals`]), and SIGPIPE ignored: a reader of our output
/// that goes away (`| head`) must not kill us with the terminal raw or the container left
/// behind: the write fails instead, and we drain to the exit.
pub fn ignore_sigpipe() {
    block_signals();
    // SAFETY: setting a signal's disposition to ignore runs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
    }
}

/// Copies an attach (our stdin to it, its output to ours, signals and resizes) until the
/// process exits or the user detaches; `again` is the `Attach` to make again without stdin
/// if its stdin turns out closed (none for a `Run`).
fn follow(
    ctl: &Ctl,
    id: &str,
    exec_id: Option<&str>,
    opts: Options,
    attached: corral::rpc::Attached,
    again: Option<AttachRequest>,
) -> Result<Ended, Error> {
    let input = Arc::new(Mutex::new(attached.input()?));
    let raw = if opts.tty && opts.stdin {
        RawMode::enter()
    } else {
        None
    };
    let target = Target {
        socket: ctl.socket.clone(),
        namespace: ctl.namespace.clone(),
        id: id.to_string(),
        exec_id: exec_id.map(str::to_string),
    };
    if opts.tty {
        // The process's terminal takes our size (an attach comes from another terminal).
        if let Some(size) = terminal_size() {
            target.resize(&input, size);
        }
    }
    let (tx, rx) = mpsc::channel();
    {
        let target = target.clone();
        let input = input.clone();
        let tty = opts.tty;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || take_signals(target, input, tty))
            .map_err(|e| Error::Internal(format!("start the signal thread: {e}")))?;
    }
    if opts.stdin {
        let tx = tx.clone();
        let input = input.clone();
        let keys = opts.detach_keys;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || copy_stdin(input, DetachMatcher::new(keys), tx))
            .map_err(|e| Error::Internal(format!("start the stdin thread: {e}")))?;
    }
    let ended = if opts.stdin {
        // Two ends race, the output's (the exit) and the stdin's (the detach keys).
        let socket = ctl.socket.clone();
        std::thread::Builder::new()
            .name("output".into())
            .spawn(move || {
                let _ = tx.send(copy_output_retrying(attached, again, &socket));
            })
            .map_err(|e| Error::Internal(format!("start the output thread: {e}")))?;
        rx.recv()
            .unwrap_or_else(|_| Err(Error::Internal("the attach ended without the exit".into())))
    } else {
        // Only the output can end it: copied here, a thread fewer to start.
        drop(tx);
        copy_output_retrying(attached, again, &ctl.socket)
    };
    drop(raw);
    ended
}

/// Names the attached process, for the requests made beside the attach.
#[derive(Clone)]
struct Target {
    socket: std::path::PathBuf,
    namespace: String,
    id: String,
    exec_id: Option<String>,
}

impl Target {
    fn resize(&self, input: &Mutex<AttachInput>, size: ConsoleSize) {
        if let Ok(mut input) = input.lock() {
            let _ = input.resize(&self.namespace, &self.id, self.exec_id.as_deref(), size);
        }
    }

    /// Signals the process on a connection of its own (the attach's is busy reading).
    fn kill(&self, signal: i32) {
        let sent = Client::connect(&self.socket).and_then(|mut c| {
            c.kill(KillRequest {
                namespace: self.namespace.clone(),
                id: self.id.clone(),
                exec_id: self.exec_id.clone(),
                signal,
                all: false,
            })
        });
        // The process may have exited meanwhile: its exit comes through the attach.
        if let Err(e) = sent {
            if !matches!(e, Error::NotFound(_) | Error::WrongState(_)) {
                eprint!("corralctl: forward signal {signal}: {e}\r\n");
            }
        }
    }
}

/// The signal thread: SIGWINCH resizes the process's terminal, the others are sent to the
/// process. Runs until corralctl exits.
fn take_signals(target: Target, input: Arc<Mutex<AttachInput>>, tty: bool) {
    let set = handled();
    loop {
        let Ok(signal) = set.wait() else {
            return;
        };
        if signal == Signal::SIGWINCH {
            if tty {
                if let Some(size) = terminal_size() {
                    target.resize(&input, size);
                }
            }
            continue;
        }
        target.kill(signal as i32);
    }
}

/// The stdin thread: our stdin to the process until end-of-file (then its stdin is
/// closed) or the detach keys.
fn copy_stdin(
    input: Arc<Mutex<AttachInput>>,
    mut keys: DetachMatcher,
    tx: mpsc::Sender<Result<Ended, Error>>,
) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let send = |f: &mut dyn FnMut(&mut AttachInput) -> Result<(), Error>| {
            input.lock().is_ok_and(|mut i| f(&mut i).is_ok())
        };
        if n == 0 {
            send(&mut |i| i.close());
            return;
        }
        let (data, detach) = keys.feed(&buf[..n]);
        if !data.is_empty() && !send(&mut |i| i.write(&data)) {
            return;
        }
        if detach {
            let _ = tx.send(Ok(Ended::Detached));
            return;
        }
    }
}

/// The output thread: [`copy_output`]; if the process's stdin was closed before we came
/// (a quick process may have run to its end), once more without stdin: there is nothing to
/// send it, but its output and exit are still to come.
fn copy_output_retrying(
    attached: corral::rpc::Attached,
    again: Option<AttachRequest>,
    socket: &std::path::Path,
) -> Result<Ended, Error> {
    match (copy_output(attached), again) {
        (Err(Error::WrongState(m)), Some(request))
            if request.stdin && m.contains("stdin is closed") =>
        {
            let again = AttachRequest {
                stdin: false,
                ..request
            };
            copy_output(Client::connect(socket)?.attach(again)?)
        }
        (other, _) => other,
    }
}

/// The output thread: the process's output to ours until its exit (then, for a `Run`
/// that removes, the delete's outcome: an error if it failed).
fn copy_output(mut attached: corral::rpc::Attached) -> Result<Ended, Error> {
    for item in attached.by_ref() {
        match item? {
            AttachItem::Output { stderr, data } => {
                let written = if stderr {
                    let mut err = std::io::stderr().lock();
                    err.write_all(&data).and_then(|()| err.flush())
                } else {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data).and_then(|()| out.flush())
                };
                // Our reader went away (`| head`): keep draining, so the exit still comes.
                let _ = written;
            }
            AttachItem::Exit(exit) => {
                // A `Run` that removes: the exit code is kept in the delete's error.
                if let Some(Err(e)) = attached.removed() {
                    return Err(e.context(&format!(
                        "it exited with code {}, then --rm could not delete it",
                        exit.code
                    )));
                }
                return Ok(Ended::Exited(exit));
            }
        }
    }
    Err(Error::Internal(
        "the attach ended without the process's exit".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Ok(vec![0x10, 0x11]));
        assert_eq!(parse_detach_keys("ctrl-P,a"), Ok(vec![0x10, b'a']));
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-_"), Ok(vec![0, 0x1f]));
        assert_eq!(parse_detach_keys(""), Ok(vec![]));
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn detach_matcher_holds_a_partial_match_and_releases_it() {
        let mut m = DetachMatcher::new(vec![0x10, 0x11]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(m.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11rest"), (Vec::new(), true));
        let mut none = DetachMatcher::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
