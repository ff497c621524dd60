//! Checkpoint and restore with the real CRIU. The test container appends an increasing
//! counter to /count in its rootfs every 100 ms: a restored container must go on from
//! where its checkpoint was taken, with no gap and no reset.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::checkpoint::{CheckpointInfo, CheckpointOptions};
use corral::{Error, EventFilter, Status, Topic};
use std::path::{Path, PathBuf};
use std::time::Duration;

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i >> /count; sleep 0.1; done";

fn only(id: &str) -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        container_id: Some(id.to_string()),
        ..Default::default()
    }
}

fn counter_bundle(d: &Daemon, name: &str) -> (PathBuf, PathBuf) {
    let b = d.bundle(name, &["sh", "-c", COUNTER]);
    let count = b.join("rootfs/count");
    (b, count)
}

/// Waits until the counter file reaches `n`.
fn wait_count(count: &Path, n: u64) {
    wait_until(
        LIVENESS,
        &format!("{} to count to {n}", count.display()),
        || counter_last(count) >= n,
    );
}

/// Panics unless the counter stays where it is for a while.
fn assert_frozen(count: &Path, what: &str) -> u64 {
    let before = std::fs::read(count).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        std::fs::read(count).unwrap(),
        before,
        "{what}: the counter moved"
    );
    counter_last(count)
}

fn exit_ckpt() -> CheckpointOptions {
    CheckpointOptions {
        exit: true,
        ..Default::default()
    }
}

fn checkpoint_names(d: &Daemon, id: &str) -> Vec<String> {
    d.client()
        .checkpoints("", id)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// checkpoint --exit stops the container (exit event) and the counter with it; a restore
/// under the same id goes on counting from there; a checkpoint of the restored container
/// restores the same way.
#[test]
fn checkpoint_exit_then_restore_continues_the_count() {
    let mut d = Daemon::start("ckpt_exit_restore");
    let (b, count) = counter_bundle(&d, "counter");
    let id = unique_id("ckexit");
    let events = Events::subscribe(&d.socket, only(&id));
    d.run(&id, &b);
    wait_count(&count, 5);

    let info = d
        .client()
        .checkpoint("", &id, "first", exit_ckpt())
        .unwrap();
    assert_eq!((info.name.as_str(), info.options.exit), ("first", true));
    let seen = events.until("the exit after checkpoint --exit", |e| {
        e.topic == Topic::TaskExit
    });
    let more = events.drain(Duration::from_millis(300));
    let all: Vec<_> = seen.iter().chain(&more).collect();
    let checkpointed: Vec<_> = all
        .iter()
        .filter(|e| e.topic == Topic::TaskCheckpointed)
        .collect();
    assert_eq!(checkpointed.len(), 1, "{all:#?}");
    assert_eq!(checkpointed[0].checkpoint.as_deref(), Some("first"));
    assert_eq!(
        d.wait_code("", &id, None),
        137,
        "a checkpoint --exit kills the container"
    );
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Stopped);
    let stopped_at = assert_frozen(&count, "after checkpoint --exit");

    // Restore under the same id (once the stopped original is deleted).
    match d.client().restore("", &id, "first", None, None) {
        Err(Error::AlreadyExists(msg)) => assert!(msg.contains("--as"), "{msg}"),
        other => panic!("restore over an existing container gave {other:?}"),
    }
    d.delete("", &id, false).unwrap();
    let restored = d.client().restore("", &id, "first", None, None).unwrap();
    assert_eq!(restored.status, Status::Running);
    wait_count(&count, stopped_at + 5);
    assert_consecutive(&counter_lines(&count), "after the restore");

    // A checkpoint of the restored container, restored in turn.
    d.client()
        .checkpoint("", &id, "second", exit_ckpt())
        .unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    let stopped_again = assert_frozen(&count, "after the second checkpoint");
    assert!(stopped_again >= stopped_at + 5);
    d.delete("", &id, false).unwrap();
    d.client().restore("", &id, "second", None, None).unwrap();
    wait_count(&count, stopped_again + 5);
    let lines = counter_lines(&count);
    assert_consecutive(&lines, "after the second restore");
    assert_eq!(lines[0], 1);

    // A restored container is adopted by the next daemon like any other.
    let pid = d.client().state("", &id).unwrap().pid;
    d.kill9();
    d.restart();
    let s = d.client().state("", &id).unwrap();
    assert_eq!((s.status, s.pid), (Status::Running, pid));
    let now = counter_last(&count);
    wait_count(&count, now + 3);
    assert_consecutive(&counter_lines(&count), "after a daemon restart");

    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
    assert_eq!(checkpoint_names(&d, &id), vec!["first", "second"]);
    for name in ["first", "second"] {
        d.client().remove_checkpoint("", &id, name).unwrap();
    }
    assert!(checkpoint_names(&d, &id).is_empty());
}

