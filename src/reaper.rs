//! Every child the daemon spawns (shims, runtime calls) is registered here before anything
//! can wait for it, and reaped by pid when SIGCHLD arrives (the Reaper actor, `actors::Reaper`).
//!
//! Reaping is by registered pid (`waitpid(pid, WNOHANG)`), never `waitpid(-1)`: an
//! embedding host agent keeps its own children's statuses, and a status can never be stolen
//! from a waiter. A child that exits before it is registered is caught by the one
//! `waitpid` done right after registering; one that exits later raises SIGCHLD.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use tokio::sync::oneshot;

type Waiters = HashMap<i32, oneshot::Sender<i32>>;

fn registry() -> &'static Mutex<Waiters> {
    static REGISTRY: OnceLock<Mutex<Waiters>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A wait status as an exit code: the code, or 128 + signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Spawns `cmd` and registers the child; the receiver yields its exit code once reaped.
/// The returned `Child` must never be waited on: the reaper owns its status.
pub fn spawn(cmd: &mut Command) -> std::io::Result<(Child, oneshot::Receiver<i32>)> {
    let child = cmd.spawn()?;
    let (tx, rx) = oneshot::channel();
    let pid = child.id() as i32;
    let mut waiters = registry().lock().unwrap_or_else(|e| e.into_inner());
    waiters.insert(pid, tx);
    reap_one(&mut waiters, pid);
    Ok((child, rx))
}

/// Reaps every registered child that has exited; called on SIGCHLD (and once a second).
///
/// The kernel is asked which child has exited first (`waitid(P_ALL, WNOWAIT)`, which reaps
/// nothing), so that with a thousand shims registered a SIGCHLD costs a `waitid` per exited
/// child, not a `waitpid` per registered one. Only when an exited child is not ours (an
/// embedding host agent's) is every registered pid asked in turn.
pub fn reap_registered() {
    let mut waiters = registry().lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match exited_child() {
            None => return,
            Some(pid) if waiters.contains_key(&pid) => {
                reap_one(&mut waiters, pid);
                if waiters.contains_key(&pid) {
                    break; // not reaped after all: the scan below settles it
                }
            }
            Some(_) => break,
        }
    }
    let pids: Vec<i32> = waiters.keys().copied().collect();
    for pid in pids {
        reap_one(&mut waiters, pid);
    }
}

/// A child that has exited and not been reaped, without reaping it; `None` when there is
/// none (or no child at all).
pub fn exited_child() -> Option<i32> {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT reaps nothing; it fills `info`, which outlives the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc == -1 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        // SAFETY: waitid set `info` (si_pid stays 0 when no child has exited).
        let pid = unsafe { info.si_pid() };
        return (rc == 0 && pid > 0).then_some(pid);
    }
}

/// How many children are registered and not yet reaped.
pub fn pending() -> usize {
    registry().lock().map(|w| w.len()).unwrap_or(0)
}

fn reap_one(waiters: &mut Waiters, pid: i32) {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(status) => {
                let Some(code) = exit_code(status) else {
                    return; // stopped or continued: still ours to wait for
                };
                if let Some(tx) = waiters.remove(&pid) {
                    let _ = tx.send(code);
                }
                return;
            }
            Err(_) => {
                // ECHILD: not ours any more (someone else waited); report it as unknown.
                if let Some(tx) = waiters.remove(&pid) {
                    let _ = tx.send(crate::types::UNKNOWN_EXIT_CODE as i32);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Calls [`reap_registered`] until `rx` has the exit code (10 s at most).
    fn code_of(rx: &mut oneshot::Receiver<i32>) -> i32 {
        let t = Instant::now();
        loop {
            reap_registered();
            if let Ok(code) = rx.try_recv() {
                return code;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "never reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn registered_children_are_reaped_also_past_a_stranger_that_exited() {
        // Someone else's child (an embedding agent's), exited and not waited for yet: the
        // first exited child the kernel shows.
        let mut stranger = Command::new("true").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (_a, mut a) = spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let (_b, mut b) = spawn(Command::new("sh").args(["-c", "kill -9 $$"])).unwrap();
        assert_eq!(code_of(&mut a), 3);
        assert_eq!(code_of(&mut b), 128 + 9);
        // Its status was left for its owner.
        assert!(stranger.wait().unwrap().success());
        // Without a stranger: found by asking the kernel which child exited.
        let (_c, mut c) = spawn(Command::new("sh").args(["-c", "sleep 0.1; exit 5"])).unwrap();
        assert_eq!(code_of(&mut c), 5);
    }
}
