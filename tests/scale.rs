//! Many containers at once: every create, wait and delete answered right, events in order;
//! two hundred running through a crash of the daemon.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{ContainerInfo, EventFilter, Status, Topic};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const CONTAINERS: usize = 50;

/// 50 clients each create (and start) a container at the same moment; every one is
/// created, every wait returns that container's own code, every delete works, and the list
/// ends empty with nothing left on disk or in the cgroups. A subscriber sees each
/// container's create < start < exit < delete, in one strictly increasing sequence.
#[test]
fn fifty_containers_at_once() {
    let d = Daemon::start("fifty_at_once");
    // Seven bundles, one per exit code, shared by the containers.
    let bundles: Vec<_> = (0..7)
        .map(|n| d.bundle(&format!("exit{n}"), &["sh", "-c", &format!("exit {n}")]))
        .collect();
    let events = Events::subscribe(
        &d.socket,
        EventFilter {
            namespace: Some("default".into()),
            ..Default::default()
        },
    );
    let ids: Vec<String> = (0..CONTAINERS)
        .map(|i| unique_id(&format!("many{i}")))
        .collect();
    let barrier = Arc::new(Barrier::new(CONTAINERS));
    let threads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (socket, id, bundle, barrier) = (
                d.socket.clone(),
                id.clone(),
                bundles[i % 7].clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || -> Result<(u32, u32), String> {
                let mut c = corral::rpc::Client::connect(&socket).map_err(|e| e.to_string())?;
                barrier.wait();
                let info = c
                    .create(run_req(&id, &bundle))
                    .map_err(|e| format!("create {id}: {e}"))?;
                let exit = c
                    .wait("", &id, None)
                    .map_err(|e| format!("wait {id}: {e}"))?;
                Ok((info.pid, exit.code))
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| {
            within(LIVENESS * 4, "a container's create and wait", move || {
                t.join().unwrap()
            })
        })
        .collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {CONTAINERS} failed: {failures:#?}",
        failures.len()
    );
    for (i, r) in results.iter().enumerate() {
        let (pid, code) = r.as_ref().unwrap();
        assert!(*pid > 0);
        assert_eq!(
            *code,
            (i % 7) as u32,
            "{} exited with the wrong code",
            ids[i]
        );
    }
    let listed = d.list_ids("default");
    assert_eq!(listed.len(), CONTAINERS, "{listed:?}");

    // Delete them all, concurrently too.
    let deleters: Vec<_> = ids
        .iter()
        .map(|id| {
            let (socket, id) = (d.socket.clone(), id.clone());
            std::thread::spawn(move || {
                corral::rpc::Client::connect(&socket)?.delete("", &id, false)
            })
        })
        .collect();
    for (t, id) in deleters.into_iter().zip(&ids) {
        let r = within(LIVENESS * 2, "a delete", move || t.join().unwrap());
        assert!(r.is_ok(), "delete {id}: {r:?}");
    }
    assert!(d.client().list("", BTreeMap::new()).unwrap().is_empty());
    for id in &ids {
        d.assert_no_leftovers("default", id);
    }

    let mut deletes = 0;
    let seen = events.until("every /tasks/delete", |e| {
        deletes += usize::from(e.topic == Topic::TaskDelete);
        deletes == CONTAINERS
    });
    assert_eq!(seen.len(), 4 * CONTAINERS, "unexpected events");
    for pair in seen.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seq {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    let mut per_container: BTreeMap<&str, Vec<Topic>> = BTreeMap::new();
    for e in &seen {
        per_container
            .entry(&e.container_id)
            .or_default()
            .push(e.topic);
    }
    assert_eq!(per_container.len(), CONTAINERS);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            per_container.get(id.as_str()),
            Some(&vec![
                Topic::TaskCreate,
                Topic::TaskStart,
                Topic::TaskExit,
                Topic::TaskDelete
            ]),
            "events of {id}"
        );
        let exit = seen
            .iter()
            .find(|e| e.container_id == *id && e.topic == Topic::TaskExit)
            .unwrap();
        assert_eq!(exit.exit.map(|e| e.code), Some((i % 7) as u32));
    }
}

const RUNNING: usize = 200;
const EXITS: usize = 100;

/// Runs `work` on every id, four at a time, each worker with its own connection.
fn four_at_a_time(
    d: &Daemon,
    ids: &[String],
    work: impl Fn(&mut corral::rpc::Client, &str) + Sync,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut c = d.client();
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::SeqCst)) {
                    work(&mut c, id);
                }
            });
        }
    });
}

fn all_running(list: &[ContainerInfo], n: usize) -> bool {
    list.len() == n
        && list
            .iter()
            .all(|c| c.status == Status::Running && !c.busy && c.pid > 0)
}

