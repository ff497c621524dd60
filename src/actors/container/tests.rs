//! The Container actor under `actix::System` with the scripted fake runtime: no root, no
//! runc. Each launched "container process" is a real `sleep` child, so signals, exits and
//! the exit fifo path are real; only the runtime's answers are scripted.

use super::*;
use crate::actors::events::Subscribe;
use crate::checkpoint::{CheckpointOptions, CheckpointStore};
use crate::runtime::fake::{FakeRuntime, Scripted};
use crate::Error;
use std::path::Path;
use std::time::Duration;

struct Harness {
    root: PathBuf,
    fake: FakeRuntime,
    events: Addr<Events>,
    stream: crate::actors::EventStream,
}

impl Harness {
    async fn new(name: &str) -> Harness {
        let root = std::env::temp_dir().join(format!(
            "corral-unit-{name}-{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir_all(root.join("runtime")).unwrap();
        // A stand-in CRIU for the version check (the dump itself is the fake runtime's).
        let criu = root.join("criu");
        std::fs::write(&criu, "#!/bin/sh\necho 'Version: 4.1.1'\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&criu).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&criu, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let events = Events::new(None, 0).start();
        let stream = events
            .send(Subscribe(EventFilter::default()))
            .await
            .unwrap();
        Harness {
            fake: FakeRuntime::new(&root.join("runtime")),
            root,
            events,
            stream,
        }
    }

    fn container(&self, id: &str, restart: RestartPolicy) -> Addr<Container> {
        let dir = crate::layout::StateDir::new(self.root.join("state")).container("ns", id);
        let record = ContainerRecord {
            restart,
            ..ContainerRecord::new("ns", id, self.root.join("bundle"), "fake-runtime".into())
        };
        let env = ContainerEnv {
            runtime: Arc::new(self.fake.clone()),
            shared: Arc::new(SharedEnv {
                shim_timeout: Duration::from_secs(5),
                events: self.events.clone(),
                criu: self.root.join("criu"),
                logs: Arc::new(crate::config::LogSettings {
                    dir: self.root.join("logs"),
                    max_size: 1 << 20,
                    max_files: 2,
                }),
                supervisor: None,
                oom_set: None,
            }),
        };
        Container::new(record, dir, env).start()
    }

    /// The next event's topic and process id.
    async fn next(&mut self) -> (Topic, String) {
        let e = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream is open")
            .expect("no lag");
        (e.topic, e.process_id.unwrap_or_default())
    }

    async fn topics(&mut self, n: usize) -> Vec<Topic> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await.0);
        }
        out
    }

