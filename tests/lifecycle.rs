//! A container's life as a user drives it: run, output, exit codes, exec, kill, wait, delete.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Error, ExecProcess, ExecRequest, Status, Stdio};
use std::time::Duration;

/// `corralctl run` copies the container's stdout and stderr and exits with its code.
#[test]
fn run_copies_output_and_exits_with_the_code() {
    let d = Daemon::start("run_copies_output");
    let ok = d.bundle("ok", &["sh", "-c", "echo hello; echo to-stderr >&2"]);
    let three = d.bundle("three", &["sh", "-c", "echo out; exit 3"]);

    let id = unique_id("run0");
    let out = d.ctl(&["run", &id, "--bundle", ok.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(
        stderr(&out).contains("to-stderr"),
        "stderr: {:?}",
        stderr(&out)
    );
    d.assert_no_leftovers("default", &id);

    let id3 = unique_id("run3");
    let out = d.ctl(&["run", &id3, "--bundle", three.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 3, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    d.assert_no_leftovers("default", &id3);

    // --rm removed both: nothing is listed.
    assert!(d.list_ids("default").is_empty());
}

/// `run --rm` of a container that cannot start exits 127 and leaves nothing; of an id
/// another container has, exits 125 and leaves that one alone (running, not deleted).
#[test]
fn run_rm_that_fails_to_create_leaves_nothing_and_touches_no_other() {
    let d = Daemon::start("run_rm_fails");
    let missing = d.bundle("missing", &["/no/such/binary"]);
    let id = unique_id("miss");
    let out = d.ctl(&["run", &id, "--bundle", missing.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 127, "stderr: {}", stderr(&out));
    d.assert_no_leftovers("default", &id);

    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let taken = unique_id("taken");
    d.ctl_ok(&["run", "-d", &taken, "--bundle", sleeper.to_str().unwrap()]);
    let out = d.ctl(&["run", &taken, "--bundle", sleeper.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 125, "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let state = d.client().state("", &taken).unwrap();
    assert_eq!(
        state.status,
        Status::Running,
        "run --rm touched another container"
    );
    d.ctl_ok(&["rm", "--force", &taken]);
    d.assert_no_leftovers("default", &taken);
}

/// Output larger than a pipe buffer arrives complete and in order.
#[test]
fn run_copies_large_output_completely() {
    let d = Daemon::start("run_large_output");
    let b = d.bundle("seq", &["seq", "1", "100000"]);
    let id = unique_id("seq");
    let out = d.ctl(&["run", &id, "--bundle", b.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    let got = stdout(&out);
    assert_eq!(got.len(), expected.len(), "output length differs");
    assert!(got == expected, "output differs from seq 1 100000");
    d.assert_no_leftovers("default", &id);
}

/// A container killed with SIGKILL exits 137; `wait` prints it and exits with it.
#[test]
fn killed_container_exits_137() {
    let d = Daemon::start("killed_137");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("kill");
    let out = d.ctl_ok(&["run", &id, "--bundle", b.to_str().unwrap(), "-d"]);
    assert!(
        out.contains(&id) && out.contains("running"),
        "run -d said {out:?}"
    );
    d.ctl_ok(&["kill", &id, "--signal", "KILL"]);
    let out = d.ctl(&["wait", &id]);
    assert_eq!(stdout(&out).trim(), "137");
    assert_eq!(code(&out), 137);
    let info = d.client().state("", &id).unwrap();
    assert_eq!(info.status, Status::Stopped);
    assert_eq!(info.exit.map(|e| e.code), Some(137));
    // A stopped container is deleted without --force.
    d.ctl_ok(&["delete", &id]);
    d.assert_no_leftovers("default", &id);
}

/// `corralctl exec` prints the exec's output and exits with the exec's own code.
#[test]
fn exec_through_the_cli_reports_output_and_code() {
    let d = Daemon::start("exec_cli");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("execcli");
    d.run(&id, &b);
    let out = d.ctl(&["exec", &id, "e1", "--", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(stdout(&out), "hi\n", "stderr: {}", stderr(&out));
    assert_eq!(code(&out), 7);
    let out = d.ctl(&["exec", &id, "e2", "--", "sh", "-c", "echo oops >&2"]);
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("oops"), "stderr: {:?}", stderr(&out));
    // The container itself is untouched by its execs; a foreground exec is removed once
    // it has exited.
    let info = d.client().state("", &id).unwrap();
    assert_eq!(info.status, Status::Running);
    assert!(info.execs.is_empty(), "execs left: {:?}", info.execs);
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// The same through the library's Client, with stdio files and a full process spec.
#[test]
fn exec_through_the_client_reports_output_and_code() {
    let d = Daemon::start("exec_client");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("execcl");
    d.run(&id, &b);
    let out = d.path("e1.out");
    let err = d.path("e1.err");
    let p = d
        .client()
        .exec(ExecRequest {
            namespace: String::new(),
            id: id.clone(),
            exec_id: "e1".into(),
            process: ExecProcess::Args(vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo there >&2; exit 7".into(),
            ]),
            stdio: Stdio {
                stdin: None,
                stdout: Some(out.clone()),
                stderr: Some(err.clone()),
                ..Stdio::default()
            },
        })
        .unwrap();
    assert_eq!(p.id, "e1");
    assert!(p.pid > 0);
    assert_eq!(d.wait_code("", &id, Some("e1")), 7);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hi\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "there\n");

    // A full OCI process: its own env and cwd.
    let spec = serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo $GREETING; pwd; exit 9"],
        "env": ["PATH=/bin", "GREETING=bonjour"],
        "cwd": "/tmp"
    });
    let out2 = d.path("e2.out");
    d.client()
        .exec(ExecRequest {
            namespace: String::new(),
            id: id.clone(),
            exec_id: "e2".into(),
            process: ExecProcess::SpecJson(spec.to_string()),
            stdio: Stdio {
                stdout: Some(out2.clone()),
                ..Default::default()
            },
        })
        .unwrap();
    assert_eq!(d.wait_code("", &id, Some("e2")), 9);
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), "bonjour\n/tmp\n");

    // Waiting again on an exited exec returns the same code.
    assert_eq!(d.wait_code("", &id, Some("e1")), 7);
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// `kill --all` reaches the execs too: every process exits 137 and every wait returns.
#[test]
fn kill_all_kills_every_process() {
    let d = Daemon::start("kill_all");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("killall");
    let info = d.run(&id, &b);
    for e in ["e1", "e2"] {
        d.client()
            .exec(ExecRequest {
                namespace: String::new(),
                id: id.clone(),
                exec_id: e.into(),
                process: ExecProcess::Args(vec!["sleep".into(), "1000".into()]),
                stdio: Stdio::default(),
            })
            .unwrap();
    }
    let mut pids: Vec<(u32, Option<String>)> = d
        .client()
        .pids("", &id)
        .unwrap()
        .into_iter()
        .map(|p| (p.pid, p.process_id))
        .collect();
    pids.sort_by(|a, b| a.1.cmp(&b.1));
    let names: Vec<Option<&str>> = pids.iter().map(|p| p.1.as_deref()).collect();
    assert_eq!(
        names,
        vec![Some("e1"), Some("e2"), Some("init")],
        "pids: {pids:?}"
    );
    assert!(pids.iter().any(|p| p.0 == info.pid));

    d.ctl_ok(&["kill", &id, "--all", "--signal", "KILL"]);
    assert_eq!(d.wait_code("", &id, Some("e1")), 137);
    assert_eq!(d.wait_code("", &id, Some("e2")), 137);
    assert_eq!(d.wait_code("", &id, None), 137);
    for (pid, _) in &pids {
        wait_until(LIVENESS, &format!("pid {pid} to be gone"), || {
            !alive(*pid as i32)
        });
    }
    let info = d.client().state("", &id).unwrap();
    assert_eq!(info.status, Status::Stopped);
    assert!(info.execs.iter().all(|p| p.status == Status::Stopped));
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// Deleting a running container is refused (Client and CLI) until --force, which kills it
/// (137) and removes everything.
#[test]
fn delete_of_a_running_container_needs_force() {
    let d = Daemon::start("delete_force");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("delforce");
    let info = d.run(&id, &b);
    let events = Events::subscribe(
        &d.socket,
        corral::EventFilter {
            namespace: Some("default".into()),
            container_id: Some(id.clone()),
            ..Default::default()
        },
    );

    match d.delete("", &id, false) {
        Err(Error::WrongState(msg)) => {
            assert!(msg.contains("running"), "{msg}");
            assert!(msg.contains(&id), "{msg}");
        }
        other => panic!("delete of a running container gave {other:?}"),
    }
    let out = d.ctl(&["delete", &id]);
    assert_ne!(code(&out), 0);
    let err = stderr(&out);
    assert!(
        err.contains("running") && err.contains("--force"),
        "stderr: {err:?}"
    );
    assert!(stdout(&out).is_empty());
    // Still running and untouched.
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Running);
    assert!(alive(info.pid as i32));

    d.ctl_ok(&["delete", &id, "--force"]);
    let seen = events.until("/tasks/delete", |e| e.topic == corral::Topic::TaskDelete);
    let exit = seen
        .iter()
        .find(|e| e.topic == corral::Topic::TaskExit)
        .unwrap_or_else(|| panic!("no /tasks/exit before /tasks/delete: {seen:#?}"));
    assert_eq!(exit.exit.map(|e| e.code), Some(137));
    assert_eq!(seen.last().unwrap().exit.map(|e| e.code), Some(137));
    assert!(!alive(info.pid as i32));
    match d.client().state("", &id) {
        Err(Error::NotFound(_)) => {}
        other => panic!("state after delete gave {other:?}"),
    }
    d.assert_no_leftovers("default", &id);
}

/// `wait` on a container that has already exited returns its code at once, every time.
#[test]
fn wait_after_exit_returns_the_code_again() {
    let d = Daemon::start("wait_after_exit");
    let b = d.bundle("five", &["sh", "-c", "exit 5"]);
    let id = unique_id("waitx");
    d.run(&id, &b);
    let first = d.wait("", &id, None).unwrap();
    assert_eq!(first.code, 5);
    assert!(first.exited_at_ns > 0);
    // Long after the exit, from another connection, twice.
    let second = d.wait("", &id, None).unwrap();
    let third = d.wait("", &id, None).unwrap();
    assert_eq!(second, first);
    assert_eq!(third, first);
    let out = d.ctl(&["wait", &id]);
    assert_eq!(
        (code(&out), stdout(&out).trim().to_string()),
        (5, "5".into())
    );
    let info = d.client().state("", &id).unwrap();
    assert_eq!(info.status, Status::Stopped);
    assert_eq!(info.exit, Some(first));
    d.delete("", &id, false).unwrap();
    // Once deleted, waiting is an error, not a hang.
    match d.wait("", &id, None) {
        Err(Error::NotFound(_)) => {}
        other => panic!("wait on a deleted container gave {other:?}"),
    }
    d.assert_no_leftovers("default", &id);
}

/// Several clients waiting on one container are all released by its exit, with its own
/// code (a SIGTERM it traps).
#[test]
fn every_waiter_is_released_with_the_code() {
    let d = Daemon::start("many_waiters");
    let b = d.bundle(
        "trap",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; sleep 1000 & wait",
        ],
    );
    let id = unique_id("waiters");
    let out = d.path("trap.out");
    let mut req = run_req(&id, &b);
    req.stdio.stdout = Some(out.clone());
    d.create(req).unwrap();
    // The trap is set once it says so; a pid 1 ignores TERM without one.
    wait_until(LIVENESS, "the container to be ready", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready"))
    });
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let socket = d.socket.clone();
            let id = id.clone();
            std::thread::spawn(move || corral::rpc::Client::connect(&socket)?.wait("", &id, None))
        })
        .collect();
    // Give the waiters a moment to be waiting (if not, they still must get the code).
    std::thread::sleep(Duration::from_millis(200));
    d.ctl_ok(&["kill", &id]); // SIGTERM by default
    for w in waiters {
        let exit = within(LIVENESS, "a waiter", move || w.join().unwrap()).unwrap();
        assert_eq!(exit.code, 42);
    }
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// create (without start) then start: the process runs only after start; start twice is
/// refused.
#[test]
fn create_then_start() {
    let d = Daemon::start("create_then_start");
    let b = d.bundle("hello", &["sh", "-c", "echo started; exit 4"]);
    let id = unique_id("cstart");
    let out = d.path("out");
    let mut req = run_req(&id, &b);
    req.start = false;
    req.stdio.stdout = Some(out.clone());
    let info = d.create(req).unwrap();
    assert_eq!(info.status, Status::Created);
    assert!(info.pid > 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "",
        "the process ran before start"
    );
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Created);

    let started = d.client().start("", &id).unwrap();
    assert_eq!(started.pid, info.pid);
    assert_eq!(d.wait_code("", &id, None), 4);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "started\n");
    match d.client().start("", &id) {
        Err(Error::WrongState(_)) => {}
        other => panic!("second start gave {other:?}"),
    }
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A created container that was never started can be deleted, and leaves nothing.
#[test]
fn delete_of_a_created_container() {
    let d = Daemon::start("delete_created");
    let b = d.bundle("never", &["sh", "-c", "echo ran"]);
    let id = unique_id("created");
    let out = d.path("out");
    let mut req = run_req(&id, &b);
    req.start = false;
    req.stdio.stdout = Some(out.clone());
    let info = d.create(req).unwrap();
    d.delete("", &id, false).unwrap();
    assert!(
        !alive(info.pid as i32),
        "the container's process survived delete"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "");
    assert!(d.list_ids("default").is_empty());
    d.assert_no_leftovers("default", &id);
}

/// After delete nothing of the container is left: state dir, runc state, cgroups, shims
/// (init's and the execs').
#[test]
fn nothing_left_after_delete() {
    let d = Daemon::start("nothing_left");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("noleft");
    let info = d.run(&id, &b);
    let state = d.container_state_dir("default", &id);
    assert!(state.join("state.json").is_file());
    assert!(d.runc_state_dir("default", &id).is_dir());
    assert!(!cgroup_dirs(&id).is_empty(), "no cgroup named {id}");
    let out = d.ctl(&["exec", &id, "quick", "--", "true"]);
    assert_eq!(code(&out), 0);
    d.client()
        .exec(ExecRequest {
            namespace: String::new(),
            id: id.clone(),
            exec_id: "slow".into(),
            process: ExecProcess::Args(vec!["sleep".into(), "1000".into()]),
            stdio: Stdio::default(),
        })
        .unwrap();
    let shims: Vec<i32> = processes_in(&state)
        .into_iter()
        .filter(|p| p.comm == "corral-shim")
        .map(|p| p.pid)
        .collect();
    assert_eq!(
        shims.len(),
        2,
        "expected the init and exec shims in {}",
        state.display()
    );

    d.client().kill(kill_init_req(&id)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    // The exec died with the container's pid namespace.
    assert_eq!(d.wait_code("", &id, Some("slow")), 137);
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
    assert!(!alive(info.pid as i32));
    for pid in shims {
        assert!(!alive(pid), "shim {pid} outlived its container");
    }
}

/// stdin from a file is read to its end; from a fifo it stays open (the shim holds a write
/// end) until close-stdin, which lets the process see end-of-file and exit.
#[test]
fn stdin_from_a_file_and_from_a_fifo_with_close_stdin() {
    let d = Daemon::start("stdin");
    let b = d.bundle("cat", &["cat"]);
    let input = d.path("in.txt");
    std::fs::write(&input, "from a file\n").unwrap();
    let id = unique_id("stdinfile");
    let out = d.path("file.out");
    let mut req = run_req(&id, &b);
    req.stdio.stdin = Some(input);
    req.stdio.stdout = Some(out.clone());
    d.create(req).unwrap();
    assert_eq!(d.wait_code("", &id, None), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "from a file\n");
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);

    let fifo = d.path("in.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let id = unique_id("stdinfifo");
    let out = d.path("fifo.out");
    let mut req = run_req(&id, &b);
    req.stdio.stdin = Some(fifo.clone());
    req.stdio.stdout = Some(out.clone());
    d.create(req).unwrap();
    std::fs::write(&fifo, "through a fifo\n").unwrap();
    wait_until(LIVENESS, "cat to copy its input", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s == "through a fifo\n")
    });
    // Our writer is gone, but cat must not see end-of-file before close-stdin.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Running);
    d.ctl_ok(&["close-stdin", &id]);
    assert_eq!(d.wait_code("", &id, None), 0);
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A wait in progress when the container is force-deleted is answered with the exit (137),
/// not left hanging.
#[test]
fn a_pending_wait_is_answered_by_a_forced_delete() {
    let d = Daemon::start("wait_then_delete");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("waitdel");
    d.run(&id, &b);
    let waiter = {
        let (socket, id) = (d.socket.clone(), id.clone());
        std::thread::spawn(move || corral::rpc::Client::connect(&socket)?.wait("", &id, None))
    };
    std::thread::sleep(Duration::from_millis(200));
    let info = d.delete("", &id, true).unwrap();
    assert_eq!(info.exit.map(|e| e.code), Some(137));
    let exit = within(LIVENESS, "the pending wait", move || waiter.join().unwrap());
    assert_eq!(exit.map(|e| e.code), Ok(137));
    d.assert_no_leftovers("default", &id);
}

/// Signalling one exec leaves the container and its other processes alone.
#[test]
fn kill_of_one_exec_leaves_the_rest_running() {
    let d = Daemon::start("kill_one_exec");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("killexec");
    let info = d.run(&id, &b);
    for e in ["victim", "bystander"] {
        d.ctl_ok(&["exec", &id, e, "-d", "--", "sleep", "1000"]);
    }
    d.ctl_ok(&["kill", &id, "--exec", "victim", "--signal", "KILL"]);
    let out = d.ctl(&["wait", &id, "--exec", "victim"]);
    assert_eq!(
        (code(&out), stdout(&out).trim().to_string()),
        (137, "137".into())
    );
    let s = d.client().state("", &id).unwrap();
    assert_eq!(s.status, Status::Running);
    assert!(alive(info.pid as i32));
    let bystander = s.execs.iter().find(|p| p.id == "bystander").unwrap();
    assert_eq!(bystander.status, Status::Running);
    assert!(alive(bystander.pid as i32));
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}
