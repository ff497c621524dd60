//! Snapshot events and the snapshotter's name, through a real corrald and real overlayfs:
//! `/snapshot/prepare|commit|remove` for a fresh image's layers, a container's writable
//! snapshot and GC's removals, in the journal and through `corralctl events`; and
//! `--snapshotter`: overlayfs accepted, any other name refused before anything is made.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::data_dir::{self, active_snapshots, mounts_under, snapshot_records};
use common::images::*;
use common::{code, stderr, unique_id, Daemon};
use corral::{EventFilter, Topic};

const IMAGE: &str = "demo.local/snapevents:1";

/// busybox, then a layer with a file: two chain ids, the second on the first.
fn import_image(d: &Daemon, dir: &TestDir) {
    let spec = ImageSpec::new()
        .layer(Layer::new().busybox(), Compression::Gzip)
        .layer(
            Layer::new().file("etc/motd", b"from-the-top-layer\n", 0o644),
            Compression::Gzip,
        )
        .cmd(&["/bin/cat", "/etc/motd"]);
    data_dir::import_image(d, dir, IMAGE, spec);
}

/// The image's chain ids, base first, from its config's `rootfs.diff_ids`.
fn chain_ids(d: &Daemon) -> Vec<String> {
    let detail = d.client().inspect_image("default", IMAGE, None).unwrap();
    let config: serde_json::Value = serde_json::from_str(&detail.config).unwrap();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    corral::snapshots::unpack::chain_ids(&diff_ids)
}

/// One snapshot event: topic, namespace, key, parent, name.
type SnapEvent = (Topic, String, String, Option<String>, Option<String>);

/// The snapshot events in the journal (every namespace), in order.
fn journaled(d: &Daemon) -> Vec<SnapEvent> {
    d.replay(EventFilter::default())
        .into_iter()
        .filter_map(|e| {
            let s = e.snapshot?;
            Some((e.topic, e.namespace, s.key, s.parent, s.name))
        })
        .collect()
}

fn ev(topic: Topic, key: &str, parent: Option<&str>, name: Option<&str>) -> SnapEvent {
    (
        topic,
        "default".to_string(),
        key.to_string(),
        parent.map(str::to_string),
        name.map(str::to_string),
    )
}

#[test]
fn a_run_and_gc_publish_snapshot_events() {
    let d = Daemon::start("snapevents-run");
    let dir = TestDir::new("snapevents-run");
    import_image(&d, &dir);
    let chains = chain_ids(&d);
    assert_eq!(chains.len(), 2, "{chains:?}");
    let (base, top) = (chains[0].as_str(), chains[1].as_str());
    assert_eq!(
        journaled(&d),
        Vec::<SnapEvent>::new(),
        "an import unpacks nothing"
    );

    let id = unique_id("snap");
    assert_eq!(
        d.ctl_ok(&["run", "--rm", IMAGE, &id]),
        "from-the-top-layer\n"
    );
    let key = format!("container/default/{id}");
    let (extract_base, extract_top) = (format!("extract-{base}"), format!("extract-{top}"));
    let run = vec![
        ev(Topic::SnapshotPrepare, &extract_base, None, None),
        ev(Topic::SnapshotCommit, &extract_base, None, Some(base)),
        ev(Topic::SnapshotPrepare, &extract_top, Some(base), None),
        ev(Topic::SnapshotCommit, &extract_top, None, Some(top)),
        ev(Topic::SnapshotPrepare, &key, Some(top), None),
        ev(Topic::SnapshotRemove, &key, None, None),
    ];
    assert_eq!(journaled(&d), run);

    // A second run unpacks nothing: only the container's snapshot comes and goes.
    let again = unique_id("snap");
    d.ctl_ok(&["run", "--rm", IMAGE, &again]);
    let key2 = format!("container/default/{again}");
    let mut expected = run.clone();
    expected.push(ev(Topic::SnapshotPrepare, &key2, Some(top), None));
    expected.push(ev(Topic::SnapshotRemove, &key2, None, None));
    assert_eq!(journaled(&d), expected);

    // `corralctl events` filters by topic and shows the snapshot.
    let last = d.info().last_seq.to_string();
    let commits = d.ctl_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &last,
        "--filter",
        "topic=/snapshot/commit",
    ]);
    let lines: Vec<&str> = commits.lines().collect();
    assert_eq!(lines.len(), 2, "{commits}");
    assert!(
        lines[0].contains("/snapshot/commit")
            && lines[0].ends_with(&format!("key={extract_base} name={base}")),
        "{commits}"
    );
    assert!(
        lines[1].ends_with(&format!("key={extract_top} name={top}")),
        "{commits}"
    );
    let json = d.ctl_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &last,
        "--json",
        "--filter",
        "topic=/snapshot/prepare",
    ]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["topic"], "/snapshot/prepare");
    assert_eq!(
        first["snapshot"],
        serde_json::json!({"key": extract_base, "parent": null, "name": null})
    );

    // The image gone, its layers are unrooted: `prune` removes them, children first.
    d.ctl_ok(&["image", "rm", "--no-gc", IMAGE]);
    assert_eq!(snapshot_records(&d).len(), 2);
    d.ctl_ok(&["prune"]);
    expected.push(ev(Topic::SnapshotRemove, top, None, None));
    expected.push(ev(Topic::SnapshotRemove, base, None, None));
    assert_eq!(journaled(&d), expected);
    assert_eq!(snapshot_records(&d), Vec::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}

