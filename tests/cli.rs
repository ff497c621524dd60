//! corralctl as a user types it: JSON output, label filters, errors on stderr with a
//! non-zero exit, the bundle helper, and following events.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{ContainerInfo, Event, PidInfo, Status, Topic};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> T {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{what} is not the expected JSON ({e}): {json}"))
}

/// `list --json` parses, with ids and labels; `--label k=v` filters (all must match).
#[test]
fn list_json_and_label_filters() {
    let d = Daemon::start("cli_list");
    let b = d.bundle("true", &["true"]);
    let bs = b.to_str().unwrap();
    let front = unique_id("front");
    let back = unique_id("back");
    let db = unique_id("db");
    d.ctl_ok(&[
        "run",
        &front,
        "--bundle",
        bs,
        "-d",
        "--label",
        "app=web",
        "--label",
        "tier=front",
    ]);
    d.ctl_ok(&[
        "run",
        &back,
        "--bundle",
        bs,
        "-d",
        "-l",
        "app=web",
        "-l",
        "tier=back",
    ]);
    d.ctl_ok(&["run", &db, "--bundle", bs, "-d", "--label=app=db"]);

    let all: Vec<ContainerInfo> = parse(&d.ctl_ok(&["list", "--json"]), "list --json");
    let mut got: Vec<(String, Vec<(String, String)>)> = all
        .iter()
        .map(|c| (c.id.clone(), c.labels.clone().into_iter().collect()))
        .collect();
    got.sort();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut want = vec![
        (
            front.clone(),
            vec![pair("app", "web"), pair("tier", "front")],
        ),
        (back.clone(), vec![pair("app", "web"), pair("tier", "back")]),
        (db.clone(), vec![pair("app", "db")]),
    ];
    want.sort();
    assert_eq!(got, want);
    // The raw JSON carries the documented field names.
    let raw: serde_json::Value = parse(&d.ctl_ok(&["list", "--json"]), "list --json");
    let first = &raw.as_array().expect("a JSON array")[0];
    for field in [
        "namespace",
        "id",
        "bundle",
        "labels",
        "status",
        "pid",
        "created_at_ns",
    ] {
        assert!(first.get(field).is_some(), "no {field:?} in {first}");
    }

    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["list", "--json"];
        full.extend_from_slice(args);
        let list: Vec<ContainerInfo> = parse(&d.ctl_ok(&full), "list --json --label");
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let mut web = vec![front.clone(), back.clone()];
    web.sort();
    assert_eq!(ids(&["--label", "app=web"]), web);
    assert_eq!(
        ids(&["--label", "app=web", "--label", "tier=back"]),
        vec![back.clone()]
    );
    assert_eq!(ids(&["--label", "app=db"]), vec![db.clone()]);
    assert!(ids(&["--label", "app=none"]).is_empty());
    assert!(ids(&["--label", "tier=front", "--label", "app=db"]).is_empty());

    // The table shows the same.
    let table = d.ctl_ok(&["list"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("STATUS"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&front))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("app=web,tier=front"), "{row}");
    for id in [&front, &back, &db] {
        assert_eq!(d.wait_code("", id, None), 0);
        d.ctl_ok(&["delete", id]);
    }
    let empty: Vec<ContainerInfo> = parse(&d.ctl_ok(&["list", "--json"]), "list --json");
    assert!(empty.is_empty());
}

/// `state --json` and `pids --json` describe the container as it is.
#[test]
fn state_and_pids_json() {
    let d = Daemon::start("cli_state");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("statejson");
    d.ctl_ok(&[
        "run",
        &id,
        "--bundle",
        b.to_str().unwrap(),
        "-d",
        "--label",
        "k=v",
    ]);
    // Detached, so that it stays in the state (a foreground exec is removed at its exit).
    d.ctl_ok(&["exec", "-d", &id, "x1", "--", "sh", "-c", "exit 2"]);
    let out = d.ctl(&["wait", &id, "--exec", "x1"]);
    assert_eq!(code(&out), 2);

    let s: ContainerInfo = parse(&d.ctl_ok(&["state", &id, "--json"]), "state --json");
    assert_eq!(
        (s.namespace.as_str(), s.id.as_str()),
        ("default", id.as_str())
    );
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.bundle, b);
    assert_eq!(s.labels.get("k").map(String::as_str), Some("v"));
    assert!(s.exit.is_none());
    assert_eq!(s.execs.len(), 1);
    assert_eq!(s.execs[0].exit.map(|e| e.code), Some(2));
    let raw: serde_json::Value = parse(&d.ctl_ok(&["state", &id, "--json"]), "state --json");
    assert_eq!(raw["status"], "running", "{raw}");

    let pids: Vec<PidInfo> = parse(&d.ctl_ok(&["pids", &id, "--json"]), "pids --json");
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(
        (pids[0].pid, pids[0].process_id.as_deref()),
        (s.pid, Some("init"))
    );

    d.ctl_ok(&["kill", &id, "-s", "9"]);
    assert_eq!(code(&d.ctl(&["wait", &id])), 137);
    let s: ContainerInfo = parse(&d.ctl_ok(&["state", &id, "--json"]), "state --json");
    assert_eq!(s.status, Status::Stopped);
    assert_eq!(s.exit.map(|e| e.code), Some(137));
    let text = d.ctl_ok(&["state", &id]);
    assert!(text.contains("stopped") && text.contains("137"), "{text}");
    d.ctl_ok(&["delete", &id]);
    d.assert_no_leftovers("default", &id);
}

