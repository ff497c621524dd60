//! `corralctl logs` and a foreground run's output as a user sees them: each stream to its
//! own, `--tail`, `--timestamps`, `-f` until the exit, rotation by size, byte-exact
//! copies (a partial last line included), and a foreground exec that frees its id.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::ContainerInfo;
use std::time::{Duration, Instant};

fn state(d: &Daemon, id: &str) -> ContainerInfo {
    serde_json::from_str(&d.ctl_ok(&["state", id, "--json"])).unwrap()
}

/// Whether `s` is `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn is_rfc3339_nano(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    b.len() == 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..29)
        && b[29] == b'Z'
}

/// stdout lines to our stdout, stderr lines to our stderr; `--tail 1` is the last entry;
/// `--timestamps` starts each line with an RFC 3339 time with nanoseconds; `state` shows
/// the log.
#[test]
fn logs_split_streams_tail_and_timestamps() {
    let d = Daemon::start("logs_streams");
    let b = d.bundle(
        "streams",
        &["sh", "-c", "echo out1; echo err1 >&2; sleep 0.1; echo out2"],
    );
    let id = unique_id("streams");
    d.ctl_ok(&["run", "-d", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(d.wait_code("", &id, None), 0);

    let out = d.ctl(&["logs", &id]);
    assert_eq!(code(&out), 0, "logs: {}", stderr(&out));
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");

    let out = d.ctl(&["logs", "--tail", "1", &id]);
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("out2\n", "")
    );

    let out = d.ctl(&["logs", "--timestamps", &id]);
    for (text, want) in [
        (stdout(&out), ["out1", "out2"].as_slice()),
        (stderr(&out), &["err1"]),
    ] {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want.len(), "{text:?}");
        for (line, want) in lines.iter().zip(want) {
            let (time, content) = line.split_once(' ').unwrap();
            assert!(is_rfc3339_nano(time), "not an RFC 3339 nano time: {line:?}");
            assert_eq!(content, *want);
        }
    }

    // A time after the output: nothing; an hour ago: everything.
    let out = d.ctl(&["logs", "--since", "2100-01-01T00:00:00Z", &id]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    assert_eq!(
        stdout(&d.ctl(&["logs", "--since", "1h", &id])),
        "out1\nout2\n"
    );

    let c = state(&d, &id);
    let log = c.log_path.expect("a logged container has a log path");
    assert!(log.is_file(), "{} is not a file", log.display());
    let text = d.ctl_ok(&["state", &id]);
    assert!(
        text.contains(&format!("log:       {}", log.display())),
        "{text}"
    );
    d.ctl_ok(&["rm", &id]);
}

/// `logs -f` prints lines as they come and ends by itself when the process exits.
#[test]
fn logs_follow_ends_at_exit() {
    let d = Daemon::start("logs_follow");
    let b = d.bundle(
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 10 ]; do echo tick$i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let id = unique_id("ticker");
    d.ctl_ok(&["run", "-d", "--bundle", b.to_str().unwrap(), &id]);
    let started = Instant::now();
    let out = d.ctl(&["logs", "-f", &id]);
    assert_eq!(code(&out), 0, "logs -f: {}", stderr(&out));
    let want: String = (0..10).map(|i| format!("tick{i}\n")).collect();
    assert_eq!(stdout(&out), want);
    // It followed (the ticker takes about a second), and it ended with the process.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(state(&d, &id).status, corral::Status::Stopped);
    d.ctl_ok(&["rm", &id]);
}

/// With --log-max-size 4096 --log-max-files 2, 100 KiB of output leaves at most two files
/// (a fraction of what was written), and `logs` shows the last lines.
#[test]
fn logs_rotate_by_size() {
    let d = Daemon::start("logs_rotate");
    // Bursts of 20 lines (about 2 KiB of log), so that the shim, which rotates between
    // reads of the output, has the chance to rotate often.
    let script = "i=0; while [ $i -lt 1600 ]; do \
                  echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; \
                  i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.01; done; true";
    let b = d.bundle("chatty", &["sh", "-c", script]);
    let id = unique_id("chatty");
    d.ctl_ok(&[
        "run",
        "-d",
        "--log-max-size",
        "4096",
        "--log-max-files",
        "2",
        "--bundle",
        b.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(d.wait_code("", &id, None), 0);

    let out = d.ctl(&["logs", &id]);
    assert_eq!(code(&out), 0, "logs: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    assert!(
        lines.last().unwrap().starts_with("line-1599-"),
        "last line {:?}",
        lines.last()
    );
    assert!(
        lines.len() < 1600 && !lines[0].starts_with("line-0-"),
        "the first lines were rotated away: {} lines, first {:?}",
        lines.len(),
        lines[0]
    );
    // What is left is the tail, in order, without gaps.
    let first: usize = lines[0].split('-').nth(1).unwrap().parse().unwrap();
    for (k, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("line-{}-", first + k)),
            "{line:?}"
        );
    }

    let log = state(&d, &id).log_path.unwrap();
    let name = log.file_name().unwrap().to_str().unwrap().to_string();
    let files: Vec<_> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().starts_with(&name))
        .collect();
    assert!(
        !files.is_empty() && files.len() <= 2,
        "log files: {:?}",
        files.iter().map(|f| f.file_name()).collect::<Vec<_>>()
    );
    // A file may pass the size by what one read of the output brought (the shim rotates
    // between reads), never by much.
    for f in &files {
        let len = f.metadata().unwrap().len();
        assert!(len <= 16 * 1024, "{:?} has {len} bytes", f.file_name());
    }
    d.ctl_ok(&["rm", &id]);
}

