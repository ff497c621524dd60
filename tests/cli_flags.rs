//! corralctl's command line (issue 13): flags before and after the id, per-command help,
//! completions and man pages, docker's exit codes, and the commands people expect (stop,
//! restart, several ids, -q, --format, events filters, inspect, top).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{ContainerInfo, Event, Status, Topic};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every command (with the checkpoint subcommands); each has its own --help.
const COMMANDS: &[&str] = &[
    "create",
    "start",
    "run",
    "exec",
    "kill",
    "stop",
    "restart",
    "wait",
    "delete",
    "pause",
    "resume",
    "close-stdin",
    "list",
    "state",
    "pids",
    "inspect",
    "top",
    "info",
    "version",
    "update",
    "stats",
    "checkpoint",
    "checkpoints",
    "restore",
    "events",
    "image",
    "images",
    "content",
    "lease",
    "namespace",
    "prune",
    "bundle",
    "completion",
    "man",
];

/// corralctl without a daemon.
fn local(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(CORRALCTL)
            .env_remove("CORRAL_SOCKET")
            .env_remove("CORRAL_NAMESPACE")
            .args(args),
        LIVENESS,
    )
}

fn state_of(d: &Daemon, id: &str) -> ContainerInfo {
    serde_json::from_str(&d.ctl_ok(&["state", id, "--json"])).unwrap()
}

