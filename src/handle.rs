//! The [`Handle`]: every operation on a running supervisor.

mod containers;
mod stdio;

pub use stdio::{AttachStdin, Attachment, Logs};

use crate::actors::container::{self, Container};
use crate::actors::events::{EventStream, Events, Subscribe, SubscriberCounts};
use crate::actors::supervisor::{self, Supervisor};
use crate::actors::Reaper;
use crate::config::VERSION;
use crate::error::{Error, Result};
use crate::types::*;
use crate::{checkpoint, reaper, stats};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A handle on a running supervisor: every operation, callable from any thread or runtime.
#[derive(Clone)]
pub struct Handle {
    supervisor: Addr<Supervisor>,
    runtime_root: PathBuf,
    events: Addr<Events>,
    _reaper: Addr<Reaper>,
    features: std::sync::Arc<Features>,
    images: crate::images::Images,
}

/// How long the supervisor may take to answer a health check before it is not serving.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The namespace a request names (the default one when empty), checked.
fn checked_namespace(namespace: &str) -> Result<String> {
    let namespace = namespace_or_default(namespace);
    validate_id("namespace", namespace)?;
    Ok(namespace.to_string())
}

fn mailbox(e: MailboxError) -> Error {
    Error::Internal(format!("the supervisor is gone: {e}"))
}

impl Handle {
    /// A handle on the supervisor's actors (see [`crate::start`]).
    pub(crate) fn new(
        supervisor: Addr<Supervisor>,
        runtime_root: PathBuf,
        events: Addr<Events>,
        reaper: Addr<Reaper>,
        features: std::sync::Arc<Features>,
        images: crate::images::Images,
    ) -> Self {
        Handle {
            supervisor,
            runtime_root,
            events,
            _reaper: reaper,
            features,
            images,
        }
    }

    /// The image service: images, content, leases, namespace records, pull and push,
    /// import and export, GC.
    pub fn images(&self) -> &crate::images::Images {
        &self.images
    }