/// The default checkpoint leaves the container running; it is published with its name,
/// listed with its time, size and options (also once the container is deleted), restored
/// under a new id while the original still runs, and removed by `checkpoint rm`.
#[test]
fn leave_running_checkpoint_listed_restored_as_new_id_and_removed() {
    let d = Daemon::start("ckpt_leave_running");
    let (b, count) = counter_bundle(&d, "counter");
    let id = unique_id("cklive");
    let events = Events::subscribe(&d.socket, only(&id));
    let pid = d.run(&id, &b).pid;
    wait_count(&count, 5);

    let before = corral::now_ns();
    let last_before = counter_last(&count);
    let out = d.ctl_ok(&["checkpoint", &id, "snap"]);
    let last_after = counter_last(&count);
    let after = corral::now_ns();
    assert!(out.contains("snap") && out.contains(&id), "{out}");
    let seen = events.until("/tasks/checkpointed", |e| {
        e.topic == Topic::TaskCheckpointed
    });
    assert_eq!(seen.last().unwrap().checkpoint.as_deref(), Some("snap"));
    assert!(
        !seen.iter().any(|e| e.topic == Topic::TaskExit),
        "{seen:#?}"
    );
    let s = d.client().state("", &id).unwrap();
    assert_eq!((s.status, s.pid), (Status::Running, pid));
    wait_count(&count, last_after + 3);

    // A paused container is not checkpointed: it says what to do.
    d.client().pause("", &id).unwrap();
    match d
        .client()
        .checkpoint("", &id, "frozen", CheckpointOptions::default())
    {
        Err(Error::WrongState(msg)) => assert!(msg.contains("resume"), "{msg}"),
        other => panic!("checkpoint of a paused container gave {other:?}"),
    }
    d.client().resume("", &id).unwrap();

    // Listed: through the Client and the CLI.
    let list = d.client().checkpoints("", &id).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let c: &CheckpointInfo = &list[0];
    assert_eq!(
        (c.name.as_str(), c.container_id.as_str()),
        ("snap", id.as_str())
    );
    assert!(
        (before..=after).contains(&c.created_ns),
        "created {} not within the call",
        c.created_ns
    );
    assert!(c.size > 0);
    assert_eq!(c.options, CheckpointOptions::default());
    let table = d.ctl_ok(&["checkpoints", &id]);
    let row = table
        .lines()
        .find(|l| l.starts_with("snap"))
        .unwrap_or_else(|| panic!("no row for snap in:\n{table}"));
    assert!(table.contains("CREATED") && table.contains("SIZE") && table.contains("OPTIONS"));
    assert!(
        row.contains(&corral::format_time(c.created_ns)[..16]),
        "{row}"
    );
    let json: Vec<CheckpointInfo> =
        serde_json::from_str(&d.ctl_ok(&["checkpoints", &id, "--json"])).unwrap();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0].created_ns, c.created_ns);

    // Restored under a new id while the original runs, from a copy of the bundle (the
    // copy's counter starts empty): it counts on from the checkpoint.
    let copy = d.path("bundles/copy");
    let cp = output_within(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&b)
            .arg(&copy),
        LIVENESS,
    );
    assert_eq!(code(&cp), 0, "{}", stderr(&cp));
    let copy_count = copy.join("rootfs/count");
    std::fs::write(&copy_count, b"").unwrap();
    let twin = unique_id("cktwin");
    let out = d.ctl_ok(&[
        "restore",
        &id,
        "snap",
        "--as",
        &twin,
        "--bundle",
        copy.to_str().unwrap(),
    ]);
    assert!(out.contains(&twin), "{out}");
    wait_until(LIVENESS, "the twin to count 5 times", || {
        counter_lines(&copy_count).len() >= 5
    });
    let twin_lines = counter_lines(&copy_count);
    assert_consecutive(&twin_lines, "the twin");
    assert!(
        (last_before..=last_after + 2).contains(&twin_lines[0]),
        "the twin started at {} but the checkpoint was taken between {last_before} and {last_after}",
        twin_lines[0]
    );
    assert_eq!(d.client().state("", &twin).unwrap().status, Status::Running);
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Running);
    assert_consecutive(&counter_lines(&count), "the original");

    // Deleted, still listed; then removed.
    d.delete("", &id, true).unwrap();
    d.delete("", &twin, true).unwrap();
    let table = d.ctl_ok(&["checkpoints", &id]);
    assert!(table.lines().any(|l| l.starts_with("snap")), "{table}");
    d.ctl_ok(&["checkpoint", "rm", &id, "snap"]);
    assert!(checkpoint_names(&d, &id).is_empty());
    let table = d.ctl_ok(&["checkpoints", &id]);
    assert!(!table.contains("snap"), "{table}");
    match d.client().remove_checkpoint("", &id, "snap") {
        Err(Error::NotFound(_)) => {}
        other => panic!("removing a removed checkpoint gave {other:?}"),
    }
    d.assert_no_leftovers("default", &id);
    d.assert_no_leftovers("default", &twin);
}

