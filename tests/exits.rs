//! Where an exit is learnt: a process whose output its shim does not own has its exit read
//! from the kernel by corrald (a pidfd on the process), so it is told even while its shim
//! cannot run; a logged process's exit waits for its shim, which drains the log first.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::rpc::Client;
use corral::{Event, EventFilter, Stdio, Topic};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::time::Duration;

fn all_default() -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn exits<'a>(events: &'a [Event], id: &str, process: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| {
            e.topic == Topic::TaskExit
                && e.container_id == id
                && e.process_id.as_deref() == Some(process)
        })
        .collect()
}

fn unlogged(d: &Daemon, name: &str) -> Stdio {
    Stdio {
        stdout: Some(d.path(&format!("{name}.out"))),
        stderr: Some(d.path(&format!("{name}.err"))),
        ..Stdio::default()
    }
}

fn stop(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    wait_until(LIVENESS, "the shim to stop", || {
        proc_entry(pid).is_some_and(|p| p.state == 'T')
    });
}

/// Lets stopped shims go on when dropped, so a failing test does not leave them stopped
/// (their containers could then never be deleted).
struct Stopped(Vec<i32>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
        }
    }
}

/// With their shims stopped, an unlogged init and an unlogged exec still have their exits
/// told, with the right codes, once each, and their waiters answered; the shims, let go,
/// add nothing. A logged container beside them is held until its shim runs.
#[test]
fn an_unlogged_exit_is_told_while_its_shim_is_stopped() {
    let d = Daemon::start("exits_kernel");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let free = unique_id("exit-free");
    let mut req = run_req(&free, &b);
    req.stdio = unlogged(&d, "init");
    let init_pid = d.create(req).unwrap().pid;
    let mut exec = exec_req(&free, "e1", &["sh", "-c", "read x; exit 7"]);
    exec.stdio = Stdio {
        stdin: Some(d.path("e1.in")),
        ..unlogged(&d, "e1")
    };
    nix::unistd::mkfifo(
        &d.path("e1.in"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // The exec's stdin is a fifo we write to (its shim holds another write end): it exits
    // when it reads a line, which needs no shim.
    let socket = d.socket.clone();
    let started = std::thread::spawn(move || Client::connect(&socket)?.exec(exec));
    let mut stdin = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path("e1.in"))
        .unwrap();
    let exec_pid = within(LIVENESS, "the exec", move || started.join().unwrap())
        .unwrap()
        .pid;
    let logged = unique_id("exit-logged");
    let logged_pid = d.run(&logged, &b).pid;
    let shims = [
        d.shim_pid("default", &free, "init"),
        d.shim_pid("default", &free, "e1"),
        d.shim_pid("default", &logged, "init"),
    ];
    let events = Events::subscribe(&d.socket, all_default());
    let _stopped = Stopped(shims.to_vec());
    for shim in shims {
        stop(shim);
    }

    stdin.write_all(b"go\n").unwrap();
    let seen = events.until("the exec's exit", |e| {
        e.topic == Topic::TaskExit && e.process_id.as_deref() == Some("e1")
    });
    assert_eq!(seen.last().unwrap().exit.map(|x| x.code), Some(7));
    assert_eq!(
        proc_entry(exec_pid as i32).map(|p| p.state),
        Some('Z'),
        "the exec should still be its stopped shim's zombie"
    );
    assert_eq!(d.wait_code("", &free, Some("e1")), 7);
    // The init of a pid namespace ends only once every process in it is reaped: the
    // exec's shim must reap its zombie before the init can die.
    kill(Pid::from_raw(shims[1]), Signal::SIGCONT).unwrap();
    wait_until(LIVENESS, "the exec's shim to end", || !alive(shims[1]));

    for pid in [init_pid, logged_pid] {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    let seen = events.until("the init's exit", |e| {
        e.topic == Topic::TaskExit && e.container_id == free
    });
    assert_eq!(seen.last().unwrap().exit.map(|x| x.code), Some(137));
    assert_eq!(d.wait_code("", &free, None), 137);
    // The logged one's exit waits for its shim (its log is complete first).
    wait_until(LIVENESS, "the logged process to die", || {
        proc_entry(logged_pid as i32).is_some_and(|p| p.state == 'Z')
    });
    let quiet = events.drain(Duration::from_millis(500));
    assert!(
        exits(&quiet, &logged, "init").is_empty(),
        "a logged exit told while its shim was stopped: {quiet:#?}"
    );

    for shim in [shims[0], shims[2]] {
        kill(Pid::from_raw(shim), Signal::SIGCONT).unwrap();
    }
    let seen = events.until("the logged exit", |e| {
        e.topic == Topic::TaskExit && e.container_id == logged
    });
    assert_eq!(seen.last().unwrap().exit.map(|x| x.code), Some(137));
    for shim in shims {
        wait_until(LIVENESS, "the shims to end", || !alive(shim));
    }
    let journal = d.replay(all_default());
    assert_eq!(exits(&journal, &free, "init").len(), 1, "{journal:#?}");
    assert_eq!(exits(&journal, &free, "e1").len(), 1, "{journal:#?}");
    assert_eq!(exits(&journal, &logged, "init").len(), 1, "{journal:#?}");
    // The shims' own records agree with what was told.
    let state = d.client().state("", &free).unwrap();
    assert_eq!(state.exit.map(|x| x.code), Some(137));
    for id in [&free, &logged] {
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
    let zombies = zombies_under(d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");
}
