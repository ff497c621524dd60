//! The daemon's actors (actix, one thread):
//!
//! - [`Supervisor`]: the registry `(namespace, id) -> Addr<Container>`; create, lookup, list, delete.
//! - [`Container`]: one per container, the only owner of its state machine and processes.
//! - [`Process`]: one per init or exec process; watches its shim's exit fifo, signals it.
//! - [`Reaper`]: SIGCHLD; reaps the registered children of the daemon.
//! - [`Events`]: assigns sequence numbers and fans events out to subscribers.

pub mod container;
pub mod events;
pub mod process;
pub mod reaper;
pub mod supervisor;

pub use container::Container;
pub use events::{EventStream, Events};
pub use process::Process;
pub use reaper::Reaper;
pub use supervisor::Supervisor;
