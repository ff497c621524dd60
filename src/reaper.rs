//! Every child the daemon spawns (shims, runtime calls) is registered here before anything
//! can wait for it, and reaped by pid when SIGCHLD arrives ([`crate::actors::Reaper`]).
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

/// Reaps every registered child that has exited; called on SIGCHLD.
pub fn reap_registered() {
    let mut waiters = registry().lock().unwrap_or_else(|e| e.into_inner());
    let pids: Vec<i32> = waiters.keys().copied().collect();
    for pid in pids {
        reap_one(&mut waiters, pid);
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