    /// No event within `quiet`.
    async fn silent(&mut self, quiet: Duration) {
        if let Ok(e) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("unexpected event {e:?}");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.fake.kill_everything();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn run(start: bool) -> Init {
    Init {
        start,
        restore: None,
        runtime_spec: None,
    }
}

fn sigkill(pid: u32) {
    // The fake runtime's own `sleep` child.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn wrong_state(result: Result<impl std::fmt::Debug>, want: &str) {
    match result {
        Err(Error::WrongState(m)) => assert!(m.contains(want), "{m:?} lacks {want:?}"),
        other => panic!("expected WrongState({want}), got {other:?}"),
    }
}

fn actix_test(f: impl std::future::Future<Output = ()> + 'static) {
    actix::System::new().block_on(f);
}

#[test]
fn a_run_goes_create_start_exit_delete_in_order_and_wait_sees_the_code() {
    actix_test(async {
        let mut h = Harness::new("order").await;
        let c = h.container("web", RestartPolicy::No);
        let info = c.send(run(true)).await.unwrap().unwrap();
        assert_eq!(info.status, Status::Running);
        assert_eq!(h.topics(2).await, [Topic::TaskCreate, Topic::TaskStart]);
        let kill = Kill {
            exec_id: None,
            signal: libc::SIGKILL,
            all: false,
        };
        c.send(kill).await.unwrap().unwrap();
        assert_eq!(h.next().await, (Topic::TaskExit, INIT_PROCESS.into()));
        let exit = c.send(Wait { exec_id: None }).await.unwrap().unwrap();
        assert_eq!(exit.code, 137);
        let info = c.send(GetInfo).await.unwrap();
        assert_eq!(info.status, Status::Stopped);
        c.send(Delete { force: false }).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskDelete);
        assert!(!c.connected() || c.send(GetInfo).await.is_err());
    });
}

#[test]
fn an_exit_during_a_start_comes_after_the_start_event() {
    actix_test(async {
        let mut h = Harness::new("start").await;
        let c = h.container("slow", RestartPolicy::No);
        let info = c.send(run(false)).await.unwrap().unwrap();
        assert_eq!(info.status, Status::Created);
        assert_eq!(h.next().await.0, Topic::TaskCreate);
        h.fake
            .script("start", Scripted::Delay(Duration::from_millis(300)));
        let start = c.send(Start);
        // The process dies while the runtime's start is still running.
        tokio::time::sleep(Duration::from_millis(50)).await;
        sigkill(info.pid);
        // A second start, and a delete, are refused meanwhile, naming the start.
        wrong_state(c.send(Start).await.unwrap(), "starting");
        wrong_state(c.send(Delete { force: true }).await.unwrap(), "starting");
        start.await.unwrap().unwrap();
        assert_eq!(h.topics(2).await, [Topic::TaskStart, Topic::TaskExit]);
        assert_eq!(c.send(GetInfo).await.unwrap().status, Status::Stopped);
    });
}

#[test]
fn exec_exits_come_before_the_init_exit_and_execs_are_killed_with_it() {
    actix_test(async {
        let mut h = Harness::new("exec").await;
        let c = h.container("box", RestartPolicy::No);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        let exec = |id: &str| Exec {
            exec_id: id.into(),
            process: ExecProcess::SpecJson(
                r#"{"cwd":"/","user":{"uid":0,"gid":0},"args":["sleep","1000"]}"#.into(),
            ),
            stdio: Stdio::default(),
        };
        c.send(exec("e1")).await.unwrap().unwrap();
        assert_eq!(
            h.topics(2).await,
            [Topic::TaskExecAdded, Topic::TaskExecStarted]
        );
        let dup = c.send(exec("e1")).await.unwrap();
        assert!(matches!(dup, Err(Error::AlreadyExists(_))), "{dup:?}");
        let init = c.send(exec(INIT_PROCESS)).await.unwrap();
        assert!(matches!(init, Err(Error::InvalidArgument(_))), "{init:?}");
        sigkill(info.pid);
        assert_eq!(h.next().await, (Topic::TaskExit, "e1".into()));
        assert_eq!(h.next().await, (Topic::TaskExit, INIT_PROCESS.into()));
        let e1 = c.send(Wait {
            exec_id: Some("e1".into()),
        });
        assert_eq!(e1.await.unwrap().unwrap().code, 137);
        wrong_state(c.send(exec("e2")).await.unwrap(), "running container");
    });
}

#[test]
fn a_failed_exec_launch_leaves_no_record_and_does_not_hold_the_exit() {
    actix_test(async {
        let mut h = Harness::new("execfail").await;
        let c = h.container("box", RestartPolicy::No);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        h.fake
            .script("exec", Scripted::Fail("exec failed: no such file".into()));
        let failed = c
            .send(Exec {
                exec_id: "bad".into(),
                process: ExecProcess::SpecJson(
                    r#"{"cwd":"/","user":{"uid":0,"gid":0},"args":["nope"]}"#.into(),
                ),
                stdio: Stdio::default(),
            })
            .await
            .unwrap();
        assert!(
            matches!(failed, Err(Error::RuntimeFailed { .. })),
            "{failed:?}"
        );
        assert_eq!(h.next().await.0, Topic::TaskExecAdded);
        assert!(c.send(GetInfo).await.unwrap().execs.is_empty());
        sigkill(info.pid);
        assert_eq!(h.next().await, (Topic::TaskExit, INIT_PROCESS.into()));
    });
}

#[test]
fn pause_resume_and_a_kill_of_a_paused_container_thaws_it() {
    actix_test(async {
        let mut h = Harness::new("pause").await;
        let c = h.container("frozen", RestartPolicy::No);
        c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        wrong_state(c.send(Resume).await.unwrap(), "paused container");
        let info = c.send(Pause).await.unwrap().unwrap();
        assert_eq!(info.status, Status::Paused);
        assert_eq!(h.next().await.0, Topic::TaskPaused);
        wrong_state(c.send(Pause).await.unwrap(), "running container");
        let store = CheckpointStore::new(&h.root.join("runtime"));
        let cp = Checkpoint {
            name: "snap".into(),
            options: CheckpointOptions::default(),
            store,
            rootfs: None,
        };
        wrong_state(c.send(cp).await.unwrap(), "resume");
        let exec = Exec {
            exec_id: "x".into(),
            process: ExecProcess::SpecJson(
                r#"{"cwd":"/","user":{"uid":0,"gid":0},"args":["true"]}"#.into(),
            ),
            stdio: Stdio::default(),
        };
        wrong_state(c.send(exec).await.unwrap(), "paused");
        wrong_state(c.send(Delete { force: false }).await.unwrap(), "--force");
        c.send(Resume).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskResumed);
        c.send(Pause).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskPaused);
        let kill = Kill {
            exec_id: None,
            signal: libc::SIGKILL,
            all: false,
        };
        c.send(kill).await.unwrap().unwrap();
        let mut got = h.topics(2).await;
        got.sort_by_key(|t| t.as_str());
        assert_eq!(got, [Topic::TaskExit, Topic::TaskResumed]);
        assert!(h.fake.calls().iter().any(|c| c == "resume frozen"));
    });
}

