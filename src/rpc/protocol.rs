//! The messages of the RPC. Changing them changes [`PROTOCOL_VERSION`].

use crate::checkpoint::{
    CheckpointInfo, CheckpointOptions, CheckpointPullRequest, CheckpointPushRequest,
};
use crate::error::Error;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The wire protocol's version; client and daemon must agree.
pub const PROTOCOL_VERSION: u32 = 6;

/// A request with its id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; repeated in every reply to it.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// A reply with the id of its request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The request's id (0 for connection-level errors).
    pub id: u64,
    /// The answer.
    pub reply: Reply,
}

/// Everything a client can ask.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Must be first: the client's protocol version and name.
    Hello {
        /// The protocol version the client speaks.
        version: u32,
        /// Free text, for logs.
        client: String,
    },
    /// The daemon's version.
    Version,
    /// Create (and maybe start) a container.
    Create(CreateRequest),
    /// Start a created container.
    Start {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Run another process in a container.
    Exec(ExecRequest),
    /// Signal a process.
    Kill(KillRequest),
    /// Wait for a process's exit (replied when it exits).
    Wait(ProcessRef),
    /// Delete a container.
    Delete {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// Kill it first if running.
        force: bool,
    },
    /// One container's state.
    State {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// The containers of a namespace, filtered by labels.
    List {
        /// Namespace.
        namespace: String,
        /// `key=value` pairs that must all match.
        labels: BTreeMap<String, String>,
    },
    /// The pids of a container.
    Pids {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Close a process's stdin.
    CloseStdin(ProcessRef),
    /// Stream events (replies: `Error(Truncated)` first if `since` is older than the journal
    /// keeps, then `Event`... until the connection closes, or `Error(Lagged)`).
    Subscribe(EventFilter),
    /// The daemon's counters.
    Info,
    /// Freeze a container.
    Pause {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Thaw a container.
    Resume {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Change a container's resource limits.
    Update {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// What to change.
        resources: Resources,
    },
    /// Statistics of containers (all of the namespace when `ids` is empty).
    Stats {
        /// Namespace.
        namespace: String,
        /// Container ids.
        ids: Vec<String>,
    },
    /// Take a checkpoint of a running container.
    Checkpoint {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// The checkpoint's name.
        name: String,
        /// Its options.
        options: CheckpointOptions,
    },
    /// The checkpoints of a container.
    Checkpoints {
        /// Namespace.
        namespace: String,
        /// Container id (the container may be deleted).
        id: String,
    },
    /// Remove a checkpoint.
    CheckpointRemove {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// The checkpoint's name.
        name: String,
    },
    /// Write a checkpoint to an OCI image-layout tar on the daemon's host.
    CheckpointExport {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// The checkpoint's name.
        name: String,
        /// The file to write (absolute).
        file: PathBuf,
    },
    /// Read a checkpoint from such a tar.
    CheckpointImport {
        /// The file to read (absolute).
        file: PathBuf,
    },
    /// Create and start a container from a checkpoint.
    Restore {
        /// Namespace.
        namespace: String,
        /// The checkpointed container's id.
        id: String,
        /// The checkpoint's name.
        name: String,
        /// Restore under this id instead.
        new_id: Option<String>,
        /// Use this bundle instead of the recorded one.
        bundle: Option<PathBuf>,
    },
    /// Stop a container: its signal, then SIGKILL after the grace period; replies its exit.
    Stop(StopRequest),
    /// Stop a container if it is live, then run its init again under the same id.
    Restart(StopRequest),
    /// Whether the daemon is serving (containerd's IsServing).
    Health,
    /// Pull an image: a stream of `Progress` replies, then `Image` (or `Error`).
    ImagePull(PullRequest),
    /// Push an image: a stream of `Progress` replies, then `Descriptor` (or `Error`).
    ImagePush(PushRequest),
    /// The images of a namespace.
    ImageList {
        /// Namespace.
        namespace: String,
    },
    /// One image with its index, manifest and config.
    ImageInspect {
        /// Namespace.
        namespace: String,
        /// Its name (a short name is normalized: `busybox` is
        /// `docker.io/library/busybox:latest`).
        name: String,
        /// Which manifest of an index to show; `None`: the host's.
        platform: Option<Platform>,
    },
    /// Remove images, then collect garbage unless `no_gc`.
    ImageRemove {
        /// Namespace.
        namespace: String,
        /// Their names.
        names: Vec<String>,
        /// Leave the blobs for a later `Prune`.
        no_gc: bool,
    },
    /// Give an image another name.
    ImageTag {
        /// Namespace.
        namespace: String,
        /// The image.
        source: String,
        /// The new name.
        target: String,
        /// Replace what `target` names.
        force: bool,
    },
    /// Import images from a tar on the daemon's host.
    ImageImport(ImportRequest),
    /// Export images to a tar on the daemon's host; replies `Size`.
    ImageExport(ExportRequest),
    /// Every blob of the content store.
    ContentList,
    /// The downloads not yet committed.
    ContentIngests,
    /// Remove blobs no image or lease holds.
    ContentRemove {
        /// Their digests.
        digests: Vec<String>,
    },
    /// Create a lease.
    LeaseCreate {
        /// Namespace.
        namespace: String,
        /// Its id (empty: made up).
        id: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Seconds until it lapses; `None`: never.
        expires_secs: Option<u64>,
    },
    /// The leases of a namespace.
    LeaseList {
        /// Namespace.
        namespace: String,
    },
    /// Remove a lease, then collect garbage unless `no_gc`.
    LeaseRemove {
        /// Namespace.
        namespace: String,
        /// Its id.
        id: String,
        /// Leave the blobs for a later `Prune`.
        no_gc: bool,
    },
    /// Collect garbage now.
    Prune,
    /// Record a namespace.
    NamespaceCreate {
        /// Its name.
        name: String,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// Every namespace.
    NamespaceList,
    /// Set (or, with an empty value, remove) labels of a namespace.
    NamespaceLabel {
        /// Its name.
        name: String,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// Remove a namespace that holds nothing.
    NamespaceRemove {
        /// Its name.
        name: String,
    },
    /// One blob.
    ContentInfo {
        /// Its digest.
        digest: String,
    },
    /// Make a container record from an image (no task); replies `ContainerMeta`.
    ContainerCreate(Box<ContainerCreateRequest>),
    /// The container records of a namespace, filtered by labels; replies `ContainerMetas`.
    ContainerList {
        /// Namespace.
        namespace: String,
        /// `key=value` pairs that must all match.
        labels: BTreeMap<String, String>,
    },
    /// One container record; replies `ContainerMeta`.
    ContainerGet {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Change a container record (labels, runtime, spec, extensions); replies
    /// `ContainerMeta`.
    ContainerUpdate(ContainerUpdateRequest),
    /// Remove a container record and its snapshot (refused while it has a task); replies
    /// `ContainerMeta`, the record removed.
    ContainerRemove {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Make a task from a container record and start it; replies `Container`.
    TaskStart(TaskStartRequest),
    /// Delete a task, keeping its container record and snapshot; replies `Container`.
    TaskDelete {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// Kill it first if running.
        force: bool,
    },
    /// Push a checkpoint (with its base image) to a registry: a stream of `Progress`
    /// replies, then `Descriptor` (the index pushed) or `Error`.
    CheckpointPush(CheckpointPushRequest),
    /// Pull a checkpoint from a registry into the checkpoint store (its base image into
    /// the image store): a stream of `Progress` replies, then `Checkpoint` or `Error`.
    CheckpointPull(CheckpointPullRequest),
    /// Join a process's stdio (protocol 5): a stream of `Output` replies, then `Exit`
    /// (last), or `Error`. With `stdin`, the client sends `AttachInput` frames naming this
    /// request's frame id.
    Attach(AttachRequest),
    /// Bytes for (or the end of) an attach's stdin (protocol 5); answered only with an
    /// `Error` (under the attach's frame id) if the attach is gone or the write failed.
    AttachInput {
        /// The frame id of the `Attach` request.
        attach: u64,
        /// Bytes to write.
        data: Vec<u8>,
        /// Then close the process's stdin (it reads end-of-file).
        close: bool,
    },
    /// Read a process's log (protocol 5): a stream of `LogEntries` replies, then `Ok`, or
    /// `Error`.
    Logs(LogsRequest),
    /// Resize a process's terminal (protocol 5); replies `Ok`.
    Resize {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// The exec; `None` for init.
        exec_id: Option<String>,
        /// The new size.
        size: ConsoleSize,
    },
    /// Remove an exited exec, freeing its id (protocol 5); replies `Process` (its last
    /// state).
    ExecRemove {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
        /// The exec.
        exec_id: String,
    },
    /// Create, start and attach to a container in one request (protocol 6): a stream of
    /// `Container` (created and started), `Output`..., `Exit`; with `remove`, then the
    /// delete's outcome, `Container` (its last state) or `Error`, last. With `stdin`, the
    /// client sends `AttachInput` frames naming this request's frame id.
    Run(RunRequest),
}

impl Request {
    /// The request's name, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Version => "version",
            Request::Create(_) => "create",
            Request::Start { .. } => "start",
            Request::Exec(_) => "exec",
            Request::Kill(_) => "kill",
            Request::Wait(_) => "wait",
            Request::Delete { .. } => "delete",
            Request::State { .. } => "state",
            Request::List { .. } => "list",
            Request::Pids { .. } => "pids",
            Request::CloseStdin(_) => "close_stdin",
            Request::Subscribe(_) => "subscribe",
            Request::Info => "info",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::Update { .. } => "update",
            Request::Stats { .. } => "stats",
            Request::Checkpoint { .. } => "checkpoint",
            Request::Checkpoints { .. } => "checkpoints",
            Request::CheckpointRemove { .. } => "checkpoint_remove",
            Request::CheckpointExport { .. } => "checkpoint_export",
            Request::CheckpointImport { .. } => "checkpoint_import",
            Request::Restore { .. } => "restore",
            Request::Stop(_) => "stop",
            Request::Restart(_) => "restart",
            Request::Health => "health",
            Request::ImagePull(_) => "image_pull",
            Request::ImagePush(_) => "image_push",
            Request::ImageList { .. } => "image_list",
            Request::ImageInspect { .. } => "image_inspect",
            Request::ImageRemove { .. } => "image_remove",
            Request::ImageTag { .. } => "image_tag",
            Request::ImageImport(_) => "image_import",
            Request::ImageExport(_) => "image_export",
            Request::ContentList => "content_list",
            Request::ContentIngests => "content_ingests",
            Request::ContentRemove { .. } => "content_remove",
            Request::LeaseCreate { .. } => "lease_create",
            Request::LeaseList { .. } => "lease_list",
            Request::LeaseRemove { .. } => "lease_remove",
            Request::Prune => "prune",
            Request::NamespaceCreate { .. } => "namespace_create",
            Request::NamespaceList => "namespace_list",
            Request::NamespaceLabel { .. } => "namespace_label",
            Request::NamespaceRemove { .. } => "namespace_remove",
            Request::ContentInfo { .. } => "content_info",
            Request::ContainerCreate(_) => "container_create",
            Request::ContainerList { .. } => "container_list",
            Request::ContainerGet { .. } => "container_get",
            Request::ContainerUpdate(_) => "container_update",
            Request::ContainerRemove { .. } => "container_remove",
            Request::TaskStart(_) => "task_start",
            Request::TaskDelete { .. } => "task_delete",
            Request::CheckpointPush(_) => "checkpoint_push",
            Request::CheckpointPull(_) => "checkpoint_pull",
            Request::Attach(_) => "attach",
            Request::AttachInput { .. } => "attach_input",
            Request::Logs(_) => "logs",
            Request::Resize { .. } => "resize",
            Request::ExecRemove { .. } => "exec_remove",
            Request::Run(_) => "run",
        }
    }
}

/// Everything the daemon answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reply {
    /// Handshake answer.
    Hello {
        /// The daemon's protocol version.
        version: u32,
        /// The daemon's release.
        daemon: String,
    },
    /// Done, nothing to return.
    Ok,
    /// The daemon's release and protocol.
    Version {
        /// Release.
        daemon: String,
        /// Protocol version.
        protocol: u32,
    },
    /// One container.
    Container(ContainerInfo),
    /// Several containers.
    Containers(Vec<ContainerInfo>),
    /// One process.
    Process(ProcessInfo),
    /// An exit.
    Exit(ExitStatus),
    /// Pids.
    Pids(Vec<PidInfo>),
    /// One event of a subscription.
    Event(Event),
    /// The daemon's counters.
    Info(DaemonInfo),
    /// Statistics by container id.
    Stats(Vec<(String, crate::cgroups::Stats)>),
    /// One checkpoint.
    Checkpoint(CheckpointInfo),
    /// Checkpoints.
    Checkpoints(Vec<CheckpointInfo>),
    /// A size in bytes (of an exported file).
    Size(u64),
    /// The request failed.
    Error(Error),
    /// The answer to `Health`.
    Health {
        /// The supervisor answers.
        serving: bool,
    },
    /// One step of a pull or a push.
    Progress(Progress),
    /// One image.
    Image(ImageInfo),
    /// Images.
    Images(Vec<ImageInfo>),
    /// An image with its documents.
    ImageDetail(Box<ImageDetail>),
    /// What was pushed.
    Descriptor(Descriptor),
    /// Blobs.
    Contents(Vec<ContentInfo>),
    /// Ingests.
    Ingests(Vec<IngestInfo>),
    /// One lease.
    Lease(LeaseInfo),
    /// Leases.
    Leases(Vec<LeaseInfo>),
    /// What GC removed.
    Pruned(PruneReport),
    /// One namespace.
    Namespace(NamespaceInfo),
    /// Namespaces.
    Namespaces(Vec<NamespaceInfo>),
    /// One blob.
    Content(ContentInfo),
    /// One container record.
    ContainerMeta(Box<ContainerMeta>),
    /// Container records.
    ContainerMetas(Vec<ContainerMeta>),
    /// Output of an attached process (protocol 5).
    Output {
        /// From stderr.
        stderr: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Entries of a process's log (protocol 5).
    LogEntries(Vec<crate::logs::LogEntry>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bincode is positional: the truncation notice is appended, so every earlier reply and
    /// error keeps its index and protocol 2 peers still read each other.
    #[test]
    fn the_truncation_notice_is_appended_on_the_wire() {
        let frame = ServerFrame {
            id: 1,
            reply: Reply::Error(Error::Truncated {
                first_kept: 11,
                asked: Since::Seq(0),
            }),
        };
        let bytes = crate::rpc::frame::encode(&frame).unwrap();
        // Length prefix, then id 1, Reply::Error (14), Error::Truncated (10), 11, Seq(0).
        assert_eq!(bytes[4..], [1, 14, 10, 11, 0, 0]);
        let lagged = ServerFrame {
            id: 1,
            reply: Reply::Error(Error::Lagged { first_missed: 7 }),
        };
        assert_eq!(
            crate::rpc::frame::encode(&lagged).unwrap()[4..],
            [1, 14, 7, 7]
        );
    }
}
