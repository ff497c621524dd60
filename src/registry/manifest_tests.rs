//! Tests of manifest.rs: digests, indexes and platform selection, manifests' references,
//! and hostile or unsupported documents.

use super::*;
use crate::types::{MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LIST};

fn d(n: u8) -> String {
    format!("sha256:{}", crate::content::hex(&[n; 32]))
}

fn oci_index() -> String {
    format!(
        r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1000,
  "platform": {{"architecture": "amd64", "os": "linux"}}}},
{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1001,
  "platform": {{"architecture": "arm", "os": "linux", "variant": "v6"}}}},
{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1002,
  "platform": {{"architecture": "arm", "os": "linux", "variant": "v7"}}}},
{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 1003,
  "platform": {{"architecture": "arm64", "os": "linux", "variant": "v8"}}}},
{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{}", "size": 566,
  "annotations": {{"vnd.docker.reference.type": "attestation-manifest",
                   "vnd.docker.reference.digest": "{}"}},
  "platform": {{"architecture": "unknown", "os": "unknown"}}}}
  ]
}}"#,
        d(1),
        d(2),
        d(3),
        d(4),
        d(5),
        d(1)
    )
}

fn docker_list() -> String {
    format!(
        r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
  {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
    "digest": "{}", "platform": {{"architecture": "amd64", "os": "linux"}}}},
  {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
    "digest": "{}", "platform": {{"architecture": "arm64", "os": "linux"}}}},
  {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1125,
    "digest": "{}", "platform": {{"architecture": "amd64", "os": "windows",
    "os.version": "10.0.17763.5329"}}}}
   ]
}}"#,
        d(11),
        d(12),
        d(13)
    )
}

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

#[test]
fn digests_and_hex() {
    assert_eq!(
        crate::content::digest_of(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    check_digest(&d(7)).unwrap();
    for bad in [
        "sha256:",
        "sha256:abc",
        "sha256:../../../../etc/passwd",
        &d(7).to_uppercase(),
        &format!("{}0", d(7)),
        "nothing",
    ] {
        let e = check_digest(bad).unwrap_err();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
    assert!(check_digest("sha512:00")
        .unwrap_err()
        .contains("only sha256"));
}

#[test]
fn oci_index_entries() {
    let entries = parse_index(oci_index().as_bytes()).unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].descriptor.digest, d(1));
    assert_eq!(entries[0].descriptor.size, 1000);
    assert_eq!(entries[0].platform, Some(p("linux/amd64")));
    assert_eq!(entries[3].platform, Some(p("linux/arm64/v8")));
    assert_eq!(
        entries[4].annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        media_type_of(oci_index().as_bytes()).unwrap(),
        MEDIA_OCI_INDEX
    );
}

#[test]
fn platform_selection() {
    let idx = oci_index();
    let pick = |s: &str| select_platform(idx.as_bytes(), &p(s), "x:1").map(|d| d.digest);
    assert_eq!(pick("linux/amd64").unwrap(), d(1));
    assert_eq!(pick("linux/arm/v7").unwrap(), d(3), "exact variant first");
    assert_eq!(pick("linux/arm/v6").unwrap(), d(2));
    assert_eq!(
        pick("linux/arm").unwrap(),
        d(2),
        "any variant when none asked"
    );
    assert_eq!(pick("linux/arm64").unwrap(), d(4));
    assert_eq!(pick("linux/arm64/v8").unwrap(), d(4));
    match pick("linux/s390x") {
        Err(Error::NotFound(m)) => assert_eq!(
            m,
            "no linux/s390x manifest in x:1 (it has: linux/amd64, linux/arm/v6, \
             linux/arm/v7, linux/arm64/v8)"
        ),
        other => panic!("{other:?}"),
    }

    let list = docker_list();
    let pick = |s: &str| select_platform(list.as_bytes(), &p(s), "y").map(|d| d.digest);
    assert_eq!(pick("linux/amd64").unwrap(), d(11));
    // A list without variants still serves a host that says v8.
    assert_eq!(pick("linux/arm64/v8").unwrap(), d(12));
    assert_eq!(pick("windows/amd64").unwrap(), d(13));
    match pick("linux/ppc64le") {
        Err(Error::NotFound(m)) => {
            assert!(
                m.ends_with("(it has: linux/amd64, linux/arm64, windows/amd64)"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(media_type_of(list.as_bytes()).unwrap(), MEDIA_DOCKER_LIST);
}

#[test]
fn select_platform_refuses_a_manifest_and_garbage() {
    let m = docker_manifest();
    assert!(matches!(
        select_platform(m.as_bytes(), &p("linux/amd64"), "z"),
        Err(Error::Corrupt(msg)) if msg.starts_with("z: ")
    ));
    assert!(matches!(
        select_platform(b"{", &p("linux/amd64"), "z"),
        Err(Error::Corrupt(_))
    ));
    let empty = r#"{"schemaVersion":2,"manifests":[]}"#;
    match select_platform(empty.as_bytes(), &p("linux/amd64"), "z") {
        Err(Error::NotFound(m)) => assert!(m.ends_with("(it has: no platforms)"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn docker_manifest() -> String {
    format!(
        r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{
  "mediaType": "application/vnd.docker.container.image.v1+json",
  "size": 1469,
  "digest": "{}"
   }},
   "layers": [
  {{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "size": 1718332879, "digest": "{}",
    "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/{}"]}},
  {{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "size": 3408729, "digest": "{}"}}
   ]
}}"#,
        d(20),
        d(21),
        d(21),
        d(22)
    )
}

#[test]
fn docker_manifest_refs() {
    let m = parse_manifest(docker_manifest().as_bytes()).unwrap();
    assert_eq!(m.media_type, crate::types::MEDIA_DOCKER_MANIFEST);
    assert_eq!(m.config.media_type, MEDIA_DOCKER_CONFIG);
    assert_eq!(m.config.digest, d(20));
    assert_eq!(m.config.size, 1469);
    assert_eq!(m.layers.len(), 2);
    assert!(m.layers[0].foreign);
    assert_eq!(m.layers[0].urls.len(), 1);
    assert!(!m.layers[1].foreign);
    assert_eq!(m.layers[1].descriptor.media_type, MEDIA_DOCKER_LAYER_GZIP);
    let blobs: Vec<&str> = m.blobs().map(|d| d.digest.as_str()).collect();
    assert_eq!(blobs, [d(20), d(22)]);
}

#[test]
fn oci_manifest_refs() {
    // No mediaType at the top: allowed by OCI, recognized by its shape.
    let doc = format!(
        r#"{{"schemaVersion": 2,
  "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "{}", "size": 7}},
  "layers": [
{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "{}", "size": 32,
  "annotations": {{"a": "b"}}}},
{{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "digest": "{}", "size": 9}},
{{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "{}", "size": 3,
  "urls": ["https://elsewhere.example/blob"]}}
  ],
  "annotations": {{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}}}"#,
        d(30),
        d(31),
        d(32),
        d(33)
    );
    assert_eq!(media_type_of(doc.as_bytes()).unwrap(), MEDIA_OCI_MANIFEST);
    let m = parse_manifest(doc.as_bytes()).unwrap();
    assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
    assert_eq!(m.config.digest, d(30));
    assert_eq!(
        m.layers.iter().map(|l| l.foreign).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(m.layers[0].annotations["a"], "b");
    assert_eq!(m.annotations.len(), 1);
    // An empty image: no layers at all is fine.
    let empty = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}",
            "config":{{"mediaType":"x","digest":"{}","size":2}}}}"#,
        d(1)
    );
    assert!(parse_manifest(empty.as_bytes()).unwrap().layers.is_empty());
}

