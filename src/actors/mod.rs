//! The daemon's actors (actix, one thread):
//!
//! - [`Supervisor`](supervisor::Supervisor): the registry `(namespace, id) -> Addr<Container>`; create, lookup, list, delete.
//! - [`Container`](container::Container): one per container, the only owner of its state machine and processes.
//! - [`Process`](process::Process) (not an actor): one per init or exec process; its Container watches its shim's exit fifo, and signals it through it.
//! - [`Reaper`]: SIGCHLD; reaps the registered children of the daemon.
//! - [`Events`](events::Events): assigns sequence numbers and fans events out to subscribers.

pub mod container;
pub mod events;
pub mod process;
pub mod reaper;
pub mod supervisor;

pub use events::EventStream;
pub use reaper::Reaper;
