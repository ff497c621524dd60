//! Restart policies: whether an exit is restarted and after how long (pure functions), the
//! timer, and the restart itself: the init runs again under the same id, with the same
//! stdio, and the last run's files are kept until the new run has started, so a failed
//! restart (or a daemon that dies during one) still finds the last exit on disk.

use super::state::{Operation, Phase, StopCause, Verb};
use super::{Container, ProcessSlot};
use crate::error::{Error, Result};
use crate::shim::Mode;
use crate::types::*;
use actix::prelude::*;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// The first restart waits this long; each further one twice as long as the one before.
pub const RESTART_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long was healthy: the backoff starts over.
pub const RESTART_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Whether `policy` restarts an exit with `code`, stopped as `cause`, after `restarts`.
pub fn wanted(policy: RestartPolicy, code: u32, cause: StopCause, restarts: u32) -> bool {
    let by_user = cause == StopCause::ByUser;
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::UnlessStopped => !by_user,
        RestartPolicy::OnFailure { max } => {
            code != 0 && !by_user && max.is_none_or(|m| restarts < m)
        }
    }
}

/// The wait before the next restart and the new streak, for a run that lasted `ran_for`
/// after `streak` quick failures in a row.
pub fn backoff(streak: u32, ran_for: Duration) -> (Duration, u32) {
    let streak = if ran_for >= RESTART_HEALTHY_AFTER {
        0
    } else {
        streak
    };
    let delay = RESTART_BACKOFF_BASE
        .saturating_mul(1u32 << streak.min(16))
        .min(RESTART_BACKOFF_MAX);
    (delay, streak + 1)
}

/// Where the last run's `init/` waits while a restart runs (not a valid process id, so
/// adoption never takes it for an exec).
const LAST_RUN: &str = ".init-last";

/// Undoes what a restart the daemon died in left: the last run's `init/` stands again
/// unless the new run had got as far as a pid.
pub fn take_back_last_run(dir: &crate::layout::ContainerDir) {
    let last = dir.path().join(LAST_RUN);
    if !last.is_dir() {
        return;
    }
    let init = dir.process(INIT_PROCESS);
    if init.read_pid().is_some() {
        let _ = std::fs::remove_dir_all(&last);
        return;
    }
    let _ = std::fs::remove_dir_all(init.path());
    if let Err(e) = std::fs::rename(&last, init.path()) {
        tracing::warn!(
            "cannot take back the last run in {}: {e}",
            dir.path().display()
        );
    }
}

impl Container {
    /// Sets the restart timer if the policy wants one after the init's published exit.
    pub(super) fn consider_restart(&mut self, ctx: &mut Context<Self>) {
        let Some(exit) = self.gate.published_exit() else {
            return;
        };
        let Phase::Stopped(cause) = self.life.phase else {
            return; // checkpointed, deleted, or running again
        };
        if self.life.op != Operation::Idle {
            return; // deleting, or a timer already set
        }
        if self.record.manually_stopped {
            return; // a user's stop holds every policy until a user's restart
        }
        if !wanted(self.record.restart, exit.code, cause, self.record.restarts) {
            return;
        }
        let ran_for = Duration::from_nanos(exit.exited_at_ns.saturating_sub(self.started_at_ns));
        let (delay, streak) = backoff(self.backoff_streak, ran_for);
        self.backoff_streak = streak;
        tracing::info!(
            "{}: restarting in {delay:?} ({} policy, exit {})",
            self.key(),
            self.record.restart,
            exit.code
        );
        let timer = ctx.run_later(delay, |act, ctx| {
            act.set_op(Operation::Idle);
            act.restart(ctx, Restarter::Policy);
        });
        self.set_op(Operation::RestartPending(timer));
    }

