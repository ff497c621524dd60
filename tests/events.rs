//! Events as a subscriber sees them: order, sequence numbers, namespaces, exit codes,
//! filters, and the journal's replay.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Event, EventFilter, ExecProcess, ExecRequest, Since, Stdio, Topic};
use std::time::Duration;

fn filter(ns: &str, id: &str) -> EventFilter {
    EventFilter {
        namespace: Some(ns.to_string()),
        container_id: Some(id.to_string()),
        ..Default::default()
    }
}

fn topics(events: &[Event]) -> Vec<(Topic, Option<String>)> {
    events
        .iter()
        .map(|e| (e.topic, e.process_id.clone()))
        .collect()
}

fn assert_seqs_increase(events: &[Event]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "sequence numbers do not increase: {} then {} in {events:#?}",
            pair[0].seq,
            pair[1].seq
        );
        assert!(
            pair[0].timestamp_ns <= pair[1].timestamp_ns,
            "timestamps go back"
        );
    }
}

fn position(events: &[Event], topic: Topic, process: &str) -> usize {
    events
        .iter()
        .position(|e| e.topic == topic && e.process_id.as_deref() == Some(process))
        .unwrap_or_else(|| panic!("no {topic} for {process} in {events:#?}"))
}

/// One container's run: create < start < exit < delete, numbered, namespaced, with the
/// exit code on the exit (and delete) event.
#[test]
fn a_run_publishes_create_start_exit_delete_in_order() {
    let d = Daemon::start("events_run");
    let b = d.bundle("four", &["sh", "-c", "exit 4"]);
    let id = unique_id("evrun");
    let events = Events::subscribe(&d.socket, filter("default", &id));
    let info = d.run(&id, &b);
    assert_eq!(d.wait_code("", &id, None), 4);
    d.delete("", &id, false).unwrap();
    let seen = events.until("/tasks/delete", |e| e.topic == Topic::TaskDelete);
    let init = Some("init".to_string());
    assert_eq!(
        topics(&seen),
        vec![
            (Topic::TaskCreate, init.clone()),
            (Topic::TaskStart, init.clone()),
            (Topic::TaskExit, init.clone()),
            (Topic::TaskDelete, init.clone()),
        ],
        "{seen:#?}"
    );
    assert_seqs_increase(&seen);
    for e in &seen {
        assert_eq!(e.namespace, "default");
        assert_eq!(e.container_id, id);
        assert!(e.timestamp_ns > 0);
        assert_eq!(e.pid, Some(info.pid), "{e:?}");
    }
    assert_eq!(seen[0].bundle.as_deref(), Some(b.as_path()));
    assert_eq!(seen[2].exit.map(|e| e.code), Some(4));
    assert_eq!(seen[3].exit.map(|e| e.code), Some(4));
    // Nothing else comes for this container.
    let extra = events.drain(Duration::from_millis(300));
    assert!(
        extra.is_empty(),
        "unexpected events after delete: {extra:#?}"
    );
}

