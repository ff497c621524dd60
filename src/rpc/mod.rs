//! The local RPC: a unix socket carrying frames of a big-endian u32 length then a bincode
//! 1.3 payload. The length is checked against [`MAX_FRAME`] before anything is allocated,
//! and payloads are decoded with the same limit. The first frame each way is a
//! [`Request::Hello`] / [`Reply::Hello`] handshake; every request carries an id that its
//! replies repeat; `Subscribe` and `Wait` replies come later, as streams.

mod client;
mod client_containers;
mod client_images;
mod client_stdio;
mod containers;
#[doc(hidden)] // For corral's own tests (raw frames), not a stable API.
pub mod frame;
mod images;
mod protocol;
#[doc(hidden)] // For corrald, not a stable API.
pub mod server;
mod stdio;

pub use client::{went_away, Client, Resumed, ResumingSubscription, Subscription};
pub use client_stdio::{AttachInput, Attached, LogReader};
pub use frame::MAX_FRAME;
pub use protocol::{ClientFrame, Reply, Request, ServerFrame, PROTOCOL_VERSION};

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/corral/corrald.sock";
