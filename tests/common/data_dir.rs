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

/// The snapshots that are not committed (active ones and views), sorted by name.
pub fn active_snapshots(d: &Daemon) -> Vec<String> {
    let meta = d.dir.join("data/snapshots/metadata.json");
    let text = std::fs::read_to_string(meta).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(map) = v.get("snapshots").and_then(|s| s.as_object()) {
        for (name, s) in map {
            if s.get("kind").and_then(|k| k.as_str()) != Some("committed") {
                out.push(name.clone());
            }
        }
    }
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
    let layout = dir.join("layout");
    // A test may import several images through one dir: each layout is written afresh.
    let _ = std::fs::remove_dir_all(&layout);
    super::images::write_layout(&layout, &[(name, spec)]);
    let tar = dir.join("image.tar");
    super::images::tar_dir(&layout, &tar);
    d.client()
        .import_images(corral::ImportRequest {
            file: tar,
            ..Default::default()
        })
        .expect("import the image");
}
