//! A container's summary, pushed to the Supervisor whenever it changes: the Supervisor
//! answers lists, namespace-wide info and the metrics' counts from these without asking
//! each container.

use crate::types::ContainerInfo;
use actix::prelude::*;
use std::hash::Hasher;

/// A container's state as it is now (sent only when it changed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Summary(pub Box<ContainerInfo>);

/// A hash of everything in `info`, so that a container keeps 8 bytes, not a second copy of
/// its summary, to tell whether the summary changed.
pub fn fingerprint(info: &ContainerInfo) -> u64 {
    let mut hasher = HashWriter(std::collections::hash_map::DefaultHasher::new());
    // Writing into a hasher cannot fail; a summary that somehow could not be encoded is
    // hashed as far as it got, which at worst pushes it once more than needed.
    let _ = serde_json::to_writer(&mut hasher, info);
    hasher.0.finish()
}

/// An `io::Write` that hashes what is written.
struct HashWriter(std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_any_field() {
        let a = ContainerInfo::unknown("ns", "c");
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.operation = "restarting".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c.pid = 42;
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
