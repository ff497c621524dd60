//! Containers with a user namespace on remapped snapshots, through a real corrald, real
//! runc and real overlayfs: `corralctl run --uidmap --gidmap IMAGE ID`, the rootfs owned by
//! the shifted range (made once per image and maps, reused, collected after), and bad maps
//! refused with nothing left behind.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::{code, data_dir, stderr, stdout, unique_id, wait_until, Daemon};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const IMAGE: &str = "demo.local/userns:1";
/// An image with a file whose owner (uid 70000) a 65536-id map does not cover.
const FAR: &str = "demo.local/userns-far:1";

const MAP: &str = "0:100000:65536";
const OTHER_MAP: &str = "0:200000:65536";

fn base_layer() -> Layer {
    Layer::new()
        .busybox()
        .dir("etc")
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644)
        .dir("home")
        .dir("home/app")
        .owned(1000, 1000)
        .file("home/app/notes", b"mine\n", 0o640)
        .owned(1000, 1000)
        .file("bin/capped", b"#!/bin/sh\n", 0o755)
        .file("bin/suid", b"#!/bin/sh\n", 0o4755)
        .file("bin/sgid", b"#!/bin/sh\n", 0o2755)
        .owned(0, 1000)
        .file("data/one", b"linked\n", 0o644)
        .hardlink("data/two", "data/one")
        .dir_mode("tmp", 0o1777)
}

fn import_images(d: &Daemon, dir: &TestDir) {
    let app = ImageSpec::new()
        .layer(base_layer(), Compression::Gzip)
        .layer(
            Layer::new().dir("etc").file("etc/motd", b"upper\n", 0o644),
            Compression::Gzip,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["true"]);
    let far = ImageSpec::new()
        .layer(
            base_layer().file("etc/far", b"x\n", 0o644).owned(70000, 0),
            Compression::Gzip,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["true"]);
    data_dir::import_images(d, dir, &[(IMAGE, app), (FAR, far)]);
}

/// The remapped snapshots (and half-made ones): (name, kind, dir id).
fn remaps(d: &Daemon) -> Vec<(String, String, u64)> {
    data_dir::snapshot_records(d)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("remap/"))
        .collect()
}

/// The `fs` dir of a snapshot.
fn snapshot_fs(d: &Daemon, name: &str) -> std::path::PathBuf {
    let (_, _, id) = data_dir::snapshot_records(d)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no snapshot {name}: {:?}", data_dir::snapshot_records(d)));
    d.dir.join(format!("data/snapshots/overlayfs/{id}/fs"))
}

