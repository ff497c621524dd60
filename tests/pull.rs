//! Pull and push through a real corrald against a real registry (Debian's docker-registry,
//! the upstream distribution registry) on 127.0.0.1, with skopeo as the reference client.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::registry::Registry;
use common::Daemon;
use corral::{
    BlobState, Credentials, Error, Platform, Progress, PullRequest, PushRequest, RemoteOptions,
};

fn plain() -> RemoteOptions {
    RemoteOptions {
        plain_http: true,
        credentials: Credentials::Anonymous,
    }
}

fn pull_req(reference: &str) -> PullRequest {
    PullRequest {
        reference: reference.into(),
        remote: plain(),
        ..Default::default()
    }
}

fn pull(d: &Daemon, reference: &str) -> (corral::Result<corral::ImageInfo>, Vec<Progress>) {
    let mut seen = Vec::new();
    let r = d
        .client()
        .pull(pull_req(reference), |p| seen.push(p.clone()));
    (r, seen)
}

fn spec() -> ImageSpec {
    ImageSpec::busybox()
        .layer(
            Layer::new().dir("etc").file("etc/motd", b"zstd\n", 0o644),
            Compression::Zstd,
        )
        .layer(
            Layer::new()
                .dir("data")
                .file("data/plain", b"plain\n", 0o644),
            Compression::None,
        )
        .entrypoint(&["/bin/sh"])
}

/// A registry holding `spec` as `app:1`; the image as written.
fn seeded(dir: &TestDir) -> (Registry, WrittenImage) {
    let registry = Registry::start();
    let layout = dir.join("layout");
    let written = write_layout(&layout, &[("app:1", spec())]).remove(0);
    skopeo_push(&layout, "app:1", &registry.addr, "app:1", None).unwrap();
    (registry, written)
}

#[test]
fn pull_by_tag_then_by_digest_then_again_costs_no_download() {
    let d = Daemon::start("pull-tag");
    let dir = TestDir::new("pull-tag");
    let (registry, written) = seeded(&dir);
    let reference = format!("{}/app:1", registry.addr);
    let (got, progress) = pull(&d, &reference);
    let got = got.unwrap();
    assert_eq!(got.name, reference);
    assert_eq!(got.target.digest, written.manifest_digest());
    for digest in written.blob_digests() {
        assert!(
            progress
                .iter()
                .any(|p| p.digest == digest && p.state == BlobState::Done),
            "no done for {digest}: {progress:?}"
        );
    }
    let blobs: Vec<String> = d
        .client()
        .content()
        .unwrap()
        .into_iter()
        .map(|c| c.digest)
        .collect();
    for digest in written.blob_digests() {
        assert!(blobs.contains(&digest));
    }
    // By digest: a second name for the same content.
    let by_digest = format!("{}/app@{}", registry.addr, written.manifest_digest());
    let (again, progress) = pull(&d, &by_digest);
    assert_eq!(again.unwrap().target.digest, written.manifest_digest());
    assert!(
        progress.iter().all(|p| p.state != BlobState::Downloading),
        "a pull of present blobs downloaded: {progress:?}"
    );
    // Re-pull by tag: only the manifest is asked for.
    let before = registry.log().matches("/blobs/").count();
    let (again, progress) = pull(&d, &reference);
    assert_eq!(again.unwrap().target.digest, written.manifest_digest());
    assert!(progress.iter().any(|p| p.state == BlobState::Exists));
    assert_eq!(
        registry.log().matches("/blobs/").count(),
        before,
        "a re-pull fetched blobs"
    );
    assert_eq!(
        d.client().leases("default").unwrap(),
        vec![],
        "the pull's lease stays"
    );
    let mut c = d.client();
    c.remove_images("default", vec![reference, by_digest], false)
        .unwrap();
    assert!(c.content().unwrap().is_empty());
    assert!(c.ingests().unwrap().is_empty());
}

