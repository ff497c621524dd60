//! Nothing is lost: exits that happen while no daemon runs, shims that die, a journal with
//! a torn tail, and a subscriber too slow to keep up all end with every event told once.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Error, Event, EventFilter, Since, Status, Topic};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn default_ns() -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        ..Default::default()
    }
}

/// Every sequence number at most once, increasing; every (container, process, pid) exit
/// at most once.
fn assert_each_event_once(events: &[Event]) {
    let mut seqs = BTreeSet::new();
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "replay out of order: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    let mut exits = BTreeSet::new();
    for e in events {
        assert!(seqs.insert(e.seq), "event {} twice: {e:?}", e.seq);
        if e.topic == Topic::TaskExit {
            let key = (e.container_id.clone(), e.process_id.clone(), e.pid);
            assert!(
                exits.insert(key),
                "exit told twice: {e:?}\nall: {events:#?}"
            );
        }
    }
}

/// How a daemon goes away in [`nothing_is_lost`].
#[derive(Clone, Copy, Debug)]
enum Down {
    Kill9,
    Sigterm,
}

/// 20 running containers; the daemon goes down; while it is down 10 of them exit with
/// their own codes, two shims are killed (one container left running as an orphan, the
/// other killed too); the next daemon accounts for all 20.
fn nothing_is_lost(name: &str, down: Down) {
    let mut d = Daemon::start(name);
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    // Ten containers that exit with code 10 + n once /go appears in their rootfs.
    let mut gated: Vec<(String, PathBuf, u32)> = Vec::new();
    for n in 0..10u32 {
        let code = 10 + n;
        let script = format!("while [ ! -e /go ]; do sleep 0.1; done; exit {code}");
        let b = d.bundle(&format!("gate{n}"), &["sh", "-c", &script]);
        gated.push((unique_id("gate"), b, code));
    }
    let mut pids: BTreeMap<String, u32> = BTreeMap::new();
    for (id, b, _) in &gated {
        pids.insert(id.clone(), d.run(id, b).pid);
    }
    let running: Vec<String> = (0..8).map(|_| unique_id("stay")).collect();
    let orphaned = unique_id("orphan"); // shim killed, process left running: 137
    let vanished = unique_id("vanish"); // shim killed, process killed too: 255
    for id in running.iter().chain([&orphaned, &vanished]) {
        pids.insert(id.clone(), d.run(id, &sleeper).pid);
    }
    let shims = [
        d.shim_pid("default", &orphaned, "init"),
        d.shim_pid("default", &vanished, "init"),
    ];
    assert_eq!(d.info().running, 20);

    match down {
        Down::Kill9 => d.kill9(),
        Down::Sigterm => {
            let status = d.stop();
            assert!(status.success(), "corrald exited with {status} on SIGTERM");
        }
    }
    // While no daemon runs.
    for (id, b, _) in &gated {
        touch(&b.join("rootfs/go"));
        let pid = pids[id];
        wait_until(LIVENESS, &format!("{id} (pid {pid}) to exit"), || {
            !alive(pid as i32)
        });
    }
    for shim in shims {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_until(LIVENESS, &format!("shim {shim} to die"), || !alive(shim));
    }
    assert!(
        alive(pids[&orphaned] as i32),
        "killing the shim killed its container (pid {})",
        pids[&orphaned]
    );
    let victim = pids[&vanished] as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(LIVENESS, "the vanished container's process to die", || {
        !alive(victim)
    });

    d.restart();
    let mut listed = d.list_ids("default");
    listed.sort();
    let mut all: Vec<String> = pids.keys().cloned().collect();
    all.sort();
    assert_eq!(listed, all, "the restarted daemon does not list all 20");
    for (id, _, code) in &gated {
        assert_eq!(d.wait_code("", id, None), *code, "{id}");
        assert_eq!(d.client().state("", id).unwrap().status, Status::Stopped);
    }
    assert_eq!(
        d.wait_code("", &orphaned, None),
        137,
        "a process whose shim died while it ran is killed and reported 137"
    );
    wait_until(LIVENESS, "the orphaned process to be killed", || {
        !alive(pids[&orphaned] as i32)
    });
    assert_eq!(
        d.wait_code("", &vanished, None),
        255,
        "a process gone with its shim has an unknown exit: 255"
    );
    for id in &running {
        let s = d.client().state("", id).unwrap();
        assert_eq!((s.status, s.pid), (Status::Running, pids[id]), "{id}");
        assert!(alive(pids[id] as i32), "{id} died");
    }

    // The journal, replayed from 0: every event once, each container's in order.
    let events = d.replay(default_ns());
    assert_each_event_once(&events);
    for (id, pid) in &pids {
        let mine: Vec<&Event> = events.iter().filter(|e| e.container_id == *id).collect();
        let topics: Vec<Topic> = mine.iter().map(|e| e.topic).collect();
        let exited = !running.contains(id);
        let mut want = vec![Topic::TaskCreate, Topic::TaskStart];
        if exited {
            want.push(Topic::TaskExit);
        }
        assert_eq!(topics, want, "{id}: {mine:#?}");
        assert!(mine.iter().all(|e| e.pid == Some(*pid)), "{id}: {mine:#?}");
        if exited {
            let code = gated
                .iter()
                .find(|g| g.0 == *id)
                .map(|g| g.2)
                .unwrap_or(if *id == orphaned { 137 } else { 255 });
            assert_eq!(mine[2].exit.map(|e| e.code), Some(code), "{id}");
        }
    }
    // Seq numbering went on from where the first daemon stopped: no gap either.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // Everything is still usable and is cleaned up.
    for id in &all {
        d.delete("", id, true).unwrap();
        d.assert_no_leftovers("default", id);
    }
}

