//! Container records apart from their tasks, through a real corrald, real runc and real
//! overlayfs: `container create|ls|info|label|update|rm`, `task start|ls|rm`, a record's
//! writable layer kept across tasks and across a simulated reboot, its events, and bad input.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::data_dir::{self, active_snapshots, mounts_under};
use common::images::*;
use common::{code, processes_in, runc, stderr, stdout, wait_until, Daemon, Events};
use corral::{EventFilter, Topic};
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "demo.local/records:1";
const LONG: Duration = Duration::from_secs(60);

/// busybox with a work dir, and a config whose Cmd prints a greeting.
fn import_image(d: &Daemon, dir: &TestDir) {
    let spec = ImageSpec::new()
        .layer(
            Layer::new()
                .busybox()
                .dir("work")
                .file("etc/motd", b"from-image\n", 0o644),
            Compression::Gzip,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo hello"])
        .working_dir("/work");
    data_dir::import_image(d, dir, IMAGE, spec);
}

fn bundle(d: &Daemon, id: &str) -> std::path::PathBuf {
    d.dir.join("data/bundles/default").join(id)
}

/// A reboot, as far as corral can tell: corrald stopped, every container process killed
/// (runc's state deleted with it), the rootfs mounts gone, the state dir and runc's root
/// emptied (tmpfs); the data dir stays. Then a new corrald.
fn reboot(d: &mut Daemon) {
    d.stop();
    if let Ok(namespaces) = std::fs::read_dir(&d.root) {
        for ns in namespaces.flatten() {
            for id in std::fs::read_dir(ns.path()).unwrap().flatten() {
                let out = Command::new(runc())
                    .arg("--root")
                    .arg(ns.path())
                    .args(["delete", "--force"])
                    .arg(id.file_name())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "runc delete: {out:?}");
            }
        }
    }
    wait_until(LONG, "the shims to exit", || {
        processes_in(&d.state_dir).is_empty()
    });
    for m in mounts_under(d) {
        let out = Command::new("umount").arg(&m).output().unwrap();
        assert!(out.status.success(), "umount {m}: {out:?}");
    }
    std::fs::remove_dir_all(&d.state_dir).unwrap();
    std::fs::remove_dir_all(&d.root).unwrap();
    d.restart();
}

