//! The Supervisor actor: owns the registry `(namespace, id) -> Addr<Container>`. It checks
//! and creates containers, hands out their addresses, lists them and deletes them. It never
//! waits on a runtime: those calls belong to each Container.

use super::container::{
    self, Container, ContainerEnv, ContainerRecord, GetInfo, Init, RestoreFrom,
};
use super::events::Events;
use crate::error::{Error, Result};
use crate::journal::ExitKey;
use crate::layout::StateDir;
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
}

/// The registry of containers.
pub struct Supervisor {
    settings: SupervisorSettings,
    state: StateDir,
    events: Addr<Events>,
    containers: HashMap<ContainerKey, Addr<Container>>,
    /// Each container's state when it last answered a list (boxed: a table of a thousand
    /// inline infos would hold room for two thousand).
    summaries: HashMap<ContainerKey, Box<ContainerInfo>>,
    /// The runtimes in use, by (root, binary, arguments): one per namespace and runtime.
    runtimes: HashMap<(PathBuf, PathBuf, Vec<String>), std::sync::Arc<dyn OciRuntime>>,
    /// Exits the journal holds, until the containers in the state dir are adopted.
    journaled_exits: Option<HashSet<ExitKey>>,
    /// The state dir's lock, held for the supervisor's life.
    _lock: Flock<std::fs::File>,
    /// A heap trim is scheduled ([`Supervisor::trim_soon`]).
    trim_pending: bool,
}

