//! Namespaces as records: created by the first container, image or lease in them, or by
//! `namespace create`; removed only when they hold nothing.

use super::{ns_or_default, poisoned, Images};
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;

impl Images {
    /// Records a namespace (refused if it exists).
    pub async fn namespace_create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        crate::types::validate_id("namespace", name)?;
        let name = name.to_string();
        self.blocking(move |inner| {
            inner.change(|db| {
                if !db.ensure_namespace(&name) {
                    return Err(Error::AlreadyExists(format!("namespace {name}")));
                }
                if let Some(r) = db.namespaces.get_mut(&name) {
                    r.labels = labels.clone();
                }
                Ok(())
            })?;
            inner.publish(&name, Topic::NamespaceCreate, &name);
            Ok(NamespaceInfo { name, labels })
        })
        .await
    }

    /// Records a namespace if it is not yet (a container, image or lease is made in it).
    pub async fn namespace_ensure(&self, name: &str) -> Result<()> {
        let name = ns_or_default(name)?;
        // Checked without the metadata lock, which GC holds from mark to sweep: a create
        // on the actors' thread never waits for a GC.
        if poisoned(&self.inner.known_namespaces).contains(&name) {
            return Ok(());
        }
        if self.inner.runtime.get().is_none() {
            // No image work has started, so no GC can hold the lock: one quick write here
            // rather than a runtime started for it.
            return self.inner.ensure_namespace(&name);
        }
        self.blocking(move |inner| inner.ensure_namespace(&name))
            .await
    }

    /// The recorded namespaces, with those in `also` (namespaces with containers).
    pub async fn namespace_list(&self, also: Vec<String>) -> Result<Vec<NamespaceInfo>> {
        self.blocking(move |inner| {
            let meta = poisoned(&inner.meta);
            let mut out: BTreeMap<String, NamespaceInfo> = meta
                .db
                .namespaces
                .keys()
                .filter_map(|n| meta.db.namespace_info(n))
                .map(|i| (i.name.clone(), i))
                .collect();
            for n in also {
                out.entry(n.clone()).or_insert(NamespaceInfo {
                    name: n,
                    labels: BTreeMap::new(),
                });
            }
            Ok(out.into_values().collect())
        })
        .await
    }

    /// Sets labels of a namespace (an empty value removes the label).
    pub async fn namespace_label(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        crate::types::validate_id("namespace", name)?;
        let name = name.to_string();
        self.blocking(move |inner| {
            let info = inner.change(|db| {
                let r = db
                    .namespaces
                    .get_mut(&name)
                    .ok_or_else(|| Error::NotFound(format!("namespace {name}")))?;
                for (k, v) in labels {
                    if v.is_empty() {
                        r.labels.remove(&k);
                    } else {
                        r.labels.insert(k, v);
                    }
                }
                Ok(db.namespace_info(&name))
            })?;
            inner.publish(&name, Topic::NamespaceUpdate, &name);
            info.ok_or_else(|| Error::Internal("namespace vanished".into()))
        })
        .await
    }

    /// Removes a namespace record; refused while it holds images, leases or `containers`
    /// (named in the refusal).
    pub async fn namespace_remove(&self, name: &str, containers: Vec<String>) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |inner| {
            inner.change(|db| {
                let images: Vec<String> = db
                    .images
                    .get(&name)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                let leases: Vec<String> = db
                    .leases
                    .get(&name)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                let mut held = Vec::new();
                for (what, list) in [
                    ("containers", &containers),
                    ("images", &images),
                    ("leases", &leases),
                ] {
                    if !list.is_empty() {
                        let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
                        let more = if list.len() > 5 { ", ..." } else { "" };
                        held.push(format!(
                            "{} {what} ({}{more})",
                            list.len(),
                            shown.join(", ")
                        ));
                    }
                }
                if !held.is_empty() {
                    return Err(Error::WrongState(format!(
                        "namespace {name} still holds {}: remove them first",
                        held.join(", ")
                    )));
                }
                if db.namespaces.remove(&name).is_none() {
                    return Err(Error::NotFound(format!("namespace {name}")));
                }
                db.images.remove(&name);
                db.leases.remove(&name);
                Ok(())
            })?;
            // The next container made in it records it again.
            poisoned(&inner.known_namespaces).remove(&name);
            inner.publish(&name, Topic::NamespaceDelete, &name);
            Ok(())
        })
        .await
    }
}