#[test]
fn a_record_keeps_its_writable_layer_across_tasks_and_a_reboot() {
    let mut d = Daemon::start("records-reboot");
    let dir = TestDir::new("records-reboot");
    import_image(&d, &dir);
    let script = "echo hello; cat /work/count 2>/dev/null; echo x >> /work/count";
    assert_eq!(
        d.ctl_ok(&[
            "container",
            "create",
            "-l",
            "app=one",
            IMAGE,
            "c1",
            "--",
            script
        ]),
        "c1\n"
    );
    // A record, its snapshot; no task, nothing mounted, no bundle.
    assert_eq!(active_snapshots(&d), vec!["container/default/c1"]);
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert!(!bundle(&d, "c1").exists());
    assert_eq!(d.ctl_ok(&["task", "ls", "-q"]), "");
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", "c1"])).unwrap();
    assert_eq!(info["image"], IMAGE, "{info:#}");
    assert_eq!(info["snapshotter"], "overlayfs");
    assert_eq!(info["snapshot_key"], "container/default/c1");
    assert_eq!(info["labels"]["app"], "one");
    assert_eq!(info["spec"]["root"]["path"], "rootfs");
    assert_eq!(info["spec"]["process"]["cwd"], "/work");
    assert_eq!(
        info["spec"]["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", script])
    );

    // A task prints its output; deleting it keeps the record and the layer.
    assert_eq!(d.ctl_ok(&["task", "start", "c1"]), "hello\n");
    assert_eq!(d.ctl_ok(&["task", "ls", "-q"]), "c1\n");
    d.ctl_ok(&["task", "rm", "c1"]);
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert!(!bundle(&d, "c1").exists());
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "c1\n");
    assert_eq!(d.ctl_ok(&["task", "start", "c1"]), "hello\nx\n");
    d.ctl_ok(&["task", "rm", "c1"]);

    // GC keeps an unmounted record's snapshot and its parents, even with its image gone.
    d.ctl_ok(&[
        "container",
        "create",
        IMAGE,
        "c2",
        "--",
        "echo y >> /work/count; exec sleep 1000",
    ]);
    d.ctl_ok(&["image", "rm", IMAGE]);
    d.ctl_ok(&["prune"]);
    assert_eq!(
        active_snapshots(&d),
        vec!["container/default/c1", "container/default/c2"]
    );
    assert_eq!(d.ctl_ok(&["task", "start", "c1"]), "hello\nx\nx\n");
    d.ctl_ok(&["task", "rm", "c1"]);

    // A reboot with c2's task running and c1 without a task.
    let out = d.ctl_ok(&["task", "start", "-d", "c2"]);
    assert!(out.starts_with("c2 running"), "{out}");
    assert_eq!(mounts_under(&d).len(), 1);
    reboot(&mut d);
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "c1\nc2\n");
    assert_eq!(d.ctl_ok(&["task", "ls", "-q"]), "");
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert!(
        !bundle(&d, "c2").exists(),
        "the gone task's bundle dir stays"
    );
    assert_eq!(
        active_snapshots(&d),
        vec!["container/default/c1", "container/default/c2"],
        "the reboot lost a record's snapshot"
    );
    assert_eq!(d.ctl_ok(&["task", "start", "c1"]), "hello\nx\nx\nx\n");
    // c2's own layer: its first run's line survived the reboot, its second run added one.
    d.ctl_ok(&["task", "start", "-d", "c2"]);
    let mut n = 0;
    wait_until(LONG, "c2's second line", || {
        n += 1;
        let exec = format!("e{n}");
        d.ctl_ok(&["exec", "c2", &exec, "--", "cat", "/work/count"]) == "y\ny\n"
    });

    // A record with a task cannot go; without one it goes with its snapshot and bundle.
    let out = d.ctl(&["container", "rm", "c2"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("task rm c2"), "{}", stderr(&out));
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "c1\nc2\n");
    d.ctl_ok(&["task", "rm", "--force", "c2"]);
    assert_eq!(d.ctl_ok(&["container", "rm", "c2"]), "c2\n");
    assert!(!bundle(&d, "c2").exists());
    assert_eq!(active_snapshots(&d), vec!["container/default/c1"]);
    // `rm` (not `task rm`) of a record's task takes the record too.
    d.ctl_ok(&["rm", "c1"]);
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "");
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    // The image went earlier: GC takes every layer now.
    d.ctl_ok(&["prune"]);
    let snaps = std::fs::read_dir(d.dir.join("data/snapshots/overlayfs"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "layers outlived the image and its containers");
}

