//! Adoption at daemon start: each process directory is read (exit fifo opened before the
//! shim's liveness is checked), live shims are watched again, and exits that happened while
//! the daemon was down are published now, execs' first (by exit time), then the init's.

use super::exit_gate::ExitGate;
use super::state::{Phase, StopCause};
use super::{Container, ProcessSlot};
use crate::actors::process::{exit_status_of, ShimWatch};
use crate::launch;
use crate::layout::ShimDir;
use crate::types::*;
use actix::prelude::*;
use std::collections::{BTreeSet, HashSet};

/// What a process directory says about its process at daemon start.
enum Adopted {
    /// The runtime never wrote a pid: its create or exec did not finish.
    NeverStarted,
    /// It has exited (during the downtime, or before).
    Exited { pid: i32, status: ExitStatus },
    /// Its shim is alive: watch it.
    Running {
        pid: i32,
        starttime: Option<u64>,
        exit_fd: std::os::fd::OwnedFd,
        shim_pidfd: Option<std::os::fd::OwnedFd>,
    },
}

/// Reads a process directory. The exit fifo is opened before the shim's liveness is
/// checked, and read at once: a writer there (the shim, which holds it for its whole life)
/// is seen to hang up later, so the fifo alone watches it. With no writer left the shim has
/// closed it on its way out: one still alive is watched through a pidfd until it is gone
/// (it writes `exitStatus` after closing the fifo); one dead by then is handled now, by its
/// exitStatus or by the rules for a shim that died without one. So an adopted process holds
/// one descriptor, like a launched one, except in that short window.
fn adopt_process(dir: &ShimDir) -> Adopted {
    let Some(pid) = dir.read_pid() else {
        return Adopted::NeverStarted;
    };
    let starttime = dir.read_starttime();
    if let Some((code, at)) = dir.read_exit_status() {
        let status = ExitStatus {
            code,
            exited_at_ns: at,
        };
        return Adopted::Exited { pid, status };
    }
    let exit_fd = launch::open_exit_fifo(dir).ok();
    let writer = exit_fd.as_ref().map(fifo_has_writer);
    // The pidfd is opened before the start time is checked, so it is the shim's if the check
    // passes; it is kept only when the fifo cannot tell the shim's end (no writer left).
    let shim = dir.read_shim_pid();
    let shim_pidfd = match writer {
        Some(Writer::Gone) => shim.and_then(|(spid, _)| launch::pidfd(spid)),
        _ => None,
    };
    let shim_alive = shim.is_some_and(|(spid, start)| crate::layout::still_running(spid, start));
    match (exit_fd, writer) {
        (Some(exit_fd), Some(Writer::There)) if shim_alive => Adopted::Running {
            pid,
            starttime,
            exit_fd,
            shim_pidfd: None,
        },
        (Some(exit_fd), Some(Writer::Gone)) if shim_alive && shim_pidfd.is_some() => {
            Adopted::Running {
                pid,
                starttime,
                exit_fd,
                shim_pidfd,
            }
        }
        (_, Some(Writer::Said(message))) => match crate::layout::parse_exit_message(&message) {
            Some((code, exited_at_ns)) => Adopted::Exited {
                pid,
                status: ExitStatus { code, exited_at_ns },
            },
            None => Adopted::Exited {
                pid,
                status: exit_status_of(dir, pid, starttime),
            },
        },
        _ => Adopted::Exited {
            pid,
            status: exit_status_of(dir, pid, starttime),
        },
    }
}

/// What a freshly opened (non-blocking) exit fifo says.
enum Writer {
    /// Someone holds its write end (the shim): its hang-up will come.
    There,
    /// No writer: end-of-file at once, and no hang-up would ever be reported.
    Gone,
    /// The shim's exit message was there (then end-of-file, or not yet).
    Said(Vec<u8>),
}

fn fifo_has_writer(fd: &std::os::fd::OwnedFd) -> Writer {
    use std::os::fd::AsRawFd;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) if got.is_empty() => return Writer::Gone,
            Ok(0) => return Writer::Said(got),
            Ok(n) if got.len() < 256 => got.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) if got.is_empty() => return Writer::There,
            Err(nix::errno::Errno::EAGAIN) => return Writer::Said(got),
            Err(_) if got.is_empty() => return Writer::Gone,
            Err(_) => return Writer::Said(got),
        }
    }
}

/// Whether the container's cgroup is frozen (paused), from the freezer's own file; `None`
/// when it cannot be read.
fn frozen(cgroups: &crate::cgroups::CgroupPaths) -> Option<bool> {
    let h = crate::cgroups::host();
    match h {
        crate::cgroups::Hierarchy::V1 { .. } => {
            let file = h
                .dir("freezer", cgroups.get("freezer"))
                .join("freezer.state");
            let state = std::fs::read_to_string(file).ok()?;
            Some(matches!(state.trim(), "FROZEN" | "FREEZING"))
        }
        crate::cgroups::Hierarchy::V2 { .. } => {
            let file = h.dir("", cgroups.get("")).join("cgroup.freeze");
            Some(std::fs::read_to_string(file).ok()?.trim() == "1")
        }
    }
}

/// At most this many `runtime state` calls at once while adopting (a runtime whose files
/// corral cannot read): a thousand at once would starve the daemon of its two cores.
const STATE_CALLS_AT_ONCE: usize = 4;

