//! `cargo bench --bench logs` (as root): corral's log path against conmon's and bare runc,
//! side by side, in one run, printing a markdown report on stdout (progress on stderr).
//!
//! 1. `throughput`: a busybox container runs `cat /bigfile` (BENCH_LOG_MIB, default 100 MiB
//!    of 65-byte lines, made once per run): bare `runc run` with stdout on /dev/null (the
//!    ceiling), conmon writing a `k8s-file` log, and corral (its shim writing the CRI log),
//!    interleaved round by round. Nothing reads the logs meanwhile, so the figures also show
//!    that a process writing as fast as it can is held back by the log writer alone. Then
//!    corral's log is checked: every line parses as CRI, and it holds all lines, in order.
//! 2. `memory`: a logged container printing a line every 10 ms for 2 s, under corral and
//!    under conmon at once; the shim's and conmon's RSS and PSS while they run.
//! 3. `latency`: a container printing a line every 20 ms; a `logs --follow` reader
//!    (`Client::logs`) records each entry's receipt time minus the shim's timestamp.
//!
//! A private corrald (its own socket, state, runtime root and data dir under a temp dir)
//! serves corral's side; conmon and bare runc share another runtime root there. Everything
//! is deleted at the end, also on failure or Ctrl-C.
//!
//! Environment: `BENCH_LOG_ROUNDS` (timed throughput rounds, default 5), `BENCH_WARMUP`
//! (untimed rounds first, default 1), `BENCH_LOG_MIB` (default 100), `BENCH_LOG_LINES`
//! (lines for the latency, default 200), `BENCH_RUNC` (default: runc from PATH),
//! `BENCH_CONMON` (default: conmon from PATH), `BENCH_TMP` (default /dev/shm, a tmpfs like
//! /run; /tmp for a disk). Arguments pick sections: `throughput memory latency` (default all).
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

#[path = "common/mod.rs"]
mod common;
use common::*;

use corral::layout::StateDir;
use corral::logs::{parse_entry, LogStream};
use corral::rpc::Client;
use corral::{CreateRequest, LogsRequest, Stdio, DEFAULT_NAMESPACE, INIT_PROCESS};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CORRALD: &str = env!("CARGO_BIN_EXE_corrald");
const SHIM: &str = env!("CARGO_BIN_EXE_corral-shim");

/// Each line of the big file: a 10-digit line number, a space, 53 filler bytes and `\n`.
const LINE_LEN: usize = 65;
const FILL: &[u8; 53] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.";
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Throughput,
    Memory,
    Latency,
}

impl Section {
    const ALL: [Section; 3] = [Section::Throughput, Section::Memory, Section::Latency];
    fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Memory => "memory",
            Section::Latency => "latency",
        }
    }
}

struct Settings {
    rounds: usize,
    warmup: usize,
    mib: usize,
    lines: usize,
    runc: PathBuf,
    conmon: PathBuf,
    tmp: PathBuf,
    sections: Vec<Section>,
}

impl Settings {
    fn from_env() -> R<Settings> {
        let binary = |var: &str, name: &str| {
            let name = std::env::var(var).unwrap_or_else(|_| name.into());
            corral::runtime::resolve_binary(Path::new(&name))
                .ok_or_else(|| format!("{name} not found; install it or set {var}"))
        };
        let mut sections = Vec::new();
        for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
            let s = Section::ALL
                .into_iter()
                .find(|s| s.name() == arg)
                .ok_or_else(|| {
                    format!("unknown section {arg:?}; known: throughput memory latency")
                })?;
            sections.push(s);
        }
        if sections.is_empty() {
            sections = Section::ALL.to_vec();
        }
        Ok(Settings {
            rounds: env_usize("BENCH_LOG_ROUNDS", 5)?.max(1),
            warmup: env_usize("BENCH_WARMUP", 1)?,
            mib: env_usize("BENCH_LOG_MIB", 100)?.max(1),
            lines: env_usize("BENCH_LOG_LINES", 200)?.max(10),
            runc: binary("BENCH_RUNC", "runc")?,
            conmon: binary("BENCH_CONMON", "conmon")?,
            tmp: std::env::var_os("BENCH_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/dev/shm".into()),
            sections,
        })
    }
}

