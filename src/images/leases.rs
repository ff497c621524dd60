//! Leases (while one lives, GC keeps what it holds) and garbage collection on demand.

use super::{gc, ns_or_default, poisoned, store::LeaseRecord, Images, Inner};
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Checks a lease id.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "bad {what} {name:?}: letters, digits, '.', '_' and '-', starting with a letter or \
             digit, at most 255"
        )))
    }
}

impl Images {
    /// Creates a lease (`id` empty: one is made up).
    pub async fn lease_create(
        &self,
        namespace: &str,
        id: &str,
        labels: BTreeMap<String, String>,
        expires: Option<Duration>,
    ) -> Result<LeaseInfo> {
        let ns = ns_or_default(namespace)?;
        let id = if id.is_empty() {
            format!("lease-{}", now_ns())
        } else {
            id.to_string()
        };
        check_name("lease id", &id)?;
        self.blocking(move |inner| inner.create_lease(&ns, &id, labels, expires))
            .await
    }

    /// The leases of a namespace.
    pub async fn lease_list(&self, namespace: &str) -> Result<Vec<LeaseInfo>> {
        let ns = ns_or_default(namespace)?;
        self.blocking(move |inner| {
            let meta = poisoned(&inner.meta);
            Ok(meta
                .db
                .leases
                .get(&ns)
                .map(|m| m.iter().map(|(id, l)| l.info(id)).collect())
                .unwrap_or_default())
        })
        .await
    }

    /// Removes a lease; then runs GC unless `no_gc`.
    pub async fn lease_remove(&self, namespace: &str, id: &str, no_gc: bool) -> Result<()> {
        let ns = ns_or_default(namespace)?;
        let id = id.to_string();
        self.blocking(move |inner| {
            inner.change(|db| {
                db.leases
                    .get_mut(&ns)
                    .and_then(|m| m.remove(&id))
                    .map(|_| ())
                    .ok_or_else(|| Error::NotFound(format!("lease {id} in namespace {ns}")))
            })?;
            if !no_gc {
                gc::collect(inner, &ns)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs GC now (its snapshot events go to namespace `default`).
    pub async fn prune(&self) -> Result<PruneReport> {
        self.blocking(|inner| gc::collect(inner, DEFAULT_NAMESPACE))
            .await
    }
}

impl Inner {
    pub(crate) fn create_lease(
        &self,
        ns: &str,
        id: &str,
        labels: BTreeMap<String, String>,
        expires: Option<Duration>,
    ) -> Result<LeaseInfo> {
        let now = now_ns();
        let record = LeaseRecord {
            labels,
            created_ns: now,
            expires_ns: expires.map(|d| now.saturating_add(d.as_nanos() as u64)),
            ..LeaseRecord::default()
        };
        self.change(|db| {
            let leases = db.leases.entry(ns.to_string()).or_default();
            if leases.contains_key(id) {
                return Err(Error::AlreadyExists(format!(
                    "lease {id} in namespace {ns}"
                )));
            }
            leases.insert(id.to_string(), record.clone());
            db.ensure_namespace(ns);
            Ok(())
        })?;
        Ok(record.info(id))
    }

    /// Adds a blob (and its ingest) to a lease, before its first byte is written: GC then
    /// keeps both.
    pub(crate) fn lease_hold(&self, ns: &str, lease: &str, digest: &str) -> Result<()> {
        self.change(|db| {
            let l = db
                .leases
                .get_mut(ns)
                .and_then(|m| m.get_mut(lease))
                .ok_or_else(|| Error::NotFound(format!("lease {lease} in namespace {ns}")))?;
            l.content.insert(digest.to_string());
            l.ingests.insert(digest.to_string());
            Ok(())
        })
    }

    /// Adds an ingest alone to a lease (an import's, whose digest is not known yet).
    pub(crate) fn lease_hold_ingest(&self, ns: &str, lease: &str, key: &str) -> Result<()> {
        self.change(|db| {
            db.leases
                .get_mut(ns)
                .and_then(|m| m.get_mut(lease))
                .ok_or_else(|| Error::NotFound(format!("lease {lease} in namespace {ns}")))?
                .ingests
                .insert(key.to_string());
            Ok(())
        })
    }

    /// Ends a lease (its holdings are then up to images and GC).
    pub(crate) fn lease_drop(&self, ns: &str, lease: &str) {
        let _ = self.change(|db| {
            if let Some(m) = db.leases.get_mut(ns) {
                m.remove(lease);
            }
            Ok(())
        });
    }
}
