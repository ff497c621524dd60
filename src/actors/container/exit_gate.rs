//! The held-back init exit. A container's `/tasks/exit` for its init process is published
//! once, and only when nothing that must come before it can still come: not while a start
//! or a checkpoint that stops the container is in flight (their events come first), and
//! not while an exec is still live (each exec's exit comes first; they die with the init's
//! pid namespace, and are killed to make sure). Every change goes through one method here,
//! and each returns what to do now, so no caller re-checks the rule.

use crate::types::ExitStatus;
use std::collections::BTreeSet;

/// Something in flight that the init's exit waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hold {
    /// `runtime start`: /tasks/start comes before the exit.
    Start,
    /// A checkpoint that stops the container: /tasks/checkpointed comes before the exit.
    Checkpoint,
}

/// What the container should do after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Wait,
    /// The init has exited but execs are live: kill them, their exits come first.
    KillExecs,
    /// Publish this exit now; the gate counts it as published.
    Publish(ExitStatus),
}

/// The init process's exit and what holds it back.
#[derive(Clone, Debug, Default)]
pub struct ExitGate {
    exit: Option<ExitStatus>,
    published: bool,
    holds: BTreeSet<Hold>,
    live_execs: BTreeSet<String>,
}

impl ExitGate {
    /// The gate of an adopted container: its init's exit (if it has one), whether that is
    /// already published, and the execs still running.
    pub fn adopted(
        exit: Option<ExitStatus>,
        published: bool,
        live_execs: BTreeSet<String>,
    ) -> Self {
        ExitGate {
            exit,
            published: published && exit.is_some(),
            holds: BTreeSet::new(),
            live_execs,
        }
    }

    /// A new run of the init process (a restart): no exit, no execs.
    pub fn new_run(&mut self) {
        *self = ExitGate::default();
    }

    /// Something the exit must wait for has begun.
    pub fn hold(&mut self, hold: Hold) {
        self.holds.insert(hold);
    }

    /// It has ended.
    pub fn release(&mut self, hold: Hold) -> Step {
        self.holds.remove(&hold);
        self.step()
    }

    /// The init process has exited.
    pub fn init_exited(&mut self, exit: ExitStatus) -> Step {
        if !self.published {
            self.exit = Some(exit);
        }
        self.step()
    }

    /// An exec is being launched (its exit, or its failure, comes before the init's).
    pub fn exec_added(&mut self, exec_id: &str) {
        self.live_execs.insert(exec_id.to_string());
    }

    /// An exec now runs: if the init is gone meanwhile, it is killed.
    pub fn exec_launched(&mut self) -> Step {
        self.step()
    }

    /// An exec has exited (its exit is published), or failed to launch.
    pub fn exec_ended(&mut self, exec_id: &str) -> Step {
        self.live_execs.remove(exec_id);
        self.step()
    }

    /// Looks again without a change (adoption).
    pub fn poll(&mut self) -> Step {
        self.step()
    }

    /// The init's exit once its event is out (what waiters get).
    pub fn published_exit(&self) -> Option<ExitStatus> {
        self.exit.filter(|_| self.published)
    }

    /// Whether the init's exit is out.
    pub fn is_published(&self) -> bool {
        self.published
    }

    fn step(&mut self) -> Step {
        let Some(exit) = self.exit else {
            return Step::Wait;
        };
        if self.published || !self.holds.is_empty() {
            return Step::Wait;
        }
        if !self.live_execs.is_empty() {
            return Step::KillExecs;
        }
        self.published = true;
        Step::Publish(exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: u32) -> ExitStatus {
        ExitStatus {
            code,
            exited_at_ns: 1,
        }
    }

    #[test]
    fn a_plain_exit_is_published_once() {
        let mut g = ExitGate::default();
        assert_eq!(g.poll(), Step::Wait);
        assert_eq!(g.published_exit(), None);
        assert_eq!(g.init_exited(exit(3)), Step::Publish(exit(3)));
        assert_eq!(g.published_exit(), Some(exit(3)));
        assert_eq!(g.poll(), Step::Wait, "never twice");
        assert_eq!(g.init_exited(exit(4)), Step::Wait);
        assert_eq!(g.published_exit(), Some(exit(3)), "the first exit stands");
    }

    #[test]
    fn a_start_in_flight_holds_the_exit_until_it_ends() {
        let mut g = ExitGate::default();
        g.hold(Hold::Start);
        assert_eq!(g.init_exited(exit(0)), Step::Wait);
        assert_eq!(g.published_exit(), None, "waiters wait too");
        assert_eq!(g.release(Hold::Start), Step::Publish(exit(0)));
    }

    #[test]
    fn a_checkpoint_with_exit_holds_it_and_a_start_too() {
        let mut g = ExitGate::default();
        g.hold(Hold::Checkpoint);
        g.hold(Hold::Start);
        assert_eq!(g.init_exited(exit(137)), Step::Wait);
        assert_eq!(g.release(Hold::Checkpoint), Step::Wait);
        assert_eq!(g.release(Hold::Start), Step::Publish(exit(137)));
    }

    #[test]
    fn live_execs_exit_first_and_are_killed() {
        let mut g = ExitGate::default();
        g.exec_added("a");
        g.exec_added("b");
        assert_eq!(g.init_exited(exit(1)), Step::KillExecs);
        assert_eq!(g.exec_ended("a"), Step::KillExecs);
        assert_eq!(g.exec_ended("b"), Step::Publish(exit(1)));
    }

    #[test]
    fn an_exec_still_launching_reports_before_the_init() {
        let mut g = ExitGate::default();
        g.exec_added("late");
        assert_eq!(g.init_exited(exit(0)), Step::KillExecs);
        // The launch succeeds after the init is gone: it is killed, then exits.
        assert_eq!(g.exec_launched(), Step::KillExecs);
        assert_eq!(g.exec_ended("late"), Step::Publish(exit(0)));
        // Or it fails to launch: the same path.
        let mut g = ExitGate::default();
        g.exec_added("late");
        assert_eq!(g.init_exited(exit(0)), Step::KillExecs);
        assert_eq!(g.exec_ended("late"), Step::Publish(exit(0)));
    }

    #[test]
    fn holds_before_execs_then_execs() {
        let mut g = ExitGate::default();
        g.hold(Hold::Start);
        g.exec_added("x");
        assert_eq!(g.init_exited(exit(2)), Step::Wait, "no kill while held");
        assert_eq!(g.release(Hold::Start), Step::KillExecs);
        assert_eq!(g.exec_ended("x"), Step::Publish(exit(2)));
    }

    #[test]
    fn adoption_publishes_what_the_journal_lacks_and_a_restart_starts_over() {
        let mut g = ExitGate::adopted(Some(exit(9)), true, BTreeSet::new());
        assert_eq!(g.poll(), Step::Wait, "already published");
        assert_eq!(g.published_exit(), Some(exit(9)));
        let mut g = ExitGate::adopted(Some(exit(9)), false, BTreeSet::from(["e".to_string()]));
        assert_eq!(g.poll(), Step::KillExecs);
        assert_eq!(g.exec_ended("e"), Step::Publish(exit(9)));
        g.new_run();
        assert_eq!(g.published_exit(), None);
        assert!(!g.is_published());
        assert_eq!(g.init_exited(exit(5)), Step::Publish(exit(5)));
    }
}
