//! The lifecycle (create, start, exec, pause, update, stats, kill, wait, delete) under every
//! OCI runtime installed besides runc: crun, and youki when present. Each runtime is a
//! `[runtimes.NAME]` entry of the daemon's config file, asked for by name. A runtime whose
//! binary is absent is skipped with a printed reason; runc runs these verbs in
//! lifecycle.rs and resources.rs.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Error, Resources, Status};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The runtime's binary, or why it is not there.
fn find(name: &str, env: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return corral::runtime::resolve_binary(&path)
            .ok_or_else(|| format!("{env}={} is not an executable", path.display()));
    }
    corral::runtime::resolve_binary(Path::new(name))
        .or_else(|| {
            [
                "/usr/local/bin",
                "/usr/bin",
                "/usr/sbin",
                "/root/.cargo/bin",
            ]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("no {name} in PATH nor in /usr/local/bin, /usr/bin (set {env})"))
}

/// A daemon whose config names `binary` as `[runtimes.NAME]`.
fn daemon_with(name: &str, binary: &Path) -> Daemon {
    let config = std::env::temp_dir().join(format!(
        "corral-runtimes-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "[runtimes.{name}]\nbinary = {:?}\n",
            binary.display().to_string()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        &format!("rt_{name}"),
        &["--config", config.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&config);
    d
}

fn counter_text(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

fn wait_counter_moves(file: &Path, what: &str) {
    let first = counter_text(file);
    wait_until(LIVENESS, what, || {
        let now = counter_text(file);
        !now.trim().is_empty() && now != first
    });
}

/// Every verb a user drives, under the runtime `name`.
fn lifecycle(name: &str, binary: &Path) {
    eprintln!("{name}: {}", binary.display());
    let d = daemon_with(name, binary);
    let b = d.counter_bundle();
    let count = b.join("rootfs/count");
    let id = unique_id(name);

    // create, then start.
    let mut req = run_req(&id, &b);
    req.start = false;
    req.runtime = Some(name.into());
    let created = d
        .create(req)
        .unwrap_or_else(|e| panic!("{name}: create: {e}; log:\n{}", d.log_tail(30)));
    assert_eq!(created.status, Status::Created);
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Created);
    let pid = created.pid;
    // The container's cgroup is corral's `<parent>/<namespace>/<id>`, in every hierarchy.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroup.lines() {
        assert!(
            line.ends_with(&format!(":/corral/default/{id}")),
            "{name}: the container's cgroup is not /corral/default/{id}: {cgroup}"
        );
    }
    let started = d.client().start("", &id).unwrap();
    assert_eq!(started.status, Status::Running);
    wait_counter_moves(&count, "the counter to move");

    // exec, with its output and exit code.
    let out = d.path("exec.out");
    let mut exec = exec_req(&id, "e1", &["sh", "-c", "echo from-exec; exit 5"]);
    exec.stdio.stdout = Some(out.clone());
    d.client().exec(exec).unwrap();
    assert_eq!(d.wait_code("", &id, Some("e1")), 5);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "from-exec\n");

    // pause and resume.
    assert_eq!(d.client().pause("", &id).unwrap().status, Status::Paused);
    let frozen = counter_text(&count);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        counter_text(&count),
        frozen,
        "{name}: the counter moved while paused"
    );
    assert_eq!(d.client().resume("", &id).unwrap().status, Status::Running);
    wait_counter_moves(&count, "the counter to move after resume");

    // update: the cgroup files say what was asked (v1's or v2's).
    d.client()
        .update(
            "",
            &id,
            Resources {
                memory: Some(64 << 20),
                pids_limit: Some(20),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: update: {e}"));
    let memory_file = if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        cgroup_file(pid, "memory", memory_file),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(pid, "pids", "pids.max"), "20");

    // stats.
    let mut all = d.client().stats("", vec![id.clone()]).unwrap();
    let stats = all.remove(0).1;
    assert!(stats.pids.current >= 1, "{name}: {stats:?}");
    assert!(stats.memory.usage.usage > 0, "{name}: {stats:?}");
    assert!(stats.cpu.usage.total > 0, "{name}: {stats:?}");

    // A verb the runtime lacks names the runtime and the verb; one it has may fail for
    // want of CRIU, but never silently.
    let checkpoint = d.client().checkpoint("", &id, "cp1", Default::default());
    match &checkpoint {
        Ok(_) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("checkpoint"), "{name}: {msg}");
            // Debian's crun has no CRIU, youki 0.7 no `checkpoint` (only `checkpointt`).
            if (name == "crun" || name == "youki") && !msg.to_lowercase().contains("criu") {
                assert!(
                    msg.contains(&binary.display().to_string()),
                    "{name}: the error does not name the runtime: {msg}"
                );
            }
            eprintln!("{name}: checkpoint: {msg}");
        }
    }
    if checkpoint.is_err() {
        assert_eq!(d.client().state("", &id).unwrap().status, Status::Running);
    }

    // kill, wait, delete.
    d.client().kill(kill_init_req(&id)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    assert_eq!(d.client().state("", &id).unwrap().status, Status::Stopped);
    d.delete("", &id, false).unwrap();
    match d.client().state("", &id) {
        Err(Error::NotFound(_)) => {}
        other => panic!("{name}: state after delete gave {other:?}"),
    }
    d.assert_no_leftovers("default", &id);
}

#[test]
fn crun_runs_the_lifecycle() {
    match find("crun", "CORRAL_CRUN") {
        Ok(bin) => lifecycle("crun", &bin),
        Err(why) => eprintln!("SKIPPED crun: {why} (scripts/install-deps.sh installs it)"),
    }
}

#[test]
fn youki_runs_the_lifecycle() {
    match find("youki", "CORRAL_YOUKI") {
        Ok(bin) => lifecycle("youki", &bin),
        Err(why) => eprintln!(
            "SKIPPED youki: {why} (CORRAL_INSTALL_YOUKI=1 scripts/install-deps.sh builds it)"
        ),
    }
}

/// A runtime entry whose binary is not executable, and one that prints garbage: clear
/// errors naming the runtime and the file.
#[test]
fn broken_runtimes_are_named() {
    // Not executable: refused when the config is read, naming the key and the file.
    let dir = std::env::temp_dir().join(format!("corral-rt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plainfile");
    std::fs::write(&plain, "not a program").unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[runtimes.broken]\nbinary = {:?}\n",
            plain.display().to_string()
        ),
    )
    .unwrap();
    let out = output_within(
        std::process::Command::new(CORRALD)
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(dir.join("sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--data-dir")
            .arg(dir.join("data")),
        LIVENESS,
    );
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("runtimes.broken.binary"), "{text}");
    assert!(text.contains(&plain.display().to_string()), "{text}");

    // Garbage on stdout: `state` and `ps` say which runtime printed what. The fake runtime
    // is runc for every verb but those two.
    let fake = dir.join("garbage-runtime");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case $a in state|ps) echo 'hello, world'; exit 0;; esac; done\nexec {} \"$@\"\n",
            runc().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start("rt_garbage");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("garbage");
    let mut req = run_req(&id, &b);
    req.runtime = Some(fake.clone());
    d.create(req).unwrap();
    let out = d.ctl(&["top", &id]);
    let text = stderr(&out);
    assert_ne!(code(&out), 0, "{text}");
    assert!(
        text.contains(&fake.display().to_string()) && text.contains("hello, world"),
        "the error does not name the runtime and what it printed: {text}"
    );
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
    let _ = std::fs::remove_dir_all(&dir);
}