#[test]
fn a_failed_pause_goes_back_to_running() {
    actix_test(async {
        let mut h = Harness::new("pausefail").await;
        let c = h.container("p", RestartPolicy::No);
        c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        h.fake
            .script("pause", Scripted::Fail("freezer: device busy".into()));
        let failed = c.send(Pause).await.unwrap();
        assert!(matches!(failed, Err(Error::RuntimeFailed { ref op, .. }) if op == "pause"));
        assert_eq!(c.send(GetInfo).await.unwrap().status, Status::Running);
        h.silent(Duration::from_millis(100)).await;
    });
}

#[test]
fn update_refusals_name_the_field_and_stopped_containers_refuse_updates() {
    actix_test(async {
        let mut h = Harness::new("update").await;
        let c = h.container("u", RestartPolicy::No);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        let none = c.send(Update(Resources::default())).await.unwrap();
        assert!(matches!(none, Err(Error::InvalidArgument(m)) if m.contains("at least one")));
        h.fake.script(
            "update",
            Scripted::Fail("write /sys/fs/cgroup/cpuset/x/cpuset.cpus: invalid argument".into()),
        );
        let two = Resources {
            cpuset_cpus: Some("99".into()),
            memory: Some(64 << 20),
            ..Resources::default()
        };
        let refused = c.send(Update(two.clone())).await.unwrap();
        match refused {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("CpusetCpus"), "{m}"),
            other => panic!("{other:?}"),
        }
        h.fake
            .script("update", Scripted::Fail("something odd".into()));
        let refused = c.send(Update(two.clone())).await.unwrap();
        match refused {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.contains("CpusetCpus") && m.contains("Memory"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        c.send(Update(two.clone())).await.unwrap().unwrap();
        sigkill(info.pid);
        h.next().await;
        wrong_state(c.send(Update(two)).await.unwrap(), "live container");
        wrong_state(c.send(GetStats).await.unwrap(), "no statistics");
        assert!(c.send(Pids).await.unwrap().unwrap().is_empty());
    });
}

#[test]
fn on_failure_restarts_with_backoff_up_to_max_and_a_users_kill_is_not_restarted() {
    actix_test(async {
        let mut h = Harness::new("restart").await;
        let c = h.container("r", RestartPolicy::OnFailure { max: Some(1) });
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        // Restarted after the first backoff step, with the count on the start event.
        let e = tokio::time::timeout(Duration::from_secs(5), h.stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.topic, e.restarts), (Topic::TaskStart, Some(1)));
        let info = c.send(GetInfo).await.unwrap();
        assert_eq!((info.status, info.restarts), (Status::Running, 1));
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        h.silent(Duration::from_millis(400)).await;
        assert_eq!(c.send(GetInfo).await.unwrap().status, Status::Stopped);

        let u = h.container("user", RestartPolicy::UnlessStopped);
        u.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        let kill = Kill {
            exec_id: None,
            signal: libc::SIGTERM,
            all: false,
        };
        u.send(kill).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskExit);
        h.silent(Duration::from_millis(400)).await;
    });
}

