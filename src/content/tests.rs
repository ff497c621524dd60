use super::*;

fn store() -> (ContentStore, PathBuf) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "corral-content-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    (ContentStore::open(&dir).unwrap(), dir)
}

fn desc(bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: "application/octet-stream".into(),
        digest: digest_of(bytes),
        size: bytes.len() as u64,
    }
}

#[test]
fn a_blob_is_visible_only_after_it_verifies() {
    let (store, dir) = store();
    let bytes = b"hello, content".to_vec();
    let d = desc(&bytes);
    let mut ingest = store.ingest(&d).unwrap();
    ingest.write(&bytes[..5]).unwrap();
    assert!(!store.contains(&d.digest));
    assert_eq!(store.ingests().unwrap()[0].offset, 5);
    ingest.write(&bytes[5..]).unwrap();
    let committed = ingest.commit().unwrap();
    assert_eq!(committed, d);
    assert!(store.contains(&d.digest));
    assert_eq!(store.read_document(&d.digest).unwrap(), bytes);
    assert!(store.ingests().unwrap().is_empty());
    assert_eq!(store.list().unwrap().len(), 1);
    store.delete(&d.digest).unwrap();
    assert!(matches!(store.info(&d.digest), Err(Error::NotFound(_))));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_wrong_digest_or_size_is_corrupt_and_leaves_nothing() {
    let (store, dir) = store();
    let d = desc(b"the real bytes");
    let mut ingest = store.ingest(&d).unwrap();
    ingest.write(b"the fake bytes").unwrap();
    let e = ingest.commit().unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains(&d.digest)),
        "{e}"
    );
    assert!(!store.contains(&d.digest));
    assert!(store.ingests().unwrap().is_empty());
    let mut ingest = store.ingest(&d).unwrap();
    assert!(matches!(
        ingest.write(b"the real bytes and more"),
        Err(Error::Corrupt(_))
    ));
    let mut short = store.ingest(&d).unwrap();
    short.restart().unwrap();
    short.write(b"the real").unwrap();
    assert!(matches!(short.commit(), Err(Error::Corrupt(m)) if m.contains("got 8 bytes")));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_interrupted_ingest_resumes_where_it_stopped() {
    let (store, dir) = store();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = desc(&bytes);
    let mut first = store.ingest(&d).unwrap();
    first.write(&bytes[..120_000]).unwrap();
    drop(first);
    let mut again = store.ingest(&d).unwrap();
    assert_eq!(again.offset(), 120_000);
    again.write(&bytes[120_000..]).unwrap();
    again.commit().unwrap();
    assert!(store.contains(&d.digest));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_unnamed_ingest_is_filed_under_its_digest() {
    let (store, dir) = store();
    let key = ContentStore::unnamed_key();
    let mut ingest = store.ingest_unnamed(&key).unwrap();
    assert_eq!(store.ingests().unwrap()[0].key, key);
    ingest.write(b"layer bytes").unwrap();
    let d = ingest.commit().unwrap();
    assert_eq!(d.digest, digest_of(b"layer bytes"));
    assert_eq!(d.size, 11);
    assert!(store.contains(&d.digest));
    assert!(store.ingests().unwrap().is_empty());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_digests_are_refused_by_name() {
    let (store, dir) = store();
    for bad in ["sha512:00", "sha256:../../etc", "sha256:ABC", "", "sha256:"] {
        let e = store.info(bad).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("bad digest")),
            "{bad}: {e}"
        );
    }
    assert!(store.ingest_unnamed("unnamed-../x").is_err());
    let _ = fs::remove_dir_all(dir);
}
