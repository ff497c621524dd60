//! A scripted runtime for unit tests (no root, no runc). Each launched process is a real
//! `sleep` child of the test, watched by a thread that plays the shim: when the child ends,
//! it writes the exit message and `exitStatus` and closes the exit pipe, exactly what the
//! Container's process watch reads from a real shim. Short calls succeed unless a test scripts them to
//! fail or hang; every call is recorded.

use super::{classify, CheckpointCall, OciRuntime, RuntimeError, RuntimeFuture};
use crate::launch::LaunchedShim;
use crate::layout::ShimDir;
use crate::shim::{Mode, ShimArgs};
use crate::types::Status;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a scripted call does instead of succeeding.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// Fails as if the runtime had printed this.
    Fail(String),
    /// Never answers.
    Hang,
    /// Answers (successfully) after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Shared {
    calls: Vec<String>,
    script: BTreeMap<String, VecDeque<Scripted>>,
    /// Live processes per container id: (process id, pid).
    pids: BTreeMap<String, Vec<(String, i32)>>,
    paused: bool,
}

/// The fake runtime; clones share their script and record.
#[derive(Clone)]
pub struct FakeRuntime {
    shared: Arc<Mutex<Shared>>,
    root: PathBuf,
    binary: PathBuf,
}

impl FakeRuntime {
    /// A fake whose state root is `root`.
    pub fn new(root: &Path) -> Self {
        FakeRuntime {
            shared: Arc::default(),
            root: root.to_path_buf(),
            binary: PathBuf::from("fake-runtime"),
        }
    }

    /// The next call of `verb` does `what` instead.
    pub fn script(&self, verb: &str, what: Scripted) {
        self.lock()
            .script
            .entry(verb.to_string())
            .or_default()
            .push_back(what);
    }