/// A daemon (with `envs`) that ran the image with a user namespace (`run --rm`): it, the
/// image's dir, the image's top chain id and the container's id.
fn remapped_run(name: &str, envs: &[(&str, &str)]) -> (Daemon, TestDir, String, String) {
    let d = Daemon::start_with_env(name, &[], envs);
    let dir = TestDir::new(name);
    import_image(&d, &dir);
    let top = chain_ids(&d)[1].clone();
    let id = unique_id("snapremap");
    assert_eq!(
        d.ctl_ok(&["run", "--rm", "--uidmap", "0:100000:65536", IMAGE, &id]),
        "from-the-top-layer\n"
    );
    (d, dir, top, id)
}

#[test]
fn an_idmapped_run_publishes_its_snapshot_on_the_top_layer() {
    let (d, _dir, top, id) = remapped_run("snapevents-idmap", &[]);
    // After the layers' four events: no copy, the container's snapshot (its lower dirs
    // idmapped) prepared on the top layer, removed at the end.
    let key = format!("container/default/{id}");
    assert_eq!(
        journaled(&d)[4..],
        [
            ev(Topic::SnapshotPrepare, &key, Some(&top), None),
            ev(Topic::SnapshotRemove, &key, None, None),
        ]
    );
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}

#[test]
fn a_remapped_run_publishes_its_remapped_snapshot() {
    // Without idmapped mounts (forced): a chowned copy.
    let (d, _dir, top, id) = remapped_run("snapevents-remap", &[("CORRAL_NO_IDMAP", "1")]);
    // After the layers' four events: the remapped copy of the top layer, prepared on it
    // and committed, then the container's snapshot on the copy, removed at the end.
    let events = journaled(&d);
    assert_eq!(events.len(), 8, "{events:#?}");
    let (topic, _, tmp, parent, _) = &events[4];
    assert_eq!(
        (*topic, parent.as_deref()),
        (Topic::SnapshotPrepare, Some(top.as_str()))
    );
    let remapped = tmp.strip_suffix("-remap").unwrap().to_string();
    assert!(
        remapped.starts_with(&format!("remap/{top}/")),
        "{events:#?}"
    );
    let key = format!("container/default/{id}");
    assert_eq!(
        events[5..],
        [
            ev(Topic::SnapshotCommit, tmp, None, Some(&remapped)),
            ev(Topic::SnapshotPrepare, &key, Some(&remapped), None),
            ev(Topic::SnapshotRemove, &key, None, None),
        ]
    );
    // GC takes the copy with the layers, the copy first.
    d.ctl_ok(&["image", "rm", IMAGE]);
    let removed: Vec<String> = journaled(&d)[8..]
        .iter()
        .map(|(topic, _, key, _, _)| {
            assert_eq!(*topic, Topic::SnapshotRemove);
            key.clone()
        })
        .collect();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(removed[0], remapped);
    assert_eq!(snapshot_records(&d), Vec::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}

#[test]
fn an_unknown_snapshotter_is_refused_before_anything_is_made() {
    let d = Daemon::start("snapevents-bad");
    let dir = TestDir::new("snapevents-bad");
    import_image(&d, &dir);
    let id = unique_id("snapbad");
    for args in [
        &["run", "--rm", "--snapshotter", "devmapper", IMAGE, &id][..],
        &["run", "-d", "--snapshotter", "zfs", IMAGE, &id],
        &["create", "--snapshotter", "aufs", IMAGE, &id],
        &["container", "create", "--snapshotter", "btrfs", IMAGE, &id],
    ] {
        let out = d.ctl(args);
        assert_eq!(code(&out), 125, "{args:?}: {}", stderr(&out));
        let name = args[args.iter().position(|a| *a == "--snapshotter").unwrap() + 1];
        let want = format!("unknown snapshotter \"{name}\" (known: overlayfs, native)");
        assert!(
            stderr(&out).contains(&want),
            "{args:?}: {want:?} not in {}",
            stderr(&out)
        );
    }
    // Nothing made: no record, no task, no snapshot (not even the layers), no bundle, no
    // mount, no snapshot event.
    assert_eq!(d.ctl_ok(&["container", "ls", "-q"]), "");
    assert_eq!(d.ctl_ok(&["ls", "-q"]), "");
    assert_eq!(snapshot_records(&d), Vec::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    let bundles = std::fs::read_dir(d.dir.join("data/bundles/default"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(bundles, 0, "bundle dirs left");
    assert_eq!(journaled(&d), Vec::<SnapEvent>::new());

    // `overlayfs`, named, is the default one.
    d.ctl_ok(&[
        "container",
        "create",
        "--snapshotter",
        "overlayfs",
        IMAGE,
        &id,
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["container", "info", &id])).unwrap();
    assert_eq!(info["snapshotter"], "overlayfs");
    assert_eq!(d.ctl_ok(&["task", "start", &id]), "from-the-top-layer\n");
    d.ctl_ok(&["task", "rm", &id]);
    d.ctl_ok(&["container", "rm", &id]);
    assert_eq!(active_snapshots(&d), Vec::<String>::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}
