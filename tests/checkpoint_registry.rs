//! Checkpoints of containers run from images, through a real registry: the checkpoint
//! carries the container's writable layer and its base image; a second corrald with its
//! own data dir, state dir and runtime root pulls it and restores it, as on another host.
//! Real CRIU, real runc, real overlayfs, Debian's docker-registry on 127.0.0.1.
//!
//! The container's shell counts in a variable (memory) and appends each value to /count (a
//! file in its writable layer): a restore must go on from where the checkpoint was, with no
//! gap and no reset, which needs both the memory and the files to have travelled.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::data_dir::{active_snapshots, mounts_under};
use common::images::*;
use common::registry::Registry;
use common::*;
use corral::checkpoint::{CheckpointPullRequest, CheckpointPushRequest};
use corral::{Credentials, Error, ImportRequest, RemoteOptions, Status};
use std::path::{Path, PathBuf};
use std::time::Duration;

const IMAGE: &str = "demo.local/ckpt-app:1";

/// Deletes a file of the image, writes one of its own, then counts.
const SCRIPT: &str = "rm /etc/gone; echo written > /written; \
                      i=0; while true; do i=$((i+1)); echo $i >> /count; sleep 0.1; done";

fn plain() -> RemoteOptions {
    RemoteOptions {
        plain_http: true,
        credentials: Credentials::Anonymous,
    }
}

/// busybox with /etc/gone and /etc/kept, entrypoint `/bin/sh -c`.
fn app_spec() -> ImageSpec {
    ImageSpec::new()
        .layer(
            Layer::new()
                .busybox()
                .dir("etc")
                .file("etc/gone", b"from the image\n", 0o644)
                .file("etc/kept", b"kept\n", 0o644),
            Compression::Gzip,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["sleep 1000"])
}

fn import_app(d: &Daemon, dir: &TestDir) {
    let layout = dir.join("layout");
    if !layout.exists() {
        write_layout(&layout, &[(IMAGE, app_spec())]);
        tar_dir(&layout, &dir.join("app.tar"));
    }
    d.client()
        .import_images(ImportRequest {
            file: dir.join("app.tar"),
            ..Default::default()
        })
        .unwrap();
}

fn rootfs(d: &Daemon, id: &str) -> PathBuf {
    d.dir.join("data/bundles/default").join(id).join("rootfs")
}

fn wait_count(count: &Path, n: u64) {
    wait_until(
        LIVENESS,
        &format!("{} to count to {n}", count.display()),
        || counter_last(count) >= n,
    );
}

/// Nothing of container `id` is left on `d`: no mount, no writable snapshot, no bundle.
fn assert_released(d: &Daemon, id: &str) {
    assert_eq!(mounts_under(d), Vec::<String>::new(), "mounts left");
    assert_eq!(active_snapshots(d), Vec::<String>::new(), "snapshots left");
    assert!(
        !d.dir.join("data/bundles/default").join(id).exists(),
        "the bundle of {id} is left"
    );
}

/// Runs the counting container from the image on `d` and checkpoints it with --exit once
/// it has counted to 5; answers where it stopped.
fn run_and_checkpoint(d: &Daemon, id: &str, name: &str) -> u64 {
    run_and_checkpoint_with(d, id, name, &[])
}

/// [`run_and_checkpoint`] with more `run` flags.
fn run_and_checkpoint_with(d: &Daemon, id: &str, name: &str, flags: &[&str]) -> u64 {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, id, "--", SCRIPT]);
    d.ctl_ok(&args);
    let count = rootfs(d, id).join("count");
    wait_count(&count, 5);
    let out = d.ctl_ok(&["checkpoint", id, name, "--exit"]);
    assert!(out.contains("taken"), "{out}");
    assert_eq!(d.wait_code("", id, None), 137);
    let info = &d.client().checkpoints("", id).unwrap()[0];
    let base = info.base_image.as_ref().expect("no base image recorded");
    assert_eq!(base.name, IMAGE);
    let detail = d.client().inspect_image("", IMAGE, None).unwrap();
    assert_eq!(base.manifest.digest, digest_of(detail.manifest.as_bytes()));
    assert!(info.rw_layer.is_some(), "no writable layer recorded");
    let stopped = counter_last(&count);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        counter_last(&count),
        stopped,
        "the counter moved after --exit"
    );
    stopped
}