fn state_calls() -> &'static tokio::sync::Semaphore {
    static CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STATE_CALLS_AT_ONCE);
    &CALLS
}

impl Container {
    /// The process ids in the container's directory (the Supervisor has already taken back
    /// the last run of a restart the daemon died in: `take_back_last_run`).
    fn process_dirs(&self) -> Vec<String> {
        let mut entries: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| validate_id("process id", name).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        entries
    }

    /// Re-adopts this container's processes from their directories (daemon start).
    pub(super) fn adopt_processes(
        &mut self,
        published: HashSet<(String, u32)>,
        ctx: &mut Context<Self>,
    ) {
        let mut exited = Vec::new();
        let mut live_execs = BTreeSet::new();
        let mut init_published = false;
        for process_id in self.process_dirs() {
            let dir = self.dir.process(&process_id);
            let is_init = process_id == INIT_PROCESS;
            let mut slot = ProcessSlot {
                io: std::fs::read_to_string(dir.io_file())
                    .map(|text| super::ProcessIo::from_text(&text))
                    .unwrap_or_default(),
                ..ProcessSlot::default()
            };
            match adopt_process(&dir) {
                Adopted::NeverStarted => {
                    tracing::warn!(
                        "{}: process {process_id} never started; removing its directory",
                        self.key()
                    );
                    let _ = std::fs::remove_dir_all(dir.path());
                    continue;
                }
                Adopted::Exited { pid, status } => {
                    slot.pid = pid as u32;
                    slot.exit = Some(status);
                    let done = dir.read_exit_published() == Some(pid as u32)
                        || published.contains(&(process_id.clone(), pid as u32));
                    if is_init {
                        init_published = done;
                    } else if !done {
                        exited.push((status.exited_at_ns, process_id.clone()));
                    }
                }
                Adopted::Running {
                    pid,
                    starttime,
                    exit_fd,
                    shim_pidfd,
                } => {
                    slot.pid = pid as u32;
                    if !is_init {
                        live_execs.insert(process_id.clone());
                    }
                    let watch = ShimWatch {
                        exit_fd: Some(exit_fd),
                        shim_exited: None,
                        shim_pidfd,
                        exit_pidfd: slot
                            .io
                            .kernel_tells_exit()
                            .then(|| crate::exit_watch::open(pid, starttime))
                            .flatten(),
                    };
                    let process = self.watch_process(&process_id, pid, starttime, watch, ctx);
                    slot.process = Some(process);
                }
            }
            if is_init {
                self.init = slot;
            } else {
                self.execs.insert(process_id, slot);
            }
        }
        self.gate = ExitGate::adopted(self.init.exit, init_published, live_execs);
        match (self.init.exit, self.init.pid) {
            (Some(_), _) if self.record.exited_by_checkpoint => {
                self.become_(Phase::Stopped(StopCause::ByUser));
                self.become_(Phase::Checkpointed);
            }
            (Some(_), _) => {
                let cause = if self.record.stopped_by_user {
                    StopCause::ByUser
                } else {
                    StopCause::Exited
                };
                self.become_(Phase::Stopped(cause));
            }
            (None, 0) => {}
            (None, _) => self.become_(Phase::Running),
        }
        // Exits that happened while the daemon was down: execs first, by exit time.
        exited.sort();
        for (_, process_id) in exited {
            if let Some(slot) = self.execs.get(&process_id) {
                if let Some(exit) = slot.exit {
                    self.emit_exit(&process_id, slot.pid, exit);
                }
            }
        }
        if self.init.exit.is_some() {
            // The init's exit now if it is not out yet; a restart pending when the daemon
            // went down is due again.
            let step = self.gate.poll();
            if self.gate.is_published() && step == super::exit_gate::Step::Wait {
                self.consider_restart(ctx);
            } else {
                self.settle(step, ctx);
            }
        } else if self.init.pid > 0 {
            self.watch_oom(false, ctx);
            self.refresh_status(ctx);
        }
        tracing::info!(
            "adopted {} ({}, pid {}, {} exec(s))",
            self.key(),
            self.life.status(),
            self.init.pid,
            self.execs.len()
        );
    }

    /// Tells whether an adopted container is created, running or paused: from the runtime's
    /// and the freezer's files when the runtime's layout is known (no process to start),
    /// else by asking the runtime, a few containers at a time.
    fn refresh_status(&mut self, ctx: &mut Context<Self>) {
        if let Some(created) = self.env.runtime.created_from_files(&self.record.id) {
            if let Some(paused) = frozen(&self.record.cgroups) {
                if paused {
                    self.become_(Phase::Paused);
                } else if created {
                    self.become_(Phase::Created);
                }
                return;
            }
        }
        let runtime = self.env.runtime.clone();
        let id = self.record.id.clone();
        let asked = async move {
            let _turn = state_calls().acquire().await;
            runtime.state(&id).await
        };
        ctx.spawn(asked.into_actor(self).map(|result, act, _| match result {
            // Stopped: its exit is on its way through the shim's fifo.
            Ok(status) if act.init.exit.is_none() && act.life.phase == Phase::Running => {
                match status {
                    Status::Created => act.become_(Phase::Created),
                    Status::Paused => act.become_(Phase::Paused),
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: runtime state: {e}", act.key()),
        }));
    }
}
