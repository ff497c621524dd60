//! Events: the topics, the event itself, and which events a subscriber wants.

use super::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Event topics: the public contract of what happened, in containerd's vocabulary.
/// Serialized as the topic path (`"/tasks/exit"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum Topic {
    /// A container was created.
    TaskCreate,
    /// Its init process started.
    TaskStart,
    /// An exec was added.
    TaskExecAdded,
    /// An exec started.
    TaskExecStarted,
    /// A process exited.
    TaskExit,
    /// A container was deleted.
    TaskDelete,
    /// The kernel's OOM killer killed a process of the container.
    TaskOom,
    /// The container was frozen.
    TaskPaused,
    /// The container was thawed.
    TaskResumed,
    /// A checkpoint of the container was taken.
    TaskCheckpointed,
    /// An image was recorded (pulled, imported, tagged).
    ImageCreate,
    /// An image's target or labels changed.
    ImageUpdate,
    /// An image was removed.
    ImageDelete,
    /// A namespace was recorded.
    NamespaceCreate,
    /// A namespace's labels changed.
    NamespaceUpdate,
    /// A namespace was removed.
    NamespaceDelete,
    /// A container record was made.
    ContainerCreate,
    /// A container record's labels, runtime, spec or extensions changed.
    ContainerUpdate,
    /// A container record was removed.
    ContainerDelete,
    /// A snapshot was prepared (active, writable): a layer's extract snapshot, a container's
    /// root, a remapped copy being made.
    SnapshotPrepare,
    /// An active snapshot was committed under a name.
    SnapshotCommit,
    /// A snapshot was removed.
    SnapshotRemove,
}

impl Topic {
    /// The topic's path, e.g. `/tasks/exit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::TaskCreate => "/tasks/create",
            Topic::TaskStart => "/tasks/start",
            Topic::TaskExecAdded => "/tasks/exec-added",
            Topic::TaskExecStarted => "/tasks/exec-started",
            Topic::TaskExit => "/tasks/exit",
            Topic::TaskDelete => "/tasks/delete",
            Topic::TaskOom => "/tasks/oom",
            Topic::TaskPaused => "/tasks/paused",
            Topic::TaskResumed => "/tasks/resumed",
            Topic::TaskCheckpointed => "/tasks/checkpointed",
            Topic::ImageCreate => "/images/create",
            Topic::ImageUpdate => "/images/update",
            Topic::ImageDelete => "/images/delete",
            Topic::NamespaceCreate => "/namespaces/create",
            Topic::NamespaceUpdate => "/namespaces/update",
            Topic::NamespaceDelete => "/namespaces/delete",
            Topic::ContainerCreate => "/containers/create",
            Topic::ContainerUpdate => "/containers/update",
            Topic::ContainerDelete => "/containers/delete",
            Topic::SnapshotPrepare => "/snapshot/prepare",
            Topic::SnapshotCommit => "/snapshot/commit",
            Topic::SnapshotRemove => "/snapshot/remove",
        }
    }
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 22] = [
        Topic::TaskCreate,
        Topic::TaskStart,
        Topic::TaskExecAdded,
        Topic::TaskExecStarted,
        Topic::TaskExit,
        Topic::TaskDelete,
        Topic::TaskOom,
        Topic::TaskPaused,
        Topic::TaskResumed,
        Topic::TaskCheckpointed,
        Topic::ImageCreate,
        Topic::ImageUpdate,
        Topic::ImageDelete,
        Topic::NamespaceCreate,
        Topic::NamespaceUpdate,
        Topic::NamespaceDelete,
        Topic::ContainerCreate,
        Topic::ContainerUpdate,
        Topic::ContainerDelete,
        Topic::SnapshotPrepare,
        Topic::SnapshotCommit,
        Topic::SnapshotRemove,
    ];
}

impl From<Topic> for String {
    fn from(t: Topic) -> String {
        t.as_str().to_string()
    }
}

impl TryFrom<String> for Topic {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Topic, String> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown topic {s:?}"))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as published to subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Monotonic sequence number, daemon-wide.
    pub seq: u64,
    /// When it was published, nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The container's namespace.
    pub namespace: String,
    /// What happened.
    pub topic: Topic,
    /// The container.
    pub container_id: String,
    /// `init` or the exec id, for process events.
    pub process_id: Option<String>,
    /// The process's host pid, when there is one.
    pub pid: Option<u32>,
    /// The exit, for /tasks/exit and /tasks/delete.
    pub exit: Option<ExitStatus>,
    /// The bundle, for /tasks/create.
    pub bundle: Option<PathBuf>,
    /// For /tasks/start after a restart by policy: how many restarts so far.
    pub restarts: Option<u32>,
    /// For /tasks/checkpointed: the checkpoint's name.
    pub checkpoint: Option<String>,
    /// For /images/...: the image's name; for /namespaces/...: the namespace's; for
    /// /containers/...: the container's image, if it has one.
    #[serde(default)]
    pub image: Option<String>,
    /// For /snapshot/...: which snapshot.
    #[serde(default)]
    pub snapshot: Option<SnapshotEventInfo>,
}

/// The snapshot of a `/snapshot/...` event (containerd's `SnapshotPrepare`,
/// `SnapshotCommit`, `SnapshotRemove`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotEventInfo {
    /// The snapshot's key: the active snapshot prepared, committed or removed (for a
    /// removed committed snapshot, its name).
    pub key: String,
    /// For /snapshot/prepare: the committed snapshot it was prepared on, if any.
    pub parent: Option<String>,
    /// For /snapshot/commit: the name it was committed as.
    pub name: Option<String>,
}

impl Event {
    /// An event about no container (an image's, a namespace's); numbered and stamped when
    /// published.
    pub fn about(namespace: &str, topic: Topic, name: &str) -> Event {
        Event {
            seq: 0,
            timestamp_ns: 0,
            namespace: namespace.to_string(),
            topic,
            container_id: String::new(),
            process_id: None,
            pid: None,
            exit: None,
            bundle: None,
            restarts: None,
            checkpoint: None,
            image: Some(name.to_string()),
            snapshot: None,
        }
    }

    /// A `/snapshot/...` event in `namespace`; numbered and stamped when published.
    pub fn about_snapshot(namespace: &str, topic: Topic, snapshot: SnapshotEventInfo) -> Event {
        Event {
            image: None,
            snapshot: Some(snapshot),
            ..Event::about(namespace, topic, "")
        }
    }
}

/// Which events a subscriber wants.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only this namespace; `None` for all.
    pub namespace: Option<String>,
    /// Only this container; `None` for all.
    pub container_id: Option<String>,
    /// Replay from the journal first, from here on; `None` for new events only.
    pub since: Option<Since>,
}

/// Where an event replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Since {
    /// Events with this sequence number and later.
    Seq(u64),
    /// Events published at or after this time (nanoseconds since the epoch).
    Time(u64),
}

impl Since {
    /// Whether `event` is at or after this point.
    pub fn admits(&self, event: &Event) -> bool {
        match *self {
            Since::Seq(s) => event.seq >= s,
            Since::Time(t) => event.timestamp_ns >= t,
        }
    }
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.since.is_none_or(|s| s.admits(event))
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| *n == event.namespace)
            && self
                .container_id
                .as_ref()
                .is_none_or(|c| *c == event.container_id)
    }
}