/// A checkpoint carried away: export, delete the container and its checkpoint, import,
/// restore under a new id: the counter goes on in the original bundle.
#[test]
fn export_delete_import_restore() {
    let d = Daemon::start("ckpt_export_import");
    let (b, count) = counter_bundle(&d, "counter");
    let id = unique_id("ckexp");
    let mut req = run_req(&id, &b);
    req.labels = [("app".to_string(), "counter".to_string())].into();
    req.restart = corral::RestartPolicy::OnFailure { max: Some(2) };
    d.create(req.clone()).unwrap();
    wait_count(&count, 5);
    d.ctl_ok(&["checkpoint", &id, "move", "--exit"]);
    assert_eq!(d.wait_code("", &id, None), 137);
    let stopped_at = assert_frozen(&count, "after checkpoint --exit");
    let tar = d.path("move.tar");
    let out = d.ctl_ok(&["checkpoint", "export", &id, "move", tar.to_str().unwrap()]);
    assert!(out.contains("move.tar"), "{out}");
    assert!(std::fs::metadata(&tar).unwrap().len() > 0);

    d.delete("", &id, false).unwrap();
    d.ctl_ok(&["checkpoint", "rm", &id, "move"]);
    assert!(checkpoint_names(&d, &id).is_empty());
    match d.client().restore("", &id, "move", None, None) {
        Err(Error::NotFound(_)) => {}
        other => panic!("restore of a removed checkpoint gave {other:?}"),
    }

    let out = d.ctl_ok(&["checkpoint", "import", tar.to_str().unwrap()]);
    assert!(out.contains("move") && out.contains(&id), "{out}");
    let listed = d.client().checkpoints("", &id).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].options.exit);
    let new_id = unique_id("ckimp");
    d.ctl_ok(&["restore", &id, "move", "--as", &new_id]);
    wait_count(&count, stopped_at + 5);
    let lines = counter_lines(&count);
    assert_consecutive(&lines, "after export, import and restore");
    assert_eq!(lines[0], 1);
    let restored = d.client().state("", &new_id).unwrap();
    assert_eq!(restored.status, Status::Running);
    // The checkpoint (through export and import) carries the labels and the policy.
    assert_eq!(restored.labels, req.labels);
    assert_eq!(restored.restart, req.restart);

    d.delete("", &new_id, true).unwrap();
    d.client().remove_checkpoint("", &id, "move").unwrap();
    d.assert_no_leftovers("default", &new_id);
    assert!(checkpoint_names(&d, &id).is_empty());
}

