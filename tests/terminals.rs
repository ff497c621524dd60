//! corralctl in a real terminal (a pty this test holds the master of): `run -it` gives a
//! shell of our terminal's size, follows our resizes, passes Ctrl-C as a byte, detaches on
//! ctrl-p ctrl-q and `attach` gets the process back; `exec -it`; and without -t, signals
//! sent to corralctl reach the process and `--rm` still deletes.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{ContainerInfo, Status};
use nix::pty::{openpty, Winsize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one expected output may take.
const EXPECT: Duration = Duration::from_secs(15);

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// corralctl running on a pty: what it wrote so far, and its master to type into.
struct Term {
    master: File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    seen: usize,
}

impl Term {
    /// Runs `corralctl --socket S ARGS` as the session leader of a new pty of this size.
    fn spawn(d: &Daemon, args: &[&str], rows: u16, cols: u16) -> Term {
        let pty = openpty(Some(&winsize(rows, cols)), None).unwrap();
        let slave: OwnedFd = pty.slave;
        let mut cmd = Command::new(CORRALCTL);
        cmd.env_remove("CORRAL_SOCKET")
            .env_remove("CORRAL_NAMESPACE")
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the child makes the pty (its
        // stdin) its controlling terminal, as a login shell's terminal would be.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd); // our copies of the slave: the master reads EIO once corralctl is gone
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            child,
            output,
            seen: 0,
        }
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `bytes`.
    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits until `needle` appears after what earlier expects consumed.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + EXPECT;
        loop {
            {
                let out = self.output.lock().unwrap();
                let hay = &out[self.seen..];
                if let Some(i) = hay
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    self.seen += i + needle.len();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {EXPECT:?}; the terminal shows:\n{}",
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the terminal (the kernel sends corralctl SIGWINCH).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize from the struct, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits for corralctl to exit; its code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + EXPECT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "corralctl did not exit within {EXPECT:?}; the terminal shows:\n{}",
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state(d: &Daemon, id: &str) -> ContainerInfo {
    serde_json::from_str(&d.ctl_ok(&["state", id, "--json"])).unwrap()
}

/// `run -it sh`: a prompt; typed commands run; `stty size` is our terminal's size, and
/// follows a resize of it; `exit 3` ends corralctl with 3 and --rm deletes.
#[test]
fn run_it_gives_a_shell_of_our_size() {
    let d = Daemon::start("term_run_it");
    let b = d.bundle("shell", &["sh"]);
    let id = unique_id("shell");
    let mut t = Term::spawn(
        &d,
        &["run", "-it", "--rm", "--bundle", b.to_str().unwrap(), &id],
        30,
        100,
    );
    t.expect("# ");
    t.send(b"echo h''i\r");
    t.expect("hi\r\n");
    t.send(b"stty size\r");
    t.expect("30 100\r\n");
    assert!(state(&d, &id).terminal, "state does not say terminal");
    t.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    t.send(b"stty size\r");
    t.expect("40 120\r\n");
    t.send(b"exit 3\r");
    assert_eq!(t.wait(), 3, "terminal:\n{}", t.transcript());
    assert_eq!(code(&d.ctl(&["state", &id])), 125, "--rm left {id} behind");
}

/// Ctrl-C is a byte for the process's terminal: it interrupts the shell's `sleep`, not
/// corralctl.
#[test]
fn ctrl_c_interrupts_the_foreground_command() {
    let d = Daemon::start("term_ctrl_c");
    let b = d.bundle("shell", &["sh"]);
    let id = unique_id("ctrlc");
    let mut t = Term::spawn(
        &d,
        &["run", "-it", "--rm", "--bundle", b.to_str().unwrap(), &id],
        24,
        80,
    );
    t.expect("# ");
    t.send(b"sleep 100\r");
    t.expect("sleep 100\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    t.send(b"\x03");
    t.send(b"echo a''live\r");
    t.expect("alive\r\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    t.send(b"exit\r");
    assert_eq!(t.wait(), 0);
}

/// ctrl-p ctrl-q detaches (exit 0, the shell runs on); `attach` gets it back, and exits
/// with its code.
#[test]
fn detach_then_attach() {
    let d = Daemon::start("term_detach");
    let b = d.bundle("shell", &["sh"]);
    let id = unique_id("detach");
    let mut t = Term::spawn(
        &d,
        &["run", "-it", "--bundle", b.to_str().unwrap(), &id],
        24,
        80,
    );
    t.expect("# ");
    t.send(b"echo o''ne\r");
    t.expect("one\r\n");
    t.send(b"\x10\x11");
    assert_eq!(t.wait(), 0, "detach:\n{}", t.transcript());
    assert_eq!(state(&d, &id).status, Status::Running);

    let mut a = Term::spawn(&d, &["attach", &id], 24, 80);
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"echo t''wo\r");
    a.expect("two\r\n");
    a.send(b"exit 4\r");
    assert_eq!(a.wait(), 4, "attach:\n{}", a.transcript());
    assert_eq!(d.wait_code("", &id, None), 4);
    d.ctl_ok(&["rm", &id]);
}

/// `exec -it ID -- sh`: a shell in a running container; its code; then it is removed.
#[test]
fn exec_it_gives_a_shell() {
    let d = Daemon::start("term_exec_it");
    let b = d.bundle("sleeper", &["sleep", "100"]);
    let id = unique_id("execit");
    d.ctl_ok(&["run", "-d", "--bundle", b.to_str().unwrap(), &id]);
    let mut t = Term::spawn(&d, &["exec", "-it", &id, "--", "sh"], 24, 80);
    t.expect("# ");
    t.send(b"echo via''exec; stty size\r");
    t.expect("viaexec\r\n24 80\r\n");
    t.send(b"exit 2\r");
    assert_eq!(t.wait(), 2, "terminal:\n{}", t.transcript());
    assert!(state(&d, &id).execs.is_empty(), "the exec was not removed");
    d.ctl_ok(&["rm", "-f", &id]);
}

/// Without -t, SIGTERM to a foreground `run --rm` goes to the process (which traps it
/// and exits 9); corralctl exits with that code and deletes the container.
#[test]
fn signals_are_forwarded_without_a_terminal() {
    let d = Daemon::start("term_signals");
    let b = d.bundle(
        "trapper",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let id = unique_id("trapper");
    let mut child = Command::new(CORRALCTL)
        .arg("--socket")
        .arg(&d.socket)
        .args(["run", "--rm", "--bundle", b.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + EXPECT;
    while !String::from_utf8_lossy(&seen).contains("ready\n") {
        assert!(Instant::now() < deadline, "no ready: {seen:?}");
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "corralctl ended early: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let pid = child.id() as i32;
    let waited = within(EXPECT, "corralctl after SIGTERM", move || {
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest);
        (child.wait().unwrap(), rest)
    });
    let (status, rest) = waited;
    seen.extend_from_slice(&rest);
    assert_eq!(status.code(), Some(9), "pid {pid}: {status:?}");
    assert_eq!(String::from_utf8_lossy(&seen), "ready\ngot-term\n");
    assert_eq!(code(&d.ctl(&["state", &id])), 125, "--rm left {id} behind");
}

/// `run -i` without a terminal: our stdin goes to the process byte for byte and our
/// end-of-file closes its stdin; a process that exits before reading (its stdin closed
/// before corralctl attached) still has its output and code copied.
#[test]
fn run_i_pipes_stdin_and_survives_a_quick_process() {
    let d = Daemon::start("term_stdin");
    let cat = d.bundle("cat", &["sh", "-c", "cat; echo done"]);
    let id = unique_id("cat");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut child = Command::new(CORRALCTL)
        .arg("--socket")
        .arg(&d.socket)
        .args(["run", "-i", "--rm", "--bundle", cat.to_str().unwrap(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = data.clone();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&sent);
    });
    let out = within(EXPECT, "run -i cat", move || {
        child.wait_with_output().unwrap()
    });
    assert_eq!(code(&out), 0, "stderr {}", stderr(&out));
    let mut want = data;
    want.extend_from_slice(b"done\n");
    assert!(
        out.stdout == want,
        "{} bytes back of {}",
        out.stdout.len(),
        want.len()
    );

    let quick = d.bundle("quick", &["sh", "-c", "echo fast; exit 3"]);
    for n in 0..3 {
        let id = unique_id("quick");
        let out = d.ctl(&[
            "run",
            "-i",
            "--rm",
            "--bundle",
            quick.to_str().unwrap(),
            &id,
        ]);
        assert_eq!(
            (code(&out), stdout(&out).as_str()),
            (3, "fast\n"),
            "round {n}: {}",
            stderr(&out)
        );
    }
}