/// kill -9 of the daemon with 20 containers: all 20 accounted for afterwards.
#[test]
fn nothing_is_lost_across_a_kill_9() {
    nothing_is_lost("lost_kill9", Down::Kill9);
}

/// The same across a SIGTERM stop.
#[test]
fn nothing_is_lost_across_a_sigterm_restart() {
    nothing_is_lost("lost_sigterm", Down::Sigterm);
}

/// Exits racing a kill -9: containers exit around the moment the daemon dies (some told
/// by it, some in flight, some after): the next daemon tells each exit exactly once, with
/// its code, and never one that was already in the journal.
#[test]
fn exits_racing_a_kill_9_are_told_exactly_once() {
    let mut d = Daemon::start("lost_race");
    let mut everyone: Vec<(String, u32)> = Vec::new();
    for round in 0..3u64 {
        let mut these = Vec::new();
        for n in 0..8u32 {
            let code = 20 + n;
            let script = format!("while [ ! -e /go ]; do sleep 0.02; done; exit {code}");
            let b = d.bundle(&format!("r{round}g{n}"), &["sh", "-c", &script]);
            let id = unique_id("race");
            let pid = d.run(&id, &b).pid;
            these.push((id, b, code, pid));
        }
        for (_, b, _, _) in &these {
            touch(&b.join("rootfs/go"));
        }
        std::thread::sleep(std::time::Duration::from_millis(15 * round));
        d.kill9();
        for (id, _, _, pid) in &these {
            wait_until(LIVENESS, &format!("{id} to exit"), || !alive(*pid as i32));
        }
        d.restart();
        for (id, _, code, _) in &these {
            assert_eq!(d.wait_code("", id, None), *code, "round {round}: {id}");
        }
        everyone.extend(these.into_iter().map(|(id, _, code, _)| (id, code)));
    }
    let events = d.replay(default_ns());
    assert_each_event_once(&events);
    for (id, code) in &everyone {
        let exits: Vec<u32> = events
            .iter()
            .filter(|e| e.container_id == *id && e.topic == Topic::TaskExit)
            .filter_map(|e| e.exit.map(|x| x.code))
            .collect();
        assert_eq!(exits, vec![*code], "{id}");
    }
    for (id, _) in &everyone {
        d.delete("", id, false).unwrap();
    }
}