/// `logs` of an id that does not exist says so, exits 125 and prints nothing on stdout.
#[test]
fn logs_of_an_unknown_id_is_a_clear_error() {
    let d = Daemon::start("logs_unknown");
    let id = unique_id("nosuch");
    let out = d.ctl(&["logs", &id]);
    assert_eq!(code(&out), 125);
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("not found") && stderr(&out).contains(&id),
        "{}",
        stderr(&out)
    );
    let out = d.ctl(&["logs", "--since", "yesterday", &id]);
    assert_eq!(
        code(&out),
        2,
        "a bad time is a usage error: {}",
        stderr(&out)
    );
}

/// A foreground `run --rm` copies each stream byte for byte (a last line without its
/// newline too), exits with the process's code and deletes the container.
#[test]
fn foreground_run_copies_bytes_exactly() {
    let d = Daemon::start("logs_foreground");
    let b = d.bundle(
        "bytes",
        &[
            "sh",
            "-c",
            "echo out; printf 'tab\\there'; printf 'err\\n\\nno newline' >&2; exit 7",
        ],
    );
    let id = unique_id("bytes");
    let out = d.ctl(&["run", "--rm", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(code(&out), 7, "stderr {:?}", stderr(&out));
    assert_eq!(out.stdout, b"out\ntab\there");
    assert_eq!(out.stderr, b"err\n\nno newline");
    let gone = d.ctl(&["state", &id]);
    assert_eq!(code(&gone), 125, "--rm left {id} behind");
}

/// A foreground exec prints its output, exits with its code and is removed: the same exec
/// id can be used again; without an id one is made up; a detached exec is removed with
/// `exec-rm`.
#[test]
fn foreground_exec_frees_its_id() {
    let d = Daemon::start("logs_exec");
    let b = d.bundle("sleeper", &["sleep", "100"]);
    let id = unique_id("sleeper");
    d.ctl_ok(&["run", "-d", "--bundle", b.to_str().unwrap(), &id]);
    for round in 0..2 {
        let out = d.ctl(&[
            "exec",
            &id,
            "e1",
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 4",
        ]);
        assert_eq!(code(&out), 4, "round {round}: {}", stderr(&out));
        assert_eq!(
            (stdout(&out).as_str(), stderr(&out).as_str()),
            ("hi\n", "oops\n")
        );
    }
    let out = d.ctl(&["exec", &id, "--", "echo", "made-up"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "made-up\n"));
    let out = d.ctl(&["exec", "--exec-id", "e2", &id, "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(state(&d, &id).execs.is_empty(), "foreground execs stay");

    d.ctl_ok(&["exec", "-d", &id, "e3", "--", "true"]);
    assert_eq!(d.wait_code("", &id, Some("e3")), 0);
    assert_eq!(state(&d, &id).execs.len(), 1);
    d.ctl_ok(&["exec-rm", &id, "e3"]);
    assert!(state(&d, &id).execs.is_empty());
    d.ctl_ok(&["exec", &id, "e3", "--", "true"]);
    d.ctl_ok(&["rm", "-f", &id]);
}
