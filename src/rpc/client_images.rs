//! The client's image, content, lease and namespace calls.

use super::client::{unexpected, Client};
use super::protocol::*;
use crate::error::Result;
use crate::types::*;
use std::collections::BTreeMap;

/// The reply's payload if it is `$variant`, else a protocol error.
macro_rules! want {
    ($reply:expr, $variant:path) => {
        match $reply {
            $variant(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    };
}

fn ok(reply: Reply) -> Result<()> {
    match reply {
        Reply::Ok => Ok(()),
        other => Err(unexpected(&other)),
    }
}

impl Client {
    /// Pulls an image, calling `progress` for every step; returns the image.
    pub fn pull(&mut self, req: PullRequest, progress: impl FnMut(&Progress)) -> Result<ImageInfo> {
        want!(
            self.transfer(Request::ImagePull(req), progress)?,
            Reply::Image
        )
    }

    /// Pushes an image, calling `progress` for every step; returns what was pushed.
    pub fn push(
        &mut self,
        req: PushRequest,
        progress: impl FnMut(&Progress),
    ) -> Result<Descriptor> {
        want!(
            self.transfer(Request::ImagePush(req), progress)?,
            Reply::Descriptor
        )
    }

    /// Pushes a checkpoint (with its base image) to a registry, calling `progress` for
    /// every step; returns the index pushed.
    pub fn push_checkpoint(
        &mut self,
        req: crate::checkpoint::CheckpointPushRequest,
        progress: impl FnMut(&Progress),
    ) -> Result<Descriptor> {
        want!(
            self.transfer(Request::CheckpointPush(req), progress)?,
            Reply::Descriptor
        )
    }

    /// Pulls a checkpoint from a registry, calling `progress` for every step; returns the
    /// checkpoint as stored.
    pub fn pull_checkpoint(
        &mut self,
        req: crate::checkpoint::CheckpointPullRequest,
        progress: impl FnMut(&Progress),
    ) -> Result<crate::checkpoint::CheckpointInfo> {
        want!(
            self.transfer(Request::CheckpointPull(req), progress)?,
            Reply::Checkpoint
        )
    }

    fn transfer(&mut self, request: Request, mut progress: impl FnMut(&Progress)) -> Result<Reply> {
        let id = self.send(request)?;
        loop {
            match self.receive(id)? {
                Reply::Progress(p) => progress(&p),
                reply => return Ok(reply),
            }
        }
    }

    /// The images of a namespace.
    pub fn images(&mut self, namespace: &str) -> Result<Vec<ImageInfo>> {
        let namespace = namespace.to_string();
        want!(self.call(Request::ImageList { namespace })?, Reply::Images)
    }

    /// One image with its documents.
    pub fn inspect_image(
        &mut self,
        namespace: &str,
        name: &str,
        platform: Option<Platform>,
    ) -> Result<ImageDetail> {
        let req = Request::ImageInspect {
            namespace: namespace.into(),
            name: name.into(),
            platform,
        };
        want!(self.call(req)?, Reply::ImageDetail).map(|d| *d)
    }

    /// Removes images (then GC unless `no_gc`).
    pub fn remove_images(
        &mut self,
        namespace: &str,
        names: Vec<String>,
        no_gc: bool,
    ) -> Result<()> {
        let req = Request::ImageRemove {
            namespace: namespace.into(),
            names,
            no_gc,
        };
        ok(self.call(req)?)
    }

    /// Gives an image another name.
    pub fn tag_image(
        &mut self,
        namespace: &str,
        source: &str,
        target: &str,
        force: bool,
    ) -> Result<ImageInfo> {
        let req = Request::ImageTag {
            namespace: namespace.into(),
            source: source.into(),
            target: target.into(),
            force,
        };
        want!(self.call(req)?, Reply::Image)
    }

    /// Imports images from a tar on the daemon's host.
    pub fn import_images(&mut self, req: ImportRequest) -> Result<Vec<ImageInfo>> {
        want!(self.call(Request::ImageImport(req))?, Reply::Images)
    }

    /// Exports images to a tar on the daemon's host; returns its size.
    pub fn export_images(&mut self, req: ExportRequest) -> Result<u64> {
        want!(self.call(Request::ImageExport(req))?, Reply::Size)
    }

    /// Every blob.
    pub fn content(&mut self) -> Result<Vec<ContentInfo>> {
        want!(self.call(Request::ContentList)?, Reply::Contents)
    }

    /// One blob.
    pub fn content_info(&mut self, digest: &str) -> Result<ContentInfo> {
        let digest = digest.to_string();
        want!(self.call(Request::ContentInfo { digest })?, Reply::Content)
    }

    /// The downloads not yet committed.
    pub fn ingests(&mut self) -> Result<Vec<IngestInfo>> {
        want!(self.call(Request::ContentIngests)?, Reply::Ingests)
    }

    /// Removes blobs nothing holds.
    pub fn remove_content(&mut self, digests: Vec<String>) -> Result<()> {
        ok(self.call(Request::ContentRemove { digests })?)
    }

    /// Creates a lease.
    pub fn create_lease(
        &mut self,
        namespace: &str,
        id: &str,
        labels: BTreeMap<String, String>,
        expires_secs: Option<u64>,
    ) -> Result<LeaseInfo> {
        let req = Request::LeaseCreate {
            namespace: namespace.into(),
            id: id.into(),
            labels,
            expires_secs,
        };
        want!(self.call(req)?, Reply::Lease)
    }

    /// The leases of a namespace.
    pub fn leases(&mut self, namespace: &str) -> Result<Vec<LeaseInfo>> {
        let namespace = namespace.to_string();
        want!(self.call(Request::LeaseList { namespace })?, Reply::Leases)
    }

    /// Removes a lease (then GC unless `no_gc`).
    pub fn remove_lease(&mut self, namespace: &str, id: &str, no_gc: bool) -> Result<()> {
        let req = Request::LeaseRemove {
            namespace: namespace.into(),
            id: id.into(),
            no_gc,
        };
        ok(self.call(req)?)
    }

    /// Collects garbage now.
    pub fn prune(&mut self) -> Result<PruneReport> {
        want!(self.call(Request::Prune)?, Reply::Pruned)
    }

    /// Records a namespace.
    pub fn create_namespace(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        let req = Request::NamespaceCreate {
            name: name.into(),
            labels,
        };
        want!(self.call(req)?, Reply::Namespace)
    }

    /// Every namespace.
    pub fn namespaces(&mut self) -> Result<Vec<NamespaceInfo>> {
        want!(self.call(Request::NamespaceList)?, Reply::Namespaces)
    }

    /// Sets or (with an empty value) removes labels of a namespace.
    pub fn label_namespace(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceInfo> {
        let req = Request::NamespaceLabel {
            name: name.into(),
            labels,
        };
        want!(self.call(req)?, Reply::Namespace)
    }

    /// Removes a namespace that holds nothing.
    pub fn remove_namespace(&mut self, name: &str) -> Result<()> {
        ok(self.call(Request::NamespaceRemove { name: name.into() })?)
    }
}
