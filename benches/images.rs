//! `cargo bench --bench images` (as root): corral's image pull and import against
//! containerd (`ctr`) and skopeo, side by side, in one run, against one private loopback
//! registry; a markdown report on stdout, progress on stderr.
//!
//! 1. `cold`: cold pull of a 3-layer image (gzip layers of incompressible data, 30 + 15 +
//!    5 MB by default), `BENCH_IMAGE_N` rounds, interleaved: corral (`Client::pull`),
//!    `ctr image pull` (fetch + unpack into an overlayfs snapshot), `ctr content fetch`
//!    (fetch only, like corral's pull), `skopeo copy docker://… oci:DIR`.
//! 2. `warm`: the same pull again with the image present (corral, `ctr image pull`,
//!    `ctr content fetch`), and the cost of starting ctr at all.
//! 3. `import`: an OCI layout tar of the same image: `Client::import_images` against
//!    `ctr image import --no-unpack` (and with its unpack).
//! 4. `big`: the daemon's idle RSS and its peak (VmHWM) during a pull of one uncompressed
//!    `BENCH_BIG_MB` layer, and, while it runs, `kill -9` → /tasks/exit latency and
//!    `Client::list` latency against the same with no pull running.
//! 5. `run`: `corralctl run --rm IMAGE ID -- /bin/true` against `ctr run --rm` of the same
//!    image and `runc run` of the same rootfs as a bundle (`BENCH_IMAGE_WARM_N` rounds);
//!    then the unpack of busybox plus the 3 layers, corral against containerd
//!    (`BENCH_IMAGE_N` rounds; benches/images/run.rs).
//!
//! Everything is private: a docker-registry on 127.0.0.1 (tests/common/registry.rs), a
//! corrald on its own socket, state dir, runtime root and data dir, a containerd on its own
//! root, state and socket (no CRI). All of it goes at the end, also on failure or Ctrl-C:
//! processes, overlay mounts under containerd's root, temp dirs.
//!
//! Environment: `BENCH_IMAGE_N` (cold rounds, 5), `BENCH_IMAGE_WARM_N` (warm rounds, 20),
//! `BENCH_IMAGE_LAYERS_MB` (the layers of the 3-layer image, `30,15,5`), `BENCH_BIG_MB`
//! (500), `BENCH_KILLS` (containers killed in each half of `big`, 60), `BENCH_TMP` (the
//! data: corral's data dir, containerd's root, the layouts; default /tmp, a disk, as
//! /var/lib is), `BENCH_STATE_TMP` (sockets, state dirs, runtime root; default /dev/shm, a
//! tmpfs, as /run is), `BENCH_RUNC` (runc from PATH).
//! Arguments pick sections: `cold warm import big run` (default all).
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

#[path = "common/mod.rs"]
mod common;
use common::*;

// The test image builder and the private registry, shared with the tests. They reach
// `super::output_within` and `super::free_port` of tests/common/mod.rs: both are below.
#[allow(dead_code)]
#[path = "../tests/common/images.rs"]
mod images;
#[allow(dead_code)]
#[path = "../tests/common/registry.rs"]
mod registry;

// Section 5: a container from an image, run to completion, and unpack.
#[path = "images/run.rs"]
mod image_run;

use corral::rpc::{Client, Subscription};
use corral::{
    BlobState, CreateRequest, Credentials, ImportRequest, PullRequest, RemoteOptions, Topic,
    DEFAULT_NAMESPACE,
};
use images::{Compression, ImageSpec};
use registry::Registry;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CORRALD: &str = env!("CARGO_BIN_EXE_corrald");
const SHIM: &str = env!("CARGO_BIN_EXE_corral-shim");
const CORRALCTL: &str = env!("CARGO_BIN_EXE_corralctl");
const CONTAINERD: &str = "containerd";
const CTR: &str = "ctr";

/// The images' names in the registry.
const THREE: &str = "bench/three:1";
const BIG: &str = "bench/big:1";
/// The 3-layer image's name in the layout tar (`ctr import --base-name`, corral's base name).
const IMPORT_BASE: &str = "bench.local/three";

/// Runs `f`, the shared test helpers panicking on failure, as an Err.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> R<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{what}: {msg}")
    })
}

// ---------------------------------------------------------------------------------------
// Settings and samples

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Cold,
    Warm,
    Import,
    Big,
    Run,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Cold,
        Section::Warm,
        Section::Import,
        Section::Big,
        Section::Run,
    ];
    fn name(self) -> &'static str {
        match self {
            Section::Cold => "cold",
            Section::Warm => "warm",
            Section::Import => "import",
            Section::Big => "big",
            Section::Run => "run",
        }
    }
}

struct Settings {
    n: usize,
    warm_n: usize,
    layers_mb: Vec<u64>,
    big_mb: u64,
    kills: usize,
    runc: PathBuf,
    tmp: PathBuf,
    state_tmp: PathBuf,
    sections: Vec<Section>,
}

impl Settings {
    fn from_env() -> R<Settings> {
        let runc_name = std::env::var("BENCH_RUNC").unwrap_or_else(|_| "runc".into());
        let runc = corral::runtime::resolve_binary(Path::new(&runc_name))
            .ok_or_else(|| format!("runc not found ({runc_name:?}); set BENCH_RUNC"))?;
        let mut sections = Vec::new();
        for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
            let s = Section::ALL
                .into_iter()
                .find(|s| s.name() == arg)
                .ok_or_else(|| {
                    let known: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown section {arg:?}; known: {}", known.join(" "))
                })?;
            sections.push(s);
        }
        if sections.is_empty() {
            sections = Section::ALL.to_vec();
        }
        let layers = std::env::var("BENCH_IMAGE_LAYERS_MB").unwrap_or_else(|_| "30,15,5".into());
        let layers_mb = layers
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| {
                format!("BENCH_IMAGE_LAYERS_MB={layers:?}: MB numbers, comma-separated")
            })?;
        if layers_mb.is_empty() || layers_mb.contains(&0) {
            return Err(format!(
                "BENCH_IMAGE_LAYERS_MB={layers:?}: no layer of 0 MB"
            ));
        }
        Ok(Settings {
            n: env_usize("BENCH_IMAGE_N", 5)?.max(1),
            warm_n: env_usize("BENCH_IMAGE_WARM_N", 20)?.max(1),
            layers_mb,
            big_mb: env_usize("BENCH_BIG_MB", 500)?.max(1) as u64,
            kills: env_usize("BENCH_KILLS", 60)?.max(1),
            runc,
            tmp: std::env::var_os("BENCH_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/tmp".into()),
            state_tmp: std::env::var_os("BENCH_STATE_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/dev/shm".into()),
            sections,
        })
    }
}

