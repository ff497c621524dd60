//! corral: a container supervisor for one Linux host.
//!
//! The daemon `corrald`, the per-process `corral-shim` and the CLI `corralctl` are thin
//! layers over this library. A host agent can embed the supervisor in its own process with
//! [`Corral::spawn`] (its own thread) or [`start`] (inside an actix system), and call every
//! operation through the returned [`Handle`] without a socket.
//!
//! ```no_run
//! # async fn demo() -> corral::Result<()> {
//! let handle = corral::Corral::spawn(corral::Config::default())?;
//! let info = handle.create(corral::CreateRequest {
//!     id: "hello".into(),
//!     bundle: "/tmp/bundle".into(),
//!     start: true,
//!     ..Default::default()
//! }).await?;
//! let exit = handle.wait("default", "hello", None).await?;
//! handle.delete("default", "hello", false).await?;
//! # Ok(()) }
//! ```

pub mod actors;
pub mod bundle;
pub mod cgroups;
pub mod checkpoint;
pub mod error;
pub mod journal;
pub mod launch;
pub mod layout;
pub mod metrics;
pub mod reaper;
pub mod rpc;
pub mod runtime;
pub mod shim;
pub mod types;

pub use actors::EventStream;
/// The statistics types at their old path (`corral::stats::Stats`).
pub use cgroups::stats;
pub use error::{Error, Result};
pub use types::*;

use actix::prelude::*;
use actors::container::{self, Container};
use actors::events::{Events, Subscribe, SubscriberCounts};
use actors::supervisor::{self, Supervisor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The supervisor's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where container state lives (`<state>/<namespace>/<id>/...`).
    pub state_dir: PathBuf,
    /// The runtime's state root; each namespace gets `<root>/<namespace>`.
    pub runtime_root: PathBuf,
    /// The default runtime binary (a path, or a name looked up in PATH).
    pub runtime: PathBuf,
    /// The corral-shim binary.
    pub shim: PathBuf,
    /// How long one runtime call may take.
    pub runtime_timeout: Duration,
    /// How long a shim may take to create or exec its process.
    pub shim_timeout: Duration,
    /// The CRIU binary for checkpoint and restore.
    pub criu: PathBuf,
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/corral";
/// The default runtime root.
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/corral-runc";
/// The event journal's directory under the state dir (not a valid namespace name).
pub const JOURNAL_DIR: &str = "_events";
/// The version of this library and its binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: DEFAULT_STATE_DIR.into(),
            runtime_root: DEFAULT_RUNTIME_ROOT.into(),
            runtime: "runc".into(),
            shim: default_shim_path(),
            runtime_timeout: Duration::from_secs(30),
            shim_timeout: Duration::from_secs(60),
            criu: default_criu_path(),
        }
    }
}

/// `corral-shim` beside the current executable (or beside its parent dir, for test and
/// example binaries under target/), else the bare name for a PATH lookup.
pub fn default_shim_path() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("corral-shim");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("corral-shim")
}

/// CRIU 4.1.1 at /usr/local/sbin/criu when there, else `criu` from PATH.
pub fn default_criu_path() -> PathBuf {
    let built = PathBuf::from(checkpoint::DEFAULT_CRIU);
    if built.is_file() {
        built
    } else {
        PathBuf::from("criu")
    }
}

/// Ways to start the supervisor.
pub struct Corral;

impl Corral {
    /// Starts the supervisor on a thread of its own and returns its handle.
    pub fn spawn(config: Config) -> Result<Handle> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("corral".into())
            .spawn(move || {
                let system = System::new();
                system.block_on(async move {
                    let _ = tx.send(start(config).await);
                });
                system.run().ok();
            })
            .map_err(|e| Error::Internal(format!("cannot start the supervisor thread: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Internal("the supervisor thread died while starting".into()))?
    }
}

/// Starts the supervisor's actors in the current actix system and returns its handle.
pub async fn start(config: Config) -> Result<Handle> {
    for dir in [&config.state_dir, &config.runtime_root] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    let lock = lock_state_dir(&config.state_dir)?;
    if !on_tmpfs(&config.state_dir) {
        tracing::warn!(
            "state dir {} is not on a tmpfs: every exit then waits on the disk's journal \
             (about a millisecond here); /run is a tmpfs on most hosts",
            config.state_dir.display()
        );
    }
    // The reaper comes first: no child may be spawned before SIGCHLD is watched.
    let reaper = actors::Reaper.start();
    let journal_dir = config.state_dir.join(JOURNAL_DIR);
    let recovered = journal::Journal::open(&journal_dir).map_err(|e| {
        Error::io(
            format!("open the event journal in {}", journal_dir.display()),
            e,
        )
    })?;
    if recovered.corrupt_lines > 0 {
        tracing::warn!(
            "event journal: skipped {} corrupt line(s); numbering continues after {}",
            recovered.corrupt_lines,
            recovered.last_seq
        );
    }
    let events = Events::new(Some((recovered.journal, journal_dir)), recovered.last_seq).start();
    let runtime_root = config.runtime_root.clone();
    match checkpoint::check_criu(&config.criu) {
        Ok(()) => tracing::debug!("CRIU at {}", config.criu.display()),
        Err(e) => tracing::warn!("checkpoint and restore unavailable: {e}"),
    }
    // The supervisor adopts the containers already in the state dir as it starts.
    let supervisor =
        Supervisor::new(Arc::new(config), events.clone(), recovered.exits, lock).start();
    Ok(Handle {
        supervisor,
        runtime_root,
        events,
        _reaper: reaper,
    })
}

/// Whether `dir` is on a tmpfs.
fn on_tmpfs(dir: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Takes the state dir for this supervisor alone (`<state>/_lock`, flock): two supervisors
/// adopting and reaping the same containers would each report what the other did.
fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = state_dir.join("_lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::AlreadyExists(format!(
            "another corral supervisor is using the state dir {}",
            state_dir.display()
        )));
    }
    Ok(file)
}

