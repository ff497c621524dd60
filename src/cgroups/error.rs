//! The cgroups module's errors, with their I/O sources kept, and their mapping onto the
//! library's wire [`Error`](crate::error::Error).

use std::error::Error as _;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A container's cgroup directory does not exist.
    #[error("cgroup {} not found", path.display())]
    NotFound {
        /// The directory looked for.
        path: PathBuf,
    },
    /// A cgroup file could not be opened, read or written (or an fd to watch it made).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The kernel (or the host's hierarchy) does not take a setting; the text is `why`.
    #[error("{why}")]
    Refused {
        /// The resource field (`KernelMemory`, `KernelTCPMemory`).
        field: String,
        /// Why it was refused.
        why: String,
    },
}

impl CgroupError {
    /// Shorthand for [`CgroupError::Io`].
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<CgroupError> for crate::error::Error {
    fn from(e: CgroupError) -> Self {
        use crate::error::Error;
        match e {
            CgroupError::NotFound { path } => Error::NotFound(format!("cgroup {}", path.display())),
            CgroupError::Refused { field, why } => {
                Error::InvalidArgument(format!("{field} refused: {why}"))
            }
            e @ CgroupError::Io { .. } => Error::Internal(chain(&e)),
        }
    }
}

/// An error's text followed by those of its sources, each one only once (a message that
/// already quotes its source, as [`CgroupError::Io`]'s does, does not repeat it).
fn chain(e: &CgroupError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn io_errors_keep_their_source_and_path() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let inner = io::Error::other(Outer(io::Error::other("root cause")));
        let e = CgroupError::io("write", Path::new("/cg/memory.x"), inner);
        assert_eq!(e.to_string(), "write /cg/memory.x: outer");
        assert!(e.source().is_some(), "the io::Error is the source");
        match Error::from(e) {
            Error::Internal(text) => assert_eq!(text, "write /cg/memory.x: outer: root cause"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kinds_map_onto_the_wire_variants() {
        let missing = CgroupError::NotFound {
            path: "/cg/web".into(),
        };
        assert_eq!(
            Error::from(missing),
            Error::NotFound("cgroup /cg/web".into())
        );
        let refused = CgroupError::Refused {
            field: "KernelMemory".into(),
            why: "no".into(),
        };
        assert_eq!(refused.to_string(), "no");
        assert_eq!(
            Error::from(refused),
            Error::InvalidArgument("KernelMemory refused: no".into())
        );
    }
}
