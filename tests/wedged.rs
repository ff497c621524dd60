//! One wedged container never holds up another, nor a list: a restart whose runtime call
//! hangs leaves `list`, the container's own state, namespace-wide `stats` and `/metrics`
//! answering at once (the restart does not hold the container's mailbox, and lists are
//! answered from the summaries the containers push). A kill or a delete of the stuck
//! container is refused with `wrong state` after `RESTART_WAIT` (2 s) and changes nothing;
//! once the restart is over they work as usual.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Error, KillRequest, RestartPolicy, Status};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What answers "at once" on a loaded machine.
const AT_ONCE: Duration = Duration::from_secs(1);

#[test]
fn a_wedged_restart_leaves_list_stats_and_metrics_answering() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with("wedged", &["--metrics-address", &metrics]);
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
    let mut client = d.client();
    // The restart starts 100 ms after the exit; a list shows it in flight at once, and
    // busy once it has been in flight for over a second.
    let of = |listed: &[corral::ContainerInfo], id: &str| {
        listed.iter().find(|c| c.id == id).cloned().unwrap()
    };
    wait_until(LIVENESS, "the restart to be listed busy", || {
        let asked = Instant::now();
        let listed = client.list("", BTreeMap::new()).unwrap();
        let took = asked.elapsed();
        assert!(took < AT_ONCE, "list took {took:?}");
        let now = of(&listed, &stuck);
        assert_eq!(now.status, Status::Stopped, "{now:?}");
        now.busy
    });
    let listed = client.list("", BTreeMap::new()).unwrap();
    let stuck_now = of(&listed, &stuck);
    assert_eq!(stuck_now.operation, "restarting", "{stuck_now:?}");
    assert!(!of(&listed, &fine).busy);
    assert_eq!(of(&listed, &fine).status, Status::Running);

    let asked = Instant::now();
    assert_eq!(client.state("", &stuck).unwrap().status, Status::Stopped);
    assert!(
        asked.elapsed() < AT_ONCE,
        "state took {:?}",
        asked.elapsed()
    );
    let asked = Instant::now();
    let stats = client.stats("", Vec::new()).unwrap();
    assert!(
        asked.elapsed() < AT_ONCE,
        "stats took {:?}",
        asked.elapsed()
    );
    assert!(stats.iter().any(|(id, _)| *id == fine), "{stats:?}");
    let asked = Instant::now();
    let (status, body) = http_get(&metrics, "/metrics");
    assert!(
        asked.elapsed() < AT_ONCE,
        "/metrics took {:?}",
        asked.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    let line = |name: &str, labels: &[String]| {
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {body}"))
            .to_string()
    };
    let restarting = line(
        "corral_container_operation",
        &[format!("id=\"{stuck}\""), "operation=\"restarting\"".into()],
    );
    assert!(restarting.ends_with(" 1"), "{restarting}");
    let running = line("corral_containers", &["state=\"running\"".into()]);
    assert!(running.ends_with(" 1"), "{running}");

    // Kill and delete are refused after RESTART_WAIT, and change nothing.
    let asked = Instant::now();
    let killed = client.kill(KillRequest {
        namespace: String::new(),
        id: stuck.clone(),
        exec_id: None,
        signal: libc::SIGKILL,
        all: false,
    });
    let took = asked.elapsed();
    assert!(matches!(killed, Err(Error::WrongState(_))), "{killed:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "kill took {took:?}"
    );
    let asked = Instant::now();
    let deleted = client.delete("", &stuck, true);
    let took = asked.elapsed();
    assert!(
        matches!(&deleted, Err(Error::WrongState(m)) if m.contains("restarting")),
        "{deleted:?}"
    );
    assert!(took < Duration::from_secs(5), "delete took {took:?}");
    assert_eq!(client.state("", &stuck).unwrap().operation, "restarting");

    // Open the gate: the restart finishes and the container runs again.
    std::fs::remove_file(&gate).unwrap();
    events.until("the restart", |e| {
        e.topic == corral::Topic::TaskStart && e.container_id == stuck
    });
    let listed = client.list("", BTreeMap::new()).unwrap();
    let again = of(&listed, &stuck);
    assert!(
        !again.busy && again.status == Status::Running && again.operation.is_empty(),
        "{again:?}"
    );
    for id in [&stuck, &fine] {
        d.delete("", id, true).unwrap();
        d.assert_no_leftovers("default", id);
    }
    assert!(client.list("", BTreeMap::new()).unwrap().is_empty());
}
