//! What a test daemon's data dir holds, read from outside: the mounts under it and the
//! snapshots that are not committed layers (containers' writable ones).

use super::Daemon;

/// Mounts under the daemon's data dir.
pub fn mounts_under(d: &Daemon) -> Vec<String> {
    let data = d.dir.join("data");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(data.to_str().unwrap_or_default()))
        .collect()
}

/// The daemon's snapshot records, from its `metadata.json`: (name, kind, directory number).
pub fn snapshot_records(d: &Daemon) -> Vec<(String, String, u64)> {
    let meta = d.dir.join("data/snapshots/metadata.json");
    let text = std::fs::read_to_string(meta).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let Some(map) = v.get("snapshots").and_then(|s| s.as_object()) else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, s)| {
            let kind = s["kind"].as_str().unwrap_or_default().to_string();
            (name.clone(), kind, s["id"].as_u64().unwrap_or_default())
        })
        .collect()
}

/// The snapshots that are not committed (active ones and views), sorted by name.
pub fn active_snapshots(d: &Daemon) -> Vec<String> {
    let mut out: Vec<String> = snapshot_records(d)
        .into_iter()
        .filter(|(_, kind, _)| kind != "committed")
        .map(|(name, _, _)| name)
        .collect();
    out.sort();
    out
}

/// Writes `spec` as an OCI image layout tar in `dir` and imports it into the daemon as
/// `name`.
pub fn import_image(
    d: &Daemon,
    dir: &super::images::TestDir,
    name: &str,
    spec: super::images::ImageSpec,
) {
    import_images(d, dir, &[(name, spec)]);
}

/// Writes `images` (name, spec) as one OCI image layout tar, `dir/image.tar` (kept for a
/// second import), and imports them.
pub fn import_images(
    d: &Daemon,
    dir: &super::images::TestDir,
    images: &[(&str, super::images::ImageSpec)],
) {
    let layout = dir.join("layout");
    // A test may import several times through one dir: each layout is written afresh.
    let _ = std::fs::remove_dir_all(&layout);
    super::images::write_layout(&layout, images);
    let tar = dir.join("image.tar");
    super::images::tar_dir(&layout, &tar);
    d.client()
        .import_images(corral::ImportRequest {
            file: tar.clone(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("import {}: {e}", tar.display()));
}
