//! The daemon process itself: no zombies, a clean stop, one daemon per socket, and
//! containers that outlive a daemon and are adopted by the next one.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{ExecProcess, ExecRequest, Status, Stdio};
use std::time::Duration;

fn exec(d: &Daemon, id: &str, exec_id: &str, args: &[&str]) {
    d.client()
        .exec(ExecRequest {
            namespace: String::new(),
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            process: ExecProcess::Args(args.iter().map(|s| s.to_string()).collect()),
            stdio: Stdio::default(),
        })
        .unwrap_or_else(|e| panic!("exec {exec_id} in {id}: {e}"));
}

fn assert_no_zombies_under(d: &Daemon, when: &str) {
    // An exit is reaped when its SIGCHLD is handled: allow that moment, no more.
    let mut last = Vec::new();
    let settled = (0..100).any(|_| {
        last = zombies_under(d.pid());
        last.is_empty() || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(settled, "{when}: zombie descendants of corrald: {last:#?}");
}

/// After containers that exit, get killed, and run execs, the daemon leaves no zombie
/// below it, no child (shims, runtime calls) once everything is deleted, and after it
/// exits none of its former children is a zombie.
#[test]
fn no_zombies_are_left() {
    let mut d = Daemon::start("no_zombies");
    let quick = d.bundle("quick", &["sh", "-c", "exit 1"]);
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = unique_id("zq");
        d.run(&id, &quick);
        ids.push(id);
    }
    let busy = unique_id("zbusy");
    d.run(&busy, &sleeper);
    ids.push(busy.clone());
    for n in 0..3 {
        let e = format!("q{n}");
        exec(&d, &busy, &e, &["sh", "-c", "exit 3"]);
        assert_eq!(d.wait_code("", &busy, Some(&e)), 3);
    }
    exec(&d, &busy, "s1", &["sleep", "1000"]);
    exec(&d, &busy, "s2", &["sleep", "1000"]);
    let out = d.ctl(&["exec", &busy, "cli", "--", "true"]);
    assert_eq!(code(&out), 0);
    for id in &ids[..3] {
        assert_eq!(d.wait_code("", id, None), 1);
    }
    assert_no_zombies_under(&d, "with a container and execs running");

    d.ctl_ok(&["kill", &busy, "--all", "--signal", "KILL"]);
    assert_eq!(d.wait_code("", &busy, None), 137);
    assert_no_zombies_under(&d, "after kill --all");
    for id in &ids {
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
    assert_no_zombies_under(&d, "after every delete");
    wait_until(LIVENESS, "corrald to have no children left", || {
        children_of(d.pid()).is_empty()
    });
    let info = d.client().info().unwrap();
    assert_eq!(info.pending_children, 0, "{info:?}");
    assert_eq!(info.containers, 0, "{info:?}");

    // A container still running when the daemon stops: its shim is reparented, alive.
    let last = unique_id("zlast");
    let last_info = d.run(&last, &sleeper);
    let before: Vec<ProcEntry> = descendants(d.pid());
    assert!(!before.is_empty());
    let status = d.stop();
    assert!(status.success(), "corrald exited with {status} on SIGTERM");
    wait_until(LIVENESS, "corrald's former children to be reaped", || {
        before
            .iter()
            .all(|p| proc_entry(p.pid).is_none_or(|now| now.state != 'Z'))
    });
    assert!(
        alive(last_info.pid as i32),
        "a container died with the daemon (they keep running by design)"
    );
    // Adopted by the next daemon and cleaned up through it.
    d.restart();
    d.delete("", &last, true).unwrap();
    d.assert_no_leftovers("default", &last);
    assert_no_zombies_under(&d, "after the restart");
}

/// SIGTERM stops the daemon with status 0 and removes its socket; a second daemon on a
/// socket in use is refused and the first carries on; a stale socket, or one held open
/// for a moment by a dead daemon's child, does not stop the next start.
#[test]
fn one_daemon_per_socket_and_a_clean_stop() {
    let mut d = Daemon::start("clean_stop");
    let second = output_within(
        d.command().arg("--log-level").arg("info"),
        Duration::from_secs(20),
    );
    assert_ne!(
        code(&second),
        0,
        "a second daemon started on a socket in use"
    );
    let err = stderr(&second);
    assert!(err.contains("another corrald"), "{err}");
    d.assert_alive();
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "the socket is left after a stop");
    // A stale socket file from a crash does not stop the next start.
    std::os::unix::net::UnixListener::bind(&d.socket)
        .map(drop)
        .unwrap();
    assert!(d.socket.exists());
    d.restart();
    d.assert_alive();

    // A dead corrald's listener still held by one of its children between fork and exec
    // (a kill -9 while a shim was being spawned): the socket takes connections and answers
    // none until that child execs. The next daemon waits for it rather than refusing.
    d.kill9();
    std::fs::remove_file(&d.socket).unwrap();
    let held = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(held);
    });
    d.restart();
    d.assert_alive();
    released.join().unwrap();
    // Held for good: refused after the wait, saying so.
    d.kill9();
    std::fs::remove_file(&d.socket).unwrap();
    let _held = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let third = output_within(&mut d.command(), Duration::from_secs(30));
    assert_ne!(code(&third), 0, "a daemon started on a socket held open");
    let err = stderr(&third);
    assert!(
        err.contains("takes connections but no corrald answers"),
        "{err}"
    );
}