/// On `d`, the restored container counts on from `stopped` with the checkpoint's files.
fn assert_restored(d: &Daemon, id: &str, stopped: u64) {
    assert_eq!(d.client().state("", id).unwrap().status, Status::Running);
    let root = rootfs(d, id);
    let count = root.join("count");
    wait_count(&count, stopped + 5);
    let lines = counter_lines(&count);
    assert_eq!(lines[0], 1, "the count did not come with the checkpoint");
    assert_consecutive(&lines, "after the restore");
    assert_eq!(
        std::fs::read_to_string(root.join("written")).unwrap(),
        "written\n"
    );
    assert!(
        !root.join("etc/gone").exists(),
        "the file the container deleted is back"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kept")).unwrap(),
        "kept\n"
    );
}

/// The test: checkpoint pushed to the loopback registry, pulled by a second daemon
/// with other dirs, restored there with its files and memory state; delete there leaves no
/// mount or snapshot.
#[test]
fn a_checkpoint_pushed_and_pulled_by_another_daemon_restores_there() {
    let registry = Registry::start();
    let dir = TestDir::new("ckreg-move");
    let a = Daemon::start("ckreg-a");
    import_app(&a, &dir);
    let id = unique_id("ckmove");
    let stopped = run_and_checkpoint(&a, &id, "snap");

    let reference = format!("{}/checkpoints/{id}:snap", registry.addr);
    let out = a.ctl_ok(&[
        "checkpoint",
        "push",
        &id,
        "snap",
        &reference,
        "--plain-http",
    ]);
    assert!(out.contains(&reference) && out.contains("sha256:"), "{out}");
    assert_eq!(a.client().leases("default").unwrap(), vec![]);

    // The second daemon has none of it: not the image, not the checkpoint.
    let b = Daemon::start("ckreg-b");
    assert_ne!(
        (&a.dir, &a.state_dir, &a.root),
        (&b.dir, &b.state_dir, &b.root)
    );
    assert!(b.client().images("default").unwrap().is_empty());
    let out = b.ctl_ok(&["checkpoint", "pull", &reference, "--plain-http"]);
    assert!(out.contains(&format!("snap of default/{id}")), "{out}");
    let images = b.client().images("default").unwrap();
    assert_eq!(
        images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        vec![IMAGE],
        "the base image came with the checkpoint"
    );
    assert_eq!(b.client().leases("default").unwrap(), vec![]);

    let out = b.ctl_ok(&["restore", &id, "snap"]);
    assert!(out.contains("restored"), "{out}");
    assert_restored(&b, &id, stopped);
    // The restore's snapshot is published like any other, after b unpacked the base.
    let prepared: Vec<String> = b
        .replay(corral::EventFilter::default())
        .into_iter()
        .filter(|e| e.topic == corral::Topic::SnapshotPrepare)
        .filter_map(|e| e.snapshot.map(|s| s.key))
        .collect();
    assert_eq!(
        prepared.last(),
        Some(&format!("container/default/{id}")),
        "{prepared:?}"
    );
    assert!(prepared[0].starts_with("extract-"), "{prepared:?}");

    // Again under another id (--as), from the same pulled checkpoint.
    let other = unique_id("ckmove2");
    b.ctl_ok(&["restore", &id, "snap", "--as", &other]);
    assert_restored(&b, &other, stopped);

    // Pulled again: the name is taken; under another id and name (--as) it is stored.
    let out = b.ctl(&["checkpoint", "pull", &reference, "--plain-http"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("\"snap\""), "{}", stderr(&out));
    let moved = unique_id("ckmoved");
    let out = b.ctl_ok(&[
        "checkpoint",
        "pull",
        &reference,
        "--plain-http",
        "--as",
        &format!("{moved}:again"),
    ]);
    assert!(out.contains(&format!("again of default/{moved}")), "{out}");
    let listed = b.client().checkpoints("", &moved).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].base_image,
        b.client().checkpoints("", &id).unwrap()[0].base_image
    );
    b.ctl_ok(&["checkpoint", "rm", &moved, "again"]);

    b.delete("", &other, true).unwrap();
    b.delete("", &id, true).unwrap();
    assert_released(&b, &id);
    b.assert_no_leftovers("default", &id);
    a.delete("", &id, true).unwrap();
    assert_released(&a, &id);
}