/// Failures print a clear error on stderr (nothing on stdout) and exit non-zero: 125 for
/// what corral or the daemon refused, 2 for a command line that makes no sense (clap's
/// error, a bad signal or namespace included).
#[test]
fn errors_go_to_stderr_with_a_nonzero_exit() {
    let d = Daemon::start("cli_errors");
    let b = d.bundle("true", &["true"]);
    let bs = b.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["state", "no-such-container"], 125, "not found"),
        (vec!["delete", "no-such-container"], 125, "not found"),
        (vec!["wait", "no-such-container"], 125, "not found"),
        (vec!["kill", "no-such-container"], 125, "not found"),
        (
            vec!["exec", "no-such-container", "e", "--", "true"],
            125,
            "not found",
        ),
        (vec!["run", "bad/id", "--bundle", bs], 125, "bad/id"),
        (
            vec!["run", "x-missing-bundle", "--bundle", "/nonexistent-bundle"],
            125,
            "/nonexistent-bundle",
        ),
        (vec!["kill", "whatever", "--signal", "NOPE"], 2, "NOPE"),
        (vec!["--namespace", "a/b", "list"], 2, "namespace"),
        (vec!["run", "x-no-bundle"], 2, "--bundle"),
        (
            vec!["run", "x-rm-d", "--bundle", bs, "--rm", "-d"],
            2,
            "--rm",
        ),
        (vec!["exec", "x", "e"], 2, "command"),
        (vec!["frobnicate"], 2, "frobnicate"),
        (vec!["list", "--label", "novalue"], 2, "novalue"),
        (vec!["state"], 2, "<ID>"),
        (vec!["list", "stray"], 2, "stray"),
    ];
    for (args, want, mention) in cases {
        let out = d.ctl(&args);
        let err = stderr(&out);
        assert_eq!(code(&out), want, "corralctl {args:?}: stderr {err:?}");
        assert!(
            err.starts_with("corralctl: "),
            "corralctl {args:?}: {err:?}"
        );
        assert!(
            err.contains(mention),
            "corralctl {args:?} does not mention {mention:?}: {err:?}"
        );
        assert!(
            stdout(&out).is_empty(),
            "corralctl {args:?} printed {:?}",
            stdout(&out)
        );
    }
    // No daemon at the socket.
    let out = output_within(
        Command::new(CORRALCTL).env_remove("CORRAL_SOCKET").args([
            "--socket",
            "/nonexistent-dir/corrald.sock",
            "list",
        ]),
        LIVENESS,
    );
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("is corrald running?"),
        "{}",
        stderr(&out)
    );
    // None of it left a container behind or hurt the daemon.
    assert!(d.list_ids("default").is_empty());
    d.assert_alive();
    assert!(d.ctl_ok(&["version"]).contains(corral::VERSION));
}

/// `corralctl bundle busybox DIR -- CMD` makes a bundle that runs CMD.
#[test]
fn the_bundle_command_makes_a_runnable_bundle() {
    let d = Daemon::start("cli_bundle");
    let dir = d.path("made-by-cli");
    let dirs = dir.to_str().unwrap();
    let said = d.ctl_ok(&[
        "bundle",
        "busybox",
        dirs,
        "--",
        "sh",
        "-c",
        "echo via-cli; exit 12",
    ]);
    assert!(said.contains(dirs), "{said}");
    assert!(dir.join("config.json").is_file() && dir.join("rootfs/bin/sh").exists());
    let id = unique_id("clibundle");
    let out = d.ctl(&["run", &id, "--bundle", dirs, "--rm"]);
    assert_eq!(
        (code(&out), stdout(&out)),
        (12, "via-cli\n".to_string()),
        "{}",
        stderr(&out)
    );
    d.assert_no_leftovers("default", &id);
}

