//! The image service through the real RPC of a real corrald: import and export of OCI
//! layouts and docker-save tars, GC, leases, namespaces, events, and bad archives.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::Daemon;
use corral::{Error, EventFilter, ExportRequest, ImportRequest, Since, Topic};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn import(d: &Daemon, file: &Path, base: Option<&str>) -> corral::Result<Vec<corral::ImageInfo>> {
    d.client().import_images(ImportRequest {
        namespace: "default".into(),
        file: file.to_path_buf(),
        base_name: base.map(str::to_string),
        labels: BTreeMap::new(),
    })
}

fn layout_tar(dir: &TestDir, images: &[(&str, ImageSpec)]) -> (PathBuf, Vec<WrittenImage>) {
    let layout = dir.join("layout");
    let written = write_layout(&layout, images);
    let tar = dir.join("layout.tar");
    tar_dir(&layout, &tar);
    (tar, written)
}

/// Nothing left: no images, no blobs, no ingests.
fn assert_empty(d: &Daemon) {
    let mut c = d.client();
    assert!(c.images("default").unwrap().is_empty());
    assert_eq!(c.content().unwrap(), vec![], "content store not empty");
    assert_eq!(c.ingests().unwrap(), vec![], "ingests left");
}

fn spec() -> ImageSpec {
    ImageSpec::busybox()
        .layer(
            Layer::new().dir("etc").file("etc/motd", b"hi\n", 0o644),
            Compression::Zstd,
        )
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo hi"])
        .env("A=1")
        .working_dir("/etc")
}

#[test]
fn an_oci_layout_imports_exports_and_imports_back_byte_identical() {
    let d = Daemon::start("images-roundtrip");
    let dir = TestDir::new("roundtrip");
    let (tar, written) = layout_tar(&dir, &[("example.com/app:1", spec())]);
    let mut events = d
        .client()
        .subscribe(EventFilter {
            since: Some(Since::Seq(0)),
            ..Default::default()
        })
        .unwrap();
    let imported = import(&d, &tar, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "example.com/app:1");
    assert_eq!(imported[0].target.digest, written[0].manifest_digest());
    let event = events.next().unwrap().unwrap();
    assert_eq!(event.topic, Topic::ImageCreate);
    assert_eq!(event.image.as_deref(), Some("example.com/app:1"));

    let mut c = d.client();
    let detail = c
        .inspect_image("default", "example.com/app:1", None)
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&detail.config).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/bin/sh");
    assert_eq!(config["config"]["WorkingDir"], "/etc");
    let blobs: Vec<String> = c.content().unwrap().into_iter().map(|b| b.digest).collect();
    for digest in written[0].blob_digests() {
        assert!(blobs.contains(&digest), "{digest} not in the store");
    }
    let info = c.content_info(written[0].config_digest()).unwrap();
    assert_eq!(info.size, written[0].config.size);
    let absent = format!("sha256:{}", "0".repeat(64));
    let e = c.content_info(&absent).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains(&absent)),
        "{e}"
    );
    let e = c.content_info("sha256:../../etc/passwd").unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert_eq!(
        imported[0].size,
        written[0].manifest.size
            + written[0].config.size
            + written[0].layers.iter().map(|l| l.blob.size).sum::<u64>()
    );

    let out = dir.join("out.tar");
    let size = c
        .export_images(ExportRequest {
            namespace: "default".into(),
            names: vec!["example.com/app:1".into()],
            file: out.clone(),
        })
        .unwrap();
    assert_eq!(size, std::fs::metadata(&out).unwrap().len());
    c.remove_images("default", vec!["example.com/app:1".into()], false)
        .unwrap();
    assert_empty(&d);
    let event = events.next().unwrap().unwrap();
    assert_eq!(event.topic, Topic::ImageDelete);

    let back = import(&d, &out, None).unwrap();
    assert_eq!(back[0].name, "example.com/app:1");
    assert_eq!(back[0].target.digest, written[0].manifest_digest());
    // The exported layout is a real OCI layout: skopeo reads it.
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        layout_refs(&unpacked),
        vec![(
            "example.com/app:1".to_string(),
            "application/vnd.oci.image.manifest.v1+json".to_string()
        )]
    );
    // And skopeo, the reference client, reads it back to the same manifest.
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:example.com/app:1", unpacked.display()))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(raw.stdout, written[0].manifest_bytes);
    c.remove_images("default", vec!["example.com/app:1".into()], false)
        .unwrap();
    assert_empty(&d);
}