#[test]
fn labels_updates_and_events_of_records() {
    let d = Daemon::start("records-update");
    let dir = TestDir::new("records-update");
    import_image(&d, &dir);
    let events = Events::subscribe(
        &d.socket,
        EventFilter {
            container_id: Some("u1".into()),
            ..Default::default()
        },
    );
    d.ctl_ok(&["c", "create", "--label", "a=1", IMAGE, "u1"]);
    let e = events.next(LONG);
    assert_eq!(e.topic, Topic::ContainerCreate);
    assert_eq!(e.image.as_deref(), Some(IMAGE));

    // Labels: set, replace, remove; `ls --label` filters; a task carries them.
    assert_eq!(
        d.ctl_ok(&["container", "label", "u1", "b=2", "a="]),
        "u1 b=2\n"
    );
    assert_eq!(events.next(LONG).topic, Topic::ContainerUpdate);
    d.ctl_ok(&["container", "create", IMAGE, "u2"]);
    assert_eq!(d.ctl_ok(&["container", "ls", "-q", "-l", "b=2"]), "u1\n");
    let listed: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    let table = d.ctl_ok(&["container", "ls"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(IMAGE), "{table}");

    // A new spec from a file: the next task runs it.
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", "u1"])).unwrap();
    let mut spec = info["spec"].clone();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "echo from-spec-file"]);
    spec["root"]["path"] = serde_json::json!("/elsewhere");
    let file = dir.join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    d.ctl_ok(&[
        "container",
        "update",
        "u1",
        "--spec-file",
        file.to_str().unwrap(),
        "-l",
        "c=3",
    ]);
    assert_eq!(events.next(LONG).topic, Topic::ContainerUpdate);
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", "u1"])).unwrap();
    assert_eq!(info["spec"]["root"]["path"], "rootfs");
    assert_eq!(info["labels"], serde_json::json!({"b": "2", "c": "3"}));

    // Extensions: kept for their owner, set from text or a file, replaced, removed; text
    // that is not JSON is refused naming the extension.
    let ext_file = dir.join("ext.json");
    std::fs::write(&ext_file, r#"{"policy": [1, 2]}"#).unwrap();
    d.ctl_ok(&[
        "container",
        "update",
        "u1",
        "-x",
        r#"agent={"owner":"ci"}"#,
        "--extension",
        &format!("policy=@{}", ext_file.display()),
    ]);
    assert_eq!(events.next(LONG).topic, Topic::ContainerUpdate);
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", "u1"])).unwrap();
    assert_eq!(
        info["extensions"],
        serde_json::json!({"agent": {"owner": "ci"}, "policy": {"policy": [1, 2]}})
    );
    d.ctl_ok(&["container", "update", "u1", "-x", "agent="]);
    assert_eq!(events.next(LONG).topic, Topic::ContainerUpdate);
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", "u1"])).unwrap();
    assert_eq!(
        info["extensions"],
        serde_json::json!({"policy": {"policy": [1, 2]}})
    );
    let err = d.ctl_err(&["container", "update", "u1", "-x", "agent={not json"]);
    assert!(err.contains("extension agent is not JSON"), "{err}");
    let err = d.ctl_err(&["container", "update", "u1", "-x", "=1"]);
    assert!(err.contains("not NAME=JSON"), "{err}");
    let err = d.ctl_err(&[
        "container",
        "create",
        "-x",
        "e=@/nonexistent/x",
        IMAGE,
        "u3",
    ]);
    assert!(err.contains("cannot read /nonexistent/x"), "{err}");
    assert_eq!(d.ctl_ok(&["task", "start", "u1"]), "from-spec-file\n");
    let tasks: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["task", "ls", "--json"])).unwrap();
    assert_eq!(tasks[0]["labels"], serde_json::json!({"b": "2", "c": "3"}));
    d.ctl_ok(&["task", "rm", "u1"]);
    let topics: Vec<Topic> = events
        .until("the task's delete", |e| e.topic == Topic::TaskDelete)
        .iter()
        .map(|e| e.topic)
        .collect();
    assert!(topics.contains(&Topic::TaskCreate), "{topics:?}");

    // A runtime that cannot run: the task fails, named, and nothing stays mounted.
    d.ctl_ok(&[
        "container",
        "update",
        "u1",
        "--runtime",
        "/nonexistent/runc",
    ]);
    assert_eq!(events.next(LONG).topic, Topic::ContainerUpdate);
    let out = d.ctl(&["task", "start", "u1"]);
    assert_eq!(code(&out), 125, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("/nonexistent/runc"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert!(!bundle(&d, "u1").exists());
    d.ctl_ok(&[
        "container",
        "update",
        "u1",
        "--runtime",
        runc().to_str().unwrap(),
    ]);
    events.until("the runtime's update", |e| {
        e.topic == Topic::ContainerUpdate
    });
    assert_eq!(d.ctl_ok(&["task", "start", "u1"]), "from-spec-file\n");
    d.ctl_ok(&["task", "rm", "u1"]);
    events.until("the task's delete", |e| e.topic == Topic::TaskDelete);

    d.ctl_ok(&["container", "rm", "u1", "u2"]);
    let e = events.next(LONG);
    assert_eq!(
        (e.topic, e.container_id.as_str()),
        (Topic::ContainerDelete, "u1")
    );
    assert_eq!(e.image.as_deref(), Some(IMAGE));
    // The journal has them too.
    let journaled: Vec<Topic> = d
        .replay(EventFilter {
            container_id: Some("u2".into()),
            ..Default::default()
        })
        .iter()
        .map(|e| e.topic)
        .collect();
    assert_eq!(journaled, [Topic::ContainerCreate, Topic::ContainerDelete]);
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
}

#[test]
fn bad_record_input_is_named_and_leaves_nothing() {
    let d = Daemon::start("records-bad");
    let dir = TestDir::new("records-bad");
    import_image(&d, &dir);
    let fails = |args: &[&str], needle: &str| {
        let out = d.ctl(args);
        assert_eq!(code(&out), 125, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: {needle:?} not in {}",
            stderr(&out)
        );
    };
    // An unknown image: named, no record, no snapshot, no bundle.
    fails(
        &["container", "create", "demo.local/nope:1", "b1"],
        "demo.local/nope:1",
    );
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "");
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    assert!(!bundle(&d, "b1").exists());

    // A spec that cannot be made (an unknown user), and a run whose task cannot be made
    // (an unknown runtime): named, and no record, snapshot or bundle stays.
    fails(
        &["container", "create", "-u", "nobody-here", IMAGE, "b2"],
        "nobody-here",
    );
    fails(
        &["run", "-d", "--runtime", "/nonexistent/runc", IMAGE, "b3"],
        "/nonexistent/runc",
    );
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "");
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert!(!bundle(&d, "b2").exists() && !bundle(&d, "b3").exists());

    // A taken id: by a record, by a task from an image, by a task from a bundle.
    d.ctl_ok(&["container", "create", IMAGE, "b1"]);
    fails(&["container", "create", IMAGE, "b1"], "b1");
    d.ctl_ok(&["run", "-d", IMAGE, "t1", "--", "exec sleep 1000"]);
    fails(&["container", "create", IMAGE, "t1"], "t1");
    let busy = d.bundle("busy", &["sleep", "1000"]);
    d.ctl_ok(&["run", "-d", "--bundle", busy.to_str().unwrap(), "k1"]);
    fails(&["container", "create", IMAGE, "k1"], "already has a task");
    fails(&["run", "-d", IMAGE, "b1"], "b1");
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "b1\nt1\n");

    // Unknown containers, for every verb.
    for verb in [
        &["container", "info", "nope"][..],
        &["container", "label", "nope", "a=b"],
        &["container", "update", "nope", "-l", "a=b"],
        &["container", "rm", "nope"],
        &["task", "start", "nope"],
    ] {
        fails(verb, "nope");
    }
    // A task already there; a record with a task.
    fails(&["task", "start", "t1"], "already has a task");
    fails(&["container", "rm", "t1"], "task rm t1");
    // Bad spec files: missing, not JSON, not a spec.
    let missing = dir.join("missing.json");
    fails(
        &[
            "container",
            "update",
            "b1",
            "--spec-file",
            missing.to_str().unwrap(),
        ],
        "missing.json",
    );
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    fails(
        &[
            "container",
            "update",
            "b1",
            "--spec-file",
            garbage.to_str().unwrap(),
        ],
        "garbage.json",
    );
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "{\"ociVersion\": \"1.0.2\"}").unwrap();
    fails(
        &[
            "container",
            "update",
            "b1",
            "--spec-file",
            empty.to_str().unwrap(),
        ],
        "no process",
    );
    // `rm` of a record without a task says how it goes.
    fails(&["rm", "b1"], "container rm b1");
    // The record is as it was and still runs.
    assert_eq!(d.ctl_ok(&["task", "start", "b1"]), "hello\n");

    // The shortcuts leave no record: run --rm, and rm of a run's container.
    assert_eq!(d.ctl_ok(&["run", "--rm", IMAGE, "r1"]), "hello\n");
    d.ctl_ok(&["rm", "--force", "t1", "k1", "b1"]);
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "");
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    let left = std::fs::read_dir(d.dir.join("data/bundles/default"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "bundle dirs left");

    // A namespace that holds only a record (its image gone) is not empty.
    let tar = dir.join("image.tar");
    d.ctl_ok(&["-n", "ns2", "image", "import", tar.to_str().unwrap()]);
    d.ctl_ok(&["-n", "ns2", "container", "create", IMAGE, "n1"]);
    d.ctl_ok(&["-n", "ns2", "image", "rm", IMAGE]);
    fails(&["namespace", "rm", "ns2"], "n1");
    d.ctl_ok(&["-n", "ns2", "container", "rm", "n1"]);
    d.ctl_ok(&["namespace", "rm", "ns2"]);
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
}

#[test]
fn the_container_and_task_commands_parse() {
    let d = Daemon::start("records-cli");
    let help = d.ctl_ok(&["container", "--help"]);
    for verb in ["create", "ls", "info", "label", "update", "rm"] {
        assert!(help.contains(verb), "{verb} missing from {help}");
    }
    let help = d.ctl_ok(&["task", "--help"]);
    for verb in ["start", "ls", "rm"] {
        assert!(help.contains(verb), "{verb} missing from {help}");
    }
    for args in [
        &["container", "create", IMAGE][..],
        &["container", "label", "x"],
        &["container", "label", "x", "novalue"],
        &["container", "rm"],
        &["container", "ls", "-q", "--json"],
        &["task", "rm"],
        &["task", "start"],
        &["task", "start", "x", "--restart", "sometimes"],
    ] {
        let out = d.ctl(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    assert_eq!(d.ctl_ok(&["c", "ls", "--json"]).trim(), "[]");
    assert_eq!(d.ctl_ok(&["container", "list", "-q"]), "");
}