#[test]
fn a_two_platform_index_pulls_the_hosts_manifest_and_push_round_trips() {
    let d = Daemon::start("pull-index");
    let dir = TestDir::new("pull-index");
    let registry = Registry::start();
    let layout = dir.join("layout");
    let index = write_index_layout(
        &layout,
        "multi:1",
        &[ImageSpec::busybox(), ImageSpec::tiny(other_arch())],
    );
    skopeo_push(&layout, "multi:1", &registry.addr, "multi:1", None).unwrap();
    let reference = format!("{}/multi:1", registry.addr);
    let (got, _) = pull(&d, &reference);
    let got = got.unwrap();
    assert_eq!(got.target.digest, index.index_digest());
    let mine = index.image(host_arch());
    let theirs = index.image(other_arch());
    let mut c = d.client();
    let blobs: Vec<String> = c.content().unwrap().into_iter().map(|b| b.digest).collect();
    assert!(blobs.contains(&mine.manifest_digest().to_string()));
    for b in mine.blob_digests() {
        assert!(blobs.contains(&b), "host blob {b} missing");
    }
    assert!(
        !blobs.contains(&theirs.manifest_digest().to_string()),
        "the other platform was pulled too"
    );
    let detail = c.inspect_image("default", &reference, None).unwrap();
    assert_eq!(detail.platform.unwrap().architecture, host_arch());

    // The other platform by request.
    let mut req = pull_req(&reference);
    req.platform = Some(Platform::parse(&format!("linux/{}", other_arch())).unwrap());
    c.pull(req, |_| {}).unwrap();
    assert!(c
        .content()
        .unwrap()
        .iter()
        .any(|b| b.digest == theirs.manifest_digest()));
    // A platform the index lacks is named.
    let mut req = pull_req(&reference);
    req.platform = Some(Platform::parse("linux/s390x").unwrap());
    let e = c.pull(req, |_| {}).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains("linux/s390x")),
        "{e}"
    );

    // Push under a new name, then the registry serves the same bytes.
    let pushed = format!("{}/copy:2", registry.addr);
    c.tag_image("default", &reference, &pushed, false).unwrap();
    c.push(
        PushRequest {
            image: pushed.clone(),
            remote: plain(),
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        skopeo_inspect_raw(&registry.addr, "copy:2"),
        index.index_bytes
    );
    let raw = skopeo_inspect_raw(&registry.addr, &format!("copy@{}", mine.manifest_digest()));
    assert_eq!(raw, mine.manifest_bytes);
    // And skopeo pulls the host's image back from corral's push, digests preserved.
    let back = dir.join("back");
    skopeo_pull(
        &registry.addr,
        &format!("copy@{}", mine.manifest_digest()),
        None,
        &back,
        "x",
    )
    .unwrap();
    for b in mine.blob_digests() {
        assert!(blob_path(&back, &b).is_file(), "{b} not pushed");
    }
}

#[test]
fn bad_references_unknown_tags_and_dead_registries_are_named() {
    let d = Daemon::start("pull-bad");
    let dir = TestDir::new("pull-bad");
    let (registry, _) = seeded(&dir);
    let (e, _) = pull(&d, &format!("{}/app:nope", registry.addr));
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains("app:nope")),
        "{e}"
    );
    let (e, _) = pull(&d, &format!("{}/nothere:1", registry.addr));
    assert!(matches!(e.unwrap_err(), Error::NotFound(_)));
    let (e, _) = pull(&d, "Bad Reference!");
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("Bad Reference!")),
        "{e}"
    );
    // Nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (e, _) = pull(&d, &format!("127.0.0.1:{port}/app:1"));
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable(m) if m.contains(&format!("127.0.0.1:{port}"))),
        "{e}"
    );
    let mut c = d.client();
    assert!(c.images("default").unwrap().is_empty());
    // Failed pulls leave only their leases; removing them collects everything.
    for lease in c.leases("default").unwrap() {
        c.remove_lease("default", &lease.id, false).unwrap();
    }
    assert!(c.content().unwrap().is_empty());
    assert!(c.ingests().unwrap().is_empty());
}