/// Where state that could not be read is moved, under the state dir (not a valid namespace).
use crate::layout::SET_ASIDE_DIR;

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
            summaries: HashMap::new(),
            runtimes: HashMap::new(),
            journaled_exits: Some(journaled_exits),
            _lock: lock,
            trim_pending: false,
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
        ContainerEnv {
            runtime,
            shim_timeout: self.settings.shim_timeout,
            events: self.events.clone(),
            criu: self.settings.criu.clone(),
        }
    }

    /// Moves a container's state out of the way, keeping it for a person to look at.
    fn set_aside(&self, dir: &Path, why: &str) {
        let name = dir
            .strip_prefix(self.state.path())
            .map(|p| p.to_string_lossy().replace('/', "."))
            .unwrap_or_else(|_| "unknown".into());
        let target = self
            .state
            .path()
            .join(SET_ASIDE_DIR)
            .join(format!("{name}.{}", now_ns()));
        let moved = std::fs::create_dir_all(target.parent().unwrap_or(self.state.path()))
            .and_then(|()| std::fs::rename(dir, &target));
        match moved {
            Ok(()) => tracing::warn!(
                "{}: {why}; its state was set aside in {}",
                dir.display(),
                target.display()
            ),
            Err(e) => tracing::error!("{}: {why}; could not set it aside: {e}", dir.display()),
        }
    }

    /// Adopts every container found in the state dir (daemon start). Each is registered
    /// before its actor starts watching its processes, so no exit finds nobody to tell.
    fn adopt_all(&mut self, journaled: HashSet<ExitKey>, ctx: &mut Context<Self>) {
        let dirs = |p: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| validate_id("id", n).is_ok())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        let mut adopted = 0;
        for namespace in dirs(self.state.path()) {
            for id in dirs(&self.state.namespace(&namespace)) {
                let dir = self.state.container(&namespace, &id);
                let record = ContainerRecord::load(&dir);
                let record = match record {
                    Ok(r) if r.namespace == namespace && r.id == id => r,
                    Ok(r) => {
                        self.set_aside(
                            dir.path(),
                            &format!("state.json names {}/{}", r.namespace, r.id),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.set_aside(dir.path(), &e.to_string());
                        continue;
                    }
                };
                let runtime = self.runtime_for(
                    &namespace,
                    record.runtime.clone(),
                    record.runtime_args.clone(),
                );
                let init = dir.process(INIT_PROCESS);
                // A restart the daemon died in: the last run's init/ stands again first.
                container::take_back_last_run(&dir);
                // The runtime's bundle: corral's own copy of the spec when it wrote one, which
                // outlives the user's bundle dir.
                let runtime_bundle = record.runtime_bundle.as_ref().unwrap_or(&record.bundle);
                let broken = if !crate::layout::bundle_config(runtime_bundle).is_file() {
                    Some(format!("its bundle {} is gone", runtime_bundle.display()))
                } else if init.read_pid().is_none() {
                    Some("its create never finished".to_string())
                } else {
                    None
                };
                if let Some(why) = broken {
                    // Stop whatever is left of it; keep its files for a person to read. The
                    // shim's whole process group (it is a session leader): a runtime call
                    // still running under it would otherwise go on to create the container
                    // after the delete below, and write its pid file into a new container
                    // of the same id.
                    if let Some((shim, start)) = init.read_shim_pid() {
                        if crate::layout::same_process(shim, start) {
                            let _ = nix::sys::signal::killpg(
                                nix::unistd::Pid::from_raw(shim),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    self.set_aside(dir.path(), &why);
                    let cgroup = record.cgroups.clone();
                    // Held (`wait`): no create of the same id may run before this delete,
                    // which would otherwise fail on the leftover, or be deleted by it.
                    ctx.wait(
                        async move {
                            if let Err(e) = runtime.delete(&record.id, true).await {
                                tracing::warn!("removing {}: {e}", record.id);
                            }
                            crate::cgroups::remove_leftovers(&cgroup);
                        }
                        .into_actor(self),
                    );
                    continue;
                }
                let key = ContainerKey {
                    namespace: namespace.clone(),
                    id: id.clone(),
                };
                let published: HashSet<(String, u32)> = journaled
                    .iter()
                    .filter(|(n, i, _, _)| *n == namespace && *i == id)
                    .map(|(_, _, p, pid)| (p.clone(), *pid))
                    .collect();
                let env = self.env(runtime);
                // Registered first; the actor adopts its processes when it starts.
                let container = Container::adopted(record, dir, env, published);
                self.containers.insert(key, container.start());
                adopted += 1;
            }
        }
        if adopted > 0 {
            tracing::info!(
                "adopted {adopted} container(s) from {}",
                self.state.path().display()
            );
            crate::limits::warn_if_short(adopted);
        }
    }

    fn runtime_for(&self, namespace: &str, binary: std::path::PathBuf, args: Vec<String>) -> Runc {
        Runc {
            path: binary,
            root: self.settings.runtime_root.join(namespace),
            args,
            timeout: self.settings.runtime_timeout,
            shim: self.settings.shim.clone(),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(journaled) = self.journaled_exits.take() {
            self.adopt_all(journaled, ctx);
            self.trim_soon(ctx);
        }
    }
}

/// How long after a create, a delete or the adoption the heap is trimmed: a burst of them
/// (a thousand creates) is trimmed once, after it.
const TRIM_AFTER: Duration = Duration::from_millis(500);

impl Supervisor {
    /// Gives the memory that creates and deletes used and freed back to the system, once
    /// the burst is over: glibc keeps freed pages in the middle of its heap otherwise (a
    /// thousand creates left about 2 KiB per container resident). One trim walks the free
    /// chunks once: well under a millisecond.
    fn trim_soon(&mut self, ctx: &mut Context<Self>) {
        if self.trim_pending {
            return;
        }
        self.trim_pending = true;
        ctx.run_later(TRIM_AFTER, |act, _| {
            act.trim_pending = false;
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free memory of the allocator's own heap.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }
}

/// Creates a container.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Create(pub CreateRequest);

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

/// Lists the containers of a namespace whose labels include all of `labels`.
#[derive(Message)]
#[rtype(result = "Vec<ContainerInfo>")]
pub struct List {
    /// The namespace.
    pub namespace: String,
    /// `key=value` pairs that must all match.
    pub labels: BTreeMap<String, String>,
}

impl Handler<Create> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Create(req): Create, _: &mut Context<Self>) -> Self::Result {
        self.create(req, None)
    }
}

/// Restores a container from a checkpoint, under its own id or a new one.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Restore {
    /// The namespace of the checkpointed container (and of the restored one).
    pub namespace: String,
    /// The checkpointed container's id.
    pub id: String,
    /// The checkpoint's name.
    pub name: String,
    /// Restore under this id instead.
    pub new_id: Option<String>,
    /// Use this bundle instead of the one the checkpoint records.
    pub bundle: Option<std::path::PathBuf>,
}

impl Handler<Restore> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Restore, _: &mut Context<Self>) -> Self::Result {
        let namespace = namespace_or_default(&msg.namespace).to_string();
        let store = crate::checkpoint::CheckpointStore::new(&self.settings.runtime_root);
        let found = store.get(&namespace, &msg.id, &msg.name).and_then(|info| {
            crate::checkpoint::check_criu(&self.settings.criu)?;
            Ok((info, store.dir(&namespace, &msg.id, &msg.name)?))
        });
        let (info, dir) = match found {
            Ok(found) => found,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let new_id = msg.new_id.unwrap_or_else(|| msg.id.clone());
        if let Ok(key) = ContainerKey::new(&namespace, &new_id) {
            if self.containers.contains_key(&key) {
                return Box::pin(actix::fut::ready(Err(Error::AlreadyExists(format!(
                    "container {key}: delete it first, or restore under another id (--as NEW_ID)"
                )))));
            }
        }
        let req = CreateRequest {
            namespace,
            id: new_id,
            bundle: msg.bundle.unwrap_or(info.bundle),
            start: true,
            labels: info.labels,
            restart: info.restart,
            ..CreateRequest::default()
        };
        let from = RestoreFrom {
            dir,
            options: info.options,
        };
        self.create(req, Some(from))
    }
}

impl Supervisor {
    /// The binary and global arguments for a request's runtime: a name in the runtimes
    /// table (its arguments first, then the request's), else a path or a name in PATH.
    fn resolve_runtime(&self, wanted: &Path, args: &[String]) -> Result<(PathBuf, Vec<String>)> {
        let bare = wanted.components().count() == 1 && !wanted.is_absolute();
        let entry = bare
            .then(|| {
                self.settings
                    .runtimes
                    .get(wanted.to_string_lossy().as_ref())
            })
            .flatten();
        let (binary, mut all) = match entry {
            Some(e) => (e.binary.clone(), e.args.clone()),
            None => (wanted.to_path_buf(), Vec::new()),
        };
        all.extend_from_slice(args);
        match resolve_binary(&binary) {
            Some(found) => Ok((found, all)),
            None if entry.is_some() => Err(Error::InvalidArgument(format!(
                "runtime {}: its binary {} is not found or not executable",
                wanted.display(),
                binary.display()
            ))),
            None if bare => Err(Error::InvalidArgument(format!(
                "runtime {} is neither a configured runtime (known: {}) nor found in PATH",
                wanted.display(),
                self.settings
                    .runtimes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Err(Error::InvalidArgument(format!(
                "runtime {} not found or not executable",
                wanted.display()
            ))),
        }
    }

    /// Checks a create request, registers its Container and has it create (or restore) the
    /// container; a failure unregisters it.
    fn create(
        &mut self,
        req: CreateRequest,
        restore: Option<RestoreFrom>,
    ) -> ResponseActFuture<Self, Result<ContainerInfo>> {
        let checked = (|| {
            let key = ContainerKey::new(namespace_or_default(&req.namespace), &req.id)?;
            if self.containers.contains_key(&key) {
                return Err(Error::AlreadyExists(format!("container {key}")));
            }
            let dir = self.state.container(&key.namespace, &key.id);
            if dir.path().exists() {
                return Err(Error::AlreadyExists(format!(
                    "container {key}: its state directory {} is still there",
                    dir.path().display()
                )));
            }
            let ns_dir = self.state.namespace(&key.namespace);
            if ns_dir.exists() && !ns_dir.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "namespace {:?} clashes with the file {}",
                    key.namespace,
                    ns_dir.display()
                )));
            }
            let (bundle, spec) = crate::bundle::check(&req.bundle)?;
            let runtime_spec = crate::bundle::runtime_spec(&spec, &bundle, &key.namespace, &key.id);
            let wanted = req
                .runtime
                .clone()
                .unwrap_or_else(|| self.settings.default_runtime.clone());
            let (runtime_bin, runtime_args) = self.resolve_runtime(&wanted, &req.runtime_args)?;
            req.stdio.check_absolute("")?;
            let runtime =
                self.runtime_for(&key.namespace, runtime_bin.clone(), runtime_args.clone());
            let record = ContainerRecord {
                namespace: key.namespace.clone(),
                id: key.id.clone(),
                cgroups: crate::bundle::cgroup_paths(
                    runtime_spec.as_ref().unwrap_or(&spec),
                    &key.id,
                ),
                runtime_bundle: runtime_spec.as_ref().map(|_| dir.path().to_path_buf()),
                bundle,
                runtime: runtime_bin,
                runtime_args,
                labels: req.labels.clone(),
                stdio: req.stdio.clone(),
                created_at_ns: now_ns(),
                restart: req.restart,
                restarts: 0,
                stopped_by_user: false,
                manually_stopped: false,
                exited_by_checkpoint: false,
                oom_seen: 0,
                oom_kills: 0,
            };
            Ok((key, dir, record, runtime, runtime_spec))
        })();
        let (key, dir, record, runtime, runtime_spec) = match checked {
            Ok(parts) => parts,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let env = self.env(runtime);
        let addr = Container::new(record, dir, env).start();
        self.containers.insert(key.clone(), addr.clone());
        let start = req.start;
        Box::pin(
            async move {
                let init = Init {
                    start,
                    restore,
                    runtime_spec,
                };
                addr.send(init).await.unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "container actor stopped during create".into(),
                    ))
                })
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if result.is_err() {
                    act.containers.remove(&key);
                }
                act.trim_soon(ctx);
                result
            }),
        )
    }
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