/// 200 running containers: all listed running; after `kill -9` of corrald a new daemon
/// adopts them all (listed running, at most 3 descriptors each, as before the crash); 100
/// of them killed at the same moment are each reported once, with 137; deleting all leaves
/// nothing. Behaviour only: the timings are the benchmark's (`scripts/bench.sh scale`).
#[test]
fn two_hundred_containers_through_a_daemon_crash() {
    let mut d = Daemon::start("two_hundred");
    let sleep = d.bundle("sleep", &["sleep", "100000"]);
    let baseline = fd_count(d.pid());
    let ids: Vec<String> = (0..RUNNING).map(|i| unique_id(&format!("s{i}"))).collect();
    four_at_a_time(&d, &ids, |c, id| {
        c.create(run_req(id, &sleep))
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
    });
    let list = d.client().list("", BTreeMap::new()).unwrap();
    assert!(all_running(&list, RUNNING), "not all running: {list:#?}");
    // Client connections the daemon has yet to close count as slack.
    std::thread::sleep(Duration::from_millis(300));
    let per = |fds: usize| fds.saturating_sub(baseline) as f64 / RUNNING as f64;
    let before = per(fd_count(d.pid()));
    eprintln!("daemon fds per container: {before:.2}");
    assert!(before <= 3.05, "{before:.2} fds per container");

    d.kill9();
    d.restart();
    let mut c = d.client();
    wait_until(LIVENESS, "all 200 listed running after the restart", || {
        all_running(&c.list("", BTreeMap::new()).unwrap(), RUNNING)
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = per(fd_count(d.pid()));
    eprintln!("daemon fds per container after the restart: {after:.2}");
    assert!(
        after <= 3.05,
        "{after:.2} fds per container after the restart"
    );

    // 100 simultaneous exits of adopted containers.
    let events = Events::subscribe(
        &d.socket,
        EventFilter {
            namespace: Some("default".into()),
            ..Default::default()
        },
    );
    let pids: BTreeMap<String, u32> = c
        .list("", BTreeMap::new())
        .unwrap()
        .into_iter()
        .map(|i| (i.id, i.pid))
        .collect();
    let victims: HashSet<&str> = ids.iter().take(EXITS).map(String::as_str).collect();
    for id in &victims {
        let pid = pids[*id] as i32;
        assert!(pid > 0, "{id} has no pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let mut exited = HashSet::new();
    let mut seen = events.until("100 /tasks/exit", |e| {
        if e.topic == Topic::TaskExit {
            exited.insert(e.container_id.clone());
        }
        exited.len() == EXITS
    });
    seen.extend(events.drain(Duration::from_secs(1)));
    let mut codes: BTreeMap<&str, Vec<Option<u32>>> = BTreeMap::new();
    for e in seen.iter().filter(|e| e.topic == Topic::TaskExit) {
        codes
            .entry(e.container_id.as_str())
            .or_default()
            .push(e.exit.map(|x| x.code));
    }
    assert_eq!(codes.len(), EXITS, "exits of others: {codes:?}");
    for (id, c) in &codes {
        assert!(victims.contains(id), "{id} exited but was not killed");
        assert_eq!(c.as_slice(), [Some(137)], "{id}'s exits");
    }
    let list = c.list("", BTreeMap::new()).unwrap();
    for info in &list {
        let want = if victims.contains(info.id.as_str()) {
            Status::Stopped
        } else {
            Status::Running
        };
        assert_eq!(info.status, want, "{}", info.id);
    }

    four_at_a_time(&d, &ids, |c, id| {
        c.delete("", id, true)
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    });
    assert!(c.list("", BTreeMap::new()).unwrap().is_empty());
    for id in &ids {
        d.assert_no_leftovers("default", id);
    }
}

/// A restarted daemon tells a created and a paused container from the runtime's and the
/// freezer's files (no runtime call): each comes back in its state, and works from it.
#[test]
fn created_and_paused_containers_are_adopted_as_such() {
    let mut d = Daemon::start("adopt_created_paused");
    let sleep = d.bundle("sleep", &["sleep", "100000"]);
    let (created, paused, running) = (
        unique_id("created"),
        unique_id("paused"),
        unique_id("running"),
    );
    let mut req = run_req(&created, &sleep);
    req.start = false;
    d.create(req).unwrap();
    d.run(&paused, &sleep);
    d.run(&running, &sleep);
    assert_eq!(
        d.client().pause("", &paused).unwrap().status,
        Status::Paused
    );

    d.kill9();
    d.restart();
    let status = |id: &str| d.client().state("", id).unwrap().status;
    assert_eq!(status(&created), Status::Created);
    assert_eq!(status(&paused), Status::Paused);
    assert_eq!(status(&running), Status::Running);

    assert_eq!(
        d.client().resume("", &paused).unwrap().status,
        Status::Running
    );
    assert_eq!(
        d.client().start("", &created).unwrap().status,
        Status::Running
    );
    for id in [&created, &paused, &running] {
        d.delete("", id, true).unwrap();
        d.assert_no_leftovers("default", id);
    }
}