    /// Runs the init process again under the same id. The mailbox keeps moving (state and
    /// lists are answered), and every verb that would change the container waits until the
    /// restart is over (`after_restart`), so nothing interleaves with a half-made restart.
    fn restart(&mut self, ctx: &mut Context<Self>, by: Restarter) {
        if let Err(e) = self.guard(Verb::Restart) {
            if let Restarter::User(done) = by {
                let _ = done.send(Err(e));
            }
            return;
        }
        self.set_op(Operation::Restarting);
        // A fifo of a client that has gone away is no place for output: /dev/null instead.
        let still_there = |p: &Option<PathBuf>| {
            p.clone()
                .filter(|p| p.exists() || p.parent().is_some_and(|d| d.is_dir()))
        };
        let stdio = Stdio {
            stdin: still_there(&self.record.stdio.stdin),
            stdout: still_there(&self.record.stdio.stdout),
            stderr: still_there(&self.record.stdio.stderr),
            ..self.record.stdio.clone()
        };
        let (args, mut io) = self.shim_args(Mode::Run, INIT_PROCESS, &stdio);
        let runtime = self.env.runtime.clone();
        let timeout = self.env.shim_timeout;
        let dir = self.dir.clone();
        let execs: Vec<String> = self.execs.keys().cloned().collect();
        let id = self.record.id.clone();
        let work = async move {
            runtime.delete(&id, true).await?;
            for exec in execs {
                let _ = std::fs::remove_dir_all(dir.process(&exec).path());
            }
            let init = dir.process(INIT_PROCESS);
            let last = dir.path().join(LAST_RUN);
            let _ = std::fs::remove_dir_all(&last);
            std::fs::rename(init.path(), &last).map_err(|e| {
                Error::io(format!("keep the last run's {}", init.path().display()), e)
            })?;
            let launched = match io.prepare(&init) {
                Ok(()) => runtime
                    .launch(init.clone(), args, timeout)
                    .await
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            if launched.is_ok() {
                let _ = std::fs::remove_dir_all(&last);
            } else {
                // The last run's pid, exitStatus and exit.published stand again.
                let _ = std::fs::remove_dir_all(init.path());
                let _ = std::fs::rename(&last, init.path());
            }
            launched.map(|shim| (shim, io))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.set_op(Operation::Idle);
            let done = match by {
                Restarter::Policy => {
                    act.record.restarts += 1;
                    None
                }
                Restarter::User(done) => {
                    act.backoff_streak = 0;
                    Some(done)
                }
            };
            let answer = match result {
                Ok((shim, io)) => {
                    act.record.stopped_by_user = false;
                    if done.is_some() {
                        // A user's restart lifts a user's stop (a policy restart never
                        // clears one that came while it ran).
                        act.record.manually_stopped = false;
                    }
                    act.record.exited_by_checkpoint = false;
                    act.execs.clear();
                    act.init = ProcessSlot {
                        pid: shim.pid as u32,
                        io,
                        ..ProcessSlot::default()
                    };
                    act.init.process = Some(act.watch(INIT_PROCESS, shim, ctx));
                    act.gate.new_run();
                    act.become_(Phase::Running);
                    act.started_at_ns = now_ns();
                    act.save_record();
                    let start = act.emit(Topic::TaskStart, INIT_PROCESS, act.init.pid);
                    match done {
                        None => start.restarts(act.record.restarts).send(),
                        Some(_) => start.send(),
                    }
                    // After the start event: an OOM kill already counted comes after it.
                    act.watch_oom(true, ctx);
                    Ok(act.info())
                }
                Err(e) => {
                    if done.is_none() {
                        // A policy's attempt: a user's kill no longer counts against it.
                        act.record.stopped_by_user = false;
                    }
                    // The next backoff counts from this attempt, not from the last run.
                    act.started_at_ns = now_ns();
                    act.save_record();
                    if act.life.phase != Phase::Checkpointed {
                        act.become_(Phase::Stopped(StopCause::Exited));
                    }
                    tracing::warn!("{}: restart {} failed: {e}", act.key(), act.record.restarts);
                    act.consider_restart(ctx);
                    Err(e)
                }
            };
            if let Some(done) = done {
                let _ = done.send(answer);
            }
            // The verbs that came meanwhile, in the order they came.
            for waiting in act.after_restart.drain(..) {
                let _ = waiting.send(());
            }
        }));
    }
}

/// Who asked for a restart.
enum Restarter {
    /// The restart policy: it counts, and the start event carries the count.
    Policy,
    /// A user (`restart`): not counted; the answer goes back here.
    User(oneshot::Sender<Result<ContainerInfo>>),
}

