//! The OCI runtime behind one seam: [`OciRuntime`] is every verb a Container asks of its
//! runtime, with typed errors ([`RuntimeError`]) parsed from the runtime's output in one
//! place ([`classify`]). [`Runc`] is the real implementation (a runc-compatible binary:
//! runc, crun with [`crun`]'s hybrid-host handling, youki with [`youki`]'s `update`;
//! through corral-shim for the long-lived verbs); a scripted fake under `cfg(test)` lets
//! the container's state rules be unit-tested without root.

pub mod crun;
mod runc;
mod runc_state;
pub mod youki;

#[cfg(test)]
pub(crate) mod fake;

pub use runc::{resolve_binary, runtime_message, Runc};

use crate::error::Error;
use crate::launch::LaunchedShim;
use crate::layout::ShimDir;
use crate::shim::ShimArgs;
use crate::types::Status;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// What a runtime call returns, awaited on the container's actor thread.
pub type RuntimeFuture<T> = Pin<Box<dyn Future<Output = Result<T, RuntimeError>>>>;

/// Why a runtime call failed, told apart by kind so that callers never match on text.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime has no container with this id.
    #[error("runtime {verb} {id}: the container does not exist: {stderr}")]
    NotExist {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// What the runtime said.
        stderr: String,
    },
    /// A resume of a container that is not paused.
    #[error("runtime {verb} {id}: the container is not paused: {stderr}")]
    NotPaused {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// What the runtime said.
        stderr: String,
    },
    /// The runtime already has a container with this id.
    #[error("runtime {verb} {id}: the container already exists: {stderr}")]
    AlreadyExists {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// What the runtime said.
        stderr: String,
    },
    /// Any other refusal or failure, with the runtime's own words.
    #[error("runtime {verb} {id}: {stderr}")]
    Failed {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// What the runtime said.
        stderr: String,
    },
    /// The call did not finish in time; the runtime process was killed.
    #[error("runtime {verb} {id} did not finish within {timeout:?}")]
    Timeout {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// The limit.
        timeout: Duration,
    },
    /// The runtime binary could not be started.
    #[error("cannot run runtime {}: {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime answered, but not in a form corral can read.
    #[error("runtime {verb} {id}: unreadable output: {why}")]
    BadOutput {
        /// The runtime verb.
        verb: String,
        /// The container id.
        id: String,
        /// What was wrong with it.
        why: String,
    },
    /// Starting a process through its shim failed (create, run, exec, restore).
    #[error(transparent)]
    Launch(Error),
}

impl RuntimeError {
    /// The runtime's own text, for refusals that carry one.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            RuntimeError::NotExist { stderr, .. }
            | RuntimeError::NotPaused { stderr, .. }
            | RuntimeError::AlreadyExists { stderr, .. }
            | RuntimeError::Failed { stderr, .. } => Some(stderr),
            RuntimeError::Launch(Error::RuntimeFailed { stderr, .. }) => Some(stderr),
            _ => None,
        }
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotExist { verb, id, stderr }
            | RuntimeError::NotPaused { verb, id, stderr }
            | RuntimeError::AlreadyExists { verb, id, stderr }
            | RuntimeError::Failed { verb, id, stderr } => Error::RuntimeFailed {
                op: verb,
                id,
                stderr,
            },
            RuntimeError::Timeout { .. } => Error::Timeout(e.to_string()),
            RuntimeError::Spawn { ref source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                Error::InvalidArgument(e.to_string())
            }
            RuntimeError::Spawn { .. } | RuntimeError::BadOutput { .. } => {
                Error::Internal(e.to_string())
            }
            RuntimeError::Launch(inner) => inner,
        }
    }
}

/// Sorts a failed call by what the runtime said: the one place that reads runtime text.
pub fn classify(verb: &str, id: &str, stderr: String) -> RuntimeError {
    let (verb, id) = (verb.to_string(), id.to_string());
    let lower = stderr.to_lowercase();
    if lower.contains("not paused") {
        RuntimeError::NotPaused { verb, id, stderr }
    } else if lower.contains("does not exist")
        || (lower.contains("container") && lower.contains("not found"))
    {
        RuntimeError::NotExist { verb, id, stderr }
    } else if lower.contains("already exists") {
        RuntimeError::AlreadyExists { verb, id, stderr }
    } else {
        RuntimeError::Failed { verb, id, stderr }
    }
}

