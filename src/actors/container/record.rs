//! `state.json`: what the daemon needs to know about a container across restarts. This is
//! the only code that reads or writes it.

use crate::cgroups::CgroupPaths;
use crate::error::Error;
use crate::layout::{write_atomic, ContainerDir};
use crate::types::{RestartPolicy, Stdio};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One container's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Namespace.
    pub namespace: String,
    /// Container id (also the runtime's id, under a per-namespace runtime root).
    pub id: String,
    /// The bundle.
    pub bundle: PathBuf,
    /// The directory the runtime is given as its bundle when corral wrote the runtime's
    /// config.json itself (see `bundle::runtime_spec`); `None`: the bundle as it is.
    #[serde(default)]
    pub runtime_bundle: Option<PathBuf>,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// Extra global runtime arguments.
    pub runtime_args: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// Creation time.
    pub created_at_ns: u64,
    /// Where its cgroups are: expected at create, then read from its init process.
    #[serde(default)]
    pub cgroups: CgroupPaths,
    /// When to restart it.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How many times the policy restarted it.
    #[serde(default)]
    pub restarts: u32,
    /// Its last exit was asked for by a user (kill): on-failure and unless-stopped leave it.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Its last run was stopped by a checkpoint (`--exit`): no policy restarts it.
    #[serde(default)]
    pub exited_by_checkpoint: bool,
    /// A user's `stop` ended its last run: no policy restarts it (not even `always`) until
    /// a user restarts it.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The kernel's OOM-kill count for its cgroup when last looked at.
    #[serde(default)]
    pub oom_seen: u64,
    /// OOM kills reported so far.
    #[serde(default)]
    pub oom_kills: u32,
    /// The runtime moves the rootfs and chroots instead of `pivot_root` (`--no-pivot`).
    #[serde(default)]
    pub no_pivot_root: bool,
    /// The signal `stop` sends first: the spec's `org.opencontainers.image.stopSignal`
    /// annotation (an image's StopSignal), else SIGTERM.
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a record.
    #[error("unreadable {}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl ContainerRecord {
    /// A new container's record, created now: no labels, stdio, cgroups or restart policy
    /// yet, and every counter of its runs at zero.
    pub fn new(namespace: &str, id: &str, bundle: PathBuf, runtime: PathBuf) -> Self {
        ContainerRecord {
            namespace: namespace.to_string(),
            id: id.to_string(),
            bundle,
            runtime_bundle: None,
            runtime,
            runtime_args: Vec::new(),
            labels: BTreeMap::new(),
            stdio: Stdio::default(),
            created_at_ns: crate::types::now_ns(),
            cgroups: CgroupPaths::default(),
            restart: RestartPolicy::No,
            restarts: 0,
            stopped_by_user: false,
            manually_stopped: false,
            exited_by_checkpoint: false,
            oom_seen: 0,
            oom_kills: 0,
            no_pivot_root: false,
            stop_signal: libc::SIGTERM,
        }
    }

    /// Reads `<dir>/state.json`.
    pub fn load(dir: &ContainerDir) -> Result<Self, RecordError> {
        let path = dir.state_json();
        let bytes = std::fs::read(&path).map_err(|source| RecordError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RecordError::Decode { path, source })
    }

    /// Writes `<dir>/state.json` (tmp + rename: a reader sees the old or the new one).
    pub fn save(&self, dir: &ContainerDir) -> Result<(), RecordError> {
        let path = dir.state_json();
        let json = serde_json::to_vec_pretty(self).map_err(|e| RecordError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, &json).map_err(|source| RecordError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_old_records_still_load() {
        let root = std::env::temp_dir().join(format!("corral-record-{}", std::process::id()));
        let dir = crate::layout::StateDir::new(&root).container("ns", "c");
        std::fs::create_dir_all(dir.path()).unwrap();
        let record = ContainerRecord {
            namespace: "ns".into(),
            id: "c".into(),
            bundle: "/b".into(),
            runtime_bundle: None,
            runtime: "/usr/sbin/runc".into(),
            runtime_args: vec![],
            labels: BTreeMap::from([("a".into(), "b".into())]),
            stdio: Stdio::default(),
            created_at_ns: 7,
            cgroups: CgroupPaths::default(),
            restart: RestartPolicy::Always,
            restarts: 2,
            stopped_by_user: true,
            manually_stopped: false,
            exited_by_checkpoint: false,
            oom_seen: 1,
            oom_kills: 1,
            no_pivot_root: true,
            stop_signal: libc::SIGQUIT,
        };
        record.save(&dir).unwrap();
        let back = ContainerRecord::load(&dir).unwrap();
        assert_eq!(back.labels, record.labels);
        assert!(back.no_pivot_root);
        assert_eq!(back.stop_signal, libc::SIGQUIT);
        assert_eq!(back.restarts, 2);
        assert!(back.stopped_by_user);
        // A record from before restart policies and OOM counters existed.
        std::fs::write(
            dir.state_json(),
            r#"{"namespace":"ns","id":"c","bundle":"/b","runtime":"runc","runtime_args":[],
                "labels":{},"stdio":{"stdin":null,"stdout":null,"stderr":null},"created_at_ns":1}"#,
        )
        .unwrap();
        let old = ContainerRecord::load(&dir).unwrap();
        assert_eq!(old.restart, RestartPolicy::No);
        assert!(!old.no_pivot_root);
        assert_eq!(
            old.stop_signal,
            libc::SIGTERM,
            "stop sends SIGTERM by default"
        );
        std::fs::write(dir.state_json(), b"{not json").unwrap();
        let e = ContainerRecord::load(&dir).unwrap_err();
        assert!(e.to_string().contains("state.json"), "{e}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
