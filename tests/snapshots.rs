//! Snapshots and unpacking through the library (no daemon): an image imported, unpacked
//! into overlayfs snapshots, a container-like active snapshot mounted for real on top, and
//! the refusals around them. Root (mount, mknod, trusted.* xattrs).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use corral::snapshots::{self, Kind, Snapshotter};
use corral::{Error, Images, ImportRequest, UnpackReport};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/snapshots.rs mounts overlayfs: run it as root"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Unmounts on drop, even when the test failed (lazily only if it stays busy).
struct Mounted(PathBuf);

impl Mounted {
    fn new(mounts: &[snapshots::Mount], target: &Path) -> Mounted {
        fs::create_dir_all(target).unwrap();
        snapshots::mount(mounts, target).unwrap();
        Mounted(target.to_path_buf())
    }

    fn unmount(self) {
        snapshots::unmount(&self.0).unwrap();
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = snapshots::unmount_or_detach(&self.0) {
            eprintln!("cannot unmount {}: {e}", self.0.display());
        }
    }
}

/// The mount points of this process that name `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

struct Fixture {
    dir: TestDir,
    images: Images,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(what: &str) -> Fixture {
        need_root();
        let dir = TestDir::new(what);
        let images = Images::open(&dir.join("data"), None).unwrap();
        Fixture {
            dir,
            images,
            rt: runtime(),
        }
    }

    /// Writes `spec` as an OCI layout tar and imports it as `name`.
    fn import(&self, name: &str, spec: ImageSpec) -> WrittenImage {
        let layout = self
            .dir
            .join(format!("layout-{}", name.replace([':', '/'], "_")));
        let written = write_layout(&layout, &[(name, spec)]).remove(0);
        self.import_layout(&layout);
        written
    }

    fn import_layout(&self, layout: &Path) {
        let tar = PathBuf::from(format!("{}.tar", layout.display()));
        tar_dir(layout, &tar);
        self.rt
            .block_on(self.images.import(ImportRequest {
                namespace: "default".into(),
                file: tar,
                base_name: None,
                labels: BTreeMap::new(),
            }))
            .unwrap();
    }

    fn unpack(&self, name: &str) -> corral::Result<UnpackReport> {
        self.rt.block_on(self.images.unpack("default", name, None))
    }

    fn snaps(&self) -> Snapshotter {
        self.images.snapshotter()
    }
}

