//! Names: namespaces, container and exec ids, and their checks.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The process id of a container's init process.
pub const INIT_PROCESS: &str = "init";
/// The longest id accepted for containers, namespaces and execs.
pub const MAX_ID_LEN: usize = 128;

/// Checks an id: letters, digits and `_ . -`, starting with a letter or digit, at most
/// 128 characters. `what` names the field in the error ("container id", "namespace").
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("{what} {id:?} {why}")));
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if id.len() > MAX_ID_LEN {
        return bad(&format!(
            "is {} characters long; at most {MAX_ID_LEN} are allowed",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(&format!(
            "contains {c:?}; only letters, digits and '_', '.', '-' are allowed"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or a digit");
    }
    Ok(())
}

/// The namespace a request means: `default` when it names none.
pub fn namespace_or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    }
}

/// A container's name: its namespace and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerKey {
    /// The namespace, `default` unless given.
    pub namespace: String,
    /// The id, unique within the namespace.
    pub id: String,
}

impl ContainerKey {
    /// Builds a key and validates both parts.
    pub fn new(namespace: &str, id: &str) -> Result<Self> {
        validate_id("namespace", namespace)?;
        validate_id("container id", id)?;
        Ok(ContainerKey {
            namespace: namespace.to_string(),
            id: id.to_string(),
        })
    }
}

impl fmt::Display for ContainerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.id)
    }
}
