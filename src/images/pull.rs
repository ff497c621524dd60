//! Pull: resolve the reference, fetch the index and the manifest(s), download every blob
//! into the content store (verified as it streams, resumed from an earlier ingest, shared
//! with any other pull of the same blob), then record the image.
//!
//! The pull holds a lease from before its first byte. On success the image holds what it
//! needs and the lease goes; on failure the lease stays (24 h), so a retry resumes the
//! ingests, and GC removes them once it lapses (or `lease rm`).

use super::{Inner, ProgressSender, LEASE_LABEL_PULL, PULL_LEASE};
use crate::error::{Error, Result};
use crate::registry::Remote;
use crate::types::*;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::block_in_place;

/// Blobs downloaded at once by one pull.
const PARALLEL: usize = 3;
/// How often a downloading blob reports its bytes.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(150);

/// Reports one blob's progress (a client that went away is not an error).
pub(crate) fn report(
    progress: &Option<ProgressSender>,
    desc: &Descriptor,
    state: BlobState,
    offset: u64,
) {
    if let Some(tx) = progress {
        let _ = tx.send(Progress {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            state,
            offset,
            total: desc.size,
        });
    }
}

/// Resolves the remote's reference (the top descriptor and its bytes), reporting
/// `Resolving` with the reference's full name as the digest.
pub(crate) async fn resolve(
    remote: &Remote,
    progress: &Option<ProgressSender>,
) -> Result<(Descriptor, Vec<u8>)> {
    let resolving = Descriptor {
        media_type: String::new(),
        digest: remote.name(),
        size: 0,
    };
    report(progress, &resolving, BlobState::Resolving, 0);
    remote.resolve().await
}

pub(crate) async fn pull(
    inner: Arc<Inner>,
    req: PullRequest,
    progress: Option<ProgressSender>,
) -> Result<ImageInfo> {
    let ns = namespace_or_default(&req.namespace).to_string();
    let remote = Remote::new(&req.reference, &req.remote)?;
    let name = remote.name();
    let (top, top_bytes) = resolve(&remote, &progress).await?;
    let platform = req.platform.clone().unwrap_or_else(Platform::host);

    // Already here: a manifest check, no download.
    if let Ok((_, r)) = inner.find_image(&ns, &name) {
        if r.target == top
            && block_in_place(|| complete(&inner, &top, &platform, req.all_platforms))
        {
            report(&progress, &top, BlobState::Exists, top.size);
            let mut labels = r.labels.clone();
            labels.extend(req.labels.clone());
            let record = block_in_place(|| inner.put_image(&ns, &name, top.clone(), labels))?;
            return Ok(super::store::image_info(
                &name,
                &record,
                block_in_place(|| super::walk::size(&inner.content, &record.target)),
            ));
        }
    }

    let lease = format!("pull-{}", now_ns());
    block_in_place(|| {
        inner.create_lease(
            &ns,
            &lease,
            BTreeMap::from([(LEASE_LABEL_PULL.to_string(), name.clone())]),
            Some(PULL_LEASE),
        )
    })?;
    let pulled = fetch_all(
        &inner, &remote, &ns, &lease, &top, &top_bytes, &platform, &req, &progress,
    )
    .await
    .map_err(|e| e.context(&format!("pull {name}")));
    match pulled {
        Ok(()) => {
            let record = block_in_place(|| {
                let r = inner.put_image(&ns, &name, top.clone(), req.labels.clone());
                inner.lease_drop(&ns, &lease);
                r
            })?;
            Ok(super::store::image_info(
                &name,
                &record,
                block_in_place(|| super::walk::size(&inner.content, &record.target)),
            ))
        }
        Err(e) => {
            tracing::warn!(lease = %lease, "{e}; the downloaded part is kept under the lease");
            Err(e)
        }
    }
}

/// Whether every blob the image needs for `platform` (or all) is in the store.
fn complete(inner: &Inner, top: &Descriptor, platform: &Platform, all: bool) -> bool {
    let Ok(manifests) = chosen_manifests(inner, top, platform, all) else {
        return false;
    };
    manifests.iter().all(|m| {
        inner.content.contains(&m.digest)
            && inner
                .content
                .read_document(&m.digest)
                .and_then(|b| super::walk::children(&m.media_type, &b, &m.digest))
                .is_ok_and(|kids| {
                    kids.iter()
                        .filter(|k| !k.foreign)
                        .all(|k| inner.content.contains(&k.desc.digest))
                })
    })
}

/// The manifests of `top` a pull wants, from the store's copy of `top`.
fn chosen_manifests(
    inner: &Inner,
    top: &Descriptor,
    platform: &Platform,
    all: bool,
) -> Result<Vec<Descriptor>> {
    if !is_index(&top.media_type) {
        return Ok(vec![top.clone()]);
    }
    let bytes = inner.content.read_document(&top.digest)?;
    pick(&bytes, top, platform, all, &top.digest)
}

