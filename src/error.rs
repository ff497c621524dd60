//! The one error type of the library, carried as-is over the RPC.

use serde::{Deserialize, Serialize};

/// Every failure the supervisor reports, typed so that a client can react to the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No container, process or checkpoint with that name.
    #[error("not found: {0}")]
    NotFound(String),
    /// The id is taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request itself is wrong: a bad id, a missing bundle, a bad spec.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller may not use this daemon.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The request does not fit the container's current state.
    #[error("wrong state: {0}")]
    WrongState(String),
    /// The OCI runtime refused or failed; `stderr` is what it said.
    #[error("runtime failed: {op} {id}: {stderr}")]
    RuntimeFailed {
        /// The runtime verb (create, start, kill, delete...).
        op: String,
        /// The container the call was about.
        id: String,
        /// The runtime's own error text.
        stderr: String,
    },
    /// A runtime call or shim interaction did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An event subscriber fell behind; events from `first_missed` on were not delivered.
    #[error("subscriber lagged: events from sequence {first_missed} on were not delivered")]
    Lagged {
        /// The first sequence number this subscriber did not receive.
        first_missed: u64,
    },
    /// The peer broke the wire protocol (garbage frame, oversized frame, bad handshake).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Anything else: I/O on the state dir, a daemon that went away.
    #[error("internal error: {0}")]
    Internal(String),
    /// Not a failure: a subscription's `since` asked for events the journal no longer keeps
    /// (rotated away). Told once, before the replay, which starts at `first_kept`; the
    /// stream goes on.
    #[error("events before {first_kept} are no longer kept; replaying from {first_kept}")]
    Truncated {
        /// The oldest sequence number the journal still holds.
        first_kept: u64,
        /// What the subscriber asked for.
        asked: crate::types::Since,
    },
    /// A remote (a registry) could not be reached or answered with a server error.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Data is not what it claims to be: a digest or size that does not match, a broken
    /// manifest or tar.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The disk is full (ENOSPC or EDQUOT) while writing what is named.
    #[error("no space left: {0}")]
    NoSpace(String),
}

impl Error {
    /// The same error, its message prefixed with what was being done (`pull X: ...`).
    pub fn context(self, what: &str) -> Self {
        let f = |m: String| {
            if m.starts_with(what) {
                m
            } else {
                format!("{what}: {m}")
            }
        };
        match self {
            Error::NotFound(m) => Error::NotFound(f(m)),
            Error::AlreadyExists(m) => Error::AlreadyExists(f(m)),
            Error::InvalidArgument(m) => Error::InvalidArgument(f(m)),
            Error::PermissionDenied(m) => Error::PermissionDenied(f(m)),
            Error::WrongState(m) => Error::WrongState(f(m)),
            Error::Timeout(m) => Error::Timeout(f(m)),
            Error::Internal(m) => Error::Internal(f(m)),
            Error::Unavailable(m) => Error::Unavailable(f(m)),
            Error::Corrupt(m) => Error::Corrupt(f(m)),
            Error::NoSpace(m) => Error::NoSpace(f(m)),
            other => other,
        }
    }

    /// Shorthand for an I/O failure with what was being done.
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace(format!("{what}: {err}")),
            _ => Error::Internal(format!("{what}: {err}")),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