/// The real, effective, saved and fs uids of a process, from /proc/<pid>/status.
fn host_uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The `security.capability` xattr of `path`, if it has one.
fn file_caps(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes, alive across the call.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn exec(d: &Daemon, id: &str, script: &str) -> String {
    let exec_id = unique_id("e");
    d.ctl_ok(&["exec", id, &exec_id, "--", "sh", "-c", script])
}

fn run_detached(d: &Daemon, id: &str, maps: &[&str]) {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(maps);
    args.extend_from_slice(&[IMAGE, id, "--", "sleep 1000"]);
    let out = d.ctl(&args);
    assert_eq!(code(&out), 0, "run {id}: {}", stderr(&out));
}

fn pid_of(d: &Daemon, id: &str) -> u32 {
    d.client().state("", id).unwrap().pid
}

#[test]
fn a_container_with_a_user_namespace_runs_on_a_remapped_snapshot() {
    let d = Daemon::start("userns-run");
    let dir = TestDir::new("userns-run");
    import_images(&d, &dir);
    // Unpacked first, to give a file of the base layer a capability (setcap: a v2 one).
    d.ctl_ok(&["run", "--rm", IMAGE, &unique_id("p")]);
    let capped = data_dir::snapshot_records(&d)
        .into_iter()
        .map(|(name, _, _)| snapshot_fs(&d, &name).join("bin/capped"))
        .find(|p| p.exists())
        .unwrap();
    let out = std::process::Command::new("setcap")
        .args(["cap_net_raw+ep", capped.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "setcap: {}", stderr(&out));
    assert_eq!(
        file_caps(&capped).map(|c| c.len()),
        Some(20),
        "not a v2 capability"
    );
    let one = unique_id("u");
    run_detached(&d, &one, &["--uidmap", MAP, "--gidmap", MAP]);

    // Inside: root, the image's files owned as the image says, the map in place.
    let out = exec(
        &d,
        &one,
        "id -u; busybox stat -c %u:%g / /bin/busybox /etc/motd /home/app/notes /data/one \
         /data/two; cat /proc/self/uid_map /proc/self/gid_map",
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines[..7],
        ["0", "0:0", "0:0", "0:0", "1000:1000", "0:0", "0:0"],
        "{out}"
    );
    let maps: Vec<String> = lines[7..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(maps, ["0 100000 65536", "0 100000 65536"], "{out}");
    // setuid and setgid bits kept through the chown; the sticky bit too.
    let out = exec(&d, &one, "busybox stat -c %a:%g /bin/suid /bin/sgid /tmp");
    assert_eq!(out, "4755:0\n2755:1000\n1777:0\n");
    // A user of the image resolves inside the container (1000 there, 101000 on the host).
    let out = d.ctl_ok(&[
        "run",
        "--rm",
        "-u",
        "app",
        "--uidmap",
        MAP,
        IMAGE,
        &unique_id("u"),
        "--",
        "id -u; cat /home/app/notes",
    ]);
    assert_eq!(out, "1000\nmine\n");

    // On the host: the process is uid 100000, and what it writes lands in the container's
    // upper dir owned by 100000.
    let pid = pid_of(&d, &one);
    assert_eq!(host_uids(pid), vec![100000; 4]);
    exec(&d, &one, "echo hi > /written; mkdir /made");
    let upper = snapshot_fs(&d, &format!("container/default/{one}"));
    for name in ["written", "made"] {
        let m = std::fs::symlink_metadata(upper.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (100000, 100000), "{name}");
    }
    // The remapped snapshot: one, committed, its files owned by the shifted range.
    let made = remaps(&d);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, "committed");
    assert!(made[0].0.ends_with(&format!("/{MAP}/{MAP}")), "{made:?}");
    let remapped = snapshot_fs(&d, &made[0].0);
    let m = std::fs::symlink_metadata(remapped.join("home/app/notes")).unwrap();
    assert_eq!((m.uid(), m.gid()), (101000, 101000));
    // The capability the chown cleared is back, as a v3 one whose root is 100000.
    let caps = file_caps(&remapped.join("bin/capped")).expect("the capability was lost");
    assert_eq!(caps.len(), 24, "{caps:?}");
    assert_eq!(caps[3], 3, "not a v3 capability: {caps:?}");
    assert_eq!(caps[20..], 100000u32.to_le_bytes(), "{caps:?}");
    assert_eq!(
        file_caps(&capped).map(|c| c.len()),
        Some(20),
        "the layer changed"
    );
    // The copy's time, for docs/architecture.md.
    for line in d
        .log_text()
        .lines()
        .filter(|l| l.contains("made a remapped snapshot"))
    {
        eprintln!("{line}");
    }

    // A second container with the same maps (--uidmap alone maps gids too) reuses it.
    let two = unique_id("u");
    run_detached(&d, &two, &["--uidmap", MAP]);
    assert_eq!(remaps(&d), made, "the second container made another remap");
    assert_eq!(
        exec(
            &d,
            &two,
            "busybox stat -c %u:%g /etc/motd; cat /written 2>&1 || true"
        ),
        "0:0\ncat: can't open '/written': No such file or directory\n"
    );
    assert_eq!(host_uids(pid_of(&d, &two)), vec![100000; 4]);

    // A different map makes another.
    let three = unique_id("u");
    run_detached(&d, &three, &["--uidmap", OTHER_MAP, "--gidmap", OTHER_MAP]);
    assert_eq!(remaps(&d).len(), 2, "{:?}", remaps(&d));
    assert_eq!(exec(&d, &three, "busybox stat -c %u /etc/motd"), "0\n");
    assert_eq!(host_uids(pid_of(&d, &three)), vec![200000; 4]);

    // --net host: no sysfs of its own, so /sys is the host's, bound read-only.
    let out = d.ctl(&[
        "run",
        "--rm",
        "--net",
        "host",
        "--uidmap",
        MAP,
        IMAGE,
        &unique_id("h"),
        "--",
        "ls /sys/kernel > /dev/null && echo sys-ok; touch /sys/x 2>/dev/null || echo ro",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "sys-ok\nro\n");
    assert_eq!(remaps(&d).len(), 2);

    // A read-only root on a remapped snapshot refuses writes.
    let out = d.ctl(&[
        "run",
        "--rm",
        "--read-only",
        "--uidmap",
        MAP,
        IMAGE,
        &unique_id("r"),
        "--",
        "id -u; echo x > /f",
    ]);
    assert_ne!(code(&out), 0, "a write to a read-only root worked");
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    assert_eq!(remaps(&d).len(), 2);

    // Two creates at once with a map not seen yet make one remap between them.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let id = unique_id("race");
            let socket = d.socket.clone();
            let child = std::process::Command::new(common::CORRALCTL)
                .args(["--socket", socket.to_str().unwrap(), "run", "-d"])
                .args(["--uidmap", "0:300000:65536", IMAGE, &id, "--", "sleep 1000"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (id, child)
        })
        .collect();
    for (id, child) in racers {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{id}: {}", stderr(&out));
        assert_eq!(host_uids(pid_of(&d, &id)), vec![300000; 4]);
        d.ctl_ok(&["rm", "--force", &id]);
    }
    assert_eq!(remaps(&d).len(), 3, "{:?}", remaps(&d));

    // GC keeps a remap while a container is on it.
    d.ctl_ok(&["prune"]);
    assert_eq!(
        remaps(&d).len(),
        2,
        "prune took a remap in use (or left the unused one)"
    );
    for id in [&one, &two, &three] {
        d.ctl_ok(&["rm", "--force", id]);
    }
    assert_eq!(
        data_dir::mounts_under(&d),
        Vec::<String>::new(),
        "mounts left"
    );
    assert_eq!(remaps(&d).len(), 2, "rm alone took the remaps");
    d.ctl_ok(&["prune"]);
    assert_eq!(remaps(&d), vec![], "prune left remapped snapshots");
    let left: Vec<_> = data_dir::snapshot_records(&d)
        .into_iter()
        .filter(|(_, kind, _)| kind != "committed")
        .collect();
    assert_eq!(left, vec![], "active snapshots left");
    assert_eq!(
        data_dir::mounts_under(&d),
        Vec::<String>::new(),
        "mounts left"
    );
    // The image's own layers stay (it is still there), and it still runs as before.
    assert_eq!(
        d.ctl_ok(&[
            "run",
            "--rm",
            IMAGE,
            &unique_id("p"),
            "--",
            "busybox stat -c %u /etc/motd"
        ]),
        "0\n"
    );
}

#[test]
fn bad_user_namespace_maps_are_named_and_leave_nothing() {
    let d = Daemon::start("userns-bad");
    let dir = TestDir::new("userns-bad");
    import_images(&d, &dir);
    let refused = |args: &[&str], want_code: i32, want: &[&str]| {
        let id = unique_id("b");
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[IMAGE, &id, "--", "true"]);
        let out = d.ctl(&all);
        let err = stderr(&out);
        assert_eq!(code(&out), want_code, "{all:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{all:?}: want {w:?} in: {err}");
        }
        assert!(d.list_ids("default").is_empty(), "{all:?} left a container");
    };
    // Malformed: the CLI refuses them, naming the flag.
    refused(
        &["--uidmap", "0:100000"],
        2,
        &["--uidmap", "CONTAINER_ID:HOST_ID:SIZE"],
    );
    refused(&["--gidmap", "0:x:10"], 2, &["--gidmap", "host id \"x\""]);
    refused(&["--uidmap", "0:100000:0"], 2, &["--uidmap", "size 0"]);
    refused(
        &["--uidmap", "0:4294967290:10"],
        2,
        &["--uidmap", "pass 4294967294"],
    );
    let out = d.ctl(&[
        "run",
        "--rm",
        "--bundle",
        "/tmp",
        "--uidmap",
        MAP,
        &unique_id("b"),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--uidmap and --gidmap need an IMAGE"),
        "{}",
        stderr(&out)
    );
    // Well-formed but wrong: the daemon refuses them, naming the flag.
    refused(
        &["--uidmap", "1:100000:10"],
        125,
        &["--uidmap does not map container id 0"],
    );
    refused(
        &[
            "--uidmap",
            "0:100000:10",
            "--uidmap",
            "5:200000:10",
            "--gidmap",
            MAP,
        ],
        125,
        &["--uidmap", "overlap inside the container"],
    );
    refused(
        &[
            "--uidmap",
            MAP,
            "--gidmap",
            "0:100000:10",
            "--gidmap",
            "10:100005:10",
        ],
        125,
        &["--gidmap", "overlap on the host"],
    );
    assert_eq!(remaps(&d), vec![], "a refused map made a remap");
    // A user the map does not cover.
    refused(
        &["-u", "5000", "--uidmap", "0:100000:2000"],
        125,
        &["uid 5000 is not mapped by --uidmap"],
    );
    // An image file owned by an id the map does not cover: the remap stops, and the
    // half-made snapshot goes.
    let before = remaps(&d);
    let id = unique_id("far");
    let out = d.ctl(&["run", "--rm", "--uidmap", MAP, FAR, &id, "--", "true"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/etc/far is owned by uid 70000, which --uidmap does not map"),
        "{err}"
    );
    assert_eq!(remaps(&d), before, "a half-made remap is left");
    assert!(d.list_ids("default").is_empty());
    assert!(!d.dir.join("data/remap-mount").exists());
    assert_eq!(
        data_dir::mounts_under(&d),
        Vec::<String>::new(),
        "mounts left"
    );
    // The daemon is fine after all of it: the same maps work for the other image.
    let out = d.ctl_ok(&[
        "run",
        "--rm",
        "--uidmap",
        MAP,
        IMAGE,
        &unique_id("ok"),
        "--",
        "id -u",
    ]);
    assert_eq!(out, "0\n");
    d.ctl_ok(&["prune"]);
    wait_until(Duration::from_secs(30), "no remap left", || {
        remaps(&d).is_empty()
    });
    assert_eq!(
        data_dir::mounts_under(&d),
        Vec::<String>::new(),
        "mounts left"
    );
    assert!(data_dir::snapshot_records(&d)
        .iter()
        .all(|(_, kind, _)| kind == "committed"));

    // A crash in the middle of a remap leaves an active `...-remap` snapshot: prune
    // removes it (made here by hand while the daemon is stopped).
    let mut d = d;
    d.stop();
    let meta_path = d.dir.join("data/snapshots/metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    let n = meta["next_id"].as_u64().unwrap();
    let key = format!("remap/sha256:0123/{MAP}/{MAP}-remap");
    meta["snapshots"][&key] = serde_json::json!({
        "id": n, "kind": "active", "parent": null, "created_ns": 1, "updated_ns": 1,
    });
    meta["next_id"] = serde_json::json!(n + 1);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let half = d.dir.join(format!("data/snapshots/overlayfs/{n}"));
    std::fs::create_dir_all(half.join("fs")).unwrap();
    std::fs::create_dir_all(half.join("work")).unwrap();
    d.restart();
    assert_eq!(remaps(&d).len(), 1, "{:?}", remaps(&d));
    d.ctl_ok(&["prune"]);
    assert_eq!(remaps(&d), vec![], "prune left the half-made remap");
    assert!(!half.exists(), "its directory is left");
}
