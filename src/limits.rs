//! The daemon's open-files limit: every supervised container costs the daemon a few file
//! descriptors (its exit fifo and the OOM watch's two), and services often start with a
//! soft limit of 1024. The soft limit is raised to the hard one at start.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors the daemon holds per running container (exit fifo, OOM eventfd and counter).
pub const FDS_PER_CONTAINER: u64 = 3;
/// Descriptors kept for everything else (sockets, journal, clients).
pub const FDS_RESERVED: u64 = 256;

/// Raises the soft RLIMIT_NOFILE to the hard limit and says what it allows; returns the
/// soft limit now in force.
pub fn raise_open_files() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let now = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!("open files limit raised from {soft} to {hard}");
                hard
            }
            Err(e) => {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    let room = now.saturating_sub(FDS_RESERVED) / FDS_PER_CONTAINER;
    if room < 1000 {
        tracing::warn!(
            "the open files limit ({now}) holds about {room} running containers; \
             raise the hard limit (LimitNOFILE= in a systemd unit) to supervise more"
        );
    }
    now
}

/// Says so when the open files limit in force cannot hold `containers` more containers.
pub fn warn_if_short(containers: u64) {
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if !fits(containers, soft) {
            tracing::warn!(
                "{containers} containers need about {} open files, but the limit is {soft}: \
                 creates and restarts will fail with \"Too many open files\"",
                containers * FDS_PER_CONTAINER + FDS_RESERVED
            );
        }
    }
}

/// Whether `containers` running containers fit in the open files limit `limit`.
pub fn fits(containers: u64, limit: u64) -> bool {
    containers * FDS_PER_CONTAINER + FDS_RESERVED <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let now = raise_open_files();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(now, soft);
        assert_eq!(soft, hard);
        assert!(fits(1000, 20000));
        assert!(!fits(1000, 1024));
    }
}
