//! GC and the metadata store, without a daemon (and without root).

use super::*;
use crate::content::digest_of;
use std::path::PathBuf;

fn service(name: &str) -> (Images, PathBuf) {
    let dir = std::env::temp_dir().join(format!("corral-images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Images::open(&dir, None).unwrap(), dir)
}

fn blob(inner: &Inner, media_type: &str, bytes: &[u8]) -> Descriptor {
    let d = Descriptor {
        media_type: media_type.into(),
        digest: digest_of(bytes),
        size: bytes.len() as u64,
    };
    inner.content.write_blob(&d, bytes).unwrap();
    d
}

fn manifest(inner: &Inner, layer: &[u8]) -> Descriptor {
    let config = blob(
        inner,
        MEDIA_OCI_CONFIG,
        b"{\"os\":\"linux\",\"architecture\":\"amd64\"}",
    );
    let layer = blob(inner, MEDIA_OCI_LAYER, layer);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": config,
        "layers": [layer],
    }))
    .unwrap();
    blob(inner, MEDIA_OCI_MANIFEST, &m)
}

#[test]
fn gc_keeps_what_images_and_live_leases_reach_and_sweeps_the_rest() {
    let (images, dir) = service("gc");
    let inner = &images.inner;
    let kept = manifest(inner, b"layer one");
    inner
        .put_image("default", "example.com/a:1", kept.clone(), BTreeMap::new())
        .unwrap();
    let stray = blob(inner, MEDIA_OCI_LAYER, b"nobody's");
    let held = blob(inner, MEDIA_OCI_LAYER, b"leased");
    let lapsed = blob(inner, MEDIA_OCI_LAYER, b"lapsed");
    inner
        .create_lease("default", "live", BTreeMap::new(), None)
        .unwrap();
    inner.lease_hold("default", "live", &held.digest).unwrap();
    inner
        .create_lease("default", "old", BTreeMap::new(), Some(Duration::ZERO))
        .unwrap();
    inner.lease_hold("default", "old", &lapsed.digest).unwrap();
    // An ingest nobody holds, and one the live lease holds.
    let partial = Descriptor {
        media_type: String::new(),
        digest: digest_of(b"partial"),
        size: 7,
    };
    inner
        .content
        .ingest(&partial)
        .unwrap()
        .write(b"par")
        .unwrap();
    let orphan = Descriptor {
        media_type: String::new(),
        digest: digest_of(b"orphan"),
        size: 6,
    };
    inner.content.ingest(&orphan).unwrap().write(b"or").unwrap();
    inner
        .lease_hold("default", "live", &partial.digest)
        .unwrap();

    let report = gc::collect(inner, "default").unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    assert_eq!(report.leases, 1);
    assert_eq!(report.ingests, 1);
    assert!(!inner.content.contains(&stray.digest));
    assert!(!inner.content.contains(&lapsed.digest));
    assert!(inner.content.contains(&held.digest));
    let mut reached = std::collections::BTreeSet::new();
    walk::reachable(&inner.content, &kept, &mut reached);
    assert_eq!(reached.len(), 3);
    for d in &reached {
        assert!(inner.content.contains(d));
    }
    let ingests: Vec<String> = inner
        .content
        .ingests()
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(ingests, vec![partial.digest.clone()]);
    // Removing a blob an image reaches by hand is refused, naming the image.
    let e = gc::remove_content(inner, std::slice::from_ref(&kept.digest)).unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("example.com/a:1")),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn metadata_survives_a_reopen_and_a_second_open_is_refused() {
    let (images, dir) = service("reopen");
    let d = manifest(&images.inner, b"x");
    images
        .inner
        .put_image("ns1", "example.com/b:1", d.clone(), BTreeMap::new())
        .unwrap();
    let e = Images::open(&dir, None).err().unwrap();
    assert!(
        matches!(&e, Error::AlreadyExists(m) if m.contains("another corrald")),
        "{e}"
    );
    drop(images);
    let again = Images::open(&dir, None).unwrap();
    let (name, r) = again.inner.find_image("ns1", "example.com/b:1").unwrap();
    assert_eq!(name, "example.com/b:1");
    assert_eq!(r.target, d);
    assert!(again
        .inner
        .with_meta(|m| m.db.namespaces.contains_key("ns1")));
    let _ = std::fs::remove_dir_all(dir);
}