/// Containers keep running while no daemon runs; the next daemon adopts them: their state,
/// their exits (including one that happened while no daemon ran), waits, execs, events and
/// deletes all work as if nothing had happened.
#[test]
fn a_restarted_daemon_adopts_its_containers() {
    let mut d = Daemon::start("restart_adopts");
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let running = unique_id("adoptrun");
    let dies = unique_id("adoptdie");
    let done = unique_id("adoptdone");
    let quick = d.bundle("quick", &["sh", "-c", "exit 6"]);
    let running_info = d.run(&running, &sleeper);
    let dies_info = d.run(&dies, &sleeper);
    d.run(&done, &quick);
    assert_eq!(d.wait_code("", &done, None), 6);
    let status = d.stop();
    assert!(status.success(), "{status}");

    // While no daemon runs, one container is killed behind its back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dies_info.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(LIVENESS, "the killed container to be gone", || {
        !alive(dies_info.pid as i32)
    });
    assert!(alive(running_info.pid as i32));

    d.restart();
    let mut ids = d.list_ids("default");
    ids.sort();
    let mut want = vec![running.clone(), dies.clone(), done.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "the restarted daemon does not list its containers"
    );
    let r = d.client().state("", &running).unwrap();
    assert_eq!((r.status, r.pid), (Status::Running, running_info.pid));
    assert_eq!(d.wait_code("", &dies, None), 137);
    assert_eq!(d.wait_code("", &done, None), 6);
    assert_eq!(d.client().state("", &done).unwrap().status, Status::Stopped);

    // The adopted running container is fully usable.
    exec(&d, &running, "after", &["sh", "-c", "exit 5"]);
    assert_eq!(d.wait_code("", &running, Some("after")), 5);
    d.client().kill(kill_init_req(&running)).unwrap();
    assert_eq!(d.wait_code("", &running, None), 137);
    for id in [&running, &dies, &done] {
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
    assert!(d.list_ids("default").is_empty());
}