fn first_line(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .stdin(ProcStdio::null())
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

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// A busybox `sh -c` loop printing `count` lines, `usleep` microseconds apart.
fn ticker(count: usize, usleep: u32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "i=0; while [ $i -lt {count} ]; do echo \"tick $i\"; i=$((i+1)); usleep {usleep}; done"
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The bench's world: temp dirs, bundles, the private daemon, conmon's runs

struct Bench {
    s: Settings,
    dir: PathBuf,
    cat_bundle: PathBuf,
    lines_total: usize,
    bytes_total: u64,
    /// Bare runc's and conmon's runtime root.
    runc_root: PathBuf,
    conmon_dir: PathBuf,
    state_dir: PathBuf,
    corral_root: PathBuf,
    data_dir: PathBuf,
    socket: PathBuf,
    daemon_log: PathBuf,
    daemon: Option<Child>,
    /// conmon processes started (pid), killed at cleanup if still there.
    conmons: Vec<i32>,
    prefix: String,
    seq: usize,
    cleaned: bool,
}

/// One conmon-supervised container: its files.
struct ConmonRun {
    id: String,
    log: PathBuf,
    pidfile: PathBuf,
    conmon_pidfile: PathBuf,
    exit_file: PathBuf,
}

impl Bench {
    fn new(s: Settings) -> R<Bench> {
        let me = std::process::id();
        let dir = s.tmp.join(format!("corral-logbench-{me}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let b = Bench {
            cat_bundle: dir.join("bundle-cat"),
            lines_total: s.mib * 1024 * 1024 / LINE_LEN,
            bytes_total: 0,
            runc_root: dir.join("runc-root"),
            conmon_dir: dir.join("conmon"),
            state_dir: dir.join("corral-state"),
            corral_root: dir.join("corral-root"),
            data_dir: dir.join("corral-data"),
            socket: dir.join("corrald.sock"),
            daemon_log: dir.join("corrald.log"),
            daemon: None,
            conmons: Vec::new(),
            prefix: format!("lb{me}"),
            seq: 0,
            cleaned: false,
            dir,
            s,
        };
        for d in [&b.runc_root, &b.conmon_dir] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
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
        c.stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null());
        c
    }

    fn client(&self) -> R<Client> {
        Client::connect(&self.socket).map_err(|e| e.to_string())
    }

    /// The bundle running `cat /bigfile`, its rootfs holding the big file.
    fn make_cat_bundle(&mut self) -> R<()> {
        corral::bundle::make_busybox(&self.cat_bundle, &["cat".into(), "/bigfile".into()])
            .map_err(|e| e.to_string())?;
        let path = self.cat_bundle.join("rootfs/bigfile");
        let file =
            std::fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut line = [0u8; LINE_LEN];
        line[10] = b' ';
        line[11..64].copy_from_slice(FILL);
        line[64] = b'\n';
        for i in 0..self.lines_total {
            line[..10].copy_from_slice(format!("{i:010}").as_bytes());
            w.write_all(&line)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        w.flush()
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        self.bytes_total = file_size(&path);
        Ok(())
    }

    fn bundle(&self, name: &str, args: &[String]) -> R<PathBuf> {
        let dir = self.dir.join(format!("bundle-{name}"));
        if !dir.exists() {
            corral::bundle::make_busybox(&dir, args).map_err(|e| e.to_string())?;
        }
        Ok(dir)
    }

    fn start_daemon(&mut self) -> R<()> {
        let log = std::fs::File::create(&self.daemon_log).map_err(|e| e.to_string())?;
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
            .args(["--log-level", "warn"])
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
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

    /// Starts conmon on `bundle` (it runs `runc create` with its own pipes and daemonizes),
    /// waits for the container to be created, and `runc start`s it.
    fn conmon_start(&mut self, tag: &str, bundle: &Path) -> R<ConmonRun> {
        let id = self.id(tag);
        let files = self.conmon_dir.join(&id);
        let exit_dir = files.join("exit");
        let sockets = files.join("sock");
        for d in [&exit_dir, &sockets] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        let run = ConmonRun {
            log: files.join("ctr.log"),
            pidfile: files.join("pidfile"),
            conmon_pidfile: files.join("conmon.pid"),
            exit_file: exit_dir.join(&id),
            id,
        };
        let err_path = files.join("conmon.err");
        let err = std::fs::File::create(&err_path)
            .map_err(|e| format!("create {}: {e}", err_path.display()))?;
        let mut cmd = Command::new(&self.s.conmon);
        cmd.args(["--api-version", "1"])
            .args(["--cid", &run.id, "--cuuid", &run.id, "--name", &run.id])
            .arg("--runtime")
            .arg(&self.s.runc)
            .args(["--runtime-arg", "--root", "--runtime-arg"])
            .arg(&self.runc_root)
            .arg("--bundle")
            .arg(bundle)
            .arg("-p")
            .arg(&run.pidfile)
            .arg("--conmon-pidfile")
            .arg(&run.conmon_pidfile)
            .arg("--log-path")
            .arg(format!("k8s-file:{}", run.log.display()))
            .arg("--exit-dir")
            .arg(&exit_dir)
            .arg("--socket-dir-path")
            .arg(&sockets)
            .args(["--log-level", "error"])
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            // A file, not a pipe: the daemonized conmon keeps it open for its whole life.
            .stderr(err)
            .process_group(0);
        let status = cmd
            .status()
            .map_err(|e| format!("{}: {e}", cmd_line(&cmd)))?;
        if !status.success() {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err(format!("conmon failed ({status}): {}", err.trim()));
        }
        // The daemonized conmon runs `runc create`, which writes the pid file when done.
        let t = Instant::now();
        while !run.pidfile.exists() {
            self.check_stop()?;
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("conmon did not create {} within 10 s", run.id));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if let Some(pid) = read_pid(&run.conmon_pidfile) {
            self.conmons.push(pid);
        }
        let status = self
            .runc(&["start", &run.id])
            .status()
            .map_err(|e| format!("runc start: {e}"))?;
        if !status.success() {
            return Err(format!("runc start {} (conmon's): {status}", run.id));
        }
        Ok(run)
    }

    /// Waits for conmon's exit file (written once the container exited and conmon drained
    /// its output), then for conmon itself, and deletes the container.
    fn conmon_wait(&self, run: &ConmonRun) -> R<Duration> {
        let t = Instant::now();
        loop {
            if std::fs::metadata(&run.exit_file).is_ok_and(|m| m.len() > 0) {
                break;
            }
            self.check_stop()?;
            if t.elapsed() > Duration::from_secs(120) {
                return Err(format!("conmon's {} did not exit within 120 s", run.id));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let took = t.elapsed();
        if let Some(pid) = read_pid(&run.conmon_pidfile) {
            let t = Instant::now();
            while !matches!(proc_state(pid), None | Some('Z')) && t.elapsed().as_secs() < 10 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        reap_strays(self.daemon_pid());
        let _ = self.runc(&["delete", "--force", &run.id]).status();
        Ok(took)
    }

    fn conmon_remove(&self, run: &ConmonRun) {
        let _ = std::fs::remove_dir_all(self.conmon_dir.join(&run.id));
    }

    /// Deletes every container, stops the daemon and conmon, removes the temp dir. Returns
    /// what it could not do.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut problems = Vec::new();
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
        for pid in std::mem::take(&mut self.conmons) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "conmon" && !matches!(proc_state(pid), None | Some('Z')) {
                problems.push(format!("killed leftover conmon {pid}"));
                // SAFETY: a pid we started, checked by name and still running.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Ok(out) = Command::new(&self.s.runc)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let id = id.trim();
                if !id.is_empty() {
                    let _ = self.runc(&["delete", "--force", id]).status();
                }
            }
        }
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

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------
// The report's head

fn header(b: &Bench, rep: &mut Report) {
    let uname = first_line(Path::new("uname"), &["-srm"]);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = first_line(
        Path::new("stat"),
        &["-fc", "%T", &b.dir.display().to_string()],
    );
    let git = first_line(
        Path::new("git"),
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    rep.line("# corral logs benchmark: corral's log path vs conmon vs bare runc");
    rep.line("");
    rep.line("| | |");
    rep.line("|---|---|");
    rep.line(format!(
        "| host | {uname}, {cpus} CPUs, temp dirs (bundles, runtime state, logs) on {fs} |"
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
        "| corral | {} at git {git}; corral-shim {} |",
        corral::VERSION,
        kib(file_size(Path::new(SHIM)) / 1024)
    ));
    rep.line(format!(
        "| conmon | `{}` ({}) |",
        b.s.conmon.display(),
        first_line(&b.s.conmon, &["--version"])
    ));
    rep.line(format!(
        "| runc | `{}` ({}) |",
        b.s.runc.display(),
        first_line(&b.s.runc, &["--version"])
    ));
    rep.line("");
}

// ---------------------------------------------------------------------------------------
// 1. Throughput

struct Round {
    runc: Duration,
    conmon: Duration,
    corral: Duration,
    conmon_log: u64,
    corral_log: u64,
}

fn runc_cat(b: &mut Bench) -> R<Duration> {
    let id = b.id("rc");
    let bundle = b.cat_bundle.display().to_string();
    let t = Instant::now();
    let status = b
        .runc(&["run", "--bundle", &bundle, &id])
        .status()
        .map_err(|e| format!("runc run: {e}"))?;
    let took = t.elapsed();
    let _ = b.runc(&["delete", "--force", &id]).status();
    if !status.success() {
        return Err(format!("runc run {id}: {status}"));
    }
    Ok(took)
}

fn conmon_cat(b: &mut Bench) -> R<(Duration, u64)> {
    let t = Instant::now();
    let bundle = b.cat_bundle.clone();
    let run = b.conmon_start("cm", &bundle)?;
    let result = b.conmon_wait(&run);
    let took = t.elapsed();
    let size = file_size(&run.log);
    b.conmon_remove(&run);
    result.map(|_| (took, size))
}

/// What corral's log holds: entries, F entries in order with the right content, and any
/// line that does not parse.
struct LogCheck {
    lines: usize,
    full_in_order: usize,
    full: usize,
    partial: usize,
    malformed: usize,
    first: String,
    last: String,
}

fn check_log(path: &Path, expected_lines: usize) -> R<LogCheck> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut c = LogCheck {
        lines: 0,
        full_in_order: 0,
        full: 0,
        partial: 0,
        malformed: 0,
        first: String::new(),
        last: String::new(),
    };
    let mut buf = Vec::with_capacity(256);
    let mut pending: Vec<u8> = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    let mut expected = [0u8; LINE_LEN - 1];
    expected[10] = b' ';
    expected[11..].copy_from_slice(FILL);
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        c.lines += 1;
        if c.first.is_empty() {
            c.first = String::from_utf8_lossy(line).into_owned();
        }
        let Some(entry) = parse_entry(line) else {
            c.malformed += 1;
            continue;
        };
        if entry.stream != LogStream::Stdout {
            c.malformed += 1;
            continue;
        }
        pending.extend_from_slice(&entry.content);
        if entry.partial {
            c.partial += 1;
            continue;
        }
        c.full += 1;
        if c.full_in_order < expected_lines {
            expected[..10].copy_from_slice(format!("{:010}", c.full_in_order).as_bytes());
            if pending == expected {
                c.full_in_order += 1;
            }
        }
        pending.clear();
        last.clear();
        last.extend_from_slice(line);
    }
    c.last = String::from_utf8_lossy(&last).into_owned();
    Ok(c)
}

fn corral_cat(b: &mut Bench, check: bool) -> R<(Duration, u64, Option<LogCheck>)> {
    let id = b.id("cc");
    let mut client = b.client()?;
    let t = Instant::now();
    let result = (|| {
        let info = client
            .create(CreateRequest {
                id: id.clone(),
                bundle: b.cat_bundle.clone(),
                start: true,
                // Logged (no stdout/stderr path), never rotated: the whole 100 MiB stays, as
                // with conmon's k8s-file without --log-size-max.
                stdio: Stdio {
                    log_max_size: Some(0),
                    ..Stdio::default()
                },
                ..CreateRequest::default()
            })
            .map_err(|e| format!("corral create {id}: {e}"))?;
        let exit = client
            .wait(DEFAULT_NAMESPACE, &id, None)
            .map_err(|e| format!("corral wait {id}: {e}"))?;
        let took = t.elapsed();
        if exit.code != 0 {
            return Err(format!("corral's {id} exited with {}", exit.code));
        }
        let log = info
            .log_path
            .ok_or_else(|| format!("corral's {id} has no log path"))?;
        let size = file_size(&log);
        let checked = if check {
            Some(check_log(&log, b.lines_total)?)
        } else {
            None
        };
        Ok((took, size, checked))
    })();
    let _ = client.delete(DEFAULT_NAMESPACE, &id, true);
    result
}

fn bench_throughput(b: &mut Bench, rep: &mut Report) -> R<()> {
    progress(format!("1. throughput: writing the {} MiB file", b.s.mib));
    b.make_cat_bundle()?;
    let total = b.s.warmup + b.s.rounds;
    let mut rounds = Vec::new();
    let mut check = None;
    for round in 0..total {
        b.check_stop()?;
        progress(format!(
            "1. throughput: round {}/{total}{}",
            round + 1,
            if round < b.s.warmup { " (warm-up)" } else { "" }
        ));
        let runc = runc_cat(b)?;
        b.check_stop()?;
        let (conmon, conmon_log) = conmon_cat(b)?;
        b.check_stop()?;
        let last = round + 1 == total;
        let (corral, corral_log, checked) = corral_cat(b, last)?;
        if checked.is_some() {
            check = checked;
        }
        if round >= b.s.warmup {
            rounds.push(Round {
                runc,
                conmon,
                corral,
                conmon_log,
                corral_log,
            });
        }
    }
    let samples = |f: fn(&Round) -> Duration| {
        let mut s = Samples::default();
        for r in &rounds {
            s.push(f(r));
        }
        s
    };
    let (runc, conmon, corral) = (
        samples(|r| r.runc),
        samples(|r| r.conmon),
        samples(|r| r.corral),
    );
    let data_mib = b.bytes_total as f64 / MIB;
    let rate = |ms_: f64| data_mib / (ms_ / 1e3);
    let log_of = |f: fn(&Round) -> u64| rounds.last().map(f).unwrap_or(0);
    rep.line(format!(
        "## 1. Throughput: `cat` of {data_mib:.0} MiB ({} lines of {LINE_LEN} bytes)",
        b.lines_total
    ));
    rep.line("");
    rep.line(format!(
        "From the launch until the exit is known, {} rounds after {} warm-up, interleaved \
         runc, conmon, corral. runc: `runc run` in the foreground, stdout on /dev/null (no \
         log: the ceiling). conmon: `conmon --log-path k8s-file:PATH` (it runs `runc \
         create` with its own pipes), then `runc start`, until its exit file appears in \
         `--exit-dir`. corral: `create` (start, default stdio: logged, rotation off) over \
         the client API, then `wait`: the shim has written the whole log before the exit is \
         reported. Nothing reads the logs while they are written.",
        b.s.rounds, b.s.warmup
    ));
    rep.line("");
    rep.line("| path | median | p90 | min | MiB/s (median) | log file | corral / this (MiB/s) |");
    rep.line("|---|---|---|---|---|---|---|");
    let rows: [(&str, &Samples, String); 3] = [
        ("bare runc, stdout on /dev/null", &runc, "-".into()),
        (
            "conmon, k8s-file log",
            &conmon,
            mib(log_of(|r| r.conmon_log)),
        ),
        ("corral, CRI log", &corral, mib(log_of(|r| r.corral_log))),
    ];
    for (what, s, log) in rows {
        rep.line(format!(
            "| {what} | {} | {} | {} | {:.0} | {log} | {} |",
            ms(s.median()),
            ms(s.pct(90.0)),
            ms(s.min()),
            rate(s.median()),
            ratio(rate(corral.median()), rate(s.median())),
        ));
    }
    rep.line("");
    let corral_log = log_of(|r| r.corral_log) as f64 / MIB;
    rep.line(format!(
        "With no reader, corral's shim wrote its {corral_log:.1} MiB log at {:.0} MiB/s of \
         log file (median round): the writer is all that holds the container back; the \
         container never waited on a reader.",
        corral_log / (corral.median() / 1e3)
    ));
    rep.line("");
    let speedup = rate(corral.median()) / rate(conmon.median());
    rep.target(
        "corral's log throughput / conmon's >= 2×",
        format!(
            "{:.0} / {:.0} MiB/s = {speedup:.2}×",
            rate(corral.median()),
            rate(conmon.median())
        ),
        speedup >= 2.0,
    );
    if let Some(c) = check {
        let ok = c.malformed == 0 && c.full == b.lines_total && c.full_in_order == b.lines_total;
        rep.line(format!(
            "Check of corral's log (last round): {} lines, all CRI ({} malformed); {} F \
             entries for {} lines written, {} P entries (a line cut at a read's end, \
             finished by the next entry); the {} lines rebuilt from them are the file's, \
             in order: {}.",
            c.lines,
            c.malformed,
            c.full,
            b.lines_total,
            c.partial,
            c.full_in_order,
            verdict(ok)
        ));
        rep.line("");
        rep.line(format!("- first line: `{}`", c.first));
        rep.line(format!("- last line: `{}`", c.last));
        rep.line("");
        rep.target(
            "corral's log: CRI, every line in order",
            format!("{} / {} lines", c.full_in_order, b.lines_total),
            ok,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Memory

/// The resident KiB of a process's `[heap]` mapping (from `/proc/PID/smaps`).
fn heap_kib(pid: i32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut lines = smaps.lines();
    lines.find(|l| l.ends_with("[heap]"))?;
    lines
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// RSS, PSS and resident heap (KiB) of each of `pids`, sampled every 100 ms:
/// `[rss, pss, heap]` per pid.
fn sample_memory(b: &Bench, pids: &[i32], samples: usize) -> R<Vec<[Vec<u64>; 3]>> {
    let mut m: Vec<[Vec<u64>; 3]> = vec![Default::default(); pids.len()];
    for _ in 0..samples {
        b.check_stop()?;
        for (pid, m) in pids.iter().zip(&mut m) {
            if let (Some(rss), Some(pss)) = (
                proc_kib(*pid, "status", "VmRSS"),
                proc_kib(*pid, "smaps_rollup", "Pss"),
            ) {
                m[0].push(rss);
                m[1].push(pss);
                m[2].push(heap_kib(*pid).unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if m.iter().any(|m| m[0].is_empty()) {
        return Err("memory: a monitor was gone before it was sampled".into());
    }
    Ok(m)
}

/// Starts a corral container of `bundle` with `stdio`, and samples its shim (and `also`,
/// pids that run meanwhile) after 300 ms; waits for the exit and deletes it.
fn corral_memory(
    b: &mut Bench,
    bundle: &Path,
    stdio: Stdio,
    conmon_too: bool,
) -> R<Vec<[Vec<u64>; 3]>> {
    let id = b.id("mem");
    let mut client = b.client()?;
    client
        .create(CreateRequest {
            id: id.clone(),
            bundle: bundle.to_path_buf(),
            start: true,
            stdio,
            ..CreateRequest::default()
        })
        .map_err(|e| format!("corral create {id}: {e}"))?;
    let result = (|| -> R<Vec<[Vec<u64>; 3]>> {
        let shim = StateDir::new(&b.state_dir)
            .container(DEFAULT_NAMESPACE, &id)
            .process(INIT_PROCESS)
            .read_shim_pid()
            .map(|(pid, _)| pid)
            .ok_or_else(|| format!("no shim.pid for {id}"))?;
        if !conmon_too {
            std::thread::sleep(Duration::from_millis(300));
            return sample_memory(b, &[shim], 15);
        }
        let run = b.conmon_start("cmem", bundle)?;
        let sampled = read_pid(&run.conmon_pidfile)
            .ok_or_else(|| format!("no conmon pid file for {}", run.id))
            .and_then(|conmon| {
                // Let both settle into their loops, then sample for about 1.5 s.
                std::thread::sleep(Duration::from_millis(300));
                sample_memory(b, &[shim, conmon], 15)
            });
        let waited = b.conmon_wait(&run);
        b.conmon_remove(&run);
        waited?;
        sampled
    })();
    let exit = client.wait(DEFAULT_NAMESPACE, &id, None);
    let _ = client.delete(DEFAULT_NAMESPACE, &id, true);
    let m = result?;
    exit.map_err(|e| format!("corral wait {id}: {e}"))?;
    Ok(m)
}

fn bench_memory(b: &mut Bench, rep: &mut Report) -> R<()> {
    progress("2. memory: a line every 10 ms for 2 s, under corral and conmon at once");
    let bundle = b.bundle("tick10", &ticker(200, 10_000))?;
    let logged = corral_memory(b, &bundle, Stdio::default(), true)?;
    progress("2. memory: the same, corral with stdout on /dev/null (not logged)");
    let null = Stdio {
        stdout: Some("/dev/null".into()),
        ..Stdio::default()
    };
    let unlogged = corral_memory(b, &bundle, null, false)?;
    let max = |v: &Vec<u64>| v.iter().copied().max().unwrap_or(0);
    let cell = |v: &Vec<u64>| format!("{} KiB", max(v));
    rep.line("## 2. Memory while logging");
    rep.line("");
    rep.line(format!(
        "A busybox loop printing a line every 10 ms for 2 s, under corral and under conmon \
         at the same time; VmRSS (`/proc/PID/status`) and Pss (`smaps_rollup`) of corral's \
         shim and of conmon, and the resident part of their `[heap]` mapping (`smaps`), \
         the largest of {} samples 100 ms apart while they log. Then \
         the same loop under corral with its stdout path given as /dev/null (the shim owns \
         no output), alone, for the shim's cost without logging. One shim at a time, so its \
         PSS counts all of its static binary's pages (they are shared among many shims).",
        logged[0][0].len()
    ));
    rep.line("");
    rep.line("| monitor | RSS | PSS | of which heap |");
    rep.line("|---|---|---|---|");
    rep.line(format!(
        "| corral-shim, logging | {} | {} | {} |",
        cell(&logged[0][0]),
        cell(&logged[0][1]),
        cell(&logged[0][2])
    ));
    rep.line(format!(
        "| conmon, logging (k8s-file) | {} | {} | {} |",
        cell(&logged[1][0]),
        cell(&logged[1][1]),
        cell(&logged[1][2])
    ));
    rep.line(format!(
        "| corral-shim, stdout on /dev/null | {} | {} | {} |",
        cell(&unlogged[0][0]),
        cell(&unlogged[0][1]),
        cell(&unlogged[0][2])
    ));
    rep.line("");
    let rss = max(&logged[0][0]);
    rep.target(
        "shim RSS while logging <= 1.2 MiB (1228 KiB)",
        format!("{rss} KiB"),
        rss as f64 <= 1.2 * 1024.0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. logs --follow latency

fn bench_latency(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.lines;
    progress(format!(
        "3. latency: `logs --follow` of a line every 20 ms, {n} lines"
    ));
    let bundle = b.bundle("tick20", &ticker(n + 10, 20_000))?;
    let id = b.id("lat");
    let mut client = b.client()?;
    let result = (|| -> R<Samples> {
        client
            .create(CreateRequest {
                id: id.clone(),
                bundle,
                start: true,
                ..CreateRequest::default()
            })
            .map_err(|e| format!("corral create {id}: {e}"))?;
        // Only lines read after the follow began: the history before it is not latency.
        let since = corral::now_ns();
        let reader = b
            .client()?
            .logs(LogsRequest {
                namespace: DEFAULT_NAMESPACE.into(),
                id: id.clone(),
                follow: true,
                since_ns: Some(since),
                ..LogsRequest::default()
            })
            .map_err(|e| format!("corral logs {id}: {e}"))?;
        let mut lat = Samples::default();
        for batch in reader {
            let batch = batch.map_err(|e| format!("corral logs {id}: {e}"))?;
            let now = corral::now_ns();
            for e in batch {
                lat.push_ms(now.saturating_sub(e.time_ns) as f64 / 1e6);
            }
            if STOP.load(Ordering::SeqCst) {
                return Err("interrupted".into());
            }
        }
        client
            .wait(DEFAULT_NAMESPACE, &id, None)
            .map_err(|e| format!("corral wait {id}: {e}"))?;
        Ok(lat)
    })();
    let _ = client.delete(DEFAULT_NAMESPACE, &id, true);
    let lat = result?;
    rep.line("## 3. `logs --follow` latency");
    rep.line("");
    rep.line(format!(
        "A busybox loop printing a line every 20 ms ({} lines); a `Client::logs` follower \
         records, for each entry, its receipt time minus the entry's timestamp (when the \
         shim read the line). {} entries.",
        n + 10,
        lat.len()
    ));
    rep.line("");
    rep.line("| median | p90 | min | max |");
    rep.line("|---|---|---|---|");
    rep.line(format!(
        "| {} | {} | {} | {} |",
        ms(lat.median()),
        ms(lat.pct(90.0)),
        ms(lat.min()),
        ms(lat.max())
    ));
    rep.line("");
    rep.target(
        "`logs -f` latency, median <= 5 ms",
        ms(lat.median()),
        lat.median() <= 5.0 && lat.len() >= n / 2,
    );
    Ok(())
}

impl Bench {
    fn run_all(&mut self, rep: &mut Report) -> R<()> {
        header(self, rep);
        self.start_daemon()?;
        let sections = self.s.sections.clone();
        for s in sections {
            self.check_stop()?;
            match s {
                Section::Throughput => bench_throughput(self, rep)?,
                Section::Memory => bench_memory(self, rep)?,
                Section::Latency => bench_latency(self, rep)?,
            }
        }
        Ok(())
    }
}

fn main() {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: the logs benchmark drives real runc, conmon and cgroups: run as root");
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
    // conmon daemonizes: as a child subreaper, the bench reaps it.
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
