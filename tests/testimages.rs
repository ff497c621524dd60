//! The image test infrastructure itself: a private registry, OCI layouts built from busybox,
//! docker-save tars, and skopeo as the reference client agreeing byte for byte with what
//! was written.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::registry::{http_status, Registry};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The image with every kind of entry, one layer per compression.
fn mixed_spec() -> ImageSpec {
    ImageSpec::new()
        .layer(
            Layer::new()
                .busybox()
                .dir("etc")
                .file("etc/motd", b"lower\n", 0o644)
                .dir("data")
                .file("data/old", b"old\n", 0o644),
            Compression::Gzip,
        )
        .layer(
            Layer::new()
                .dir("etc")
                .whiteout("etc/motd")
                .dir("data")
                .opaque("data")
                .file("data/new", b"new\n", 0o600)
                .owned(1000, 1000),
            Compression::Zstd,
        )
        .layer(
            Layer::new()
                .dir("srv")
                .file("srv/a", b"hello\n", 0o644)
                .hardlink("srv/b", "srv/a")
                .symlink("srv/c", "/srv/a"),
            Compression::None,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo hi"])
        .env("GREETING=hi")
        .working_dir("/srv")
        .user("1000:1000")
        .label("test", "mixed")
}

/// The entries of a layer blob: path -> (entry type, link target).
fn layer_entries(blob: &Path, compression: Compression) -> BTreeMap<String, (char, String)> {
    let raw = std::fs::read(blob).unwrap();
    let tar_bytes = match compression {
        Compression::None => raw,
        Compression::Gzip | Compression::Zstd => {
            let program = if compression == Compression::Gzip {
                "gzip"
            } else {
                "zstd"
            };
            let out = std::process::Command::new(program)
                .args(["-d", "-c"])
                .arg(blob)
                .output()
                .unwrap();
            assert!(out.status.success(), "{program} -d {}", blob.display());
            out.stdout
        }
    };
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type().as_byte() as char;
            let target = e
                .link_name()
                .unwrap()
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            (path, (kind, target))
        })
        .collect()
}

#[test]
fn mixed_compression_image_pushes_byte_identical() {
    let work = TestDir::new("mixed");
    let layout = work.join("layout");
    let written = write_layout(&layout, &[("v1", mixed_spec())]);
    assert_eq!(written.len(), 1);
    let img = &written[0];
    assert_eq!(
        layout_refs(&layout),
        vec![("v1".to_string(), MANIFEST_MEDIA_TYPE.to_string())]
    );
    assert_eq!(img.layers.len(), 3);
    let types: Vec<&str> = img
        .layers
        .iter()
        .map(|l| l.blob.media_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            Compression::Gzip.media_type(),
            Compression::Zstd.media_type(),
            Compression::None.media_type()
        ]
    );
    // An uncompressed layer's blob is its diff id; compressed ones are not.
    assert_eq!(img.layers[2].blob.digest, img.layers[2].diff_id);
    assert_ne!(img.layers[0].blob.digest, img.layers[0].diff_id);
    // Every blob in the layout is what its name says.
    for digest in img
        .blob_digests()
        .into_iter()
        .chain([img.manifest.digest.clone()])
    {
        assert_eq!(digest_file(&blob_path(&layout, &digest)).0, digest);
    }
    let config: serde_json::Value = serde_json::from_slice(&img.config_bytes).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(img.diff_ids())
    );
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_eq!(config["architecture"], host_arch());

    // The layers hold what was asked for.
    let lower = layer_entries(
        &blob_path(&layout, &img.layers[0].blob.digest),
        Compression::Gzip,
    );
    assert_eq!(lower["bin/busybox"].0, '0');
    assert_eq!(lower["bin/sh"], ('2', "busybox".to_string()));
    let upper = layer_entries(
        &blob_path(&layout, &img.layers[1].blob.digest),
        Compression::Zstd,
    );
    assert!(upper.contains_key("etc/.wh.motd"), "{upper:?}");
    assert!(upper.contains_key("data/.wh..wh..opq"), "{upper:?}");
    let top = layer_entries(
        &blob_path(&layout, &img.layers[2].blob.digest),
        Compression::None,
    );
    assert_eq!(top["srv/b"], ('1', "srv/a".to_string()));
    assert_eq!(top["srv/c"], ('2', "/srv/a".to_string()));

    // Deterministic: the same spec elsewhere gives the same digests.
    let again = write_layout(&work.join("again"), &[("v1", mixed_spec())]);
    assert_eq!(again[0].manifest, img.manifest);

    // Pushed with skopeo, the registry serves exactly the bytes written.
    let registry = Registry::start();
    skopeo_push(&layout, "v1", &registry.addr, "test/mixed:v1", None).unwrap();
    assert_eq!(
        skopeo_inspect_raw(&registry.addr, "test/mixed:v1"),
        img.manifest_bytes
    );
    assert_eq!(
        skopeo_inspect_raw(
            &registry.addr,
            &format!("test/mixed@{}", img.manifest_digest())
        ),
        img.manifest_bytes
    );
    for digest in img.blob_digests() {
        assert_eq!(
            registry.get_status(&format!("/v2/test/mixed/blobs/{digest}")),
            Some(200),
            "blob {digest}"
        );
    }
    assert_eq!(
        registry.get_status("/v2/test/mixed/manifests/nope"),
        Some(404)
    );

    // And skopeo pulls back the same blobs, byte for byte.
    let pulled = work.join("pulled");
    skopeo_pull(&registry.addr, "test/mixed:v1", None, &pulled, "back").unwrap();
    assert_eq!(
        layout_refs(&pulled),
        vec![("back".to_string(), MANIFEST_MEDIA_TYPE.to_string())]
    );
    for digest in img
        .blob_digests()
        .into_iter()
        .chain([img.manifest.digest.clone()])
    {
        assert_eq!(
            std::fs::read(blob_path(&pulled, &digest)).unwrap(),
            std::fs::read(blob_path(&layout, &digest)).unwrap(),
            "blob {digest}"
        );
    }
}

