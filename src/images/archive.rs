//! Import and export: OCI image layout tars (both ways) and `docker save` tars (in).
//!
//! Both stream: each blob goes from the tar through a hasher into an ingest (import) or
//! from its file into the tar (export), so memory does not grow with a layer's size. An
//! import holds a lease from its first byte, and records an image only after every blob
//! of it verified; a failed import leaves nothing but what GC removes.

use super::{walk, Inner};
use crate::content::{digest_hex, ContentStore, MAX_DOCUMENT};
use crate::error::{Error, Result};
use crate::oci_layout::{self, Source};
use crate::types::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path};
use std::time::Duration;

/// At most this many entries in an imported tar.
const MAX_ENTRIES: usize = 100_000;
/// An entry claiming more than this is refused before a byte of it is read.
const MAX_BLOB: u64 = 1 << 40;
/// How long an import's lease holds what it wrote if the import dies.
const IMPORT_LEASE: Duration = Duration::from_secs(3600);

/// What the tar held, once streamed into the store.
#[derive(Default)]
struct Read_ {
    /// `index.json` (OCI layout).
    index: Option<Vec<u8>>,
    /// `manifest.json` (docker save).
    docker_manifest: Option<Vec<u8>>,
    /// Other files by path, committed: path → descriptor.
    files: BTreeMap<String, Descriptor>,
    /// Symlinks by path → target path (docker save links repeated layers).
    links: BTreeMap<String, String>,
}

fn bad(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("import {}: {what}", file.display()))
}

/// A tar entry's path, refused if it escapes (absolute, `..`).
fn entry_path(file: &Path, raw: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(bad(
                    file,
                    format!("tar entry {:?} escapes the archive", raw.display()),
                ))
            }
        }
    }
    Ok(parts.join("/"))
}

fn read_small(file: &Path, name: &str, entry: impl Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(file, format!("{name}: {e}")))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(bad(
            file,
            format!("{name} is larger than {MAX_DOCUMENT} bytes"),
        ));
    }
    Ok(bytes)
}

/// Streams the tar's files into the store, each held by `lease` before its first byte.
fn stream_in(inner: &Inner, ns: &str, lease: &str, file: &Path) -> Result<Read_> {
    let f = std::fs::File::open(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("import file {}", file.display()))
        } else {
            Error::io(format!("open {}", file.display()), e)
        }
    })?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(256 * 1024, f));
    let mut out = Read_::default();
    let entries = archive
        .entries()
        .map_err(|e| bad(file, format!("not a tar: {e}")))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            return Err(bad(file, format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| bad(file, format!("broken or truncated tar: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(file, format!("bad entry name: {e}")))?
            .into_owned();
        let path = entry_path(file, &raw)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| bad(file, format!("link {path} has no target")))?
                .into_owned();
            let base = Path::new(&path).parent().unwrap_or(Path::new(""));
            let joined = if kind.is_symlink() {
                base.join(&target)
            } else {
                target
            };
            let mut resolved: Vec<String> = Vec::new();
            for c in joined.components() {
                match c {
                    Component::Normal(p) => resolved.push(p.to_string_lossy().into_owned()),
                    Component::ParentDir if !resolved.is_empty() => {
                        resolved.pop();
                    }
                    Component::CurDir => {}
                    _ => return Err(bad(file, format!("link {path} escapes the archive"))),
                }
            }
            out.links.insert(path, resolved.join("/"));
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if size > MAX_BLOB {
            return Err(bad(file, format!("entry {path} claims {size} bytes")));
        }
        match path.as_str() {
            "index.json" => out.index = Some(read_small(file, &path, &mut entry)?),
            "manifest.json" => out.docker_manifest = Some(read_small(file, &path, &mut entry)?),
            "oci-layout" | "repositories" => {}
            _ => {
                let desc = if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                    let digest = format!("sha256:{hex}");
                    digest_hex(&digest).map_err(|_| {
                        bad(file, format!("{path} is not named by a sha256 digest"))
                    })?;
                    let expected = Descriptor {
                        media_type: String::new(),
                        digest: digest.clone(),
                        size,
                    };
                    inner.lease_hold(ns, lease, &digest)?;
                    if inner.content.contains(&digest) {
                        std::io::copy(&mut entry, &mut std::io::sink())
                            .map_err(|e| bad(file, format!("{path}: {e}")))?;
                        expected
                    } else {
                        let mut ingest = inner.content.ingest(&expected)?;
                        ingest.restart()?;
                        copy_into(file, &path, &mut entry, |b| ingest.write(b))?;
                        ingest
                            .commit()
                            .map_err(|e| bad(file, format!("{path}: {e}")))?
                    }
                } else {
                    if size > MAX_DOCUMENT
                        && !path.ends_with(".tar")
                        && !path.ends_with("layer.tar")
                    {
                        // Only layers are big; anything else big is not read into the store.
                        std::io::copy(&mut entry, &mut std::io::sink())
                            .map_err(|e| bad(file, format!("{path}: {e}")))?;
                        continue;
                    }
                    let key = ContentStore::unnamed_key();
                    inner.lease_hold_ingest(ns, lease, &key)?;
                    let mut ingest = inner.content.ingest_unnamed(&key)?;
                    copy_into(file, &path, &mut entry, |b| ingest.write(b))?;
                    let d = ingest.commit()?;
                    inner.lease_hold(ns, lease, &d.digest)?;
                    d
                };
                out.files.insert(path, desc);
            }
        }
    }
    Ok(out)
}

