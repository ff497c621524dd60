//! The snapshotter's records and mounts, and layer application, without a daemon. Tests
//! that make device nodes or `trusted.*` xattrs need root and say so when skipped.

use super::unpack::{self, chain_ids, Compression, Layer};
use super::*;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "corral-snap-unit-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn root() -> bool {
    let r = nix::unistd::geteuid().is_root();
    if !r {
        eprintln!("skipped: needs root (mknod, trusted.* xattrs, chown)");
    }
    r
}

/// One tar entry for [`tar_of`].
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar of `entries`, paths written raw (no checks: `..` and `/x` go in as they are).
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        let (path, data): (&str, &[u8]) = match e {
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                (p, d)
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, &[])
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                let bytes = h.as_mut_bytes();
                bytes[157..157 + t.len()].copy_from_slice(t.as_bytes());
                (p, &[])
            }
        };
        h.as_mut_bytes()[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn apply_plain(tar: &[u8], target: &Path, lowers: &[PathBuf]) -> Result<unpack::Applied> {
    unpack::apply(
        tar,
        target,
        lowers,
        &Layer {
            digest: LAYER,
            media_type: MEDIA_TAR,
            diff_id: None,
        },
    )
}

const MEDIA_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

#[test]
fn chain_ids_follow_the_oci_formula() {
    let d: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| crate::content::digest_of(s.as_bytes()))
        .collect();
    let c = chain_ids(&d);
    assert_eq!(c.len(), 3);
    assert_eq!(c[0], d[0]);
    assert_eq!(
        c[1],
        crate::content::digest_of(format!("{} {}", d[0], d[1]).as_bytes())
    );
    assert_eq!(
        c[2],
        crate::content::digest_of(format!("{} {}", c[1], d[2]).as_bytes())
    );
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn media_types_pick_the_decompressor() {
    use Compression::*;
    for (m, want) in [
        ("application/vnd.oci.image.layer.v1.tar", None),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Gzip,
        ),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
        ("application/vnd.docker.image.rootfs.diff.tar", None),
    ] {
        assert_eq!(Compression::of_media_type(m).unwrap(), want, "{m}");
    }
    let e =
        Compression::of_media_type("application/vnd.oci.image.layer.v1.tar+encrypted").unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn gzip_zstd_and_plain_layers_apply_and_hash_to_their_diff_id() {
    let tar = tar_of(&[E::Dir("etc/"), E::File("etc/motd", b"hello\n")]);
    let diff_id = crate::content::digest_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    // Two zstd frames with a skippable frame between them: every frame is decoded.
    let (a, b) = tar.split_at(700);
    let mut zst = ruzstd::encoding::compress_to_vec(a, ruzstd::encoding::CompressionLevel::Fastest);
    zst.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    zst.extend_from_slice(&3u32.to_le_bytes());
    zst.extend_from_slice(b"xyz");
    zst.extend(ruzstd::encoding::compress_to_vec(
        b,
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    for (media, blob) in [
        (MEDIA_TAR, tar.clone()),
        ("application/vnd.oci.image.layer.v1.tar+gzip", gz),
        ("application/vnd.oci.image.layer.v1.tar+zstd", zst),
    ] {
        let dir = TempDir::new("codec");
        let applied = unpack::apply(
            &blob[..],
            &dir.0,
            &[],
            &Layer {
                digest: LAYER,
                media_type: media,
                diff_id: Some(&diff_id),
            },
        )
        .unwrap_or_else(|e| panic!("{media}: {e}"));
        assert_eq!(applied.diff_id, diff_id, "{media}");
        assert_eq!(applied.bytes, tar.len() as u64, "{media}");
        assert_eq!(applied.entries, 2);
        assert_eq!(fs::read(dir.0.join("etc/motd")).unwrap(), b"hello\n");
        let m = fs::metadata(dir.0.join("etc/motd")).unwrap();
        assert_eq!(m.mtime(), 1_000_000);
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
    }
}

#[test]
fn a_wrong_diff_id_is_corrupt_naming_the_layer_and_both_digests() {
    let tar = tar_of(&[E::File("a", b"1")]);
    let real = crate::content::digest_of(&tar);
    let wrong = crate::content::digest_of(b"something else");
    let dir = TempDir::new("diffid");
    let e = unpack::apply(
        &tar[..],
        &dir.0,
        &[],
        &Layer {
            digest: LAYER,
            media_type: MEDIA_TAR,
            diff_id: Some(&wrong),
        },
    )
    .unwrap_err();
    let Error::Corrupt(m) = &e else { panic!("{e}") };
    assert!(
        m.contains(LAYER) && m.contains(&real) && m.contains(&wrong),
        "{m}"
    );
}

#[test]
fn paths_that_escape_are_refused() {
    let outside = TempDir::new("outside");
    let out = outside.0.display().to_string();
    let passwd_before = fs::read("/etc/passwd").ok();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar_of(&[E::File("../x", b"evil")])),
        ("dotdot-inside", tar_of(&[E::File("a/../../x", b"evil")])),
        ("absolute", tar_of(&[E::File("/x", b"evil")])),
        (
            "symlink-then-file",
            tar_of(&[E::Symlink("a", &out), E::File("a/passwd", b"evil")]),
        ),
        (
            "symlink-to-etc",
            tar_of(&[E::Symlink("a", "/etc"), E::File("a/passwd", b"evil")]),
        ),
        (
            "symlink-then-dir",
            tar_of(&[E::Symlink("a", &out), E::Dir("a/sub/")]),
        ),
        ("hardlink-dotdot", tar_of(&[E::Hardlink("l", "../x")])),
        (
            "hardlink-absolute",
            tar_of(&[E::Hardlink("l", "/etc/passwd")]),
        ),
        (
            "hardlink-through-symlink",
            tar_of(&[E::Symlink("a", "/etc"), E::Hardlink("l", "a/passwd")]),
        ),
        ("hardlink-missing", tar_of(&[E::Hardlink("l", "nothing")])),
    ];
    for (what, tar) in cases {
        let dir = TempDir::new("escape");
        let e = apply_plain(&tar, &dir.0, &[]).unwrap_err();
        eprintln!("{what}: {e}");
        assert!(matches!(e, Error::Corrupt(_)), "{what}: {e}");
        assert!(e.to_string().contains(LAYER), "{what}: {e}");
        assert_eq!(
            fs::read_dir(&outside.0).unwrap().count(),
            0,
            "{what}: wrote outside"
        );
        assert!(!dir.0.parent().unwrap().join("x").exists(), "{what}");
    }
    assert_eq!(fs::read("/etc/passwd").ok(), passwd_before);
}

#[test]
fn entries_replace_what_was_there_and_hardlinks_share_an_inode() {
    let dir = TempDir::new("replace");
    let tar = tar_of(&[
        E::Dir("./d/"),
        E::File("./d/f", b"one"),
        E::Hardlink("./d/g", "./d/f"),
        E::Symlink("./s", "/nowhere/at/all"),
        // A file replacing a directory, a directory replacing a symlink.
        E::Dir("x/"),
        E::File("x/inner", b"gone"),
        E::File("x", b"file now"),
        E::Dir("s2/"),
    ]);
    apply_plain(&tar, &dir.0, &[]).unwrap();
    let f = fs::metadata(dir.0.join("d/f")).unwrap();
    let g = fs::metadata(dir.0.join("d/g")).unwrap();
    assert_eq!(f.ino(), g.ino());
    assert_eq!(
        fs::read_link(dir.0.join("s")).unwrap(),
        Path::new("/nowhere/at/all")
    );
    assert_eq!(fs::read(dir.0.join("x")).unwrap(), b"file now");
    assert!(dir.0.join("s2").is_dir());
}

#[test]
fn a_bottom_layer_drops_whiteouts_and_opaque_markers() {
    let dir = TempDir::new("bottom");
    let tar = tar_of(&[
        E::Dir("d/"),
        E::File("d/.wh..wh..opq", b""),
        E::File("d/kept", b"k"),
        E::File("f", b"x"),
        E::File(".wh.f", b""),
        E::File(".wh.never-there", b""),
        E::File(".wh..wh.plnk", b""),
    ]);
    apply_plain(&tar, &dir.0, &[]).unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["d"]);
    assert!(dir.0.join("d/kept").is_file());
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

use std::os::unix::ffi::OsStrExt as _;

#[test]
fn whiteouts_and_opaque_dirs_become_overlay_form_over_lowers() {
    if !root() {
        return;
    }
    let lower = TempDir::new("lower");
    fs::create_dir_all(lower.0.join("d/sub")).unwrap();
    fs::write(lower.0.join("d/old"), b"old").unwrap();
    fs::write(lower.0.join("gone"), b"gone").unwrap();
    fs::create_dir(lower.0.join("keepmode")).unwrap();
    fs::set_permissions(lower.0.join("keepmode"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::lchown(lower.0.join("keepmode"), Some(123), Some(456)).unwrap();
    let upper = TempDir::new("upper");
    let tar = tar_of(&[
        E::Dir("d/"),
        E::File("d/.wh..wh..opq", b""),
        E::File("d/new", b"new"),
        E::File(".wh.gone", b""),
        // keepmode/ is not in the layer: made like the lower's.
        E::File("keepmode/.wh.x", b""),
    ]);
    apply_plain(&tar, &upper.0, std::slice::from_ref(&lower.0)).unwrap();
    assert_eq!(
        xattr(&upper.0.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(upper.0.join("d/new").is_file());
    let wh = fs::symlink_metadata(upper.0.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    let wh2 = fs::symlink_metadata(upper.0.join("keepmode/x")).unwrap();
    assert!(wh2.file_type().is_char_device());
    let km = fs::metadata(upper.0.join("keepmode")).unwrap();
    assert_eq!(km.permissions().mode() & 0o7777, 0o711);
    assert_eq!((km.uid(), km.gid()), (123, 456));
    // A symlink in a lower on the way to an entry is refused too.
    std::os::unix::fs::symlink("/etc", lower.0.join("lnk")).unwrap();
    let upper2 = TempDir::new("upper2");
    let e = apply_plain(
        &tar_of(&[E::File("lnk/passwd", b"evil")]),
        &upper2.0,
        std::slice::from_ref(&lower.0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
}

#[test]
fn owners_setuid_modes_and_xattrs_are_kept() {
    if !root() {
        return;
    }
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.corral", &b"yes"[..]),
        ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ("uid", &b"70000"[..]),
        ("mtime", &b"1234.5"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_size(2);
    h.set_mtime(5);
    b.append_data(&mut h, "bin/tool", &b"#!"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let dir = TempDir::new("meta");
    apply_plain(&tar, &dir.0, &[]).unwrap();
    let p = dir.0.join("bin/tool");
    let m = fs::symlink_metadata(&p).unwrap();
    assert_eq!((m.uid(), m.gid()), (70000, 1001));
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1234, 500_000_000));
    assert_eq!(xattr(&p, "user.corral").as_deref(), Some(&b"yes"[..]));
    assert_eq!(xattr(&p, "trusted.overlay.opaque"), None);
}

// ---- the snapshotter ----

#[test]
fn prepare_commit_view_and_their_mounts() {
    let dir = TempDir::new("snaps");
    let s = Snapshotter::open(&dir.0).unwrap();
    let root = s.root().to_path_buf();
    let fs_of = |id: u64| root.join("overlayfs").join(id.to_string()).join("fs");
    let m = s.prepare("a-active", None).unwrap();
    assert_eq!(
        m,
        vec![Mount {
            kind: "bind".into(),
            source: fs_of(1).display().to_string(),
            options: vec!["rbind".into(), "rw".into()],
        }]
    );
    s.commit("base", "a-active").unwrap();
    assert!(matches!(s.stat("a-active"), Err(Error::NotFound(_))));
    assert_eq!(s.stat("base").unwrap().kind, Kind::Committed);
    assert!(matches!(s.mounts("base"), Err(Error::InvalidArgument(_))));
    s.prepare("b-active", Some("base")).unwrap();
    s.commit("mid", "b-active").unwrap();
    let m = s.prepare("c", Some("mid")).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "overlay");
    assert_eq!(
        m[0].options,
        vec![
            format!("lowerdir={}:{}", fs_of(2).display(), fs_of(1).display()),
            format!("upperdir={}", fs_of(3).display()),
            format!("workdir={}", root.join("overlayfs/3/work").display()),
        ]
    );
    assert_eq!(s.mounts("c").unwrap(), m);
    let v1 = s.view("v1", Some("base")).unwrap();
    assert_eq!(v1[0].kind, "bind");
    assert_eq!(v1[0].source, fs_of(1).display().to_string());
    assert_eq!(v1[0].options, vec!["rbind", "ro"]);
    let v2 = s.view("v2", Some("mid")).unwrap();
    assert_eq!(
        v2[0].options,
        vec![format!(
            "lowerdir={}:{}",
            fs_of(2).display(),
            fs_of(1).display()
        )]
    );
    // Refusals.
    assert!(matches!(s.prepare("c", None), Err(Error::AlreadyExists(_))));
    assert!(matches!(
        s.prepare("d", Some("nope")),
        Err(Error::NotFound(_))
    ));
    let e = s.prepare("d", Some("c")).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("active"),
        "{e}"
    );
    assert!(matches!(
        s.commit("x", "base"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(s.commit("mid", "c"), Err(Error::AlreadyExists(_))));
    let e = s.remove("base").unwrap_err();
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("mid") && m.contains("v1")),
        "{e}"
    );
    // Survives a reopen; numbers are never reused.
    drop(s);
    let s = Snapshotter::open(&dir.0).unwrap();
    assert_eq!(s.list().unwrap().len(), 5);
    s.remove("v2").unwrap();
    assert!(!root.join("overlayfs/5").exists());
    s.prepare("e", None).unwrap();
    assert_eq!(s.stat("e").unwrap().id, 6);
    // Usage counts the snapshot's own fs.
    let e_fs = s.fs_dir("e").unwrap();
    fs::write(e_fs.join("f"), vec![1u8; 10_000]).unwrap();
    fs::hard_link(e_fs.join("f"), e_fs.join("g")).unwrap();
    let u = s.usage("e").unwrap();
    assert_eq!(u.inodes, 2, "{u:?}");
    assert!(u.size >= 10_000, "{u:?}");
}

#[test]
fn orphan_dirs_are_removed_at_open() {
    let dir = TempDir::new("orphans");
    let s = Snapshotter::open(&dir.0).unwrap();
    s.prepare("kept", None).unwrap();
    let root = s.root().to_path_buf();
    drop(s);
    fs::create_dir_all(root.join("overlayfs/99/fs")).unwrap();
    fs::create_dir_all(root.join("overlayfs/not-a-number")).unwrap();
    let s = Snapshotter::open(&dir.0).unwrap();
    assert!(!root.join("overlayfs/99").exists());
    assert!(root.join("overlayfs/not-a-number").exists());
    assert!(s.fs_dir("kept").unwrap().is_dir());
}

#[test]
fn too_many_layers_for_one_mount_are_refused_naming_the_count() {
    let lower = format!(
        "lowerdir={}",
        vec!["/var/lib/corral/snapshots/overlayfs/123/fs"; 120].join(":")
    );
    let m = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![lower, "upperdir=/u".into(), "workdir=/w".into()],
    };
    let e = check_mount_data(&m).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(msg) if msg.contains("120 layers")),
        "{e}"
    );
    let few = Mount {
        options: vec![
            "lowerdir=/a:/b".into(),
            "upperdir=/u".into(),
            "workdir=/w".into(),
        ],
        ..m
    };
    check_mount_data(&few).unwrap();
}

#[test]
fn mountinfo_users_find_overlays_binds_and_mounts_inside() {
    let text = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:50 / /run/c1 rw - overlay overlay rw,lowerdir=/d/snapshots/overlayfs/2/fs:/d/snapshots/overlayfs/1/fs,upperdir=/d/snapshots/overlayfs/3/fs,workdir=/d/snapshots/overlayfs/3/work
31 22 254:0 /d/snapshots/overlayfs/4/fs /run/bind\\040x rw - ext4 /dev/vda rw
32 22 0:51 / /d/snapshots/overlayfs/5/fs/proc rw - proc proc rw
";
    let t = mountinfo::parse(text);
    assert_eq!(t.len(), 4);
    assert_eq!(t[2].mount_point, Path::new("/run/bind x"));
    let users = |n: u32| mountinfo::users(&t, Path::new(&format!("/d/snapshots/overlayfs/{n}")));
    assert_eq!(users(1), vec![PathBuf::from("/run/c1")]);
    assert_eq!(users(3), vec![PathBuf::from("/run/c1")]);
    assert_eq!(users(4), vec![PathBuf::from("/run/bind x")]);
    assert_eq!(
        users(5),
        vec![PathBuf::from("/d/snapshots/overlayfs/5/fs/proc")]
    );
    assert!(users(6).is_empty());
    // overlayfs/1 is not overlayfs/10.
    assert!(mountinfo::users(&t, Path::new("/d/snapshots/overlayfs/10")).is_empty());
}

#[test]
fn a_data_dir_overlay_cannot_name_opens_but_prepares_nothing() {
    let dir = TempDir::new("odd");
    let s = Snapshotter::open(&dir.0.join("a:b")).unwrap();
    let e = s.prepare("x", None).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("':'")),
        "{e}"
    );
    assert!(s.list().unwrap().is_empty());
}

// ---- the native snapshotter's copy ----

/// A whiteout (0/0 character device) at `path`.
fn whiteout_at(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

#[test]
fn native_flattening_applies_whiteouts_opaque_dirs_and_keeps_links_modes_and_owners() {
    if !root() {
        return;
    }
    let bottom = TempDir::new("nat-bottom");
    let b = &bottom.0;
    fs::create_dir_all(b.join("etc")).unwrap();
    fs::write(b.join("etc/keep"), b"kept").unwrap();
    fs::write(b.join("etc/gone"), b"gone").unwrap();
    fs::create_dir_all(b.join("opq/deep")).unwrap();
    fs::write(b.join("opq/old"), b"old").unwrap();
    fs::create_dir_all(b.join("tree/sub")).unwrap();
    fs::write(b.join("tree/sub/f"), b"f").unwrap();
    fs::write(b.join("replaced"), b"a file below").unwrap();
    // A hardlink pair and a setuid file owned by someone.
    fs::write(b.join("bin-a"), b"linked").unwrap();
    fs::hard_link(b.join("bin-a"), b.join("bin-b")).unwrap();
    fs::write(b.join("suid"), b"#!").unwrap();
    std::os::unix::fs::lchown(b.join("suid"), Some(1000), Some(1001)).unwrap();
    fs::set_permissions(b.join("suid"), fs::Permissions::from_mode(0o4750)).unwrap();
    diff_set_xattr(&b.join("suid"), "user.corral", b"yes");
    // A file capability (v2, cap_net_bind_service permitted and effective).
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    fs::write(b.join("capped"), b"#!").unwrap();
    std::os::unix::fs::lchown(b.join("capped"), Some(1000), Some(1000)).unwrap();
    diff_set_xattr(&b.join("capped"), "security.capability", &cap);
    std::os::unix::fs::symlink("etc/keep", b.join("link")).unwrap();
    std::os::unix::fs::lchown(b.join("link"), Some(7), Some(8)).unwrap();
    let mtime = nix::sys::time::TimeSpec::new(1_000_000, 5);
    nix::sys::stat::utimensat(
        None,
        &b.join("etc/keep"),
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();

    let top = TempDir::new("nat-top");
    let t = &top.0;
    fs::create_dir_all(t.join("etc")).unwrap();
    whiteout_at(&t.join("etc/gone"));
    fs::write(t.join("etc/new"), b"new").unwrap();
    fs::create_dir(t.join("opq")).unwrap();
    diff_set_xattr(&t.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(t.join("opq/fresh"), b"fresh").unwrap();
    whiteout_at(&t.join("tree"));
    fs::create_dir(t.join("replaced")).unwrap();
    fs::write(t.join("replaced/inside"), b"a dir above").unwrap();
    fs::set_permissions(t.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();

    let dest = TempDir::new("nat-dest");
    let d = &dest.0;
    super::native::flatten(&[t.clone(), b.clone()], d).unwrap();

    assert_eq!(fs::read(d.join("etc/keep")).unwrap(), b"kept");
    assert_eq!(fs::read(d.join("etc/new")).unwrap(), b"new");
    assert!(
        fs::symlink_metadata(d.join("etc/gone")).is_err(),
        "whiteout"
    );
    assert!(
        fs::symlink_metadata(d.join("tree")).is_err(),
        "whited-out dir"
    );
    let mut opq: Vec<String> = fs::read_dir(d.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    opq.sort();
    assert_eq!(opq, vec!["fresh"], "an opaque dir hides what was below");
    assert_eq!(xattr(&d.join("opq"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(d.join("replaced/inside")).unwrap(), b"a dir above");
    let (la, lb) = (
        fs::metadata(d.join("bin-a")).unwrap(),
        fs::metadata(d.join("bin-b")).unwrap(),
    );
    assert_eq!(la.ino(), lb.ino(), "hardlinks stay hardlinks");
    assert_eq!(la.nlink(), 2);
    let s = fs::symlink_metadata(d.join("suid")).unwrap();
    assert_eq!((s.uid(), s.gid()), (1000, 1001));
    assert_eq!(s.permissions().mode() & 0o7777, 0o4750);
    assert_eq!(
        xattr(&d.join("suid"), "user.corral").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        xattr(&d.join("capped"), "security.capability").as_deref(),
        Some(&cap[..]),
        "a capability outlives the chown"
    );
    assert_eq!(fs::metadata(d.join("capped")).unwrap().uid(), 1000);
    let l = fs::symlink_metadata(d.join("link")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!(
        fs::read_link(d.join("link")).unwrap(),
        Path::new("etc/keep")
    );
    assert_eq!((l.uid(), l.gid()), (7, 8));
    let k = fs::metadata(d.join("etc/keep")).unwrap();
    assert_eq!((k.mtime(), k.mtime_nsec()), (1_000_000, 5));
    let e = fs::metadata(d.join("etc")).unwrap();
    assert_eq!(e.permissions().mode() & 0o7777, 0o750);
    // The layers are not changed.
    assert_eq!(fs::read(b.join("etc/gone")).unwrap(), b"gone");
    assert!(b.join("tree/sub/f").is_file());
}

fn diff_set_xattr(path: &Path, name: &str, value: &[u8]) {
    unpack::set_xattr(path, name.as_bytes(), value).unwrap();
}

#[test]
fn a_native_snapshot_is_a_copy_bind_mounted_and_never_committed() {
    if !root() {
        return;
    }
    let dir = TempDir::new("nat-snaps");
    let s = Snapshotter::open(&dir.0).unwrap();
    s.prepare("a", None).unwrap();
    fs::write(s.fs_dir("a").unwrap().join("f"), b"base").unwrap();
    fs::write(s.fs_dir("a").unwrap().join("g"), b"deleted above").unwrap();
    s.commit("base", "a").unwrap();
    s.prepare("b", Some("base")).unwrap();
    whiteout_at(&s.fs_dir("b").unwrap().join("g"));
    s.commit("top", "b").unwrap();

    let m = s.prepare_as(Flavor::Native, "n", Some("top")).unwrap();
    let fs_n = s.fs_dir("n").unwrap();
    assert_eq!(
        m,
        vec![Mount {
            kind: "bind".into(),
            source: fs_n.display().to_string(),
            options: vec!["rbind".into(), "rw".into()],
        }]
    );
    assert_eq!(s.mounts("n").unwrap(), m);
    assert_eq!(s.stat("n").unwrap().flavor, Flavor::Native);
    assert_eq!(s.stat("top").unwrap().flavor, Flavor::Overlay);
    assert_eq!(fs::read(fs_n.join("f")).unwrap(), b"base");
    assert!(fs::symlink_metadata(fs_n.join("g")).is_err());
    assert!(!fs_n.with_file_name("work").exists());
    // A write to the copy does not reach the committed chain.
    fs::write(fs_n.join("f"), b"changed").unwrap();
    assert_eq!(
        fs::read(s.fs_dir("base").unwrap().join("f")).unwrap(),
        b"base"
    );
    let e = s.commit("nope", "n").unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("native")),
        "{e}"
    );
    let v = s.view_as(Flavor::Native, "nv", Some("top")).unwrap();
    assert_eq!(v[0].kind, "bind");
    assert_eq!(v[0].options, vec!["rbind", "ro"]);
    // The flavor is recorded: it survives a reopen; a record without one is overlay.
    drop(s);
    let meta = fs::read_to_string(dir.0.join(METADATA_FILE)).unwrap();
    assert_eq!(meta.matches("\"native\"").count(), 2, "{meta}");
    let s = Snapshotter::open(&dir.0).unwrap();
    assert_eq!(s.mounts("n").unwrap(), m);
    s.remove("n").unwrap();
    s.remove("nv").unwrap();
    assert!(!fs_n.exists());
    s.remove("top").unwrap();
}

#[test]
fn proc_filesystems_lists_overlay_or_not() {
    assert!(lists_overlay("nodev\tsysfs\n\text4\nnodev\toverlay\n"));
    assert!(!lists_overlay("nodev\tsysfs\n\text4\nnodev\toverlayfs2\n"));
    assert!(!lists_overlay(""));
}