    /// Every call so far, as `verb id`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, verb: &str, id: &str) -> Option<Scripted> {
        let mut s = self.lock();
        s.calls.push(format!("{verb} {id}"));
        s.script.get_mut(verb).and_then(VecDeque::pop_front)
    }

    fn answer<T: 'static>(
        &self,
        verb: &'static str,
        id: &str,
        ok: impl FnOnce(&FakeRuntime) -> T + 'static,
    ) -> RuntimeFuture<T> {
        let scripted = self.record(verb, id);
        let (me, id) = (self.clone(), id.to_string());
        Box::pin(async move {
            match scripted {
                Some(Scripted::Fail(text)) => return Err(classify(verb, &id, text)),
                Some(Scripted::Hang) => std::future::pending::<()>().await,
                Some(Scripted::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            Ok(ok(&me))
        })
    }

    /// Kills every process it started (a test's end: no child outlives it).
    pub fn kill_everything(&self) {
        let ids: Vec<String> = self.lock().pids.keys().cloned().collect();
        for id in ids {
            self.signal_all(&id, libc::SIGKILL);
        }
    }

    fn signal_all(&self, id: &str, signal: i32) {
        let pids: Vec<i32> = self
            .lock()
            .pids
            .get(id)
            .map(|v| v.iter().map(|(_, p)| *p).collect())
            .unwrap_or_default();
        for pid in pids {
            signal_pid(pid, signal);
        }
    }

    fn init_pid(&self, id: &str) -> Option<i32> {
        self.lock()
            .pids
            .get(id)?
            .iter()
            .find(|(p, _)| p == crate::types::INIT_PROCESS)
            .map(|(_, pid)| *pid)
    }
}

/// Signals one of this fake's own children (not yet reaped by its watcher thread).
fn signal_pid(pid: i32, signal: i32) {
    if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Starts `sleep` as the container process and a thread that reports its end like a shim.
fn spawn_process(
    shared: Arc<Mutex<Shared>>,
    dir: &ShimDir,
    id: String,
    process_id: String,
) -> std::io::Result<LaunchedShim> {
    crate::launch::prepare_dir(dir).map_err(std::io::Error::other)?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut child = std::process::Command::new("sleep")
        .arg("120")
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    std::fs::write(dir.pid_file(), pid.to_string())?;
    let starttime = crate::layout::proc_starttime(pid);
    if let Some(start) = starttime {
        std::fs::write(dir.starttime_file(), start.to_string())?;
    }
    shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pids
        .entry(id.clone())
        .or_default()
        .push((process_id.clone(), pid));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dir = dir.clone();
    std::thread::spawn(move || {
        use std::os::unix::process::ExitStatusExt;
        let status = child.wait();
        let code = match status {
            Ok(s) => s
                .code()
                .map(|c| c as u32)
                .or_else(|| s.signal().map(|n| 128 + n as u32))
                .unwrap_or(255),
            Err(_) => 255,
        };
        if let Some(list) = shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pids
            .get_mut(&id)
        {
            list.retain(|(p, _)| *p != process_id);
        }
        let _ = dir.write_exit_status(code);
        let mut pipe = std::fs::File::from(write);
        let _ =
            pipe.write_all(crate::layout::exit_message(code, crate::types::now_ns()).as_bytes());
        drop(pipe);
        let _ = tx.send(0);
    });
    Ok(LaunchedShim {
        pid,
        starttime,
        exit_fd: read,
        shim_exited: rx,
    })
}

impl OciRuntime for FakeRuntime {
    fn binary(&self) -> &Path {
        &self.binary
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn global_args(&self) -> &[String] {
        &[]
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn launch(
        &self,
        dir: ShimDir,
        args: ShimArgs,
        _timeout: Duration,
    ) -> RuntimeFuture<LaunchedShim> {
        let scripted = self.record(args.mode.verb(), &args.id);
        let shared = self.shared.clone();
        Box::pin(async move {
            match scripted {
                Some(Scripted::Fail(text)) => {
                    return Err(RuntimeError::Launch(crate::Error::RuntimeFailed {
                        op: args.mode.verb().into(),
                        id: args.id,
                        stderr: text,
                    }))
                }
                Some(Scripted::Hang) => std::future::pending::<()>().await,
                Some(Scripted::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            let process_id = if args.mode == Mode::Exec {
                dir.path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                crate::types::INIT_PROCESS.to_string()
            };
            spawn_process(shared, &dir, args.id.clone(), process_id)
                .map_err(|e| RuntimeError::Launch(crate::Error::io("fake launch", e)))
        })
    }

    fn start(&self, id: &str) -> RuntimeFuture<()> {
        self.answer("start", id, |_| ())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> RuntimeFuture<()> {
        let id2 = id.to_string();
        self.answer("kill", id, move |me| {
            if all {
                me.signal_all(&id2, signal);
            } else if let Some(pid) = me.init_pid(&id2) {
                signal_pid(pid, signal);
            }
        })
    }

    fn delete(&self, id: &str, _force: bool) -> RuntimeFuture<()> {
        let id2 = id.to_string();
        self.answer("delete", id, move |me| {
            me.signal_all(&id2, libc::SIGKILL);
            me.lock().pids.remove(&id2);
        })
    }

    fn pause(&self, id: &str) -> RuntimeFuture<()> {
        self.answer("pause", id, |me| me.lock().paused = true)
    }

    fn resume(&self, id: &str) -> RuntimeFuture<()> {
        let was_paused = std::mem::replace(&mut self.lock().paused, false);
        let scripted = self
            .lock()
            .script
            .get("resume")
            .is_some_and(|q| !q.is_empty());
        if !was_paused && !scripted {
            self.script("resume", Scripted::Fail("container not paused".into()));
        }
        self.answer("resume", id, |_| ())
    }

    fn update(&self, id: &str, _flags: Vec<String>) -> RuntimeFuture<()> {
        self.answer("update", id, |_| ())
    }

    fn checkpoint(&self, id: &str, call: CheckpointCall) -> RuntimeFuture<()> {
        let id2 = id.to_string();
        self.answer("checkpoint", id, move |me| {
            let _ = std::fs::create_dir_all(&call.image_path);
            if !call.leave_running {
                if let Some(pid) = me.init_pid(&id2) {
                    // A dump with --exit stops it.
                    signal_pid(pid, libc::SIGKILL);
                }
            }
        })
    }

    fn ps(&self, id: &str) -> RuntimeFuture<Vec<u32>> {
        let id2 = id.to_string();
        self.answer("ps", id, move |me| {
            me.lock()
                .pids
                .get(&id2)
                .map(|v| v.iter().map(|(_, p)| *p as u32).collect())
                .unwrap_or_default()
        })
    }

    fn state(&self, id: &str) -> RuntimeFuture<Status> {
        self.answer("state", id, |me| {
            if me.lock().paused {
                Status::Paused
            } else {
                Status::Running
            }
        })
    }

    fn has_state(&self, id: &str) -> bool {
        self.lock().pids.contains_key(id)
    }
}
