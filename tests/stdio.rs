//! Logs, attach, stdin, terminals and exec removal through the library's client (issue 12),
//! against a real corrald, real shims and runc. The CLI's side is in tests/logs.rs and
//! tests/terminals.rs.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::rpc::Client;
use corral::{
    AttachFrom, AttachItem, AttachRequest, ConsoleSize, CreateRequest, Error, ExitStatus,
    LogStream, LogsRequest, RunRequest, Stdio,
};
use std::path::Path;
use std::time::Duration;

fn attach_req(id: &str, exec: Option<&str>, from: AttachFrom, stdin: bool) -> AttachRequest {
    AttachRequest {
        namespace: String::new(),
        id: id.to_string(),
        exec_id: exec.map(str::to_string),
        stdin,
        from,
    }
}

/// Everything an attach gives: stdout, stderr, the exit.
fn collect(
    items: impl Iterator<Item = corral::Result<AttachItem>>,
) -> (Vec<u8>, Vec<u8>, ExitStatus) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for item in items {
        match item.unwrap() {
            AttachItem::Output {
                stderr: false,
                data,
            } => out.extend(data),
            AttachItem::Output { stderr: true, data } => err.extend(data),
            AttachItem::Exit(exit) => return (out, err, exit),
        }
    }
    panic!("the attach ended without an exit");
}

fn logs(d: &Daemon, id: &str, exec: Option<&str>, tail: Option<usize>) -> Vec<corral::LogEntry> {
    let req = LogsRequest {
        id: id.into(),
        exec_id: exec.map(str::to_string),
        tail,
        ..Default::default()
    };
    d.client()
        .logs(req)
        .unwrap()
        .flat_map(|batch| batch.unwrap())
        .collect()
}

fn wait_exit(d: &Daemon, id: &str) -> ExitStatus {
    let socket = d.socket.clone();
    let id = id.to_string();
    within(LIVENESS, "the container's exit", move || {
        Client::connect(&socket)
            .unwrap()
            .wait("", &id, None)
            .unwrap()
    })
}

#[test]
fn a_logged_container_writes_cri_lines_that_logs_reads() {
    let d = Daemon::start("stdio_logged");
    let b = d.bundle(
        "echo",
        &["sh", "-c", "echo out1; echo err1 >&2; printf partial"],
    );
    let id = unique_id("logged");
    let info = d.client().create(run_req(&id, &b)).unwrap();
    let path = info
        .log_path
        .clone()
        .expect("a logged container has a log path");
    assert_eq!(path, d.log_dir("default", &id).join("init.log"));
    assert_eq!(wait_exit(&d, &id).code, 0);

    // The file is CRI lines: time, stream, tag, content.
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: Vec<_> = text
        .lines()
        .map(|l| {
            corral::logs::parse_entry(l.as_bytes()).unwrap_or_else(|| panic!("not CRI: {l:?}"))
        })
        .collect();
    assert_eq!(parsed.len(), 3, "{text}");

    let entries = logs(&d, &id, None, None);
    let find = |content: &str| {
        entries
            .iter()
            .find(|e| e.content == content.as_bytes())
            .unwrap_or_else(|| panic!("no {content:?} in {entries:?}"))
    };
    assert_eq!(find("out1").stream, LogStream::Stdout);
    assert!(!find("out1").partial);
    assert_eq!(find("err1").stream, LogStream::Stderr);
    assert!(
        find("partial").partial,
        "no trailing newline: a partial entry"
    );
    // stdout and stderr are two pipes: their order between each other is the shim's reads'.
    let last = logs(&d, &id, None, Some(1));
    assert_eq!(last.len(), 1);
    assert_eq!(Some(&last[0]), entries.last());

    // The state says where the log is; deleting the container removes it.
    let state = d.client().state("", &id).unwrap();
    assert_eq!(state.log_path.as_deref(), Some(path.as_path()));
    d.client().delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

#[test]
fn attach_from_launch_gets_every_byte_and_the_exit() {
    let d = Daemon::start("stdio_attach_launch");
    let b = d.bundle(
        "seq",
        &["sh", "-c", "seq 1 20000; echo bye >&2; printf tail; exit 3"],
    );
    let id = unique_id("attach");
    d.client().create(run_req(&id, &b)).unwrap();
    let attached = d
        .client()
        .attach(attach_req(&id, None, AttachFrom::Launch, false))
        .unwrap();
    let (out, err, exit) = collect(attached);
    let mut expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    expected.push_str("tail");
    assert!(
        out == expected.as_bytes(),
        "stdout differs ({} bytes)",
        out.len()
    );
    assert_eq!(err, b"bye\n");
    assert_eq!(exit.code, 3);

    // From now on, an exited process has nothing to attach to.
    let err = d
        .client()
        .attach(attach_req(&id, None, AttachFrom::Now, false))
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::WrongState(_)), "{err}");
    d.client().delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

