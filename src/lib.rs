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
mod config;
pub mod error;
mod handle;
pub mod journal;
pub mod launch;
pub mod layout;
pub mod metrics;
pub mod oom;
pub mod reaper;
pub mod rpc;
pub mod runtime;
pub mod shim;
mod startup;
pub mod stats;
pub mod types;

pub use actors::EventStream;
pub use config::{
    default_criu_path, default_shim_path, Config, DEFAULT_RUNTIME_ROOT, DEFAULT_STATE_DIR, VERSION,
};
pub use error::{Error, Result};
pub use handle::Handle;
pub use layout::JOURNAL_DIR;
pub use startup::{start, Corral};
pub use types::*;
