//! Starting the supervisor: the state dir's lock, the journal, then the actors.

use crate::actors::events::Events;
use crate::actors::supervisor::{Supervisor, SupervisorSettings};
use crate::actors::Reaper;
use crate::cgroups::Hierarchy;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::JOURNAL_DIR;
use crate::runtime::resolve_binary;
use crate::types::{CriuFeature, Features};
use crate::{checkpoint, journal};
use actix::prelude::*;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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
    crate::limits::raise_open_files();
    if !on_tmpfs(&config.state_dir) {
        tracing::warn!(
            "state dir {} is not on a tmpfs: every exit then waits on the disk's journal \
             (about a millisecond here); /run is a tmpfs on most hosts",
            config.state_dir.display()
        );
    }
    // The reaper comes first: no child may be spawned before SIGCHLD is watched.
    let reaper = Reaper.start();
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
    let criu_version = checkpoint::criu_version(&config.criu);
    let criu_usable = checkpoint::check_criu(&config.criu);
    match &criu_usable {
        Ok(()) => tracing::debug!("CRIU at {}", config.criu.display()),
        Err(e) => tracing::warn!("checkpoint and restore unavailable: {e}"),
    }
    let default_snapshotter = match config.snapshotter.as_deref() {
        Some(name) => crate::types::snapshotter_named(name).map_err(Error::InvalidArgument)?,
        None => crate::snapshots::default_snapshotter(&config.data_dir.join("overlay-check")),
    };
    if config.snapshotter.is_none() && default_snapshotter != crate::types::SNAPSHOTTER_OVERLAYFS {
        tracing::warn!(
            "overlayfs is not in /proc/filesystems and cannot be loaded: containers from \
             images use the {default_snapshotter} snapshotter (a full copy of the image per \
             container) unless they name one"
        );
    }
    let features = Features {
        runtimes: config
            .runtimes
            .iter()
            .map(|(name, e)| {
                let found = resolve_binary(&e.binary).unwrap_or_else(|| e.binary.clone());
                (name.clone(), found)
            })
            .collect(),
        default_runtime: config.runtime.clone(),
        // The default first (a field of its own would change the protocol).
        snapshotters: [default_snapshotter]
            .into_iter()
            .chain(
                [
                    crate::types::SNAPSHOTTER_OVERLAYFS,
                    crate::types::SNAPSHOTTER_NATIVE,
                ]
                .into_iter()
                .filter(|s| *s != default_snapshotter),
            )
            .map(str::to_string)
            .collect(),
        criu: CriuFeature {
            path: config.criu.clone(),
            version: criu_version
                .as_ref()
                .ok()
                .map(|(a, b, c)| format!("{a}.{b}.{c}")),
            error: criu_usable.err().map(|e| e.to_string()),
        },
        cgroups: match crate::cgroups::host() {
            Hierarchy::V2 { .. } => "v2",
            Hierarchy::V1 { unified: None, .. } => "v1",
            Hierarchy::V1 {
                unified: Some(_), ..
            } => "hybrid",
        }
        .to_string(),
        state_dir: config.state_dir.clone(),
        runtime_root: config.runtime_root.clone(),
        data_dir: config.data_dir.clone(),
    };
    // Every setting goes to the Supervisor: a new one must be placed here.
    let Config {
        state_dir,
        runtime_root: _,
        runtime,
        runtimes,
        shim,
        runtime_timeout,
        shim_timeout,
        criu,
        data_dir,
        log_dir,
        log_max_size,
        log_max_files,
        snapshotter: _,
        cgroups,
    } = config;
    // Shims move themselves there; a host where corrald cannot make it is told now, not
    // at the first create.
    if let Some(shims) = &cgroups.shims {
        crate::cgroups::placement::prepare(shims).map_err(|e| {
            Error::InvalidArgument(format!(
                "the shims' cgroup {shims}: {e} (corrald needs write access to the cgroup \
                 hierarchies, e.g. Delegate=yes and root; or --shim-cgroup \"\" keeps shims in \
                 corrald's own cgroup)"
            ))
        })?;
    }
    let log_dir = log_dir.unwrap_or_else(|| data_dir.join("logs"));
    let logs = crate::config::LogSettings {
        dir: log_dir.clone(),
        max_size: log_max_size,
        max_files: log_max_files.max(1),
    };
    let images =
        crate::images::Images::open_with(&data_dir, Some(events.clone()), default_snapshotter)?;
    let settings = SupervisorSettings {
        state_dir,
        runtime_root: runtime_root.clone(),
        default_runtime: runtime,
        runtimes,
        runtime_timeout,
        shim,
        shim_timeout,
        criu,
        logs: std::sync::Arc::new(logs),
        cgroups,
    };
    // The supervisor adopts the containers already in the state dir as it starts.
    let supervisor = Supervisor::new(settings, events.clone(), recovered.exits, lock).start();
    let handle = Handle::new(
        supervisor,
        runtime_root,
        events,
        reaper,
        std::sync::Arc::new(features),
        images,
    );
    // After a reboot the state dir is new but the data dir keeps the image bundles of the
    // tasks that were: once adoption is done (the Supervisor answers after it), and before
    // any request is served (a create in flight must not lose its fresh bundle), the
    // bundles of tasks that are not there are unmounted; those of no container record are
    // removed with their snapshots, a record's snapshot is kept for its next task.
    match handle.all().await {
        Ok(all) => {
            let live: std::collections::HashSet<(String, String)> =
                all.into_iter().map(|c| (c.namespace, c.id)).collect();
            crate::logs::release_orphans(&log_dir, &live);
            match handle
                .images()
                .release_orphan_bundles(live.into_iter().collect())
                .await
            {
                Ok(gone) => {
                    if !gone.released.is_empty() {
                        tracing::info!(
                            "released the image bundles of {} gone container(s)",
                            gone.released.len()
                        );
                    }
                    if !gone.unmounted.is_empty() {
                        tracing::info!(
                            "unmounted the rootfs of {} container record(s) whose task is gone",
                            gone.unmounted.len()
                        );
                    }
                }
                Err(e) => tracing::warn!("releasing stale image bundles: {e}"),
            }
        }
        Err(e) => tracing::warn!("cannot list containers to release stale image bundles: {e}"),
    }
    Ok(handle)
}

/// Whether `dir` is on a tmpfs.
fn on_tmpfs(dir: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Takes the state dir for this supervisor alone (`<state>/_lock`, flock): two supervisors
/// adopting and reaping the same containers would each report what the other did.
fn lock_state_dir(state_dir: &std::path::Path) -> Result<Flock<std::fs::File>> {
    let path = state_dir.join(crate::layout::LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => Error::AlreadyExists(format!(
            "another corral supervisor is using the state dir {}",
            state_dir.display()
        )),
        errno => Error::io(
            format!("lock {}", path.display()),
            std::io::Error::from(errno),
        ),
    })
}