#[test]
fn stdin_goes_through_attach_and_close_ends_it() {
    let d = Daemon::start("stdio_stdin");
    let b = d.bundle("cat", &["sh", "-c", "cat; echo done"]);
    let id = unique_id("stdin");
    let mut req = run_req(&id, &b);
    req.stdio.open_stdin = true;
    let info = d.client().create(req).unwrap();
    assert!(info.log_path.is_some());
    let attached = d
        .client()
        .attach(attach_req(&id, None, AttachFrom::Launch, true))
        .unwrap();
    let mut input = attached.input().unwrap();
    input.write(b"hello\nworld\n").unwrap();
    input.close().unwrap();
    let (out, _, exit) = within(LIVENESS, "cat to end", move || collect(attached));
    assert_eq!(String::from_utf8_lossy(&out), "hello\nworld\ndone\n");
    assert_eq!(exit.code, 0);
    d.client().delete("", &id, false).unwrap();
}

#[test]
fn a_terminal_has_a_tty_a_size_and_resizes() {
    let d = Daemon::start("stdio_terminal");
    let b = d.bundle("tty", &["sh", "-c", "tty; stty size; read x; stty size"]);
    let id = unique_id("tty");
    let mut req = run_req(&id, &b);
    req.stdio.terminal = true;
    req.stdio.open_stdin = true;
    req.stdio.console_size = Some(ConsoleSize {
        width: 100,
        height: 30,
    });
    let info = d.client().create(req).unwrap();
    assert!(info.terminal);
    let mut attached = d
        .client()
        .attach(attach_req(&id, None, AttachFrom::Launch, true))
        .unwrap();
    let mut input = attached.input().unwrap();
    let mut out = Vec::new();
    let read_until = |attached: &mut corral::rpc::Attached, want: &str, out: &mut Vec<u8>| {
        while !String::from_utf8_lossy(out).contains(want) {
            match attached.next() {
                Some(Ok(AttachItem::Output { stderr, data })) => {
                    assert!(!stderr, "a terminal has one stream");
                    out.extend(data)
                }
                other => panic!(
                    "waiting for {want:?}, got {other:?}; so far {:?}",
                    String::from_utf8_lossy(out)
                ),
            }
        }
    };
    read_until(&mut attached, "30 100", &mut out);
    assert!(
        String::from_utf8_lossy(&out).contains("/dev/pts/"),
        "{out:?}"
    );
    d.client()
        .resize(
            "",
            &id,
            None,
            ConsoleSize {
                width: 120,
                height: 40,
            },
        )
        .unwrap();
    input.write(b"go\n").unwrap();
    read_until(&mut attached, "40 120", &mut out);
    let (_, _, exit) = collect(attached);
    assert_eq!(exit.code, 0);
    d.client().delete("", &id, false).unwrap();
}

