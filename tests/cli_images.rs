//! corralctl's image commands against a real corrald: image import/export/ls/inspect/tag/rm,
//! content, leases, namespaces and prune; and image pull/push against a private registry
//! (`pull_*`, `push_*`: they need the real registry client).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::images::*;
use common::registry::Registry;
use common::*;
use corral::{ContentInfo, ImageInfo, LeaseInfo, NamespaceInfo, Progress};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> T {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{what} is not the expected JSON ({e}): {json}"))
}

/// Asserts a failure with `want` exit code; returns stderr.
fn fails(d: &Daemon, args: &[&str], want: i32) -> String {
    let out = d.ctl(args);
    assert_eq!(
        code(&out),
        want,
        "corralctl {args:?}: stdout {:?}, stderr {:?}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

/// corralctl run in `dir` (for relative paths).
fn ctl_in(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(CORRALCTL)
            .current_dir(dir)
            .env_remove("CORRAL_SOCKET")
            .env_remove("CORRAL_NAMESPACE")
            .arg("--socket")
            .arg(&d.socket)
            .args(args),
        LIVENESS,
    )
}

/// corralctl with `input` on its stdin (a pipe, not a terminal).
fn ctl_with_stdin(d: &Daemon, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(CORRALCTL)
        .env_remove("CORRAL_SOCKET")
        .env_remove("CORRAL_NAMESPACE")
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIVENESS) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("corralctl {args:?} did not finish within {LIVENESS:?}");
        }
    }
}

const APP: &str = "example.com/test/app:1.0";

/// busybox with an entrypoint, in a layout tar named APP.
fn app_tar(work: &TestDir) -> (std::path::PathBuf, WrittenImage) {
    let layout = work.join("layout");
    let spec = ImageSpec::busybox().entrypoint(&["/bin/sh", "-c"]);
    let written = write_layout(&layout, &[(APP, spec)]).remove(0);
    let tar = work.join("app.tar");
    tar_dir(&layout, &tar);
    (tar, written)
}

fn images(d: &Daemon, ns: &str) -> Vec<ImageInfo> {
    parse(
        &d.ctl_ok(&["-n", ns, "image", "ls", "--json"]),
        "image ls --json",
    )
}

fn content(d: &Daemon) -> Vec<String> {
    let list: Vec<ContentInfo> = parse(&d.ctl_ok(&["content", "ls", "--json"]), "content ls");
    list.into_iter().map(|c| c.digest).collect()
}