#[test]
fn delete_cancels_a_pending_restart() {
    actix_test(async {
        let mut h = Harness::new("cancel").await;
        let c = h.container("a", RestartPolicy::Always);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        // The timer (100 ms) is set; the delete comes first and wins.
        c.send(Delete { force: false }).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskDelete);
        h.silent(Duration::from_millis(300)).await;
    });
}

#[test]
fn a_checkpoint_with_exit_comes_before_the_exit_and_is_never_restarted() {
    actix_test(async {
        let mut h = Harness::new("checkpoint").await;
        let bundle = h.root.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), b"{}").unwrap();
        let c = h.container("cp", RestartPolicy::Always);
        c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        let store = CheckpointStore::new(&h.root.join("runtime"));
        let cp = |name: &str, exit: bool| Checkpoint {
            name: name.into(),
            options: CheckpointOptions {
                exit,
                ..CheckpointOptions::default()
            },
            store: store.clone(),
            rootfs: None,
        };
        h.fake.script(
            "checkpoint",
            Scripted::Fail("criu failed: type NOTIFY errno 0".into()),
        );
        let failed = c.send(cp("bad", false)).await.unwrap();
        assert!(
            matches!(failed, Err(Error::RuntimeFailed { .. })),
            "{failed:?}"
        );
        assert!(!Path::new(&store.dir("ns", "cp", "bad").unwrap()).exists());
        c.send(cp("live", false)).await.unwrap().unwrap();
        assert_eq!(h.next().await.0, Topic::TaskCheckpointed);
        assert_eq!(c.send(GetInfo).await.unwrap().status, Status::Running);
        h.fake
            .script("checkpoint", Scripted::Delay(Duration::from_millis(200)));
        let last = c.send(cp("last", true));
        tokio::time::sleep(Duration::from_millis(50)).await;
        wrong_state(c.send(cp("again", false)).await.unwrap(), "checkpoint");
        last.await.unwrap().unwrap();
        assert_eq!(
            h.topics(2).await,
            [Topic::TaskCheckpointed, Topic::TaskExit]
        );
        h.silent(Duration::from_millis(400)).await;
        assert_eq!(c.send(GetInfo).await.unwrap().status, Status::Stopped);
        assert_eq!(store.list("ns", "cp").unwrap().len(), 2);
    });
}

#[test]
fn a_failed_create_stops_the_actor_and_leaves_no_directory() {
    actix_test(async {
        let h = Harness::new("createfail").await;
        let c = h.container("gone", RestartPolicy::No);
        h.fake
            .script("run", Scripted::Fail("no such rootfs".into()));
        let failed = c.send(run(true)).await.unwrap();
        assert!(matches!(failed, Err(Error::RuntimeFailed { ref op, .. }) if op == "run"));
        assert!(!h.root.join("state/ns/gone").exists());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!c.connected());
    });
}