fn three_layers() -> ImageSpec {
    let base = Layer::new()
        .busybox()
        .dir("etc")
        .file("etc/gone", b"whited out above\n", 0o644)
        .file("etc/kept", b"kept\n", 0o644)
        .dir("opq")
        .file("opq/old", b"hidden by the opaque dir above\n", 0o644);
    let middle = Layer::new()
        .dir("etc")
        .whiteout("etc/gone")
        .dir("opq")
        .opaque("opq")
        .file("opq/new", b"new\n", 0o644)
        .dir("data")
        .file("data/a", b"shared\n", 0o600)
        .owned(1000, 1000)
        .hardlink("data/b", "data/a")
        .symlink("data/link", "a");
    let top = Layer::new()
        .dir("etc")
        .file("etc/hostname", b"corral\n", 0o644)
        .symlink("etc/abs", "/etc/hostname");
    ImageSpec::new()
        .layer(base, Compression::Gzip)
        .layer(middle, Compression::Zstd)
        .layer(top, Compression::None)
        .cmd(&["sh"])
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => digest_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[test]
fn a_three_layer_image_unpacks_mounts_runs_and_unpacks_once() {
    let fx = Fixture::new("snap-three");
    let written = fx.import("example.com/snap:1", three_layers());
    let chains = chain_ids(&written.diff_ids());
    let started = std::time::Instant::now();
    let report = fx.unpack("example.com/snap:1").unwrap();
    eprintln!("unpacked 3 layers in {:?}", started.elapsed());
    assert_eq!(report.image, "example.com/snap:1");
    assert_eq!(report.manifest, written.manifest_digest());
    assert_eq!(report.chain_id, chains[2]);
    let got: Vec<&str> = report.layers.iter().map(|l| l.chain_id.as_str()).collect();
    assert_eq!(got, chains.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(report.layers.iter().all(|l| l.unpacked));
    let total: u64 = written.layers.iter().map(|l| l.uncompressed_size).sum();
    assert_eq!(report.bytes, total);
    for (l, w) in report.layers.iter().zip(&written.layers) {
        assert_eq!(l.digest, w.blob.digest);
        assert_eq!(l.diff_id, w.diff_id);
        assert_eq!(l.bytes, w.uncompressed_size);
    }

    let snaps = fx.snaps();
    for (i, c) in chains.iter().enumerate() {
        let info = snaps.stat(c).unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(
            info.parent.as_deref(),
            i.checked_sub(1).map(|p| chains[p].as_str())
        );
    }
    assert!(snaps
        .list()
        .unwrap()
        .iter()
        .all(|s| !s.name.starts_with("extract-")));
    assert!(
        snaps.usage(&chains[0]).unwrap().size > 500_000,
        "busybox is in the base"
    );

    let mounts = snaps.prepare("ctr-root", Some(&chains[2])).unwrap();
    assert_eq!(mounts[0].kind, "overlay");
    let target = fx.dir.join("rootfs");
    let mounted = Mounted::new(&mounts, &target);

    // The whiteout, the opaque dir, the hard link, the symlinks.
    assert!(fs::symlink_metadata(target.join("etc/gone")).is_err());
    assert_eq!(fs::read(target.join("etc/kept")).unwrap(), b"kept\n");
    assert!(!target.join("opq/old").exists());
    assert_eq!(fs::read(target.join("opq/new")).unwrap(), b"new\n");
    let a = fs::metadata(target.join("data/a")).unwrap();
    let b = fs::metadata(target.join("data/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (1000, 1000, 0o600));
    assert_eq!(
        fs::read_link(target.join("data/link")).unwrap(),
        Path::new("a")
    );
    assert_eq!(fs::read(target.join("data/link")).unwrap(), b"shared\n");
    assert_eq!(
        fs::read_link(target.join("etc/abs")).unwrap(),
        Path::new("/etc/hostname")
    );

    // Busybox runs from it, and sees the same tree.
    let out = Command::new("chroot")
        .arg(&target)
        .args(["/bin/busybox", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("chroot")
        .arg(&target)
        .args([
            "/bin/sh",
            "-c",
            "cat /etc/abs; ls /opq; test ! -e /etc/gone",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "corral\nnew\n");

    // A write lands in the upper dir, not in a layer.
    fs::write(target.join("etc/written"), b"upper\n").unwrap();
    let upper = snaps.fs_dir("ctr-root").unwrap();
    assert_eq!(fs::read(upper.join("etc/written")).unwrap(), b"upper\n");
    for c in &chains {
        assert!(!snaps.fs_dir(c).unwrap().join("etc/written").exists());
    }

    // Refused while mounted, and while it has children.
    let e = snaps.remove("ctr-root").unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("mounted")),
        "{e}"
    );
    let e = snaps.commit("ctr-committed", "ctr-root").unwrap_err();
    assert!(matches!(&e, Error::WrongState(_)), "{e}");
    let e = snaps.remove(&chains[2]).unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("ctr-root")),
        "{e}"
    );

    mounted.unmount();
    assert!(mounts_under(snaps.root()).is_empty());
    snaps.remove("ctr-root").unwrap();

    // Unpacked once: a second unpack unpacks nothing.
    let again = fx.unpack("example.com/snap:1").unwrap();
    assert!(again.layers.iter().all(|l| !l.unpacked), "{again:?}");
    assert_eq!(again.bytes, 0);
    assert_eq!(again.chain_id, chains[2]);

    let e = snaps.remove(&chains[0]).unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains(&chains[1]) && m.contains("children")),
        "{e}"
    );

    // A view of the top: read-only.
    let view = snaps.view("ro-view", Some(&chains[2])).unwrap();
    assert_eq!(view[0].kind, "overlay");
    let vt = fx.dir.join("view");
    let v = Mounted::new(&view, &vt);
    assert_eq!(fs::read(vt.join("etc/hostname")).unwrap(), b"corral\n");
    let e = fs::write(vt.join("x"), b"no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    v.unmount();
    snaps.remove("ro-view").unwrap();

    // GC keeps the snapshots of an image that is there.
    fx.rt.block_on(fx.images.prune()).unwrap();
    assert_eq!(snaps.list().unwrap().len(), 3);
}

/// Rewrites the layout's one image so that its config's diff id `i` is `wrong`.
fn break_diff_id(layout: &Path, written: &WrittenImage, i: usize, wrong: &str) {
    let mut config: serde_json::Value = serde_json::from_slice(&written.config_bytes).unwrap();
    config["rootfs"]["diff_ids"][i] = serde_json::json!(wrong);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_desc = Descriptor::of(CONFIG_MEDIA_TYPE, &config_bytes);
    fs::write(blob_path(layout, &config_desc.digest), &config_bytes).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&written.manifest_bytes).unwrap();
    manifest["config"] = config_desc.json();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_desc = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
    fs::write(blob_path(layout, &manifest_desc.digest), &manifest_bytes).unwrap();
    let mut entry = manifest_desc.json();
    entry["annotations"] = serde_json::json!({ REF_NAME: written.ref_name });
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [entry],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_wrong_diff_id_is_corrupt_and_leaves_no_extract_snapshot_nor_mount() {
    let fx = Fixture::new("snap-corrupt");
    let spec = ImageSpec::new()
        .layer(Layer::new().file("one", b"1\n", 0o644), Compression::Gzip)
        .layer(
            Layer::new().dir("d").file("d/two", b"2\n", 0o644),
            Compression::Zstd,
        );
    let layout = fx.dir.join("layout");
    let written = write_layout(&layout, &[("example.com/bad:1", spec)]).remove(0);
    let wrong = digest_of(b"not the layer");
    break_diff_id(&layout, &written, 1, &wrong);
    fx.import_layout(&layout);

    let e = fx.unpack("example.com/bad:1").unwrap_err();
    eprintln!("{e}");
    let Error::Corrupt(m) = &e else { panic!("{e}") };
    assert!(m.contains(&written.layers[1].blob.digest), "{m}");
    assert!(
        m.contains(&written.layers[1].diff_id) && m.contains(&wrong),
        "{m}"
    );

    let snaps = fx.snaps();
    let names: Vec<String> = snaps.list().unwrap().into_iter().map(|s| s.name).collect();
    // The good base layer stays committed; the bad one left nothing.
    assert_eq!(names, vec![written.layers[0].diff_id.clone()]);
    let dirs = fs::read_dir(snaps.root().join("overlayfs"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1);
    assert!(mounts_under(snaps.root()).is_empty());
}

#[test]
fn a_full_disk_is_no_space_naming_the_layer_and_leaves_nothing() {
    need_root();
    let dir = TestDir::new("snap-full");
    // The data dir on a 4 MiB tmpfs; the layer unpacks to 16 MiB (of zeros: its gzip
    // blob is small enough to import).
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &data,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m"),
    )
    .unwrap();
    let _tmpfs = Mounted(data.clone());
    let images = Images::open(&data, None).unwrap();
    let rt = runtime();
    let spec = ImageSpec::new().layer(
        Layer::new().file("zeros", &vec![0u8; 16 << 20], 0o644),
        Compression::Gzip,
    );
    let layout = dir.join("layout");
    let written = write_layout(&layout, &[("example.com/big:1", spec)]).remove(0);
    let tar = dir.join("layout.tar");
    tar_dir(&layout, &tar);
    rt.block_on(images.import(ImportRequest {
        namespace: "default".into(),
        file: tar,
        base_name: None,
        labels: BTreeMap::new(),
    }))
    .unwrap();
    let e = rt
        .block_on(images.unpack("default", "example.com/big:1", None))
        .unwrap_err();
    eprintln!("{e}");
    let Error::NoSpace(m) = &e else { panic!("{e}") };
    assert!(m.contains(&written.layers[0].blob.digest), "{m}");
    let snaps = images.snapshotter();
    assert!(snaps.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(snaps.root().join("overlayfs"))
            .unwrap()
            .count(),
        0
    );
    drop(images);
}

fn small(base: &[u8], top: &[u8]) -> ImageSpec {
    ImageSpec::new()
        .layer(
            Layer::new().dir("etc").file("etc/base", base, 0o644),
            Compression::Gzip,
        )
        .layer(
            Layer::new().dir("etc").file("etc/top", top, 0o644),
            Compression::None,
        )
}

fn names(snaps: &Snapshotter) -> Vec<String> {
    snaps.list().unwrap().into_iter().map(|s| s.name).collect()
}

impl Fixture {
    fn remove(&self, name: &str) {
        self.rt
            .block_on(self.images.remove("default", vec![name.into()], false))
            .unwrap();
    }

    fn prune(&self) -> corral::PruneReport {
        self.rt.block_on(self.images.prune()).unwrap()
    }
}

#[test]
fn gc_removes_a_removed_images_snapshots_but_keeps_shared_and_used_ones() {
    let fx = Fixture::new("snap-gc");
    let snaps = fx.snaps();
    let a = fx.import("example.com/a:1", small(b"shared\n", b"a\n"));
    let b = fx.import("example.com/b:1", small(b"shared\n", b"b\n"));
    let ca = chain_ids(&a.diff_ids());
    let cb = chain_ids(&b.diff_ids());
    assert_eq!(ca[0], cb[0], "the same base layer");
    fx.unpack("example.com/a:1").unwrap();
    fx.unpack("example.com/b:1").unwrap();
    assert_eq!(snaps.list().unwrap().len(), 3);

    // Nothing to collect while both images are there.
    assert_eq!(fx.prune().snapshots, 0);

    // Removing a takes its top, and keeps the shared base b stands on.
    fx.remove("example.com/a:1");
    let mut want = vec![cb[0].clone(), cb[1].clone()];
    want.sort();
    assert_eq!(names(&snaps), want);

    // An active snapshot on b's top keeps b's chain after b goes.
    snaps.prepare("ctr-root", Some(&cb[1])).unwrap();
    fx.remove("example.com/b:1");
    assert_eq!(snaps.list().unwrap().len(), 3);
    assert_eq!(fx.prune().snapshots, 0);

    // Once it goes, a prune takes the chain.
    snaps.remove("ctr-root").unwrap();
    let report = fx.prune();
    assert_eq!(report.snapshots, 2, "{report:?}");
    assert!(snaps.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(snaps.root().join("overlayfs"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn gc_keeps_a_mounted_snapshot_and_goes_on() {
    let fx = Fixture::new("snap-gc-mounted");
    let snaps = fx.snaps();
    let w = fx.import("example.com/m:1", small(b"base\n", b"top\n"));
    let chains = chain_ids(&w.diff_ids());
    fx.unpack("example.com/m:1").unwrap();

    // The base layer's dir bound somewhere by hand: GC cannot remove it.
    let bind = snapshots::Mount {
        kind: "bind".into(),
        source: snaps.fs_dir(&chains[0]).unwrap().display().to_string(),
        options: vec!["rbind".into(), "ro".into()],
    };
    let target = fx.dir.join("bound");
    let mounted = Mounted::new(&[bind], &target);
    assert_eq!(fs::read(target.join("etc/base")).unwrap(), b"base\n");

    // image rm with GC succeeds: the top goes, the mounted base stays.
    fx.remove("example.com/m:1");
    assert_eq!(names(&snaps), vec![chains[0].clone()]);
    let report = fx.prune();
    assert_eq!(report.snapshots, 0, "{report:?}");
    assert_eq!(names(&snaps), vec![chains[0].clone()]);

    mounted.unmount();
    assert_eq!(fx.prune().snapshots, 1);
    assert!(snaps.list().unwrap().is_empty());
}