#[test]
fn bad_stdio_requests_are_refused_clearly() {
    let d = Daemon::start("stdio_bad");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("bad");
    d.client().create(run_req(&id, &b)).unwrap();
    let size = ConsoleSize {
        width: 80,
        height: 24,
    };

    let err = d.client().resize("", &id, None, size).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("no terminal")),
        "{err}"
    );
    let err = d
        .client()
        .attach(attach_req(&id, None, AttachFrom::Now, true))
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("open_stdin")),
        "{err}"
    );
    let err = d
        .client()
        .logs(LogsRequest {
            id: "no-such-container".into(),
            ..Default::default()
        })
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    let refused = |stdio: Stdio, what: &str| {
        let mut req: CreateRequest = run_req(&unique_id("badreq"), &b);
        req.stdio = stdio;
        let err = d.client().create(req).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains(what)),
            "{what}: {err}"
        );
    };
    refused(
        Stdio {
            console_size: Some(size),
            ..Stdio::default()
        },
        "no terminal",
    );
    refused(
        Stdio {
            log_max_files: Some(0),
            ..Stdio::default()
        },
        "at least 1",
    );
    refused(
        Stdio {
            stdout: Some("/dev/null".into()),
            log_max_size: Some(10),
            ..Stdio::default()
        },
        "log options",
    );

    // A process writing to the paths it was given has no log.
    let pathed = unique_id("pathed");
    let mut req = run_req(&pathed, &b);
    req.stdio.stdout = Some("/dev/null".into());
    let info = d.client().create(req).unwrap();
    assert!(info.log_path.is_none());
    let err = d
        .client()
        .logs(LogsRequest {
            id: pathed.clone(),
            ..Default::default()
        })
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("not to a log")),
        "{err}"
    );
}

#[test]
fn execs_are_logged_and_removed_and_their_ids_freed() {
    let d = Daemon::start("stdio_exec_rm");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("execrm");
    d.client().create(run_req(&id, &b)).unwrap();
    let exec_dir = |e: &str| d.container_state_dir("default", &id).join(e);

    let p = d
        .client()
        .exec(exec_req(&id, "e1", &["echo", "from-exec"]))
        .unwrap();
    let log = p.log_path.clone().unwrap();
    let exit = d.client().wait("", &id, Some("e1")).unwrap();
    assert_eq!(exit.code, 0);
    let entries = logs(&d, &id, Some("e1"), None);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].content, b"from-exec");
    // Attach from launch replays an exited exec too.
    let (out, _, exit) = collect(
        d.client()
            .attach(attach_req(&id, Some("e1"), AttachFrom::Launch, false))
            .unwrap(),
    );
    assert_eq!(out, b"from-exec\n");
    assert_eq!(exit.code, 0);

    let removed = d.client().remove_exec("", &id, "e1").unwrap();
    assert_eq!(removed.exit.map(|e| e.code), Some(0));
    assert!(!exec_dir("e1").exists());
    assert!(!log.exists());
    let state = d.client().state("", &id).unwrap();
    assert!(state.execs.iter().all(|e| e.id != "e1"), "{state:?}");
    // The id is free again.
    d.client().exec(exec_req(&id, "e1", &["true"])).unwrap();
    d.client().wait("", &id, Some("e1")).unwrap();
    d.client().remove_exec("", &id, "e1").unwrap();

    // A running exec is not removed.
    d.client()
        .exec(exec_req(&id, "long", &["sleep", "1000"]))
        .unwrap();
    let err = d.client().remove_exec("", &id, "long").unwrap_err();
    assert!(matches!(err, Error::WrongState(_)), "{err}");
    let err = d.client().remove_exec("", &id, "nope").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    // 100 execs run and removed leave no records, dirs, logs or daemon fds.
    let fds_before = fd_count(d.pid());
    for n in 0..100 {
        let e = format!("x{n}");
        let mut c = d.client();
        c.exec(exec_req(&id, &e, &["echo", "x"])).unwrap();
        c.wait("", &id, Some(&e)).unwrap();
        c.remove_exec("", &id, &e).unwrap();
    }
    let state = d.client().state("", &id).unwrap();
    assert_eq!(
        state.execs.len(),
        1,
        "only `long` is left: {:?}",
        state.execs
    );
    let logs_left: Vec<_> = std::fs::read_dir(d.log_dir("default", &id))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(logs_left.len(), 2, "init.log and long.log: {logs_left:?}");
    wait_until(
        Duration::from_secs(10),
        "the daemon's fds to come back",
        || fd_count(d.pid()) <= fds_before + 2,
    );
}