#[test]
fn two_platform_index_pushes_with_all() {
    let work = TestDir::new("index");
    let layout = work.join("layout");
    let index = write_index_layout(
        &layout,
        "multi",
        &[ImageSpec::busybox(), ImageSpec::tiny(other_arch())],
    );
    assert_eq!(
        layout_refs(&layout),
        vec![("multi".to_string(), INDEX_MEDIA_TYPE.to_string())]
    );
    let doc: serde_json::Value = serde_json::from_slice(&index.index_bytes).unwrap();
    let platforms: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, [host_arch(), other_arch()]);

    let registry = Registry::start();
    skopeo_push(&layout, "multi", &registry.addr, "test/multi:latest", None).unwrap();
    assert_eq!(
        skopeo_inspect_raw(&registry.addr, "test/multi:latest"),
        index.index_bytes
    );
    // Both platforms were pushed (--all), blobs included.
    for img in &index.images {
        assert_eq!(
            skopeo_inspect_raw(
                &registry.addr,
                &format!("test/multi@{}", img.manifest_digest())
            ),
            img.manifest_bytes,
            "{} manifest",
            img.architecture
        );
        for digest in img.blob_digests() {
            assert_eq!(
                registry.get_status(&format!("/v2/test/multi/blobs/{digest}")),
                Some(200),
                "{} blob {digest}",
                img.architecture
            );
        }
    }
    assert_eq!(index.image(other_arch()).layers.len(), 1);
}

/// Whether skopeo's error says the registry wants credentials.
fn refused_for_auth(err: &str) -> bool {
    let err = err.to_lowercase();
    ["authentication required", "unauthorized", "401"]
        .iter()
        .any(|w| err.contains(w))
}

#[test]
fn auth_registry_refuses_anonymous_and_takes_credentials() {
    let work = TestDir::new("auth");
    let layout = work.join("layout");
    let written = write_layout(&layout, &[("v1", ImageSpec::busybox())]);
    let registry = Registry::start_with_auth("corral", "s3cret pass");
    assert_eq!(registry.get_status("/v2/"), Some(401));

    let anonymous = skopeo_push(&layout, "v1", &registry.addr, "priv/img:v1", None);
    let err = anonymous.expect_err("an anonymous push was taken");
    assert!(refused_for_auth(&err), "refused, but not for auth: {err}");
    let wrong = skopeo_push(
        &layout,
        "v1",
        &registry.addr,
        "priv/img:v1",
        Some(("corral", "wrong")),
    );
    let err = wrong.expect_err("a push with a wrong password was taken");
    assert!(refused_for_auth(&err), "refused, but not for auth: {err}");

    skopeo_push(
        &layout,
        "v1",
        &registry.addr,
        "priv/img:v1",
        registry.creds(),
    )
    .unwrap();
    assert_eq!(
        skopeo_inspect_raw_with(&registry.addr, "priv/img:v1", registry.creds()).unwrap(),
        written[0].manifest_bytes
    );
    let err = skopeo_inspect_raw_with(&registry.addr, "priv/img:v1", None)
        .expect_err("an anonymous inspect was answered");
    assert!(refused_for_auth(&err), "refused, but not for auth: {err}");
}

