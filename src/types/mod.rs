//! The vocabulary shared by the library, the RPC and the CLI: ids, states, requests, events.

mod containers;
mod events;
mod ids;
mod images;
mod info;
mod policy;
mod requests;
mod time;

pub use containers::*;
pub use events::*;
pub use ids::*;
pub use images::*;
pub use info::*;
pub use policy::*;
pub use requests::*;
pub use time::*;

#[cfg(test)]
mod tests;