/// A shim that records its process's exit (`exitStatus`) late, after the daemon has
/// already been told through the exit fifo, must not write that record into the next
/// container of the same id: after a daemon restart that container, still running, must
/// not be reported stopped with the previous one's exit code.
///
/// The late write is forced with strace (each `openat` of the old shim delayed 1.5 s); on
/// a busy host a disk fsync does the same by itself (seen as a state dir left behind by a
/// delete, holding `init/exitStatus`).
#[test]
fn a_late_exit_record_does_not_stop_the_next_container_of_that_id() {
    let mut d = Daemon::start("late_record_recreate");
    let gate = d.bundle(
        "gate",
        &[
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.05; done; exit 3",
        ],
    );
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("late");
    d.run(&id, &gate);
    let slow = SlowSyscalls::attach(
        d.shim_pid("default", &id, "init"),
        "openat",
        std::time::Duration::from_millis(1500),
        false,
        &[],
    );
    touch(&gate.join("rootfs/go"));
    assert_eq!(d.wait_code("", &id, None), 3);
    d.delete("", &id, false).unwrap();
    let next = d.run(&id, &sleeper);
    slow.finish();
    assert!(d.stop().success());
    d.restart();
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.pid, s.exit.map(|e| e.code)),
        (Status::Running, next.pid, None),
        "the new {id} (pid {}, alive: {}) took the old one's exit record",
        next.pid,
        alive(next.pid as i32)
    );
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// The same with a restart policy: the run that the policy started must not take the
/// late exit record of the run before it.
#[test]
fn a_late_exit_record_does_not_stop_the_next_run_of_a_restarted_container() {
    let mut d = Daemon::start("late_record_restart");
    let gate = d.bundle(
        "gate",
        &[
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.05; done; rm /go; exit 3",
        ],
    );
    let id = unique_id("laterun");
    let mut req = run_req(&id, &gate);
    req.restart = corral::RestartPolicy::OnFailure { max: Some(1) };
    d.create(req).unwrap();
    let slow = SlowSyscalls::attach(
        d.shim_pid("default", &id, "init"),
        "openat",
        std::time::Duration::from_millis(1500),
        false,
        &[],
    );
    touch(&gate.join("rootfs/go"));
    wait_until(LIVENESS, "the policy to restart it", || {
        let s = d.client().state("", &id).unwrap();
        s.restarts == 1 && s.status == Status::Running
    });
    let run1 = d.client().state("", &id).unwrap().pid;
    slow.finish();
    assert!(d.stop().success());
    d.restart();
    let s = d.client().state("", &id).unwrap();
    assert_eq!(
        (s.status, s.pid, s.exit.map(|e| e.code)),
        (Status::Running, run1, None),
        "run 1 of {id} (pid {run1}, alive: {}) took run 0's exit record",
        alive(run1 as i32)
    );
    d.delete("", &id, true).unwrap();
    d.assert_no_leftovers("default", &id);
}

/// A torn last line in the newest journal segment (a crash mid-write): the next daemon
/// starts, warns, numbers on from the last good event, replays every good event once, and
/// never appends to the damaged segment.
#[test]
fn a_corrupt_journal_tail_is_skipped() {
    let mut d = Daemon::start("journal_corrupt");
    let b = d.bundle("two", &["sh", "-c", "exit 2"]);
    for _ in 0..2 {
        let id = unique_id("before");
        d.run(&id, &b);
        assert_eq!(d.wait_code("", &id, None), 2);
        d.delete("", &id, false).unwrap();
    }
    let last_good = d.info().last_seq;
    assert_eq!(last_good, 8, "two runs publish 8 events");
    d.stop();

    let segments = corral::journal::segments(&d.journal_dir());
    assert_eq!(segments.len(), 1, "{segments:?}");
    let damaged = segments[0].clone();
    let garbage = br#"{"seq":9,"timestamp_ns":17000,"namespace":"default","topic":"/tasks/ex"#;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&damaged)
            .unwrap();
        f.write_all(garbage).unwrap();
    }
    let damaged_bytes = std::fs::read(&damaged).unwrap();

    d.restart();
    d.assert_alive();
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("corrupt")),
        "no warning about the corrupt journal line in the log:\n{}",
        d.log_tail(30)
    );
    assert_eq!(d.info().last_seq, last_good);

    let id = unique_id("after");
    d.run(&id, &b);
    assert_eq!(d.wait_code("", &id, None), 2);
    d.delete("", &id, false).unwrap();
    let after: Vec<u64> = d
        .replay(EventFilter {
            container_id: Some(id.clone()),
            ..Default::default()
        })
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        after,
        vec![9, 10, 11, 12],
        "numbering goes on after the last good event"
    );

    let all = d.replay(EventFilter::default());
    assert_each_event_once(&all);
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());

    // The new events went to a new segment; the damaged one is as it was.
    let now = corral::journal::segments(&d.journal_dir());
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], damaged);
    assert!(
        now[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&format!("{:020}", last_good + 1)),
        "{now:?}"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), damaged_bytes);

    // And again after another restart: the old damage is still skipped, numbering goes on.
    d.stop();
    d.restart();
    assert_eq!(d.info().last_seq, 12);
    let id2 = unique_id("again");
    d.run(&id2, &b);
    assert_eq!(d.wait_code("", &id2, None), 2);
    d.delete("", &id2, false).unwrap();
    let seqs: Vec<u64> = d
        .replay(EventFilter::default())
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<u64>>());
}