#[test]
fn registry_stop_restart_keeps_storage_and_drop_leaves_no_process() {
    let work = TestDir::new("restart");
    let layout = work.join("layout");
    let written = write_layout(&layout, &[("v1", ImageSpec::busybox())]);
    let mut registry = Registry::start();
    skopeo_push(&layout, "v1", &registry.addr, "r/img:v1", None).unwrap();
    let addr = registry.addr.clone();
    let first = registry.pid().unwrap() as i32;

    registry.stop();
    assert!(!registry.running());
    assert_eq!(
        http_status(&addr, "/v2/"),
        None,
        "a stopped registry answers"
    );
    assert!(common::proc_entry(first).is_none(), "not reaped: {first}");

    registry.restart();
    assert_eq!(registry.addr, addr);
    assert_eq!(
        skopeo_inspect_raw(&registry.addr, "r/img:v1"),
        written[0].manifest_bytes
    );
    let second = registry.pid().unwrap() as i32;
    let dir = registry.dir().to_path_buf();
    drop(registry);
    assert!(
        common::proc_entry(second).is_none(),
        "left behind: {second}"
    );
    assert_eq!(http_status(&addr, "/v2/"), None);
    assert!(!dir.exists(), "registry temp dir left: {}", dir.display());
}

#[test]
fn docker_save_tar_and_layout_tar_parse() {
    let work = TestDir::new("save");
    let spec = mixed_spec();
    let saved = docker_save_tar(&work.join("save.tar"), &["test/saved:v1"], &spec);
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(work.join("save.tar")).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        files.insert(path, bytes);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(files["manifest.json"], saved.manifest_json);
    let entry = &manifest.as_array().unwrap()[0];
    assert_eq!(entry["RepoTags"], serde_json::json!(["test/saved:v1"]));
    let config_name = entry["Config"].as_str().unwrap();
    assert_eq!(
        digest_of(&files[config_name]),
        saved.config_digest,
        "{config_name}"
    );
    let layers: Vec<&str> = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 3);
    for (name, diff_id) in layers.iter().zip(&saved.diff_ids) {
        assert_eq!(&digest_of(&files[*name]), diff_id, "{name}");
    }
    // The same layers as the OCI layout's (diff ids are of the uncompressed tars).
    let oci = write_layout(&work.join("layout"), &[("v1", spec)]);
    assert_eq!(oci[0].diff_ids(), saved.diff_ids);
    assert_eq!(oci[0].config_bytes, saved.config_bytes);
    assert!(!work.join("save.tar.staging").exists());

    // The layout as a tar has the layout's files, each with its content.
    tar_dir(&work.join("layout"), &work.join("layout.tar"));
    let mut archive = tar::Archive::new(std::fs::File::open(work.join("layout.tar")).unwrap());
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            assert_eq!(sha256_hex(&bytes), hex);
        }
        names.push(path);
    }
    for want in ["oci-layout", "index.json", "blobs/", "blobs/sha256/"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let manifest_name = format!("blobs/sha256/{}", oci[0].manifest.hex());
    assert!(names.contains(&manifest_name));
}

#[test]
fn big_layer_is_incompressible_and_deterministic() {
    let work = TestDir::new("big");
    const SIZE: u64 = 8 << 20;
    let spec = || {
        ImageSpec::busybox()
            .layer(big_layer(SIZE), Compression::None)
            .layer(big_layer_seeded(SIZE, 2), Compression::Gzip)
    };
    let a = write_layout(&work.join("a"), &[("big", spec())]);
    let b = write_layout(&work.join("b"), &[("big", spec())]);
    assert_eq!(a[0].manifest, b[0].manifest);
    let raw = &a[0].layers[1];
    assert!(raw.blob.size > SIZE && raw.blob.size < SIZE + 4096);
    let packed = &a[0].layers[2];
    assert_ne!(packed.diff_id, raw.diff_id, "another seed, other bytes");
    assert!(
        packed.blob.size > SIZE,
        "gzip made pseudo-random data smaller: {} of {SIZE}",
        packed.blob.size
    );
    assert_eq!(packed.uncompressed_size, raw.uncompressed_size);
}