#[test]
fn hostile_or_unsupported_documents() {
    // A digest that would walk out of the content store.
    let doc = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../x","size":1},"layers":[]}"#;
    assert!(
        matches!(parse_manifest(doc.as_bytes()), Err(Error::Corrupt(m)) if m.contains("sha256:../../x"))
    );
    // A negative size.
    let doc = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":-1}}}}"#,
        d(1)
    );
    assert!(matches!(
        parse_manifest(doc.as_bytes()),
        Err(Error::Corrupt(_))
    ));
    // A child without a media type.
    let doc = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1}}]}}"#,
        d(1)
    );
    assert!(
        matches!(parse_index(doc.as_bytes()), Err(Error::Corrupt(m)) if m.contains("no mediaType"))
    );
    // Schema 1.
    let v1 = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#;
    assert_eq!(media_type_of(v1.as_bytes()).unwrap(), MEDIA_DOCKER_V1);
    match check_media_type(MEDIA_DOCKER_V1, "x:1") {
        Err(Error::InvalidArgument(m)) => assert_eq!(
            m,
            format!("unsupported media type {MEDIA_DOCKER_V1} for x:1")
        ),
        other => panic!("{other:?}"),
    }
    check_media_type(MEDIA_DOCKER_LIST, "x").unwrap();
    let v3 = format!(
        r#"{{"schemaVersion":3,"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
        d(1)
    );
    assert!(matches!(
        parse_manifest(v3.as_bytes()),
        Err(Error::InvalidArgument(_))
    ));
    // A manifest is not an index and the other way round.
    assert!(parse_index(docker_manifest().as_bytes()).is_err());
    assert!(matches!(
        parse_manifest(docker_list().as_bytes()),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(media_type_of(b"[]"), Err(Error::Corrupt(_))));
    assert!(matches!(media_type_of(b"{}"), Err(Error::Corrupt(_))));
}
