//! The Supervisor actor: owns the registry `(namespace, id) -> Addr<Container>`. It checks
//! and creates containers, hands out their addresses, lists them and deletes them. It never
//! waits on a runtime: those calls belong to each Container.

use super::container::{
    self, Container, ContainerEnv, ContainerRecord, GetInfo, Init, RestoreFrom, SharedEnv,
};
use super::events::Events;
use crate::error::{Error, Result};
use crate::journal::ExitKey;
use crate::layout::StateDir;
use crate::layout::SET_ASIDE_DIR;
use crate::runtime::{resolve_binary, OciRuntime, Runc};
use crate::types::*;
use actix::prelude::*;
use nix::fcntl::Flock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the Supervisor needs to know: where state goes, and how to run runtimes and shims.
#[derive(Clone, Debug)]
pub struct SupervisorSettings {
    /// Where container state lives (`<state>/<namespace>/<id>/...`).
    pub state_dir: PathBuf,
    /// The runtime's state root; each namespace gets `<root>/<namespace>`.
    pub runtime_root: PathBuf,
    /// The runtime for a create that names none: a name in `runtimes`, a path, or a name
    /// in PATH.
    pub default_runtime: PathBuf,
    /// Named runtimes, looked up before PATH.
    pub runtimes: BTreeMap<String, crate::config::RuntimeEntry>,
    /// How long one runtime call may take.
    pub runtime_timeout: Duration,
    /// The corral-shim binary.
    pub shim: PathBuf,
    /// How long a shim may take to create or exec its process.
    pub shim_timeout: Duration,
    /// The CRIU binary, checked before a restore.
    pub criu: PathBuf,
    /// Containers' logs.
    pub logs: std::sync::Arc<crate::config::LogSettings>,
    /// Where shims and containers' cgroups go.
    pub cgroups: crate::cgroups::placement::CgroupPlacement,
}

/// The registry of containers.
pub struct Supervisor {
    settings: SupervisorSettings,
    state: StateDir,
    events: Addr<Events>,
    containers: HashMap<ContainerKey, Addr<Container>>,
    /// Each container's summary, as it last pushed it ([`list`]), in namespace and id order.
    summaries: BTreeMap<ContainerKey, list::Known>,
    /// The runtimes in use, by (root, binary, arguments): one per namespace and runtime.
    runtimes: HashMap<(PathBuf, PathBuf, Vec<String>), std::sync::Arc<dyn OciRuntime>>,
    /// Exits the journal holds, until the containers in the state dir are adopted.
    journaled_exits: Option<HashSet<ExitKey>>,
    /// The state dir's lock, held for the supervisor's life.
    _lock: Flock<std::fs::File>,
    /// A heap trim is scheduled ([`Supervisor::trim_soon`]).
    trim_pending: bool,
    /// When a container last changed (a create, delete, adoption or summary), for the trim.
    last_change: std::time::Instant,
    /// Its own address, for the containers to push their summaries to.
    address: Option<Addr<Supervisor>>,
    /// What every container's environment shares ([`Supervisor::env`]).
    shared_env: Option<std::sync::Arc<SharedEnv>>,
    /// The epoll set of every container's OOM notifier, made with the first container.
    oom_set: Option<std::sync::Arc<crate::actors::container::oom_set::OomSet>>,
}

mod adopt;
mod create;
mod list;

pub use create::{Create, Restore};
pub use list::{All, List, ListFrame, LIST_ANSWER_WITHIN};

impl Supervisor {
    /// A supervisor that adopts the containers in the state dir when it starts;
    /// `journaled_exits` are the /tasks/exit events already in the journal.
    pub fn new(
        settings: SupervisorSettings,
        events: Addr<Events>,
        journaled_exits: HashSet<ExitKey>,
        lock: Flock<std::fs::File>,
    ) -> Self {
        Supervisor {
            state: StateDir::new(&settings.state_dir),
            settings,
            events,
            containers: HashMap::new(),
            summaries: BTreeMap::new(),
            runtimes: HashMap::new(),
            journaled_exits: Some(journaled_exits),
            _lock: lock,
            trim_pending: false,
            last_change: std::time::Instant::now(),
            address: None,
            shared_env: None,
            oom_set: None,
        }
    }