#[test]
fn auth_is_refused_without_credentials_and_taken_with_them() {
    let d = Daemon::start("pull-auth");
    let dir = TestDir::new("pull-auth");
    let registry = Registry::start_with_auth("alice", "s3cret");
    let layout = dir.join("layout");
    write_layout(&layout, &[("app:1", spec())]);
    skopeo_push(
        &layout,
        "app:1",
        &registry.addr,
        "app:1",
        Some(("alice", "s3cret")),
    )
    .unwrap();
    let reference = format!("{}/app:1", registry.addr);
    let (e, _) = pull(&d, &reference);
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::PermissionDenied(m) if m.contains(&registry.addr)),
        "{e}"
    );
    let mut req = pull_req(&reference);
    req.remote.credentials = Credentials::Basic {
        user: "alice".into(),
        password: "wrong".into(),
    };
    let e = d.client().pull(req.clone(), |_| {}).unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    req.remote.credentials = Credentials::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    };
    d.client().pull(req, |_| {}).unwrap();
    // Push with credentials too.
    let target = format!("{}/pushed:1", registry.addr);
    let mut c = d.client();
    c.tag_image("default", &reference, &target, false).unwrap();
    let e = c
        .push(
            PushRequest {
                image: target.clone(),
                remote: plain(),
                ..Default::default()
            },
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    c.push(
        PushRequest {
            image: target,
            remote: RemoteOptions {
                plain_http: true,
                credentials: Credentials::Basic {
                    user: "alice".into(),
                    password: "s3cret".into(),
                },
            },
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
}

/// A registry killed mid-pull: the pull fails naming the blob, its bytes stay in an
/// ingest under its lease, and the next pull resumes from them.
#[test]
fn a_registry_killed_mid_pull_fails_cleanly_and_the_next_pull_resumes() {
    let d = Daemon::start("pull-killed");
    let dir = TestDir::new("pull-killed");
    let mut registry = Registry::start();
    let layout = dir.join("layout");
    let big = ImageSpec::busybox().layer(big_layer(200 << 20), Compression::None);
    let written = write_layout(&layout, &[("big:1", big)]).remove(0);
    skopeo_push(&layout, "big:1", &registry.addr, "big:1", None).unwrap();
    let reference = format!("{}/big:1", registry.addr);
    let big_digest = written.layers[1].blob.digest.clone();

    let socket = d.socket.clone();
    let req = pull_req(&reference);
    let (tx, rx) = std::sync::mpsc::channel();
    let puller = std::thread::spawn(move || {
        let mut c = corral::rpc::Client::connect(&socket).unwrap();
        c.pull(req, |p| {
            let _ = tx.send(p.clone());
        })
    });
    // Kill the registry once the big layer is part-way.
    loop {
        let p = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        if p.digest == big_digest && p.state == BlobState::Downloading && p.offset > 0 {
            break;
        }
    }
    registry.stop();
    let e = puller.join().unwrap().unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable(m) | Error::Corrupt(m) | Error::Internal(m) if m.contains(&big_digest)),
        "{e}"
    );
    let mut c = d.client();
    assert!(
        c.images("default").unwrap().is_empty(),
        "a failed pull recorded an image"
    );
    let ingests = c.ingests().unwrap();
    let partial = ingests
        .iter()
        .find(|i| i.key == big_digest)
        .expect("the partial layer");
    assert!(partial.offset > 0 && partial.offset < written.layers[1].blob.size);
    // GC keeps it: the pull's lease holds it.
    c.prune().unwrap();
    assert!(c.ingests().unwrap().iter().any(|i| i.key == big_digest));

    registry.restart();
    let (got, progress) = pull(&d, &reference);
    got.unwrap();
    let resumed = progress
        .iter()
        .find(|p| p.digest == big_digest && p.state == BlobState::Downloading)
        .unwrap();
    assert!(
        resumed.offset > 0,
        "the pull started again from 0: {progress:?}"
    );
    assert!(registry.log().contains("Range") || resumed.offset >= partial.offset);
    // The failed pull's lease is still there; removing it leaves the image whole.
    for lease in c.leases("default").unwrap() {
        c.remove_lease("default", &lease.id, false).unwrap();
    }
    assert!(c.ingests().unwrap().is_empty());
    c.remove_images("default", vec![reference], false).unwrap();
    assert!(c.content().unwrap().is_empty());
}

