//! corral-shim: one small synchronous process per container process (init or exec).
//!
//! The daemon starts it in the process's [`ShimDir`] (the shim starts a session of its
//! own), with stdout a pipe that the shim answers once on (`ok <pid>` or `err <message>`)
//! and stderr its `shim.log`.
//! The shim makes itself a child subreaper, runs the runtime (`create`, `run --detach` or
//! `exec --detach`) with `--pid-file`, reaps every child, and when the container process
//! exits writes `exitStatus` (code, or 128 + signal) before it exits. It holds the write
//! end of the `exit` fifo for its whole life, so the daemon sees its death as a hang-up, and
//! reads the `control` fifo (`0 0 0`: close stdin; `1 W H`: resize the terminal). No actix,
//! no tokio, no JSON parser.
//!
//! With `--log` the shim owns the process's stdout and stderr (pipes it drains into a CRI
//! log: `cri.rs`, `log_file.rs`); with `--terminal` it receives the pty master over a
//! console socket (`console.rs`) and drains that. See `io.rs`.

mod args;
mod console;
mod cri;
mod io;
mod log_file;

pub use args::{Mode, ShimArgs};

use crate::layout::{proc_starttime, ShimDir};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the shim reads the outputs after the process exited when something else still
/// holds their write ends (a process the main one left behind).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs the shim; returns the shim's own exit code.
pub fn run(args: ShimArgs) -> i32 {
    // A session of our own, so that nothing aimed at the daemon's session or process group
    // (a terminal's hangup or Ctrl-C) reaches us. Done here rather than between the
    // daemon's fork and exec so that the daemon can spawn us without a fork of itself.
    let _ = nix::unistd::setsid();
    let mut sync = std::io::stdout();
    let entered = match &args.dir {
        Some(dir) => std::env::set_current_dir(dir)
            .map_err(|e| format!("cannot enter {}: {e}", dir.display())),
        None => Ok(()),
    };
    // Absolute: the runtime runs in the bundle directory, not in ours.
    let dir = ShimDir::new(std::env::current_dir().unwrap_or_else(|_| ".".into()));
    match entered.and_then(|()| supervise(&args, &dir, &mut sync)) {
        Ok(()) => 0,
        Err(msg) => {
            // The daemon may already have its answer; this is for shim.log.
            eprintln!("corral-shim: {msg}");
            let _ = writeln!(sync, "err {msg}");
            1
        }
    }
}

