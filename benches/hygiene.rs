//! The hygiene check: N create/start/wait/delete cycles (default 1000, env HYGIENE_N)
//! through a private corrald, then the daemon's fd count and RSS against its baseline,
//! zombies, and leftovers (state dirs, fifos, runtime state, cgroups).
//!
//! Run as root: `cargo bench --bench hygiene`.
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

use corral::rpc::Client;
use corral::{CreateRequest, Stdio};
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
    let work = std::env::temp_dir().join(format!("corral-hygiene-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let bundle = work.join("bundle");
    corral::bundle::make_busybox(&bundle, &["true".into()]).expect("bundle");
    let state = work.join("state");
    let root = work.join("runc");
    let socket = work.join("corrald.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .args(["--socket", socket.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["--root", root.to_str().unwrap()])
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

    let cycle = |client: &mut Client, i: usize| {
        let id = format!("hyg-{}-{i}", std::process::id());
        client
            .create(CreateRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                start: true,
                stdio: Stdio::default(),
                ..CreateRequest::default()
            })
            .expect("create");
        let exit = client.wait("default", &id, None).expect("wait");
        assert_eq!(exit.code, 0, "cycle {i}");
        client.delete("default", &id, false).expect("delete");
        id
    };
    // Warm up so that lazily grown structures (thread pools, allocator arenas) settle.
    for i in 0..20 {
        cycle(&mut client, i);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fds0, rss0, zombies0) = (fds(pid), rss_kib(pid), zombies(pid).len());
    let start = Instant::now();
    let mut last_id = String::new();
    let mut curve = Vec::new();
    for i in 0..n {
        last_id = cycle(&mut client, 1000 + i);
        if (i + 1) % (n / 10).max(1) == 0 {
            curve.push(format!("{}: {} KiB", i + 1, rss_kib(pid)));
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
    println!("## corral hygiene: {n} create/start/wait/delete cycles\n");
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
    println!("\nDaemon RSS along the way: {}", curve.join(", "));
    println!(
        "\n{n} cycles in {:.1} s ({:.1} ms per cycle); last id {last_id}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
    let ok = fds1 <= fds0 + 2
        && rss1 <= rss0 + 2048
        && z.is_empty()
        && info.pending_children == 0
        && state_left == 0
        && runc_left == 0
        && cgroups_left.is_empty();
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