/// `checkpoint export` / `import` carry the writable layer: a daemon that has the image
/// restores the imported checkpoint with its files.
#[test]
fn export_then_import_keeps_the_writable_layer() {
    let dir = TestDir::new("ckreg-export");
    let a = Daemon::start("ckreg-exp-a");
    import_app(&a, &dir);
    let id = unique_id("ckexp");
    let stopped = run_and_checkpoint(&a, &id, "snap");
    let tar = dir.join("ckpt.tar");
    a.ctl_ok(&["checkpoint", "export", &id, "snap", tar.to_str().unwrap()]);
    a.delete("", &id, true).unwrap();
    assert_released(&a, &id);

    let c = Daemon::start("ckreg-exp-c");
    import_app(&c, &dir);
    let out = c.ctl_ok(&["checkpoint", "import", tar.to_str().unwrap()]);
    assert!(out.contains("imported"), "{out}");
    let info = &c.client().checkpoints("", &id).unwrap()[0];
    assert!(info.rw_layer.is_some() && info.base_image.is_some());
    c.ctl_ok(&["restore", &id, "snap"]);
    assert_restored(&c, &id, stopped);
    c.delete("", &id, true).unwrap();
    assert_released(&c, &id);
}

/// A container on the native snapshotter (a full copy of its image) checkpoints with a
/// writable layer of just its changes against the image, and restores, through export and
/// import, on a daemon whose snapshotter is native (as on a host without overlayfs): its
/// files and its memory come back, on a native copy of its own.
#[test]
fn a_native_containers_checkpoint_restores_on_a_native_daemon() {
    let dir = TestDir::new("ckreg-native");
    let a = Daemon::start("ckreg-nat-a");
    import_app(&a, &dir);
    let id = unique_id("cknat");
    let stopped = run_and_checkpoint_with(&a, &id, "snap", &["--snapshotter", "native"]);
    let info = &a.client().checkpoints("", &id).unwrap()[0];
    let layer = info.rw_layer.as_ref().unwrap();
    assert!(
        layer.size < 64 * 1024,
        "the writable layer holds more than the container's changes: {} bytes",
        layer.size
    );
    let tar = dir.join("ckpt.tar");
    a.ctl_ok(&["checkpoint", "export", &id, "snap", tar.to_str().unwrap()]);
    a.delete("", &id, true).unwrap();
    assert_released(&a, &id);

    let c = Daemon::start_with("ckreg-nat-c", &["--snapshotter", "native"]);
    import_app(&c, &dir);
    c.ctl_ok(&["checkpoint", "import", tar.to_str().unwrap()]);
    c.ctl_ok(&["restore", &id, "snap"]);
    assert_restored(&c, &id, stopped);
    let meta = std::fs::read_to_string(c.dir.join("data/snapshots/metadata.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let key = format!("container/default/{id}");
    assert_eq!(meta["snapshots"][&key]["flavor"], "native", "{meta:#}");
    c.delete("", &id, true).unwrap();
    assert_released(&c, &id);
}

/// A checkpoint that leaves the container running freezes it from before the dump until
/// its writable layer is written: restored, the copy's files match its memory (the count
/// goes on without a gap or a repeat), and the original ran on meanwhile.
#[test]
fn a_live_checkpoint_keeps_files_and_memory_together() {
    let dir = TestDir::new("ckreg-live");
    let a = Daemon::start("ckreg-live");
    import_app(&a, &dir);
    let id = unique_id("cklive");
    a.ctl_ok(&["run", "-d", IMAGE, &id, "--", SCRIPT]);
    let count = rootfs(&a, &id).join("count");
    wait_count(&count, 5);
    a.ctl_ok(&["checkpoint", &id, "live"]);
    assert_eq!(a.client().state("", &id).unwrap().status, Status::Running);
    let now = counter_last(&count);
    wait_count(&count, now + 3);
    assert_consecutive(&counter_lines(&count), "the original after the checkpoint");

    let copy = unique_id("cklive2");
    a.ctl_ok(&["restore", &id, "live", "--as", &copy]);
    assert_restored(&a, &copy, 5);
    a.delete("", &copy, true).unwrap();
    a.delete("", &id, true).unwrap();
    assert_released(&a, &id);
}

fn push_req(id: &str, name: &str, reference: &str) -> CheckpointPushRequest {
    CheckpointPushRequest {
        namespace: "default".into(),
        id: id.into(),
        name: name.into(),
        reference: reference.into(),
        remote: plain(),
    }
}

fn pull_req(reference: &str) -> CheckpointPullRequest {
    CheckpointPullRequest {
        namespace: "default".into(),
        reference: reference.into(),
        remote: plain(),
        ..Default::default()
    }
}

/// The blob file of `digest` in the registry's storage.
fn registry_blob(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Bad input, each a clear error and nothing left behind: pushing a checkpoint that does
/// not exist; pulling a plain image; a registry that is down; a writable layer whose bytes
/// do not match its digest (in the registry, and in the checkpoint store at restore).
#[test]
fn bad_checkpoints_and_registries_are_refused_leaving_nothing() {
    let mut registry = Registry::start();
    let dir = TestDir::new("ckreg-bad");
    let a = Daemon::start("ckreg-bad-a");
    import_app(&a, &dir);
    let id = unique_id("ckbad");
    let reference = format!("{}/checkpoints/{id}:snap", registry.addr);

    // A checkpoint that does not exist.
    let out = a.ctl(&[
        "checkpoint",
        "push",
        &id,
        "nope",
        &reference,
        "--plain-http",
    ]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("\"nope\""), "{}", stderr(&out));

    // A plain image is not a checkpoint: refused naming its media type.
    let layout = dir.join("plain-layout");
    write_layout(&layout, &[("plain:1", app_spec())]);
    skopeo_push(&layout, "plain:1", &registry.addr, "plain:1", None).unwrap();
    let b = Daemon::start("ckreg-bad-b");
    let plain_ref = format!("{}/plain:1", registry.addr);
    match b.client().pull_checkpoint(pull_req(&plain_ref), |_| {}) {
        Err(Error::InvalidArgument(m)) => assert!(
            m.contains("not a corral checkpoint")
                && m.contains("application/vnd.oci.image.manifest.v1+json"),
            "{m}"
        ),
        other => panic!("pulling a plain image as a checkpoint gave {other:?}"),
    }
    let out = b.ctl(&["checkpoint", "pull", &plain_ref, "--plain-http"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("not a corral checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(b.client().images("default").unwrap().is_empty());
    let bad_as = CheckpointPullRequest {
        as_id: Some("../x".into()),
        ..pull_req(&plain_ref)
    };
    match b.client().pull_checkpoint(bad_as, |_| {}) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("container id"), "{m}"),
        other => panic!("a bad --as gave {other:?}"),
    }

    // The real one, pushed; its writable layer's digest.
    let stopped = run_and_checkpoint(&a, &id, "snap");
    let pushed = a
        .client()
        .push_checkpoint(push_req(&id, "snap", &reference), |_| {})
        .unwrap();
    assert!(pushed.media_type.contains("index"), "{pushed:?}");
    let info = &a.client().checkpoints("", &id).unwrap()[0];
    let rw = info.rw_layer.clone().unwrap();

    // A registry that is down: push and pull fail, naming it; nothing is kept.
    registry.stop();
    let e = a
        .client()
        .push_checkpoint(push_req(&id, "snap", &reference), |_| {})
        .unwrap_err();
    assert!(e.to_string().contains(&registry.addr), "{e}");
    let e = b
        .client()
        .pull_checkpoint(pull_req(&reference), |_| {})
        .unwrap_err();
    assert!(e.to_string().contains(&registry.addr), "{e}");
    assert!(b.client().checkpoints("", &id).unwrap().is_empty());
    assert_eq!(a.client().leases("default").unwrap(), vec![]);
    assert_eq!(b.client().leases("default").unwrap(), vec![]);
    registry.restart();

    // The writable layer corrupted in the registry: the pull fails naming the blob.
    let blob = registry_blob(&registry, &rw.digest);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let e = b
        .client()
        .pull_checkpoint(pull_req(&reference), |_| {})
        .unwrap_err();
    assert!(e.to_string().contains(&rw.digest), "{e}");
    assert!(b.client().checkpoints("", &id).unwrap().is_empty());
    assert_eq!(b.client().leases("default").unwrap(), vec![]);
    assert_eq!(
        b.client().ingests().unwrap(),
        vec![],
        "the bad bytes are kept"
    );
    std::fs::write(&blob, &good).unwrap();

    // Pulled whole, then corrupted in the checkpoint store: the restore fails naming the
    // writable layer, and leaves nothing mounted or made.
    b.client()
        .pull_checkpoint(pull_req(&reference), |_| {})
        .unwrap();
    let stored = b
        .root
        .join("_checkpoints/default")
        .join(&id)
        .join("snap/rootfs-diff.tar");
    let mut bytes = std::fs::read(&stored).unwrap();
    let pos = bytes
        .windows(7)
        .position(|w| w == b"written")
        .expect("the written file is in the layer");
    bytes[pos] = b'W';
    std::fs::write(&stored, &bytes).unwrap();
    match b.client().restore("", &id, "snap", None, None) {
        Err(e @ Error::Corrupt(_)) => assert!(e.to_string().contains("writable layer"), "{e}"),
        other => panic!("a restore from a corrupt writable layer gave {other:?}"),
    }
    assert!(b.client().state("", &id).is_err());
    assert_released(&b, &id);
    let _ = stopped;
    a.delete("", &id, true).unwrap();
    assert_released(&a, &id);
}
