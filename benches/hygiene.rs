//! The hygiene check: N create/start/exec/wait/delete cycles (default 1000, env HYGIENE_N)
//! through a private corrald, then the daemon's fd count and RSS against its baseline,
//! zombies, and leftovers (state dirs, fifos, runtime state, cgroups). Each cycle starts a
//! container running `sleep`, runs `true` in it as an exec and waits for that, kills the
//! container, waits for its 137 and deletes it. The fds and RSS are also sampled every
//! tenth of the run, so a slow leak shows as a slope between the first tenth and the end.
//!
//! With the argument `image` (`scripts/bench.sh hygiene image`), each container is made
//! from a busybox image instead of a bundle (a writable overlay snapshot prepared, mounted,
//! unmounted and removed each cycle), and the check also counts mounts, snapshots and
//! bundle dirs left in the data dir.
//!
//! Run as root: `cargo bench --bench hygiene [-- image]`.
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

#[path = "common/mod.rs"]
mod common;
use common::*;

// The test image builder, shared with the tests (it reaches `super::output_within`).
#[allow(dead_code)]
#[path = "../tests/common/images.rs"]
mod images;

use corral::rpc::Client;
use corral::{
    CreateRequest, ExecProcess, ExecRequest, ImageRun, ImportRequest, KillRequest, Stdio,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Zombie processes whose parent is `daemon` or one of its shims: "pid (comm)".
fn zombies(daemon: u32) -> Vec<String> {
    let stat_of = |pid: &str| -> Option<(String, String, u32)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let close = stat.rfind(')')?;
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next()?.to_string();
        let ppid = rest.next()?.parse().ok()?;
        Some((stat[..close + 1].to_string(), state, ppid))
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((head, state, ppid)) = stat_of(&name) else {
            continue;
        };
        if state != "Z" {
            continue;
        }
        let parent_is_ours = ppid == daemon
            || stat_of(&ppid.to_string()).is_some_and(|(h, _, _)| h.contains("(corral-shim)"));
        if parent_is_ours {
            out.push(head);
        }
    }
    out
}

/// Mount points under `dir`.
fn mounts_under(dir: &Path) -> usize {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .count()
}