#[test]
fn a_tag_only_name_needs_a_base_name_and_short_names_normalize() {
    let d = Daemon::start("images-basename");
    let dir = TestDir::new("basename");
    let (tar, written) = layout_tar(&dir, &[("v2", spec())]);
    let e = import(&d, &tar, None).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("\"v2\"") && m.contains("--base-name")),
        "{e}"
    );
    assert_empty(&d);
    let got = import(&d, &tar, Some("busybox")).unwrap();
    assert_eq!(got[0].name, "docker.io/library/busybox:v2");
    let mut c = d.client();
    // A short name finds the full one.
    let info = c.inspect_image("default", "busybox:v2", None).unwrap().info;
    assert_eq!(info.target.digest, written[0].manifest_digest());
    let tagged = c
        .tag_image("default", "busybox:v2", "example.com/b:latest", false)
        .unwrap();
    assert_eq!(tagged.target, info.target);
    let e = c
        .tag_image("default", "busybox:v2", "example.com/b:latest", false)
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    // Removing one name keeps the blobs the other still needs.
    c.remove_images("default", vec!["busybox:v2".into()], false)
        .unwrap();
    assert!(!c.content().unwrap().is_empty());
    let e = c
        .remove_images("default", vec!["busybox:v2".into()], false)
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains("busybox:v2")),
        "{e}"
    );
    c.remove_images("default", vec!["example.com/b:latest".into()], false)
        .unwrap();
    assert_empty(&d);
}

#[test]
fn a_docker_save_tar_imports_under_its_repo_tags() {
    let d = Daemon::start("images-dockersave");
    let dir = TestDir::new("dockersave");
    let tar = dir.join("saved.tar");
    let saved = docker_save_tar(&tar, &["myapp:1.0", "example.com/x/y:2"], &spec());
    let got = import(&d, &tar, None).unwrap();
    let names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["docker.io/library/myapp:1.0", "example.com/x/y:2"]);
    let mut c = d.client();
    let detail = c.inspect_image("default", "myapp:1.0", None).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&detail.manifest).unwrap();
    assert_eq!(manifest["config"]["digest"], saved.config_digest.as_str());
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        saved
            .diff_ids
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let config: serde_json::Value = serde_json::from_str(&detail.config).unwrap();
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "A=1"));
    c.remove_images(
        "default",
        vec!["myapp:1.0".into(), "example.com/x/y:2".into()],
        false,
    )
    .unwrap();
    assert_empty(&d);
}

/// Writes a tar holding `entries` (path, bytes), with raw header paths (escapes allowed).
fn raw_tar(file: &Path, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(file).unwrap());
    for (path, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *bytes).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn bad_archives_are_refused_by_name_and_leave_nothing() {
    let d = Daemon::start("images-badtar");
    let dir = TestDir::new("badtar");
    let (good, written) = layout_tar(&dir, &[("example.com/app:1", spec())]);

    // Not a tar at all.
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, vec![0x5a; 5000]).unwrap();
    let e = import(&d, &junk, None).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("junk.tar")),
        "{e}"
    );

    // A path escaping the archive.
    let escape = dir.join("escape.tar");
    raw_tar(&escape, &[("../../etc/evil", b"x")]);
    let e = import(&d, &escape, None).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("escapes")),
        "{e}"
    );

    // A blob whose bytes are not its digest.
    let forged = dir.join("forged.tar");
    let name = format!(
        "blobs/sha256/{}",
        written[0].config_digest().trim_start_matches("sha256:")
    );
    raw_tar(&forged, &[(name.as_str(), b"not the config")]);
    let e = import(&d, &forged, None).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains(written[0].config_digest())),
        "{e}"
    );

    // Truncated in the middle of a layer.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = import(&d, &cut, None).unwrap_err();
    assert!(matches!(&e, Error::Corrupt(_)), "{e}");

    // An index naming a blob the tar lacks.
    let layout = dir.join("layout");
    std::fs::remove_file(blob_path(&layout, &written[0].layer_digests()[0])).unwrap();
    let lacking = dir.join("lacking.tar");
    tar_dir(&layout, &lacking);
    let e = import(&d, &lacking, None).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains(&written[0].layer_digests()[0])),
        "{e}"
    );

    // An absurd size in a header.
    let huge = dir.join("huge.tar");
    {
        let mut h = tar::Header::new_gnu();
        h.set_path("blobs/sha256/".to_string() + &"0".repeat(64))
            .unwrap();
        h.set_size(1 << 50);
        h.set_cksum();
        let mut f = std::fs::File::create(&huge).unwrap();
        std::io::Write::write_all(&mut f, h.as_bytes()).unwrap();
    }
    let e = import(&d, &huge, None).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("claims")),
        "{e}"
    );

    let e = import(&d, Path::new("relative.tar"), None).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("absolute")),
        "{e}"
    );
    let e = import(&d, &dir.join("absent.tar"), None).unwrap_err();
    assert!(format!("{e}").contains("absent.tar"), "{e}");

    assert_empty(&d);
    assert!(d.client().leases("default").unwrap().is_empty());
}