/// Import (a relative path), ls (table, -q, --json, `images`), inspect (nested JSON),
/// tag, export, rm, and the export imported back with the same digests.
#[test]
fn import_list_inspect_tag_export_round_trip() {
    let d = Daemon::start("cli_img_roundtrip");
    let work = TestDir::new("cli-roundtrip");
    let (_, written) = app_tar(&work);
    let digest = written.manifest_digest().to_string();

    let out = ctl_in(
        &d,
        work.path(),
        &["image", "import", "app.tar", "-l", "k=v"],
    );
    assert_eq!(code(&out), 0, "import: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("{APP} {digest}"));

    // The table.
    let text = d.ctl_ok(&["image", "ls"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "TYPE", "DIGEST", "SIZE", "CREATED", "LABELS"]
    );
    let row = lines.next().expect("a row");
    let hex12 = &digest[7..19];
    assert!(row.starts_with(APP), "{row}");
    assert!(row.contains(" manifest "), "{row}");
    assert!(row.contains(hex12), "{row}");
    assert!(row.ends_with("k=v"), "{row}");
    assert!(lines.next().is_none(), "{text}");
    assert_eq!(d.ctl_ok(&["image", "ls", "-q"]).trim(), APP);
    assert_eq!(d.ctl_ok(&["images", "-q"]).trim(), APP);
    assert_eq!(d.ctl_ok(&["i", "list", "-q"]).trim(), APP);

    // JSON.
    let list = images(&d, "default");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, APP);
    assert_eq!(list[0].target.digest, digest);
    assert_eq!(list[0].labels.get("k").map(String::as_str), Some("v"));
    assert!(list[0].size > written.manifest.size, "{:?}", list[0]);

    // inspect: real nested JSON.
    let v: serde_json::Value = parse(&d.ctl_ok(&["image", "inspect", APP]), "image inspect");
    assert_eq!(v["info"]["name"], APP);
    assert_eq!(
        v["config"]["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"]),
        "{v}"
    );
    assert_eq!(
        v["manifest"]["config"]["digest"].as_str(),
        Some(written.config_digest())
    );
    assert!(v["manifest"]["layers"].is_array(), "{v}");
    assert!(v["index"].is_null(), "{v}");

    // tag: a new name; again refused without --force.
    let copy = "example.com/test/app:copy";
    assert_eq!(d.ctl_ok(&["image", "tag", APP, copy]).trim(), copy);
    let err = fails(&d, &["image", "tag", APP, copy], 125);
    assert!(err.contains(copy) && err.contains("--force"), "{err}");
    d.ctl_ok(&["image", "tag", "--force", APP, copy]);
    let mut names: Vec<String> = images(&d, "default").into_iter().map(|i| i.name).collect();
    names.sort();
    assert_eq!(names, [APP, copy]);

    // export (relative path, made absolute), rm, import the export back.
    let out = ctl_in(&d, work.path(), &["image", "export", "out.tar", APP, copy]);
    assert_eq!(code(&out), 0, "export: {}", stderr(&out));
    let exported = work.join("out.tar");
    assert!(
        stdout(&out).starts_with(&format!("{} (", exported.display())),
        "{}",
        stdout(&out)
    );
    assert!(exported.is_file());
    let removed = d.ctl_ok(&["image", "rm", APP, copy]);
    assert_eq!(removed.lines().collect::<Vec<_>>(), [APP, copy]);
    assert_eq!(d.ctl_ok(&["image", "ls", "-q"]), "");
    assert!(content(&d).is_empty(), "GC ran after rm: {:?}", content(&d));
    let back = d.ctl_ok(&["image", "import", exported.to_str().unwrap()]);
    let mut back: Vec<&str> = back.lines().collect();
    back.sort();
    assert_eq!(
        back,
        [format!("{APP} {digest}"), format!("{copy} {digest}")],
        "the export comes back with the same digest"
    );
}

/// `image rm` removes every name it can, names each one it cannot, and exits 125.
#[test]
fn image_rm_reports_each_failure() {
    let d = Daemon::start("cli_img_rm");
    let work = TestDir::new("cli-rm");
    let (tar, _) = app_tar(&work);
    d.ctl_ok(&["image", "import", tar.to_str().unwrap()]);
    let out = d.ctl(&["image", "rm", "example.com/no/such:1", APP]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("corralctl: example.com/no/such:1: ")
            && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), APP);
    assert!(images(&d, "default").is_empty());
    let err = fails(&d, &["image", "rm", APP], 125);
    assert!(err.contains(APP), "{err}");
}

/// A `docker save` tar imports; a layout entry named by a tag only needs --base-name.
#[test]
fn import_docker_save_and_base_name() {
    let d = Daemon::start("cli_img_save");
    let work = TestDir::new("cli-save");
    let saved_tar = work.join("saved.tar");
    docker_save_tar(
        &saved_tar,
        &["example.com/test/saved:1"],
        &ImageSpec::busybox(),
    );
    let out = d.ctl_ok(&["image", "import", saved_tar.to_str().unwrap()]);
    assert!(out.starts_with("example.com/test/saved:1 sha256:"), "{out}");

    let layout = work.join("tagonly");
    write_layout(&layout, &[("v1", ImageSpec::busybox())]);
    let tar = work.join("tagonly.tar");
    tar_dir(&layout, &tar);
    let err = fails(&d, &["image", "import", tar.to_str().unwrap()], 125);
    assert!(err.contains("--base-name"), "{err}");
    let out = d.ctl_ok(&[
        "image",
        "import",
        tar.to_str().unwrap(),
        "--base-name",
        "example.com/test/b",
    ]);
    assert!(out.starts_with("example.com/test/b:v1 sha256:"), "{out}");
    let err = fails(&d, &["image", "import", "/no/such/file.tar"], 125);
    assert!(err.contains("/no/such/file.tar"), "{err}");
}

