//! Restart policies.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// When a container is restarted after its process exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit not caused by a user's kill, at most `max` times if given.
    OnFailure {
        /// The most restarts; `None` for no limit.
        max: Option<u32>,
    },
    /// After every exit.
    Always,
    /// After every exit not caused by a user's kill.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "restart policy {s:?} is not one of no, on-failure[:MAX], always, unless-stopped"
            ))
        };
        Ok(match s {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max: None },
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure {
                    max: Some(n.parse().map_err(|_| bad())?),
                },
                None => return Err(bad()),
            },
        })
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}
