//! Many containers at once: every create, wait and delete answered right, events in order.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{EventFilter, Topic};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

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