/// Execs: exec-added < exec-started < the exec's exit, and every exec's exit comes before
/// the init's exit, even when the container dies under a running exec.
#[test]
fn exec_events_come_in_order_before_the_init_exit() {
    let d = Daemon::start("events_exec");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("evexec");
    let events = Events::subscribe(&d.socket, filter("default", &id));
    d.run(&id, &b);
    let exec = |exec_id: &str, args: &[&str]| {
        d.client()
            .exec(ExecRequest {
                namespace: String::new(),
                id: id.clone(),
                exec_id: exec_id.into(),
                process: ExecProcess::Args(args.iter().map(|s| s.to_string()).collect()),
                stdio: Stdio::default(),
            })
            .unwrap()
    };
    let quick = exec("quick", &["sh", "-c", "exit 2"]);
    assert_eq!(d.wait_code("", &id, Some("quick")), 2);
    let slow = exec("slow", &["sleep", "1000"]);
    // Kill the init only: the exec dies with the container's pid namespace.
    d.client().kill(kill_init_req(&id)).unwrap();
    assert_eq!(d.wait_code("", &id, None), 137);
    let seen = events.until("the init's /tasks/exit", |e| {
        e.topic == Topic::TaskExit && e.process_id.as_deref() == Some("init")
    });
    assert_seqs_increase(&seen);
    let added_q = position(&seen, Topic::TaskExecAdded, "quick");
    let started_q = position(&seen, Topic::TaskExecStarted, "quick");
    let exit_q = position(&seen, Topic::TaskExit, "quick");
    let added_s = position(&seen, Topic::TaskExecAdded, "slow");
    let started_s = position(&seen, Topic::TaskExecStarted, "slow");
    let exit_s = position(&seen, Topic::TaskExit, "slow");
    let start = position(&seen, Topic::TaskStart, "init");
    let exit_init = position(&seen, Topic::TaskExit, "init");
    assert!(start < added_q, "{seen:#?}");
    assert!(added_q < started_q && started_q < exit_q, "{seen:#?}");
    assert!(exit_q < added_s, "{seen:#?}");
    assert!(added_s < started_s && started_s < exit_s, "{seen:#?}");
    assert!(
        exit_s < exit_init,
        "an exec's exit came after the init's: {seen:#?}"
    );
    assert_eq!(exit_init, seen.len() - 1);
    assert_eq!(seen[exit_q].exit.map(|e| e.code), Some(2));
    assert_eq!(seen[exit_s].exit.map(|e| e.code), Some(137));
    assert_eq!(seen[exit_init].exit.map(|e| e.code), Some(137));
    assert_eq!(seen[started_q].pid, Some(quick.pid));
    assert_eq!(seen[started_s].pid, Some(slow.pid));
    assert_eq!(seen[exit_s].pid, Some(slow.pid));
    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A subscriber sees only what its filter asks for: its namespace, its container.
#[test]
fn subscriptions_are_filtered_by_namespace_and_container() {
    let d = Daemon::start("events_filter");
    let b = d.bundle("true", &["true"]);
    let in_default = unique_id("evdef");
    let in_other = unique_id("evoth");
    d.use_namespace("other");
    let by_ns = Events::subscribe(
        &d.socket,
        EventFilter {
            namespace: Some("other".into()),
            ..Default::default()
        },
    );
    let by_id = Events::subscribe(&d.socket, filter("default", &in_default));
    let everything = Events::subscribe(&d.socket, EventFilter::default());

    d.run(&in_default, &b);
    let mut req = run_req(&in_other, &b);
    req.namespace = "other".into();
    d.create(req).unwrap();
    assert_eq!(d.wait_code("", &in_default, None), 0);
    assert_eq!(d.wait_code("other", &in_other, None), 0);
    d.delete("", &in_default, false).unwrap();
    d.delete("other", &in_other, false).unwrap();

    let is_delete_of = |id: &str| {
        let id = id.to_string();
        move |e: &Event| e.topic == Topic::TaskDelete && e.container_id == id
    };
    let ns_events = by_ns.until("other's delete", is_delete_of(&in_other));
    assert!(
        ns_events
            .iter()
            .all(|e| e.namespace == "other" && e.container_id == in_other),
        "{ns_events:#?}"
    );
    assert_eq!(ns_events.len(), 4, "{ns_events:#?}");
    let id_events = by_id.until("default's delete", is_delete_of(&in_default));
    assert!(
        id_events
            .iter()
            .all(|e| e.namespace == "default" && e.container_id == in_default),
        "{id_events:#?}"
    );
    assert_eq!(id_events.len(), 4, "{id_events:#?}");
    // The unfiltered subscriber sees both, numbered in one sequence.
    let mut deletes = 0;
    let all = everything.until("both deletes", |e| {
        deletes += usize::from(e.topic == Topic::TaskDelete);
        deletes == 2
    });
    assert_eq!(all.len(), 8, "{all:#?}");
    assert_seqs_increase(&all);
    assert!(by_ns.drain(Duration::from_millis(200)).is_empty());
    assert!(by_id.drain(Duration::from_millis(200)).is_empty());
}

/// Replaying the journal (`since`) gives exactly the events a live subscriber got, and a
/// replay that starts in the past continues live with no gap and no duplicate.
#[test]
fn journal_replay_matches_the_live_stream() {
    let d = Daemon::start("events_replay");
    let b = d.bundle("one", &["sh", "-c", "exit 1"]);
    let first = unique_id("evrep");
    let live = Events::subscribe(&d.socket, filter("default", &first));
    d.run(&first, &b);
    assert_eq!(d.wait_code("", &first, None), 1);
    d.delete("", &first, false).unwrap();
    let live_events = live.until("/tasks/delete", |e| e.topic == Topic::TaskDelete);
    assert_eq!(live_events.len(), 4, "{live_events:#?}");

    let replay = Events::subscribe(
        &d.socket,
        EventFilter {
            since: Some(Since::Seq(live_events[0].seq)),
            ..filter("default", &first)
        },
    );
    let replayed = replay.until("the replayed /tasks/delete", |e| {
        e.topic == Topic::TaskDelete
    });
    assert_eq!(replayed, live_events);

    // From the past into the present: the replay, then live events, no gap, no duplicate.
    let resumed = Events::subscribe(
        &d.socket,
        EventFilter {
            namespace: Some("default".into()),
            since: Some(Since::Seq(live_events[2].seq)),
            ..Default::default()
        },
    );
    let second = unique_id("evrep2");
    d.run(&second, &b);
    assert_eq!(d.wait_code("", &second, None), 1);
    d.delete("", &second, false).unwrap();
    let got = resumed.until("the second delete", |e| {
        e.topic == Topic::TaskDelete && e.container_id == second
    });
    assert_eq!(got[..2], live_events[2..], "{got:#?}");
    assert_eq!(got.len(), 6, "{got:#?}");
    for pair in got.windows(2) {
        assert_eq!(
            pair[0].seq + 1,
            pair[1].seq,
            "a gap or a duplicate: {got:#?}"
        );
    }
}
