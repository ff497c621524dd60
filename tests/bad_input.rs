//! Requests a user gets wrong: each is refused with the right error kind and a message
//! that says what is wrong, the daemon stays up, and nothing is left behind.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{CreateRequest, Error, ExecProcess, KillRequest, Status};
use std::collections::BTreeMap;

/// Asserts the daemon is up, nothing changed on disk, and no cgroup exists for `id`.
fn assert_untouched(d: &Daemon, before: &std::collections::BTreeSet<std::path::PathBuf>, id: &str) {
    d.assert_alive();
    let after = d.snapshot();
    assert_eq!(
        &after, before,
        "a refused request changed the state dir or runc root"
    );
    if validate(id) {
        assert!(
            cgroup_dirs(id).is_empty(),
            "cgroups left for {id}: {:?}",
            cgroup_dirs(id)
        );
    }
}

fn validate(id: &str) -> bool {
    corral::validate_id("id", id).is_ok()
}

fn invalid_argument(result: corral::Result<impl std::fmt::Debug>, what: &str) -> String {
    match result {
        Err(Error::InvalidArgument(msg)) => msg,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Bad container ids and namespaces are refused by name, on every request, and never reach
/// the disk (no `..` escape of the state dir).
#[test]
fn invalid_ids_are_refused() {
    let d = Daemon::start("invalid_ids");
    let b = d.bundle("true", &["true"]);
    let long = "x".repeat(129);
    let before = d.snapshot();
    for id in [
        "",
        "a/b",
        "..",
        ".",
        long.as_str(),
        "a b",
        "-x",
        "../../etc",
        "é",
    ] {
        let msg = invalid_argument(d.create(run_req(id, &b)), &format!("create {id:?}"));
        assert!(msg.contains("container id"), "{id:?}: {msg}");
        if !id.is_empty() {
            assert!(msg.contains(id), "the message does not name {id:?}: {msg}");
        }
        let mut c = d.client();
        invalid_argument(c.state("", id), &format!("state {id:?}"));
        invalid_argument(c.delete("", id, true), &format!("delete {id:?}"));
        invalid_argument(c.start("", id), &format!("start {id:?}"));
        invalid_argument(c.wait("", id, None), &format!("wait {id:?}"));
        invalid_argument(
            c.kill(KillRequest {
                namespace: String::new(),
                id: id.to_string(),
                exec_id: None,
                signal: 9,
                all: true,
            }),
            &format!("kill {id:?}"),
        );
        assert_untouched(&d, &before, id);
    }
    for ns in ["a/b", "..", ".", "_events", long.as_str()] {
        let mut req = run_req(&unique_id("badns"), &b);
        req.namespace = ns.to_string();
        let msg = invalid_argument(d.create(req), &format!("create in namespace {ns:?}"));
        assert!(
            msg.contains("namespace") && msg.contains(ns),
            "{ns:?}: {msg}"
        );
        invalid_argument(
            d.client().list(ns, BTreeMap::new()),
            &format!("list {ns:?}"),
        );
        assert_untouched(&d, &before, "");
    }
    // The id limit is 128 characters: exactly 128 works.
    let id128 = format!("{}{}", unique_id("max"), "y".repeat(128))[..128].to_string();
    d.run(&id128, &b);
    assert_eq!(d.wait_code("", &id128, None), 0);
    d.delete("", &id128, false).unwrap();
    d.assert_no_leftovers("default", &id128);
}

/// Bundles that cannot work are refused before anything runs: the message names the bundle.
#[test]
fn bad_bundles_are_refused() {
    let d = Daemon::start("bad_bundles");
    let good = d.bundle("good", &["true"]);
    let write_bundle = |name: &str, config: Option<&str>| {
        let dir = d.path(name);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        if let Some(c) = config {
            std::fs::write(dir.join("config.json"), c).unwrap();
        }
        dir
    };
    let good_spec = std::fs::read_to_string(good.join("config.json")).unwrap();
    let mut no_process: serde_json::Value = serde_json::from_str(&good_spec).unwrap();
    no_process.as_object_mut().unwrap().remove("process");
    let mut empty_args: serde_json::Value = serde_json::from_str(&good_spec).unwrap();
    empty_args["process"]["args"] = serde_json::json!([]);
    let mut no_rootfs: serde_json::Value = serde_json::from_str(&good_spec).unwrap();
    no_rootfs["root"]["path"] = serde_json::json!("missing-rootfs");

    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        ("missing dir", d.path("does-not-exist"), "does-not-exist"),
        (
            "no config.json",
            write_bundle("noconfig", None),
            "config.json",
        ),
        (
            "not JSON",
            write_bundle("notjson", Some("{ this is not json")),
            "config.json",
        ),
        (
            "not a spec",
            write_bundle("notspec", Some(r#"{"ociVersion": 5, "process": "sh"}"#)),
            "config.json",
        ),
        (
            "no process",
            write_bundle("noprocess", Some(&no_process.to_string())),
            "process",
        ),
        (
            "empty args",
            write_bundle("emptyargs", Some(&empty_args.to_string())),
            "args",
        ),
        (
            "missing rootfs",
            write_bundle("norootfs", Some(&no_rootfs.to_string())),
            "missing-rootfs",
        ),
        ("a file, not a dir", good.join("config.json"), "config.json"),
    ];
    let before = d.snapshot();
    for (what, bundle, mention) in cases {
        let id = unique_id("badbundle");
        let msg = invalid_argument(d.create(run_req(&id, &bundle)), what);
        assert!(
            msg.contains(mention),
            "{what}: message does not mention {mention:?}: {msg}"
        );
        assert!(!d.list_ids("default").contains(&id));
        assert_untouched(&d, &before, &id);
        // The id is free: the same id works with a good bundle.
        d.assert_id_reusable(&id, &good);
    }
}

/// A runtime that does not exist is refused up front; one that exists but fails (here
/// /bin/false) is a RuntimeFailed, cleaned up.
#[test]
fn unknown_or_failing_runtime_is_refused() {
    let d = Daemon::start("bad_runtime");
    let b = d.bundle("true", &["true"]);
    let before = d.snapshot();
    let id = unique_id("noruntime");
    let mut req = run_req(&id, &b);
    req.runtime = Some("/nonexistent/runc".into());
    let msg = invalid_argument(d.create(req), "unknown runtime path");
    assert!(msg.contains("/nonexistent/runc"), "{msg}");
    assert_untouched(&d, &before, &id);

    let mut req = run_req(&id, &b);
    req.runtime = Some("no-such-runtime-in-path".into());
    let msg = invalid_argument(d.create(req), "unknown runtime name");
    assert!(msg.contains("no-such-runtime-in-path"), "{msg}");
    assert_untouched(&d, &before, &id);

    let mut req = run_req(&id, &b);
    req.runtime = Some("/bin/false".into());
    match d.create(req) {
        Err(Error::RuntimeFailed { id: failed, .. }) => assert_eq!(failed, id),
        other => panic!("a runtime that fails gave {other:?}"),
    }
    assert_untouched(&d, &before, &id);
    assert!(d.list_ids("default").is_empty());
}

/// A taken id is refused and the container that has it is untouched; two creates of one
/// new id at the same moment give one container and one AlreadyExists.
#[test]
fn duplicate_ids_are_refused() {
    let d = Daemon::start("duplicate_ids");
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let other = d.bundle("other", &["sh", "-c", "exit 9"]);
    let id = unique_id("dup");
    let info = d.run(&id, &sleeper);
    let state_json =
        std::fs::read(d.container_state_dir("default", &id).join("state.json")).unwrap();
    for start in [true, false] {
        let mut req = run_req(&id, &other);
        req.start = start;
        match d.create(req) {
            Err(Error::AlreadyExists(msg)) => assert!(msg.contains(&id), "{msg}"),
            other => panic!("duplicate create gave {other:?}"),
        }
    }
    let now = d.client().state("", &id).unwrap();
    assert_eq!(now.status, Status::Running);
    assert_eq!(now.pid, info.pid);
    assert_eq!(now.bundle, sleeper);
    assert!(alive(info.pid as i32));
    assert_eq!(
        std::fs::read(d.container_state_dir("default", &id).join("state.json")).unwrap(),
        state_json,
        "the duplicate create rewrote the original's state.json"
    );
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);

    // Two at once.
    let racy = unique_id("dupnow");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (socket, racy, b, barrier) = (
                d.socket.clone(),
                racy.clone(),
                other.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut c = corral::rpc::Client::connect(&socket)?;
                barrier.wait();
                c.create(run_req(&racy, &b))
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let dup = results
        .iter()
        .filter(|r| matches!(r, Err(Error::AlreadyExists(_))))
        .count();
    assert_eq!((ok, dup), (1, 1), "{results:?}");
    assert_eq!(d.wait_code("", &racy, None), 9);
    d.delete("", &racy, false).unwrap();
    d.assert_no_leftovers("default", &racy);
}

fn runtime_failure(
    result: corral::Result<impl std::fmt::Debug>,
    what: &str,
) -> (String, String, String) {
    match result {
        Err(Error::RuntimeFailed { op, id, stderr }) => (op, id, stderr),
        other => panic!("{what}: expected RuntimeFailed, got {other:?}"),
    }
}

/// A create that runc itself refuses (a missing binary, a mount of a missing source) is a
/// RuntimeFailed carrying runc's own message, and leaves nothing: no state dir, no runc
/// state, no cgroups. The id is free again afterwards.
#[test]
fn runc_failure_is_reported_and_cleaned_up() {
    let d = Daemon::start("runc_failure");
    let nope = d.bundle("nope", &["/nope"]);
    let good = d.bundle("good", &["true"]);
    let bad_mount = d.bundle("badmount", &["true"]);
    let config = bad_mount.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/mnt/missing",
            "type": "bind",
            "source": "/nonexistent-corral-test-source",
            "options": ["rbind", "ro"]
        }));
    std::fs::write(&config, spec.to_string()).unwrap();

    let before = d.snapshot();
    for (bundle, start, mention) in [
        (&nope, false, "/nope"),
        (&nope, true, "/nope"),
        (&bad_mount, false, "/nonexistent-corral-test-source"),
        (&bad_mount, true, "/nonexistent-corral-test-source"),
    ] {
        let id = unique_id("runcfail");
        let mut req = run_req(&id, bundle);
        req.start = start;
        let what = format!("{} with start={start}", bundle.display());
        let (op, failed_id, stderr) = runtime_failure(d.create(req), &what);
        assert_eq!(op, if start { "run" } else { "create" }, "{what}");
        assert_eq!(failed_id, id);
        assert!(
            stderr.contains(mention),
            "{what}: runc's message is missing: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains("no such file or directory"),
            "{what}: {stderr}"
        );
        assert!(!d.list_ids("default").contains(&id));
        // Also every cgroup named after the id, wherever runc put it (the whole tree).
        d.assert_no_leftovers("default", &id);
        assert_untouched(&d, &before, &id);
        // Nothing blocks the id now.
        d.assert_id_reusable(&id, &good);
    }
}