fn supervise(args: &ShimArgs, dir: &ShimDir, sync: &mut std::io::Stdout) -> Result<(), String> {
    // Out of corrald's cgroup first: the runtime, and the container until it has its own
    // cgroup, start where we are.
    if let Some(cgroup) = &args.cgroup {
        crate::cgroups::placement::enter(cgroup, std::process::id())?;
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("set subreaper: {e}"))?;
    // Block SIGCHLD before any child exists, so no exit is missed: it queues on the signalfd.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| format!("block SIGCHLD: {e}"))?;
    let mut sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    // SAFETY: setting a signal disposition to SIG_IGN runs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
    }

    // Our own pid file, before the runtime runs. The daemon writes it too, right after
    // spawning us; a daemon killed in between would leave a live shim without one, which
    // the next daemon takes for dead (and kills its container's process as an orphan).
    let me = std::process::id() as i32;
    if let Some(start) = proc_starttime(me) {
        let tmp = dir.path().join("shim.pid.own");
        if std::fs::write(&tmp, format!("{me} {start}")).is_ok() {
            let _ = std::fs::rename(&tmp, dir.shim_pid_file());
        }
    }

    // Our own directory, held open: the late exitStatus write goes into it or nowhere, never
    // into a new directory of the same name (a new container with the same id, a restart).
    let own_dir =
        File::open(dir.path()).map_err(|e| format!("open {}: {e}", dir.path().display()))?;
    let exit_fifo =
        io::open_writer(&dir.exit_fifo()).map_err(|e| format!("open exit fifo: {e}"))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.control_fifo())
        .map_err(|e| format!("open control fifo: {e}"))?;

    let (stdio, mut io) = io::prepare(args, dir)?;
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(dir.runtime_log())
        .arg("--log-format")
        .arg("json")
        .args(&args.runtime_args);
    match args.mode {
        Mode::Create => cmd.arg("create").arg("--bundle").arg(&args.bundle),
        Mode::Run => cmd
            .arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(&args.bundle),
        Mode::Exec => cmd
            .arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(dir.process_json()),
        Mode::Restore => cmd
            .arg("restore")
            .arg("--detach")
            .arg("--bundle")
            .arg(&args.bundle),
    };
    cmd.args(&args.verb_args);
    if let Some(console) = &stdio.console {
        cmd.arg("--console-socket").arg(&console.for_runtime);
    }
    cmd.arg("--pid-file")
        .arg(dir.pid_file())
        .arg(&args.id)
        .current_dir(&args.bundle)
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    crate::runtime::crun::prepare(&mut cmd, &args.runtime);
    let runtime = cmd
        .spawn()
        .map_err(|e| format!("start runtime {}: {e}", args.runtime.display()))?;
    // The container's copies of its stdio are its own now: with ours of the pipes' write
    // ends gone, their read ends see end-of-file when the container's are closed.
    drop(cmd);
    let runtime_pid = Pid::from_raw(runtime.id() as i32);
    let (code, terminal) = wait_runtime(
        runtime_pid,
        &mut sigfd,
        stdio.console,
        &mut io,
        args.console_size,
    )?;
    if code != 0 {
        let detail = dir.runtime_errors();
        return Err(format!(
            "runtime {} exited with status {code}: {}",
            args.mode.verb(),
            if detail.is_empty() {
                "no error in its log"
            } else {
                &detail
            }
        ));
    }
    terminal?;
    let pid = read_pid(dir)?;
    // Where the runtime left it in our cgroup (youki: name=systemd and the unified
    // hierarchy), it joins its own there too.
    crate::cgroups::placement::follow_runtime(pid as u32)?;
    if let Some(start) = proc_starttime(pid) {
        crate::layout::write_atomic(&dir.starttime_file(), start.to_string().as_bytes())
            .map_err(|e| format!("write starttime: {e}"))?;
    }
    let _ = writeln!(sync, "ok {pid}");
    let _ = sync.flush();
    // Never write to the daemon's pipe again: it may be gone by the time we exit.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }

    let code = reap_until_exit(pid, &mut sigfd, &control, &mut io)?;
    // The time of the exit, not of the end of the draining.
    let now = crate::types::now_ns();
    // The log is complete before anyone learns of the exit.
    io.drain(DRAIN_AFTER_EXIT);
    drop(io);
    // Tell the daemon first: the code and the time, then end-of-file. The durable record
    // follows, before this shim exits: a daemon that was down reads it from exitStatus.
    let mut exit_fifo = exit_fifo;
    let _ = exit_fifo.write_all(crate::layout::exit_message(code, now).as_bytes());
    drop(exit_fifo);
    // The daemon, just woken, often lands on this CPU: let it publish the exit before we
    // write the record and exit (about a quarter of a millisecond it would otherwise wait).
    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
    unsafe { libc::sched_yield() };
    let written =
        crate::layout::write_durable_at(&own_dir, "exitStatus", code.to_string().as_bytes());
    // Now the zombie (left for the daemon's sake by `reap_until_exit`) can go.
    let _ = waitpid(Pid::from_raw(pid), None);
    written.map_err(|e| format!("write exitStatus: {e}"))
}