/// MB/s (10^6 bytes) of `bytes` in `ms` milliseconds.
fn rate(bytes: u64, ms: f64) -> String {
    if ms.is_nan() || ms <= 0.0 {
        "-".into()
    } else {
        format!("{:.0} MB/s", bytes as f64 / 1e3 / ms)
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// Runs a command with its output captured; fails unless it succeeds.
fn run(cmd: &mut Command) -> R<(Duration, Output)> {
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", cmd_line(cmd)))?;
    let took = t.elapsed();
    if out.status.success() {
        return Ok((took, out));
    }
    if STOP.load(Ordering::SeqCst) {
        return Err(format!("interrupted during {}", cmd_line(cmd)));
    }
    // The end of what it said (ctr's progress bars are long).
    let tail = |b: &[u8]| {
        let text = String::from_utf8_lossy(b).trim().to_string();
        let start = text.len().saturating_sub(600);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    };
    Err(format!(
        "{} failed ({}): {} {}",
        cmd_line(cmd),
        out.status,
        tail(&out.stderr),
        tail(&out.stdout)
    ))
}

fn first_line(bin: &str, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| format!("({e})"))
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`. Returns whether it needed the KILL.
fn stop_child(child: &mut Child, grace: Duration) -> bool {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return false,
            Ok(None) if t.elapsed() > grace => {
                let _ = child.kill();
                let _ = child.wait();
                return true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes spaces and such as \040: our paths have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Processes whose command line mentions `needle` (our temp dir), but not us.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != me)
        .filter_map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(needle).then(|| (p, line.trim().to_string()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The report

// ---------------------------------------------------------------------------------------
// The bench's world

/// One image as pushed: its name in the registry and its blobs' bytes.
struct Pushed {
    reference: String,
    /// Manifest + config + layers, as stored.
    bytes: u64,
    layers: Vec<u64>,
}

struct Bench {
    s: Settings,
    /// Data: corral's data dir, containerd's root, the layouts (on a disk by default).
    dir: PathBuf,
    /// State: sockets, corral's state dir and runtime root, containerd's state (tmpfs by
    /// default, as /run is).
    run_dir: PathBuf,
    // corrald
    socket: PathBuf,
    state_dir: PathBuf,
    corral_root: PathBuf,
    data_dir: PathBuf,
    daemon_log: PathBuf,
    daemon: Option<Child>,
    // containerd
    cd_root: PathBuf,
    cd_state: PathBuf,
    cd_socket: PathBuf,
    cd_config: PathBuf,
    cd_log: PathBuf,
    containerd: Option<Child>,
    // the registry and what is in it
    registry: Option<Registry>,
    three: Option<Pushed>,
    big: Option<Pushed>,
    import_tar: PathBuf,
    bundle: PathBuf,
    seq: usize,
    cleaned: bool,
}

impl Bench {
    fn new(s: Settings) -> R<Bench> {
        let me = std::process::id();
        let dir = s.tmp.join(format!("corral-images-bench-{me}"));
        let run_dir = s.state_tmp.join(format!("corral-images-bench-{me}"));
        for d in [&dir, &run_dir] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        Ok(Bench {
            socket: run_dir.join("corrald.sock"),
            state_dir: run_dir.join("corral-state"),
            corral_root: run_dir.join("corral-root"),
            data_dir: dir.join("corral-data"),
            daemon_log: dir.join("corrald.log"),
            daemon: None,
            cd_root: dir.join("containerd-root"),
            cd_state: run_dir.join("containerd-state"),
            cd_socket: run_dir.join("containerd.sock"),
            cd_config: dir.join("containerd.toml"),
            cd_log: dir.join("containerd.log"),
            containerd: None,
            registry: None,
            three: None,
            big: None,
            import_tar: dir.join("three-oci.tar"),
            bundle: dir.join("bundle-sleep"),
            seq: 0,
            cleaned: false,
            dir,
            run_dir,
            s,
        })
    }

    fn check_stop(&self) -> R<()> {
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        for (what, child) in [("corrald", &self.daemon), ("containerd", &self.containerd)] {
            if let Some(c) = child {
                if matches!(proc_state(c.id() as i32), None | Some('Z')) {
                    return Err(format!("{what} exited (its log is in the temp dir)"));
                }
            }
        }
        Ok(())
    }

    fn addr(&self) -> &str {
        self.registry.as_ref().map_or("", |r| r.addr.as_str())
    }

    fn three(&self) -> &Pushed {
        self.three
            .as_ref()
            .expect("the 3-layer image is pushed first")
    }

    fn client(&self) -> R<Client> {
        Client::connect(&self.socket).map_err(|e| e.to_string())
    }

    fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    fn start_daemon(&mut self) -> R<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.daemon_log)
            .map_err(|e| e.to_string())?;
        let child = Command::new(CORRALD)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--root")
            .arg(&self.corral_root)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--runtime")
            .arg(&self.s.runc)
            .arg("--shim")
            .arg(SHIM)
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Out of the terminal's process group: Ctrl-C is ours to handle.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start {CORRALD}: {e}"))?;
        self.daemon = Some(child);
        let t = Instant::now();
        while Client::connect(&self.socket).is_err() {
            self.check_stop()?;
            if t.elapsed() > Duration::from_secs(10) {
                return Err("corrald did not answer on its socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn stop_daemon(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut child) = self.daemon.take() {
            if stop_child(&mut child, Duration::from_secs(5)) {
                problems.push("corrald ignored SIGTERM for 5 s; killed".into());
            }
        }
        problems
    }

    fn start_containerd(&mut self) -> R<()> {
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{dir}/containerd-opt\"\n",
            root = self.cd_root.display(),
            state = self.cd_state.display(),
            sock = self.cd_socket.display(),
            dir = self.dir.display(),
        );
        std::fs::write(&self.cd_config, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(&self.cd_log).map_err(|e| e.to_string())?;
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&self.cd_config)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start {CONTAINERD}: {e}"))?;
        self.containerd = Some(child);
        let t = Instant::now();
        while run(&mut self.ctr(&["version"])).is_err() {
            self.check_stop()?;
            if t.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "containerd did not answer within 20 s: {}",
                    std::fs::read_to_string(&self.cd_log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CTR);
        c.arg("--address")
            .arg(&self.cd_socket)
            .args(["--namespace", "default"])
            .args(args);
        c
    }

    /// `ctr image rm --sync` of every image, then checks that the content store and the
    /// snapshots are empty (removing what GC left): the next containerd round is cold.
    fn ctr_make_cold(&self) -> R<()> {
        let (_, out) = run(&mut self.ctr(&["image", "ls", "-q"]))?;
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if !names.is_empty() {
            let mut args = vec!["image", "rm", "--sync"];
            args.extend(names.iter().map(String::as_str));
            run(&mut self.ctr(&args))?;
        }
        let (_, out) = run(&mut self.ctr(&["content", "ls", "-q"]))?;
        let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !left.is_empty() {
            progress(format!(
                "containerd kept {} blobs after image rm --sync; removing them",
                left.len()
            ));
            let mut args = vec!["content", "rm"];
            args.extend(left.iter().map(String::as_str));
            run(&mut self.ctr(&args))?;
        }
        let (_, out) = run(&mut self.ctr(&["snapshot", "ls"]))?;
        let snaps: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        for s in snaps.iter().rev() {
            progress(format!("containerd kept snapshot {s}; removing it"));
            run(&mut self.ctr(&["snapshot", "rm", s]))?;
        }
        Ok(())
    }

    /// Removes every corral image and collects garbage; checks the store is empty.
    fn corral_make_cold(&self, client: &mut Client) -> R<()> {
        let names: Vec<String> = client
            .images(DEFAULT_NAMESPACE)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|i| i.name)
            .collect();
        if !names.is_empty() {
            client
                .remove_images(DEFAULT_NAMESPACE, names, false)
                .map_err(|e| format!("image rm: {e}"))?;
        }
        client.prune().map_err(|e| format!("prune: {e}"))?;
        let left = client.content().map_err(|e| e.to_string())?;
        if !left.is_empty() {
            return Err(format!(
                "corral's content store keeps {} blobs after image rm + prune: {:?}",
                left.len(),
                left.iter().map(|c| &c.digest).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    fn pull_req(&self, reference: &str) -> PullRequest {
        PullRequest {
            reference: format!("{}/{reference}", self.addr()),
            remote: RemoteOptions {
                plain_http: true,
                credentials: Credentials::Anonymous,
            },
            ..Default::default()
        }
    }

    /// Removes everything the bench made. Returns what it could not do.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        if self.daemon.is_some() {
            if let Ok(mut c) = self.client() {
                if let Ok(list) = c.list(DEFAULT_NAMESPACE, BTreeMap::new()) {
                    for info in list {
                        if let Err(e) = c.delete(DEFAULT_NAMESPACE, &info.id, true) {
                            problems.push(format!("corral delete {}: {e}", info.id));
                        }
                    }
                }
            }
        }
        problems.extend(self.stop_daemon());
        if let Some(mut child) = self.containerd.take() {
            if stop_child(&mut child, Duration::from_secs(10)) {
                problems.push("containerd ignored SIGTERM for 10 s; killed".into());
            }
        }
        // The registry: killed and its temp dir removed on drop.
        self.registry = None;
        std::thread::sleep(Duration::from_millis(50));
        let mut dirs = vec![self.dir.clone()];
        if self.run_dir != self.dir {
            dirs.push(self.run_dir.clone());
        }
        for d in &dirs {
            for (pid, line) in processes_mentioning(&d.display().to_string()) {
                problems.push(format!("killed leftover pid {pid}: {line}"));
                // SAFETY: a process running on our temp dir, found just now.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for m in dirs.iter().flat_map(|d| mounts_under(d)) {
            let c = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2 of a path under our own temp dir.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                problems.push(format!(
                    "umount {}: {}",
                    m.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        for d in &dirs {
            if let Err(e) = std::fs::remove_dir_all(d) {
                problems.push(format!("remove {}: {e}", d.display()));
            }
        }
        problems
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("bench cleanup: {p}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Images

/// Builds an OCI layout of `spec` under `name` in the temp dir and pushes it with skopeo.
fn build_and_push(b: &Bench, name: &str, spec: ImageSpec, keep_tar: Option<&Path>) -> R<Pushed> {
    let layout = b
        .dir
        .join(format!("layout-{}", name.replace(['/', ':'], "-")));
    let addr = b.addr().to_string();
    let tag = name
        .rsplit_once(':')
        .map_or("latest", |(_, t)| t)
        .to_string();
    let written = guarded(&format!("build {name}"), || {
        images::write_layout(&layout, &[(tag.as_str(), spec)])
    })?;
    let img = &written[0];
    guarded(&format!("push {name}"), || {
        images::skopeo_push(&layout, &tag, &addr, name, None)
    })??;
    if let Some(tar) = keep_tar {
        guarded("tar the layout", || images::tar_dir(&layout, tar))?;
    }
    let _ = std::fs::remove_dir_all(&layout);
    let layers: Vec<u64> = img.layers.iter().map(|l| l.blob.size).collect();
    Ok(Pushed {
        reference: name.to_string(),
        bytes: img.manifest.size + img.config.size + layers.iter().sum::<u64>(),
        layers,
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------
// 1. Cold pull

#[derive(Default)]
struct Cold {
    corral: Samples,
    ctr_pull: Samples,
    ctr_fetch: Samples,
    skopeo: Samples,
    progress_msgs: Vec<usize>,
}

fn corral_pull(b: &Bench, client: &mut Client, reference: &str) -> R<(Duration, usize)> {
    let mut msgs = 0;
    let t = Instant::now();
    client
        .pull(b.pull_req(reference), |_| msgs += 1)
        .map_err(|e| format!("corral pull {reference}: {e}"))?;
    Ok((t.elapsed(), msgs))
}

fn cold_round(b: &Bench, client: &mut Client, c: &mut Cold, keep: bool) -> R<()> {
    let reference = format!("{}/{}", b.addr(), b.three().reference);
    // corral
    b.check_stop()?;
    let (took, msgs) = corral_pull(b, client, &b.three().reference)?;
    b.corral_make_cold(client)?;
    // ctr image pull (fetch and unpack)
    b.check_stop()?;
    let (pull, _) = run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
    b.ctr_make_cold()?;
    // ctr content fetch (fetch only)
    b.check_stop()?;
    let (fetch, _) = run(&mut b.ctr(&["content", "fetch", "--plain-http", &reference]))?;
    b.ctr_make_cold()?;
    // skopeo copy to a fresh OCI layout
    b.check_stop()?;
    let dest = b.dir.join("skopeo-dest");
    let _ = std::fs::remove_dir_all(&dest);
    let addr = b.addr().to_string();
    let image = b.three().reference.clone();
    let t = Instant::now();
    guarded("skopeo copy", || {
        images::skopeo_pull(&addr, &image, None, &dest, "1")
    })??;
    let skopeo = t.elapsed();
    let _ = std::fs::remove_dir_all(&dest);
    if keep {
        c.corral.push(took);
        c.ctr_pull.push(pull);
        c.ctr_fetch.push(fetch);
        c.skopeo.push(skopeo);
        c.progress_msgs.push(msgs);
    }
    Ok(())
}

fn bench_cold(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.n;
    progress(format!(
        "1. cold pull: 1 warm-up + {n} rounds of corral, ctr image pull, ctr content fetch, skopeo"
    ));
    let mut client = b.client()?;
    b.corral_make_cold(&mut client)?;
    b.ctr_make_cold()?;
    let mut c = Cold::default();
    for round in 0..=n {
        cold_round(b, &mut client, &mut c, round > 0)?;
    }
    let bytes = b.three().bytes;
    rep.line("## 1. Cold pull");
    rep.line("");
    rep.line(format!(
        "The image: {} layers ({}; gzip of incompressible data), {} in all with manifest and \
         config, pushed with skopeo to the private registry on {}. Each round, interleaved: \
         corral through `Client::pull` (the in-process Client, no CLI process), `ctr image pull --plain-http` (fetches, then unpacks into an overlayfs \
         snapshot), `ctr content fetch --plain-http` (fetches only, as corral's pull does), \
         `skopeo copy docker://… oci:DIR` into a fresh directory. Between rounds, untimed: \
         corral `remove_images` + `prune` (its content store checked empty), containerd \
         `ctr image rm --sync` (content and snapshots checked empty). ctr and skopeo \
         include their process start (see the ctr floor in section 2). One untimed warm-up \
         round first.",
        b.three().layers.len(),
        b.three()
            .layers
            .iter()
            .map(|l| mb(*l))
            .collect::<Vec<_>>()
            .join(" + "),
        mb(bytes),
        b.addr()
    ));
    rep.line("");
    rep.line("| client | median | min | max | throughput (median) | corral / this (median) | corral / this (min) |");
    rep.line("|---|---|---|---|---|---|---|");
    let rows: [(&str, &Samples); 4] = [
        ("**corral** `Client::pull`", &c.corral),
        ("`ctr content fetch`", &c.ctr_fetch),
        ("`ctr image pull` (with unpack)", &c.ctr_pull),
        ("`skopeo copy` to oci:", &c.skopeo),
    ];
    for (what, s) in rows {
        rep.line(format!(
            "| {what} | {} | {} | {} | {} | {} | {} |",
            ms(s.median()),
            ms(s.min()),
            ms(s.max()),
            rate(bytes, s.median()),
            ratio(c.corral.median(), s.median()),
            ratio(c.corral.min(), s.min()),
        ));
    }
    rep.line("");
    rep.line(format!(
        "{} rounds; corral's pull sent {} progress messages each (median).",
        c.corral.len(),
        {
            let mut v = c.progress_msgs.clone();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        }
    ));
    rep.line("");
    let r_fetch = c.corral.median() / c.ctr_fetch.median();
    let r_pull = c.corral.median() / c.ctr_pull.median();
    rep.target(
        "cold pull corral / `ctr content fetch` (median) ≤ 0.8×",
        format!(
            "{r_fetch:.2}× ({} vs {})",
            ms(c.corral.median()),
            ms(c.ctr_fetch.median())
        ),
        r_fetch <= 0.8,
    );
    rep.target(
        "cold pull corral / `ctr image pull` (median) ≤ 0.8×",
        format!(
            "{r_pull:.2}× ({} vs {}; ctr also unpacks)",
            ms(c.corral.median()),
            ms(c.ctr_pull.median())
        ),
        r_pull <= 0.8,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Warm re-pull

fn bench_warm(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.warm_n;
    progress(format!("2. warm re-pull: {n} rounds each"));
    let reference = format!("{}/{}", b.addr(), b.three().reference);
    let mut client = b.client()?;
    corral_pull(b, &mut client, &b.three().reference)?;
    run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
    let mut corral = Samples::default();
    let mut pull = Samples::default();
    let mut fetch = Samples::default();
    let mut floor = Samples::default();
    let mut msgs = 0;
    for round in 0..=n {
        b.check_stop()?;
        let (c, m) = corral_pull(b, &mut client, &b.three().reference)?;
        let (p, _) = run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
        let (f, _) = run(&mut b.ctr(&["content", "fetch", "--plain-http", &reference]))?;
        let (v, _) = run(&mut b.ctr(&["version"]))?;
        if round > 0 {
            corral.push(c);
            pull.push(p);
            fetch.push(f);
            floor.push(v);
            msgs = m;
        }
    }
    let content = client.content().map_err(|e| e.to_string())?.len();
    b.corral_make_cold(&mut client)?;
    b.ctr_make_cold()?;
    rep.line("## 2. Warm re-pull (the image is present)");
    rep.line("");
    rep.line(format!(
        "The same image pulled again, {n} rounds after one untimed: corral `Client::pull` \
         (resolves the tag at the registry, finds every blob present; {msgs} progress \
         messages; {content} blobs in the store), `ctr image pull` and `ctr content fetch` \
         (each resolves, walks and checks the content, and the pull checks the snapshots), \
         and `ctr version`, the cost of a ctr process that asks containerd one thing."
    ));
    rep.line("");
    let rows: [(&str, &Samples); 4] = [
        ("**corral** `Client::pull`", &corral),
        ("`ctr content fetch`", &fetch),
        ("`ctr image pull`", &pull),
        ("`ctr version` (floor)", &floor),
    ];
    rep.timings("client", &rows, &corral);
    rep.line("");
    rep.target(
        "warm re-pull, corral (median) ≤ 50 ms",
        format!("{} (p90 {})", ms(corral.median()), ms(corral.pct(90.0))),
        corral.median() <= 50.0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Import

fn bench_import(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.n;
    progress(format!(
        "3. import of an OCI layout tar: 1 warm-up + {n} rounds"
    ));
    let tar = b.import_tar.clone();
    let tar_s = tar.display().to_string();
    let tar_size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let mut client = b.client()?;
    b.corral_make_cold(&mut client)?;
    b.ctr_make_cold()?;
    let mut corral = Samples::default();
    let mut ctr_no_unpack = Samples::default();
    let mut ctr_unpack = Samples::default();
    let mut names = Vec::new();
    for round in 0..=n {
        b.check_stop()?;
        let t = Instant::now();
        let imported = client
            .import_images(ImportRequest {
                file: tar.clone(),
                base_name: Some(IMPORT_BASE.into()),
                ..Default::default()
            })
            .map_err(|e| format!("corral import {tar_s}: {e}"))?;
        let c = t.elapsed();
        names = imported.into_iter().map(|i| i.name).collect();
        b.corral_make_cold(&mut client)?;
        let (nu, _) = run(&mut b.ctr(&[
            "image",
            "import",
            "--no-unpack",
            "--base-name",
            IMPORT_BASE,
            &tar_s,
        ]))?;
        b.ctr_make_cold()?;
        let (u, _) = run(&mut b.ctr(&["image", "import", "--base-name", IMPORT_BASE, &tar_s]))?;
        b.ctr_make_cold()?;
        if round > 0 {
            corral.push(c);
            ctr_no_unpack.push(nu);
            ctr_unpack.push(u);
        }
    }
    rep.line("## 3. Import of an OCI layout tar");
    rep.line("");
    rep.line(format!(
        "The same image as an OCI image layout tar ({} on the temp dir's file system), \
         imported {n} times after one untimed round, interleaved; each import into an empty \
         store (corral `remove_images` + `prune`, ctr `image rm --sync` between). corral: \
         `Client::import_images` with base name `{IMPORT_BASE}` (the daemon reads the file; \
         it recorded {names:?}); ctr: `ctr image import --base-name {IMPORT_BASE}` (ctr reads \
         the file and streams it to containerd), with `--no-unpack` (like corral) and without.",
        mb(tar_size)
    ));
    rep.line("");
    rep.line("| client | median | min | max | throughput (median) | corral / this (median) |");
    rep.line("|---|---|---|---|---|---|");
    let rows: [(&str, &Samples); 3] = [
        ("**corral** `Client::import_images`", &corral),
        ("`ctr image import --no-unpack`", &ctr_no_unpack),
        ("`ctr image import` (with unpack)", &ctr_unpack),
    ];
    for (what, s) in rows {
        rep.line(format!(
            "| {what} | {} | {} | {} | {} | {} |",
            ms(s.median()),
            ms(s.min()),
            ms(s.max()),
            rate(tar_size, s.median()),
            ratio(corral.median(), s.median()),
        ));
    }
    rep.line("");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. A big pull: memory, and exit and list latency while it runs

#[derive(Default)]
struct Probe {
    kill: Samples,
    /// Of `kill`: until the shim's `exited_at` stamp (the kernel's teardown, the shim's
    /// reap), and from it to the event's own timestamp (corrald's part).
    shim_part: Samples,
    daemon_part: Samples,
    list: Samples,
    /// Kills sent whose exit was not seen (a failure).
    lost: usize,
    /// Samples over 10 ms: (what, ms since `origin` when it began, latency ms, detail).
    slow: Vec<(&'static str, f64, f64, String)>,
}

/// A connection for `list` and a subscription for the exits, set up ahead of a probe.
struct Prober {
    client: Client,
    sub: Subscription,
}

fn prober(b: &Bench) -> R<Prober> {
    let sub = subscribe_all(b.client()?, Duration::from_secs(10))?;
    Ok(Prober {
        client: b.client()?,
        sub,
    })
}

/// Lists every 5 ms and kills one container every 30 ms (timing its /tasks/exit), until
/// `done()` or, when `until_killed`, the containers run out.
fn probe(
    b: &Bench,
    pr: &mut Prober,
    victims: &mut Vec<(String, i32)>,
    until_killed: bool,
    origin: Instant,
    done: &dyn Fn() -> bool,
) -> R<Probe> {
    let mut p = Probe::default();
    let Prober { client, sub } = pr;
    let mut last_kill = Instant::now();
    loop {
        b.check_stop()?;
        if done() || (until_killed && victims.is_empty()) {
            break;
        }
        let t = Instant::now();
        client
            .list(DEFAULT_NAMESPACE, BTreeMap::new())
            .map_err(|e| format!("list: {e}"))?;
        p.list.push(t.elapsed());
        if t.elapsed() > Duration::from_millis(10) {
            let at = (t - origin).as_secs_f64() * 1e3;
            p.slow
                .push(("list", at, t.elapsed().as_secs_f64() * 1e3, String::new()));
        }
        if last_kill.elapsed() >= Duration::from_millis(30) {
            if let Some((id, pid)) = victims.pop() {
                last_kill = Instant::now();
                let wall0 = corral::now_ns();
                let t0 = Instant::now();
                // SAFETY: SIGKILL to a container's init pid, which the daemon just listed.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                loop {
                    match sub.next() {
                        Some(Ok(ev)) if ev.topic == Topic::TaskExit && ev.container_id == id => {
                            let took = t0.elapsed();
                            p.kill.push(took);
                            let (mut shim, mut daemon) = (f64::NAN, f64::NAN);
                            if let Some(exit) = ev.exit {
                                shim = exit.exited_at_ns.saturating_sub(wall0) as f64 / 1e6;
                                daemon =
                                    ev.timestamp_ns.saturating_sub(exit.exited_at_ns) as f64 / 1e6;
                                p.shim_part.0.push(shim);
                                p.daemon_part.0.push(daemon);
                            }
                            if took > Duration::from_millis(10) {
                                let at = (t0 - origin).as_secs_f64() * 1e3;
                                let detail = format!("shim {}, corrald {}", ms(shim), ms(daemon));
                                p.slow.push(("exit", at, took.as_secs_f64() * 1e3, detail));
                            }
                            break;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            p.lost += 1;
                            progress(format!("no /tasks/exit of {id}: {e}"));
                            break;
                        }
                        None => return Err("corrald ended the event subscription".into()),
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(p)
}

fn start_containers(b: &mut Bench, n: usize, tag: &str) -> R<Vec<(String, i32)>> {
    let mut client = b.client()?;
    let mut ids = Vec::new();
    for _ in 0..n {
        b.check_stop()?;
        b.seq += 1;
        let id = format!("ib{}-{tag}-{}", std::process::id(), b.seq);
        client
            .create(CreateRequest {
                id: id.clone(),
                bundle: b.bundle.clone(),
                start: true,
                ..Default::default()
            })
            .map_err(|e| format!("create {id}: {e}"))?;
        ids.push(id);
    }
    let pids: BTreeMap<String, u32> = client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.id, c.pid))
        .collect();
    ids.into_iter()
        .map(|id| match pids.get(&id) {
            Some(pid) if *pid > 0 => Ok((id, *pid as i32)),
            _ => Err(format!("{id} is not listed running")),
        })
        .collect()
}

fn delete_all(b: &Bench) -> R<()> {
    let mut client = b.client()?;
    for c in client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?
    {
        client
            .delete(DEFAULT_NAMESPACE, &c.id, true)
            .map_err(|e| format!("delete {}: {e}", c.id))?;
    }
    Ok(())
}

fn bench_big(b: &mut Bench, rep: &mut Report) -> R<()> {
    let big_mb = b.s.big_mb;
    let kills = b.s.kills;
    progress(format!(
        "4. building and pushing an image of one uncompressed {big_mb} MB layer"
    ));
    let spec = ImageSpec::new().layer(images::big_layer(big_mb * 1_000_000), Compression::None);
    let pushed = build_and_push(b, BIG, spec, None)?;
    let big_bytes = pushed.bytes;
    b.big = Some(pushed);
    corral::bundle::make_busybox(&b.bundle, &["sleep".to_string(), "100000".to_string()])
        .map_err(|e| e.to_string())?;

    progress("4. a fresh corrald for the memory figures");
    {
        let mut client = b.client()?;
        b.corral_make_cold(&mut client)?;
    }
    let problems = b.stop_daemon();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    b.start_daemon()?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = b.daemon_pid().ok_or("no corrald")?;
    let idle_rss = proc_kib(pid, "status", "VmRSS").unwrap_or(0);
    let idle_hwm = proc_kib(pid, "status", "VmHWM").unwrap_or(0);

    progress(format!(
        "4. {} containers, then {kills} kill -9s with no pull running",
        2 * kills
    ));
    let mut quiet_victims = start_containers(b, kills, "q")?;
    let mut busy_victims = start_containers(b, kills, "p")?;
    let mut pr = prober(b)?;
    let quiet = probe(
        b,
        &mut pr,
        &mut quiet_victims,
        true,
        Instant::now(),
        &|| false,
    )?;

    // The pull, on a thread of its own with its own connection.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = proc_kib(pid, "status", "VmRSS").unwrap_or(0);
    let hwm_before = proc_kib(pid, "status", "VmHWM").unwrap_or(0);
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let downloading = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (finished, peak) = (finished.clone(), peak_sampled.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if let Some(rss) = proc_kib(pid, "status", "VmRSS") {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    progress(format!("4. pulling {} while probing", mb(big_bytes)));
    let origin = Instant::now();
    let puller = {
        let mut client = b.client()?;
        let req = b.pull_req(BIG);
        let (downloading, finished) = (downloading.clone(), finished.clone());
        std::thread::spawn(move || {
            let t = origin;
            let mut downloading_at = None;
            let mut verifying_at = None;
            let r = client.pull(req, |p| {
                if p.state == BlobState::Downloading && downloading_at.is_none() {
                    downloading_at = Some(t.elapsed());
                    downloading.store(true, Ordering::SeqCst);
                }
                // The big layer's hash check and commit (fsync, rename).
                if p.state == BlobState::Verifying && p.total > 1 << 20 {
                    verifying_at = Some(t.elapsed());
                }
            });
            let took = t.elapsed();
            downloading.store(true, Ordering::SeqCst);
            finished.store(true, Ordering::SeqCst);
            r.map(|_| (took, downloading_at, verifying_at))
                .map_err(|e| format!("corral pull of the big image: {e}"))
        })
    };
    while !downloading.load(Ordering::SeqCst) {
        b.check_stop()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let probe_finished = finished.clone();
    let busy = probe(b, &mut pr, &mut busy_victims, false, origin, &move || {
        probe_finished.load(Ordering::SeqCst)
    });
    let pulled = puller.join().map_err(|_| "the pull thread panicked")?;
    finished.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let busy = busy?;
    let (pull_time, downloading_at, verifying_at) = pulled?;
    let peak_hwm = proc_kib(pid, "status", "VmHWM").unwrap_or(0);
    let peak_sampled = peak_sampled.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = proc_kib(pid, "status", "VmRSS").unwrap_or(0);
    let unused = busy_victims.len();
    delete_all(b)?;

    // The same pull by ctr content fetch and skopeo, once each, for reference.
    progress("4. the same image by ctr content fetch and skopeo, once each");
    let reference = format!("{}/{BIG}", b.addr());
    b.ctr_make_cold()?;
    let (ctr_fetch, _) = run(&mut b.ctr(&["content", "fetch", "--plain-http", &reference]))?;
    b.ctr_make_cold()?;
    let dest = b.dir.join("skopeo-big");
    let addr = b.addr().to_string();
    let t = Instant::now();
    guarded("skopeo copy", || {
        images::skopeo_pull(&addr, BIG, None, &dest, "1")
    })??;
    let skopeo = t.elapsed();
    let _ = std::fs::remove_dir_all(&dest);
    let mut client = b.client()?;
    b.corral_make_cold(&mut client)?;

    rep.line(format!(
        "## 4. A pull of one uncompressed {big_mb} MB layer: memory, exits and `list` meanwhile"
    ));
    rep.line("");
    rep.line(format!(
        "A fresh corrald (after the sections above) with {} busybox `sleep` containers \
         started through the Client API. With no pull running, then while corral pulls the \
         image ({}, one uncompressed layer of incompressible data), the bench calls \
         `Client::list` every 5 ms and, every 30 ms, sends `kill -9` to the next \
         container's pid and waits for its /tasks/exit at a subscriber (the containers \
         killed during the pull are other ones; the probe starts when the first blob is \
         downloading). VmRSS and VmHWM from /proc/PID/status of corrald; VmHWM reset \
         through /proc/PID/clear_refs just before the pull{}; RSS also sampled every 10 ms.",
        2 * kills,
        mb(big_bytes),
        if reset {
            ""
        } else {
            " (**the reset failed**: VmHWM is since the start)"
        }
    ));
    rep.line("");
    rep.line("| what | value |");
    rep.line("|---|---|");
    rep.line(format!(
        "| corrald VmRSS, fresh and idle (VmHWM) | {} ({}) |",
        kib(idle_rss),
        kib(idle_hwm)
    ));
    rep.line(format!(
        "| corrald VmRSS with {kills} running and {kills} stopped containers, before the pull (VmHWM) | {} ({}) |",
        kib(rss_before),
        kib(hwm_before)
    ));
    rep.line(format!(
        "| **corrald peak RSS during the pull** (VmHWM; highest 10 ms sample) | **{}** ({}) |",
        kib(peak_hwm),
        kib(peak_sampled)
    ));
    rep.line(format!(
        "| **… peak minus the RSS before the pull** | **{}** |",
        kib(peak_hwm.saturating_sub(rss_before))
    ));
    rep.line(format!(
        "| corrald VmRSS 0.5 s after the pull | {} |",
        kib(rss_after)
    ));
    rep.line(format!(
        "| corral pull time (with the probes running) | {} ({}; first byte after {}) |",
        ms(pull_time.as_secs_f64() * 1e3),
        rate(big_bytes, pull_time.as_secs_f64() * 1e3),
        downloading_at.map_or("-".into(), |d| ms(d.as_secs_f64() * 1e3))
    ));
    rep.line(format!(
        "| `ctr content fetch`, same image, once, no probes | {} ({}) |",
        ms(ctr_fetch.as_secs_f64() * 1e3),
        rate(big_bytes, ctr_fetch.as_secs_f64() * 1e3)
    ));
    rep.line(format!(
        "| `skopeo copy` to oci:, same image, once, no probes | {} ({}) |",
        ms(skopeo.as_secs_f64() * 1e3),
        rate(big_bytes, skopeo.as_secs_f64() * 1e3)
    ));
    rep.line("");
    rep.line("| latency | no pull: median | p99 | max | n | during the pull: median | p99 | max | n | ratio (median) | ratio (p99) |");
    rep.line("|---|---|---|---|---|---|---|---|---|---|---|");
    for (what, q, d) in [
        ("**`kill -9` → /tasks/exit**", &quiet.kill, &busy.kill),
        (
            "… of which until the shim's `exited_at`",
            &quiet.shim_part,
            &busy.shim_part,
        ),
        (
            "… of which `exited_at` → event published",
            &quiet.daemon_part,
            &busy.daemon_part,
        ),
        ("**`Client::list`**", &quiet.list, &busy.list),
    ] {
        rep.line(format!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(q.median()),
            ms(q.pct(99.0)),
            ms(q.max()),
            q.len(),
            ms(d.median()),
            ms(d.pct(99.0)),
            ms(d.max()),
            d.len(),
            ratio(d.median(), q.median()),
            ratio(d.pct(99.0), q.pct(99.0)),
        ));
    }
    rep.line("");
    rep.line(format!(
        "`list` answers {kills} containers before the pull, fewer as they are killed (stopped \
         ones stay listed until deleted). {unused} of the {kills} containers for the pull \
         were not killed (the pull ended first).{}",
        if quiet.lost + busy.lost > 0 {
            format!(
                " **{} exits were not reported within 10 s.**",
                quiet.lost + busy.lost
            )
        } else {
            String::new()
        }
    ));
    rep.line("");
    let at = |d: Option<Duration>| d.map_or("-".into(), |d| ms(d.as_secs_f64() * 1e3));
    let slow: Vec<String> = busy
        .slow
        .iter()
        .map(|(what, when, took, detail)| {
            if detail.is_empty() {
                format!("{what} at {} took {}", ms(*when), ms(*took))
            } else {
                format!("{what} at {} took {} ({detail})", ms(*when), ms(*took))
            }
        })
        .collect();
    rep.line(format!(
        "Samples over 10 ms during the pull ({} of them): {}. Times are since the pull \
         began; its first byte came at {}, the big layer was checked and committed \
         (Verifying: digest, fsync, rename) from {}, and the pull returned at {}.",
        slow.len(),
        if slow.is_empty() {
            "none".into()
        } else {
            slow.join("; ")
        },
        at(downloading_at),
        at(verifying_at),
        at(Some(pull_time)),
    ));
    rep.line("");
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn header(b: &Bench, rep: &mut Report) {
    let uname = first_line("uname", &["-srm"]);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = first_line("stat", &["-fc", "%T", &b.dir.display().to_string()]);
    let state_fs = first_line("stat", &["-fc", "%T", &b.run_dir.display().to_string()]);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let git = first_line("git", &["-C", manifest, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args([
            "-C",
            manifest,
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
        ])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    rep.line("# corral image benchmark: corral vs containerd and skopeo");
    rep.line("");
    rep.line("| | |");
    rep.line("|---|---|");
    rep.line(format!("| host | {uname}, {cpus} CPUs |"));
    rep.line(format!(
        "| data (corral's data dir, containerd's root, layouts) | `{}` on {fs} |",
        b.dir.display()
    ));
    rep.line(format!(
        "| state (sockets, corral's state dir and runtime root, containerd's state) | `{}` on {state_fs} |",
        b.run_dir.display()
    ));
    rep.line(format!(
        "| load average at start | {} |",
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    rep.line(format!(
        "| corral | {} at git {git}{}, `{CORRALD}` |",
        corral::VERSION,
        if dirty {
            " + uncommitted changes in src/"
        } else {
            ""
        }
    ));
    rep.line(format!(
        "| containerd | {} (private: own root, state, socket; no CRI; overlayfs) |",
        first_line(CONTAINERD, &["--version"])
    ));
    rep.line(format!(
        "| skopeo | {} |",
        first_line("skopeo", &["--version"])
    ));
    rep.line(format!(
        "| registry | {} on {} (plain HTTP, loopback, filesystem storage in /tmp) |",
        first_line(registry::DOCKER_REGISTRY, &["--version"]),
        b.addr()
    ));
    rep.line(format!(
        "| runs | N={} cold rounds, {} warm rounds, big layer {} MB, {} kills each half |",
        b.s.n, b.s.warm_n, b.s.big_mb, b.s.kills
    ));
    rep.line("");
}

impl Bench {
    fn run_all(&mut self, rep: &mut Report) -> R<()> {
        progress(format!("private world under {}", self.dir.display()));
        self.registry = Some(guarded("start docker-registry", Registry::start)?);
        self.start_daemon()?;
        self.start_containerd()?;
        header(self, rep);
        let secs = self.s.sections.clone();
        let has = |s| secs.contains(&s);
        if has(Section::Cold) || has(Section::Warm) || has(Section::Import) {
            progress(format!(
                "building and pushing the image of layers {:?} MB (gzip)",
                self.s.layers_mb
            ));
            let mut spec = ImageSpec::new();
            for (i, m) in self.s.layers_mb.iter().enumerate() {
                spec = spec.layer(
                    images::big_layer_seeded(m * 1_000_000, 10 + i as u64),
                    Compression::Gzip,
                );
            }
            let tar = self.import_tar.clone();
            self.three = Some(build_and_push(self, THREE, spec, Some(&tar))?);
        }
        if has(Section::Cold) {
            bench_cold(self, rep)?;
        }
        if has(Section::Warm) {
            bench_warm(self, rep)?;
        }
        if has(Section::Import) {
            bench_import(self, rep)?;
        }
        if has(Section::Big) {
            bench_big(self, rep)?;
        }
        if has(Section::Run) {
            image_run::bench_run(self, rep)?;
        }
        Ok(())
    }
}

fn main() {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: the image benchmark runs containerd, corrald and runc: run it as root");
        std::process::exit(1);
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
    let mut rep = Report::default();
    let result = Bench::new(settings).and_then(|mut b| {
        let r = b.run_all(&mut rep);
        if r.is_err() {
            for (what, log) in [("corrald", &b.daemon_log), ("containerd", &b.cd_log)] {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                if !tail.is_empty() {
                    eprintln!("bench: {what}'s log ends with:");
                    for l in tail.iter().rev() {
                        eprintln!("  {l}");
                    }
                }
            }
        }
        progress("cleaning up");
        let problems = b.cleanup();
        for p in &problems {
            eprintln!("bench cleanup: {p}");
        }
        if r.is_ok() && !problems.is_empty() {
            rep.line(format!(
                "Cleanup problems: {}",
                problems.join("; ").replace('\n', " ")
            ));
            rep.line("");
        }
        r
    });
    summary(&mut rep, started);
    print!("{}", rep.text);
    if let Err(e) = result {
        println!("\n**The benchmark failed:** {e}");
        eprintln!("bench: failed: {e}");
        std::process::exit(1);
    }
}
