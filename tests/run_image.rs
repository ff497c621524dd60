//! Containers made from images through a real corrald, real runc and real overlayfs:
//! `corralctl run IMAGE ID [-- CMD]`, the spec from the image's config, the rootfs
//! mounted at create and released at delete, and nothing left behind.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::{code, stderr, stdout, Daemon};
use corral::ImportRequest;

const IMAGE: &str = "demo.local/app:1";

/// busybox, a second layer with a file and a whiteout of a lower one, and a config.
fn import_app(d: &Daemon, dir: &TestDir) {
    let spec = ImageSpec::new()
        .layer(
            Layer::new()
                .busybox()
                .dir("etc")
                .file("etc/motd", b"lower\n", 0o644)
                .file("etc/gone", b"x\n", 0o644)
                .file(
                    "etc/passwd",
                    b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                    0o644,
                )
                .file(
                    "etc/group",
                    b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
                    0o644,
                )
                .dir("work"),
            Compression::Gzip,
        )
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/motd", b"upper\n", 0o644)
                .whiteout("etc/gone"),
            Compression::Zstd,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo A=$A; pwd; cat /etc/motd; ls /etc/gone 2>&1 || true"])
        .env("A=from-image")
        .working_dir("/work");
    let layout = dir.join("layout");
    write_layout(&layout, &[(IMAGE, spec)]);
    let tar = dir.join("app.tar");
    tar_dir(&layout, &tar);
    d.client()
        .import_images(ImportRequest {
            file: tar,
            ..Default::default()
        })
        .unwrap();
}

/// Mounts under the daemon's data dir.
fn mounts_under(d: &Daemon) -> Vec<String> {
    common::images::mounts_under(&d.dir.join("data"))
}

/// Its snapshots that are not committed layers.
fn active_snapshots(d: &Daemon) -> Vec<String> {
    common::images::active_snapshots(&d.dir.join("data"))
}

#[test]
fn run_an_image_with_its_config_then_overrides() {
    let d = Daemon::start("runimg-config");
    let dir = TestDir::new("runimg-config");
    import_app(&d, &dir);
    let out = d.ctl(&["run", "--rm", IMAGE, "app1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("A=from-image"), "{text}");
    assert!(text.contains("/work\n"), "{text}");
    assert!(
        text.contains("upper\n") && !text.contains("lower"),
        "{text}"
    );
    assert!(
        text.contains("No such file"),
        "the whited-out file is there: {text}"
    );

    // -- CMD replaces Cmd (the Entrypoint stays), --env and --cwd override, --user resolves.
    let out = d.ctl(&[
        "run",
        "--rm",
        "-e",
        "A=flag",
        "-w",
        "/etc",
        "-u",
        "app",
        IMAGE,
        "app2",
        "--",
        "echo A=$A; pwd; id -u; id -G",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("A=flag"), "{text}");
    assert!(text.contains("/etc\n"), "{text}");
    assert!(text.contains("1000\n"), "{text}");
    assert!(text.contains("2000"), "supplementary group missing: {text}");

    // --entrypoint replaces it; the exit code passes through; a read-only rootfs refuses writes.
    let out = d.ctl(&["run", "--rm", "--entrypoint", "/bin/false", IMAGE, "app3"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let out = d.ctl(&[
        "run",
        "--rm",
        "--read-only",
        IMAGE,
        "app4",
        "--",
        "echo x > /work/f",
    ]);
    assert_ne!(code(&out), 0, "a write to a read-only rootfs worked");

    // A write lands in the container's own layer only.
    d.ctl_ok(&["run", "--rm", IMAGE, "app5", "--", "echo mine > /etc/motd"]);
    let out = d.ctl_ok(&["run", "--rm", IMAGE, "app6", "--", "cat /etc/motd"]);
    assert_eq!(out, "upper\n");

    assert_eq!(mounts_under(&d), Vec::<String>::new(), "mounts left");
    assert_eq!(active_snapshots(&d), Vec::<String>::new(), "snapshots left");
    assert!(!d.dir.join("data/bundles/default/app1").exists());
    // The image can go now; GC takes its blobs and snapshots.
    d.ctl_ok(&["image", "rm", IMAGE]);
    let mut c = d.client();
    assert!(c.content().unwrap().is_empty());
    let snaps = std::fs::read_dir(d.dir.join("data/snapshots/overlayfs"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "snapshots left after image rm");
}

#[test]
fn an_image_container_survives_a_daemon_restart_and_its_delete_unmounts() {
    let mut d = Daemon::start("runimg-restart");
    let dir = TestDir::new("runimg-restart");
    import_app(&d, &dir);
    let out = d.ctl(&["run", "-d", IMAGE, "web", "--", "sleep 1000"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rootfs = d.dir.join("data/bundles/default/web/rootfs");
    assert_eq!(mounts_under(&d), vec![rootfs.display().to_string()]);
    assert_eq!(
        active_snapshots(&d),
        vec!["container/default/web".to_string()]
    );
    d.kill9();
    d.restart();
    let state = d.client().state("", "web").unwrap();
    assert_eq!(state.status, corral::Status::Running);
    assert_eq!(
        mounts_under(&d),
        vec![rootfs.display().to_string()],
        "the restart lost the mount"
    );
    // The image cannot take the container's layers with it.
    d.ctl_ok(&["image", "rm", IMAGE]);
    let out = d.ctl_ok(&["exec", "web", "e1", "--", "cat", "/etc/motd"]);
    assert_eq!(out, "upper\n");
    d.ctl_ok(&["rm", "--force", "web"]);
    assert_eq!(
        mounts_under(&d),
        Vec::<String>::new(),
        "delete left the rootfs mounted"
    );
    assert!(!rootfs.exists());
    d.ctl_ok(&["prune"]);
    let snaps = std::fs::read_dir(d.dir.join("data/snapshots/overlayfs"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "the container's chain outlived it and its image");
}

#[test]
fn bad_image_runs_are_named_and_leave_nothing() {
    let d = Daemon::start("runimg-bad");
    let dir = TestDir::new("runimg-bad");
    import_app(&d, &dir);
    let out = d.ctl(&["run", "--rm", "demo.local/nope:1", "x1"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("demo.local/nope:1"),
        "{}",
        stderr(&out)
    );
    let out = d.ctl(&["run", "--rm", "-u", "nobody-here", IMAGE, "x2"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("nobody-here"), "{}", stderr(&out));
    let out = d.ctl(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,dst=relative",
        IMAGE,
        "x3",
    ]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("relative"), "{}", stderr(&out));
    let out = d.ctl(&["run", "--rm", "-w", "not/absolute", IMAGE, "x4"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let out = d.ctl(&["run", "--rm", IMAGE, "x5", "--bundle", "/tmp"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = d.ctl(&["run", "--rm", "x6"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // The id is taken: the second create fails and the first keeps its rootfs.
    d.ctl_ok(&["run", "-d", IMAGE, "x7", "--", "sleep 1000"]);
    let out = d.ctl(&["run", "-d", IMAGE, "x7", "--", "true"]);
    assert_eq!(code(&out), 125);
    let out = d.ctl_ok(&["exec", "x7", "e", "--", "cat", "/etc/motd"]);
    assert_eq!(out, "upper\n");
    d.ctl_ok(&["rm", "--force", "x7"]);
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    assert!(
        !d.dir.join("data/bundles/default").exists()
            || std::fs::read_dir(d.dir.join("data/bundles/default"))
                .unwrap()
                .count()
                == 0
    );
}