/// Two pulls of images sharing a layer at once: one download, both images whole.
#[test]
fn concurrent_pulls_share_one_download() {
    let d = Daemon::start("pull-shared");
    let dir = TestDir::new("pull-shared");
    let registry = Registry::start();
    let layout = dir.join("layout");
    let shared = big_layer(30 << 20);
    let a = ImageSpec::busybox()
        .layer(shared.clone(), Compression::None)
        .cmd(&["a"]);
    let b = ImageSpec::busybox()
        .layer(shared, Compression::None)
        .cmd(&["b"]);
    write_layout(&layout, &[("a:1", a), ("b:1", b)]);
    skopeo_push(&layout, "a:1", &registry.addr, "a:1", None).unwrap();
    skopeo_push(&layout, "b:1", &registry.addr, "b:1", None).unwrap();
    let pulls: Vec<_> = ["a:1", "b:1"]
        .into_iter()
        .map(|r| {
            let socket = d.socket.clone();
            let reference = format!("{}/{r}", registry.addr);
            std::thread::spawn(move || {
                let mut c = corral::rpc::Client::connect(&socket).unwrap();
                c.pull(pull_req(&reference), |_| {})
            })
        })
        .collect();
    for p in pulls {
        p.join().unwrap().unwrap();
    }
    let log = registry.log();
    let blob_gets = log
        .lines()
        .filter(|l| l.contains("GET /v2/") && l.contains("/blobs/sha256:"))
        .count();
    // busybox layer, shared big layer: 2 shared blobs, 2 configs.
    assert!(
        blob_gets <= 4,
        "{blob_gets} blob downloads for 4 distinct blobs"
    );
    assert_eq!(d.client().images("default").unwrap().len(), 2);
}

/// Starts a pull of `reference` on its own connection; returns the progress it hears.
fn pull_in_background(
    d: &Daemon,
    reference: &str,
) -> (
    std::sync::mpsc::Receiver<Progress>,
    std::thread::JoinHandle<corral::Result<corral::ImageInfo>>,
) {
    let socket = d.socket.clone();
    let req = pull_req(reference);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut c = corral::rpc::Client::connect(&socket)?;
        c.pull(req, |p| {
            let _ = tx.send(p.clone());
        })
    });
    (rx, t)
}

/// Waits until `digest` has downloaded some bytes.
fn wait_downloading(rx: &std::sync::mpsc::Receiver<Progress>, digest: &str) {
    loop {
        let p = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the pull went quiet before downloading");
        if p.digest == digest && p.state == BlobState::Downloading && p.offset > 0 {
            return;
        }
    }
}

fn big_image(dir: &TestDir, registry: &Registry, mb: u64) -> (String, WrittenImage) {
    let layout = dir.join("layout");
    let big = ImageSpec::busybox().layer(big_layer(mb << 20), Compression::None);
    let written = write_layout(&layout, &[("big:1", big)]).remove(0);
    skopeo_push(&layout, "big:1", &registry.addr, "big:1", None).unwrap();
    (format!("{}/big:1", registry.addr), written)
}

