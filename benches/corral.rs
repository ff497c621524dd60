//! `cargo bench --bench corral` (as root): corral against bare runc on this machine, side by
//! side, in one run, printing a markdown report on stdout (progress goes to stderr).
//!
//! 1. The full cycle `run -d, kill, wait, delete`, each step a fresh CLI process, runc and
//!    corral interleaved so that machine noise hits both.
//! 2. create+start to running, and `run -d`, with ratios; plus corral through its Client API
//!    (no CLI process) and the bare cost of starting each CLI.
//! 3. Memory: every corral-shim's RSS and PSS with 1 and with 100 running containers, and
//!    the daemon's RSS at 0 and 100 containers.
//! 4. `kill -9` of a container's pid until its /tasks/exit reaches a subscriber, broken
//!    down at the shim's `exited_at` stamp: the kernel's teardown before it, corral after.
//! 5. Run to completion of `/bin/true`.
//! 6. Stats. 7. Checkpoint and restore.
//! 8. The early OOM kill, soaked: `BENCH_OOM_RUNS` (default 200) runs two at a time, each
//!    /tasks/oom before its /tasks/exit.
//! 9. Scale (only when asked for: `scale`): `BENCH_SCALE` (default 1000) containers started
//!    4 at a time; the daemon's RSS and fds per container, shim PSS, `list` latency, `kill -9`
//!    of corrald and a restart until all are listed running again, fds after it, 100
//!    simultaneous exits, and deleting them all leaving nothing behind.
//! 10. Runtimes (only when asked for: `runtimes`): for each of runc, crun and youki that is
//!     installed, the cycle create, start, kill, wait, delete with the runtime's own CLI
//!     and through corral with that runtime (a `[runtimes.NAME]` entry of the private
//!     corrald's config), interleaved; medians and ratios per runtime, and the versions.
//!
//! A private corrald serves it all (its own socket, state dir and runtime root under a temp
//! dir), and everything is deleted at the end, also on failure or Ctrl-C.
//!
//! Environment: `BENCH_N` (iterations, default 40), `BENCH_CONTAINERS` (default 100),
//! `BENCH_WARMUP` (untimed rounds first, default 3), `BENCH_RUNC` (default: runc from PATH),
//! `BENCH_TMP` (default /dev/shm: a tmpfs, as /run is on most hosts; both runc's root and
//! corral's state go there), `BENCH_CRUN` and `BENCH_YOUKI` (default: from PATH; for
//! `runtimes`). Arguments pick sections: `cycle start memory kill run stats checkpoint oom
//! scale runtimes` (`kill` includes starting the containers of `memory`); default all but
//! `scale` and `runtimes`.
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

#[path = "common/mod.rs"]
mod common;
use common::*;

use corral::layout::StateDir;
use corral::rpc::Client;
use corral::{CreateRequest, EventFilter, Topic, DEFAULT_NAMESPACE, INIT_PROCESS};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CORRALD: &str = env!("CARGO_BIN_EXE_corrald");
const CORRALCTL: &str = env!("CARGO_BIN_EXE_corralctl");
const SHIM: &str = env!("CARGO_BIN_EXE_corral-shim");

// ---------------------------------------------------------------------------------------
// Settings and samples

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Cycle,
    Start,
    Memory,
    Kill,
    Run,
    Stats,
    Checkpoint,
    Oom,
    Scale,
    Runtimes,
}

impl Section {
    const ALL: [Section; 10] = [
        Section::Cycle,
        Section::Start,
        Section::Memory,
        Section::Kill,
        Section::Run,
        Section::Stats,
        Section::Checkpoint,
        Section::Oom,
        Section::Scale,
        Section::Runtimes,
    ];
    /// What runs without arguments: all but `scale` (a thousand containers) and `runtimes`
    /// (every installed runtime), each asked for by name.
    fn defaults() -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|s| !matches!(s, Section::Scale | Section::Runtimes))
            .collect()
    }
    fn name(self) -> &'static str {
        match self {
            Section::Cycle => "cycle",
            Section::Start => "start",
            Section::Memory => "memory",
            Section::Kill => "kill",
            Section::Run => "run",
            Section::Stats => "stats",
            Section::Checkpoint => "checkpoint",
            Section::Oom => "oom",
            Section::Scale => "scale",
            Section::Runtimes => "runtimes",
        }
    }
}

struct Settings {
    n: usize,
    containers: usize,
    warmup: usize,
    runc: PathBuf,
    tmp: PathBuf,
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
            sections = Section::defaults();
        }
        Ok(Settings {
            n: env_usize("BENCH_N", 40)?.max(1),
            containers: env_usize("BENCH_CONTAINERS", 100)?.max(1),
            warmup: env_usize("BENCH_WARMUP", 3)?,
            runc,
            tmp: std::env::var_os("BENCH_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/dev/shm".into()),
            sections,
        })
    }
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Processes

fn describe(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let txt = String::from_utf8_lossy(&out.stdout);
    format!("{} {} {}", out.status, err.trim(), txt.trim())
        .trim()
        .to_string()
}

/// Runs a command with its output captured; fails unless it exits with one of `codes`.
fn output(cmd: &mut Command, codes: &[i32]) -> R<(Duration, Output)> {
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", cmd_line(cmd)))?;
    let took = t.elapsed();
    match out.status.code() {
        Some(c) if codes.contains(&c) => Ok((took, out)),
        _ => Err(format!("{} failed: {}", cmd_line(cmd), describe(&out))),
    }
}

/// Runs a command with stdio on /dev/null (what a detached container may inherit).
fn null_status(cmd: &mut Command) -> R<Duration> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{}: {e}", cmd_line(cmd)))?;
    let took = t.elapsed();
    if status.success() {
        Ok(took)
    } else {
        Err(format!("{} failed: {status}", cmd_line(cmd)))
    }
}