#[test]
fn a_container_nobody_reads_never_blocks_and_its_log_rotates() {
    let d = Daemon::start("stdio_no_reader");
    // 1 GiB of 100-byte lines, nobody reading: it runs at the shim's write speed.
    let b = d.bundle(
        "flood",
        &[
            "sh",
            "-c",
            "yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c 1073741824",
        ],
    );
    let id = unique_id("flood");
    let mut req = run_req(&id, &b);
    req.stdio.log_max_size = Some(1 << 20);
    req.stdio.log_max_files = Some(2);
    let info = d.client().create(req).unwrap();
    // Liveness only (about 15 s here with a debug shim): a blocked writer never ends.
    let socket = d.socket.clone();
    let waited = id.clone();
    let exit = within(
        Duration::from_secs(300),
        "1 GiB through the shim",
        move || {
            Client::connect(&socket)
                .unwrap()
                .wait("", &waited, None)
                .unwrap()
        },
    );
    assert_eq!(exit.code, 0);
    let dir = info.log_path.unwrap().parent().unwrap().to_path_buf();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() <= 2, "at most 2 log files: {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= (1 << 20) + 200_000, "{} is {len} bytes", f.display());
    }
    d.client().delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A log dir on a full disk: the container runs to its end, the loss is counted.
#[test]
fn a_full_log_disk_loses_output_but_never_the_container() {
    let base = std::path::PathBuf::from(format!("/tmp/corral-logfull-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a small tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
            let _ = std::fs::remove_dir(self.0);
        }
    }
    let _unmount = Unmount(&base);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(
        "stdio_full_disk",
        &[
            "--container-log-dir",
            base.to_str().unwrap(),
            "--metrics-address",
            &addr,
        ],
    );
    let b = d.bundle(
        "big",
        &[
            "sh",
            "-c",
            "yes 0123456789012345678901234567890123456789 | head -c 2097152; echo end",
        ],
    );
    let id = unique_id("full");
    d.client().create(run_req(&id, &b)).unwrap();
    let exit = wait_exit(&d, &id);
    assert_eq!(exit.code, 0, "the container ran to its end");
    let errors = d
        .container_state_dir("default", &id)
        .join("init")
        .join("log-errors");
    wait_until(
        Duration::from_secs(5),
        "the shim's log-errors count",
        || errors.exists(),
    );
    let text = std::fs::read_to_string(&errors).unwrap();
    let lost: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(lost > 0, "{text}");
    let out = output_within(
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "20"])
            .arg(format!("http://{addr}/metrics")),
        LIVENESS,
    );
    let body = stdout(&out);
    assert!(
        body.lines()
            .any(|l| l.starts_with("corral_log_lost_bytes_total{") && l.contains(&id)),
        "{body}"
    );
    d.client().delete("", &id, false).unwrap();
}

/// `Run` (what `corralctl run` sends): created and started, every byte from the launch,
/// the exit, and with `remove` the delete after them, all on one request; a container that
/// fails is deleted the same way, its code and its last line kept.
#[test]
fn run_is_one_request_and_remove_comes_after_the_exit_and_the_last_line() {
    let d = Daemon::start("stdio_run");
    let b = d.bundle(
        "seq",
        &["sh", "-c", "seq 1 20000; echo last-line >&2; exit 7"],
    );
    let id = unique_id("run");
    let run = RunRequest {
        create: CreateRequest {
            start: false, // started all the same
            ..run_req(&id, &b)
        },
        stdin: false,
        remove: true,
    };
    let (info, mut attached) = d.client().run(run).unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.status, corral::Status::Running);
    let (out, err, exit) = collect(attached.by_ref());
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert!(
        out == expected.as_bytes(),
        "stdout differs ({} bytes)",
        out.len()
    );
    assert_eq!(err, b"last-line\n");
    assert_eq!(exit.code, 7);
    let last = attached
        .removed()
        .expect("a delete follows the exit")
        .unwrap();
    assert_eq!(last.id, id);
    assert_eq!(last.exit.map(|e| e.code), Some(7));
    assert!(attached.removed().is_none(), "a second delete outcome");
    // Deleted by the time the answer came: nothing listed, nothing left.
    assert!(d.list_ids("default").is_empty());
    d.assert_no_leftovers("default", &id);

    // Without `remove` the container stays, stopped, with its exit.
    let kept = unique_id("kept");
    let run = RunRequest {
        create: run_req(&kept, &b),
        stdin: false,
        remove: false,
    };
    let (_, mut attached) = d.client().run(run).unwrap();
    let (_, _, exit) = collect(attached.by_ref());
    assert_eq!(exit.code, 7);
    assert!(attached.removed().is_none());
    let state = d.client().state("", &kept).unwrap();
    assert_eq!(state.status, corral::Status::Stopped);
    d.client().delete("", &kept, false).unwrap();
    d.assert_no_leftovers("default", &kept);
}

