//! Restore from a checkpoint: the init process's shim runs `runtime restore` with the
//! checkpoint's images and options; CRIU's own error lines are quoted when it fails. The
//! rest of a restore is a create (see `create.rs` and the Supervisor's `Restore`).

use crate::error::Error;
use crate::layout::ShimDir;
use crate::shim::ShimArgs;
use std::path::{Path, PathBuf};

/// A checkpoint to restore a container from.
pub struct RestoreFrom {
    /// The checkpoint's directory (with `images/`).
    pub dir: PathBuf,
    /// The options it was taken with.
    pub options: crate::checkpoint::CheckpointOptions,
}

/// The shim's extra arguments for `restore`: the CRIU binary, the images, a work dir in the
/// init's process dir, and the checkpoint's own options.
pub(super) fn add_args(args: &mut ShimArgs, from: &RestoreFrom, criu: &Path, init: &ShimDir) {
    args.runtime_args.push("--criu".into());
    args.runtime_args.push(criu.into());
    args.verb_args.push("--image-path".into());
    args.verb_args
        .push(crate::layout::checkpoint_images(&from.dir).into());
    args.verb_args.push("--work-path".into());
    args.verb_args.push(init.criu_work().into());
    args.verb_args
        .extend(from.options.runtime_flags().into_iter().map(Into::into));
}

/// A failed restore, with what CRIU said appended.
pub(super) fn with_criu_errors(err: Error, init: &ShimDir) -> Error {
    match err {
        Error::RuntimeFailed { op, id, stderr } => {
            let criu = crate::checkpoint::criu_errors(&init.criu_work());
            let stderr = if criu.is_empty() {
                stderr
            } else {
                format!("{stderr}\nCRIU said:\n{criu}")
            };
            Error::RuntimeFailed { op, id, stderr }
        }
        other => other,
    }
}