/// Every command that takes an id takes its flags before it and after it.
#[test]
fn flags_before_and_after_the_id() {
    let d = Daemon::start("cli_flag_order");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let bs = b.to_str().unwrap();
    let (a1, a2) = (unique_id("before"), unique_id("after"));
    d.ctl_ok(&["run", "-d", "--bundle", bs, "-l", "k=v", &a1]);
    d.ctl_ok(&["run", &a2, "--bundle", bs, "-d", "-l", "k=v"]);
    let (c1, c2) = (unique_id("cbefore"), unique_id("cafter"));
    d.ctl_ok(&["create", "--bundle", bs, &c1]);
    d.ctl_ok(&["create", &c2, "--bundle", bs]);
    for c in [&c1, &c2] {
        assert_eq!(state_of(&d, c).status, Status::Created);
        d.ctl_ok(&["start", c]);
    }
    // `kill -s KILL ID` and `kill ID -s KILL` (the first complaint).
    d.ctl_ok(&["kill", "-s", "KILL", &c1]);
    d.ctl_ok(&["kill", &c2, "-s", "KILL"]);
    assert_eq!(stdout(&d.ctl(&["wait", &c1])).trim(), "137");
    assert_eq!(stdout(&d.ctl(&["wait", &c2])).trim(), "137");
    d.ctl_ok(&["delete", &c1, &c2]);

    for (i, id) in [&a1, &a2].into_iter().enumerate() {
        let before = i == 0;
        let order = |flags: &[&str], positional: &[&str]| -> Vec<String> {
            let (first, second) = if before {
                (flags, positional)
            } else {
                (positional, flags)
            };
            first.iter().chain(second).map(|s| s.to_string()).collect()
        };
        let ctl = |cmd: &str, flags: &[&str], positional: &[&str], rest: &[&str]| {
            let mut args = vec![cmd.to_string()];
            args.extend(order(flags, positional));
            args.extend(rest.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            d.ctl_ok(&refs)
        };
        let e1 = format!("e1{i}");
        ctl("exec", &["-d"], &[id, &e1], &["--", "sleep", "1000"]);
        ctl("kill", &["--exec", &e1, "-s", "KILL"], &[id], &[]);
        let out = d.ctl(&{
            let mut v = vec!["wait"];
            if before {
                v.extend(["--exec", e1.as_str(), id.as_str()]);
            } else {
                v.extend([id.as_str(), "--exec", e1.as_str()]);
            }
            v
        });
        assert_eq!((code(&out), stdout(&out).trim()), (137, "137"));
        let s: ContainerInfo =
            serde_json::from_str(&ctl("state", &["--json"], &[id], &[])).unwrap();
        assert_eq!(s.id, *id);
        let p: Vec<corral::PidInfo> =
            serde_json::from_str(&ctl("pids", &["--json"], &[id], &[])).unwrap();
        assert!(!p.is_empty());
        let st: serde_json::Value =
            serde_json::from_str(&ctl("stats", &["--json"], &[id], &[])).unwrap();
        assert!(st.get(id.as_str()).is_some(), "{st}");
        ctl("update", &["--pids-limit", "100"], &[id], &[]);
        let f = ctl("state", &["--format", "id,status"], &[id], &[]);
        assert!(f.contains(id.as_str()) && f.contains("running"), "{f}");
        let cps: Vec<serde_json::Value> =
            serde_json::from_str(&ctl("checkpoints", &["--json"], &[id], &[])).unwrap();
        assert!(cps.is_empty());
        ctl("restart", &["-t", "1"], &[id], &[]);
        ctl("stop", &["-t", "1", "-s", "KILL"], &[id], &[]);
        ctl("delete", &["-f"], &[id], &[]);
    }
    // Global options after the command, too.
    assert!(d.ctl_ok(&["list", "-n", "other", "-q"]).is_empty());
    assert!(d.list_ids("default").is_empty());
}

/// `--help` of every command exits 0 and names it; `--version` and bad usage.
#[test]
fn help_version_and_usage_errors() {
    for cmd in COMMANDS {
        let out = local(&[cmd, "--help"]);
        assert_eq!(code(&out), 0, "{cmd} --help: {}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("Usage: corralctl {cmd}")),
            "{cmd} --help: {}",
            stdout(&out)
        );
        let out = local(&["help", cmd]);
        assert_eq!(code(&out), 0, "help {cmd}");
    }
    let out = local(&["checkpoint", "export", "--help"]);
    assert!(stdout(&out).contains("Usage: corralctl checkpoint export"));
    for v in ["--version", "-V"] {
        let out = local(&[v]);
        assert_eq!(code(&out), 0);
        assert_eq!(
            stdout(&out).trim(),
            format!("corralctl {}", corral::VERSION)
        );
    }
    // Usage errors: 2, clap's short error with a hint, nothing on stdout.
    for args in [
        vec!["list", "--no-such-flag"],
        vec!["kill", "web", "--bogus"],
        vec!["frobnicate"],
        vec!["list", "--format", "id,nosuchfield"],
        vec!["events", "--filter", "topic=/no/such"],
        vec!["events", "--since", "yesterday"],
        vec!["stop", "-t", "soon", "web"],
        vec![],
    ] {
        let out = local(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("corralctl: ") || err.contains("Usage"),
            "{args:?}: {err}"
        );
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
    let out = local(&["list", "--lables", "a=b"]);
    assert!(
        stderr(&out).contains("--label"),
        "a suggestion: {}",
        stderr(&out)
    );
}

/// `completion` prints a script for each shell; `man DIR` writes a page per command.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = local(&["completion", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.len() > 100 && script.contains("corralctl"),
            "{shell}"
        );
        assert!(script.contains("checkpoint"), "{shell} knows the commands");
    }
    assert_eq!(code(&local(&["completion", "tcsh"])), 2);
    let dir = std::env::temp_dir().join(unique_id("corralctl-man"));
    let out = local(&["man", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.join("corralctl.1")).unwrap();
    assert!(page.contains(".TH") && page.contains("corralctl"));
    for cmd in COMMANDS {
        let page = dir.join(format!("corralctl-{cmd}.1"));
        assert!(page.is_file(), "no {}", page.display());
    }
    assert!(dir.join("corralctl-checkpoint-rm.1").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A container's own code comes through run, exec and wait; corral's own failures exit
/// 125, a process that cannot be invoked 126 and one not found 127.
#[test]
fn exit_codes_follow_docker() {
    let d = Daemon::start("cli_exit_codes");
    for n in [1, 2] {
        let b = d.bundle(&format!("exit{n}"), &["sh", "-c", &format!("exit {n}")]);
        let id = unique_id(&format!("exit{n}"));
        let out = d.ctl(&["run", "--rm", &id, "--bundle", b.to_str().unwrap()]);
        assert_eq!(code(&out), n, "run: {}", stderr(&out));
        let id = unique_id(&format!("wait{n}"));
        d.ctl_ok(&["run", "-d", &id, "--bundle", b.to_str().unwrap()]);
        let out = d.ctl(&["wait", &id]);
        assert_eq!(
            (code(&out), stdout(&out).trim()),
            (n, n.to_string().as_str())
        );
        d.ctl_ok(&["rm", &id]);
    }
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("execs");
    d.ctl_ok(&["run", "-d", &id, "--bundle", sleeper.to_str().unwrap()]);
    for n in [1, 2] {
        let out = d.ctl(&[
            "exec",
            &id,
            &format!("x{n}"),
            "--",
            "sh",
            "-c",
            &format!("exit {n}"),
        ]);
        assert_eq!(code(&out), n, "exec: {}", stderr(&out));
    }
    let out = d.ctl(&["exec", &id, "nf", "--", "/no/such/binary"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/binary"), "{}", stderr(&out));
    let out = d.ctl(&["exec", &id, "nf2", "--", "nosuchcommand"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let out = d.ctl(&["exec", &id, "noexec", "--", "/etc/passwd"]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    let missing = d.bundle("missing", &["/no/such/init"]);
    let out = d.ctl(&[
        "run",
        "--rm",
        &unique_id("nf"),
        "--bundle",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    // corral's own failures.
    for args in [
        vec!["state", "no-such-container"],
        vec!["wait", "no-such-container"],
        vec!["exec", "no-such-container", "e", "--", "true"],
        vec!["pause", "no-such-container"],
    ] {
        let out = d.ctl(&args);
        assert_eq!(code(&out), 125, "{args:?}: {}", stderr(&out));
    }
    let out = d.ctl(&["--bogus-flag", "list"]);
    assert_eq!(code(&out), 2);
    d.ctl_ok(&["rm", "-f", &id]);
    // No daemon: 125, and `version` still prints the client's release.
    let down = ["--socket", "/nonexistent-dir/corrald.sock"];
    let out = local(&[down[0], down[1], "list"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let out = local(&[down[0], down[1], "version"]);
    assert_eq!(code(&out), 125);
    assert!(stdout(&out).contains(corral::VERSION), "{}", stdout(&out));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert!(d.ctl_ok(&["version"]).contains("protocol"));
}

/// `stop` of a container that ignores SIGTERM kills it after -t; `restart` runs it again.
#[test]
fn stop_and_restart() {
    let d = Daemon::start("cli_stop");
    let b = d.bundle("stubborn", &["sh", "-c", "trap '' TERM; sleep 1000"]);
    let id = unique_id("stubborn");
    d.ctl_ok(&["run", "-d", &id, "--bundle", b.to_str().unwrap()]);
    let first = state_of(&d, &id).pid;
    let out = d.ctl(&["restart", "-t", "1", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("restarted"), "{}", stdout(&out));
    let s = state_of(&d, &id);
    assert_eq!(s.status, Status::Running);
    assert_ne!(s.pid, first, "restart gave the same pid");
    assert!(alive(s.pid as i32));
    let t0 = Instant::now();
    let out = d.ctl(&["stop", "-t", "2", &id]);
    let took = t0.elapsed();
    assert_eq!(
        (code(&out), stdout(&out).trim()),
        (0, "137"),
        "{}",
        stderr(&out)
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "stop -t 2 took {took:?}"
    );
    let s = state_of(&d, &id);
    assert_eq!(
        (s.status, s.exit.map(|e| e.code)),
        (Status::Stopped, Some(137))
    );
    // A restart of a stopped container runs it again.
    d.ctl_ok(&["restart", &id]);
    assert_eq!(state_of(&d, &id).status, Status::Running);
    // One that exits on SIGTERM stops at once with its own code.
    let polite = d.bundle(
        "polite",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    let p = unique_id("polite");
    d.ctl_ok(&["run", "-d", &p, "--bundle", polite.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300)); // let sh set its trap
    let t0 = Instant::now();
    let out = d.ctl(&["stop", &p, "--time", "3", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "0\n137\n");
    // The polite one at once, the stubborn one after its 3 s.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    d.ctl_ok(&["rm", &p, &id]);
}

/// kill, wait, rm, pause and resume take several ids; the first failure's code wins and
/// every error names its id.
#[test]
fn several_ids() {
    let d = Daemon::start("cli_several");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let ids: Vec<String> = (0..3).map(|i| unique_id(&format!("many{i}"))).collect();
    for id in &ids {
        d.ctl_ok(&["run", "-d", id, "--bundle", b.to_str().unwrap()]);
    }
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let with = |cmd: &[&str], extra: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(&all)
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| d.ctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(with(&["pause"], &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("paused"))
            .count(),
        3
    );
    let out = run(with(&["resume"], &["no-such-one"]));
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no-such-one"), "{}", stderr(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("running"))
            .count(),
        3
    );
    let out = run(with(&["kill", "-s", "KILL"], &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(with(&["wait"], &[]));
    assert_eq!(
        (code(&out), stdout(&out)),
        (137, "137\n137\n137\n".to_string())
    );
    let mut args = vec!["rm".to_string(), ids[0].clone(), "no-such-one".into()];
    args.extend(ids[1..].iter().cloned());
    let out = run(args);
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(
        err.contains("no-such-one") && err.contains("not found"),
        "{err}"
    );
    assert!(d.list_ids("default").is_empty(), "the others were deleted");
}

/// `ps` is `list`; `-q` prints ids; `--format` takes fields or a template.
#[test]
fn quiet_and_format() {
    let d = Daemon::start("cli_format");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let (x, y) = (unique_id("fmtx"), unique_id("fmty"));
    d.ctl_ok(&[
        "run",
        "-d",
        &x,
        "--bundle",
        b.to_str().unwrap(),
        "-l",
        "app=web",
    ]);
    d.ctl_ok(&["run", "-d", &y, "--bundle", b.to_str().unwrap()]);
    let mut q: Vec<String> = d.ctl_ok(&["ps", "-q"]).lines().map(String::from).collect();
    q.sort();
    let mut want = vec![x.clone(), y.clone()];
    want.sort();
    assert_eq!(q, want);
    assert_eq!(
        d.ctl_ok(&["list", "--quiet", "-l", "app=web"]),
        format!("{x}\n")
    );
    assert_eq!(d.ctl_ok(&["ps"]), d.ctl_ok(&["list"]));
    let pid = state_of(&d, &x).pid;
    let t = d.ctl_ok(&[
        "ps",
        "-l",
        "app=web",
        "--format",
        "{{.ID}} {{ .Status }} pid={{.PID}}",
    ]);
    assert_eq!(t, format!("{x} running pid={pid}\n"));
    let t = d.ctl_ok(&["ps", "-l", "app=web", "--format", "id,pid,labels"]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2, "{t}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("PID") && lines[0].ends_with("LABELS"));
    assert!(
        lines[1].starts_with(&x)
            && lines[1].contains(&pid.to_string())
            && lines[1].ends_with("app=web")
    );
    assert_eq!(
        d.ctl_ok(&["state", &x, "--format", "{{.Namespace}}/{{.ID}}"]),
        format!("default/{x}\n")
    );
    assert_eq!(code(&d.ctl(&["ps", "-q", "--json"])), 2);
    d.ctl_ok(&["rm", "-f", &x, &y]);
}

/// `events --filter topic=… --filter id=… --until …` prints the matching events and ends.
#[test]
fn events_filters_and_until() {
    let d = Daemon::start("cli_events_until");
    let b = d.bundle("three", &["sh", "-c", "exit 3"]);
    let (p, q) = (unique_id("evp"), unique_id("evq"));
    for id in [&p, &q] {
        let out = d.ctl(&["run", "--rm", id, "--bundle", b.to_str().unwrap()]);
        assert_eq!(code(&out), 3);
    }
    let last = d.info().last_seq.to_string();
    let events = |args: &[&str]| -> Vec<Event> {
        let mut full = vec!["events", "--json"];
        if !args.contains(&"--since") {
            full.extend(["--since", "1"]);
        }
        full.extend_from_slice(args);
        let out = d.ctl(&full);
        assert_eq!(code(&out), 0, "{full:?}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let exits = events(&["--filter", "topic=/tasks/exit", "--until", &last]);
    assert_eq!(exits.len(), 2, "{exits:#?}");
    assert!(exits
        .iter()
        .all(|e| e.topic == Topic::TaskExit && e.exit.map(|x| x.code) == Some(3)));
    let mine = events(&["--filter", &format!("id={q}"), "--until", &last]);
    assert_eq!(
        topics_of(&mine),
        [
            Topic::TaskCreate,
            Topic::TaskStart,
            Topic::TaskExit,
            Topic::TaskDelete
        ]
    );
    assert!(mine.iter().all(|e| e.container_id == q));
    let both = events(&[
        "--filter",
        "topic=/tasks/delete",
        "--filter",
        &format!("id={p}"),
        "--filter",
        &format!("id={q}"),
        "--until",
        "0s",
    ]);
    assert_eq!(both.len(), 2, "{both:#?}");
    // --until before the first event: nothing; @UNIX --since from the epoch: everything.
    assert!(events(&["--until", "0"]).is_empty());
    let now = corral::now_ns() / 1_000_000_000 + 1;
    let all = events(&["--since", "@0", "--until", &format!("@{now}")]);
    assert_eq!(all.len(), 8, "{all:#?}");
    // Until a sequence still to come: it ends when that event arrives.
    let next = (d.info().last_seq + 1).to_string();
    let mut follower = Command::new(CORRALCTL)
        .env_remove("CORRAL_NAMESPACE")
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "events",
            "--until",
            &next,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "ended before the event"
    );
    let r = unique_id("evr");
    d.ctl_ok(&["run", "-d", &r, "--bundle", b.to_str().unwrap()]);
    let status = within(LIVENESS, "events --until SEQ to end", move || {
        follower.wait_with_output()
    });
    let out = status.unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    d.ctl_ok(&["rm", "-f", &r]);
}

/// `inspect` is one JSON object with the state and the bundle's spec; `top` lists the init.
#[test]
fn inspect_and_top() {
    let d = Daemon::start("cli_inspect");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("inspect");
    d.ctl_ok(&["run", "-d", &id, "--bundle", b.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["inspect", &id])).unwrap();
    let state: ContainerInfo = serde_json::from_value(v["state"].clone()).unwrap();
    assert_eq!(
        (state.id.as_str(), state.status),
        (id.as_str(), Status::Running)
    );
    assert_eq!(
        v["spec"]["process"]["args"],
        serde_json::json!(["sleep", "1000"]),
        "{v}"
    );
    assert!(v["spec"]["ociVersion"].is_string());
    let top = d.ctl_ok(&["top", &id]);
    let mut lines = top.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("PID") && header.ends_with("COMMAND"),
        "{top}"
    );
    let row = lines.next().unwrap_or_else(|| panic!("{top}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[0], state.pid.to_string(), "{top}");
    assert_eq!(cells[1], "init", "{top}");
    assert_eq!(cells[2], "root", "{top}");
    assert!(row.ends_with("sleep 1000"), "{top}");
    d.ctl_ok(&["exec", "-d", &id, "side", "--", "sleep", "999"]);
    // `runc exec --detach` may return just before its child execs the command, which
    // `top` shows as `runc init` for that moment.
    wait_until(LIVENESS, "top to show the exec's command", || {
        d.ctl_ok(&["top", &id])
            .lines()
            .any(|l| l.contains(" side ") && l.ends_with("sleep 999"))
    });
    assert_eq!(code(&d.ctl(&["inspect", "no-such-one"])), 125);
    d.ctl_ok(&["rm", "-f", &id]);
}

/// `info` prints every field of DaemonInfo, nested ones a leaf a line; `--json` all of it.
#[test]
fn info_text_and_json() {
    let d = Daemon::start("cli_info");
    let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["info", "--json"])).unwrap();
    assert_eq!(v["version"], corral::VERSION, "{v}");
    let text = d.ctl_ok(&["info"]);
    assert!(text.starts_with("version:"), "{text}");
    for (key, value) in v.as_object().unwrap() {
        if let Some(inner) = value.as_object() {
            for k in inner.keys() {
                let label = format!("{} {}", key.replace('_', " "), k.replace('_', " "));
                assert!(text.contains(&label), "no {label:?} in {text}");
            }
        }
    }
}