#[test]
fn a_hanging_runtime_call_stalls_its_own_container_only() {
    actix_test(async {
        let mut h = Harness::new("hang").await;
        let stuck = h.container("stuck", RestartPolicy::No);
        let fine = h.container("fine", RestartPolicy::No);
        stuck.send(run(true)).await.unwrap().unwrap();
        fine.send(run(true)).await.unwrap().unwrap();
        h.topics(4).await;
        h.fake.script("pause", Scripted::Hang);
        let hung = stuck.send(Pause);
        tokio::pin!(hung);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut hung)
                .await
                .is_err(),
            "the pause hangs"
        );
        // The stuck container still answers what needs no runtime, and says it is pausing.
        assert_eq!(stuck.send(GetInfo).await.unwrap().status, Status::Pausing);
        wrong_state(stuck.send(Pause).await.unwrap(), "pausing");
        // The other one works as ever.
        fine.send(Pause).await.unwrap().unwrap();
        fine.send(Resume).await.unwrap().unwrap();
        assert_eq!(fine.send(GetInfo).await.unwrap().status, Status::Running);
    });
}

#[test]
fn a_users_stop_holds_even_always_and_a_users_restart_runs_it_again_uncounted() {
    actix_test(async {
        let mut h = Harness::new("userrestart").await;
        let c = h.container("svc", RestartPolicy::Always);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        wrong_state(c.send(RestartNow).await.unwrap(), "stopped container");
        c.send(HoldRestarts).await.unwrap().unwrap();
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        h.silent(Duration::from_millis(400)).await;
        let again = c.send(RestartNow).await.unwrap().unwrap();
        assert_eq!((again.status, again.restarts), (Status::Running, 0));
        assert_ne!(again.pid, info.pid);
        let e = tokio::time::timeout(Duration::from_secs(5), h.stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.topic, e.restarts), (Topic::TaskStart, None));
        // The hold is gone with the user's restart: the policy is back.
        sigkill(again.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        assert_eq!(h.next().await.0, Topic::TaskStart);
        assert_eq!(c.send(GetInfo).await.unwrap().restarts, 1);
    });
}

#[test]
fn a_restart_in_flight_answers_state_and_holds_other_verbs_until_it_is_over() {
    actix_test(async {
        let mut h = Harness::new("restarting").await;
        let c = h.container("r", RestartPolicy::Always);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        // The policy's restart launches slowly.
        h.fake
            .script("run", Scripted::Delay(Duration::from_millis(600)));
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        // Inside the restart (the timer is 100 ms, the launch 600 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = std::time::Instant::now();
        let during = c.send(GetInfo).await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(200),
            "state waited for the restart"
        );
        assert_eq!(during.status, Status::Stopped);
        // A forced delete waits for the restart, then kills and deletes the new run.
        c.send(Delete { force: true }).await.unwrap().unwrap();
        let rest = h.topics(3).await;
        assert_eq!(rest, [Topic::TaskStart, Topic::TaskExit, Topic::TaskDelete]);
    });
}

#[test]
fn a_verb_during_a_stuck_restart_is_refused_after_restart_wait_and_changes_nothing() {
    actix_test(async {
        let mut h = Harness::new("stuck-restart").await;
        let c = h.container("s", RestartPolicy::Always);
        let info = c.send(run(true)).await.unwrap().unwrap();
        h.topics(2).await;
        // The policy's restart launches after 3 s: longer than a verb waits for it.
        h.fake.script(
            "run",
            Scripted::Delay(RESTART_WAIT + Duration::from_secs(1)),
        );
        sigkill(info.pid);
        assert_eq!(h.next().await.0, Topic::TaskExit);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = std::time::Instant::now();
        let refused = c.send(Delete { force: true }).await.unwrap();
        let took = asked.elapsed();
        assert!(
            matches!(&refused, Err(Error::WrongState(m)) if m.contains("restarting")),
            "{refused:?}"
        );
        assert!(
            took >= RESTART_WAIT && took < RESTART_WAIT + Duration::from_millis(500),
            "the delete took {took:?}"
        );
        let during = c.send(GetInfo).await.unwrap();
        assert_eq!(
            (during.status, during.operation.as_str()),
            (Status::Stopped, "restarting")
        );
        // The restart goes on and starts the container again; then a delete works.
        assert_eq!(h.next().await.0, Topic::TaskStart);
        c.send(Delete { force: true }).await.unwrap().unwrap();
        assert_eq!(h.topics(2).await, [Topic::TaskExit, Topic::TaskDelete]);
    });
}