/// What `checkpoint` is asked to do.
#[derive(Clone, Debug)]
pub struct CheckpointCall {
    /// The CRIU binary.
    pub criu: PathBuf,
    /// Where CRIU writes its images.
    pub image_path: PathBuf,
    /// Where CRIU writes its logs.
    pub work_path: PathBuf,
    /// Keep the container running after the dump.
    pub leave_running: bool,
    /// Option flags (`--tcp-established`, ...).
    pub flags: Vec<String>,
}

/// Every verb a Container asks of its OCI runtime. The long-lived ones (create, run, exec,
/// restore) start a process through corral-shim ([`OciRuntime::launch`]); the others are
/// short calls, each bounded by [`OciRuntime::timeout`].
pub trait OciRuntime {
    /// The runtime binary (named in the shim's arguments and in the container's record).
    fn binary(&self) -> &Path;
    /// Its state root (`--root`).
    fn root(&self) -> &Path;
    /// Extra global arguments, before the verb.
    fn global_args(&self) -> &[String];
    /// How long one short call may take.
    fn timeout(&self) -> Duration;
    /// Starts a process through its shim: `create`, `run`, `exec` or `restore` by
    /// `args.mode`, in the process directory `dir`, waiting up to `timeout` for its answer.
    fn launch(
        &self,
        dir: ShimDir,
        args: ShimArgs,
        timeout: Duration,
    ) -> RuntimeFuture<LaunchedShim>;
    /// `start ID`.
    fn start(&self, id: &str) -> RuntimeFuture<()>;
    /// `kill [--all] ID SIG`.
    fn kill(&self, id: &str, signal: i32, all: bool) -> RuntimeFuture<()>;
    /// `delete [--force] ID`; a container the runtime does not know is already deleted.
    fn delete(&self, id: &str, force: bool) -> RuntimeFuture<()>;
    /// `pause ID`.
    fn pause(&self, id: &str) -> RuntimeFuture<()>;
    /// `resume ID`.
    fn resume(&self, id: &str) -> RuntimeFuture<()>;
    /// `update --flag=value... ID`.
    fn update(&self, id: &str, flags: Vec<String>) -> RuntimeFuture<()>;
    /// `checkpoint --image-path P --work-path W [--leave-running] [flags] ID`.
    fn checkpoint(&self, id: &str, call: CheckpointCall) -> RuntimeFuture<()>;
    /// `ps --format json ID`: the host pids in the container.
    fn ps(&self, id: &str) -> RuntimeFuture<Vec<u32>>;
    /// `state ID`: created, running, paused or stopped, as the runtime sees it.
    fn state(&self, id: &str) -> RuntimeFuture<Status>;
    /// Whether the runtime still has state for `id` under its root.
    fn has_state(&self, id: &str) -> bool;
    /// Whether a live container `id` is created but not started, read from the runtime's
    /// own files without running it; `None` when the runtime's layout is not known (then
    /// only [`OciRuntime::state`] can tell).
    fn created_from_files(&self, _id: &str) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_text_is_sorted_into_kinds() {
        assert!(matches!(
            classify("resume", "x", "container not paused".into()),
            RuntimeError::NotPaused { .. }
        ));
        assert!(matches!(
            classify("delete", "x", "container \"x\" does not exist".into()),
            RuntimeError::NotExist { .. }
        ));
        assert!(matches!(
            classify(
                "create",
                "x",
                "container with id exists: x already exists".into()
            ),
            RuntimeError::AlreadyExists { .. }
        ));
        assert!(matches!(
            classify("update", "x", "invalid cpuset".into()),
            RuntimeError::Failed { .. }
        ));
        assert!(
            matches!(
                classify(
                    "delete",
                    "x",
                    "exec: \"criu\": executable file not found".into()
                ),
                RuntimeError::Failed { .. }
            ),
            "only a missing container is NotExist"
        );
    }

    #[test]
    fn wire_errors_keep_the_runtime_text() {
        let e: Error = classify("pause", "web", "boom".into()).into();
        assert_eq!(
            e,
            Error::RuntimeFailed {
                op: "pause".into(),
                id: "web".into(),
                stderr: "boom".into()
            }
        );
        let t: Error = RuntimeError::Timeout {
            verb: "kill".into(),
            id: "web".into(),
            timeout: Duration::from_secs(1),
        }
        .into();
        assert!(matches!(t, Error::Timeout(m) if m.contains("kill web")));
        let missing: Error = RuntimeError::Spawn {
            path: "/nope/runc".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into();
        assert!(matches!(missing, Error::InvalidArgument(m) if m.contains("/nope/runc")));
    }
}