fn copy_into(
    file: &Path,
    path: &str,
    mut from: impl Read,
    mut write: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| bad(file, format!("{path}: broken or truncated tar: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        write(&buf[..n])?;
    }
}

/// The full name of an index entry's image.
fn entry_name(
    annotations: Option<&serde_json::Map<String, serde_json::Value>>,
    base: Option<&str>,
) -> Result<Option<String>> {
    let get = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if let Some(full) = get("io.containerd.image.name") {
        return crate::registry::normalize(&full).map(Some);
    }
    let Some(name) = get(ANNOTATION_REF_NAME) else {
        return Ok(None);
    };
    let tag_only = !name.contains('/') && !name.contains(':') && !name.contains('@');
    match (tag_only, base) {
        (true, Some(base)) => crate::registry::normalize(&format!("{base}:{name}")).map(Some),
        (true, None) => Err(Error::InvalidArgument(format!(
            "an image in the archive is named only by the tag {name:?}: give a base name \
             (--base-name example.com/app) to import it as example.com/app:{name}"
        ))),
        (false, _) => crate::registry::normalize(&name).map(Some),
    }
}

/// The images the tar names: (name, target).
fn images_of(
    inner: &Inner,
    file: &Path,
    read: &Read_,
    base: Option<&str>,
) -> Result<Vec<(String, Descriptor)>> {
    if let Some(index) = &read.index {
        let v: serde_json::Value =
            serde_json::from_slice(index).map_err(|e| bad(file, format!("index.json: {e}")))?;
        let entries = v
            .get("manifests")
            .and_then(|m| m.as_array())
            .ok_or_else(|| bad(file, "index.json has no manifests"))?;
        let mut out = Vec::new();
        for e in entries {
            let desc: Descriptor = serde_json::from_value(e.clone())
                .map_err(|err| bad(file, format!("index.json entry: {err}")))?;
            if let Some(name) = entry_name(e.get("annotations").and_then(|a| a.as_object()), base)?
            {
                out.push((name, desc));
            }
        }
        if out.is_empty() {
            return Err(bad(
                file,
                format!("no entry of index.json has a name ({ANNOTATION_REF_NAME})"),
            ));
        }
        return Ok(out);
    }
    let Some(manifest) = &read.docker_manifest else {
        return Err(bad(
            file,
            "neither index.json (OCI image layout) nor manifest.json (docker save)",
        ));
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Saved {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let saved: Vec<Saved> =
        serde_json::from_slice(manifest).map_err(|e| bad(file, format!("manifest.json: {e}")))?;
    let find = |path: &str| -> Result<Descriptor> {
        let mut p = path.trim_start_matches("./").to_string();
        for _ in 0..8 {
            match read.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        read.files.get(&p).cloned().ok_or_else(|| {
            bad(
                file,
                format!("manifest.json names {path}, which the tar lacks"),
            )
        })
    };
    let mut out = Vec::new();
    for s in saved {
        let config = Descriptor {
            media_type: MEDIA_DOCKER_CONFIG.into(),
            ..find(&s.config)?
        };
        let mut layers = Vec::new();
        for l in &s.layers {
            let d = find(l)?;
            let media_type = layer_type(&inner.content, &d.digest)?;
            layers.push(Descriptor { media_type, ..d });
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .map_err(|e| Error::Internal(e.to_string()))?;
        let desc = Descriptor {
            media_type: MEDIA_DOCKER_MANIFEST.into(),
            digest: crate::content::digest_of(&manifest),
            size: manifest.len() as u64,
        };
        inner.content.write_blob(&desc, &manifest)?;
        let tags = s.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            match base {
                Some(b) => out.push((crate::registry::normalize(b)?, desc.clone())),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "an image in {} has no RepoTags: give a name with --base-name",
                        file.display()
                    )))
                }
            }
        }
        for t in tags {
            out.push((crate::registry::normalize(&t)?, desc.clone()));
        }
    }
    Ok(out)
}

/// A docker save layer is a plain tar, or (newer docker) gzip; tell by its first bytes.
fn layer_type(store: &ContentStore, digest: &str) -> Result<String> {
    let mut head = [0u8; 2];
    let mut f = store.open_blob(digest)?;
    let n = f
        .read(&mut head)
        .map_err(|e| Error::io(format!("read {digest}"), e))?;
    Ok(if n == 2 && head == [0x1f, 0x8b] {
        MEDIA_DOCKER_LAYER_GZIP
    } else {
        MEDIA_DOCKER_LAYER
    }
    .to_string())
}

