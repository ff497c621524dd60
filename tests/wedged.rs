//! One wedged container never holds up another, nor a list: a restart whose runtime call
//! hangs leaves `list`, the container's own state and namespace-wide `stats` answering at
//! once (the restart no longer holds the container's mailbox; a container that did not
//! answer in time would be listed from its last known state, marked busy).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{RestartPolicy, Status};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn a_wedged_restart_leaves_list_and_stats_answering() {
    let d = Daemon::start("wedged");
    // A runtime that is runc, except that `delete` waits while the gate file exists.
    let gate = d.path("gate");
    let wrapper = d.path("wedging-runtime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = delete ]; then\n    while [ -e {gate} ]; do sleep 0.05; done\n  fi\ndone\nexec {runc} \"$@\"\n",
            gate = gate.display(),
            runc = runc().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let b = d.bundle("waiter", &["sleep", "1000"]);
    let stuck = unique_id("stuck");
    let fine = unique_id("fine");
    let mut req = run_req(&stuck, &b);
    req.restart = RestartPolicy::Always;
    req.runtime = Some(wrapper.clone());
    let info = d.create(req).unwrap();
    d.run(&fine, &b);
    // Kill its process: the restart's `runtime delete --force` now hangs at the gate.
    touch(&gate);
    let events = Events::subscribe(&d.socket, Default::default());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    events.until("the exit", |e| {
        e.topic == corral::Topic::TaskExit && e.container_id == stuck
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut client = d.client();
    let asked = Instant::now();
    let listed = client.list("", BTreeMap::new()).unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "list took {took:?}");
    let of = |id: &str| listed.iter().find(|c| c.id == id).cloned().unwrap();
    let stuck_now = of(&stuck);
    assert!(
        !stuck_now.busy && stuck_now.status == Status::Stopped,
        "a restart in flight: {stuck_now:?}"
    );
    let asked = Instant::now();
    assert_eq!(client.state("", &stuck).unwrap().status, Status::Stopped);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "state took {:?}",
        asked.elapsed()
    );
    assert!(!of(&fine).busy);
    assert_eq!(of(&fine).status, Status::Running);
    let asked = Instant::now();
    let stats = client.stats("", Vec::new()).unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stats took {:?}",
        asked.elapsed()
    );
    assert!(stats.iter().any(|(id, _)| *id == fine), "{stats:?}");
    // Open the gate: the restart finishes and the container runs again.
    std::fs::remove_file(&gate).unwrap();
    events.until("the restart", |e| {
        e.topic == corral::Topic::TaskStart && e.container_id == stuck
    });
    let listed = client.list("", BTreeMap::new()).unwrap();
    let again = listed.iter().find(|c| c.id == stuck).unwrap();
    assert!(!again.busy && again.status == Status::Running, "{again:?}");
    for id in [&stuck, &fine] {
        d.delete("", id, true).unwrap();
        d.assert_no_leftovers("default", id);
    }
}