/// `corralctl events --json` prints one JSON event per line, as they happen.
#[test]
fn events_follow_as_json_lines() {
    let d = Daemon::start("cli_events");
    let b = d.bundle("two", &["sh", "-c", "exit 2"]);
    let id = unique_id("clievents");
    // --since 1 replays from the start of the journal, so nothing is missed however fast
    // the follower connects.
    let mut follower = Command::new(CORRALCTL)
        .env_remove("CORRAL_NAMESPACE")
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "events",
            "--json",
            "--since",
            "1",
            "--id",
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corralctl events");
    let pid = follower.id() as i32;
    let lines = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(lines).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let out = d.ctl(&["run", &id, "--bundle", b.to_str().unwrap(), "--rm"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let mut events: Vec<Event> = Vec::new();
    while events.last().is_none_or(|e| e.topic != Topic::TaskDelete) {
        let line = rx
            .recv_timeout(LIVENESS)
            .unwrap_or_else(|_| panic!("corralctl events stopped after {events:#?}"))
            .expect("read corralctl events");
        events.push(parse(&line, "an event line"));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = within(
        Duration::from_secs(10),
        "corralctl events to exit",
        move || follower.wait(),
    );
    assert!(status.is_ok());
    let topics: Vec<Topic> = events.iter().map(|e| e.topic).collect();
    assert_eq!(
        topics,
        vec![
            Topic::TaskCreate,
            Topic::TaskStart,
            Topic::TaskExit,
            Topic::TaskDelete
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.container_id == id && e.namespace == "default"));
    assert_eq!(events[2].exit.map(|e| e.code), Some(2));
}

/// `corralctl events ARGS...` on `d`'s socket, with its stdout lines sent on a channel.
fn follow_events(
    d: &Daemon,
    args: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<std::io::Result<String>>,
) {
    let mut follower = Command::new(CORRALCTL)
        .env_remove("CORRAL_NAMESPACE")
        .args(["--socket", d.socket.to_str().unwrap(), "events"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corralctl events");
    let lines = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(lines).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (follower, rx)
}

/// Runs a container of `/bin/true` to its end: 4 events (create, start, exit, delete).
fn run_true(d: &Daemon, id: &str) {
    let b = d.bundle("true", &["true"]);
    d.run(id, &b);
    assert_eq!(d.wait_code("", id, None), 0);
    d.delete("", id, false).unwrap();
}

/// Reads `n` JSON event lines.
fn read_events(rx: &std::sync::mpsc::Receiver<std::io::Result<String>>, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let line = rx
                .recv_timeout(LIVENESS)
                .unwrap_or_else(|_| panic!("corralctl events stopped after {i} events"))
                .expect("read corralctl events");
            parse(&line, "an event line")
        })
        .collect()
}

fn wait_output(follower: std::process::Child) -> std::process::Output {
    within(LIVENESS, "corralctl events to exit", move || {
        follower.wait_with_output()
    })
    .expect("wait for corralctl events")
}

/// A follower whose daemon dies is told, with the last event it saw, and exits 125: a
/// crash is not the end of the stream.
#[test]
fn events_fail_with_125_when_corrald_goes_away() {
    let mut d = Daemon::start("cli_events_gone");
    let from = d.info().last_seq + 1;
    let (follower, rx) = follow_events(&d, &["--json", "--since", &from.to_string()]);
    let id = unique_id("cligone");
    run_true(&d, &id);
    let seen = read_events(&rx, 4);
    let last = seen[3].seq;
    assert_eq!(seen[3].topic, Topic::TaskDelete);
    d.kill9();
    let out = wait_output(follower);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("corrald went away after event {last}")),
        "{}",
        stderr(&out)
    );
    d.restart();
}

/// With --reconnect, a follower outlives a kill -9 of corrald: it connects to the next
/// daemon and resumes after the last event it saw, so every event of the containers run
/// before and after is printed exactly once, in order; --until ends it with 0.
#[test]
fn events_reconnect_and_resume_across_a_kill_9() {
    let mut d = Daemon::start("cli_events_reconnect");
    let from = d.info().last_seq + 1;
    // Two runs of 4 events each; the restart itself publishes none (no containers).
    let until = from + 7;
    let (follower, rx) = follow_events(
        &d,
        &[
            "--json",
            "--reconnect",
            "--reconnect-timeout",
            "30s",
            "--since",
            &from.to_string(),
            "--until",
            &until.to_string(),
        ],
    );
    let first = unique_id("clirec1");
    run_true(&d, &first);
    let mut seen = read_events(&rx, 4);
    d.kill9();
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    let second = unique_id("clirec2");
    run_true(&d, &second);
    let next = rx.recv_timeout(LIVENESS);
    if !matches!(next, Ok(Ok(_))) {
        let out = wait_output(follower);
        panic!(
            "corralctl events stopped after the restart: {}",
            stderr(&out)
        );
    }
    seen.push(parse(&next.unwrap().unwrap(), "an event line"));
    seen.extend(read_events(&rx, 3));
    let out = wait_output(follower);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).trim().is_empty(),
        "events past --until: {}",
        stdout(&out)
    );
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (from..=until).collect::<Vec<_>>(), "{seen:#?}");
    let ids: Vec<&str> = seen.iter().map(|e| e.container_id.as_str()).collect();
    assert_eq!(
        ids,
        [[first.as_str(); 4], [second.as_str(); 4]].concat(),
        "{seen:#?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("corrald went away after event {}", from + 3)),
        "{err}"
    );
    assert!(err.contains("reconnected"), "{err}");
}
