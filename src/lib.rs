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

#![deny(missing_docs)]

// The public API is what is re-exported below, plus `rpc` (the client side of corrald's
// socket). The `#[doc(hidden)] pub` modules are for corral's own binaries, tests, benches and
// examples, which are separate crates: they are not a stable API.

pub(crate) mod actors;
#[doc(hidden)] // For corral's own binaries and tests (make_busybox), not a stable API.
pub mod bundle;
#[doc(hidden)] // For corral's own benches (leftover cgroups), not a stable API.
pub mod cgroups;
#[doc(hidden)] // For corral's own binaries and tests; the public types are re-exported below.
pub mod checkpoint;
mod config;
#[doc(hidden)] // For corral's own tests and benches (the content store on disk), not a stable API.
pub mod content;
#[doc(hidden)] // For corrald (its config file and flags), not a stable API.
pub mod daemon_config;
mod error;
pub(crate) mod exit_watch;
mod handle;
mod images;
#[doc(hidden)] // For corral's own tests (journal segments), not a stable API.
pub mod journal;
pub(crate) mod launch;
#[doc(hidden)] // For corral's own benches (the on-disk layout), not a stable API.
pub mod layout;
pub(crate) mod limits;
#[doc(hidden)] // For corrald (serving `corralctl logs` and `attach`); the types are re-exported.
pub mod logs;
#[doc(hidden)] // For corrald (the /metrics endpoint), not a stable API.
pub mod metrics;
pub(crate) mod oci_layout;
#[doc(hidden)] // For corral's own benches (reaping strays), not a stable API.
pub mod reaper;
#[doc(hidden)] // For corral's own tests (the distribution client), not a stable API.
pub mod registry;
pub mod rpc;
#[doc(hidden)] // For corral's own binaries and tests (resolve_binary), not a stable API.
pub mod runtime;
#[doc(hidden)] // For corrald (systemd readiness and its unit), not a stable API.
pub mod sd_notify;
#[doc(hidden)] // For the corral-shim binary, not a stable API.
pub mod shim;
#[doc(hidden)] // For corral's own tests (the overlayfs snapshotter), not a stable API yet.
pub mod snapshots;
mod startup;
mod types;

pub use actors::events::SUBSCRIBER_BUFFER;
pub use actors::EventStream;
/// The statistics types at their old path (`corral::stats::Stats`).
#[doc(hidden)]
pub use cgroups::stats;
pub use checkpoint::{CheckpointInfo, CheckpointOptions};
pub use config::{
    default_criu_path, default_runtimes, default_shim_path, Config, LogSettings, RuntimeEntry,
    DEFAULT_DATA_DIR, DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, DEFAULT_RUNTIME,
    DEFAULT_RUNTIME_ROOT, DEFAULT_STATE_DIR, VERSION,
};
pub use error::{Error, Result};
pub use handle::{AttachStdin, Attachment, Handle, Logs};
pub use images::{Images, ProgressSender, PULL_LEASE};
pub use layout::JOURNAL_DIR;
pub use logs::{LogEntry, LogPosition, LogStream};
pub use startup::{start, Corral};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use types::*;