/// A subscriber that does not read while more than SUBSCRIBER_BUFFER (4096) events are
/// published is cut off: it gets what was buffered, then `Err(Lagged { first_missed })`,
/// the daemon counts it, and a new subscription from `first_missed` gets the rest with no
/// gap. Events come from pause/resume cycles (one cheap runtime call per event) on a few
/// containers at once.
#[test]
fn a_slow_subscriber_is_told_it_lagged() {
    // The subscriber reads nothing on purpose. On a loaded machine publishing the events can
    // take longer than the daemon's 60 s stall limit for a connection whose replies are not
    // read, which would close it before it lags: that limit is not this test's subject.
    let d = Daemon::start_with_env(
        "journal_lagged",
        &[],
        &[("CORRAL_RPC_IDLE_TIMEOUT_MS", "900000")],
    );
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let ids: Vec<String> = (0..4).map(|_| unique_id("lag")).collect();
    for id in &ids {
        d.run(id, &b);
    }
    let filter = default_ns();
    let before = d.info();
    assert_eq!(before.lagged_subscribers, 0);
    let mut slow = d.client().subscribe(filter.clone()).expect("subscribe");
    wait_until(LIVENESS, "the subscription to be registered", || {
        d.info().subscribers > before.subscribers
    });
    let first_seq = d.info().last_seq + 1;

    // Publish until the daemon cuts the subscriber off (4096 buffered, plus what the
    // connection and the socket hold): at most 20 000 events, in rounds.
    let mut published = 0;
    while d.info().lagged_subscribers == 0 {
        assert!(
            published < 20_000,
            "{published} events published and the subscriber that reads nothing is not cut off"
        );
        let workers: Vec<_> = ids
            .iter()
            .map(|id| {
                let (socket, id) = (d.socket.clone(), id.clone());
                std::thread::spawn(move || {
                    let mut c = corral::rpc::Client::connect(&socket).unwrap();
                    for _ in 0..50 {
                        c.pause("", &id).unwrap();
                        c.resume("", &id).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a pause/resume worker failed");
        }
        published += ids.len() * 100;
    }
    let info = d.info();
    assert_eq!(info.lagged_subscribers, 1, "{info:?}");
    let last = info.last_seq;

    // Now read: the buffered events in order, then the one Lagged error.
    slow.set_timeout(Some(LIVENESS)).unwrap();
    let mut got: Vec<u64> = Vec::new();
    let first_missed = loop {
        match slow.next() {
            Some(Ok(e)) => got.push(e.seq),
            Some(Err(Error::Lagged { first_missed })) => break first_missed,
            Some(Err(e)) => panic!("expected Lagged after {} events, got {e}", got.len()),
            None => panic!("the stream ended without Lagged after {} events", got.len()),
        }
    };
    assert!(
        got.len() >= corral::SUBSCRIBER_BUFFER,
        "only {} events before the cut",
        got.len()
    );
    assert_eq!(got[0], first_seq);
    assert_eq!(
        got,
        (first_seq..first_missed).collect::<Vec<u64>>(),
        "the events before the cut are not exactly those before first_missed"
    );
    assert!(
        first_missed <= last,
        "first_missed {first_missed} > last {last}"
    );

    // Resuming from first_missed gets everything from there on.
    let mut resumed = d
        .client()
        .subscribe(EventFilter {
            since: Some(Since::Seq(first_missed)),
            ..filter
        })
        .unwrap();
    resumed.set_timeout(Some(LIVENESS)).unwrap();
    let mut rest = Vec::new();
    while rest.last().is_none_or(|s| *s < last) {
        match resumed.next() {
            Some(Ok(e)) => rest.push(e.seq),
            other => panic!(
                "resumed subscription: {other:?} after {} events",
                rest.len()
            ),
        }
    }
    assert_eq!(rest, (first_missed..=last).collect::<Vec<u64>>());
    assert_eq!(d.info().lagged_subscribers, 1);
    for id in &ids {
        d.delete("", id, true).unwrap();
    }
    // The resumed subscriber keeps up: it sees the deletes live.
    let mut deletes = 0;
    while deletes < ids.len() {
        match resumed.next() {
            Some(Ok(e)) => deletes += usize::from(e.topic == Topic::TaskDelete),
            other => panic!("after the deletes: {other:?}"),
        }
    }
}

/// A `since` older than the journal keeps (rotated away) is told, with the first kept
/// sequence number, before the replay; the replay then runs from there with no gap. The
/// library's subscription sees `Err(Truncated)`, and `corralctl events` says so on stderr.
#[test]
fn a_since_older_than_the_kept_journal_is_told() {
    let d = Daemon::start_with_env(
        "journal_truncated",
        &[],
        &[(corral::journal::SEGMENT_EVENTS_ENV, "5")],
    );
    let b = d.bundle("true", &["true"]);
    // 7 runs of 4 events: 28 events in segments of 5, 4 kept: the oldest ones are gone.
    for n in 0..7 {
        let id = unique_id(&format!("trunc{n}"));
        d.run(&id, &b);
        assert_eq!(d.wait_code("", &id, None), 0);
        d.delete("", &id, false).unwrap();
    }
    let last = d.info().last_seq;
    let segments = corral::journal::segments(&d.journal_dir());
    assert_eq!(
        segments.len(),
        corral::journal::KEEP_SEGMENTS,
        "{segments:?}"
    );
    let first_kept: u64 = segments[0]
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.strip_prefix("events-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()
        })
        .unwrap();
    assert!(
        first_kept > 1 && first_kept <= last,
        "{first_kept} of {last}"
    );

    // The library: the notice once, then the kept events from first_kept on.
    let mut sub = d
        .client()
        .subscribe(EventFilter {
            since: Some(Since::Seq(0)),
            ..Default::default()
        })
        .unwrap();
    sub.set_timeout(Some(LIVENESS)).unwrap();
    match sub.next() {
        Some(Err(Error::Truncated {
            first_kept: f,
            asked,
        })) => {
            assert_eq!((f, asked), (first_kept, Since::Seq(0)));
        }
        other => panic!("expected Truncated first, got {other:?}"),
    }
    let seqs: Vec<u64> = sub
        .by_ref()
        .map(|item| item.unwrap().seq)
        .take_while(|&s| s < last)
        .collect();
    assert_eq!(seqs, (first_kept..last).collect::<Vec<_>>());

    // Asking from the first kept one, or later, is not told anything.
    let mut sub = d
        .client()
        .subscribe(EventFilter {
            since: Some(Since::Seq(first_kept)),
            ..Default::default()
        })
        .unwrap();
    sub.set_timeout(Some(LIVENESS)).unwrap();
    assert_eq!(sub.next().unwrap().unwrap().seq, first_kept);

    // A time before the oldest kept event is told too.
    let mut sub = d
        .client()
        .subscribe(EventFilter {
            since: Some(Since::Time(1)),
            ..Default::default()
        })
        .unwrap();
    sub.set_timeout(Some(LIVENESS)).unwrap();
    assert!(
        matches!(sub.next(), Some(Err(Error::Truncated { first_kept: f, .. })) if f == first_kept)
    );
    assert_eq!(sub.next().unwrap().unwrap().seq, first_kept);

    // The CLI: the notice on stderr, then every kept event, in order, once.
    let out = d.ctl(&[
        "events",
        "--json",
        "--since",
        "0",
        "--until",
        &last.to_string(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "events before {first_kept} are no longer kept; replaying from {first_kept}"
        )),
        "{}",
        stderr(&out)
    );
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, (first_kept..=last).collect::<Vec<_>>());
}
