//! corral-shim: one small synchronous process per container process (init or exec).
//!
//! The daemon starts it with `setsid`, in the process's [`ShimDir`], with stdout a pipe
//! that the shim answers once on (`ok <pid>` or `err <message>`) and stderr its `shim.log`.
//! The shim makes itself a child subreaper, runs the runtime (`create`, `run --detach` or
//! `exec --detach`) with `--pid-file`, reaps every child, and when the container process
//! exits writes `exitStatus` (code, or 128 + signal) before it exits. It holds the write
//! end of the `exit` fifo for its whole life, so the daemon sees its death as a hang-up, and
//! reads the `control` fifo (`0 0 0`: close stdin). No actix, no tokio, no JSON parser.

mod args;

pub use args::{Mode, ShimArgs};

use crate::layout::{proc_starttime, ShimDir};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the shim; returns the shim's own exit code.
pub fn run(args: ShimArgs) -> i32 {
    // Absolute: the runtime runs in the bundle directory, not in ours.
    let dir = ShimDir::new(std::env::current_dir().unwrap_or_else(|_| ".".into()));
    let mut sync = std::io::stdout();
    match supervise(&args, &dir, &mut sync) {
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
    let exit_fifo = open_writer(&dir.exit_fifo()).map_err(|e| format!("open exit fifo: {e}"))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.control_fifo())
        .map_err(|e| format!("open control fifo: {e}"))?;

    let (stdin, stdin_holder) = open_stdin(args.stdin.as_deref())?;
    let stdout = open_output(args.stdout.as_deref()).map_err(|e| format!("open stdout: {e}"))?;
    let stderr = open_output(args.stderr.as_deref()).map_err(|e| format!("open stderr: {e}"))?;

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
    cmd.arg("--pid-file")
        .arg(dir.pid_file())
        .arg(&args.id)
        .current_dir(&args.bundle)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let runtime = cmd
        .spawn()
        .map_err(|e| format!("start runtime {}: {e}", args.runtime.display()))?;
    // The container's copies of its stdio are its own now.
    drop(cmd);
    let runtime_pid = Pid::from_raw(runtime.id() as i32);
    let status = loop {
        match waitpid(runtime_pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let code = match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        other => return Err(format!("waiting for the runtime: {other:?}")),
    };
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
    let pid = read_pid(dir)?;
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

    let code = reap_until_exit(pid, &mut sigfd, &control, stdin_holder)?;
    // Tell the daemon first: the code and the time, then end-of-file. The durable record
    // follows, before this shim exits: a daemon that was down reads it from exitStatus.
    let now = crate::types::now_ns();
    let mut exit_fifo = exit_fifo;
    let _ = exit_fifo.write_all(crate::layout::exit_message(code, now).as_bytes());
    drop(exit_fifo);
    crate::layout::write_durable_at(&own_dir, "exitStatus", code.to_string().as_bytes())
        .map_err(|e| format!("write exitStatus: {e}"))?;
    Ok(())
}

/// Reaps every child until `main` exits; serves the control fifo meanwhile.
fn reap_until_exit(
    main: i32,
    sigfd: &mut SignalFd,
    control: &File,
    mut stdin_holder: Option<File>,
) -> Result<u32, String> {
    let mut line = Vec::new();
    loop {
        // Reap first: the container may have exited before we got here.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == main => return Ok(code as u32),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == main => {
                    return Ok(128 + sig as u32)
                }
                Ok(WaitStatus::StillAlive) => break,
                // Not our child (cannot happen while we are its subreaper); if it is gone
                // too, its status is lost for good: say so rather than wait forever.
                Err(Errno::ECHILD) if proc_starttime(main).is_none() => {
                    return Ok(crate::types::UNKNOWN_EXIT_CODE)
                }
                Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("waitpid: {e}")),
            }
        }
        let mut fds = [
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let control_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        while let Ok(Some(_)) = sigfd.read_signal() {}
        if control_ready {
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
                // "0 w h": close stdin; "1 w h": resize (no terminals yet).
                if msg.first() == Some(&b'0') {
                    stdin_holder = None;
                }
            }
        }
        let _ = &stdin_holder;
    }
}

fn read_pid(dir: &ShimDir) -> Result<i32, String> {
    dir.read_pid()
        .ok_or_else(|| format!("runtime wrote no pid to {}", dir.pid_file().display()))
}

/// Opens a fifo for writing without blocking on a missing reader (falls back to O_RDWR).
fn open_writer(path: &Path) -> std::io::Result<File> {
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

fn clear_nonblock(file: &File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(std::os::fd::AsRawFd::as_raw_fd(file), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
        let _ = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(file),
            FcntlArg::F_SETFL(flags),
        );
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
        clear_nonblock(&file);
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
        clear_nonblock(&reader);
        Ok((reader, Some(holder)))
    } else {
        Ok((File::open(path).map_err(err)?, None))
    }
}
