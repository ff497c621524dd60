//! Restart policies across daemon restarts: the policy and the count are the container's,
//! not the daemon's; an exit while no daemon runs is restarted by the next one.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{EventFilter, RestartPolicy, Status, Topic};
use std::path::Path;
use std::time::Duration;

fn only(id: &str) -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        container_id: Some(id.to_string()),
        ..Default::default()
    }
}

/// A script that runs until `/<gate>` appears in its rootfs, removes it (so that the next
/// run waits again) and exits with `code`.
fn gated(gate: &str, code: u32) -> String {
    format!("while [ ! -e /{gate} ]; do sleep 0.05; done; rm /{gate}; exit {code}")
}

/// Waits until the container runs its `n`th restart.
fn wait_restarts(d: &Daemon, id: &str, n: u32) {
    wait_until(LIVENESS, &format!("{id} to run restart {n}"), || {
        let s = d.client().state("", id).unwrap();
        s.restarts == n && s.status == Status::Running
    });
}

/// The `/tasks/start` events of a container from the journal: their `restarts` field.
fn starts(d: &Daemon, id: &str) -> Vec<Option<u32>> {
    d.replay(only(id))
        .iter()
        .filter(|e| e.topic == Topic::TaskStart)
        .map(|e| e.restarts)
        .collect()
}

fn fail_now(rootfs: &Path) {
    touch(&rootfs.join("fail"));
}

/// on-failure:3 with a container that exits 1: exactly three restarts, numbered 1, 2, 3,
/// then it stays stopped with restarts == 3 and its last exit; the daemon is restarted
/// (SIGTERM, then kill -9 with the exit happening while it is down) between restarts, and
/// the policy and the count carry on.
#[test]
fn on_failure_3_restarts_three_times_across_daemon_restarts() {
    let mut d = Daemon::start("policy_on_failure");
    let b = d.bundle("fail", &["sh", "-c", &gated("fail", 1)]);
    let rootfs = b.join("rootfs");
    let id = unique_id("onfail3");
    let policy = RestartPolicy::OnFailure { max: Some(3) };
    let mut req = run_req(&id, &b);
    req.restart = policy;
    let first = d.create(req).unwrap();
    assert_eq!((first.restart, first.restarts), (policy, 0));

    // Run 0 fails: restart 1.
    fail_now(&rootfs);
    wait_restarts(&d, &id, 1);

    // A clean daemon restart: policy and count are kept; run 1 fails: restart 2.
    assert!(d.stop().success());
    d.restart();
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.restart, s.restarts),
        (Status::Running, policy, 1)
    );
    fail_now(&rootfs);
    wait_restarts(&d, &id, 2);

    // A crash, and run 2 fails while no daemon runs: the next daemon tells the exit and
    // restarts it (restart 3).
    let pid = d.client().state("", &id).unwrap().pid;
    d.kill9();
    fail_now(&rootfs);
    wait_until(LIVENESS, "run 2 to exit", || !alive(pid as i32));
    d.restart();
    wait_restarts(&d, &id, 3);

    // Run 3 fails: no fourth restart.
    fail_now(&rootfs);
    assert_eq!(d.wait_code("", &id, None), 1);
    std::thread::sleep(Duration::from_millis(800));
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.restarts, s.restart, s.exit.map(|e| e.code)),
        (Status::Stopped, 3, policy, Some(1))
    );
    let events = d.replay(only(&id));
    let exits: Vec<Option<u32>> = events
        .iter()
        .filter(|e| e.topic == Topic::TaskExit)
        .map(|e| e.exit.map(|x| x.code))
        .collect();
    assert_eq!(exits, vec![Some(1); 4], "{events:#?}");
    assert_eq!(starts(&d, &id), vec![None, Some(1), Some(2), Some(3)]);
    // Starts and exits alternate.
    let topics: Vec<Topic> = topics_of(&events);
    let mut want = vec![Topic::TaskCreate];
    for _ in 0..4 {
        want.extend([Topic::TaskStart, Topic::TaskExit]);
    }
    assert_eq!(topics, want, "{events:#?}");

    // Still stopped, still 3, after another daemon restart.
    assert!(d.stop().success());
    d.restart();
    std::thread::sleep(Duration::from_millis(500));
    let s = d.client().state("", &id).unwrap();
    assert_eq!((s.status, s.restarts), (Status::Stopped, 3));
    assert_eq!(starts(&d, &id).len(), 4);
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// `always` restarts after a clean exit too, and goes on doing so after a daemon restart.
#[test]
fn always_restarts_after_exit_0_across_daemon_restarts() {
    let mut d = Daemon::start("policy_always");
    let b = d.bundle("ok", &["sh", "-c", &gated("done", 0)]);
    let rootfs = b.join("rootfs");
    let id = unique_id("always0");
    let mut req = run_req(&id, &b);
    req.restart = RestartPolicy::Always;
    d.create(req).unwrap();
    touch(&rootfs.join("done"));
    wait_restarts(&d, &id, 1);

    assert!(d.stop().success());
    d.restart();
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.restart, s.restarts),
        (Status::Running, RestartPolicy::Always, 1)
    );
    touch(&rootfs.join("done"));
    wait_restarts(&d, &id, 2);

    let events = d.replay(only(&id));
    let exits: Vec<Option<u32>> = events
        .iter()
        .filter(|e| e.topic == Topic::TaskExit)
        .map(|e| e.exit.map(|x| x.code))
        .collect();
    assert_eq!(exits, vec![Some(0), Some(0)], "{events:#?}");
    assert_eq!(starts(&d, &id), vec![None, Some(1), Some(2)]);
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}