/// content ls (table, --json), ingests, rm (refused for a blob an image holds, naming the
/// image), and prune after `rm --no-gc` leaves the store empty.
#[test]
fn content_rm_and_prune() {
    let d = Daemon::start("cli_img_content");
    let work = TestDir::new("cli-content");
    let (tar, written) = app_tar(&work);
    d.ctl_ok(&["image", "import", tar.to_str().unwrap()]);

    let mut want = written.blob_digests();
    want.push(written.manifest_digest().to_string());
    want.sort();
    let mut got = content(&d);
    got.sort();
    assert_eq!(got, want);
    let text = d.ctl_ok(&["content", "ls"]);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["DIGEST", "SIZE", "CREATED"]);
    assert!(text.contains(written.config_digest()), "{text}");
    let ingests = d.ctl_ok(&["content", "ingests", "--json"]);
    assert_eq!(ingests.trim(), "[]");
    d.ctl_ok(&["content", "ingests"]);

    let layer = written.layer_digests()[0].clone();
    let err = fails(&d, &["content", "rm", &layer], 125);
    assert!(err.contains(&layer) && err.contains(APP), "{err}");
    let err = fails(&d, &["content", "rm", "not-a-digest"], 125);
    assert!(err.contains("not-a-digest"), "{err}");

    d.ctl_ok(&["image", "rm", "--no-gc", APP]);
    assert_eq!(content(&d).len(), want.len(), "--no-gc left the blobs");
    // Now nothing holds them: one goes by hand, prune takes the rest.
    assert_eq!(d.ctl_ok(&["content", "rm", &layer]).trim(), layer);
    let report = d.ctl_ok(&["prune"]);
    assert!(
        report.starts_with(&format!("removed {} blobs", want.len() - 1)),
        "{report}"
    );
    assert!(content(&d).is_empty(), "{:?}", content(&d));
    let r: serde_json::Value = parse(&d.ctl_ok(&["prune", "--json"]), "prune --json");
    assert_eq!(r["blobs"], 0);
}

