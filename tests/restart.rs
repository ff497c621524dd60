//! Restart policies: what restarts, how many times, what a user's kill or delete does.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{EventFilter, RestartPolicy, Status, Topic};
use std::time::Duration;

fn subscribe(d: &Daemon, id: &str) -> Events {
    Events::subscribe(
        &d.socket,
        EventFilter {
            namespace: Some("default".into()),
            container_id: Some(id.to_string()),
            ..Default::default()
        },
    )
}

/// on-failure:2 restarts a failing container exactly twice, each start numbered, then
/// leaves it stopped with its last exit.
#[test]
fn on_failure_restarts_up_to_its_limit() {
    let d = Daemon::start("restart_on_failure");
    let b = d.bundle("fail", &["sh", "-c", "exit 1"]);
    let id = unique_id("onfail");
    let events = subscribe(&d, &id);
    let out = d.ctl_ok(&[
        "run",
        &id,
        "--bundle",
        b.to_str().unwrap(),
        "-d",
        "--restart",
        "on-failure:2",
    ]);
    assert!(out.contains("running"), "{out}");
    let mut exits = 0;
    let seen = events.until("the third /tasks/exit", |e| {
        exits += usize::from(e.topic == Topic::TaskExit);
        exits == 3
    });
    let starts: Vec<Option<u32>> = seen
        .iter()
        .filter(|e| e.topic == Topic::TaskStart)
        .map(|e| e.restarts)
        .collect();
    assert_eq!(starts, vec![None, Some(1), Some(2)], "{seen:#?}");
    assert!(seen
        .iter()
        .filter(|e| e.topic == Topic::TaskExit)
        .all(|e| e.exit.map(|x| x.code) == Some(1)));
    // No third restart.
    let more = events.drain(Duration::from_millis(800));
    assert!(more.is_empty(), "restarted beyond on-failure:2: {more:#?}");
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.restarts, s.restart, s.exit.map(|e| e.code)),
        (
            Status::Stopped,
            2,
            RestartPolicy::OnFailure { max: Some(2) },
            Some(1)
        )
    );
    assert_eq!(d.wait_code("", &id, None), 1);
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// on-failure does not restart a clean exit; unless-stopped does not restart what a user
/// killed.
#[test]
fn no_restart_after_success_or_a_users_kill() {
    let d = Daemon::start("restart_not");
    let ok = d.bundle("ok", &["true"]);
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let clean = unique_id("clean");
    let clean_events = subscribe(&d, &clean);
    let mut req = run_req(&clean, &ok);
    req.restart = RestartPolicy::OnFailure { max: None };
    d.create(req).unwrap();
    assert_eq!(d.wait_code("", &clean, None), 0);

    let killed = unique_id("killed");
    let killed_events = subscribe(&d, &killed);
    let mut req = run_req(&killed, &sleeper);
    req.restart = RestartPolicy::UnlessStopped;
    d.create(req).unwrap();
    d.ctl_ok(&["kill", &killed, "--signal", "KILL"]);
    assert_eq!(d.wait_code("", &killed, None), 137);

    for (id, events) in [(&clean, &clean_events), (&killed, &killed_events)] {
        let seen = events.until("the exit", |e| e.topic == Topic::TaskExit);
        assert_eq!(seen.len(), 3, "{seen:#?}");
        let more = events.drain(Duration::from_millis(600));
        assert!(more.is_empty(), "{id} was restarted: {more:#?}");
        let s = d.client().state("", id).unwrap();
        assert_eq!((s.status, s.restarts), (Status::Stopped, 0), "{id}");
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
}

/// A container that always restarts is stopped for good by a forced delete, whatever the
/// moment (between restarts or running), and leaves nothing.
#[test]
fn delete_stops_an_always_restarting_container() {
    let d = Daemon::start("restart_always");
    let b = d.bundle("blink", &["sh", "-c", "exit 0"]);
    let id = unique_id("always");
    let events = subscribe(&d, &id);
    let mut req = run_req(&id, &b);
    req.restart = RestartPolicy::Always;
    d.create(req).unwrap();
    let mut starts = 0;
    events.until("two restarts", |e| {
        starts += usize::from(e.topic == Topic::TaskStart);
        starts == 3
    });
    d.delete("", &id, true).unwrap();
    events.until("/tasks/delete", |e| e.topic == Topic::TaskDelete);
    let after = events.drain(Duration::from_millis(800));
    assert!(after.is_empty(), "events after the delete: {after:#?}");
    assert!(d.list_ids("default").is_empty());
    d.assert_no_leftovers("default", &id);
}