impl Handler<List> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<ContainerInfo>>;

    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        let asked = self.ask_all(Some(&msg.namespace));
        Box::pin(asked.map(move |mut out, _, _| {
            out.retain(|info| {
                msg.labels
                    .iter()
                    .all(|(k, v)| info.labels.get(k) == Some(v))
            });
            out.sort_by(|a, b| a.id.cmp(&b.id));
            out
        }))
    }
}

/// Every container in every namespace.
#[derive(Message)]
#[rtype(result = "Vec<ContainerInfo>")]
pub struct All;

impl Handler<All> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<ContainerInfo>>;

    fn handle(&mut self, _: All, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.ask_all(None))
    }
}

/// How long a list waits for one container before it answers with that container's last
/// known state, marked busy (a restart in flight holds a container's mailbox).
pub const LIST_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

impl Supervisor {
    /// Asks every container (of `namespace`, if given) for its state, all at once, for at
    /// most [`LIST_ANSWER_WITHIN`] in all; one that does not answer in time is told from its
    /// last known state, so one wedged container never holds up a list. One deadline for
    /// the whole list (not a timer per container), and a summary is copied only when it
    /// changed: a list of a thousand containers costs their answers and little else.
    fn ask_all(
        &mut self,
        namespace: Option<&str>,
    ) -> impl ActorFuture<Self, Output = Vec<ContainerInfo>> + use<> {
        let (keys, addrs): (Vec<ContainerKey>, Vec<Addr<Container>>) = self
            .containers
            .iter()
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(k, a)| (k.clone(), a.clone()))
            .unzip();
        let answers = async move {
            use futures_util::stream::{FuturesUnordered, StreamExt};
            let mut pending: FuturesUnordered<_> = addrs
                .into_iter()
                .enumerate()
                .map(|(i, addr)| async move { (i, addr.send(GetInfo).await) })
                .collect();
            let mut answers: Vec<Option<Option<ContainerInfo>>> = vec![None; keys.len()];
            let deadline = tokio::time::sleep(LIST_ANSWER_WITHIN);
            let mut deadline = std::pin::pin!(deadline);
            use futures_util::future::{select, Either};
            // Until every container answered, or the deadline.
            while let Either::Left((Some((i, answer)), _)) =
                select(pending.next(), deadline.as_mut()).await
            {
                // `Some(None)`: deleted meanwhile.
                answers[i] = Some(answer.ok());
            }
            (keys, answers)
        };
        answers.into_actor(self).map(|(keys, answers), act, _| {
            let mut out = Vec::with_capacity(answers.len());
            for (key, answer) in keys.into_iter().zip(answers) {
                match answer {
                    Some(Some(info)) => {
                        match act.summaries.get_mut(&key) {
                            Some(known) if **known == info => {}
                            Some(known) => (**known).clone_from(&info),
                            None => {
                                act.summaries.insert(key, Box::new(info.clone()));
                            }
                        }
                        out.push(info);
                    }
                    Some(None) => {}
                    None => {
                        let mut info = act
                            .summaries
                            .get(&key)
                            .map(|known| ContainerInfo::clone(known))
                            .unwrap_or_else(|| ContainerInfo::unknown(&key.namespace, &key.id));
                        info.busy = true;
                        out.push(info);
                    }
                }
            }
            if act.summaries.len() > act.containers.len() {
                act.summaries.retain(|k, _| act.containers.contains_key(k));
            }
            out
        })
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