#[test]
fn leases_hold_content_and_namespaces_refuse_removal_while_they_hold_anything() {
    let d = Daemon::start("images-leases");
    let mut c = d.client();
    let lease = c
        .create_lease(
            "default",
            "keep",
            BTreeMap::from([("a".into(), "b".into())]),
            Some(3600),
        )
        .unwrap();
    assert_eq!(lease.id, "keep");
    assert!(lease.expires_ns.is_some());
    let e = c
        .create_lease("default", "keep", BTreeMap::new(), None)
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let e = c
        .create_lease("default", "bad/id", BTreeMap::new(), None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("bad/id")),
        "{e}"
    );
    assert_eq!(c.leases("default").unwrap().len(), 1);

    c.create_namespace("team-a", BTreeMap::from([("owner".into(), "ops".into())]))
        .unwrap();
    let e = c.create_namespace("team-a", BTreeMap::new()).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let labelled = c
        .label_namespace(
            "team-a",
            BTreeMap::from([("owner".into(), String::new()), ("tier".into(), "1".into())]),
        )
        .unwrap();
    assert_eq!(
        labelled.labels,
        BTreeMap::from([("tier".into(), "1".into())])
    );
    let dir = TestDir::new("leases");
    let (tar, _) = layout_tar(&dir, &[("example.com/app:1", spec())]);
    c.import_images(ImportRequest {
        namespace: "team-a".into(),
        file: tar,
        ..Default::default()
    })
    .unwrap();
    c.create_lease("team-a", "l1", BTreeMap::new(), None)
        .unwrap();
    let e = c.remove_namespace("team-a").unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("example.com/app:1") && m.contains("l1")),
        "{e}"
    );
    // A blob an image holds cannot be removed by hand.
    let blob = c.content().unwrap()[0].digest.clone();
    let e = c.remove_content(vec![blob]).unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("example.com/app:1")),
        "{e}"
    );
    // Nor can an image of another namespace be seen from default.
    assert!(c.images("default").unwrap().is_empty());
    c.remove_images("team-a", vec!["example.com/app:1".into()], false)
        .unwrap();
    c.remove_lease("team-a", "l1", false).unwrap();
    c.remove_namespace("team-a").unwrap();
    let names: Vec<String> = c
        .namespaces()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(!names.contains(&"team-a".to_string()), "{names:?}");
    let e = c.remove_namespace("team-a").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    // A namespace removed after a container lived in it is recorded again by the next
    // container made in it (its label is then found).
    let bundle = d.bundle("sleep", &["sleep", "1000"]);
    d.use_namespace("team-a");
    let create = |c: &mut corral::rpc::Client, id: &str| {
        c.create(corral::CreateRequest {
            namespace: "team-a".into(),
            id: id.into(),
            bundle: bundle.clone(),
            ..Default::default()
        })
        .unwrap()
    };
    create(&mut c, "c1");
    let e = c.remove_namespace("team-a").unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("c1")),
        "{e}"
    );
    c.delete("team-a", "c1", true).unwrap();
    c.remove_namespace("team-a").unwrap();
    create(&mut c, "c2");
    c.label_namespace("team-a", BTreeMap::from([("k".into(), "v".into())]))
        .unwrap();
    c.delete("team-a", "c2", true).unwrap();
    c.remove_namespace("team-a").unwrap();
    c.remove_lease("default", "keep", false).unwrap();
    assert_empty(&d);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let d = Daemon::start("images-datadir");
    let other = tempdir_for("images-datadir-2");
    let out = std::process::Command::new(common::CORRALD)
        .args(["--config", "/dev/null", "--socket"])
        .arg(other.join("s.sock"))
        .arg("--state-dir")
        .arg(other.join("state"))
        .arg("--root")
        .arg(other.join("root"))
        .arg("--data-dir")
        .arg(d.dir.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another corrald"), "{err}");
    let _ = std::fs::remove_dir_all(other);
}

fn tempdir_for(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("corral-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}