/// lease create (id, expiry, labels; made-up id; never), ls, rm (each in turn).
#[test]
fn leases() {
    let d = Daemon::start("cli_img_leases");
    assert_eq!(
        d.ctl_ok(&[
            "lease",
            "create",
            "--id",
            "l1",
            "--expires",
            "1h",
            "-l",
            "a=b"
        ])
        .trim(),
        "l1"
    );
    let made_up = d.ctl_ok(&["lease", "create"]).trim().to_string();
    assert!(!made_up.is_empty());
    d.ctl_ok(&["lease", "create", "--id", "forever", "--expires", "0"]);
    let err = fails(&d, &["lease", "create", "--expires", "soon"], 2);
    assert!(err.contains("soon"), "{err}");

    let list: Vec<LeaseInfo> = parse(&d.ctl_ok(&["lease", "ls", "--json"]), "lease ls");
    let l1 = list.iter().find(|l| l.id == "l1").expect("l1 listed");
    assert_eq!(l1.labels.get("a").map(String::as_str), Some("b"));
    let left = l1.expires_ns.unwrap().saturating_sub(l1.created_ns) / 1_000_000_000;
    assert!((3590..=3610).contains(&left), "1h: {left}s");
    let day = list.iter().find(|l| l.id == made_up).unwrap();
    let left = day.expires_ns.unwrap().saturating_sub(day.created_ns) / 1_000_000_000;
    assert!((86_390..=86_410).contains(&left), "24h by default: {left}s");
    assert!(list
        .iter()
        .find(|l| l.id == "forever")
        .unwrap()
        .expires_ns
        .is_none());
    let table = d.ctl_ok(&["leases", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "CREATED", "EXPIRES", "RESOURCES", "LABELS"]);
    let forever = table.lines().find(|l| l.starts_with("forever")).unwrap();
    assert!(forever.contains("never"), "{forever}");

    let out = d.ctl(&["lease", "rm", "nope", "l1"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("corralctl: nope: "),
        "{}",
        stderr(&out)
    );
    let mut ids: Vec<String> = d
        .ctl_ok(&["lease", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    let mut want = vec![made_up, "forever".to_string()];
    want.sort();
    assert_eq!(ids, want);
    d.ctl_ok(&["lease", "rm", "--no-gc", "forever"]);
}

/// namespace create, label (`K=` removes), ls, rm (refused while it holds an image).
#[test]
fn namespaces() {
    let d = Daemon::start("cli_img_ns");
    let (a, b) = (unique_id("team-a"), unique_id("team-b"));
    d.use_namespace(&a);
    d.use_namespace(&b);
    assert_eq!(
        d.ctl_ok(&["namespace", "create", &a, "--label", "owner=me"])
            .trim(),
        a
    );
    let err = fails(&d, &["ns", "create", &a], 125);
    assert!(err.contains(&a), "{err}");
    fails(&d, &["ns", "create", "bad/name"], 2);
    let table = d.ctl_ok(&["ns", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "LABELS"]);
    let row = table.lines().find(|l| l.starts_with(&a)).expect("listed");
    assert!(row.ends_with("owner=me"), "{row}");

    d.ctl_ok(&["ns", "label", &a, "tier=gold", "owner="]);
    let list: Vec<NamespaceInfo> = parse(&d.ctl_ok(&["ns", "ls", "--json"]), "ns ls");
    let info = list.iter().find(|n| n.name == a).unwrap();
    assert_eq!(
        info.labels.iter().collect::<Vec<_>>(),
        [(&"tier".to_string(), &"gold".to_string())]
    );

    let work = TestDir::new("cli-ns");
    let (tar, _) = app_tar(&work);
    d.ctl_ok(&["-n", &b, "image", "import", tar.to_str().unwrap()]);
    assert_eq!(images(&d, &b).len(), 1);
    assert!(
        images(&d, "default").is_empty(),
        "images stay in their namespace"
    );
    let err = fails(&d, &["ns", "rm", &b], 125);
    assert!(err.contains(&b) && err.contains(APP), "{err}");
    d.ctl_ok(&["image", "rm", "-n", &b, APP]);
    d.ctl_ok(&["ns", "rm", &a, &b]);
    let names = d.ctl_ok(&["namespace", "ls", "-q"]);
    assert!(!names.lines().any(|n| n == a || n == b), "{names}");
    let err = fails(&d, &["ns", "rm", &a], 125);
    assert!(err.contains(&a), "{err}");
}

/// A malformed `--platform` is a usage error (2) saying what a platform looks like; flags
/// that need another are refused likewise.
#[test]
fn bad_command_lines() {
    let d = Daemon::start("cli_img_usage");
    for args in [
        &["image", "inspect", APP, "--platform", "linux"][..],
        &["image", "pull", "x", "--platform", "linux/amd64/v8/extra"][..],
        &["image", "pull", "x", "--platform", "/amd64"][..],
    ] {
        let err = fails(&d, args, 2);
        assert!(err.contains("os/architecture"), "{args:?}: {err}");
    }
    fails(&d, &["image", "pull", "x", "--password-stdin"], 2);
    fails(
        &d,
        &[
            "image",
            "pull",
            "x",
            "--all-platforms",
            "--platform",
            "linux/amd64",
        ],
        2,
    );
    fails(&d, &["image", "rm"], 2);
    fails(&d, &["image", "export", "/tmp/x.tar"], 2);
    fails(&d, &["image", "frob"], 2);
    let err = fails(&d, &["image", "inspect", "example.com/no/such:1"], 125);
    assert!(err.contains("example.com/no/such:1"), "{err}");
}

/// A pull that cannot reach its registry fails with 125 and the daemon's error.
#[test]
fn pull_from_nothing_fails() {
    let d = Daemon::start("cli_img_pull_fail");
    let addr = format!("127.0.0.1:{}", free_port());
    let out = d.ctl(&["image", "pull", "--plain-http", &format!("{addr}/x/y:1")]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("corralctl: "), "{}", stderr(&out));
    assert!(images(&d, "default").is_empty());
}

/// Checks plain pull progress: one line per state change, at most one `downloading` line
/// per blob and one `done` (or `exists`) line for every blob of the image.
fn check_plain_progress(lines: &[&str], image: &WrittenImage) {
    for blob in image.blob_digests() {
        let short = &blob[7..19];
        let mine: Vec<&&str> = lines.iter().filter(|l| l.contains(short)).collect();
        let downloading = mine.iter().filter(|l| l.contains("downloading")).count();
        assert!(downloading <= 1, "{blob}: {mine:#?}");
        let done = mine
            .iter()
            .filter(|l| l.contains(" done") || l.contains(" exists"))
            .count();
        assert_eq!(done, 1, "{blob}: {mine:#?}");
    }
}

/// NEEDS THE REAL REGISTRY CLIENT. Pull (plain lines, then `--json`), then push under
/// another name: the registry serves the same manifest bytes.
#[test]
fn pull_and_push_through_a_registry() {
    let d = Daemon::start("cli_img_pull_push");
    let work = TestDir::new("cli-pull");
    let layout = work.join("layout");
    let written = write_layout(&layout, &[("v1", ImageSpec::busybox())]).remove(0);
    let registry = Registry::start();
    skopeo_push(&layout, "v1", &registry.addr, "test/app:1.0", None).unwrap();
    let reference = format!("{}/test/app:1.0", registry.addr);

    let out = d.ctl_ok(&[
        "image",
        "pull",
        "--plain-http",
        "-l",
        "from=test",
        &reference,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(format!("{reference} {}", written.manifest_digest()).as_str()),
        "{out}"
    );
    check_plain_progress(&lines, &written);
    let list = images(&d, "default");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].labels.get("from").map(String::as_str), Some("test"));

    // --json: a Progress per line, then the image.
    d.ctl_ok(&["image", "rm", &reference]);
    let out = d.ctl_ok(&["image", "pull", "--plain-http", "--json", &reference]);
    let lines: Vec<&str> = out.lines().collect();
    let (last, steps) = lines.split_last().unwrap();
    assert!(!steps.is_empty());
    for s in steps {
        let _: Progress = parse(s, "a progress line");
    }
    let image: ImageInfo = parse(last, "the pulled image");
    assert_eq!(image.target.digest, written.manifest_digest());

    // push under another name.
    let copy = format!("{}/test/copy:2", registry.addr);
    let out = d.ctl_ok(&["image", "push", "--plain-http", &reference, &copy]);
    assert_eq!(
        out.lines().last(),
        Some(format!("{copy} {}", written.manifest_digest()).as_str()),
        "{out}"
    );
    assert_eq!(
        skopeo_inspect_raw(&registry.addr, "test/copy:2"),
        written.manifest_bytes
    );
    let err = fails(
        &d,
        &["image", "push", "--plain-http", "example.com/no/such:1"],
        125,
    );
    assert!(err.contains("example.com/no/such:1"), "{err}");
}

/// NEEDS THE REAL REGISTRY CLIENT. A registry with auth: refused anonymously; `--user
/// U:P`, `--user U` with the password on stdin, and `--password-stdin` all pull.
#[test]
fn pull_with_credentials() {
    let d = Daemon::start("cli_img_pull_auth");
    let work = TestDir::new("cli-auth");
    let layout = work.join("layout");
    let written = write_layout(&layout, &[("v1", ImageSpec::busybox())]).remove(0);
    let (user, password) = ("corral", "s3cret pass");
    let registry = Registry::start_with_auth(user, password);
    skopeo_push(
        &layout,
        "v1",
        &registry.addr,
        "priv/app:1",
        Some((user, password)),
    )
    .unwrap();
    let reference = format!("{}/priv/app:1", registry.addr);
    let want = format!("{reference} {}", written.manifest_digest());

    let err = fails(&d, &["image", "pull", "--plain-http", &reference], 125);
    assert!(err.starts_with("corralctl: "), "{err}");
    let err = fails(
        &d,
        &[
            "image",
            "pull",
            "--plain-http",
            "--user",
            "corral:wrong",
            &reference,
        ],
        125,
    );
    assert!(err.starts_with("corralctl: "), "{err}");

    // `--user U` with nothing on stdin: refused before anything is sent.
    let err = fails(
        &d,
        &["image", "pull", "--plain-http", "-u", user, &reference],
        125,
    );
    assert!(err.contains("no password on stdin"), "{err}");

    let both = format!("{user}:{password}");
    let out = d.ctl_ok(&["image", "pull", "--plain-http", "-u", &both, &reference]);
    assert_eq!(out.lines().last(), Some(want.as_str()), "{out}");
    d.ctl_ok(&["image", "rm", &reference]);

    for extra in [&[][..], &["--password-stdin"][..]] {
        let mut args = vec!["image", "pull", "--plain-http", "--user", user];
        args.extend_from_slice(extra);
        args.push(&reference);
        let out = ctl_with_stdin(&d, &args, &format!("{password}\n"));
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out).lines().last(), Some(want.as_str()));
        d.ctl_ok(&["image", "rm", &reference]);
    }
}

