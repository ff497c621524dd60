//! The daemon stays clean over many containers (descriptors, memory, children, files,
//! cgroups), and a process that exits at once still has its exit told.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::*;
use corral::{CreateRequest, EventFilter, ImageRun, Status, Topic};
use std::time::Duration;

fn only(id: &str) -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        container_id: Some(id.to_string()),
        ..Default::default()
    }
}

/// One create, start, wait, delete cycle of a container running `true`.
fn cycle(d: &Daemon, id: &str, bundle: &std::path::Path) {
    let mut req = run_req(id, bundle);
    req.start = false;
    d.create(req).unwrap();
    d.client().start("", id).unwrap();
    assert_eq!(d.wait_code("", id, None), 0, "{id}");
    d.delete("", id, false).unwrap();
}

/// Everything under the namespace directories of `dir` (containers' files and dirs), and
/// any other file at its top, the journal and the lock excepted.
fn left_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for top in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = top.file_name();
        if name == corral::JOURNAL_DIR || name == "_lock" {
            continue;
        }
        if !top.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(top.path());
            continue;
        }
        out.extend(
            std::fs::read_dir(top.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
    }
    out
}

/// The daemon's descriptor count once it is back to `before`, or after 5 s.
fn fds_back_to(d: &Daemon, before: usize) -> usize {
    let mut now = fd_count(d.pid());
    for _ in 0..50 {
        if now <= before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        now = fd_count(d.pid());
    }
    now
}

/// 100 create/start/wait/delete cycles: afterwards the daemon has as many descriptors as
/// before, about as much memory, no child and no zombie, no pending child in its reaper,
/// and nothing of the containers is left in the state dir, the runtime root or the cgroups.
#[test]
fn a_hundred_cycles_leave_nothing_behind() {
    let d = Daemon::start("hygiene_cycles");
    let b = d.bundle("true", &["true"]);
    // Warm up (thread pools, allocator arenas, lazily opened files), then measure.
    for _ in 0..10 {
        cycle(&d, &unique_id("warm"), &b);
    }
    let settle = |what: &str| {
        wait_until(
            LIVENESS,
            &format!("corrald to have no children {what}"),
            || children_of(d.pid()).is_empty() && d.info().pending_children == 0,
        );
    };
    settle("after the warm-up");
    let fds_before = fd_count(d.pid());
    let rss_before = rss_kib(d.pid());

    let ids: Vec<String> = (0..100).map(|_| unique_id("cycle")).collect();
    // One after the other: concurrent cycles in one namespace are the next test's subject.
    for id in &ids {
        cycle(&d, id, &b);
    }

    settle("after 100 cycles");
    let info = d.info();
    assert_eq!(
        (info.containers, info.running, info.pending_children),
        (0, 0, 0),
        "{info:?}"
    );
    assert_eq!(info.last_seq, 110 * 4, "every cycle publishes 4 events");
    let zombies = zombies_under(d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");
    // Descriptors: exactly back (a leak of one per cycle would show as 100).
    let fds_after = fds_back_to(&d, fds_before);
    assert!(
        fds_after <= fds_before + 2,
        "corrald had {fds_before} descriptors before 100 cycles and {fds_after} after: {:?}",
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .collect::<Vec<_>>()
    );
    // Memory: near the baseline (a per-container leak of a state record, a subscriber
    // buffer or a process table would add up well beyond this).
    let rss_after = rss_kib(d.pid());
    eprintln!(
        "corrald: {fds_before} -> {fds_after} descriptors, {rss_before} -> {rss_after} KiB RSS"
    );
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "corrald's RSS grew from {rss_before} KiB to {rss_after} KiB over 100 cycles"
    );
    for id in &ids {
        let cgroups = cgroup_dirs(id);
        assert!(cgroups.is_empty(), "{id}: cgroups left: {cgroups:?}");
    }
    assert_eq!(left_in(&d.state_dir), Vec::<std::path::PathBuf>::new());
    assert_eq!(left_in(&d.root), Vec::<std::path::PathBuf>::new());
    assert!(processes_in(&d.state_dir).is_empty());
}

/// A delete that empties the namespace's cgroup level must not pull it from under a
/// create that is making its own cgroup in it: the create succeeds.
///
/// The window (runc between its check of `<namespace>` and its mkdir of `<namespace>/<id>`)
/// is held open with strace, which delays runc's mkdir of the new container's memory
/// cgroup by 3 s; the other container is deleted meanwhile. Without strace the same
/// happens about once in a few hundred concurrent cycles.
#[test]
fn a_delete_does_not_pull_the_namespace_cgroup_from_under_a_create() {
    let d = Daemon::start("hygiene_cgroup_race");
    let b = d.bundle("true", &["true"]);
    // A namespace of its own: its cgroup level is shared with no other test's containers
    // (every daemon of the suite runs in the same cgroup).
    let ns = unique_id("cgns");
    let first = unique_id("cgfirst");
    let mut req = run_req(&first, &b);
    req.namespace = ns.clone();
    d.create(req).unwrap();
    assert_eq!(d.wait_code(&ns, &first, None), 0);

    let second = unique_id("cgsecond");
    // corrald asks runc for `/corral/<namespace>/<id>`.
    let target = corral::cgroups::host().dir(
        "memory",
        &format!(
            "{}/{ns}/{second}",
            corral::cgroups::placement::DEFAULT_CGROUP_PARENT
        ),
    );
    let slow = SlowSyscalls::attach(d.pid(), "mkdirat", Duration::from_secs(3), true, &[&target]);
    let mut req = run_req(&second, &b);
    req.namespace = ns.clone();
    let socket = d.socket.clone();
    let creating = std::thread::spawn(move || corral::rpc::Client::connect(&socket)?.create(req));
    wait_until(
        LIVENESS,
        "runc to be held in its mkdir of the cgroup",
        || {
            task_held_in_syscall(
                d.pid(),
                "runc",
                libc::SYS_mkdirat as u32,
                Duration::from_millis(300),
            )
            .is_some()
        },
    );
    d.delete(&ns, &first, false).unwrap();
    assert!(
        !creating.is_finished(),
        "inconclusive: the create was no longer held when the delete returned"
    );
    let created = creating.join().expect("the create thread panicked");
    drop(slow);
    let info = created.unwrap_or_else(|e| {
        panic!(
            "creating {second} failed because deleting {first} removed the namespace cgroup: {e}"
        )
    });
    assert_eq!(d.wait_code(&ns, &second, None), 0, "{info:?}");
    d.delete(&ns, &second, false).unwrap();
    d.assert_no_leftovers(&ns, &first);
    d.assert_no_leftovers(&ns, &second);
}