/// A handle on a running supervisor: every operation, callable from any thread or runtime.
#[derive(Clone)]
pub struct Handle {
    supervisor: Addr<Supervisor>,
    runtime_root: PathBuf,
    events: Addr<Events>,
    _reaper: Addr<actors::Reaper>,
}

fn mailbox(e: MailboxError) -> Error {
    Error::Internal(format!("the supervisor is gone: {e}"))
}

impl Handle {
    async fn container(&self, namespace: &str, id: &str) -> Result<Addr<Container>> {
        let key = ContainerKey::new(namespace_or_default(namespace), id)?;
        self.supervisor
            .send(supervisor::Lookup(key))
            .await
            .map_err(mailbox)?
    }

    async fn ask<M>(&self, namespace: &str, id: &str, msg: M) -> Result<M::Result>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Container: Handler<M>,
    {
        let addr = self.container(namespace, id).await?;
        addr.send(msg).await.map_err(|_| {
            Error::NotFound(format!(
                "container {}/{id} (deleted meanwhile)",
                namespace_or_default(namespace)
            ))
        })
    }

    /// Creates a container (and starts it when `req.start`).
    pub async fn create(&self, req: CreateRequest) -> Result<ContainerInfo> {
        self.supervisor
            .send(supervisor::Create(req))
            .await
            .map_err(mailbox)?
    }

    /// Starts a created container.
    pub async fn start(&self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        self.ask(namespace, id, container::Start).await?
    }

    /// Runs another process in a running container.
    pub async fn exec(&self, req: ExecRequest) -> Result<ProcessInfo> {
        let msg = container::Exec {
            exec_id: req.exec_id,
            process: req.process,
            stdio: req.stdio,
        };
        self.ask(&req.namespace, &req.id, msg).await?
    }

    /// Sends a signal to a process, or to all of a container's processes.
    pub async fn kill(&self, req: KillRequest) -> Result<()> {
        let msg = container::Kill {
            exec_id: req.exec_id,
            signal: req.signal,
            all: req.all,
        };
        self.ask(&req.namespace, &req.id, msg).await?
    }

    /// Waits for a process to exit; returns at once if it already has.
    pub async fn wait(
        &self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
    ) -> Result<ExitStatus> {
        let msg = container::Wait {
            exec_id: exec_id.map(str::to_string),
        };
        self.ask(namespace, id, msg).await?
    }

    /// Deletes a container; a running one only with `force`.
    pub async fn delete(&self, namespace: &str, id: &str, force: bool) -> Result<ContainerInfo> {
        let key = ContainerKey::new(namespace_or_default(namespace), id)?;
        self.supervisor
            .send(supervisor::Remove { key, force })
            .await
            .map_err(mailbox)?
    }

    /// A container's state.
    pub async fn state(&self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        self.ask(namespace, id, container::GetInfo).await
    }

