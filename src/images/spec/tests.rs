use super::*;
use std::fs;

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "corral-spec-{what}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
# a comment\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
nginx:x:101:101:nginx:/nonexistent:/bin/false\n\
broken line\n\
alice:x:1000:1000::/home/alice:/bin/sh\n";

const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
adm:x:4:alice,daemon\n\
nginx:x:101:\n\
alice:x:1000:\n\
docker:x:999:alice\n";

/// A rootfs with etc/passwd and etc/group.
fn rootfs(what: &str) -> TempDir {
    let t = TempDir::new(what);
    fs::create_dir_all(t.0.join("etc")).unwrap();
    fs::write(t.0.join("etc/passwd"), PASSWD).unwrap();
    fs::write(t.0.join("etc/group"), GROUP).unwrap();
    t
}

fn config(run: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

fn nginx() -> Vec<u8> {
    config(serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.0"],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "WorkingDir": "",
        "Labels": {"maintainer": "NGINX Docker Maintainers"},
        "StopSignal": "SIGQUIT",
    }))
}

fn process(s: &ImageSpec) -> &oci_spec::runtime::Process {
    s.spec.process().as_ref().unwrap()
}

fn args(s: &ImageSpec) -> Vec<String> {
    process(s).args().clone().unwrap()
}

fn env(s: &ImageSpec) -> Vec<String> {
    process(s).env().clone().unwrap()
}

