//! corrald's config file: `config default`, bad files (exit 2 naming the file, the line and
//! the key), flags over the file, the runtimes table, and JSON logs.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A directory for a test's config files (the Daemon's own dir is made anew at its start).
fn config_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/corral-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// `corrald config default` prints a complete config that reads back, and a daemon
/// starts with it (its own dirs and socket by flags).
#[test]
fn config_default_reads_back_and_a_daemon_starts_with_it() {
    let out = output_within(Command::new(CORRALD).args(["config", "default"]), LIVENESS);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for key in [
        "state_dir",
        "runtime_root",
        "socket",
        "runtime",
        "shim",
        "criu",
        "runtime_timeout",
        "shim_timeout",
        "metrics_address",
        "log_format",
        "log_level",
        "[runtimes.runc]",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    let dir = config_dir("default");
    let file = write(&dir, "corrald.toml", &text);
    corral::daemon_config::Loaded::read(&file, true).unwrap();

    let d = Daemon::start_with("config_default", &["--config", file.to_str().unwrap()]);
    assert!(d.client().health().unwrap());
    let b = d.bundle("true", &["true"]);
    let id = unique_id("cfgdefault");
    d.run(&id, &b);
    assert_eq!(d.wait_code("", &id, None), 0);
    d.delete("", &id, false).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unknown key, a wrong type and a bad runtime binary each stop corrald at start with
/// exit 2 and a message naming the file, the line and the key.
#[test]
fn bad_config_files_exit_2_naming_the_file_line_and_key() {
    let dir = config_dir("bad");
    let cases = [
        (
            "unknown.toml",
            "log_level = \"info\"\n\n[runtimes.alt]\nbinary = \"runc\"\nbogus = 1\n",
            "line 5",
            "runtimes.alt.bogus",
        ),
        (
            "type.toml",
            "# a comment\nruntime_timeout = [1, 2]\n",
            "line 2",
            "runtime_timeout",
        ),
        (
            "duration.toml",
            "shim_timeout = \"soon\"\n",
            "line 1",
            "shim_timeout",
        ),
        (
            "binary.toml",
            "socket = \"/tmp/x.sock\"\n[runtimes.gone]\nargs = [\"--debug\"]\nbinary = \"/nonexistent/runc\"\n",
            "line 4",
            "runtimes.gone.binary",
        ),
        (
            "not-executable.toml",
            "[runtimes.text]\nbinary = \"NOT_EXECUTABLE\"\n",
            "line 2",
            "runtimes.text.binary",
        ),
        (
            "snapshotter.toml",
            "log_level = \"info\"\nsnapshotter = \"zfs\"\n",
            "line 2",
            "snapshotter",
        ),
    ];
    let not_executable = write(&dir, "plain-file", "not a runtime");
    for (name, text, line, key) in cases {
        let text = text.replace("NOT_EXECUTABLE", not_executable.to_str().unwrap());
        let file = write(&dir, name, &text);
        let out = output_within(
            Command::new(CORRALD)
                .env_remove("RUST_LOG")
                .arg("--config")
                .arg(&file)
                .arg("--socket")
                .arg(dir.join("never.sock"))
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--root")
                .arg(dir.join("root"))
                .arg("--shim")
                .arg(SHIM),
            LIVENESS,
        );
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{name}: {err}");
        assert!(err.contains(file.to_str().unwrap()), "{name}: {err}");
        assert!(err.contains(line), "{name}: no {line:?} in {err}");
        assert!(
            err.contains(&format!("`{key}`")),
            "{name}: no {key} in {err}"
        );
        assert!(!dir.join("state").exists(), "{name}: it went on to start");
    }
    // A --config that does not exist is an error too (a missing default file is not).
    let out = output_within(
        Command::new(CORRALD).args(["--config", "/nonexistent/corrald.toml"]),
        LIVENESS,
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/corrald.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flags override the file's keys; keys no flag gives take effect (here log_format).
#[test]
fn flags_override_the_file() {
    let dir = config_dir("override");
    let file = write(
        &dir,
        "corrald.toml",
        &format!(
            "state_dir = \"{0}/file-state\"\nruntime_root = \"{0}/file-root\"\n\
             socket = \"{0}/file.sock\"\nlog_level = \"error\"\nlog_format = \"json\"\n\
             runtime_timeout = \"45s\"\n",
            dir.display()
        ),
    );
    // The fixture gives --socket, --state-dir, --root and --log-level debug.
    let mut d = Daemon::start_with("config_override", &["--config", file.to_str().unwrap()]);
    let info = d.client().info().unwrap();
    assert_eq!(info.features.state_dir, d.state_dir);
    assert_eq!(info.features.runtime_root, d.root);
    assert!(!dir.join("file-state").exists());
    assert!(!dir.join("file.sock").exists());
    d.stop();
    let log = d.log_text();
    assert!(log.contains("\"level\":\"DEBUG\""), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `[runtimes.alt]` entry is usable by name from a create request, with its args before
/// the request's; an unknown name is refused, listing the known ones.
#[test]
fn a_named_runtime_from_the_config_file() {
    let dir = config_dir("runtimes");
    let file = write(
        &dir,
        "corrald.toml",
        &format!(
            "[runtimes.alt]\nbinary = \"{}\"\nargs = [\"--debug\"]\noptions = {{ systemd-cgroup = false }}\n",
            runc().display()
        ),
    );
    let d = Daemon::start_with("config_runtimes", &["--config", file.to_str().unwrap()]);
    let info = d.client().info().unwrap();
    assert_eq!(
        info.features.runtimes.get("alt").map(PathBuf::as_path),
        Some(runc())
    );
    assert!(info.features.runtimes.contains_key("runc"), "{info:?}");

    let b = d.bundle("true", &["sh", "-c", "exit 3"]);
    let id = unique_id("altrt");
    let mut req = run_req(&id, &b);
    req.runtime = Some("alt".into());
    req.runtime_args = vec!["--log-format=json".into()];
    let created = d.create(req).unwrap();
    assert_eq!(created.runtime, runc());
    assert_eq!(d.wait_code("", &id, None), 3);
    // The entry's args, then its options, then the request's, as recorded for adoption.
    let record =
        std::fs::read_to_string(d.container_state_dir("default", &id).join("state.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(
        record["runtime_args"],
        serde_json::json!(["--debug", "--systemd-cgroup=false", "--log-format=json"]),
        "{record}"
    );
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);

    let mut req = run_req(&unique_id("nort"), &b);
    req.runtime = Some("nope".into());
    match d.create(req) {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains("nope"), "{msg}");
            assert!(msg.contains("alt, runc"), "{msg}");
        }
        other => panic!("an unknown runtime name gave {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-format json`: every line corrald writes to stderr while a container runs,
/// execs, exits and is deleted parses as JSON.
#[test]
fn json_logs_are_json_on_every_line() {
    let mut d = Daemon::start_with("json_logs", &["--log-format", "json"]);
    let b = d.bundle("sleep", &["sleep", "100"]);
    let id = unique_id("jsonlog");
    d.run(&id, &b);
    d.client()
        .exec(exec_req(&id, "e1", &["sh", "-c", "exit 4"]))
        .unwrap();
    assert_eq!(d.wait_code("", &id, Some("e1")), 4);
    d.client().kill(kill_init_req(&id)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    d.delete("", &id, false).unwrap();
    // A failing request is logged too.
    let mut req = run_req(&unique_id("jsonbad"), &b);
    req.runtime = Some("/nonexistent/runc".into());
    assert!(d.create(req).is_err());
    std::thread::sleep(Duration::from_millis(100));
    d.stop();
    let log = d.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nthe whole log:\n{log}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("ready"), "{log}");
}
