//! The OOM watch: an eventfd (cgroup v1) or inotify (v2) wakes the container, which compares
//! the kernel's `oom_kill` counter with what it last saw and publishes `/tasks/oom` for each
//! new kill. The counter is read again before the init's exit is published, so `/tasks/oom`
//! always comes before the `/tasks/exit` it caused.

use super::Container;
use crate::types::*;
use actix::prelude::*;

/// When to look at the kill counter again after a wake-up that found no new kill (each
/// delay after the previous look).
const OOM_RECHECKS: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(5),
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
];

/// The container's OOM watch and what it has seen in the current run.
#[derive(Default)]
pub(super) struct OomWatch {
    /// Its notifier in the daemon's [`OomSet`](super::oom_set::OomSet).
    registration: Option<super::oom_set::OomRegistration>,
    /// The parent cgroup's counter (v2), for an exit whose cgroup is already gone.
    parent: Option<crate::cgroups::oom::ParentCounter>,
    kills_this_run: u64,
}

impl OomWatch {
    /// Whether the current run's init was OOM-killed (so far).
    pub(super) fn killed_this_run(&self) -> bool {
        self.kills_this_run > 0
    }
}

impl Container {
    /// Watches the cgroup for OOM kills (after a create, a restart or an adoption); with
    /// `fresh_cgroup`, the counter starts from 0 (a new cgroup).
    pub(super) fn watch_oom(&mut self, fresh_cgroup: bool, ctx: &mut Context<Self>) {
        self.oom.registration = None;
        // The init process tells where its cgroups really are, unless it is already
        // exiting (the kernel then says "/"): the recorded paths stand then.
        if let Some(paths) = crate::cgroups::CgroupPaths::of_container(self.init.pid) {
            if paths != self.record.cgroups {
                self.record.cgroups = paths;
                self.save_record();
            }
        }
        let h = crate::cgroups::host();
        self.oom.parent = crate::cgroups::oom::ParentCounter::open(h, &self.record.cgroups);
        let notify = match crate::cgroups::oom::watch(h, &self.record.cgroups) {
            Ok(notify) => Some(notify),
            Err(e) => {
                tracing::warn!("{}: cannot watch for OOM kills: {e}", self.key());
                None
            }
        };
        if fresh_cgroup {
            // A new cgroup starts at 0 kills: one already counted happened in this run.
            self.record.oom_seen = 0;
            self.oom.kills_this_run = 0;
        }
        // Kills since the baseline (before we watched, or while the daemon was down).
        self.check_oom();
        let (Some(fd), Some(set)) = (notify, &self.env.oom_set) else {
            return;
        };
        // One epoll set serves every container's notifier and sends us `OomWoken`.
        match set.add(fd, ctx.address().downgrade()) {
            Ok(registration) => self.oom.registration = Some(registration),
            Err(e) => tracing::warn!("{}: cannot watch for OOM kills: {e}", self.key()),
        }
    }

    /// A wake-up of the OOM watch (`recheck` 0), or a look again after one that found no
    /// new kill: on cgroup v1 the eventfd fires when the cgroup goes under OOM, before the
    /// OOM killer has chosen its victim and counted the kill, so the first look can come
    /// too early (seen: a child's kill while the container ran went unreported now and
    /// then). Looks again after each of [`OOM_RECHECKS`] until a kill is counted.
    pub(super) fn oom_woken(&mut self, recheck: usize, ctx: &mut Context<Self>) {
        let seen = self.record.oom_seen;
        self.check_oom();
        if self.record.oom_seen != seen {
            return;
        }
        if let Some(delay) = OOM_RECHECKS.get(recheck) {
            ctx.run_later(*delay, move |act, ctx| act.oom_woken(recheck + 1, ctx));
        }
    }

    /// Publishes /tasks/oom for kills the kernel counted since we last looked. Returns
    /// false when the cgroup's counter could not be read (the cgroup is gone).
    pub(super) fn check_oom(&mut self) -> bool {
        let h = crate::cgroups::host();
        let Some(n) = crate::cgroups::oom::kill_count(h, &self.record.cgroups) else {
            return false;
        };
        if n > self.record.oom_seen {
            let new = n - self.record.oom_seen;
            if let Some(parent) = &self.oom.parent {
                parent.claim(new);
            }
            self.record.oom_kills += new as u32;
            self.record.oom_seen = n;
            self.oom.kills_this_run += new;
            self.save_record();
            self.emit(Topic::TaskOom, INIT_PROCESS, self.init.pid)
                .send();
        }
        true
    }

    /// [`Container::check_oom`] before the init's exit is published. When the cgroup is
    /// already gone (systemd removes an empty scope at once, often before corrald reads
    /// its counter) and the init died of SIGKILL, a kill the parent cgroup counted and no
    /// container under it claimed is this one's.
    pub(super) fn check_oom_at_exit(&mut self, exit: &ExitStatus) {
        if self.check_oom() || self.oom.kills_this_run > 0 || exit.code != 128 + 9 {
            return;
        }
        if !self.oom.parent.as_ref().is_some_and(|p| p.claim_unseen()) {
            return;
        }
        tracing::info!(
            "{}: its cgroup was gone at its exit (SIGKILL); the parent cgroup counted an \
             OOM kill no container claimed: taken as this one's",
            self.key()
        );
        self.record.oom_kills += 1;
        self.oom.kills_this_run += 1;
        self.save_record();
        self.emit(Topic::TaskOom, INIT_PROCESS, self.init.pid)
            .send();
    }
}
