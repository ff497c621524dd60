//! Reading a container without changing it: its state (`GetInfo`, always allowed), its pids (`Pids`,
//! `runtime ps`) and its cgroup statistics (`GetStats`, straight from the cgroup files).

use super::state::Verb;
use super::Container;
use crate::error::Result;
use crate::types::*;
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Reads the container's state.
#[derive(Message)]
#[rtype(result = "ContainerInfo")]
pub struct GetInfo;

/// Lists the pids in the container.
#[derive(Message)]
#[rtype(result = "Result<Vec<PidInfo>>")]
pub struct Pids;

/// Reads statistics from the container's cgroup.
#[derive(Message)]
#[rtype(result = "Result<crate::cgroups::Stats>")]
pub struct GetStats;

impl Handler<GetInfo> for Container {
    type Result = MessageResult<GetInfo>;

    fn handle(&mut self, _: GetInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.info())
    }
}

impl Handler<Pids> for Container {
    type Result = ResponseActFuture<Self, Result<Vec<PidInfo>>>;

    fn handle(&mut self, _: Pids, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.guard(Verb::Pids) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        // Nothing runs in a stopped (or not yet created) container: no runtime call.
        if !self.life.is_live() {
            return Box::pin(actix::fut::ready(Ok(Vec::new())));
        }
        let listed = self.env.runtime.ps(&self.record.id);
        Box::pin(listed.into_actor(self).map(|result, act, _| {
            let pids = result?;
            let known: BTreeMap<u32, String> =
                std::iter::once((act.init.pid, INIT_PROCESS.to_string()))
                    .chain(act.execs.iter().map(|(id, s)| (s.pid, id.clone())))
                    .collect();
            let mut seen = BTreeSet::new();
            Ok(pids
                .into_iter()
                .filter(|p| seen.insert(*p))
                .map(|pid| PidInfo {
                    pid,
                    process_id: known.get(&pid).cloned(),
                })
                .collect())
        }))
    }
}

impl Handler<GetStats> for Container {
    type Result = Result<crate::cgroups::Stats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        self.guard(Verb::Stats)?;
        crate::cgroups::host().stats(&self.record.cgroups)
    }
}