/// A `Run` whose create fails answers the create's error and deletes nothing: not another
/// container that has the id (the old CLI's `--rm` force-deleted it), nor a half-made one.
#[test]
fn a_run_that_cannot_create_deletes_nothing() {
    let d = Daemon::start("stdio_run_fail");
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("taken");
    d.run(&id, &sleeper);
    let run = RunRequest {
        create: run_req(&id, &sleeper),
        stdin: false,
        remove: true,
    };
    let err = d.client().run(run).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let state = d.client().state("", &id).unwrap();
    assert_eq!(
        state.status,
        corral::Status::Running,
        "the other one was touched"
    );

    let missing = d.bundle("missing", &["/no/such/binary"]);
    let bad = unique_id("bad");
    let run = RunRequest {
        create: run_req(&bad, &missing),
        stdin: false,
        remove: true,
    };
    let err = d.client().run(run).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    assert_eq!(d.list_ids("default"), vec![id.clone()]);
    d.assert_no_leftovers("default", &bad);
    d.client().delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

#[test]
fn a_client_leaving_mid_attach_leaves_the_process_running_and_nothing_behind() {
    let d = Daemon::start("stdio_leave");
    let b = d.bundle(
        "ticker",
        &["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
    );
    let id = unique_id("leave");
    d.client().create(run_req(&id, &b)).unwrap();
    let fds_before = fd_count(d.pid());
    for _ in 0..5 {
        let mut attached = d
            .client()
            .attach(attach_req(&id, None, AttachFrom::Now, false))
            .unwrap();
        match attached.next() {
            Some(Ok(AttachItem::Output { data, .. })) => assert!(data.starts_with(b"tick")),
            other => panic!("{other:?}"),
        }
        drop(attached);
    }
    let state = d.client().state("", &id).unwrap();
    assert_eq!(state.status, corral::Status::Running);
    wait_until(
        Duration::from_secs(10),
        "the daemon's fds to come back",
        || fd_count(d.pid()) <= fds_before + 1,
    );
    d.client().delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// `logs` with `follow` reads on across rotations, every line once and in order, and ends
/// when the process exits.
#[test]
fn following_a_log_goes_across_rotations() {
    let d = Daemon::start("stdio_follow_rotation");
    let b = d.bundle(
        "counter",
        &[
            "sh",
            "-c",
            "echo 0 ready; while [ ! -e /go ]; do usleep 2000; done; i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo \"$i 0123456789012345678901234567890123456789012345678901234567890123456789\"; usleep 5000; done",
        ],
    );
    let id = unique_id("follow");
    let mut req = run_req(&id, &b);
    req.stdio.log_max_size = Some(4096);
    req.stdio.log_max_files = Some(3);
    d.client().create(req).unwrap();
    let mut follow = d
        .client()
        .logs(LogsRequest {
            id: id.clone(),
            follow: true,
            ..Default::default()
        })
        .unwrap();
    // The follower is open once the first line came: only then does the counting start.
    let first = follow.next().unwrap().unwrap();
    assert_eq!(first[0].content, b"0 ready");
    std::fs::write(b.join("rootfs/go"), b"").unwrap();
    let numbers: Vec<u64> = within(LIVENESS, "the follow to end at the exit", move || {
        follow
            .flat_map(|batch| batch.unwrap())
            .filter_map(|e| {
                String::from_utf8_lossy(&e.content)
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .collect()
    });
    assert_eq!(numbers.len(), 400, "every line once: {numbers:?}");
    assert_consecutive(&numbers, "the followed log");
    let files = std::fs::read_dir(d.log_dir("default", &id))
        .unwrap()
        .count();
    assert!(files <= 3, "{files} log files");
    d.client().delete("", &id, false).unwrap();
}