/// Stdio paths must be absolute; one in a directory that does not exist fails the create
/// with a message naming it, and leaves nothing.
#[test]
fn bad_stdio_paths_are_refused() {
    let d = Daemon::start("bad_stdio");
    let b = d.bundle("echo", &["echo", "hi"]);
    let before = d.snapshot();
    let id = unique_id("stdio");
    let mut req = run_req(&id, &b);
    req.stdio.stdout = Some("relative/out".into());
    let msg = invalid_argument(d.create(req), "relative stdout");
    assert!(
        msg.contains("relative/out") && msg.contains("absolute"),
        "{msg}"
    );
    assert_untouched(&d, &before, &id);

    let mut req = run_req(&id, &b);
    req.stdio.stderr = Some("/nonexistent-dir-corral/err".into());
    match d.create(req) {
        Err(e) => assert!(e.to_string().contains("stderr"), "{e}"),
        Ok(info) => panic!("stderr in a missing dir was accepted: {info:?}"),
    }
    d.assert_no_leftovers("default", &id);
    assert_untouched(&d, &before, &id);
}

/// Execs, kills, waits and starts that do not fit: each refused with its kind, and the
/// container carries on.
#[test]
fn bad_process_requests_are_refused() {
    let d = Daemon::start("bad_process_requests");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("badexec");
    let info = d.run(&id, &b);
    let mut c = d.client();

    match c.exec(exec_req("no-such-container", "e", &["true"])) {
        Err(Error::NotFound(msg)) => assert!(msg.contains("no-such-container"), "{msg}"),
        other => panic!("exec in a missing container gave {other:?}"),
    }
    invalid_argument(c.exec(exec_req(&id, "init", &["true"])), "exec id init");
    invalid_argument(c.exec(exec_req(&id, "a/b", &["true"])), "exec id a/b");
    invalid_argument(c.exec(exec_req(&id, "empty", &[])), "exec without args");
    let mut bad_spec = exec_req(&id, "spec", &[]);
    bad_spec.process = ExecProcess::SpecJson("{\"args\": 7}".into());
    invalid_argument(c.exec(bad_spec), "exec with a bad process spec");

    // A missing binary: runc's error, no trace of the exec, and the id is free again.
    let (op, _, stderr) = runtime_failure(c.exec(exec_req(&id, "nope", &["/nope"])), "exec /nope");
    assert_eq!(op, "exec");
    assert!(stderr.contains("/nope"), "{stderr}");
    let now = c.state("", &id).unwrap();
    assert_eq!(now.status, Status::Running);
    assert!(
        now.execs.is_empty(),
        "a failed exec is listed: {:?}",
        now.execs
    );
    assert!(!d.container_state_dir("default", &id).join("nope").exists());
    c.exec(exec_req(&id, "nope", &["true"])).unwrap();
    assert_eq!(d.wait_code("", &id, Some("nope")), 0);
    match c.exec(exec_req(&id, "nope", &["true"])) {
        Err(Error::AlreadyExists(msg)) => assert!(msg.contains("nope"), "{msg}"),
        other => panic!("a reused exec id gave {other:?}"),
    }

    match c.wait("", &id, Some("never-made")) {
        Err(Error::NotFound(_)) => {}
        other => panic!("wait on a missing exec gave {other:?}"),
    }
    let kill = |exec_id: Option<&str>, signal: i32, all: bool| KillRequest {
        namespace: String::new(),
        id: id.clone(),
        exec_id: exec_id.map(str::to_string),
        signal,
        all,
    };
    match c.kill(kill(Some("never-made"), 9, false)) {
        Err(Error::NotFound(_)) => {}
        other => panic!("kill of a missing exec gave {other:?}"),
    }
    match c.kill(kill(Some("nope"), 9, false)) {
        Err(Error::WrongState(_)) => {}
        other => panic!("kill of an exited exec gave {other:?}"),
    }
    invalid_argument(c.kill(kill(Some("nope"), 9, true)), "kill --all of an exec");
    invalid_argument(c.kill(kill(None, 99, false)), "signal 99");
    match c.start("", &id) {
        Err(Error::WrongState(_)) => {}
        other => panic!("start of a running container gave {other:?}"),
    }
    match c.delete("", "no-such-container", false) {
        Err(Error::NotFound(_)) => {}
        other => panic!("delete of a missing container gave {other:?}"),
    }
    // After all that, the container is still running, same process.
    let now = c.state("", &id).unwrap();
    assert_eq!((now.status, now.pid), (Status::Running, info.pid));
    assert!(alive(info.pid as i32));

    // Once it has exited: no exec, no kill.
    c.kill(kill(None, 9, false)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    match c.exec(exec_req(&id, "late", &["true"])) {
        Err(Error::WrongState(_)) => {}
        other => panic!("exec in a stopped container gave {other:?}"),
    }
    match c.kill(kill(None, 9, false)) {
        Err(Error::WrongState(_)) => {}
        other => panic!("kill of a stopped container gave {other:?}"),
    }
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A create request with every optional field unset except the id and bundle works (the
/// namespace defaults to `default`).
#[test]
fn minimal_request_uses_the_default_namespace() {
    let d = Daemon::start("minimal_request");
    let b = d.bundle("true", &["true"]);
    let id = unique_id("minimal");
    let info = d
        .create(CreateRequest {
            id: id.clone(),
            bundle: b.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(info.namespace, "default");
    assert_eq!(info.status, Status::Created);
    assert!(d.container_state_dir("default", &id).is_dir());
    d.delete("default", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}