/// A process that exits within a millisecond of starting has its exit told: with
/// start=true (`runc run`) and with create then start; wait returns 0 and the exit event
/// follows create and start, every time.
#[test]
fn an_instant_exit_is_delivered() {
    let d = Daemon::start("hygiene_instant");
    let b = d.bundle("true", &["true"]);
    for round in 0..5 {
        for two_step in [false, true] {
            let id = unique_id(if two_step { "inst2" } else { "inst1" });
            let events = Events::subscribe(&d.socket, only(&id));
            let mut req = run_req(&id, &b);
            req.start = !two_step;
            d.create(req).unwrap();
            if two_step {
                let started = d.client().start("", &id).unwrap();
                assert!(
                    matches!(started.status, Status::Running | Status::Stopped),
                    "{started:?}"
                );
            }
            assert_eq!(d.wait_code("", &id, None), 0, "round {round}, {id}");
            let seen = events.until("/tasks/exit", |e| e.topic == Topic::TaskExit);
            assert_eq!(
                topics_of(&seen),
                vec![Topic::TaskCreate, Topic::TaskStart, Topic::TaskExit],
                "round {round}, {id}: {seen:#?}"
            );
            assert_eq!(seen[2].exit.map(|e| e.code), Some(0));
            let s = d.client().state("", &id).unwrap();
            assert_eq!(
                (s.status, s.exit.map(|e| e.code)),
                (Status::Stopped, Some(0))
            );
            d.delete("", &id, false).unwrap();
            d.assert_no_leftovers("default", &id);
        }
    }
}

/// The snapshots' names in the data dir's snapshot records.
fn snapshot_names(d: &Daemon) -> Vec<String> {
    data_dir::snapshot_records(d)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

/// 30 cycles of a container from an image (unpack once, then prepare, mount, create,
/// start, wait, delete, unmount, remove): afterwards no mount, no snapshot but the image's
/// layer, no bundle, nothing in the state dir or the runtime root, and the daemon's
/// descriptors as before.
#[test]
fn image_cycles_leave_nothing_behind() {
    let d = Daemon::start("hygiene_image");
    let dir = TestDir::new("hygiene_image");
    data_dir::import_image(&d, &dir, "hyg.local/bb:1", ImageSpec::busybox());
    let cycle = |id: &str| {
        d.create(CreateRequest {
            id: id.to_string(),
            start: true,
            image: Some(Box::new(ImageRun {
                image: "hyg.local/bb:1".into(),
                args: Some(vec!["true".into()]),
                ..Default::default()
            })),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(d.wait_code("", id, None), 0, "{id}");
        d.delete("", id, false).unwrap();
    };
    // The first unpacks the image; the warm-up settles thread pools and arenas.
    for _ in 0..5 {
        cycle(&unique_id("imgwarm"));
    }
    let layers = snapshot_names(&d);
    assert_eq!(layers.len(), 1, "busybox is one layer: {layers:?}");
    wait_until(LIVENESS, "corrald to have no children", || {
        children_of(d.pid()).is_empty() && d.info().pending_children == 0
    });
    let fds_before = fd_count(d.pid());
    let ids: Vec<String> = (0..30).map(|_| unique_id("imgcycle")).collect();
    for id in &ids {
        cycle(id);
    }
    wait_until(LIVENESS, "corrald to have no children", || {
        children_of(d.pid()).is_empty() && d.info().pending_children == 0
    });
    let data = d.dir.join("data");
    assert_eq!(
        data_dir::mounts_under(&d),
        Vec::<String>::new(),
        "mounts left"
    );
    assert_eq!(
        snapshot_names(&d),
        layers,
        "snapshots left beside the image's"
    );
    let bundles: Vec<_> = std::fs::read_dir(data.join("bundles/default"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(bundles.is_empty(), "bundles left: {bundles:?}");
    let overlay_dirs = std::fs::read_dir(data.join("snapshots/overlayfs"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(
        overlay_dirs, 1,
        "snapshot dirs left beside the image's layer"
    );
    let fds_after = fds_back_to(&d, fds_before);
    assert!(
        fds_after <= fds_before + 2,
        "corrald had {fds_before} descriptors before 30 image cycles and {fds_after} after"
    );
    assert!(zombies_under(d.pid()).is_empty());
    for id in &ids {
        assert!(cgroup_dirs(id).is_empty(), "{id}: cgroups left");
    }
    assert_eq!(left_in(&d.state_dir), Vec::<std::path::PathBuf>::new());
    assert_eq!(left_in(&d.root), Vec::<std::path::PathBuf>::new());
    // And the image goes with its layer.
    d.ctl_ok(&["image", "rm", "hyg.local/bb:1"]);
    assert_eq!(snapshot_names(&d), Vec::<String>::new());
}