    /// A container's environment. Its runtime is shared with every container of the same
    /// namespace and runtime (a `Runc` holds no per-container state).
    fn env(&mut self, runtime: Runc) -> ContainerEnv {
        let key = (
            runtime.root.clone(),
            runtime.path.clone(),
            runtime.args.clone(),
        );
        let runtime = self
            .runtimes
            .entry(key)
            .or_insert_with(|| std::sync::Arc::new(runtime))
            .clone();
        if self.oom_set.is_none() {
            match crate::actors::container::oom_set::OomSet::start() {
                Ok(set) => self.oom_set = Some(set),
                Err(e) => tracing::error!(
                    "cannot make the OOM watch set ({e}): OOM kills are found only at exits"
                ),
            }
        }
        let shared = match &self.shared_env {
            Some(shared) => shared.clone(),
            None => {
                let shared = std::sync::Arc::new(SharedEnv {
                    shim_timeout: self.settings.shim_timeout,
                    events: self.events.clone(),
                    criu: self.settings.criu.clone(),
                    logs: self.settings.logs.clone(),
                    supervisor: self.address.clone(),
                    oom_set: self.oom_set.clone(),
                });
                // Kept once the supervisor knows its address (always, once started).
                if self.address.is_some() {
                    self.shared_env = Some(shared.clone());
                }
                shared
            }
        };
        ContainerEnv { runtime, shared }
    }

    fn runtime_for(&self, namespace: &str, binary: std::path::PathBuf, args: Vec<String>) -> Runc {
        Runc {
            path: binary,
            root: self.settings.runtime_root.join(namespace),
            args,
            timeout: self.settings.runtime_timeout,
            shim: self.settings.shim.clone(),
            shim_cgroup: self.settings.cgroups.shims.clone(),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.address = Some(ctx.address());
        if let Some(journaled) = self.journaled_exits.take() {
            self.adopt_all(journaled, ctx);
            self.trim_soon(ctx);
        }
    }
}

/// How long after a create, a delete or the adoption (and after the last summary pushed
/// meanwhile) the heap is trimmed: a burst of them (a thousand creates, or the adoption of
/// a thousand containers, whose processes are adopted after the Supervisor started) is
/// trimmed once it is over.
const TRIM_AFTER: Duration = Duration::from_millis(500);

impl Supervisor {
    /// Gives the memory that creates, deletes and adoptions used and freed back to the
    /// system, once the burst is over: glibc keeps freed pages in the middle of its heap
    /// otherwise (a thousand creates left about 2 KiB per container resident). One trim
    /// walks the free chunks once: well under a millisecond.
    fn trim_soon(&mut self, ctx: &mut Context<Self>) {
        self.last_change = std::time::Instant::now();
        if self.trim_pending {
            return;
        }
        self.trim_pending = true;
        self.trim_later(TRIM_AFTER, ctx);
    }

    /// Trims after `delay`, or later if containers changed meanwhile (each summary
    /// pushed counts): a burst still going is not trimmed in its middle only.
    fn trim_later(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(delay, |act, ctx| {
            let quiet = act.last_change.elapsed();
            if quiet < TRIM_AFTER {
                act.trim_later(TRIM_AFTER - quiet, ctx);
                return;
            }
            act.trim_pending = false;
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free memory of the allocator's own heap.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }
}

/// The address of a container.
#[derive(Message)]
#[rtype(result = "Result<Addr<Container>>")]
pub struct Lookup(pub ContainerKey);

/// Deletes a container and forgets it.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Remove {
    /// Which.
    pub key: ContainerKey,
    /// Kill it first if running.
    pub force: bool,
}

impl Handler<Lookup> for Supervisor {
    type Result = Result<Addr<Container>>;

    fn handle(&mut self, Lookup(key): Lookup, _: &mut Context<Self>) -> Self::Result {
        self.containers
            .get(&key)
            .filter(|a| a.connected())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {key}")))
    }
}

impl Handler<Remove> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Remove { key, force }: Remove, _: &mut Context<Self>) -> Self::Result {
        let Some(addr) = self.containers.get(&key).cloned() else {
            return Box::pin(actix::fut::ready(Err(Error::NotFound(format!(
                "container {key}"
            )))));
        };
        Box::pin(
            async move {
                addr.send(container::Delete { force })
                    .await
                    .unwrap_or_else(|_| Err(Error::NotFound("container is gone".into())))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if result.is_ok() {
                    act.containers.remove(&key);
                    act.summaries.remove(&key);
                }
                act.trim_soon(ctx);
                result
            }),
        )
    }
}

/// Answers at once: the supervisor is serving (its mailbox is read).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}