/// corrald killed mid-pull: after the restart the ingest and its lease are still there,
/// and the next pull resumes from the bytes already on disk.
#[test]
fn corrald_killed_mid_pull_resumes_after_its_restart() {
    let mut d = Daemon::start("pull-daemon-killed");
    let dir = TestDir::new("pull-daemon-killed");
    let registry = Registry::start();
    let (reference, written) = big_image(&dir, &registry, 300);
    let big = written.layers[1].blob.clone();
    let (rx, t) = pull_in_background(&d, &reference);
    wait_downloading(&rx, &big.digest);
    d.kill9();
    let _ = t.join().unwrap();
    d.restart();
    let mut c = d.client();
    assert!(c.images("default").unwrap().is_empty());
    let partial = c
        .ingests()
        .unwrap()
        .into_iter()
        .find(|i| i.key == big.digest);
    let partial = partial.expect("the partial layer survived the restart");
    assert!(
        partial.offset > 0 && partial.offset < big.size,
        "{partial:?}"
    );
    assert_eq!(
        c.leases("default").unwrap().len(),
        1,
        "the pull's lease survived"
    );
    c.prune().unwrap();
    assert!(
        c.ingests().unwrap().iter().any(|i| i.key == big.digest),
        "GC took a leased ingest"
    );
    let (got, progress) = pull(&d, &reference);
    got.unwrap();
    let first = progress
        .iter()
        .find(|p| p.digest == big.digest && p.state == BlobState::Downloading)
        .unwrap();
    assert!(
        first.offset >= partial.offset,
        "restarted from 0: {first:?} after {partial:?}"
    );
    for lease in c.leases("default").unwrap() {
        c.remove_lease("default", &lease.id, false).unwrap();
    }
    c.remove_images("default", vec![reference], false).unwrap();
    assert!(c.content().unwrap().is_empty());
    assert!(c.ingests().unwrap().is_empty());
}

/// A client that goes away does not cancel its pull.
#[test]
fn a_pull_goes_on_when_its_client_goes_away() {
    let d = Daemon::start("pull-client-gone");
    let dir = TestDir::new("pull-client-gone");
    let registry = Registry::start();
    let (reference, written) = big_image(&dir, &registry, 100);
    // A raw connection that asks for the pull and hangs up at its first progress.
    let mut s = common::raw::raw(&d);
    common::raw::handshake(&mut s);
    common::raw::send(
        &mut s,
        7,
        corral::rpc::Request::ImagePull(pull_req(&reference)),
    );
    let first = common::raw::next_frame(&mut s).unwrap();
    assert!(
        matches!(first.reply, corral::rpc::Reply::Progress(_)),
        "{first:?}"
    );
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let images = d.client().images("default").unwrap();
        if images
            .iter()
            .any(|i| i.target.digest == written.manifest_digest())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A full disk: the pull fails with NoSpace naming the blob, nothing half-written is
/// visible, and removing its lease leaves the store empty.
#[test]
fn a_full_disk_fails_the_pull_by_name_and_leaves_nothing() {
    let dir = TestDir::new("pull-full");
    let data = dir.join("small");
    std::fs::create_dir_all(&data).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "corral-test-full"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success(), "mount a small tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    let d = Daemon::start_with("pull-full", &["--data-dir", data.to_str().unwrap()]);
    let registry = Registry::start();
    let (reference, written) = big_image(&dir, &registry, 40);
    let (e, _) = pull(&d, &reference);
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::NoSpace(m) if m.contains(&written.layers[1].blob.digest)),
        "{e}"
    );
    let mut c = d.client();
    assert!(c.images("default").unwrap().is_empty());
    assert!(!c
        .content()
        .unwrap()
        .iter()
        .any(|b| b.digest == written.layers[1].blob.digest));
    for lease in c.leases("default").unwrap() {
        c.remove_lease("default", &lease.id, false).unwrap();
    }
    assert!(c.content().unwrap().is_empty());
    assert!(c.ingests().unwrap().is_empty());
    drop(c);
    drop(d);
}