/// How many snapshots the data dir's snapshotter records.
fn snapshots_in(data: &Path) -> usize {
    std::fs::read(data.join("snapshots/metadata.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("snapshots")?.as_object().map(|m| m.len()))
        .unwrap_or(0)
}

/// The busybox image, imported into the daemon as `hygiene.local/busybox:1`.
fn import_busybox(client: &mut Client, work: &Path) -> String {
    let name = "hygiene.local/busybox:1";
    let layout = work.join("layout");
    images::write_layout(&layout, &[(name, images::ImageSpec::busybox())]);
    let tar = work.join("busybox.tar");
    images::tar_dir(&layout, &tar);
    client
        .import_images(ImportRequest {
            file: tar,
            ..Default::default()
        })
        .expect("import the busybox image");
    name.to_string()
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("hygiene: run as root (real runc, real cgroups)");
        std::process::exit(1);
    }
    let n: usize = std::env::var("HYGIENE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let from_image = std::env::args().skip(1).any(|a| a == "image");
    let work = std::env::temp_dir().join(format!("corral-hygiene-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let bundle = work.join("bundle");
    corral::bundle::make_busybox(&bundle, &["sleep".into(), "600".into()]).expect("bundle");
    let state = work.join("state");
    let root = work.join("runc");
    let data = work.join("data");
    let socket = work.join("corrald.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .args(["--socket", socket.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["--root", root.to_str().unwrap()])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--log-level", "warn"])
        .spawn()
        .expect("start corrald");
    let daemon = Daemon { child, socket };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(&daemon.socket).is_err() {
        assert!(Instant::now() < deadline, "corrald did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.child.id();
    let mut client = Client::connect(&daemon.socket).expect("connect");
    let image = from_image.then(|| import_busybox(&mut client, &work));

    let cycle = |client: &mut Client, i: usize| {
        let id = format!("hyg-{}-{i}", std::process::id());
        client
            .create(CreateRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                start: true,
                stdio: Stdio::default(),
                image: image.as_ref().map(|name| {
                    Box::new(ImageRun {
                        image: name.clone(),
                        args: Some(vec!["sleep".into(), "600".into()]),
                        ..Default::default()
                    })
                }),
                ..CreateRequest::default()
            })
            .expect("create");
        client
            .exec(ExecRequest {
                namespace: String::new(),
                id: id.clone(),
                exec_id: "e".into(),
                process: ExecProcess::Args(vec!["true".into()]),
                stdio: Stdio::default(),
            })
            .expect("exec");
        let exec_exit = client.wait("default", &id, Some("e")).expect("wait exec");
        assert_eq!(exec_exit.code, 0, "cycle {i}: exec");
        client
            .kill(KillRequest {
                namespace: String::new(),
                id: id.clone(),
                exec_id: None,
                signal: 9,
                all: false,
            })
            .expect("kill");
        let exit = client.wait("default", &id, None).expect("wait");
        assert_eq!(exit.code, 137, "cycle {i}");
        client.delete("default", &id, false).expect("delete");
        id
    };
    // Warm up so that lazily grown structures (thread pools, allocator arenas) settle.
    for i in 0..20 {
        cycle(&mut client, i);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fds0, rss0, zombies0) = (fds(pid), rss_kib(pid), zombies(pid).len());
    let snapshots0 = snapshots_in(&data);
    let start = Instant::now();
    let mut last_id = String::new();
    // (cycle, fds, RSS KiB) every tenth of the run.
    let mut curve: Vec<(usize, usize, u64)> = Vec::new();
    for i in 0..n {
        last_id = cycle(&mut client, 1000 + i);
        if (i + 1) % (n / 10).max(1) == 0 {
            curve.push((i + 1, fds(pid), rss_kib(pid)));
        }
    }
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (fds1, rss1, z) = (fds(pid), rss_kib(pid), zombies(pid));
    let info = client.info().expect("info");
    let state_left = count_files(&state.join("default"));
    let runc_left = count_files(&root.join("default"));
    let cgroups_left: Vec<String> = corral::cgroups::hierarchies()
        .iter()
        .flat_map(|h| std::fs::read_dir(h).into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("hyg-{}-", std::process::id())))
        .collect();
    let mounts_left = mounts_under(&data);
    let snapshots1 = snapshots_in(&data);
    let bundles_left = count_files(&data.join("bundles/default"));
    let from = if from_image {
        "from a busybox image"
    } else {
        "from a bundle"
    };
    println!("## corral hygiene: {n} create/start/exec/wait/delete cycles, {from}\n");
    println!("| what | before | after |");
    println!("|---|---|---|");
    println!("| daemon open fds | {fds0} | {fds1} |");
    println!("| daemon RSS (KiB) | {rss0} | {rss1} |");
    println!(
        "| zombies under corrald and its shims | {zombies0} | {} |",
        z.len()
    );
    println!(
        "| children awaiting reaping | - | {} |",
        info.pending_children
    );
    println!("| files left in the state dir | 0 | {state_left} |");
    println!("| entries left in the runtime root | 0 | {runc_left} |");
    println!("| cgroups left | 0 | {} |", cgroups_left.len());
    if from_image {
        println!("| mounts under the data dir | 0 | {mounts_left} |");
        println!("| snapshots (the image's layer) | {snapshots0} | {snapshots1} |");
        println!("| entries left under the data dir's bundles/default | 0 | {bundles_left} |");
    }
    let along: Vec<String> = curve
        .iter()
        .map(|(c, f, r)| format!("{c}: {f} fds, {r} KiB"))
        .collect();
    println!("\nDaemon along the way: {}", along.join("; "));
    // Flat: from the first tenth to the end, the fds do not move and the RSS grows by at
    // most 1 MiB (the allocator's pools move by a few hundred KiB from sample to sample).
    let (first, last) = (curve.first().copied(), curve.last().copied());
    let flat = match (first, last) {
        (Some((c0, f0, r0)), Some((c1, f1, r1))) => {
            println!(
                "From cycle {c0} to cycle {c1}: fds {f0} -> {f1}, RSS {r0} -> {r1} KiB ({:+} KiB)",
                r1 as i64 - r0 as i64
            );
            f1 <= f0 && r1 <= r0 + 1024
        }
        _ => true,
    };
    println!(
        "\n{n} cycles in {:.1} s ({:.1} ms per cycle); last id {last_id}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
    let ok = flat
        && fds1 <= fds0 + 2
        && rss1 <= rss0 + 2048
        && z.is_empty()
        && info.pending_children == 0
        && state_left == 0
        && runc_left == 0
        && cgroups_left.is_empty()
        && mounts_left == 0
        && snapshots1 == snapshots0
        && bundles_left == 0;
    drop(client);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&work);
    if !z.is_empty() {
        println!("zombies: {z:?}");
    }
    println!("\nverdict: {}", if ok { "clean" } else { "LEAK" });
    if !ok {
        std::process::exit(1);
    }
}