/// An index: TYPE `index` in the table; inspect picks the host's manifest, or the one
/// `--platform` names, and shows the index too.
#[test]
fn index_inspect_by_platform() {
    let d = Daemon::start("cli_img_index");
    let work = TestDir::new("cli-index");
    let layout = work.join("layout");
    let name = "example.com/test/multi:1";
    let index = write_index_layout(
        &layout,
        name,
        &[ImageSpec::busybox(), ImageSpec::tiny(other_arch())],
    );
    let tar = work.join("multi.tar");
    tar_dir(&layout, &tar);
    d.ctl_ok(&["image", "import", tar.to_str().unwrap()]);
    let table = d.ctl_ok(&["image", "ls"]);
    let row = table.lines().find(|l| l.starts_with(name)).unwrap();
    assert!(row.contains(" index "), "{row}");

    let host: serde_json::Value = parse(&d.ctl_ok(&["image", "inspect", name]), "inspect");
    assert_eq!(host["platform"]["architecture"], host_arch(), "{host}");
    assert_eq!(
        host["manifest"]["config"]["digest"].as_str(),
        Some(index.image(host_arch()).config_digest())
    );
    assert!(host["index"]["manifests"].is_array(), "{host}");
    let platform = format!("linux/{}", other_arch());
    let other: serde_json::Value = parse(
        &d.ctl_ok(&["image", "inspect", name, "--platform", &platform]),
        "inspect --platform",
    );
    assert_eq!(other["platform"]["architecture"], other_arch(), "{other}");
    assert_eq!(other["config"]["architecture"], other_arch(), "{other}");
    let err = fails(
        &d,
        &["image", "inspect", name, "--platform", "linux/s390x"],
        125,
    );
    assert!(err.contains("s390x"), "{err}");
}