/// CRIU cannot dump a process whose stdout is a file outside its container: the checkpoint
/// fails with RuntimeFailed carrying CRIU's own error lines, leaves no checkpoint, and the
/// container runs on.
#[test]
fn a_failed_checkpoint_says_why_and_the_container_runs_on() {
    let d = Daemon::start("ckpt_failure");
    let (b, count) = counter_bundle(&d, "counter");
    let id = unique_id("ckfail");
    let events = Events::subscribe(&d.socket, only(&id));
    let host_file = d.path("host-stdout.txt");
    let mut req = run_req(&id, &b);
    req.stdio.stdout = Some(host_file.clone());
    let pid = d.create(req).unwrap().pid;
    wait_count(&count, 3);

    match d
        .client()
        .checkpoint("", &id, "doomed", CheckpointOptions::default())
    {
        Err(Error::RuntimeFailed {
            op,
            id: failed,
            stderr,
        }) => {
            eprintln!("checkpoint failed as expected: {stderr}");
            assert_eq!((op.as_str(), failed.as_str()), ("checkpoint", id.as_str()));
            assert!(
                stderr.contains("CRIU said") && stderr.contains("Error"),
                "no CRIU error lines in: {stderr}"
            );
        }
        other => panic!("checkpoint of a container with a host stdout file gave {other:?}"),
    }
    let s = d.client().state("", &id).unwrap();
    assert_eq!((s.status, s.pid), (Status::Running, pid));
    let now = counter_last(&count);
    wait_count(&count, now + 3);
    assert!(checkpoint_names(&d, &id).is_empty());
    let quiet = events.drain(Duration::from_millis(300));
    assert!(
        !quiet
            .iter()
            .any(|e| matches!(e.topic, Topic::TaskCheckpointed | Topic::TaskExit)),
        "{quiet:#?}"
    );
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// The daemon's peak memory (VmHWM), in KiB.
fn peak_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Export and import stream: a checkpoint of a container holding about 120 MB moves
/// through a tar while the daemon's peak memory grows by a few MiB, not by its size.
#[test]
fn export_and_import_of_a_large_checkpoint_stream() {
    let d = Daemon::start("ckpt_large");
    // A shell holding 120 MB in a variable, then waiting (not as its last command, which
    // busybox sh would exec in its place).
    let b = d.bundle(
        "hog",
        &[
            "sh",
            "-c",
            "x=$(yes abcdefghijklmnopqrstuvwxyz | head -c 120000000); echo ${#x} > /ready; sleep 1000; echo done",
        ],
    );
    let id = unique_id("ckbig");
    d.run(&id, &b);
    let ready = b.join("rootfs/ready");
    wait_until(LIVENESS, "the hog to fill its memory", || ready.exists());
    d.ctl_ok(&["checkpoint", &id, "big", "--exit"]);
    assert_eq!(d.wait_code("", &id, None), 137);
    let before = peak_kib(d.pid());
    let tar = d.path("big.tar");
    d.ctl_ok(&["checkpoint", "export", &id, "big", tar.to_str().unwrap()]);
    let size = std::fs::metadata(&tar).unwrap().len();
    assert!(size > 100_000_000, "the tar holds the memory: {size} bytes");
    d.ctl_ok(&["checkpoint", "rm", &id, "big"]);
    d.ctl_ok(&["checkpoint", "import", tar.to_str().unwrap()]);
    let after = peak_kib(d.pid());
    eprintln!(
        "corrald VmHWM {before} KiB before, {after} KiB after export and import of {size} bytes"
    );
    assert!(
        after < before + 16 * 1024,
        "peak memory grew from {before} to {after} KiB for a {size}-byte checkpoint"
    );
    let listed = d.client().checkpoints("", &id).unwrap();
    assert_eq!(listed.len(), 1);
    d.delete("", &id, false).unwrap();
    d.client().remove_checkpoint("", &id, "big").unwrap();
    std::fs::remove_file(&tar).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A dump that does not finish within the runtime timeout takes the runtime and CRIU with
/// it (their whole process group), leaves no checkpoint, and the container runs on, thawed.
#[test]
fn a_timed_out_checkpoint_kills_runc_and_criu_and_the_container_runs_on() {
    let dir = std::env::temp_dir().join(format!("corral-hung-criu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let criu = dir.join("criu-that-hangs");
    std::fs::write(
        &criu,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Version: 4.1.1'; exit 0; }\nsleep 617\n",
    )
    .unwrap();
    std::fs::set_permissions(&criu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = Daemon::start_with(
        "ckpt_timeout",
        &["--criu", criu.to_str().unwrap(), "--runtime-timeout", "2"],
    );
    let (b, count) = counter_bundle(&d, "counter");
    let id = unique_id("cktime");
    d.run(&id, &b);
    wait_count(&count, 2);
    let started = std::time::Instant::now();
    match d
        .client()
        .checkpoint("", &id, "never", CheckpointOptions::default())
    {
        Err(Error::Timeout(msg)) => assert!(msg.contains("checkpoint"), "{msg}"),
        other => panic!("a hung dump gave {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // SIGKILLed, they go as soon as the kernel has run them to their end (a moment on a
    // loaded machine); a zombie has no command line.
    let leftovers = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| {
                c.contains("sleep 617") || (c.contains("criu-that-hangs") && !c.contains("corrald"))
            })
            .collect()
    };
    let mut left = leftovers();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = leftovers();
    }
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(checkpoint_names(&d, &id).is_empty());
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Running);
    let now = counter_last(&count);
    wait_count(&count, now + 3);
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The numbers a ticker container has logged so far.
fn logged_numbers(d: &Daemon, id: &str) -> Vec<u64> {
    let req = corral::LogsRequest {
        id: id.into(),
        ..Default::default()
    };
    d.client()
        .logs(req)
        .unwrap()
        .flat_map(|batch| batch.unwrap())
        .filter_map(|e| String::from_utf8_lossy(&e.content).trim().parse().ok())
        .collect()
}

/// A logged container (its stdout a pipe its shim drains) is checkpointed and restored;
/// the restored process's output goes to its log again, going on where it stopped.
#[test]
fn a_logged_container_is_restored_and_logs_on() {
    let d = Daemon::start("ckpt_logged");
    let b = d.bundle(
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done",
        ],
    );
    let id = unique_id("cklog");
    d.run(&id, &b);
    wait_until(LIVENESS, "5 lines logged", || {
        logged_numbers(&d, &id).len() >= 5
    });
    d.client().checkpoint("", &id, "one", exit_ckpt()).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    let before = logged_numbers(&d, &id);
    let last = *before.last().unwrap();
    d.delete("", &id, false).unwrap();
    let restored = d.client().restore("", &id, "one", None, None).unwrap();
    assert!(restored.log_path.is_some(), "{restored:?}");
    wait_until(LIVENESS, "the restored container to log", || {
        logged_numbers(&d, &id).iter().any(|n| *n > last + 3)
    });
    let after = logged_numbers(&d, &id);
    assert!(
        after[0] <= last + 2,
        "it goes on where it stopped ({last}): {after:?}"
    );
    assert_consecutive(&after, "the restored container's log");
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
    d.client().remove_checkpoint("", &id, "one").unwrap();
}

/// A container with a terminal is checkpointed and restored: the restored process has a
/// terminal again (its shim holds the new pty's master), logs to it and can be resized.
#[test]
fn a_terminal_container_is_restored_with_a_terminal() {
    let d = Daemon::start("ckpt_terminal");
    let b = d.bundle(
        "tticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done",
        ],
    );
    let id = unique_id("cktty");
    let mut req = run_req(&id, &b);
    req.stdio.terminal = true;
    d.client().create(req).unwrap();
    wait_until(LIVENESS, "5 lines logged", || {
        logged_numbers(&d, &id).len() >= 5
    });
    d.client().checkpoint("", &id, "tty", exit_ckpt()).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    let last = *logged_numbers(&d, &id).last().unwrap();
    d.delete("", &id, false).unwrap();
    let restored = d.client().restore("", &id, "tty", None, None).unwrap();
    assert!(restored.terminal, "{restored:?}");
    wait_until(LIVENESS, "the restored container to log", || {
        logged_numbers(&d, &id).iter().any(|n| *n > last + 3)
    });
    d.client()
        .resize(
            "",
            &id,
            None,
            corral::ConsoleSize {
                width: 90,
                height: 20,
            },
        )
        .unwrap();
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
    d.client().remove_checkpoint("", &id, "tty").unwrap();
}