/// Started with a soft open-files limit of 1024 (systemd's default for a service), corrald
/// raises it to the hard limit, so it can supervise more than a few hundred containers.
#[test]
fn corrald_raises_its_open_files_limit_to_the_hard_one() {
    use std::os::unix::process::CommandExt;
    let mut d = Daemon::start("rlimit");
    d.stop();
    let mut cmd = d.command();
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let (_, hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, hard)?;
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(LIVENESS, "corrald to answer", || {
        corral::rpc::Client::connect(&d.socket).is_ok()
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert!(numbers[0] > 1024, "the soft limit stayed low: {line}");
    assert_eq!(numbers[0], numbers[1], "soft is not the hard limit: {line}");
    d.restart();
}

/// `Health` answers serving; `Info` lists the daemon's features: runtimes (runc
/// implicitly), the overlayfs snapshotter, CRIU, the cgroup layout and its directories.
#[test]
fn health_answers_serving_and_info_lists_the_features() {
    let d = Daemon::start("health_info");
    let mut client = d.client();
    assert!(client.health().unwrap());
    let info = client.info().unwrap();
    let f = &info.features;
    assert!(f.runtimes.contains_key("runc"), "{info:?}");
    assert_eq!(f.default_runtime, runc(), "{info:?}");
    // Both snapshotters, the default first: overlayfs on this host (it has overlay).
    assert_eq!(
        f.snapshotters,
        vec!["overlayfs".to_string(), "native".to_string()],
        "{info:?}"
    );
    assert!(
        ["v1", "v2", "hybrid"].contains(&f.cgroups.as_str()),
        "{info:?}"
    );
    let layout = match corral::cgroups::host() {
        corral::cgroups::Hierarchy::V2 { .. } => "v2",
        corral::cgroups::Hierarchy::V1 { unified: None, .. } => "v1",
        corral::cgroups::Hierarchy::V1 { .. } => "hybrid",
    };
    assert_eq!(f.cgroups, layout);
    assert_eq!(f.state_dir, d.state_dir);
    assert_eq!(f.runtime_root, d.root);
    assert!(!f.criu.path.as_os_str().is_empty());
    // Usable CRIU has a version and no error; unusable CRIU says why.
    assert!(
        f.criu.error.is_some() || f.criu.version.is_some(),
        "{info:?}"
    );
    // The JSON corralctl prints.
    let json = serde_json::to_value(&info).unwrap();
    assert!(json["features"]["runtimes"]["runc"].is_string(), "{json}");
    // Still serving with a container running.
    let b = d.bundle("sleep", &["sleep", "100"]);
    let id = unique_id("health");
    d.run(&id, &b);
    assert!(client.health().unwrap());
    d.delete("", &id, true).unwrap();
}

/// Under systemd (`Type=notify`), corrald says READY=1 on `NOTIFY_SOCKET` once it serves,
/// and its containers start (the runtime does not see `NOTIFY_SOCKET`);
/// `corrald unit install` writes a unit that keeps containers across restarts.
#[test]
fn corrald_tells_systemd_it_is_ready_and_installs_its_unit() {
    let dir = std::env::temp_dir().join(format!("corral-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LIVENESS)).unwrap();
    let d = Daemon::start_with_env(
        "sd_notify",
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("READY=1 within the liveness bound");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
    // Ready means serving.
    d.client().list("", Default::default()).unwrap();
    // NOTIFY_SOCKET is corrald's alone: a runtime that inherited it (runc does socket
    // activation with it) would wait for the container's own READY=1 and never return.
    let b = d.bundle("sleep", &["sleep", "100"]);
    let id = unique_id("notify");
    d.run(&id, &b);
    d.delete("", &id, true).unwrap();

    let out = output_within(
        std::process::Command::new(CORRALD)
            .args(["unit", "install", "--dir"])
            .arg(&dir),
        LIVENESS,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let unit = std::fs::read_to_string(dir.join("corrald.service")).unwrap();
    for line in ["Type=notify", "KillMode=process", "Delegate=yes"] {
        assert!(unit.lines().any(|l| l == line), "{line}: {unit}");
    }
    assert!(
        unit.lines().any(|l| l
            == format!(
                "ExecStart={}",
                std::fs::canonicalize(CORRALD).unwrap().display()
            )),
        "{unit}"
    );
    let out = output_within(
        std::process::Command::new(CORRALD).args(["unit", "install", "--dir", "/proc/no-such-dir"]),
        LIVENESS,
    );
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot write /proc/no-such-dir/corrald.service"),
        "{}",
        stderr(&out)
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Moves `pid` into a new child of this test's own cgroup, in every hierarchy; returns the
/// new cgroups' directories.
fn own_child_cgroup(pid: i32, name: &str) -> Vec<std::path::PathBuf> {
    let me = std::process::id().to_string();
    let paths: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    let mut dirs = Vec::new();
    for mount in corral::cgroups::placement::mounts() {
        // Our cgroup in this hierarchy: the one of our paths whose cgroup.procs lists us.
        let Some(own) = paths
            .iter()
            .map(|p| mount.dir.join(p.trim_start_matches('/')))
            .find(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .is_ok_and(|t| t.lines().any(|l| l == me))
            })
        else {
            panic!("this test is in no cgroup of {}", mount.dir.display());
        };
        let dir = own.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if mount.cpuset {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                std::fs::write(dir.join(f), std::fs::read(own.join(f)).unwrap()).unwrap();
            }
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", dir.display()));
        dirs.push(dir);
    }
    dirs
}

/// Shims live outside corrald's cgroup in every hierarchy (the shim cgroup, /corral/_shims
/// by default) and containers in /corral/<namespace>/<id>: a kill of every process in
/// corrald's cgroup (what systemd does to a unit on stop) leaves them running, and the next
/// corrald adopts them.
#[test]
fn containers_survive_a_kill_of_corralds_cgroup() {
    let mut d = Daemon::start("cgroup_kill");
    let name = format!("corrald-test-{}", std::process::id());
    let dirs = own_child_cgroup(d.pid(), &name);
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("cgkill");
    let info = d.run(&id, &sleeper);
    let shim = d.shim_pid("default", &id, "init");
    let cgroups = |pid: i32| -> Vec<String> {
        let mut lines: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let (daemon_cg, shim_cg, container_cg) =
        (cgroups(d.pid()), cgroups(shim), cgroups(info.pid as i32));
    assert_eq!(daemon_cg.len(), shim_cg.len());
    for (ours, theirs) in daemon_cg.iter().zip(&shim_cg) {
        assert_ne!(ours, theirs, "the shim shares a cgroup with corrald");
        assert!(
            theirs.ends_with(":/corral/_shims"),
            "the shim is not in /corral/_shims: {shim_cg:?}"
        );
    }
    for line in &container_cg {
        assert!(
            line.ends_with(&format!(":/corral/default/{id}")),
            "{container_cg:?}"
        );
    }

    // systemd's stop of a unit: SIGKILL to every process in its cgroup, until none is left.
    wait_until(LIVENESS, "corrald's cgroup to be empty", || {
        let mut left = false;
        for dir in &dirs {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse::<i32>().ok())
            {
                left = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        !left
    });
    d.kill9(); // reaps it: it died of that SIGKILL
    assert!(alive(shim), "the shim died with corrald's cgroup");
    assert!(
        alive(info.pid as i32),
        "the container died with corrald's cgroup"
    );

    d.restart();
    let r = d.client().state("", &id).unwrap();
    assert_eq!((r.status, r.pid), (Status::Running, info.pid));
    exec(&d, &id, "after", &["sh", "-c", "exit 4"]);
    assert_eq!(d.wait_code("", &id, Some("after")), 4);
    d.client().kill(kill_init_req(&id)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// A corrald that cannot write to the cgroup hierarchies (here a read-only memory
/// hierarchy, as under a unit without delegation) stops at start with a message naming the
/// shims' cgroup and the directory it could not make.
#[test]
fn an_unwritable_cgroup_hierarchy_stops_corrald_at_start() {
    let d = Daemon::start("cgroup_ro");
    let cgroup = format!("/corral-ro-test-{}", std::process::id());
    // A private mount namespace: the read-only remount is seen by this corrald only.
    let script = format!("mount -o remount,bind,ro /sys/fs/cgroup/memory && exec {CORRALD} \"$@\"");
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "corrald",
    ])
    .args(d.command().get_args())
    .arg("--socket")
    .arg(d.path("ro.sock"))
    .arg("--state-dir")
    .arg(d.path("ro-state"))
    .arg("--shim-cgroup")
    .arg(&cgroup);
    let out = output_within(&mut cmd, LIVENESS);
    let err = stderr(&out);
    let memory = std::path::Path::new("/sys/fs/cgroup/memory").join(&cgroup[1..]);
    let made = memory.exists();
    for h in corral::cgroups::placement::mounts() {
        let _ = std::fs::remove_dir(h.dir.join(&cgroup[1..]));
    }
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("the shims' cgroup {cgroup}")),
        "{err}"
    );
    assert!(err.contains(&memory.display().to_string()), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!made, "{} was made", memory.display());
}
