//! Push: every blob an image reaches (that the store has), children before parents, each
//! streamed from its file; then the manifests by digest and the top one under the tag.

use super::pull::report;
use super::{Inner, ProgressSender};
use crate::error::{Error, Result};
use crate::registry::Remote;
use crate::types::*;
use std::io::Read;
use std::sync::Arc;
use tokio::task::block_in_place;

/// Bytes read from a blob's file per chunk sent.
const CHUNK: usize = 256 * 1024;

pub(crate) async fn push(
    inner: Arc<Inner>,
    req: PushRequest,
    progress: Option<ProgressSender>,
) -> Result<Descriptor> {
    let ns = namespace_or_default(&req.namespace).to_string();
    let (name, record) = block_in_place(|| inner.find_image(&ns, &req.image))?;
    let reference = req.reference.clone().unwrap_or_else(|| name.clone());
    let remote = Remote::new(&reference, &req.remote)?;
    let top = record.target.clone();
    let pushed = push_tree(&inner, &remote, &top, true, &progress)
        .await
        .map_err(|e| e.context(&format!("push {}", remote.name())));
    pushed.map(|()| top)
}

/// Pushes `desc` and what it reaches; `tagged` puts it under the remote's reference
/// (the top), else by digest.
pub(crate) async fn push_tree(
    inner: &Inner,
    remote: &Remote,
    desc: &Descriptor,
    tagged: bool,
    progress: &Option<ProgressSender>,
) -> Result<()> {
    let bytes = block_in_place(|| inner.content.read_document(&desc.digest))?;
    let kids = super::walk::children(&desc.media_type, &bytes, &desc.digest)?;
    if is_index(&desc.media_type) {
        let mut any = false;
        for k in kids
            .iter()
            .filter(|k| inner.content.contains(&k.desc.digest))
        {
            any = true;
            Box::pin(push_tree(inner, remote, &k.descriptor(), false, progress)).await?;
        }
        if !any {
            return Err(Error::NotFound(format!(
                "none of the manifests of index {} is in the content store",
                desc.digest
            )));
        }
    } else {
        for k in kids.iter().filter(|k| !k.foreign) {
            push_blob(inner, remote, &k.descriptor(), progress).await?;
        }
    }
    let target = if tagged {
        remote.clone()
    } else {
        remote.with_reference(&format!(
            "{}/{}@{}",
            remote.registry(),
            remote.repository(),
            desc.digest
        ))?
    };
    target.push_manifest(&desc.media_type, bytes).await?;
    report(progress, desc, BlobState::Done, desc.size);
    Ok(())
}

async fn push_blob(
    inner: &Inner,
    remote: &Remote,
    desc: &Descriptor,
    progress: &Option<ProgressSender>,
) -> Result<()> {
    let file = block_in_place(|| inner.content.open_blob(&desc.digest))?;
    report(progress, desc, BlobState::Uploading, 0);
    // The bytes read so far, reported at most every PROGRESS_EVERY (what the registry has
    // taken, give or take a chunk).
    struct Reading {
        file: std::fs::File,
        offset: u64,
        last: std::time::Instant,
    }
    let (d, tell) = (desc.clone(), progress.clone());
    let start = Reading {
        file,
        offset: 0,
        last: std::time::Instant::now(),
    };
    let body = futures_util::stream::unfold(Some(start), move |state| {
        let (d, tell) = (d.clone(), tell.clone());
        async move {
            let mut r = state?;
            let mut buf = vec![0u8; CHUNK];
            match block_in_place(|| r.file.read(&mut buf)) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    r.offset += n as u64;
                    if r.last.elapsed() >= super::pull::PROGRESS_EVERY {
                        r.last = std::time::Instant::now();
                        report(&tell, &d, BlobState::Uploading, r.offset);
                    }
                    Some((Ok(buf.into()), Some(r)))
                }
                Err(e) => Some((
                    Err(std::io::Error::new(
                        e.kind(),
                        format!("read blob {}: {e}", d.digest),
                    )),
                    None,
                )),
            }
        }
    });
    let sent = remote.push_blob(desc, body).await?;
    report(
        progress,
        desc,
        if sent {
            BlobState::Done
        } else {
            BlobState::Exists
        },
        desc.size,
    );
    Ok(())
}