/// Checks that every blob an image needs is in the store: the target, and for each
/// manifest present its config and layers (an index may lack other platforms' manifests,
/// but not all of them).
fn check_complete(store: &ContentStore, name: &str, target: &Descriptor) -> Result<()> {
    let missing = |d: &str| Error::Corrupt(format!("image {name} lacks blob {d}"));
    if !store.contains(&target.digest) {
        return Err(missing(&target.digest));
    }
    let bytes = store.read_document(&target.digest)?;
    let kids = walk::children(&target.media_type, &bytes, name)?;
    if is_index(&target.media_type) {
        let mut any = false;
        for k in kids.iter().filter(|k| store.contains(&k.desc.digest)) {
            any = true;
            check_complete(store, name, &k.descriptor())?;
        }
        if !any {
            return Err(Error::Corrupt(format!(
                "image {name}: none of its index's manifests is in the archive"
            )));
        }
        return Ok(());
    }
    for k in kids.iter().filter(|k| !k.foreign) {
        if !store.contains(&k.desc.digest) {
            return Err(missing(&k.desc.digest));
        }
    }
    Ok(())
}

/// Imports the tar.
pub(crate) fn import(inner: &Inner, req: ImportRequest) -> Result<Vec<ImageInfo>> {
    let ns = namespace_or_default(&req.namespace).to_string();
    if !req.file.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "import file {} must be an absolute path",
            req.file.display()
        )));
    }
    let lease = format!("import-{}", now_ns());
    inner.create_lease(
        &ns,
        &lease,
        BTreeMap::from([("corral.import".to_string(), req.file.display().to_string())]),
        Some(IMPORT_LEASE),
    )?;
    let result = (|| {
        let read = stream_in(inner, &ns, &lease, &req.file)?;
        let images = images_of(inner, &req.file, &read, req.base_name.as_deref())?;
        for (name, target) in &images {
            check_complete(&inner.content, name, target)?;
        }
        let mut out = Vec::new();
        for (name, target) in images {
            let r = inner.put_image(&ns, &name, target, req.labels.clone())?;
            out.push(super::store::image_info(
                &name,
                &r,
                walk::size(&inner.content, &r.target),
            ));
        }
        Ok(out)
    })();
    // Success: the images hold what they need. Either way GC then takes the rest (the
    // files of a docker save tar that are no blob of an image, or a failed import's).
    inner.lease_drop(&ns, &lease);
    if let Err(e) = super::gc::collect(inner, &ns) {
        tracing::warn!("GC after the import of {}: {e}", req.file.display());
    }
    result
}

/// Exports images to an OCI image layout tar.
pub(crate) fn export(inner: &Inner, req: ExportRequest) -> Result<u64> {
    let ns = namespace_or_default(&req.namespace).to_string();
    if !req.file.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "export file {} must be an absolute path",
            req.file.display()
        )));
    }
    if req.names.is_empty() {
        return Err(Error::InvalidArgument(
            "export: name at least one image".into(),
        ));
    }
    // The export's lease keeps GC off its blobs while they are written.
    let lease = format!("export-{}", now_ns());
    inner.create_lease(
        &ns,
        &lease,
        BTreeMap::from([("corral.export".to_string(), req.file.display().to_string())]),
        Some(IMPORT_LEASE),
    )?;
    let result = export_held(inner, &ns, &lease, &req);
    inner.lease_drop(&ns, &lease);
    result
}

fn export_held(inner: &Inner, ns: &str, lease: &str, req: &ExportRequest) -> Result<u64> {
    let mut manifests = Vec::new();
    let mut digests = BTreeSet::new();
    for name in &req.names {
        let (full, r) = inner.find_image(ns, name)?;
        walk::reachable(&inner.content, &r.target, &mut digests);
        let mut entry =
            serde_json::to_value(&r.target).map_err(|e| Error::Internal(e.to_string()))?;
        entry["annotations"] = serde_json::json!({
            ANNOTATION_REF_NAME: full,
            "io.containerd.image.name": full,
        });
        manifests.push(entry);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": manifests,
    });
    for d in &digests {
        inner.lease_hold(ns, lease, d)?;
    }
    let mut blobs = Vec::new();
    for d in digests {
        let info = inner.content.info(&d)?;
        blobs.push((
            Descriptor {
                media_type: String::new(),
                digest: d.clone(),
                size: info.size,
            },
            Source::File(inner.content.blob_path(&d)?),
        ));
    }
    let mut tmp = req.file.clone().into_os_string();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let written = oci_layout::write_tar(&tmp, &index, blobs, 0)
        .and_then(|n| std::fs::File::open(&tmp)?.sync_all().map(|()| n))
        .and_then(|n| std::fs::rename(&tmp, &req.file).map(|()| n));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("export to {}", req.file.display()), e)
    })
}
