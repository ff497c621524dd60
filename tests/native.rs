//! The native (copying) snapshotter through a real corrald and real runc:
//! `--snapshotter native` gives a container a full copy of its image's merged layers
//! (whiteouts and opaque dirs applied), bind mounted; its writes stay in its copy; its
//! record keeps the snapshotter across tasks; rm and GC leave nothing; with a user
//! namespace its copy is chowned. (Its checkpoints: tests/checkpoint_registry.rs.)
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::data_dir::{self, active_snapshots, mounts_under, snapshot_records};
use common::images::*;
use common::{unique_id, Daemon};

const IMAGE: &str = "demo.local/native:1";

/// busybox, then a layer that changes a file, deletes one (whiteout) and replaces a
/// directory (opaque).
fn import_layered(d: &Daemon, dir: &TestDir) {
    let spec = ImageSpec::new()
        .layer(
            Layer::new()
                .busybox()
                .dir("etc")
                .file("etc/motd", b"lower\n", 0o644)
                .file("etc/gone", b"x\n", 0o644)
                .dir("opq")
                .file("opq/old", b"old\n", 0o644)
                .symlink("motd-link", "etc/motd"),
            Compression::Gzip,
        )
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/motd", b"upper\n", 0o644)
                .whiteout("etc/gone")
                .opaque("opq")
                .file("opq/new", b"new\n", 0o600),
            Compression::Gzip,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["cat /etc/motd"]);
    data_dir::import_image(d, dir, IMAGE, spec);
}

/// The record of snapshot `key` in the daemon's metadata.json.
fn record(d: &Daemon, key: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(d.dir.join("data/snapshots/metadata.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["snapshots"][key].clone()
}

/// `etc/motd` in every committed snapshot's own dir.
fn committed_motds(d: &Daemon) -> Vec<String> {
    snapshot_records(d)
        .into_iter()
        .filter(|(_, kind, _)| kind == "committed")
        .filter_map(|(_, _, id)| {
            let p = d
                .dir
                .join("data/snapshots/overlayfs")
                .join(id.to_string())
                .join("fs/etc/motd");
            std::fs::read_to_string(p).ok()
        })
        .collect()
}

#[test]
fn a_native_container_sees_the_merged_image_and_keeps_its_writes_to_itself() {
    let d = Daemon::start("native-run");
    let dir = TestDir::new("native-run");
    import_layered(&d, &dir);
    // This host has overlayfs: the default (first) stays, native is offered.
    let info = d.ctl_ok(&["info"]);
    assert!(
        info.contains("features snapshotters: overlayfs, native\n"),
        "{info}"
    );

    let out = d.ctl_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        IMAGE,
        &unique_id("n"),
        "--",
        "cat /etc/motd; cat /motd-link; ls /opq; ls /etc/gone 2>&1 || true; \
         grep ' / ' /proc/self/mountinfo | grep -c ' - overlay ' || true",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["upper", "upper", "new"], "{out}");
    assert!(
        lines[3].contains("No such file"),
        "the whited-out file: {out}"
    );
    assert_eq!(lines[4], "0", "the root is no overlay: {out}");
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());

    // A write in the container stays in its copy.
    let out = d.ctl_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        IMAGE,
        &unique_id("w"),
        "--",
        "echo changed > /etc/motd; rm /opq/new; cat /etc/motd",
    ]);
    assert_eq!(out, "changed\n");
    let motds = committed_motds(&d);
    assert_eq!(motds, vec!["lower\n", "upper\n"], "{motds:?}");
    assert_eq!(
        d.ctl_ok(&[
            "run",
            "--rm",
            "--snapshotter",
            "native",
            IMAGE,
            &unique_id("r")
        ]),
        "upper\n"
    );
    // The overlayfs one alongside, on the same committed chain.
    assert_eq!(
        d.ctl_ok(&[
            "run",
            "--rm",
            "--snapshotter",
            "overlayfs",
            IMAGE,
            &unique_id("o")
        ]),
        "upper\n"
    );
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
}

#[test]
fn a_native_record_keeps_its_copy_across_tasks_and_gc_and_rm_leave_nothing() {
    let d = Daemon::start("native-record");
    let dir = TestDir::new("native-record");
    import_layered(&d, &dir);
    let id = unique_id("c");
    let key = format!("container/default/{id}");
    d.ctl_ok(&[
        "container",
        "create",
        "--snapshotter",
        "native",
        IMAGE,
        &id,
        "--",
        "echo x >> /etc/motd; cat /etc/motd",
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", &id])).unwrap();
    assert_eq!(info["snapshotter"], "native", "{info:#}");
    assert_eq!(record(&d, &key)["flavor"], "native");
    assert_eq!(d.ctl_ok(&["task", "start", &id]), "upper\nx\n");
    d.ctl_ok(&["task", "rm", &id]);
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    // GC keeps the record's snapshot (and its parents) with the image gone.
    d.ctl_ok(&["image", "rm", IMAGE]);
    d.ctl_ok(&["prune"]);
    assert_eq!(active_snapshots(&d), vec![key.clone()]);
    assert_eq!(d.ctl_ok(&["task", "start", &id]), "upper\nx\nx\n");
    d.ctl_ok(&["task", "rm", &id]);
    d.ctl_ok(&["container", "rm", &id]);
    d.ctl_ok(&["prune"]);
    assert_eq!(snapshot_records(&d), Vec::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}

#[test]
fn a_native_container_in_a_user_namespace_gets_its_copy_chowned() {
    let d = Daemon::start("native-userns");
    let dir = TestDir::new("native-userns");
    import_layered(&d, &dir);
    let out = d.ctl_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        IMAGE,
        &unique_id("u"),
        "--",
        "id -u; busybox stat -c %u:%g / /etc/motd; ls /etc/gone 2>&1 || true; \
         echo hi > /w && busybox stat -c %u /w",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["0", "0:0", "0:0"], "{out}");
    assert!(lines[3].contains("No such file"), "{out}");
    assert_eq!(lines[4], "0", "{out}");
    // No remapped snapshot (its making mounts an overlay): the copy itself was chowned.
    let remaps: Vec<_> = snapshot_records(&d)
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("remap/"))
        .collect();
    assert_eq!(remaps, Vec::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
}