/// Waits for the runtime to exit: its code, and whether the terminal (if the process has
/// one) was taken. The terminal is taken as soon as the runtime sends it, so that its size
/// is set before `run`'s process gets far (a `create`d one waits for `start` anyway).
fn wait_runtime(
    runtime: Pid,
    sigfd: &mut SignalFd,
    mut console: Option<console::ConsoleSocket>,
    io: &mut io::Io,
    size: Option<(u16, u16)>,
) -> Result<(i32, Result<(), String>), String> {
    let mut terminal = Ok(());
    loop {
        match waitpid(runtime, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(WaitStatus::Exited(_, code)) => {
                // It connected and sent before it exited, or never will.
                if code == 0 && console.is_some() {
                    terminal = io.start(console.take(), size);
                }
                return Ok((code, terminal));
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((128 + sig as i32, terminal)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the runtime: {e}")),
        }
        let sent = {
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = &console {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            fds.get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        };
        while let Ok(Some(_)) = sigfd.read_signal() {}
        if sent {
            terminal = io.start(console.take(), size);
        }
    }
}

/// Reaps every child until `main` exits; serves the control fifo and the IO meanwhile.
fn reap_until_exit(
    main: i32,
    sigfd: &mut SignalFd,
    control: &File,
    io: &mut io::Io,
) -> Result<u32, String> {
    let mut line = Vec::new();
    let mut slots = Vec::new();
    loop {
        // Reap first: the container may have exited before we got here. The main process
        // is only looked at (WNOWAIT) and stays a zombie until the daemon has been told:
        // reaping a pid namespace's init waits for an RCU grace period (a few hundred
        // microseconds), which is no part of telling. Other children are reaped at once.
        loop {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            match waitid(Id::All, flags) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == main => return Ok(code as u32),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == main => {
                    return Ok(128 + sig as u32)
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(other) => {
                    let reaped = other
                        .pid()
                        .map(|pid| waitpid(pid, Some(WaitPidFlag::WNOHANG)));
                    if !matches!(reaped, Some(Ok(status)) if status.pid().is_some()) {
                        break; // not reaped after all: wait for the next SIGCHLD
                    }
                }
                // Not our child (cannot happen while we are its subreaper); if it is gone
                // too, its status is lost for good: say so rather than wait forever.
                Err(Errno::ECHILD) if proc_starttime(main).is_none() => {
                    return Ok(crate::types::UNKNOWN_EXIT_CODE)
                }
                Err(Errno::ECHILD) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("waitid: {e}")),
            }
        }
        slots.clear();
        let revents: Vec<PollFlags> = {
            let mut fds = vec![
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
            ];
            io.register(&mut fds, &mut slots);
            match poll(&mut fds, io.timeout()) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        while let Ok(Some(_)) = sigfd.read_signal() {}
        if revents[1].contains(PollFlags::POLLIN) {
            let mut buf = [0u8; 256];
            let mut reader = control;
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                line.extend_from_slice(&buf[..n]);
            }
            while let Some(end) = line.iter().position(|&b| b == b'\n') {
                let msg: Vec<u8> = line.drain(..=end).collect();
                match parse_control(&msg) {
                    Some(Control::CloseStdin) => io.close_stdin(),
                    Some(Control::Resize(w, h)) => io.resize(w, h),
                    None => eprintln!(
                        "corral-shim: unknown control message {:?}",
                        String::from_utf8_lossy(&msg).trim_end()
                    ),
                }
            }
            // A line that never ends is not a message: do not grow without bound.
            if line.len() > 256 {
                line.clear();
            }
        }
        io.service(&slots, &revents[2..]);
    }
}

/// A message on the control fifo.
#[derive(Debug, PartialEq, Eq)]
enum Control {
    /// `0 0 0`: close the process's stdin.
    CloseStdin,
    /// `1 W H`: resize the terminal to W columns, H rows.
    Resize(u16, u16),
}

fn parse_control(line: &[u8]) -> Option<Control> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_ascii_whitespace();
    let kind = parts.next()?;
    let w = parts.next().and_then(|p| p.parse().ok());
    let h = parts.next().and_then(|p| p.parse().ok());
    match kind {
        "0" => Some(Control::CloseStdin),
        "1" => Some(Control::Resize(w?, h?)),
        _ => None,
    }
}

fn read_pid(dir: &ShimDir) -> Result<i32, String> {
    dir.read_pid()
        .ok_or_else(|| format!("runtime wrote no pid to {}", dir.pid_file().display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages() {
        assert_eq!(parse_control(b"0 0 0\n"), Some(Control::CloseStdin));
        assert_eq!(parse_control(b"1 120 40\n"), Some(Control::Resize(120, 40)));
        assert_eq!(parse_control(b"1 120\n"), None);
        assert_eq!(parse_control(b"1 x 40\n"), None);
        assert_eq!(parse_control(b"7 1 1\n"), None);
        assert_eq!(parse_control(b"\n"), None);
    }
}