fn invalid_message<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("want InvalidArgument, got {other:?}"),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn args_are_entrypoint_then_cmd_with_docker_overrides() {
    let r = rootfs("args");
    let o = SpecOptions::default();
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(
        args(&s),
        strs(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
    );

    // -- CMD replaces Cmd, keeps Entrypoint.
    let o = SpecOptions {
        args: Some(strs(&["nginx", "-T"])),
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(args(&s), strs(&["/docker-entrypoint.sh", "nginx", "-T"]));

    // --entrypoint replaces Entrypoint and clears Cmd.
    let o = SpecOptions {
        entrypoint: Some(strs(&["/bin/sh"])),
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(args(&s), strs(&["/bin/sh"]));

    // Both: the entrypoint and the args given.
    let o = SpecOptions {
        entrypoint: Some(strs(&["/bin/sh"])),
        args: Some(strs(&["-c", "true"])),
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(args(&s), strs(&["/bin/sh", "-c", "true"]));

    // An empty --entrypoint clears it: Cmd alone is not kept either (docker).
    let o = SpecOptions {
        entrypoint: Some(vec![]),
        args: Some(strs(&["nginx"])),
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(args(&s), strs(&["nginx"]));

    // Cmd alone.
    let busybox = config(serde_json::json!({"Cmd": ["sh"]}));
    let s = spec_from_image(&busybox, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(args(&s), strs(&["sh"]));
}

#[test]
fn no_entrypoint_nor_cmd_wants_a_command() {
    let r = rootfs("nocmd");
    for c in [
        config(serde_json::json!({"Env": ["A=1"]})),
        config(serde_json::json!({"Entrypoint": null, "Cmd": null})),
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
    ] {
        let m = invalid_message(spec_from_image(&c, &r.0, &SpecOptions::default()));
        assert!(
            m.contains("image has no Entrypoint or Cmd; give a command"),
            "{m}"
        );
    }
    // --entrypoint with no args on an image without Cmd is fine.
    let o = SpecOptions {
        entrypoint: Some(strs(&["/bin/true"])),
        ..Default::default()
    };
    let c = config(serde_json::json!({}));
    assert_eq!(
        args(&spec_from_image(&c, &r.0, &o).unwrap()),
        strs(&["/bin/true"])
    );
}

#[test]
fn a_config_that_is_not_json_is_refused() {
    let r = rootfs("notjson");
    for c in [&b"not json"[..], b"", b"{\"config\": 3}"] {
        let m = invalid_message(spec_from_image(c, &r.0, &SpecOptions::default()));
        assert!(m.contains("not a JSON image config"), "{m}");
    }
}

#[test]
fn env_is_default_path_then_image_then_options_later_wins_in_place() {
    let r = rootfs("env");
    // No PATH in the image: the default comes first.
    let c = config(serde_json::json!({"Cmd": ["sh"], "Env": ["A=1", "B=2"]}));
    let o = SpecOptions {
        env: strs(&["B=3", "C=4", "A=5", "E="]),
        ..Default::default()
    };
    let s = spec_from_image(&c, &r.0, &o).unwrap();
    assert_eq!(env(&s), strs(&[DEFAULT_PATH, "A=5", "B=3", "C=4", "E="]));
    // No TERM from the runc defaults.
    assert!(!env(&s).iter().any(|e| e.starts_with("TERM=")));

    // The image's PATH replaces the default; the caller's replaces the image's.
    let c = config(serde_json::json!({"Cmd": ["sh"], "Env": ["X=1", "PATH=/opt/bin"]}));
    let s = spec_from_image(&c, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(env(&s), strs(&["X=1", "PATH=/opt/bin"]));
    let o = SpecOptions {
        env: strs(&["PATH=/mine"]),
        ..Default::default()
    };
    let s = spec_from_image(&c, &r.0, &o).unwrap();
    assert_eq!(env(&s), strs(&["X=1", "PATH=/mine"]));

    // A caller's entry without '=' (or with no key) is refused, naming it.
    for bad in ["NOEQUALS", "=value"] {
        let o = SpecOptions {
            env: strs(&[bad]),
            ..Default::default()
        };
        let m = invalid_message(spec_from_image(&c, &r.0, &o));
        assert!(m.contains(bad) && m.contains("KEY=VALUE"), "{m}");
    }
}

#[test]
fn cwd_is_option_then_working_dir_then_root_and_absolute() {
    let r = rootfs("cwd");
    let cwd = |s: &ImageSpec| process(s).cwd().clone();
    let c = config(serde_json::json!({"Cmd": ["sh"]}));
    let s = spec_from_image(&c, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(cwd(&s), PathBuf::from("/"));
    let c = config(serde_json::json!({"Cmd": ["sh"], "WorkingDir": "/app"}));
    let s = spec_from_image(&c, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(cwd(&s), PathBuf::from("/app"));
    let o = SpecOptions {
        cwd: Some("/srv".into()),
        ..Default::default()
    };
    let s = spec_from_image(&c, &r.0, &o).unwrap();
    assert_eq!(cwd(&s), PathBuf::from("/srv"));

    let o = SpecOptions {
        cwd: Some("srv".into()),
        ..Default::default()
    };
    let m = invalid_message(spec_from_image(&c, &r.0, &o));
    assert!(
        m.contains("\"srv\"") && m.contains("--cwd") && m.contains("not absolute"),
        "{m}"
    );
    let c = config(serde_json::json!({"Cmd": ["sh"], "WorkingDir": "app"}));
    let m = invalid_message(spec_from_image(&c, &r.0, &SpecOptions::default()));
    assert!(m.contains("WorkingDir"), "{m}");
}

#[test]
fn users_resolve_as_docker_does() {
    let r = rootfs("user");
    let u = |s: &str| resolve_user(&r.0, s).unwrap();
    assert_eq!(u(""), (0, 0, vec![]));
    assert_eq!(u("root"), (0, 0, vec![]));
    assert_eq!(u("nginx"), (101, 101, vec![]));
    // Supplementary groups from /etc/group membership.
    assert_eq!(u("alice"), (1000, 1000, vec![4, 999]));
    assert_eq!(u("daemon"), (1, 1, vec![4]));
    // A uid in passwd takes its gid and groups.
    assert_eq!(u("1000"), (1000, 1000, vec![4, 999]));
    // A uid not in passwd is fine, with gid 0.
    assert_eq!(u("4242"), (4242, 0, vec![]));
    // An explicit group is the only one.
    assert_eq!(u("4242:4243"), (4242, 4243, vec![]));
    assert_eq!(u("alice:docker"), (1000, 999, vec![]));
    assert_eq!(u("nginx:7"), (101, 7, vec![]));
    assert_eq!(u("1000:adm"), (1000, 4, vec![]));

    let m = invalid_message(resolve_user(&r.0, "bob"));
    assert!(m.contains("\"bob\"") && m.contains("etc/passwd"), "{m}");
    let m = invalid_message(resolve_user(&r.0, "alice:wheel"));
    assert!(m.contains("\"wheel\"") && m.contains("etc/group"), "{m}");
    for bad in ["alice:", ":adm", "a:b:c"] {
        let m = invalid_message(resolve_user(&r.0, bad));
        assert!(m.contains(bad), "{m}");
    }

    // No passwd at all: numbers work, names do not.
    let bare = TempDir::new("bare");
    assert_eq!(resolve_user(&bare.0, "").unwrap(), (0, 0, vec![]));
    assert_eq!(resolve_user(&bare.0, "33").unwrap(), (33, 0, vec![]));
    assert_eq!(resolve_user(&bare.0, "33:44").unwrap(), (33, 44, vec![]));
    invalid_message(resolve_user(&bare.0, "nginx"));
}

#[test]
fn the_user_comes_from_the_option_or_the_image() {
    let r = rootfs("specuser");
    let user = |s: &ImageSpec| process(s).user().clone();
    let c = config(serde_json::json!({"Cmd": ["sh"], "User": "nginx"}));
    let s = spec_from_image(&c, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!((user(&s).uid(), user(&s).gid()), (101, 101));
    assert_eq!(user(&s).additional_gids(), &None);
    let o = SpecOptions {
        user: Some("alice".into()),
        ..Default::default()
    };
    let s = spec_from_image(&c, &r.0, &o).unwrap();
    assert_eq!((user(&s).uid(), user(&s).gid()), (1000, 1000));
    assert_eq!(user(&s).additional_gids(), &Some(vec![4, 999]));
    let o = SpecOptions {
        user: Some("nobody".into()),
        ..Default::default()
    };
    let m = invalid_message(spec_from_image(&c, &r.0, &o));
    assert!(m.contains("nobody"), "{m}");
}

#[test]
fn etc_files_are_read_inside_the_rootfs_only() {
    let outside = TempDir::new("outside");
    fs::write(outside.0.join("shadow"), "evil:x:66:66::/:/bin/sh\n").unwrap();
    let r = TempDir::new("links");
    fs::create_dir_all(r.0.join("etc")).unwrap();
    // An absolute symlink to a host file: resolved inside the rootfs, where it is not.
    std::os::unix::fs::symlink(outside.0.join("shadow"), r.0.join("etc/passwd")).unwrap();
    invalid_message(resolve_user(&r.0, "evil"));
    // A relative one that climbs out: `..` stops at the rootfs.
    fs::remove_file(r.0.join("etc/passwd")).unwrap();
    let up = format!(
        "../../../../../../../../..{}",
        outside.0.join("shadow").display()
    );
    std::os::unix::fs::symlink(&up, r.0.join("etc/passwd")).unwrap();
    invalid_message(resolve_user(&r.0, "evil"));
    // The same names inside the rootfs are followed there.
    let inside = r.0.join(outside.0.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside).unwrap();
    fs::write(inside.join("shadow"), "mine:x:7:8::/:/bin/sh\n").unwrap();
    assert_eq!(resolve_user(&r.0, "mine").unwrap(), (7, 8, vec![]));
    fs::remove_file(r.0.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(outside.0.join("shadow"), r.0.join("etc/passwd")).unwrap();
    assert_eq!(resolve_user(&r.0, "mine").unwrap(), (7, 8, vec![]));

    // A symlinked etc directory (as some distributions have) resolves inside too.
    let r2 = TempDir::new("etcdir");
    fs::create_dir_all(r2.0.join("usr/etc")).unwrap();
    fs::write(r2.0.join("usr/etc/passwd"), "u:x:5:6::/:/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("/usr/etc", r2.0.join("etc")).unwrap();
    assert_eq!(resolve_user(&r2.0, "u").unwrap(), (5, 6, vec![]));

    // A symlink loop is refused, not followed forever.
    let r3 = TempDir::new("loop");
    fs::create_dir_all(r3.0.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", r3.0.join("etc/passwd")).unwrap();
    let m = invalid_message(resolve_user(&r3.0, "root"));
    assert!(m.contains("symlinks"), "{m}");

    // A directory where the file should be is refused.
    let r4 = TempDir::new("dir");
    fs::create_dir_all(r4.0.join("etc/passwd")).unwrap();
    let m = invalid_message(resolve_user(&r4.0, "root"));
    assert!(m.contains("not a regular file"), "{m}");
}

#[test]
fn a_huge_passwd_is_refused() {
    let r = rootfs("huge");
    let mut big = String::from(PASSWD);
    while big.len() as u64 <= MAX_ETC_FILE {
        big.push_str("filler:x:5000:5000::/:/bin/false\n");
    }
    fs::write(r.0.join("etc/passwd"), big).unwrap();
    let m = invalid_message(resolve_user(&r.0, "nginx"));
    assert!(m.contains("larger than"), "{m}");
}

#[test]
fn labels_stop_signal_and_annotations() {
    let r = rootfs("labels");
    let o = SpecOptions {
        annotations: [
            ("maintainer".to_string(), "me".to_string()),
            ("corral.x".to_string(), "y".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(s.stop_signal.as_deref(), Some("SIGQUIT"));
    let a = s.spec.annotations().clone().unwrap();
    assert_eq!(
        a.get(STOP_SIGNAL_ANNOTATION).map(String::as_str),
        Some("SIGQUIT")
    );
    assert_eq!(a.get("maintainer").map(String::as_str), Some("me"));
    assert_eq!(a.get("corral.x").map(String::as_str), Some("y"));
    let s = spec_from_image(&nginx(), &r.0, &SpecOptions::default()).unwrap();
    let a = s.spec.annotations().clone().unwrap();
    assert_eq!(
        a.get("maintainer").map(String::as_str),
        Some("NGINX Docker Maintainers")
    );
    // No StopSignal: none recorded.
    let c = config(serde_json::json!({"Cmd": ["sh"]}));
    let s = spec_from_image(&c, &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(s.stop_signal, None);
    assert!(!s
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .contains_key(STOP_SIGNAL_ANNOTATION));
}

#[test]
fn read_only_host_network_hostname_and_no_pivot_root() {
    let r = rootfs("flags");
    let has_net = |s: &ImageSpec| {
        s.spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network)
    };
    let s = spec_from_image(&nginx(), &r.0, &SpecOptions::default()).unwrap();
    assert_eq!(s.spec.root().as_ref().unwrap().readonly(), Some(false));
    assert!(has_net(&s));
    assert_eq!(s.spec.hostname().as_deref(), Some("corral"));
    assert!(!s.no_pivot_root);

    let o = SpecOptions {
        read_only: true,
        host_network: true,
        hostname: Some("web-1".into()),
        no_pivot_root: true,
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    assert_eq!(s.spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(s.spec.root().as_ref().unwrap().path(), &r.0);
    assert!(!has_net(&s));
    assert_eq!(s.spec.hostname().as_deref(), Some("web-1"));
    assert!(s.no_pivot_root);
    // The other namespaces stay.
    let ns = s
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap();
    assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
    assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));

    let o = SpecOptions {
        hostname: Some("bad host/name".into()),
        ..Default::default()
    };
    let m = invalid_message(spec_from_image(&nginx(), &r.0, &o));
    assert!(m.contains("bad host/name"), "{m}");

    // A rootfs that is not there.
    let m = invalid_message(spec_from_image(
        &nginx(),
        &r.0.join("missing"),
        &SpecOptions::default(),
    ));
    assert!(m.contains("missing"), "{m}");
}

#[test]
fn mounts_parse_and_land_in_the_spec() {
    let m = parse_mount("type=bind,src=/data,dst=/srv/data,ro").unwrap();
    assert_eq!(
        m,
        MountSpec {
            kind: MountKind::Bind,
            source: Some("/data".into()),
            destination: "/srv/data".into(),
            read_only: true,
        }
    );
    let m = parse_mount("source=/a, target=/b, readonly=false").unwrap();
    assert_eq!((m.kind, m.read_only), (MountKind::Bind, false));
    assert_eq!(m.destination, PathBuf::from("/b"));
    let t = parse_mount("type=tmpfs,dst=/tmp").unwrap();
    assert_eq!((t.kind, t.source.clone()), (MountKind::Tmpfs, None));

    for (bad, part) in [
        ("type=volume,src=/a,dst=/b", "type=volume"),
        ("src=/a", "no dst"),
        ("dst=/b", "needs src"),
        ("src=data,dst=/b", "data"),
        ("src=/a,dst=b", "b"),
        ("src=/a,dst=/b/../../etc", ".."),
        ("src=/a,dst=/", "cover the rootfs"),
        ("src=/a,dst=/b,bogus=1", "bogus=1"),
        ("src=/a,dst=/b,ro=maybe", "ro=maybe"),
        ("src=,dst=/b", "src="),
    ] {
        let m = invalid_message(parse_mount(bad));
        assert!(m.contains(part) && m.contains("--mount"), "{bad}: {m}");
    }

    let r = rootfs("mounts");
    let o = SpecOptions {
        mounts: vec![
            parse_mount("type=bind,src=/data,dst=/srv/data,ro").unwrap(),
            parse_mount("type=tmpfs,dst=/dev/shm").unwrap(),
        ],
        ..Default::default()
    };
    let s = spec_from_image(&nginx(), &r.0, &o).unwrap();
    let mounts = s.spec.mounts().clone().unwrap();
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/srv/data"))
        .unwrap();
    assert_eq!(data.typ().as_deref(), Some("bind"));
    assert_eq!(data.source().as_deref(), Some(Path::new("/data")));
    let opts = data.options().clone().unwrap();
    assert!(opts.contains(&"rbind".to_string()) && opts.contains(&"ro".to_string()));
    // The caller's /dev/shm replaced the default one.
    let shm: Vec<_> = mounts
        .iter()
        .filter(|m| m.destination() == Path::new("/dev/shm"))
        .collect();
    assert_eq!(shm.len(), 1);
    assert_eq!(shm[0].typ().as_deref(), Some("tmpfs"));
    assert!(shm[0]
        .options()
        .clone()
        .unwrap()
        .contains(&"rw".to_string()));
}

#[test]
fn the_spec_serialises_with_the_runc_essentials() {
    let r = rootfs("serde");
    let s = spec_from_image(&nginx(), &r.0, &SpecOptions::default()).unwrap();
    let json = serde_json::to_string_pretty(&s.spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s.spec);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["ociVersion"]
        .as_str()
        .is_some_and(|o| o.starts_with("1.")));
    assert_eq!(v["process"]["terminal"], false);
    assert_eq!(v["process"]["user"]["uid"], 0);
    assert_eq!(v["process"]["cwd"], "/");
    assert_eq!(v["process"]["args"][0], "/docker-entrypoint.sh");
    assert_eq!(v["root"]["path"], r.0.to_str().unwrap());
    let caps: Vec<&str> = v["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "CAP_CHOWN",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
    ] {
        assert!(caps.contains(&c), "{c} missing from {caps:?}");
    }
    assert!(!caps.contains(&"CAP_SYS_ADMIN"));
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
    ] {
        assert!(dests.contains(&d), "{d} missing from {dests:?}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for n in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&n), "{n} missing from {ns:?}");
    }
    assert!(v["linux"]["maskedPaths"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    assert!(v["linux"]["readonlyPaths"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(v["hostname"], "corral");
}
