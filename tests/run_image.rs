//! Containers made from images through a real corrald, real runc and real overlayfs:
//! `corralctl run IMAGE ID [-- CMD]`, the spec from the image's config, the rootfs
//! mounted at create and released at delete, and nothing left behind.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::data_dir::{self, active_snapshots, mounts_under};
use common::images::*;
use common::{code, stderr, stdout, wait_until, Daemon};
use std::time::Duration;

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
    data_dir::import_image(d, dir, IMAGE, spec);
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

/// `run --rm` mounts its rootfs overlay `volatile` (nothing synced at its unmount: the
/// layer is removed right after); a container that is kept never gets it.
#[test]
fn only_a_run_rm_rootfs_overlay_is_volatile() {
    let d = Daemon::start("runimg-nosync");
    let dir = TestDir::new("runimg-nosync");
    import_app(&d, &dir);
    let root = "grep ' / ' /proc/mounts";
    let out = d.ctl_ok(&["run", "--rm", IMAGE, "vol1", "--", root]);
    assert!(root_is_volatile(&out), "run --rm is not volatile: {out}");
    let out = d.ctl_ok(&["run", IMAGE, "vol2", "--", root]);
    assert!(
        !root_is_volatile(&out),
        "a kept container is volatile: {out}"
    );
    d.ctl_ok(&["rm", "vol2"]);
    d.ctl_ok(&["run", "-d", IMAGE, "vol3", "--", "sleep 1000"]);
    let out = d.ctl_ok(&["exec", "vol3", "e1", "--", "/bin/sh", "-c", root]);
    assert!(
        !root_is_volatile(&out),
        "a detached container is volatile: {out}"
    );
    d.ctl_ok(&["rm", "--force", "vol3"]);
    assert_eq!(mounts_under(&d), Vec::<String>::new(), "mounts left");
    assert_eq!(active_snapshots(&d), Vec::<String>::new(), "snapshots left");
}

/// Whether a container's `/` line of /proc/mounts is an overlay with `volatile` among its
/// options (`fsync=volatile` as newer kernels, 6.18 here, show it).
fn root_is_volatile(line: &str) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields.get(..3),
        Some(&["overlay", "/", "overlay"][..]),
        "{line}"
    );
    fields[3]
        .split(',')
        .any(|o| o == "volatile" || o == "fsync=volatile")
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

/// Whether `pid` has a handler installed for `signal` (`SigCgt` in /proc/<pid>/status).
fn catches(pid: u32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

#[test]
fn stop_sends_the_images_stop_signal() {
    let d = Daemon::start("runimg-stopsig");
    let dir = TestDir::new("runimg-stopsig");
    // Exits 3 on SIGQUIT, ignores SIGTERM: only the image's StopSignal stops it in time.
    let spec = ImageSpec::busybox()
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["trap 'exit 3' QUIT; trap '' TERM; while :; do sleep 0.1; done"])
        .stop_signal("SIGQUIT");
    data_dir::import_image(&d, &dir, "demo.local/quits:1", spec);
    for id in ["quits1", "quits2"] {
        let out = d.ctl(&["run", "-d", "demo.local/quits:1", id]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let info = d.client().state("", id).unwrap();
        assert_eq!(info.stop_signal, libc::SIGQUIT, "{info:?}");
        // Signals sent before the shell's traps are set would be lost on a pid 1.
        wait_until(Duration::from_secs(20), "the traps", || {
            catches(info.pid, libc::SIGQUIT)
        });
    }
    let inspect = d.ctl_ok(&["inspect", "quits1"]);
    assert!(inspect.contains("\"stop_signal\": 3"), "{inspect}");
    // No -s: the image's SIGQUIT, well within the grace period.
    assert_eq!(d.ctl_ok(&["stop", "-t", "60", "quits1"]).trim(), "3");
    // -s TERM overrides it: ignored, so SIGKILL after the grace period.
    assert_eq!(
        d.ctl_ok(&["stop", "-t", "1", "-s", "TERM", "quits2"])
            .trim(),
        "137"
    );
    d.ctl_ok(&["rm", "quits1", "quits2"]);

    // A stop signal the spec cannot mean is refused at create, by name.
    let bad = ImageSpec::busybox().stop_signal("SIGNOPE");
    data_dir::import_image(&d, &dir, "demo.local/badsig:1", bad);
    let out = d.ctl(&["run", "-d", "demo.local/badsig:1", "badsig"]);
    assert_ne!(code(&out), 0);
    let err = stderr(&out);
    assert!(
        err.contains("org.opencontainers.image.stopSignal") && err.contains("SIGNOPE"),
        "{err}"
    );
    assert!(mounts_under(&d).is_empty(), "{:?}", mounts_under(&d));
    assert!(
        active_snapshots(&d).is_empty(),
        "{:?}",
        active_snapshots(&d)
    );
}

#[test]
fn no_pivot_root_reaches_the_runtime() {
    let d = Daemon::start("runimg-nopivot");
    let dir = TestDir::new("runimg-nopivot");
    data_dir::import_image(&d, &dir, "demo.local/bb:1", ImageSpec::busybox());
    // The real runc behind a wrapper that writes down its command lines.
    let log = dir.join("runc-args.log");
    let wrapper = dir.join("runc-logging");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            common::runc().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let runtime = wrapper.display().to_string();
    let with = |id: &str, extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--runtime", runtime.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["demo.local/bb:1", id, "--", "echo", "in", id]);
        let out = d.ctl(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("in {id}\n"));
    };
    with("pivots", &[]);
    with("nopivot", &["--no-pivot-root"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    let setup = |id: &str| -> Vec<String> {
        calls
            .lines()
            .filter(|l| {
                l.ends_with(&format!(" {id}")) && (l.contains(" run ") || l.contains(" create "))
            })
            .map(str::to_string)
            .collect()
    };
    let pivots = setup("pivots");
    let nopivot = setup("nopivot");
    assert!(!pivots.is_empty() && !nopivot.is_empty(), "{calls}");
    assert!(pivots.iter().all(|l| !l.contains("--no-pivot")), "{calls}");
    assert!(nopivot.iter().all(|l| l.contains("--no-pivot")), "{calls}");
    assert!(mounts_under(&d).is_empty());
}
