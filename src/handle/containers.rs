//! Container records and their tasks on the [`Handle`]: `container create|ls|info|label|
//! update|rm` and `task start|rm`, as containerd 1.x splits a Container (metadata) from its
//! Task (the running instance).

use super::{mailbox, Handle};
use crate::actors::supervisor;
use crate::error::{Error, Result};
use crate::types::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

impl Handle {
    /// Makes a container record from an image (unpacked if needed, its writable snapshot
    /// prepared, its spec computed and stored); no task. Refused if the id is a record's
    /// or a task's.
    pub async fn create_container(&self, req: ContainerCreateRequest) -> Result<ContainerMeta> {
        let ns = namespace_or_default(&req.namespace).to_string();
        self.refuse_task(&ns, &req.id).await?;
        self.images
            .container_create(req, crate::images::RootfsAfterCreate::Unmounted)
            .await
    }

    /// The container records of a namespace whose labels include all of `labels`.
    pub async fn containers(
        &self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<ContainerMeta>> {
        self.images.container_list(namespace, labels).await
    }

    /// One container record.
    pub async fn container_record(&self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        self.images.container_get(namespace, id).await
    }

    /// Changes a container record's labels (an empty value removes one), runtime, spec or
    /// extensions; a new spec is used by the next task.
    pub async fn update_container(&self, req: ContainerUpdateRequest) -> Result<ContainerMeta> {
        self.images.container_update(req).await
    }

    /// Removes a container record and its writable snapshot; refused while it has a task.
    pub async fn remove_container(&self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        let ns = namespace_or_default(namespace).to_string();
        self.images.container_get(&ns, id).await?;
        match self.task_exists(&ns, id).await? {
            true => Err(Error::WrongState(format!(
                "container {id} in namespace {ns} has a task: delete its task first: corralctl \
                 task rm {id}"
            ))),
            false => self.images.container_remove(&ns, id).await,
        }
    }

    /// Makes a task from a container record and starts it: the snapshot mounted at the
    /// bundle's rootfs, `config.json` from the record's spec, the record's runtime and
    /// labels. Refused if the container has a task.
    pub async fn start_task(&self, req: TaskStartRequest) -> Result<ContainerInfo> {
        let ns = namespace_or_default(&req.namespace).to_string();
        self.images.container_get(&ns, &req.id).await?;
        self.refuse_task(&ns, &req.id).await?;
        let create = CreateRequest {
            namespace: ns,
            id: req.id,
            bundle: PathBuf::new(),
            runtime: None,
            runtime_args: Vec::new(),
            labels: BTreeMap::new(),
            stdio: req.stdio,
            start: true,
            restart: req.restart,
            image: None,
            no_pivot_root: req.no_pivot_root,
        };
        self.task_from_record(create).await
    }

    /// Deletes a task (a running one only with `force`) and unmounts its rootfs; the
    /// container record and its snapshot stay, for the next task.
    pub async fn delete_task(
        &self,
        namespace: &str,
        id: &str,
        force: bool,
    ) -> Result<ContainerInfo> {
        let info = self.remove_task(namespace, id, force).await?;
        if self.images.is_image_bundle(&info.bundle) {
            if let Err(e) = self.images.task_unmount(&info.namespace, &info.id).await {
                tracing::warn!(
                    "task {}/{} deleted, but its rootfs stays mounted: {e}",
                    info.namespace,
                    info.id
                );
            }
        }
        Ok(info)
    }

    /// `req` (its stdio, restart policy and start) as a task of the container record of the
    /// same id; the rootfs is unmounted again if the task cannot be made.
    pub(super) async fn task_from_record(&self, mut req: CreateRequest) -> Result<ContainerInfo> {
        let (ns, id) = (req.namespace.clone(), req.id.clone());
        let (record, bundle) = self.images.task_bundle(&ns, &id).await?;
        req.bundle = bundle;
        req.runtime = record.runtime;
        req.runtime_args = record.runtime_args;
        req.labels = record.labels;
        let task = self.create_task(req).await;
        if task.is_err() {
            if let Err(e) = self.images.task_unmount(&ns, &id).await {
                tracing::warn!("unmounting the rootfs of {ns}/{id}: {e}");
            }
        }
        task
    }

    async fn task_exists(&self, ns: &str, id: &str) -> Result<bool> {
        let key = ContainerKey::new(ns, id)?;
        match self
            .supervisor
            .send(supervisor::Lookup(key))
            .await
            .map_err(mailbox)?
        {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `AlreadyExists` if `ns/id` has a task.
    pub(super) async fn refuse_task(&self, ns: &str, id: &str) -> Result<()> {
        if self.task_exists(ns, id).await? {
            return Err(Error::AlreadyExists(format!(
                "container {id} in namespace {ns} already has a task (delete it first: \
                 corralctl task rm {id})"
            )));
        }
        Ok(())
    }
}