    /// Every namespace: the recorded ones and those that hold containers.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        let mut with_containers: Vec<String> =
            self.all().await?.into_iter().map(|c| c.namespace).collect();
        with_containers.sort();
        with_containers.dedup();
        self.images.namespace_list(with_containers).await
    }

    /// Removes a namespace record; refused while it holds containers (tasks or records),
    /// images or leases.
    pub async fn remove_namespace(&self, name: &str) -> Result<()> {
        let mut containers: Vec<String> = self
            .all()
            .await?
            .into_iter()
            .filter(|c| c.namespace == name)
            .map(|c| c.id)
            .collect();
        if validate_id("namespace", name).is_ok() {
            let records = self.images.container_list(name, BTreeMap::new()).await?;
            containers.extend(records.into_iter().map(|r| r.id));
            containers.sort();
            containers.dedup();
        }
        self.images.namespace_remove(name, containers).await
    }

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

    /// Creates a container (and starts it when `req.start`). With `req.image`, a container
    /// record is made first (as [`Handle::create_container`]), then its task; if the task
    /// fails, the record goes too.
    pub async fn create(&self, req: CreateRequest) -> Result<ContainerInfo> {
        self.create_with(req, false).await
    }

    /// [`Handle::create`] of a container to be deleted after its one run (`run --rm`): one
    /// made from an image gets its rootfs overlay mounted `volatile`
    /// (`images::RootfsAfterCreate::Volatile`).
    pub async fn create_removable(&self, req: CreateRequest) -> Result<ContainerInfo> {
        self.create_with(req, true).await
    }

    async fn create_with(&self, mut req: CreateRequest, removable: bool) -> Result<ContainerInfo> {
        let Some(run) = req.image.take() else {
            return self.create_task(req).await;
        };
        let (ns, id) = (
            namespace_or_default(&req.namespace).to_string(),
            req.id.clone(),
        );
        self.refuse_task(&ns, &id).await?;
        let record = ContainerCreateRequest {
            namespace: ns.clone(),
            id: id.clone(),
            image: *run,
            runtime: req.runtime.take(),
            runtime_args: std::mem::take(&mut req.runtime_args),
            labels: std::mem::take(&mut req.labels),
            extensions: BTreeMap::new(),
        };
        let rootfs = if removable {
            crate::images::RootfsAfterCreate::Volatile
        } else {
            crate::images::RootfsAfterCreate::Mounted
        };
        self.images.container_create(record, rootfs).await?;
        let task = self.task_from_record(req).await;
        if task.is_err() {
            if let Err(e) = self.images.container_remove(&ns, &id).await {
                tracing::warn!("removing the container record of {ns}/{id}: {e}");
            }
        }
        task
    }

    /// Creates a task from a bundle (the Supervisor's `Create`) and records its namespace.
    async fn create_task(&self, req: CreateRequest) -> Result<ContainerInfo> {
        let info = self
            .supervisor
            .send(supervisor::Create(req))
            .await
            .map_err(mailbox)??;
        // The namespace is recorded once something lives in it.
        if let Err(e) = self.images.namespace_ensure(&info.namespace).await {
            tracing::warn!("cannot record namespace {}: {e}", info.namespace);
        }
        Ok(info)
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

    /// Stops a container: `req.signal` (0: its own stop signal, its image's StopSignal or
    /// SIGTERM), then SIGKILL if it has not exited within `req.timeout_ms`; returns its exit
    /// (at once if it had exited already).
    pub async fn stop(&self, req: StopRequest) -> Result<ExitStatus> {
        let (ns, id) = (req.namespace.as_str(), req.id.as_str());
        // The state after any restart in flight: a stop never races one.
        let state = self.ask(ns, id, container::HoldRestarts).await??;
        if state.status.is_live() {
            let first = match req.signal {
                0 => state.stop_signal,
                given => given,
            };
            self.signal_unless_exited(ns, id, first).await?;
            let grace = std::time::Duration::from_millis(req.timeout_ms);
            match tokio::time::timeout(grace, self.wait(ns, id, None)).await {
                Ok(exit) => return exit,
                Err(_) => self.signal_unless_exited(ns, id, libc::SIGKILL).await?,
            }
        }
        self.wait(ns, id, None).await
    }

    /// Stops a container if it is live (as [`Handle::stop`]), then runs its init again
    /// under the same id, with the same bundle and stdio; the restart policy's count is
    /// left as it is.
    pub async fn restart(&self, req: StopRequest) -> Result<ContainerInfo> {
        let (ns, id) = (req.namespace.clone(), req.id.clone());
        self.stop(req).await?;
        self.ask(&ns, &id, container::RestartNow).await?
    }

    async fn signal_unless_exited(&self, namespace: &str, id: &str, signal: i32) -> Result<()> {
        let kill = KillRequest {
            namespace: namespace.to_string(),
            id: id.to_string(),
            exec_id: None,
            signal,
            all: false,
        };
        match self.kill(kill).await {
            // It exited meanwhile: the wait that follows returns its exit.
            Err(Error::WrongState(_)) => Ok(()),
            other => other,
        }
    }

    /// Deletes a container; a running one only with `force`. The task goes, and for a
    /// container made from an image its record and writable snapshot too (`run`'s and
    /// `create`'s shortcut; [`Handle::delete_task`] keeps them).
    pub async fn delete(&self, namespace: &str, id: &str, force: bool) -> Result<ContainerInfo> {
        let info = match self.remove_task(namespace, id, force).await {
            Err(Error::NotFound(what)) => {
                if self
                    .images
                    .container_exists(namespace, id)
                    .await
                    .unwrap_or(false)
                {
                    return Err(Error::NotFound(format!(
                        "{what}: it has no task (corralctl container rm {id} removes its \
                         record)"
                    )));
                }
                return Err(Error::NotFound(what));
            }
            other => other?,
        };
        if self.images.is_image_bundle(&info.bundle) {
            // Its rootfs is unmounted, its record and writable snapshot removed only now,
            // the task being gone. On a failure the record stays (`container rm` retries)
            // and the next start unmounts what is still mounted.
            let (ns, id) = (&info.namespace, &info.id);
            let released = match self.images.container_exists(ns, id).await {
                Ok(true) => self.images.container_remove(ns, id).await.map(|_| ()),
                Ok(false) => self.images.task_unmount(ns, id).await,
                Err(e) => Err(e),
            };
            if let Err(e) = released {
                tracing::warn!("container {ns}/{id} deleted, but its image rootfs stays: {e}");
            }
        }
        Ok(info)
    }

    /// The Supervisor's `Remove`.
    async fn remove_task(&self, namespace: &str, id: &str, force: bool) -> Result<ContainerInfo> {
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
        let namespace = checked_namespace(namespace)?;
        let list = supervisor::List { namespace, labels };
        self.supervisor.send(list).await.map_err(mailbox)
    }

    /// [`Handle::list`] as the RPC's reply frame with id `frame_id` (length prefix
    /// included), made from the summaries' encoded bytes.
    pub(crate) async fn list_frame(
        &self,
        frame_id: u64,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        let namespace = checked_namespace(namespace)?;
        let list = supervisor::ListFrame {
            frame_id,
            namespace,
            labels,
        };
        self.supervisor.send(list).await.map_err(mailbox)?
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

    /// Statistics of the named containers, or of every live container of the namespace when
    /// `ids` is empty (a container that stops meanwhile is then left out), in that order.
    pub async fn stats_of(
        &self,
        namespace: &str,
        ids: Vec<String>,
    ) -> Result<Vec<(String, stats::Stats)>> {
        let everyone = ids.is_empty();
        let ids = if everyone {
            self.list(namespace, BTreeMap::new())
                .await?
                .into_iter()
                .filter(|c| c.status.is_live() && !c.busy)
                .map(|c| c.id)
                .collect()
        } else {
            ids
        };
        if !everyone {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let stats = self.stats(namespace, &id).await?;
                out.push((id, stats));
            }
            return Ok(out);
        }
        // Everyone at once, each bounded: one wedged container is left out, not waited for.
        let asks = ids.into_iter().map(|id| async move {
            let within = supervisor::LIST_ANSWER_WITHIN;
            match tokio::time::timeout(within, self.stats(namespace, &id)).await {
                Ok(Ok(stats)) => Some((id, stats)),
                // Stopped meanwhile, or busy: skipped when listing everyone.
                _ => None,
            }
        });
        Ok(futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect())
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
        let state = self.state(namespace, id).await?;
        // A container run from an image: its writable layer goes into the checkpoint.
        let rootfs = if self.images.is_image_bundle(&state.bundle) {
            self.images.checkpoint_base(&state.namespace, id).await?
        } else {
            None
        };
        let msg = container::Checkpoint {
            name: name.to_string(),
            options,
            store: self.checkpoints_store(),
            rootfs,
        };
        self.ask(namespace, id, msg).await?
    }

    /// Pushes a checkpoint (with its base image, if it has one) to a registry; answers the
    /// index pushed. `progress` hears about every blob.
    pub async fn push_checkpoint(
        &self,
        req: checkpoint::CheckpointPushRequest,
        progress: Option<crate::images::ProgressSender>,
    ) -> Result<Descriptor> {
        let store = self.checkpoints_store();
        self.images.checkpoint_push(store, req, progress).await
    }

    /// Pulls a checkpoint from a registry into the checkpoint store (and its base image
    /// into the image store).
    pub async fn pull_checkpoint(
        &self,
        req: checkpoint::CheckpointPullRequest,
        progress: Option<crate::images::ProgressSender>,
    ) -> Result<checkpoint::CheckpointInfo> {
        let store = self.checkpoints_store();
        self.images.checkpoint_pull(store, req, progress).await
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
        let ns = namespace_or_default(namespace).to_string();
        let store = self.checkpoints_store();
        let info = store.get(&ns, id, name)?;
        let new = new_id.unwrap_or(id).to_string();
        // A checkpoint of a container run from an image restores on a new image bundle:
        // its base image, with the checkpoint's writable layer.
        let made = match (&bundle, &info.base_image) {
            (None, Some(_)) => {
                if self.state(&ns, &new).await.is_ok() {
                    return Err(Error::AlreadyExists(format!(
                        "container {ns}/{new}: delete it first, or restore under another id \
                         (--as NEW_ID)"
                    )));
                }
                let dir = store.dir(&ns, id, name)?;
                Some(
                    self.images
                        .prepare_checkpoint_bundle(&ns, &new, dir, info)
                        .await?,
                )
            }
            _ => None,
        };
        let restored = self
            .supervisor
            .send(supervisor::Restore {
                namespace: ns.clone(),
                id: id.to_string(),
                name: name.to_string(),
                new_id: Some(new.clone()),
                bundle: made.clone().or(bundle),
            })
            .await
            .map_err(mailbox)
            .and_then(|r| r);
        if restored.is_err() && made.is_some() {
            if let Err(e) = self.images.task_unmount(&ns, &new).await {
                tracing::warn!("releasing the restore bundle of {ns}/{new}: {e}");
            }
        }
        restored
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

    /// Whether the supervisor is serving: its registry and its event bus each answer
    /// within 5 s (containerd's IsServing).
    pub async fn health(&self) -> bool {
        let supervisor = self
            .supervisor
            .send(supervisor::Ping)
            .timeout(HEALTH_TIMEOUT);
        let events = self.events.send(SubscriberCounts).timeout(HEALTH_TIMEOUT);
        let (supervisor, events) = futures_util::future::join(supervisor, events).await;
        supervisor.is_ok() && events.is_ok()
    }

    /// Event subscribers, lagged subscribers and the last event's sequence number.
    pub(crate) async fn event_counts(&self) -> Result<(usize, u64, u64)> {
        self.events.send(SubscriberCounts).await.map_err(mailbox)
    }

    /// Whether the supervisor answers its mailbox.
    pub(crate) async fn ping(&self) -> Result<()> {
        self.supervisor
            .send(supervisor::Ping)
            .await
            .map_err(mailbox)
    }

    /// The daemon's counters (containers, subscribers, lagged subscribers, last event) and
    /// its features (runtimes, CRIU, cgroup layout, directories).
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
            features: (*self.features).clone(),
        })
    }
}