/// Runs a stopped container's init again now (a user's `restart`, after `stop`).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct RestartNow;

impl Handler<RestartNow> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: RestartNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Operation::RestartPending(timer) = self.life.op {
            ctx.cancel_future(timer);
            self.set_op(Operation::Idle);
        }
        let (tx, rx) = oneshot::channel();
        self.restart(ctx, Restarter::User(tx));
        Box::pin(
            async move {
                rx.await
                    .unwrap_or_else(|_| Err(Error::Internal("the container went away".into())))
            }
            .into_actor(self),
        )
    }
}

/// Holds every restart policy after a user's `stop` (until a user's restart), and answers
/// the container's state as it is then (after a restart in flight is over).
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct HoldRestarts;

impl Handler<HoldRestarts> for Container {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: HoldRestarts, ctx: &mut Context<Self>) -> Self::Result {
        if self.restarting() {
            return self.after_restart(msg, ctx);
        }
        if let Operation::RestartPending(timer) = self.life.op {
            ctx.cancel_future(timer);
            self.set_op(Operation::Idle);
        }
        if !self.record.manually_stopped {
            self.record.manually_stopped = true;
            self.save_record();
        }
        Box::pin(actix::fut::ready(Ok(self.info())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_as_documented() {
        use RestartPolicy as P;
        use StopCause::{ByUser, Exited};
        assert!(!wanted(P::No, 1, Exited, 0));
        assert!(wanted(P::Always, 0, Exited, 0));
        assert!(
            wanted(P::Always, 137, ByUser, 99),
            "always, even after a user's kill"
        );
        assert!(wanted(P::UnlessStopped, 0, Exited, 0));
        assert!(!wanted(P::UnlessStopped, 137, ByUser, 0));
        let on_failure = P::OnFailure { max: Some(2) };
        assert!(
            !wanted(on_failure, 0, Exited, 0),
            "success is not a failure"
        );
        assert!(wanted(on_failure, 1, Exited, 1));
        assert!(!wanted(on_failure, 1, Exited, 2), "at most MAX restarts");
        assert!(
            !wanted(on_failure, 137, ByUser, 0),
            "a user's kill is not a failure"
        );
        assert!(wanted(P::OnFailure { max: None }, 3, Exited, 1000));
    }

    #[test]
    fn a_restart_the_daemon_died_in_gives_the_last_run_back() {
        let root = std::env::temp_dir().join(format!("corral-lastrun-{}", now_ns()));
        let dir = crate::layout::StateDir::new(&root).container("ns", "c");
        let init = dir.process(INIT_PROCESS);
        let last = dir.path().join(LAST_RUN);
        // Died after the rename, before the new run had a pid.
        std::fs::create_dir_all(&last).unwrap();
        std::fs::write(last.join("pid"), "42").unwrap();
        std::fs::create_dir_all(init.path()).unwrap();
        take_back_last_run(&dir);
        assert_eq!(init.read_pid(), Some(42));
        assert!(!last.exists());
        // Died after the new run started: the new run stands, the old one goes.
        std::fs::create_dir_all(&last).unwrap();
        std::fs::write(init.pid_file(), "43").unwrap();
        take_back_last_run(&dir);
        assert_eq!(init.read_pid(), Some(43));
        assert!(!last.exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_run() {
        let quick = Duration::from_millis(5);
        let (d0, s1) = backoff(0, quick);
        assert_eq!((d0, s1), (RESTART_BACKOFF_BASE, 1));
        let (d1, s2) = backoff(s1, quick);
        assert_eq!((d1, s2), (RESTART_BACKOFF_BASE * 2, 2));
        let (d, _) = backoff(7, quick);
        assert_eq!(d, RESTART_BACKOFF_MAX, "12.8 s is capped at 10 s");
        let (d, _) = backoff(40, quick);
        assert_eq!(d, RESTART_BACKOFF_MAX, "no overflow for long streaks");
        let (d, s) = backoff(6, RESTART_HEALTHY_AFTER);
        assert_eq!(
            (d, s),
            (RESTART_BACKOFF_BASE, 1),
            "a healthy run starts over"
        );
    }
}