    /// The containers of a namespace whose labels include all of `labels`.
    pub async fn list(
        &self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<ContainerInfo>> {
        validate_id("namespace", namespace_or_default(namespace))?;
        self.supervisor
            .send(supervisor::List {
                namespace: namespace_or_default(namespace).to_string(),
                labels,
            })
            .await
            .map_err(mailbox)
    }

    /// The pids in a container.
    pub async fn pids(&self, namespace: &str, id: &str) -> Result<Vec<PidInfo>> {
        self.ask(namespace, id, container::Pids).await?
    }

    /// Freezes a running container.
    pub async fn pause(&self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        self.ask(namespace, id, container::Pause).await?
    }

    /// Thaws a paused container.
    pub async fn resume(&self, namespace: &str, id: &str) -> Result<ContainerInfo> {
        self.ask(namespace, id, container::Resume).await?
    }

    /// Changes a live container's resource limits.
    pub async fn update(&self, namespace: &str, id: &str, resources: Resources) -> Result<()> {
        self.ask(namespace, id, container::Update(resources))
            .await?
    }

    /// A container's statistics, read from its cgroup.
    pub async fn stats(&self, namespace: &str, id: &str) -> Result<stats::Stats> {
        self.ask(namespace, id, container::GetStats).await?
    }

    fn checkpoints_store(&self) -> checkpoint::CheckpointStore {
        checkpoint::CheckpointStore::new(&self.runtime_root)
    }

    /// Takes a checkpoint of a running container (CRIU).
    pub async fn checkpoint(
        &self,
        namespace: &str,
        id: &str,
        name: &str,
        options: checkpoint::CheckpointOptions,
    ) -> Result<checkpoint::CheckpointInfo> {
        let msg = container::Checkpoint {
            name: name.to_string(),
            options,
            store: self.checkpoints_store(),
        };
        self.ask(namespace, id, msg).await?
    }

    /// The checkpoints of a container (which may have been deleted since).
    pub fn checkpoints(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Vec<checkpoint::CheckpointInfo>> {
        self.checkpoints_store()
            .list(namespace_or_default(namespace), id)
    }

    /// Removes a checkpoint.
    pub fn remove_checkpoint(&self, namespace: &str, id: &str, name: &str) -> Result<()> {
        self.checkpoints_store()
            .remove(namespace_or_default(namespace), id, name)
    }

    /// Writes a checkpoint, with the container's spec, to one OCI image-layout tar.
    pub async fn export_checkpoint(
        &self,
        namespace: &str,
        id: &str,
        name: &str,
        file: PathBuf,
    ) -> Result<u64> {
        let store = self.checkpoints_store();
        let (namespace, id, name) = (
            namespace_or_default(namespace).to_string(),
            id.to_string(),
            name.to_string(),
        );
        actix_rt::task::spawn_blocking(move || store.export(&namespace, &id, &name, &file))
            .await
            .map_err(|e| Error::Internal(format!("export: {e}")))?
    }

    /// Reads a checkpoint from a tar written by export.
    pub async fn import_checkpoint(&self, file: PathBuf) -> Result<checkpoint::CheckpointInfo> {
        let store = self.checkpoints_store();
        actix_rt::task::spawn_blocking(move || store.import(&file))
            .await
            .map_err(|e| Error::Internal(format!("import: {e}")))?
    }

    /// Creates and starts a container from a checkpoint, under its id or `new_id`.
    pub async fn restore(
        &self,
        namespace: &str,
        id: &str,
        name: &str,
        new_id: Option<&str>,
        bundle: Option<PathBuf>,
    ) -> Result<ContainerInfo> {
        self.supervisor
            .send(supervisor::Restore {
                namespace: namespace_or_default(namespace).to_string(),
                id: id.to_string(),
                name: name.to_string(),
                new_id: new_id.map(str::to_string),
                bundle,
            })
            .await
            .map_err(mailbox)?
    }

    /// Closes a process's stdin.
    pub async fn close_stdin(
        &self,
        namespace: &str,
        id: &str,
        exec_id: Option<&str>,
    ) -> Result<()> {
        let msg = container::CloseProcessStdin {
            exec_id: exec_id.map(str::to_string),
        };
        self.ask(namespace, id, msg).await?
    }

    /// Subscribes to events from now on.
    pub async fn subscribe(&self, filter: EventFilter) -> Result<EventStream> {
        self.events.send(Subscribe(filter)).await.map_err(mailbox)
    }

    /// Every container in every namespace.
    pub async fn all(&self) -> Result<Vec<ContainerInfo>> {
        self.supervisor.send(supervisor::All).await.map_err(mailbox)
    }

    /// The daemon's counters: containers, subscribers, lagged subscribers, last event.
    pub async fn info(&self) -> Result<DaemonInfo> {
        let (subscribers, lagged_subscribers, last_seq) =
            self.events.send(SubscriberCounts).await.map_err(mailbox)?;
        let containers = self
            .supervisor
            .send(supervisor::All)
            .await
            .map_err(mailbox)?;
        let running = containers
            .iter()
            .filter(|c| c.status == Status::Running)
            .count();
        Ok(DaemonInfo {
            version: VERSION.to_string(),
            containers: containers.len(),
            running,
            subscribers,
            lagged_subscribers,
            last_seq,
            pending_children: reaper::pending(),
        })
    }
}