fn proc_comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn first_line(bin: &Path, args: &[&str]) -> String {
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

// ---------------------------------------------------------------------------------------
// The bench's world: temp dirs, bundles, the private daemon

struct Bench {
    s: Settings,
    dir: PathBuf,
    bundle: PathBuf,
    true_bundle: PathBuf,
    runc_root: PathBuf,
    state_dir: PathBuf,
    corral_root: PathBuf,
    socket: PathBuf,
    daemon_log: PathBuf,
    daemon: Option<Child>,
    /// The runtimes of the `runtimes` section (none unless it was asked for).
    runtimes: Vec<Runtime>,
    fresh_rss: u64,
    prefix: String,
    seq: usize,
    cleaned: bool,
}

impl Bench {
    fn new(s: Settings) -> R<Bench> {
        let me = std::process::id();
        let dir = s.tmp.join(format!("corral-bench-{me}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut b = Bench {
            bundle: dir.join("bundle-sleep"),
            true_bundle: dir.join("bundle-true"),
            runc_root: dir.join("runc-root"),
            state_dir: dir.join("corral-state"),
            corral_root: dir.join("corral-root"),
            socket: dir.join("corrald.sock"),
            daemon_log: dir.join("corrald.log"),
            daemon: None,
            runtimes: Vec::new(),
            fresh_rss: 0,
            prefix: format!("cb{me}"),
            seq: 0,
            cleaned: false,
            dir,
            s,
        };
        let sleep = ["sleep".to_string(), "100000".to_string()];
        corral::bundle::make_busybox(&b.bundle, &sleep).map_err(|e| e.to_string())?;
        corral::bundle::make_busybox(&b.true_bundle, &["true".to_string()])
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&b.runc_root).map_err(|e| e.to_string())?;
        if b.s.sections.contains(&Section::Runtimes) {
            b.runtimes = installed_runtimes(&b.s, &b.dir)?;
        }
        Ok(b)
    }

    fn id(&mut self, tag: &str) -> String {
        self.seq += 1;
        format!("{}-{tag}-{}", self.prefix, self.seq)
    }

    fn check_stop(&self) -> R<()> {
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if let Some(pid) = self.daemon_pid() {
            if matches!(proc_state(pid), None | Some('Z')) {
                return Err("corrald exited (its log's end is above)".into());
            }
        }
        Ok(())
    }

    fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    fn runc(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.s.runc);
        c.arg("--root").arg(&self.runc_root).args(args);
        c
    }

    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CORRALCTL);
        c.arg("--socket").arg(&self.socket).args(args);
        c
    }

    fn client(&self) -> R<Client> {
        Client::connect(&self.socket).map_err(|e| e.to_string())
    }

    fn bundle_str(&self) -> String {
        self.bundle.display().to_string()
    }

    fn start_daemon(&mut self) -> R<()> {
        let log = std::fs::File::create(&self.daemon_log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(CORRALD);
        // The `runtimes` section's runtimes, each a `[runtimes.NAME]` entry asked for by name.
        let installed: Vec<&Runtime> = self.runtimes.iter().filter(|r| r.found()).collect();
        if !installed.is_empty() {
            let config = self.dir.join("corrald.toml");
            let text: String = installed
                .iter()
                .map(|r| {
                    format!(
                        "[runtimes.{}]\nbinary = {:?}\n",
                        r.name,
                        r.path.display().to_string()
                    )
                })
                .collect();
            std::fs::write(&config, text)
                .map_err(|e| format!("write {}: {e}", config.display()))?;
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--root")
            .arg(&self.corral_root)
            // Its own data dir (and so logs): another corrald on this host may hold the
            // default one's lock.
            .arg("--data-dir")
            .arg(self.dir.join("corral-data"))
            .arg("--runtime")
            .arg(&self.s.runc)
            .arg("--shim")
            .arg(SHIM)
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Out of the terminal's process group: Ctrl-C is ours to handle, not the daemon's.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start {CORRALD}: {e}"))?;
        self.daemon = Some(child);
        let t = Instant::now();
        loop {
            if Client::connect(&self.socket).is_ok() {
                return Ok(());
            }
            self.check_stop()?;
            if t.elapsed() > Duration::from_secs(10) {
                return Err("corrald did not answer on its socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn daemon_rss(&self) -> u64 {
        self.daemon_pid()
            .and_then(|p| proc_kib(p, "status", "VmRSS"))
            .unwrap_or(0)
    }

    fn runc_force_delete(&self, id: &str) {
        let _ = self.runc(&["delete", "--force", id]).output();
        reap_strays(self.daemon_pid());
    }

    fn corral_force_delete(&self, id: &str) {
        if let Ok(mut c) = self.client() {
            let _ = c.delete(DEFAULT_NAMESPACE, id, true);
        }
    }

    /// Deletes every container, stops the daemon, removes the temp dir. Returns what it
    /// could not do.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        // corral's containers, through the daemon.
        if self.daemon.is_some() {
            match self.client() {
                Ok(mut c) => {
                    if let Ok(list) = c.list(DEFAULT_NAMESPACE, BTreeMap::new()) {
                        for info in list {
                            if let Err(e) = c.delete(DEFAULT_NAMESPACE, &info.id, true) {
                                problems.push(format!("corral delete {}: {e}", info.id));
                            }
                        }
                    }
                }
                Err(e) => problems.push(format!("daemon unreachable for cleanup: {e}")),
            }
        }
        // runc's containers.
        if let Ok(out) = self.runc(&["list", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let id = id.trim();
                if !id.is_empty() {
                    self.runc_force_delete(id);
                }
            }
        }
        // The `runtimes` section's bare containers: one directory each under their roots.
        for rt in self.runtimes.iter().filter(|r| r.found()) {
            for entry in std::fs::read_dir(&rt.root).into_iter().flatten().flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if rt.cmd(&["delete", "--force", &id]).output().is_err() {
                    problems.push(format!("{} delete --force {id} did not run", rt.name));
                }
            }
            reap_strays(self.daemon_pid());
        }
        // The daemon.
        common::stop_daemon_and_leftovers(
            self.daemon.take(),
            &self.state_dir,
            &self.corral_root,
            &self.s.runc,
            &mut problems,
        );
        std::thread::sleep(Duration::from_millis(50));
        reap_strays(None);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            problems.push(format!("remove {}: {e}", self.dir.display()));
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
// The report

fn header(b: &Bench, rep: &mut Report) {
    let uname = first_line(Path::new("uname"), &["-srm"]);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    let fs = first_line(
        Path::new("stat"),
        &["-fc", "%T", &b.dir.display().to_string()],
    );
    let manifest = env!("CARGO_MANIFEST_DIR");
    let git = first_line(
        Path::new("git"),
        &["-C", manifest, "rev-parse", "--short", "HEAD"],
    );
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
    let size = |p: &str| {
        std::fs::metadata(p)
            .map(|m| kib(m.len() / 1024))
            .unwrap_or_default()
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    rep.line("# corral benchmark: corral vs bare runc");
    rep.line("");
    rep.line("| | |");
    rep.line("|---|---|");
    rep.line(format!(
        "| host | {uname}, {cpus} CPUs, cgroup {cgroup}, temp dirs on {fs} |"
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
        "| corral | {} at git {git}{} |",
        corral::VERSION,
        if dirty {
            " + uncommitted changes in src/"
        } else {
            ""
        }
    ));
    rep.line(format!(
        "| corrald | `{CORRALD}` ({}), {} |",
        first_line(Path::new(CORRALD), &["--version"]),
        size(CORRALD)
    ));
    rep.line(format!(
        "| corralctl | `{CORRALCTL}`, {} |",
        size(CORRALCTL)
    ));
    rep.line(format!("| corral-shim | `{SHIM}`, {} |", size(SHIM)));
    rep.line(format!(
        "| runc | `{}` ({}) |",
        b.s.runc.display(),
        first_line(&b.s.runc, &["--version"])
    ));
    let busybox = corral::bundle::BUSYBOX_CANDIDATES
        .iter()
        .find(|p| Path::new(p).is_file())
        .copied()
        .unwrap_or("?");
    rep.line(format!(
        "| bundle | busybox from `{busybox}` ({}), `runc spec` defaults |",
        first_line(Path::new(busybox), &["--help"])
    ));
    rep.line(format!(
        "| runs | N={} per measurement after {} untimed warm-up rounds; {} containers for memory and kill |",
        b.s.n, b.s.warmup, b.s.containers
    ));
    rep.line("");
    rep.line(
        "Every latency includes starting the CLI process, as a user would. Medians are the \
         figures to compare; the min is closer to the idle cost on a noisy machine.",
    );
    rep.line("");
}

// ---------------------------------------------------------------------------------------
// 1. The full cycle

const STEPS: [&str; 4] = ["run -d", "kill", "wait", "delete"];

fn runc_cycle(b: &mut Bench) -> R<[Duration; 4]> {
    let id = b.id("rc");
    let bundle = b.bundle_str();
    let result = (|| {
        let run = null_status(&mut b.runc(&["run", "-d", "--bundle", &bundle, &id]))?;
        let (kill, _) = output(&mut b.runc(&["kill", &id, "KILL"]), &[0])?;
        let t = Instant::now();
        runc_wait(b, &id)?;
        let wait = t.elapsed();
        let (delete, _) = output(&mut b.runc(&["delete", &id]), &[0])?;
        Ok([run, kill, wait, delete])
    })();
    if result.is_err() {
        b.runc_force_delete(&id);
    }
    result
}

/// What a runc user has for `wait`: `runc state` for the pid, then polling /proc until it
/// is gone (or a zombie, which the bench, a child subreaper, then reaps).
fn runc_wait(b: &Bench, id: &str) -> R<()> {
    bare_wait(b, b.runc(&["state", id]), id)
}

/// `wait` with a bare runtime: `state` (the command given) for the pid, then polling /proc.
fn bare_wait(b: &Bench, mut state_cmd: Command, id: &str) -> R<()> {
    let (_, out) = output(&mut state_cmd, &[0])?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{} state {id}: unreadable output: {e}",
            state_cmd.get_program().to_string_lossy()
        )
    })?;
    let pid = state["pid"].as_i64().unwrap_or(0) as i32;
    if state["status"] == "stopped" || pid <= 0 {
        reap_strays(b.daemon_pid());
        return Ok(());
    }
    let t = Instant::now();
    loop {
        match proc_state(pid) {
            None => return Ok(()),
            Some('Z') | Some('X') => {
                let mut status = 0;
                // SAFETY: reaping our (reparented) child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                return Ok(());
            }
            _ if t.elapsed() > Duration::from_secs(10) => {
                return Err(format!("container {id} (pid {pid}) did not die"))
            }
            _ => std::thread::sleep(Duration::from_micros(50)),
        }
    }
}

/// The end of a corral cycle: `corralctl kill --signal KILL`, `wait` (which must print
/// 137), `delete`, each timed.
fn ctl_kill_wait_delete(b: &Bench, id: &str) -> R<[Duration; 3]> {
    let (kill, _) = output(&mut b.ctl(&["kill", id, "--signal", "KILL"]), &[0])?;
    let (wait, out) = output(&mut b.ctl(&["wait", id]), &[137])?;
    let code = String::from_utf8_lossy(&out.stdout);
    if code.trim() != "137" {
        return Err(format!("corralctl wait {id} printed {code:?}, not 137"));
    }
    let (delete, _) = output(&mut b.ctl(&["delete", id]), &[0])?;
    Ok([kill, wait, delete])
}

fn corral_cycle(b: &mut Bench) -> R<[Duration; 4]> {
    let id = b.id("cc");
    let bundle = b.bundle_str();
    let result = (|| {
        let (run, _) = output(&mut b.ctl(&["run", "-d", &id, "--bundle", &bundle]), &[0])?;
        let [kill, wait, delete] = ctl_kill_wait_delete(b, &id)?;
        Ok([run, kill, wait, delete])
    })();
    if result.is_err() {
        b.corral_force_delete(&id);
    }
    result
}

/// A table row: `what`, the medians of the bare runtime and of corral with their ratio,
/// then the same for the minimums.
fn side_by_side(what: &str, bare: &Samples, corral: &Samples) -> String {
    format!(
        "| {what} | {} | {} | {} | {} | {} | {} |",
        ms(bare.median()),
        ms(corral.median()),
        ratio(corral.median(), bare.median()),
        ms(bare.min()),
        ms(corral.min()),
        ratio(corral.min(), bare.min()),
    )
}

fn bench_cycle(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.n;
    progress(format!(
        "1. full cycle: {} warm-up + {n} rounds of runc then corral",
        b.s.warmup
    ));
    let mut runc: Vec<Samples> = vec![Samples::default(); 5];
    let mut corral: Vec<Samples> = vec![Samples::default(); 5];
    for round in 0..b.s.warmup + n {
        b.check_stop()?;
        let r = runc_cycle(b)?;
        b.check_stop()?;
        let c = corral_cycle(b)?;
        if round < b.s.warmup {
            continue;
        }
        for (i, (rd, cd)) in r.iter().zip(&c).enumerate() {
            runc[i].push(*rd);
            corral[i].push(*cd);
        }
        runc[4].push(r.iter().sum());
        corral[4].push(c.iter().sum());
    }
    let (rt, ct) = (&runc[4], &corral[4]);
    rep.line("## 1. Full cycle: `run -d`, `kill KILL`, `wait`, `delete`");
    rep.line("");
    rep.line(
        "runc: `runc run -d` (stdio /dev/null), `runc kill ID KILL`, wait = `runc state` then \
         polling /proc/PID until gone, `runc delete`. corral: `corralctl run -d`, \
         `corralctl kill --signal KILL`, `corralctl wait`, `corralctl delete` against corrald. \
         Interleaved runc, corral, runc, corral...",
    );
    rep.line("");
    rep.line(
        "| step | runc median | corral median | ratio | runc min | corral min | ratio (min) |",
    );
    rep.line("|---|---|---|---|---|---|---|");
    for (i, step) in STEPS.iter().enumerate() {
        rep.line(side_by_side(step, &runc[i], &corral[i]));
    }
    rep.line(side_by_side("**full cycle**", rt, ct));
    rep.line(format!(
        "| full cycle p90 | {} | {} | {} | | | |",
        ms(rt.pct(90.0)),
        ms(ct.pct(90.0)),
        ratio(ct.pct(90.0), rt.pct(90.0)),
    ));
    rep.line("");
    rep.line(format!(
        "{} cycles each. Reference (anchors): runc alone 59.1 ms, containerd+ctr 192 ms.",
        rt.len()
    ));
    rep.line("");
    let r = ct.median() / rt.median();
    rep.target(
        "full cycle corral/runc (median) ≤ 1.15×",
        format!("{:.3}× ({} vs {})", r, ms(ct.median()), ms(rt.median())),
        r <= 1.15,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. create+start -> running

#[derive(Default)]
struct StartSamples {
    runc_create: Samples,
    runc_start: Samples,
    runc_both: Samples,
    runc_run: Samples,
    ctl_create: Samples,
    ctl_start: Samples,
    ctl_both: Samples,
    ctl_run: Samples,
    api_run: Samples,
    ctl_floor: Samples,
    runc_floor: Samples,
}

fn start_round(b: &mut Bench, s: &mut StartSamples, keep: bool) -> R<()> {
    let bundle = b.bundle_str();
    // runc create + start
    let id = b.id("rs");
    let r = (|| {
        let c = null_status(&mut b.runc(&["create", "--bundle", &bundle, &id]))?;
        let (st, _) = output(&mut b.runc(&["start", &id]), &[0])?;
        Ok::<_, String>((c, st))
    })();
    b.runc_force_delete(&id);
    let (rc, rs) = r?;
    b.check_stop()?;
    // corral create + start
    let id = b.id("cs");
    let r = (|| {
        let (c, _) = output(&mut b.ctl(&["create", &id, "--bundle", &bundle]), &[0])?;
        let (st, _) = output(&mut b.ctl(&["start", &id]), &[0])?;
        Ok::<_, String>((c, st))
    })();
    b.corral_force_delete(&id);
    let (cc, cs) = r?;
    b.check_stop()?;
    // runc run -d
    let id = b.id("rr");
    let r = null_status(&mut b.runc(&["run", "-d", "--bundle", &bundle, &id]));
    b.runc_force_delete(&id);
    let rr = r?;
    b.check_stop()?;
    // corral run -d
    let id = b.id("cr");
    let r = output(&mut b.ctl(&["run", "-d", &id, "--bundle", &bundle]), &[0]);
    b.corral_force_delete(&id);
    let (cr, _) = r?;
    b.check_stop()?;
    // corral through the Client API, no CLI process
    let id = b.id("ca");
    let t = Instant::now();
    let r = b.client().and_then(|mut c| {
        c.create(CreateRequest {
            id: id.clone(),
            bundle: b.bundle.clone(),
            start: true,
            ..Default::default()
        })
        .map_err(|e| e.to_string())
    });
    let api = t.elapsed();
    b.corral_force_delete(&id);
    r?;
    // The floors: a CLI that does nothing much.
    let (cf, _) = output(&mut b.ctl(&["version"]), &[0])?;
    let (rf, _) = output(Command::new(&b.s.runc).arg("--version"), &[0])?;
    if keep {
        s.runc_create.push(rc);
        s.runc_start.push(rs);
        s.runc_both.push(rc + rs);
        s.runc_run.push(rr);
        s.ctl_create.push(cc);
        s.ctl_start.push(cs);
        s.ctl_both.push(cc + cs);
        s.ctl_run.push(cr);
        s.api_run.push(api);
        s.ctl_floor.push(cf);
        s.runc_floor.push(rf);
    }
    Ok(())
}

fn bench_start(b: &mut Bench, rep: &mut Report) -> R<()> {
    progress(format!(
        "2. create+start and run -d: {} warm-up + {} rounds",
        b.s.warmup, b.s.n
    ));
    let mut s = StartSamples::default();
    for round in 0..b.s.warmup + b.s.n {
        b.check_stop()?;
        start_round(b, &mut s, round >= b.s.warmup)?;
    }
    rep.line("## 2. Start to running");
    rep.line("");
    rep.line(
        "Each row is one CLI process per step (stdio /dev/null for runc); the container \
         is force-deleted after each, untimed. Interleaved.",
    );
    rep.line("");
    rep.line("| what | runc median | corral median | ratio | runc min | corral min | ratio (min) | runc p90 | corral p90 |");
    rep.line("|---|---|---|---|---|---|---|---|---|");
    let rows: [(&str, &Samples, &Samples); 5] = [
        ("create", &s.runc_create, &s.ctl_create),
        ("start", &s.runc_start, &s.ctl_start),
        ("**create+start**", &s.runc_both, &s.ctl_both),
        ("**run -d**", &s.runc_run, &s.ctl_run),
        (
            "CLI floor (`runc --version` / `corralctl version`)",
            &s.runc_floor,
            &s.ctl_floor,
        ),
    ];
    let api = "run -d through `Client::create(start)`, no CLI process";
    for (what, r, c) in rows.into_iter().chain([(api, &s.runc_run, &s.api_run)]) {
        rep.line(format!(
            "{} {} | {} |",
            side_by_side(what, r, c),
            ms(r.pct(90.0)),
            ms(c.pct(90.0)),
        ));
    }
    rep.line("");
    rep.line(format!(
        "{} rounds. Reference (anchors): create+start runc alone 42.7 ms, containerd+ctr 107 ms, conmon+runc 59.5 ms.",
        s.runc_both.len()
    ));
    rep.line("");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Memory, and 4. kill -9 -> /tasks/exit (on the same containers)

struct ShimMem {
    rss: Vec<u64>,
    pss: Vec<u64>,
    private: Vec<u64>,
}

fn shim_memory(b: &Bench, ids: &[String]) -> R<ShimMem> {
    let state = StateDir::new(&b.state_dir);
    let mut m = ShimMem {
        rss: Vec::new(),
        pss: Vec::new(),
        private: Vec::new(),
    };
    for id in ids {
        let dir = state.container(DEFAULT_NAMESPACE, id).process(INIT_PROCESS);
        let (pid, _) = dir
            .read_shim_pid()
            .ok_or_else(|| format!("no shim.pid for {id} in {}", dir.path().display()))?;
        if proc_comm(pid) != "corral-shim" {
            return Err(format!(
                "shim pid {pid} of {id} is {:?}, not corral-shim",
                proc_comm(pid)
            ));
        }
        let get = |key| {
            proc_kib(pid, "smaps_rollup", key)
                .ok_or_else(|| format!("no {key} in /proc/{pid}/smaps_rollup"))
        };
        m.rss.push(get("Rss")?);
        m.pss.push(get("Pss")?);
        m.private
            .push(get("Private_Clean")? + get("Private_Dirty")?);
    }
    Ok(m)
}

/// What `kill -9` → /tasks/exit took, container by container.
#[derive(Default)]
struct KillSamples {
    received: Samples,
    published: Samples,
    shim: Samples,
    corral: Samples,
    /// kill → the process's pidfd readable in the bench (the kernel's share), from a pass
    /// of its own ([`kernel_share`]).
    kernel: Samples,
    wrong_codes: usize,
}

/// The kernel's share of the exit path, apart from corral's: for each of `ids` in turn, the
/// bench opens a pidfd on the container's process, kills it and times kill → the pidfd
/// readable (the process a zombie: the moment the kernel wakes its shim and corrald), then
/// waits (untimed) for its /tasks/exit before the next. A pass of its own, so that the
/// bench's wake-up does not compete with corrald's in the timed passes.
fn kernel_share(b: &mut Bench, ids: &[String], pids: &BTreeMap<String, u32>) -> R<Samples> {
    let mut samples = Samples::default();
    let mut sub = subscribe_all(b.client()?, Duration::from_secs(10))?;
    for id in ids {
        b.check_stop()?;
        let pid = *pids.get(id).ok_or_else(|| format!("{id} is not listed"))? as i32;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd (or -1).
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            return Err(format!(
                "pidfd_open {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` was just returned to us and is owned here alone.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        // SAFETY: SIGKILL to the container's init pid, which the daemon just listed.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        if unsafe { libc::poll(&mut pfd, 1, 5000) } != 1 {
            return Err(format!(
                "{id}: its pidfd did not become readable within 5 s"
            ));
        }
        samples.push(t0.elapsed());
        loop {
            match sub.next() {
                Some(Ok(ev)) if ev.topic == Topic::TaskExit && ev.container_id == *id => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("waiting for /tasks/exit of {id}: {e}")),
                None => return Err("corrald ended the event subscription".into()),
            }
        }
    }
    Ok(samples)
}

/// Kills each of `ids` in turn (its init pid from `pids`) and times its /tasks/exit.
fn kill_each(b: &mut Bench, ids: &[String], pids: &BTreeMap<String, u32>) -> R<KillSamples> {
    let mut k = KillSamples::default();
    let mut sub = subscribe_all(b.client()?, Duration::from_secs(10))?;
    for id in ids {
        b.check_stop()?;
        let pid = *pids.get(id).ok_or_else(|| format!("{id} is not listed"))? as i32;
        if pid <= 0 {
            return Err(format!("{id} has no pid"));
        }
        std::thread::sleep(Duration::from_millis(20));
        let wall0 = corral::now_ns();
        let t0 = Instant::now();
        // SAFETY: SIGKILL to the container's init pid, which the daemon just listed.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(format!(
                "kill {pid} ({id}): {}",
                std::io::Error::last_os_error()
            ));
        }
        loop {
            match sub.next() {
                Some(Ok(ev)) if ev.topic == Topic::TaskExit && ev.container_id == *id => {
                    k.received.push(t0.elapsed());
                    k.published
                        .push_ms(ev.timestamp_ns.saturating_sub(wall0) as f64 / 1e6);
                    // exited_at is when corral learnt of the exit: the shim once it has
                    // reaped the process, or corrald from the kernel (stdio not the
                    // shim's); before it the kernel's teardown, after it corral's path.
                    if let Some(exit) = ev.exit {
                        k.shim
                            .push_ms(exit.exited_at_ns.saturating_sub(wall0) as f64 / 1e6);
                        k.corral.push_ms(
                            ev.timestamp_ns.saturating_sub(exit.exited_at_ns) as f64 / 1e6,
                        );
                    }
                    if ev.exit.map(|e| e.code) != Some(137) {
                        k.wrong_codes += 1;
                    }
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    std::thread::sleep(Duration::from_millis(200));
                    b.check_stop()?;
                    return Err(format!("waiting for /tasks/exit of {id}: {e}"));
                }
                None => {
                    std::thread::sleep(Duration::from_millis(200));
                    b.check_stop()?;
                    return Err("corrald ended the event subscription".into());
                }
            }
        }
    }
    Ok(k)
}

fn bench_memory_and_kill(b: &mut Bench, rep: &mut Report, memory: bool, kill: bool) -> R<()> {
    let total = b.s.containers;
    progress(format!(
        "3. starting {total} containers one after another (corralctl run -d)"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = b.daemon_rss();
    let bundle = b.bundle_str();
    let mut ids = Vec::new();
    let mut starts = Samples::default();
    let mut one = None;
    for i in 0..total {
        b.check_stop()?;
        let id = b.id("m");
        ids.push(id.clone());
        let (took, _) = output(&mut b.ctl(&["run", "-d", &id, "--bundle", &bundle]), &[0])?;
        starts.push(took);
        if i == 0 && memory {
            std::thread::sleep(Duration::from_millis(300));
            one = Some((shim_memory(b, &ids)?, b.daemon_rss()));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let all = shim_memory(b, &ids)?;
    let rss_all = b.daemon_rss();
    let live_shims = std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| proc_comm(*p) == "corral-shim")
        .count();

    let mut logged = KillSamples::default();
    let mut unlogged = KillSamples::default();
    if kill {
        progress(format!(
            "4. kill -9 -> /tasks/exit, {total} containers one at a time"
        ));
        let infos = b
            .client()?
            .list(DEFAULT_NAMESPACE, BTreeMap::new())
            .map_err(|e| e.to_string())?;
        let pids: BTreeMap<String, u32> = infos.into_iter().map(|c| (c.id, c.pid)).collect();
        logged = kill_each(b, &ids, &pids)?;
        // The same with stdio to /dev/null: corrald reads such a process's exit from the
        // kernel (a pidfd), without waiting for its shim.
        let half = (total / 2).max(1);
        let kernel_n = (half / 2).max(1);
        progress(format!(
            "4b. kill -9 -> /tasks/exit, {half} containers with stdio to /dev/null, then \
             {kernel_n} more for the kernel's share"
        ));
        let mut quiet_ids = Vec::new();
        let mut quiet_pids = BTreeMap::new();
        let mut client = b.client()?;
        for _ in 0..half + kernel_n {
            let id = b.id("q");
            let info = client
                .create(CreateRequest {
                    id: id.clone(),
                    bundle: b.bundle.clone(),
                    start: true,
                    stdio: corral::Stdio {
                        stdout: Some("/dev/null".into()),
                        stderr: Some("/dev/null".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .map_err(|e| format!("create {id}: {e}"))?;
            quiet_pids.insert(id.clone(), info.pid);
            quiet_ids.push(id);
        }
        let r = kill_each(b, &quiet_ids[..half], &quiet_pids).and_then(|mut k| {
            k.kernel = kernel_share(b, &quiet_ids[half..], &quiet_pids)?;
            Ok(k)
        });
        for id in &quiet_ids {
            let _ = client.delete(DEFAULT_NAMESPACE, id, true);
        }
        unlogged = r?;
    }
    progress(format!("deleting the {total} containers"));
    let mut client = b.client()?;
    for id in &ids {
        client
            .delete(DEFAULT_NAMESPACE, id, true)
            .map_err(|e| format!("delete {id}: {e}"))?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = b.daemon_rss();

    if memory {
        rep.line("## 3. Memory");
        rep.line("");
        rep.line(format!(
            "Containers run busybox `sleep 100000`, started with `corralctl run -d`; shim \
             figures from /proc/PID/smaps_rollup of every corral-shim ({live_shims} corral-shim \
             processes alive at {total}); the daemon's from /proc/PID/status VmRSS."
        ));
        rep.line("");
        rep.line("| what | median | max | target |");
        rep.line("|---|---|---|---|");
        if let Some((m, _)) = &one {
            rep.line(format!(
                "| shim RSS, 1 container | {} | {} | |",
                kib(m.rss[0]),
                kib(m.rss[0])
            ));
            rep.line(format!(
                "| shim PSS, 1 container | {} | {} | |",
                kib(m.pss[0]),
                kib(m.pss[0])
            ));
        }
        let rss_med = median_u64(&all.rss);
        let pss_med = median_u64(&all.pss);
        let rss_max = all.rss.iter().copied().max().unwrap_or(0);
        let pss_max = all.pss.iter().copied().max().unwrap_or(0);
        rep.line(format!(
            "| **shim RSS, {total} containers** | **{}** | {} | ≤ 1.5 MiB |",
            kib(rss_med),
            kib(rss_max)
        ));
        rep.line(format!(
            "| **shim PSS, {total} containers** | **{}** | {} | ≤ 300 KiB |",
            kib(pss_med),
            kib(pss_max)
        ));
        rep.line(format!(
            "| shim private (clean+dirty), {total} containers | {} | {} | |",
            kib(median_u64(&all.private)),
            kib(all.private.iter().copied().max().unwrap_or(0))
        ));
        rep.line("");
        rep.line("| daemon VmRSS | value | target |");
        rep.line("|---|---|---|");
        rep.line(format!(
            "| 0 containers, fresh daemon | {} | |",
            kib(b.fresh_rss)
        ));
        rep.line(format!(
            "| 0 containers, before this section (after the sections above) | {} | |",
            kib(rss0)
        ));
        if let Some((_, r1)) = &one {
            rep.line(format!("| 1 container | {} | |", kib(*r1)));
        }
        rep.line(format!(
            "| **{total} containers** | **{}** | ≤ 12 MiB |",
            kib(rss_all)
        ));
        rep.line(format!(
            "| 0 containers again, after deleting all {total} | {} | |",
            kib(rss_after)
        ));
        rep.line("");
        rep.line(format!(
            "{total} containers started one after another with `corralctl run -d`: {:.2} s in all \
             (median {} each, p90 {}). Reference (anchors): containerd 9.68 s, conmon 6.37 s for 100; \
             per-container monitor RSS/PSS at 100: containerd shim 13.3 MiB / 2.6 MiB, conmon 2.0 MiB / 0.35 MiB; \
             daemon RSS at 0 / 100: containerd 37.7 / 57.2 MiB.",
            starts.0.iter().sum::<f64>() / 1e3,
            ms(starts.median()),
            ms(starts.pct(90.0)),
        ));
        rep.line("");
        if total >= 100 {
            rep.target(
                "shim RSS at 100 (median) ≤ 1.5 MiB",
                format!("{} (max {})", kib(rss_med), kib(rss_max)),
                rss_med <= 1536,
            );
            rep.target(
                "shim PSS at 100 (median) ≤ 300 KiB",
                format!("{} (max {})", kib(pss_med), kib(pss_max)),
                pss_med <= 300,
            );
            rep.target(
                "daemon RSS at 100 ≤ 12 MiB",
                kib(rss_all),
                rss_all <= 12 * 1024,
            );
        }
    }
    if kill {
        rep.line("## 4. `kill -9` of the container's pid → /tasks/exit at a subscriber");
        rep.line("");
        rep.line(format!(
            "A `Client` subscribed to events; for each of {total} running containers in turn \
             (the others idle), the bench sends SIGKILL to `ContainerInfo.pid` and stops the \
             clock when that container's /tasks/exit arrives. \"Published\" is the event's own \
             timestamp (daemon clock) minus the wall time just before the kill."
        ));
        rep.line("");
        for (what, k) in [
            (
                "logged (the default: the shim drains the output, then tells)",
                &logged,
            ),
            (
                "stdio to /dev/null (corrald reads the exit from the kernel)",
                &unlogged,
            ),
        ] {
            rep.line(format!("{} containers, {what}:", k.received.len()));
            rep.line("");
            rep.line("| what | median | p90 | min | max |");
            rep.line("|---|---|---|---|---|");
            for (row, samples) in [
                ("**kill → event received**", &k.received),
                ("kill → event published by corrald", &k.published),
                (
                    "kill → `exited_at` (the kernel's teardown, and the reap or the wake-up)",
                    &k.shim,
                ),
                ("`exited_at` → published (corral)", &k.corral),
                (
                    "kill → the process's pidfd readable (the kernel's share; a pass of its own)",
                    &k.kernel,
                ),
            ] {
                if samples.0.is_empty() {
                    continue;
                }
                rep.line(format!(
                    "| {row} | {} | {} | {} | {} |",
                    ms(samples.median()),
                    ms(samples.pct(90.0)),
                    ms(samples.min()),
                    ms(samples.max()),
                ));
            }
            rep.line("");
            rep.line(format!(
                "{} exits with a code other than 137.",
                k.wrong_codes
            ));
            rep.line("");
        }
        rep.line("Reference (anchors): containerd 2.2 ms, conmon 2.2 ms.");
        rep.line("");
        for (what, k) in [("logged", &logged), ("stdio /dev/null", &unlogged)] {
            let med = k.received.median();
            rep.target(
                &format!("kill -9 → /tasks/exit (median, {what}) ≤ 0.6 ms"),
                format!("{} (p90 {})", ms(med), ms(k.received.pct(90.0))),
                med <= 0.6,
            );
            let ours = k.corral.median();
            rep.target(
                &format!("corral's part, `exited_at` → published (median, {what}) ≤ 0.1 ms"),
                format!("{} (p90 {})", ms(ours), ms(k.corral.pct(90.0))),
                ours <= 0.1,
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Run to completion

fn bench_run(b: &mut Bench, rep: &mut Report) -> R<()> {
    progress(format!(
        "5. run to completion of /bin/true: {} warm-up + {} rounds",
        b.s.warmup, b.s.n
    ));
    let bundle = b.true_bundle.display().to_string();
    let (mut runc, mut corral) = (Samples::default(), Samples::default());
    for round in 0..b.s.warmup + b.s.n {
        b.check_stop()?;
        let id = b.id("rt");
        let r = null_status(&mut b.runc(&["run", "--bundle", &bundle, &id]));
        if r.is_err() {
            b.runc_force_delete(&id);
        }
        let r = r?;
        b.check_stop()?;
        let id = b.id("ct");
        let c = output(&mut b.ctl(&["run", &id, "--bundle", &bundle, "--rm"]), &[0]);
        if c.is_err() {
            b.corral_force_delete(&id);
        }
        let (c, _) = c?;
        if round >= b.s.warmup {
            runc.push(r);
            corral.push(c);
        }
    }
    rep.line("## 5. Run to completion of `/bin/true`");
    rep.line("");
    rep.line("`runc run` (foreground, deletes on exit) vs `corralctl run --rm` (create, start, copy output, wait, delete).");
    rep.line("");
    rep.line("| what | runc | corral | ratio |");
    rep.line("|---|---|---|---|");
    rep.line(format!(
        "| median | {} | {} | {} |",
        ms(runc.median()),
        ms(corral.median()),
        ratio(corral.median(), runc.median())
    ));
    rep.line(format!(
        "| min | {} | {} | {} |",
        ms(runc.min()),
        ms(corral.min()),
        ratio(corral.min(), runc.min())
    ));
    rep.line(format!(
        "| p90 | {} | {} | {} |",
        ms(runc.pct(90.0)),
        ms(corral.pct(90.0)),
        ratio(corral.pct(90.0), runc.pct(90.0))
    ));
    rep.line("");
    rep.line(format!(
        "{} runs each. Reference (anchors): runc alone 41.8 ms, containerd+ctr 150 ms.",
        runc.len()
    ));
    rep.line("");
    Ok(())
}

/// Section 6, stats: the daemon reads cgroup files; the alternative forks
/// `runc events --stats`.
fn bench_stats(b: &mut Bench, rep: &mut Report) -> R<()> {
    let many = b.s.containers;
    progress(format!("6. stats: 1 container, then {many} together"));
    let runc_root = b.corral_root.join(DEFAULT_NAMESPACE);
    let mut client = b.client()?;
    let bundle = b.bundle.clone();
    let mut ids = Vec::new();
    let result = (|| -> R<()> {
        for i in 0..many {
            b.check_stop()?;
            let id = format!("{}-st-{i}", b.prefix);
            client
                .create(CreateRequest {
                    id: id.clone(),
                    bundle: bundle.clone(),
                    start: true,
                    ..CreateRequest::default()
                })
                .map_err(|e| e.to_string())?;
            ids.push(id);
        }
        let one = ids[0].clone();
        let (mut corral_one, mut runc_one) = (Samples::default(), Samples::default());
        for _ in 0..200 {
            let t = Instant::now();
            client
                .stats(DEFAULT_NAMESPACE, vec![one.clone()])
                .map_err(|e| e.to_string())?;
            corral_one.push(t.elapsed());
        }
        for _ in 0..b.s.n {
            b.check_stop()?;
            let mut cmd = Command::new(&b.s.runc);
            cmd.arg("--root")
                .arg(&runc_root)
                .args(["events", "--stats", &one]);
            let (took, _) = output(&mut cmd, &[0])?;
            runc_one.push(took);
        }
        let (mut corral_all, mut runc_all) = (Samples::default(), Samples::default());
        for _ in 0..20 {
            let t = Instant::now();
            let got = client
                .stats(DEFAULT_NAMESPACE, Vec::new())
                .map_err(|e| e.to_string())?;
            corral_all.push(t.elapsed());
            if got.len() < many {
                return Err(format!("stats of all gave {} of {many}", got.len()));
            }
        }
        for _ in 0..3 {
            b.check_stop()?;
            let t = Instant::now();
            for id in &ids {
                let mut cmd = Command::new(&b.s.runc);
                cmd.arg("--root")
                    .arg(&runc_root)
                    .args(["events", "--stats", id]);
                output(&mut cmd, &[0])?;
            }
            runc_all.push(t.elapsed());
        }
        rep.line("## 6. Stats");
        rep.line("");
        rep.line("corral: `Client::stats` over the RPC (the daemon reads the cgroup files). runc: `runc events --stats ID` forked per request, as a supervisor without its own reader would.");
        rep.line("");
        rep.line("| what | runc median | corral median | ratio | runc p99 | corral p99 |");
        rep.line("|---|---|---|---|---|---|");
        rep.line(format!(
            "| 1 container | {} | {} | {} | {} | {} |",
            ms(runc_one.median()),
            ms(corral_one.median()),
            ratio(corral_one.median(), runc_one.median()),
            ms(runc_one.pct(99.0)),
            ms(corral_one.pct(99.0))
        ));
        rep.line(format!(
            "| {many} containers together | {} | {} | {} | {} | {} |",
            ms(runc_all.median()),
            ms(corral_all.median()),
            ratio(corral_all.median(), runc_all.median()),
            ms(runc_all.pct(99.0)),
            ms(corral_all.pct(99.0))
        ));
        rep.line("");
        rep.line(format!(
            "{} / {} samples for 1 container (corral / runc), {} / {} for {many}.",
            corral_one.len(),
            runc_one.len(),
            corral_all.len(),
            runc_all.len()
        ));
        rep.line("");
        Ok(())
    })();
    for id in &ids {
        let _ = client.delete(DEFAULT_NAMESPACE, id, true);
    }
    result
}

fn counter_bundle(dir: &Path) -> R<()> {
    let script = "i=0; while true; do i=$((i+1)); echo $i >> /count; sleep 0.1; done";
    corral::bundle::make_busybox(dir, &["sh".into(), "-c".into(), script.into()])
        .map_err(|e| e.to_string())
}

/// Section 7, checkpoint and restore of a counter container: `runc checkpoint` and
/// `runc restore` run directly, beside `corralctl checkpoint --exit` and `corralctl restore`.
fn bench_checkpoint(b: &mut Bench, rep: &mut Report) -> R<()> {
    let criu = corral::default_criu_path();
    if let Err(e) = corral::checkpoint::check_criu(&criu) {
        rep.line("## 7. Checkpoint and restore");
        rep.line("");
        rep.line(format!("Skipped: {e}"));
        rep.line("");
        return Ok(());
    }
    let rounds = b.s.n.clamp(3, 10);
    progress(format!("7. checkpoint and restore: {rounds} rounds each"));
    let runc_bundle = b.dir.join("bundle-counter-runc");
    let corral_bundle = b.dir.join("bundle-counter-corral");
    counter_bundle(&runc_bundle)?;
    counter_bundle(&corral_bundle)?;
    let criu_s = criu.display().to_string();
    let (mut r_ck, mut r_rs, mut c_ck, mut c_rs) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for round in 0..rounds {
        b.check_stop()?;
        // runc alone
        let id = b.id("ckr");
        let images = b.dir.join(format!("{id}-images"));
        let (img, work, work2) = (
            images.join("img").display().to_string(),
            images.join("work").display().to_string(),
            images.join("work2").display().to_string(),
        );
        let rb = runc_bundle.display().to_string();
        let res = (|| -> R<()> {
            null_status(&mut b.runc(&["run", "-d", "--bundle", &rb, &id]))?;
            std::thread::sleep(Duration::from_millis(300));
            let mut ck = b.runc(&[
                "--criu",
                &criu_s,
                "checkpoint",
                "--image-path",
                &img,
                "--work-path",
                &work,
                &id,
            ]);
            r_ck.push(null_status(&mut ck)?);
            // A checkpoint without --leave-running destroys the container already.
            let _ = b.runc(&["delete", &id]).output();
            let mut rs = b.runc(&[
                "--criu",
                &criu_s,
                "restore",
                "-d",
                "--bundle",
                &rb,
                "--image-path",
                &img,
                "--work-path",
                &work2,
                &id,
            ]);
            r_rs.push(null_status(&mut rs)?);
            Ok(())
        })();
        b.runc_force_delete(&id);
        let _ = std::fs::remove_dir_all(&images);
        res?;
        // corral
        b.check_stop()?;
        let id = b.id("ckc");
        let name = format!("r{round}");
        let cb = corral_bundle.display().to_string();
        let res = (|| -> R<()> {
            output(&mut b.ctl(&["run", "-d", &id, "--bundle", &cb]), &[0])?;
            std::thread::sleep(Duration::from_millis(300));
            let (took, _) = output(&mut b.ctl(&["checkpoint", &id, &name, "--exit"]), &[0])?;
            c_ck.push(took);
            output(&mut b.ctl(&["wait", &id]), &[137])?;
            output(&mut b.ctl(&["delete", &id]), &[0])?;
            let (took, _) = output(&mut b.ctl(&["restore", &id, &name]), &[0])?;
            c_rs.push(took);
            Ok(())
        })();
        b.corral_force_delete(&id);
        let _ = output(&mut b.ctl(&["checkpoint", "rm", &id, &name]), &[0, 125]);
        res?;
    }
    rep.line("## 7. Checkpoint and restore (CRIU)");
    rep.line("");
    rep.line(format!("A busybox counter container; `runc checkpoint` + `runc restore -d` run directly vs `corralctl checkpoint --exit` + `corralctl restore`; CRIU {criu_s}."));
    rep.line("");
    rep.line("| what | runc median | corral median | ratio | runc min | corral min |");
    rep.line("|---|---|---|---|---|---|");
    for (what, r, c) in [("checkpoint", &r_ck, &c_ck), ("restore", &r_rs, &c_rs)] {
        rep.line(format!(
            "| {what} | {} | {} | {} | {} | {} |",
            ms(r.median()),
            ms(c.median()),
            ratio(c.median(), r.median()),
            ms(r.min()),
            ms(c.min())
        ));
    }
    rep.line("");
    rep.line(format!("{rounds} rounds each."));
    rep.line("");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 8. The early OOM kill, soaked: every kill reported, before its exit

/// One early-OOM run: a container limited to 16 MiB whose init wants 64 MiB at once (killed
/// a few ms after start). Ok(None) when create, start, oom, exit 137 came in that order and
/// the state counts the kill; Ok(Some(what)) describes a miss.
fn oom_once(socket: &std::path::Path, bundle: &std::path::Path, id: &str) -> R<Option<String>> {
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    let mut sub = Client::connect(socket)
        .map_err(|e| e.to_string())?
        .subscribe(EventFilter {
            namespace: Some(DEFAULT_NAMESPACE.into()),
            container_id: Some(id.to_string()),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    sub.set_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    client
        .create(CreateRequest {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            start: true,
            ..CreateRequest::default()
        })
        .map_err(|e| e.to_string())?;
    let mut topics = Vec::new();
    loop {
        match sub.next() {
            Some(Ok(ev)) => {
                let exit = ev.topic == Topic::TaskExit;
                let code = ev.exit.map(|e| e.code);
                topics.push(ev.topic);
                if exit {
                    if code != Some(137) {
                        return Ok(Some(format!("{id}: exit {code:?}, not 137")));
                    }
                    break;
                }
            }
            Some(Err(e)) => return Err(format!("{id}: events: {e}")),
            None => return Err(format!("{id}: the event stream ended")),
        }
    }
    let state = client
        .state(DEFAULT_NAMESPACE, id)
        .map_err(|e| e.to_string())?;
    client
        .delete(DEFAULT_NAMESPACE, id, false)
        .map_err(|e| e.to_string())?;
    let want = [
        Topic::TaskCreate,
        Topic::TaskStart,
        Topic::TaskOom,
        Topic::TaskExit,
    ];
    if topics != want || state.oom_kills < 1 || !state.exit_oom_killed {
        return Ok(Some(format!(
            "{id}: events {topics:?}, oom_kills {}, exit_oom_killed {}",
            state.oom_kills, state.exit_oom_killed
        )));
    }
    Ok(None)
}

fn bench_oom(b: &mut Bench, rep: &mut Report) -> R<()> {
    let runs = env_usize("BENCH_OOM_RUNS", 200)?;
    progress(format!("8. early OOM kill, {runs} runs two at a time"));
    let bundle = b.dir.join("bundle-oom");
    let dd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"].map(String::from);
    corral::bundle::make_busybox(&bundle, &dd).map_err(|e| e.to_string())?;
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 16 << 20, "swap": 16 << 20});
    std::fs::write(&config, spec.to_string()).map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..runs).map(|_| b.id("oom")).collect();
    let socket = b.socket.clone();
    let started = Instant::now();
    let mut misses = Vec::new();
    for pair in ids.chunks(2) {
        b.check_stop()?;
        let results: Vec<R<Option<String>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pair
                .iter()
                .map(|id| scope.spawn(|| oom_once(&socket, &bundle, id)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a run panicked".into())))
                .collect()
        });
        for r in results {
            if let Some(miss) = r? {
                misses.push(miss);
            }
        }
    }
    rep.line("## 8. The early OOM kill, soaked");
    rep.line("");
    rep.line(format!(
        "{runs} containers limited to 16 MiB whose init asks for 64 MiB at once (killed a few \
         ms after start), two at a time; each must give /tasks/create, /tasks/start, \
         /tasks/oom, /tasks/exit (137) in that order, and a state that counts the kill. \
         {:.1} s in all.",
        started.elapsed().as_secs_f64()
    ));
    rep.line("");
    for miss in &misses {
        rep.line(format!("- miss: {miss}"));
    }
    rep.target(
        "early OOM kills reported before their exits: 0 misses",
        format!("{} misses in {runs} runs", misses.len()),
        misses.is_empty(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 9. Scale: a thousand containers

/// Open descriptors of `pid` (entries of /proc/PID/fd).
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// How many of the listed containers are running and answered (not busy), and how many are
/// listed at all.
fn listed_running(client: &mut Client) -> R<(usize, usize)> {
    let list = client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let running = list
        .iter()
        .filter(|c| c.status == corral::Status::Running && !c.busy)
        .count();
    Ok((running, list.len()))
}

/// Runs `work` on every id, `parallel` at a time (each worker with its own connection);
/// returns each call's latency.
fn four_at_a_time(
    b: &Bench,
    ids: &[String],
    parallel: usize,
    work: impl Fn(&mut Client, &str) -> R<()> + Sync,
) -> R<Samples> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let socket = b.socket.clone();
    let results: Vec<R<Vec<f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| -> R<Vec<f64>> {
                    let mut client = Client::connect(&socket).map_err(|e| e.to_string())?;
                    let mut took = Vec::new();
                    loop {
                        if STOP.load(Ordering::SeqCst) {
                            return Err("interrupted".into());
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(id) = ids.get(i) else {
                            return Ok(took);
                        };
                        let t = Instant::now();
                        work(&mut client, id)?;
                        took.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let mut all = Samples::default();
    for r in results {
        all.0.extend(r?);
    }
    Ok(all)
}

/// The cgroup directories under /sys/fs/cgroup named after one of `ids`.
fn cgroups_named(ids: &std::collections::HashSet<String>) -> Vec<PathBuf> {
    fn walk(
        dir: &Path,
        ids: &std::collections::HashSet<String>,
        depth: usize,
        out: &mut Vec<PathBuf>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_str().is_some_and(|n| ids.contains(n)) {
                out.push(e.path());
            }
            if depth > 0 {
                walk(&e.path(), ids, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), ids, 6, &mut out);
    out
}

/// Processes whose working directory is under `dir` (shims work in their state dirs).
fn processes_under(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Descriptors of the bench's own connections that a per-container count may include.
const CLIENT_SLACK: usize = 4;

fn bench_scale(b: &mut Bench, rep: &mut Report) -> R<()> {
    let total = env_usize("BENCH_SCALE", 1000)?.max(1);
    let exits = total.min(100);
    let list_calls = 200;
    progress(format!(
        "9. scale: starting {total} containers, 4 at a time"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let pid0 = b.daemon_pid().ok_or("no daemon")?;
    let fds0 = fd_count(pid0);
    let rss0 = b.daemon_rss();
    let ids: Vec<String> = (0..total).map(|_| b.id("s")).collect();
    let bundle = b.bundle.clone();
    let started = Instant::now();
    let starts = four_at_a_time(b, &ids, 4, |c, id| {
        c.create(CreateRequest {
            id: id.to_string(),
            bundle: bundle.clone(),
            start: true,
            ..CreateRequest::default()
        })
        .map(|_| ())
        .map_err(|e| format!("create {id}: {e}"))
    })?;
    let start_all = started.elapsed();
    b.check_stop()?;
    std::thread::sleep(Duration::from_millis(1000));
    let mut client = b.client()?;
    let (running, listed) = listed_running(&mut client)?;
    let shims = shim_memory(b, &ids)?;
    let rss = b.daemon_rss();
    let fds = fd_count(pid0);
    let fds_per = fds.saturating_sub(fds0) as f64 / total as f64;

    progress(format!("list latency, {list_calls} calls of each kind"));
    let mut api = Samples::default();
    for _ in 0..list_calls {
        b.check_stop()?;
        let t = Instant::now();
        let n = client
            .list(DEFAULT_NAMESPACE, BTreeMap::new())
            .map_err(|e| e.to_string())?
            .len();
        api.push(t.elapsed());
        if n != total {
            return Err(format!("list gave {n} containers, not {total}"));
        }
    }
    let mut cli = Samples::default();
    for _ in 0..list_calls {
        b.check_stop()?;
        let (took, _) = output(&mut b.ctl(&["list", "--json"]), &[0])?;
        cli.push(took);
    }

    progress("kill -9 of corrald, and a new one");
    if let Some(mut child) = b.daemon.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let restarted = Instant::now();
    b.start_daemon()?;
    let answering = restarted.elapsed();
    let mut client = b.client()?;
    let mut polls = 0;
    let adopted_in = loop {
        b.check_stop()?;
        polls += 1;
        let (running, _) = listed_running(&mut client)?;
        if running == total {
            break restarted.elapsed();
        }
        if restarted.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "60 s after the restart only {running} of {total} are listed running"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(1000));
    let pid1 = b.daemon_pid().ok_or("no daemon")?;
    let rss_restart = b.daemon_rss();
    let fds_restart = fd_count(pid1);
    let fds_per_restart = fds_restart.saturating_sub(fds0) as f64 / total as f64;
    let mut api_restart = Samples::default();
    for _ in 0..list_calls {
        let t = Instant::now();
        listed_running(&mut client)?;
        api_restart.push(t.elapsed());
    }

    progress(format!(
        "{exits} simultaneous exits (kill -9 of their init pids)"
    ));
    let infos = client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let pids: BTreeMap<String, u32> = infos.into_iter().map(|c| (c.id, c.pid)).collect();
    let victims: Vec<(String, i32)> = ids
        .iter()
        .take(exits)
        .map(|id| {
            let pid = pids.get(id).copied().unwrap_or(0) as i32;
            (id.clone(), pid)
        })
        .collect();
    if let Some((id, _)) = victims.iter().find(|(_, p)| *p <= 0) {
        return Err(format!("{id} has no pid"));
    }
    let mut sub = subscribe_all(b.client()?, Duration::from_secs(20))?;
    let killed = Instant::now();
    for (_, pid) in &victims {
        // SAFETY: SIGKILL to a container's init pid, which the daemon just listed.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let wanted: std::collections::HashSet<&str> = victims.iter().map(|(i, _)| i.as_str()).collect();
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut last_exit = Duration::ZERO;
    let mut reported = 0;
    let mut others = 0;
    while reported < exits {
        match sub.next() {
            Some(Ok(ev)) if ev.topic == Topic::TaskExit => {
                if wanted.contains(ev.container_id.as_str()) {
                    let codes = seen.entry(ev.container_id.clone()).or_default();
                    if codes.is_empty() {
                        reported += 1;
                        last_exit = killed.elapsed();
                    }
                    codes.push(ev.exit.map_or(u32::MAX, |e| e.code));
                } else {
                    others += 1;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    // Anything more (a duplicate) within a second after the last.
    sub.set_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    while let Some(Ok(ev)) = sub.next() {
        if ev.topic != Topic::TaskExit {
            continue;
        }
        match seen.get_mut(&ev.container_id) {
            Some(codes) => codes.push(ev.exit.map_or(u32::MAX, |e| e.code)),
            None => others += 1,
        }
    }
    drop(sub);
    let exactly_once_137 = seen.values().filter(|c| c.as_slice() == [137]).count();
    let wrong: Vec<String> = seen
        .iter()
        .filter(|(_, c)| c.as_slice() != [137])
        .map(|(id, c)| format!("{id}: {c:?}"))
        .take(5)
        .collect();
    let after = client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let stopped_137 = after
        .iter()
        .filter(|c| wanted.contains(c.id.as_str()))
        .filter(|c| c.status == corral::Status::Stopped && c.exit.map(|e| e.code) == Some(137))
        .count();

    progress(format!("deleting the {total} containers, 4 at a time"));
    let deleted = Instant::now();
    four_at_a_time(b, &ids, 4, |c, id| {
        c.delete(DEFAULT_NAMESPACE, id, true)
            .map(|_| ())
            .map_err(|e| format!("delete {id}: {e}"))
    })?;
    let delete_all = deleted.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let left_listed = client
        .list(DEFAULT_NAMESPACE, BTreeMap::new())
        .map_err(|e| e.to_string())?
        .len();
    let entries = |p: PathBuf| std::fs::read_dir(p).map_or(0, |d| d.count());
    let left_state = entries(b.state_dir.join(DEFAULT_NAMESPACE));
    let left_runtime = entries(b.corral_root.join(DEFAULT_NAMESPACE));
    let id_set: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let left_cgroups = cgroups_named(&id_set);
    let left_procs = processes_under(&b.state_dir.join(DEFAULT_NAMESPACE));
    let fds_end = fd_count(pid1);
    let rss_end = b.daemon_rss();

    rep.line(format!("## 9. Scale: {total} containers"));
    rep.line("");
    rep.line(format!(
        "busybox `sleep 100000` containers created and started through the Client API, 4 at a \
         time; fds counted in /proc/PID/fd of corrald, minus the {fds0} it held before (the bench's \
         own few connections are within the count, and allowed for in the target); RSS is \
         VmRSS. After `kill -9` of corrald a new one is started on the same state and asked \
         (`Client::list`, every 5 ms) until all {total} are listed running and not busy."
    ));
    rep.line("");
    rep.line("| what | value | target |");
    rep.line("|---|---|---|");
    rep.line(format!(
        "| **start {total}, 4 at a time** | **{:.2} s** (each: median {}, p99 {}) | |",
        start_all.as_secs_f64(),
        ms(starts.median()),
        ms(starts.pct(99.0))
    ));
    rep.line(format!(
        "| listed after starting | {listed} listed, {running} running | all {total} |"
    ));
    rep.line(format!(
        "| **daemon VmRSS** | **{}** (before: {}; per container {:.1} KiB) | ≤ 10 MiB |",
        kib(rss),
        kib(rss0),
        rss.saturating_sub(rss0) as f64 / total as f64
    ));
    rep.line(format!(
        "| **daemon fds per container** | **{fds_per:.2}** ({fds} open) | ≤ 3 |"
    ));
    rep.line(format!(
        "| shim PSS (median) | {} (max {}); RSS {} | |",
        kib(median_u64(&shims.pss)),
        kib(shims.pss.iter().copied().max().unwrap_or(0)),
        kib(median_u64(&shims.rss))
    ));
    rep.line(format!(
        "| **`Client::list`, {list_calls} calls** | **p50 {} p99 {}** (max {}) | p99 ≤ 5 ms |",
        ms(api.median()),
        ms(api.pct(99.0)),
        ms(api.max())
    ));
    rep.line(format!(
        "| `corralctl list --json`, {list_calls} calls (a process each) | p50 {} p99 {} | |",
        ms(cli.median()),
        ms(cli.pct(99.0))
    ));
    rep.line(format!(
        "| after `kill -9` of corrald: the new one answers | {} | |",
        ms(answering.as_secs_f64() * 1e3)
    ));
    rep.line(format!(
        "| **… all {total} listed running** | **{}** ({polls} lists) | ≤ 1 s |",
        ms(adopted_in.as_secs_f64() * 1e3)
    ));
    rep.line(format!(
        "| **daemon fds per container after the restart** | **{fds_per_restart:.2}** ({fds_restart} open) | ≤ 3 |"
    ));
    rep.line(format!(
        "| daemon VmRSS after the restart | {} | ≤ 10 MiB |",
        kib(rss_restart)
    ));
    rep.line(format!(
        "| `Client::list` after the restart | p50 {} p99 {} | p99 ≤ 5 ms |",
        ms(api_restart.median()),
        ms(api_restart.pct(99.0))
    ));
    rep.line(format!(
        "| **{exits} simultaneous `kill -9`s** | **{exactly_once_137} reported exactly once with 137**, \
         {stopped_137} listed stopped with 137, last exit after {} | all {exits} |",
        ms(last_exit.as_secs_f64() * 1e3)
    ));
    rep.line(format!(
        "| delete all {total}, 4 at a time | {:.2} s | |",
        delete_all.as_secs_f64()
    ));
    rep.line(format!(
        "| **left after deleting all** | {left_listed} listed, {left_state} state dirs, \
         {left_runtime} runtime dirs, {} cgroups, {} processes | nothing |",
        left_cgroups.len(),
        left_procs.len()
    ));
    rep.line(format!(
        "| daemon after deleting all | {fds_end} fds, VmRSS {} | |",
        kib(rss_end)
    ));
    rep.line("");
    for w in &wrong {
        rep.line(format!("- exit not reported exactly once with 137: {w}"));
    }
    if others > 0 {
        rep.line(format!(
            "- {others} /tasks/exit events of containers that were not killed"
        ));
    }
    for c in left_cgroups.iter().take(5) {
        rep.line(format!("- cgroup left: {}", c.display()));
    }
    if !wrong.is_empty() || others > 0 || !left_cgroups.is_empty() {
        rep.line("");
    }
    rep.target(
        &format!("scale: all {total} supervised and listed running"),
        format!("{running} of {total} running, {} shims", shims.pss.len()),
        running == total && listed == total && shims.pss.len() == total,
    );
    rep.target(
        &format!("scale: `Client::list` of {total} p99 ≤ 5 ms"),
        format!("p50 {} p99 {}", ms(api.median()), ms(api.pct(99.0))),
        api.pct(99.0) <= 5.0,
    );
    rep.target(
        &format!("scale: daemon RSS at {total} ≤ 10 MiB"),
        format!("{} (after the restart {})", kib(rss), kib(rss_restart)),
        rss <= 10 * 1024 && rss_restart <= 10 * 1024,
    );
    rep.target(
        "scale: daemon fds per container ≤ 3, after a restart too",
        format!("{fds_per:.2}, after the restart {fds_per_restart:.2}"),
        // The bench's own connections (a few) are not the containers'.
        fds.saturating_sub(fds0) <= 3 * total + CLIENT_SLACK
            && fds_restart.saturating_sub(fds0) <= 3 * total + CLIENT_SLACK,
    );
    rep.target(
        &format!("scale: kill -9 of corrald + restart: all {total} listed running ≤ 1 s"),
        ms(adopted_in.as_secs_f64() * 1e3),
        adopted_in <= Duration::from_secs(1),
    );
    rep.target(
        &format!("scale: {exits} simultaneous exits each reported once with 137"),
        format!("{exactly_once_137} of {exits}"),
        exactly_once_137 == exits && others == 0 && stopped_137 == exits,
    );
    rep.target(
        "scale: deleting all leaves nothing",
        format!(
            "{} things left",
            left_listed + left_state + left_runtime + left_cgroups.len() + left_procs.len()
        ),
        left_listed + left_state + left_runtime + left_cgroups.len() + left_procs.len() == 0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 10. Runtimes (only when asked for: `runtimes`): each installed OCI runtime bare and
// through corral

/// The runtimes the `runtimes` section looks for, with the variable that names another
/// binary (runc's is `BENCH_RUNC`, as for every other section).
const RUNTIME_NAMES: [(&str, &str); 3] = [
    ("runc", "BENCH_RUNC"),
    ("crun", "BENCH_CRUN"),
    ("youki", "BENCH_YOUKI"),
];

/// One runtime of the `runtimes` section: its binary, or why it is not there, and a state
/// root of its own for the bare runs.
#[derive(Clone)]
struct Runtime {
    name: &'static str,
    path: PathBuf,
    missing: Option<String>,
    root: PathBuf,
}

impl Runtime {
    fn found(&self) -> bool {
        self.missing.is_none()
    }

    /// `<binary> --root ROOT <args>`; crun on a hybrid host in the private mount namespace
    /// corral gives it (src/runtime/crun.rs), without which it refuses the host.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.root).args(args);
        corral::runtime::crun::prepare(&mut c, &self.path);
        c
    }
}

/// runc, crun and youki: found in `PATH` (or named by `BENCH_CRUN`, `BENCH_YOUKI`), or
/// the reason they are not. A variable that names no executable is an error.
fn installed_runtimes(s: &Settings, dir: &Path) -> R<Vec<Runtime>> {
    let mut out = Vec::new();
    for (name, env) in RUNTIME_NAMES {
        let root = dir.join(format!("root-{name}"));
        let (path, missing) = match std::env::var_os(env) {
            _ if name == "runc" => (s.runc.clone(), None),
            Some(p) => {
                let path = corral::runtime::resolve_binary(Path::new(&p))
                    .ok_or_else(|| format!("{env}={} is not an executable", p.to_string_lossy()))?;
                (path, None)
            }
            None => match corral::runtime::resolve_binary(Path::new(name)) {
                Some(path) => (path, None),
                None => (
                    PathBuf::from(name),
                    Some(format!("no {name} in PATH (set {env})")),
                ),
            },
        };
        if missing.is_none() {
            std::fs::create_dir_all(&root)
                .map_err(|e| format!("create {}: {e}", root.display()))?;
        }
        out.push(Runtime {
            name,
            path,
            missing,
            root,
        });
    }
    Ok(out)
}

const RT_STEPS: [&str; 5] = ["create", "start", "kill KILL", "wait", "delete"];

/// The cycle with the runtime's own CLI: create (stdio /dev/null), start, kill, wait
/// (`state`, then /proc), delete.
fn bare_rt_cycle(b: &mut Bench, rt: &Runtime) -> R<[Duration; 5]> {
    let id = b.id(&format!("b{}", rt.name));
    let bundle = b.bundle_str();
    let result = (|| {
        let create = null_status(&mut rt.cmd(&["create", "--bundle", &bundle, &id]))?;
        let (start, _) = output(&mut rt.cmd(&["start", &id]), &[0])?;
        let (kill, _) = output(&mut rt.cmd(&["kill", &id, "KILL"]), &[0])?;
        let t = Instant::now();
        bare_wait(b, rt.cmd(&["state", &id]), &id)?;
        let wait = t.elapsed();
        let (delete, _) = output(&mut rt.cmd(&["delete", &id]), &[0])?;
        Ok([create, start, kill, wait, delete])
    })();
    if result.is_err() {
        let _ = rt.cmd(&["delete", "--force", &id]).output();
        reap_strays(b.daemon_pid());
    }
    result
}

/// The same cycle through corral, the runtime asked for by its name in corrald's table.
fn corral_rt_cycle(b: &mut Bench, rt: &Runtime) -> R<[Duration; 5]> {
    let id = b.id(&format!("c{}", rt.name));
    let bundle = b.bundle_str();
    let result = (|| {
        let create = ["create", &id, "--bundle", &bundle, "--runtime", rt.name];
        let (create, _) = output(&mut b.ctl(&create), &[0])?;
        let (start, _) = output(&mut b.ctl(&["start", &id]), &[0])?;
        let [kill, wait, delete] = ctl_kill_wait_delete(b, &id)?;
        Ok([create, start, kill, wait, delete])
    })();
    if result.is_err() {
        b.corral_force_delete(&id);
    }
    result
}

/// Per runtime, bare (0) and corral (1): the steps, then create+start, then the cycle.
type RtSamples = [Vec<Samples>; 2];

fn bench_runtimes(b: &mut Bench, rep: &mut Report) -> R<()> {
    let rts: Vec<Runtime> = b.runtimes.iter().filter(|r| r.found()).cloned().collect();
    let names: Vec<&str> = rts.iter().map(|r| r.name).collect();
    progress(format!(
        "10. runtimes ({}): {} warm-up + {} rounds, each bare and through corral",
        names.join(", "),
        b.s.warmup,
        b.s.n
    ));
    let fresh = || vec![Samples::default(); RT_STEPS.len() + 2];
    let mut samples: Vec<RtSamples> = rts.iter().map(|_| [fresh(), fresh()]).collect();
    for round in 0..b.s.warmup + b.s.n {
        for (rt, s) in rts.iter().zip(samples.iter_mut()) {
            b.check_stop()?;
            // Which goes first alternates, so that neither always runs after the other.
            let (bare, corral) = if round % 2 == 0 {
                let bare = bare_rt_cycle(b, rt)?;
                b.check_stop()?;
                (bare, corral_rt_cycle(b, rt)?)
            } else {
                let corral = corral_rt_cycle(b, rt)?;
                b.check_stop()?;
                (bare_rt_cycle(b, rt)?, corral)
            };
            if round < b.s.warmup {
                continue;
            }
            for (steps, s) in [bare, corral].iter().zip(s.iter_mut()) {
                for (j, d) in steps.iter().enumerate() {
                    s[j].push(*d);
                }
                s[RT_STEPS.len()].push(steps[0] + steps[1]);
                s[RT_STEPS.len() + 1].push(steps.iter().sum());
            }
        }
    }
    let (both, cycle) = (RT_STEPS.len(), RT_STEPS.len() + 1);
    rep.line("## 10. OCI runtimes, each bare and through corral");
    rep.line("");
    rep.line(
        "Bare: `RUNTIME --root DIR create --bundle B ID` (stdio /dev/null), `start ID`, \
         `kill ID KILL`, wait = `state ID` then polling /proc/PID until gone, `delete ID`. \
         corral: `corralctl create ID --bundle B --runtime NAME` (NAME a `[runtimes.NAME]` \
         entry of the private corrald's config file), `corralctl start`, `corralctl kill \
         --signal KILL`, `corralctl wait`, `corralctl delete`. The busybox `sleep` bundle, \
         one CLI process per step. Interleaved: each round runs every runtime bare and \
         through corral, which of the two first alternating by round.",
    );
    rep.line("");
    rep.line(
        "| runtime | version | create+start bare | corral | ratio | cycle bare | corral | ratio |",
    );
    rep.line("|---|---|---|---|---|---|---|---|");
    for (rt, [bare, corral]) in rts.iter().zip(&samples) {
        let mut version = first_line(&rt.path, &["--version"]);
        if corral::runtime::crun::needs_private_cgroupfs(&rt.path) {
            version.push_str(" (private mount namespace, bare too: hybrid host)");
        }
        rep.line(format!(
            "| {} `{}` | {version} | {} | {} | **{}** | {} | {} | **{}** |",
            rt.name,
            rt.path.display(),
            ms(bare[both].median()),
            ms(corral[both].median()),
            ratio(corral[both].median(), bare[both].median()),
            ms(bare[cycle].median()),
            ms(corral[cycle].median()),
            ratio(corral[cycle].median(), bare[cycle].median()),
        ));
    }
    rep.line("");
    for rt in b.runtimes.iter() {
        if let Some(why) = &rt.missing {
            rep.line(format!("Not measured: {}: {why}.", rt.name));
            rep.line("");
        }
    }
    for (rt, [bare, corral]) in rts.iter().zip(&samples) {
        rep.line(format!("### {}", rt.name));
        rep.line("");
        rep.line(
            "| step | bare median | corral median | ratio | bare min | corral min | ratio (min) |",
        );
        rep.line("|---|---|---|---|---|---|---|");
        let mut rows: Vec<String> = RT_STEPS.iter().map(|s| s.to_string()).collect();
        rows.push("**create+start**".into());
        rows.push("**cycle**".into());
        for (j, what) in rows.iter().enumerate() {
            rep.line(side_by_side(what, &bare[j], &corral[j]));
        }
        rep.line(format!(
            "| cycle p90 | {} | {} | {} | | | |",
            ms(bare[cycle].pct(90.0)),
            ms(corral[cycle].pct(90.0)),
            ratio(corral[cycle].pct(90.0), bare[cycle].pct(90.0)),
        ));
        rep.line("");
        for (j, what) in [(both, "create+start"), (cycle, "cycle")] {
            let r = corral[j].median() / bare[j].median();
            rep.target(
                &format!("{} {what} corral/bare (median) ≤ 1.05×", rt.name),
                format!(
                    "{r:.3}× ({} vs {})",
                    ms(corral[j].median()),
                    ms(bare[j].median())
                ),
                r <= 1.05,
            );
        }
    }
    rep.line(format!("{} rounds each.", b.s.n));
    rep.line("");
    Ok(())
}

// ---------------------------------------------------------------------------------------

impl Bench {
    fn run_all(&mut self, rep: &mut Report) -> R<()> {
        header(self, rep);
        progress(format!("private corrald under {}", self.dir.display()));
        self.start_daemon()?;
        std::thread::sleep(Duration::from_millis(300));
        self.fresh_rss = self.daemon_rss();
        let (_, out) = output(&mut self.ctl(&["version"]), &[0])?;
        progress(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace('\n', "; "),
        );
        let secs = self.s.sections.clone();
        let has = |s| secs.contains(&s);
        if has(Section::Cycle) {
            bench_cycle(self, rep)?;
        }
        if has(Section::Start) {
            bench_start(self, rep)?;
        }
        if has(Section::Memory) || has(Section::Kill) {
            bench_memory_and_kill(self, rep, has(Section::Memory), has(Section::Kill))?;
        }
        if has(Section::Run) {
            bench_run(self, rep)?;
        }
        if has(Section::Stats) {
            bench_stats(self, rep)?;
        }
        if has(Section::Checkpoint) {
            bench_checkpoint(self, rep)?;
        }
        if has(Section::Oom) {
            bench_oom(self, rep)?;
        }
        if has(Section::Scale) {
            bench_scale(self, rep)?;
        }
        if has(Section::Runtimes) {
            bench_runtimes(self, rep)?;
        }
        Ok(())
    }
}

fn main() {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: corral's benchmark drives real runc and cgroups: run it as root");
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
    // runc's detached containers are re-parented to us, so we can reap them.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        eprintln!(
            "bench: cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut rep = Report::default();
    let result = Bench::new(settings).and_then(|mut b| {
        let r = b.run_all(&mut rep);
        if let Some(Ok(Some(status))) = b.daemon.as_mut().map(Child::try_wait) {
            eprintln!(
                "bench: corrald exited during the bench with {status}; a SIGTERM or SIGINT \
                 from outside (a `pkill corrald` on this machine?) stops it cleanly"
            );
        }
        if r.is_err() {
            let log = std::fs::read_to_string(&b.daemon_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            if !tail.is_empty() {
                eprintln!("bench: corrald's log ends with:");
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
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