fn pick(
    bytes: &[u8],
    top: &Descriptor,
    platform: &Platform,
    all: bool,
    name: &str,
) -> Result<Vec<Descriptor>> {
    if all {
        let kids = super::walk::children(&top.media_type, bytes, name)?;
        return Ok(kids
            .iter()
            .filter(|k| is_manifest(&k.desc.media_type))
            .map(|k| k.descriptor())
            .collect());
    }
    Ok(vec![crate::registry::select_platform(
        bytes, platform, name,
    )?])
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_all(
    inner: &Arc<Inner>,
    remote: &Remote,
    ns: &str,
    lease: &str,
    top: &Descriptor,
    top_bytes: &[u8],
    platform: &Platform,
    req: &PullRequest,
    progress: &Option<ProgressSender>,
) -> Result<()> {
    block_in_place(|| {
        inner.lease_hold(ns, lease, &top.digest)?;
        inner.content.write_blob(top, top_bytes)
    })?;
    report(progress, top, BlobState::Done, top.size);
    let manifests = if is_index(&top.media_type) {
        pick(top_bytes, top, platform, req.all_platforms, &remote.name())?
    } else {
        vec![top.clone()]
    };
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &manifests {
        let bytes = if m.digest == top.digest {
            top_bytes.to_vec()
        } else {
            block_in_place(|| inner.lease_hold(ns, lease, &m.digest))?;
            let bytes = if inner.content.contains(&m.digest) {
                block_in_place(|| inner.content.read_document(&m.digest))?
            } else {
                let bytes = remote.fetch_manifest(m).await?;
                block_in_place(|| inner.content.write_blob(m, &bytes))?;
                bytes
            };
            report(progress, m, BlobState::Done, m.size);
            bytes
        };
        for k in super::walk::children(&m.media_type, &bytes, &m.digest)? {
            if k.foreign {
                continue;
            }
            if !is_manifest(&m.media_type) {
                return Err(Error::InvalidArgument(format!(
                    "unsupported media type {} for {}",
                    m.media_type, m.digest
                )));
            }
            if seen.insert(k.desc.digest.clone()) {
                blobs.push(k.descriptor());
            }
        }
    }
    for b in &blobs {
        crate::content::digest_hex(&b.digest)?;
        report(progress, b, BlobState::Waiting, 0);
    }
    let jobs = blobs.into_iter().map(|b| {
        let (inner, remote, progress) = (inner.clone(), remote.clone(), progress.clone());
        let (ns, lease) = (ns.to_string(), lease.to_string());
        async move { fetch_blob(&inner, &remote, &ns, &lease, &b, &progress).await }
    });
    let results: Vec<Result<()>> = futures_util::stream::iter(jobs)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Removes a download's claim when it ends, however it ends, and wakes its waiters.
struct Claim<'a> {
    inner: &'a Inner,
    digest: String,
    _done: tokio::sync::watch::Sender<bool>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        super::poisoned(&self.inner.downloads).remove(&self.digest);
    }
}

/// One blob into the store, unless it is there; a blob another pull is downloading is
/// waited for, not downloaded twice.
async fn fetch_blob(
    inner: &Inner,
    remote: &Remote,
    ns: &str,
    lease: &str,
    desc: &Descriptor,
    progress: &Option<ProgressSender>,
) -> Result<()> {
    block_in_place(|| inner.lease_hold(ns, lease, &desc.digest))?;
    loop {
        if inner.content.contains(&desc.digest) {
            report(progress, desc, BlobState::Exists, desc.size);
            return Ok(());
        }
        match claim(inner, &desc.digest) {
            Turn::Mine(tx) => {
                let claim = Claim {
                    inner,
                    digest: desc.digest.clone(),
                    _done: tx,
                };
                let r = download(inner, remote, desc, progress).await;
                drop(claim);
                if r.is_err() {
                    report(progress, desc, BlobState::Failed, 0);
                }
                return r;
            }
            Turn::Wait(mut rx) => {
                report(progress, desc, BlobState::Waiting, 0);
                // Ends when the other download's claim goes (its sender is dropped).
                let _ = rx.changed().await;
            }
        }
    }
}

enum Turn {
    Mine(tokio::sync::watch::Sender<bool>),
    Wait(tokio::sync::watch::Receiver<bool>),
}

/// Claims the download of `digest`, or hands back the claim of the pull that has it.
fn claim(inner: &Inner, digest: &str) -> Turn {
    let mut downloads = super::poisoned(&inner.downloads);
    if let Some(rx) = downloads.get(digest) {
        return Turn::Wait(rx.clone());
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    downloads.insert(digest.to_string(), rx);
    Turn::Mine(tx)
}

async fn download(
    inner: &Inner,
    remote: &Remote,
    desc: &Descriptor,
    progress: &Option<ProgressSender>,
) -> Result<()> {
    let what = || format!("blob {} ({})", desc.digest, desc.media_type);
    let mut ingest = block_in_place(|| inner.content.ingest(desc))?;
    let body = remote
        .blob(desc, ingest.offset())
        .await
        .map_err(|e| e.context(&what()))?;
    if body.restarted && ingest.offset() > 0 {
        block_in_place(|| ingest.restart())?;
    }
    report(progress, desc, BlobState::Downloading, ingest.offset());
    let mut last = Instant::now();
    let mut stream = body.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e @ Error::Corrupt(_)) => {
                // The bytes do not match the digest: they are no start to resume from
                // (kept, they would make the next pull of the blob fail too).
                drop(ingest);
                let _ = block_in_place(|| inner.content.remove_ingest(&desc.digest));
                return Err(e.context(&what()));
            }
            Err(e) => return Err(e.context(&what())),
        };
        if let Err(e) = block_in_place(|| ingest.write(&chunk)) {
            if matches!(e, Error::NoSpace(_)) {
                // The partial blob is what filled the disk: it goes, or nothing else could
                // be written (not even the removal of the pull's lease).
                drop(ingest);
                let _ = block_in_place(|| inner.content.remove_ingest(&desc.digest));
            }
            return Err(e);
        }
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            report(progress, desc, BlobState::Downloading, ingest.offset());
        }
    }
    report(progress, desc, BlobState::Verifying, ingest.offset());
    block_in_place(|| ingest.commit())?;
    report(progress, desc, BlobState::Done, desc.size);
    Ok(())
}
