//! The client's container-record and task calls.

use super::client::{unexpected, Client};
use super::protocol::*;
use crate::error::Result;
use crate::types::*;
use std::collections::BTreeMap;

fn record(reply: Reply) -> Result<ContainerMeta> {
    match reply {
        Reply::ContainerMeta(r) => Ok(*r),
        other => Err(unexpected(&other)),
    }
}

fn task(reply: Reply) -> Result<ContainerInfo> {
    match reply {
        Reply::Container(c) => Ok(c),
        other => Err(unexpected(&other)),
    }
}

impl Client {
    /// Makes a container record from an image (no task).
    pub fn create_container(&mut self, req: ContainerCreateRequest) -> Result<ContainerMeta> {
        record(self.call(Request::ContainerCreate(Box::new(req)))?)
    }

    /// The container records of a namespace whose labels include all of `labels`.
    pub fn containers(
        &mut self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<ContainerMeta>> {
        let req = Request::ContainerList {
            namespace: namespace.into(),
            labels,
        };
        match self.call(req)? {
            Reply::ContainerMetas(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }

    /// One container record.
    pub fn container(&mut self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        record(self.call(Request::ContainerGet {
            namespace: namespace.into(),
            id: id.into(),
        })?)
    }

    /// Changes a container record.
    pub fn update_container(&mut self, req: ContainerUpdateRequest) -> Result<ContainerMeta> {
        record(self.call(Request::ContainerUpdate(req))?)
    }

    /// Removes a container record and its snapshot (refused while it has a task).
    pub fn remove_container(&mut self, namespace: &str, id: &str) -> Result<ContainerMeta> {
        record(self.call(Request::ContainerRemove {
            namespace: namespace.into(),
            id: id.into(),
        })?)
    }

    /// Makes a task from a container record and starts it.
    pub fn start_task(&mut self, req: TaskStartRequest) -> Result<ContainerInfo> {
        task(self.call(Request::TaskStart(req))?)
    }

    /// Deletes a task, keeping its container record and snapshot.
    pub fn delete_task(&mut self, namespace: &str, id: &str, force: bool) -> Result<ContainerInfo> {
        task(self.call(Request::TaskDelete {
            namespace: namespace.into(),
            id: id.into(),
            force,
        })?)
    }
}
