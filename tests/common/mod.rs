//! The integration suite's fixture: a real `corrald` per test, driving real runc as root.
//!
//! Every test starts its own [`Daemon`] (own socket, state dir and runtime root in a temp
//! dir named after the test and the test process's pid), and uses container ids from
//! [`unique_id`]: ids stay unique across the suite so that leftover checks (cgroups named
//! after the id) never see another test's container or anything else on the machine.
//!
//! Dropping the daemon force-deletes every container it still lists, stops it, falls back
//! to runc itself for anything left, and removes the temp dir. A test that needs root or
//! runc panics when they are missing: the suite never skips silently.

#![allow(dead_code)]

pub mod data_dir;
pub mod images;
pub mod raw;
pub mod registry;

use corral::rpc::Client;
use corral::{ContainerInfo, CreateRequest, ExecProcess, ExecRequest, ExitStatus, KillRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long anything that should happen may take before the test calls it hung. Generous:
/// the machine is shared and noisy; this is for liveness, never for speed.
pub const LIVENESS: Duration = Duration::from_secs(30);

pub const CORRALD: &str = env!("CARGO_BIN_EXE_corrald");
pub const CORRALCTL: &str = env!("CARGO_BIN_EXE_corralctl");
pub const SHIM: &str = env!("CARGO_BIN_EXE_corral-shim");

/// The runc binary the suite drives; panics (never skips) when the machine cannot run it.
pub fn runc() -> &'static Path {
    static RUNC: OnceLock<PathBuf> = OnceLock::new();
    RUNC.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the corral integration tests drive real runc containers and cgroups: \
             run them as root (e.g. `sudo -E cargo test`)"
        );
        let found = corral::runtime::resolve_binary(Path::new("runc")).or_else(|| {
            ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        });
        let runc = found.unwrap_or_else(|| {
            panic!(
                "runc not found in PATH nor in /usr/sbin, /usr/bin, /usr/local/sbin: \
                 the corral integration tests need it (apt-get install runc, or \
                 scripts/install-deps.sh)"
            )
        });
        assert!(
            corral::bundle::BUSYBOX_CANDIDATES
                .iter()
                .any(|p| Path::new(p).is_file()),
            "busybox-static not found at {:?}: the tests build their bundles from it \
             (apt-get install busybox-static)",
            corral::bundle::BUSYBOX_CANDIDATES
        );
        runc
    })
}

/// A container id unique across the whole suite (and across concurrent runs of it):
/// `<prefix>-<pid>-<start>-<n>`.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: OnceLock<u64> = OnceLock::new();
    let start = START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() % 100_000)
            .unwrap_or(0)
    });
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{start}-{n}", std::process::id())
}

/// A create request that starts the container (`runc run -d`) in the default namespace.
/// An exec of `args` in `default`/`id`, stdio on /dev/null.
pub fn exec_req(id: &str, exec_id: &str, args: &[&str]) -> ExecRequest {
    ExecRequest {
        namespace: String::new(),
        id: id.to_string(),
        exec_id: exec_id.to_string(),
        process: ExecProcess::Args(args.iter().map(|s| s.to_string()).collect()),
        stdio: corral::Stdio::default(),
    }
}

/// SIGKILL for the init process of `default`/`id` only.
pub fn kill_init_req(id: &str) -> KillRequest {
    KillRequest {
        namespace: String::new(),
        id: id.to_string(),
        exec_id: None,
        signal: libc::SIGKILL,
        all: false,
    }
}

pub fn run_req(id: &str, bundle: &Path) -> CreateRequest {
    CreateRequest {
        namespace: String::new(),
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        start: true,
        ..Default::default()
    }
}

/// Polls `cond` until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Runs a blocking call on a thread of its own; panics with `what` if it takes longer than
/// `timeout` (a hung RPC must fail the test, not hang the suite).
pub fn within<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {timeout:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the call panicked"),
    }
}

/// Runs a command with a liveness timeout (killed by pid and reported when it hangs).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = rx.recv_timeout(Duration::from_secs(5));
            panic!("{cmd:?} did not finish within {timeout:?}; killed it. Output: {out:?}");
        }
    }
}

/// The exit code of a command, or 128 + signal.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line of /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
}

/// `/proc/<pid>/stat` of one process, if it exists.
pub fn proc_entry(pid: i32) -> Option<ProcEntry> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcEntry {
        pid,
        ppid,
        state,
        comm,
    })
}

/// Every process on the host.
pub fn processes() -> Vec<ProcEntry> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(proc_entry)
                .collect()
        })
        .unwrap_or_default()
}

/// The children of `pid`.
pub fn children_of(pid: i32) -> Vec<ProcEntry> {
    processes().into_iter().filter(|p| p.ppid == pid).collect()
}

/// Every descendant of `pid` (children, their children...).
pub fn descendants(pid: i32) -> Vec<ProcEntry> {
    let all = processes();
    let mut by_parent: HashMap<i32, Vec<&ProcEntry>> = HashMap::new();
    for p in &all {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        for child in by_parent.get(&parent).into_iter().flatten() {
            out.push((*child).clone());
            todo.push(child.pid);
        }
    }
    out
}

/// The zombie processes among `pid`'s descendants.
pub fn zombies_under(pid: i32) -> Vec<ProcEntry> {
    descendants(pid)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    proc_entry(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// The cgroup directories named `id` anywhere in any hierarchy: corral asks runc for
/// `<namespace>/<id>` under its own cgroup, which may itself be nested (e.g. a sandbox's
/// memory cgroup), so the whole tree is searched (it is small).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    assert!(!id.is_empty() && !id.contains('/') && id != "." && id != "..");
    fn walk(dir: &Path, id: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name() == id {
                out.push(path.clone());
            }
            if depth > 0 {
                walk(&path, id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 6, &mut out);
    out
}

/// A pure cgroup-v2 host (one unified hierarchy at /sys/fs/cgroup)?
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of `pid`'s cgroup in the v1 hierarchy of `controller` (e.g. "memory",
/// "pids", "cpu"), or its one cgroup on a v2 host, read from `/proc/<pid>/cgroup`: a
/// container's real cgroup, wherever its runtime put it (nested under the test's own
/// memory cgroup on some hosts).
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    if cgroup_v2() {
        if let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) {
            return Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
    }
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == controller) {
            let rel = path.trim_start_matches('/');
            // Comounted controllers (cpu,cpuacct) have a directory named after all of them.
            for mount in [controller, controllers] {
                let dir = Path::new("/sys/fs/cgroup").join(mount).join(rel);
                if dir.is_dir() {
                    return dir;
                }
            }
            panic!("pid {pid}: no directory for {controller} cgroup {path}");
        }
    }
    panic!("pid {pid} is in no {controller} cgroup: {text}");
}

/// A cgroup file's content, trimmed.
pub fn cgroup_file(pid: u32, controller: &str, file: &str) -> String {
    let path = cgroup_dir(pid, controller).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Edits a bundle's config.json.
pub fn edit_config(bundle: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config.json"))
            .expect("parse config.json");
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).expect("write config.json");
}

/// Creates an empty file (a gate that a container's script waits for).
pub fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
}

/// The numbers in a counter file written by `echo $i >> FILE`, one per line (a line being
/// written at this instant is left out).
pub fn counter_lines(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad line {l:?}", path.display()))
        })
        .collect()
}

/// The last number of a counter file, 0 when it has none yet.
pub fn counter_last(path: &Path) -> u64 {
    counter_lines(path).last().copied().unwrap_or(0)
}

/// Panics unless `lines` are consecutive numbers (no gap, no repeat, no reset).
pub fn assert_consecutive(lines: &[u64], what: &str) {
    for pair in lines.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{what}: the counter went from {} to {}: {lines:?}",
            pair[0],
            pair[1]
        );
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
/// An HTTP GET of `http://ADDR{path}` with curl: status code and body.
pub fn http_get(addr: &str, path: &str) -> (u32, String) {
    let out = output_within(
        Command::new("curl")
            .args([
                "-s",
                "-S",
                "--max-time",
                "20",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!("http://{addr}{path}")),
        LIVENESS,
    );
    assert_eq!(code(&out), 0, "curl {path}: {}", stderr(&out));
    let text = stdout(&out);
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// How many file descriptors `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
}

/// `pid`'s resident set size in KiB (VmRSS).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The topics of `events`, in order.
pub fn topics_of(events: &[corral::Event]) -> Vec<corral::Topic> {
    events.iter().map(|e| e.topic).collect()
}

/// `strace` attached to a process, delaying one syscall (all of its calls, or only those on
/// `paths`): makes a narrow window in the product wide enough for a test to act in it.
/// Killed (by its own pid) when dropped; the traced process carries on.
pub struct SlowSyscalls(Child);

impl SlowSyscalls {
    /// Attaches to `pid` (and, with `follow`, to every child it starts from now on) and
    /// delays each `syscall` that touches one of `paths` (any, when empty) by `delay`.
    pub fn attach(
        pid: i32,
        syscall: &str,
        delay: Duration,
        follow: bool,
        paths: &[&Path],
    ) -> SlowSyscalls {
        let mut cmd = Command::new("strace");
        cmd.args(["-qq", "-o", "/dev/null", "-e"])
            .arg(format!("trace={syscall}"))
            .arg("-e")
            .arg(format!(
                "inject={syscall}:delay_enter={}",
                delay.as_micros()
            ));
        if follow {
            cmd.arg("-f");
        }
        for p in paths {
            cmd.arg("-P").arg(p);
        }
        let child = cmd
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run strace ({e}): this test needs it (apt-get install strace)")
            });
        wait_until(LIVENESS, &format!("strace to attach to {pid}"), || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        });
        SlowSyscalls(child)
    }

    /// Waits until the traced process has exited (strace exits with it).
    pub fn finish(mut self) {
        let pid = self.0.id();
        let child = &mut self.0;
        wait_until(LIVENESS, &format!("strace {pid} to finish"), || {
            child.try_wait().ok().flatten().is_some()
        });
    }
}

impl Drop for SlowSyscalls {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A thread of a descendant of `root` named `comm` that sits in syscall number `nr` (as
/// `/proc/<tid>/syscall` tells), still there after `held`: one a [`SlowSyscalls`] delays.
pub fn task_held_in_syscall(root: i32, comm: &str, nr: u32, held: Duration) -> Option<i32> {
    let in_it = |tid: i32| {
        std::fs::read_to_string(format!("/proc/{tid}/syscall"))
            .is_ok_and(|s| s.split_whitespace().next() == Some(&nr.to_string()))
    };
    let tids: Vec<i32> = descendants(root)
        .into_iter()
        .filter(|p| p.comm == comm)
        .flat_map(|p| {
            std::fs::read_dir(format!("/proc/{}/task", p.pid))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|tid| in_it(*tid))
        .collect();
    if tids.is_empty() {
        return None;
    }
    std::thread::sleep(held);
    tids.into_iter().find(|tid| in_it(*tid))
}

/// Processes whose working directory is under `dir`: shims work in their process dir.
pub fn processes_in(dir: &Path) -> Vec<ProcEntry> {
    processes()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{}/cwd", p.pid)).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// A subscription read on a thread of its own, so that tests can wait with a timeout.
pub struct Events {
    rx: mpsc::Receiver<corral::Result<corral::Event>>,
}

impl Events {
    /// Subscribes on a new connection, and returns once the daemon counts the new
    /// subscriber (the wire protocol does not acknowledge a subscription): events published
    /// after this returns are delivered.
    pub fn subscribe(socket: &Path, filter: corral::EventFilter) -> Events {
        let subscribers = || {
            Client::connect(socket)
                .and_then(|mut c| c.info())
                .map(|i| i.subscribers)
                .expect("ask corrald how many subscribers it has")
        };
        let before = subscribers();
        let sub = Client::connect(socket)
            .and_then(|c| c.subscribe(filter))
            .expect("subscribe to events");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for item in sub {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        wait_until(LIVENESS, "corrald to register the subscription", || {
            subscribers() > before
        });
        Events { rx }
    }

    /// The next event; panics after `timeout`, on a stream error or an end of stream.
    pub fn next(&self, timeout: Duration) -> corral::Event {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("event stream failed: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no event within {timeout:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the event stream ended"),
        }
    }

    /// Events until (and including) the first one that satisfies `last`.
    pub fn until(
        &self,
        what: &str,
        mut last: impl FnMut(&corral::Event) -> bool,
    ) -> Vec<corral::Event> {
        let deadline = Instant::now() + LIVENESS;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.rx.recv_timeout(left) {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => {
                    panic!("event stream failed while waiting for {what}: {e}; got {out:#?}")
                }
                Err(_) => panic!("no {what} within {LIVENESS:?}; events so far: {out:#?}"),
            };
            let done = last(&event);
            out.push(event);
            if done {
                return out;
            }
        }
    }

    /// Whatever arrives within `quiet` (used to show that nothing else comes).
    pub fn drain(&self, quiet: Duration) -> Vec<corral::Event> {
        let mut out = Vec::new();
        while let Ok(item) = self.rx.recv_timeout(quiet) {
            out.push(item.expect("event stream failed"));
        }
        out
    }
}

/// One corrald with its own socket, state dir and runtime root.
pub struct Daemon {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pid: i32,
    namespaces: Mutex<BTreeSet<String>>,
    /// Extra corrald flags (e.g. `--metrics-address`), kept across restarts.
    extra_args: Vec<String>,
    /// Extra environment variables for corrald, kept across restarts.
    envs: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon for the test `name` and waits until it answers on its socket.
    pub fn start(name: &str) -> Daemon {
        Daemon::start_with(name, &[])
    }

    /// Starts a daemon with extra corrald flags (kept by [`Daemon::restart`]).
    pub fn start_with(name: &str, extra_args: &[&str]) -> Daemon {
        Daemon::start_with_env(name, extra_args, &[])
    }

    /// Starts a daemon with extra corrald flags and environment variables (both kept by
    /// [`Daemon::restart`]).
    pub fn start_with_env(name: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        runc();
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let short: String = name.chars().take(40).collect();
        let dir = PathBuf::from(format!(
            "/tmp/corral-test-{short}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's temp dir");
        let mut daemon = Daemon {
            name: name.to_string(),
            socket: dir.join("corrald.sock"),
            state_dir: dir.join("state"),
            root: dir.join("runc-root"),
            log: dir.join("corrald.log"),
            dir,
            child: None,
            pid: 0,
            namespaces: Mutex::new(BTreeSet::from(["default".to_string()])),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        daemon.spawn();
        daemon
    }

    /// Starts a new corrald on the same socket, state dir and root after [`Daemon::stop`]:
    /// it adopts the containers in the state dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped daemon");
        self.spawn();
    }

    /// The corrald command line, without the log redirection.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(CORRALD);
        // No host config file (/etc/corral/corrald.toml) reaches a test's daemon; a test's
        // own `--config FILE` in `extra_args` comes later and wins.
        cmd.arg("--config")
            .arg("/dev/null")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--root")
            .arg(&self.root)
            .args(
                // A test's own --data-dir (in extra_args) replaces the temp dir's.
                (!self.extra_args.iter().any(|a| a == "--data-dir"))
                    .then(|| ["--data-dir".into(), self.dir.join("data").into_os_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--runtime")
            .arg(runc())
            .arg("--shim")
            .arg(SHIM)
            .arg("--log-level")
            .arg("debug")
            .args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .env_remove("CORRAL_CONFIG")
            .env_remove("CORRAL_LOG")
            .env_remove("CORRAL_LOG_FORMAT")
            .stdin(Stdio::null());
        cmd
    }

    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon log");
        let child = self
            .command()
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .expect("start corrald");
        self.pid = child.id() as i32;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "corrald exited at startup with {status}; its log:\n{}",
                    self.log_text()
                );
            }
            if Client::connect(&self.socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "corrald did not accept connections on {} within 10 s; its log:\n{}",
                    self.socket.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A new connected client.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap_or_else(|e| {
            panic!(
                "connect to corrald: {e}; {}; its log:\n{}",
                self.death_note().unwrap_or_default(),
                self.log_tail(40)
            )
        })
    }

    /// Runs `corralctl --socket S ARGS...` (with a liveness timeout).
    pub fn ctl(&self, args: &[&str]) -> Output {
        if let Some(i) = args.iter().position(|a| *a == "-n" || *a == "--namespace") {
            if let Some(ns) = args.get(i + 1) {
                self.use_namespace(ns);
            }
        }
        output_within(
            Command::new(CORRALCTL)
                .env_remove("CORRAL_SOCKET")
                .env_remove("CORRAL_NAMESPACE")
                .arg("--socket")
                .arg(&self.socket)
                .args(args),
            LIVENESS,
        )
    }

    /// Runs corralctl and insists on exit 0; returns its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert_eq!(
            code(&out),
            0,
            "corralctl {args:?} failed: stdout {:?}, stderr {:?}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs corralctl and insists on a non-zero exit; returns its stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert_ne!(
            code(&out),
            0,
            "corralctl {args:?} succeeded: stdout {:?}",
            stdout(&out)
        );
        stderr(&out)
    }

    /// A runnable busybox bundle in the temp dir running `args`.
    ///
    /// Retried on "Text file busy": make_busybox executes the busybox copy it has just
    /// written, which fails when another test thread forks at that moment (a product bug,
    /// asserted by tests/bundle.rs; retried here so that other tests test their own thing).
    pub fn bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        let dir = self.dir.join("bundles").join(name);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut attempt = 0;
        loop {
            match corral::bundle::make_busybox(&dir, &args) {
                Ok(()) => return dir,
                Err(e) if attempt < 20 && e.to_string().contains("Text file busy") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 * attempt));
                }
                Err(e) => panic!("make bundle {}: {e}", dir.display()),
            }
        }
    }

    /// A bundle whose shell writes a counter to `/count` every 50 ms (its rootfs's
    /// `count` file shows whether it runs, is frozen or was restored).
    pub fn counter_bundle(&self) -> PathBuf {
        self.bundle(
            "counter",
            &[
                "sh",
                "-c",
                "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.05; done",
            ],
        )
    }

    /// A path in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Records a namespace the test uses, so that Drop cleans it too (namespaces with a
    /// state directory are found anyway).
    pub fn use_namespace(&self, ns: &str) {
        self.namespaces.lock().unwrap().insert(ns.to_string());
    }

    /// Creates a container (through a new client, with a liveness timeout).
    pub fn create(&self, req: CreateRequest) -> corral::Result<ContainerInfo> {
        if !req.namespace.is_empty() {
            self.use_namespace(&req.namespace);
        }
        let socket = self.socket.clone();
        let what = format!("create {}", req.id);
        within(LIVENESS, &what, move || {
            Client::connect(&socket)?.create(req)
        })
    }

    /// Creates and starts a container, insisting on success.
    pub fn run(&self, id: &str, bundle: &Path) -> ContainerInfo {
        self.create(run_req(id, bundle)).unwrap_or_else(|e| {
            panic!(
                "run {id}: {e}; {}; daemon log:\n{}",
                self.death_note().unwrap_or_default(),
                self.log_tail(40)
            )
        })
    }

    /// Waits for a process's exit through a new client, with a liveness timeout.
    pub fn wait(&self, ns: &str, id: &str, exec_id: Option<&str>) -> corral::Result<ExitStatus> {
        let socket = self.socket.clone();
        let (ns, id, exec) = (ns.to_string(), id.to_string(), exec_id.map(str::to_string));
        let what = format!("wait {ns}/{id} {exec:?}");
        within(LIVENESS, &what, move || {
            Client::connect(&socket)?.wait(&ns, &id, exec.as_deref())
        })
    }

    /// Waits and insists on an exit code.
    pub fn wait_code(&self, ns: &str, id: &str, exec_id: Option<&str>) -> u32 {
        self.wait(ns, id, exec_id)
            .unwrap_or_else(|e| panic!("wait {ns}/{id} {exec_id:?}: {e}"))
            .code
    }

    /// Deletes a container through a new client, with a liveness timeout.
    pub fn delete(&self, ns: &str, id: &str, force: bool) -> corral::Result<ContainerInfo> {
        let socket = self.socket.clone();
        let (ns, id) = (ns.to_string(), id.to_string());
        let what = format!("delete {ns}/{id}");
        within(LIVENESS, &what, move || {
            Client::connect(&socket)?.delete(&ns, &id, force)
        })
    }

    /// The container ids listed in a namespace.
    pub fn list_ids(&self, ns: &str) -> Vec<String> {
        let socket = self.socket.clone();
        let ns = ns.to_string();
        within(LIVENESS, "list", move || {
            Client::connect(&socket)?.list(&ns, BTreeMap::new())
        })
        .expect("list containers")
        .into_iter()
        .map(|c| c.id)
        .collect()
    }

    /// Panics unless the daemon process is running and answers a request.
    pub fn assert_alive(&self) {
        if let Some(note) = self.death_note() {
            panic!("{note}; its log:\n{}", self.log_tail(60));
        }
        let socket = self.socket.clone();
        let version = within(LIVENESS, "version request", move || {
            Client::connect(&socket)?.version()
        });
        match version {
            Ok((_, protocol)) => assert_eq!(protocol, corral::rpc::PROTOCOL_VERSION),
            Err(e) => panic!(
                "corrald does not answer: {e}; its log:\n{}",
                self.log_tail(60)
            ),
        }
    }

    /// `<state>/<ns>/<id>`.
    pub fn container_state_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.state_dir.join(ns).join(id)
    }

    /// `<root>/<ns>/<id>`: runc's own state for the container.
    pub fn runc_state_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.root.join(ns).join(id)
    }

    /// Checks that `id` (in `default`) is free again after a refused or failed request: a
    /// container of that id runs `good` to exit 0, is deleted and leaves nothing.
    pub fn assert_id_reusable(&self, id: &str, good: &Path) {
        self.run(id, good);
        assert_eq!(self.wait_code("", id, None), 0);
        self.delete("", id, false).unwrap();
        self.assert_no_leftovers("default", id);
    }

    /// Panics if anything of container `ns/id` is left: its state dir, runc's state, a
    /// cgroup named after it, or a process (shim) working in its state dir.
    /// Where the daemon keeps `ns`/`id`'s logs (the default under the test's data dir).
    pub fn log_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.dir.join("data").join("logs").join(ns).join(id)
    }

    pub fn assert_no_leftovers(&self, ns: &str, id: &str) {
        let state = self.container_state_dir(ns, id);
        assert!(
            !state.exists(),
            "{ns}/{id}: state dir {} is left behind",
            state.display()
        );
        let runc_state = self.runc_state_dir(ns, id);
        assert!(
            !runc_state.exists(),
            "{ns}/{id}: runc state {} is left behind",
            runc_state.display()
        );
        let cgroups = cgroup_dirs(id);
        assert!(
            cgroups.is_empty(),
            "{ns}/{id}: cgroups left behind: {cgroups:?}"
        );
        let logs = self.log_dir(ns, id);
        assert!(
            !logs.exists(),
            "{ns}/{id}: logs {} are left behind",
            logs.display()
        );
        // A shim may still be between closing its exit fifo and exiting: give it a moment.
        let mut left = Vec::new();
        let settled = (0..200).any(|_| {
            left = processes_in(&state);
            left.is_empty() || {
                std::thread::sleep(Duration::from_millis(25));
                false
            }
        });
        assert!(
            settled,
            "{ns}/{id}: processes left working in its state dir: {left:?}"
        );
    }

    /// Every path under the state dir and the runtime root, except the event journal
    /// (which grows with every event): a refused request must leave this unchanged.
    pub fn snapshot(&self) -> BTreeSet<PathBuf> {
        // Namespace directories themselves may appear on first use: only what is in them
        // counts.
        fn walk(dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.file_name().is_some_and(|n| n == corral::JOURNAL_DIR) {
                    continue;
                }
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if depth > 0 || !is_dir {
                    out.insert(path.clone());
                }
                if is_dir {
                    walk(&path, depth + 1, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.state_dir, 0, &mut out);
        walk(&self.root, 0, &mut out);
        out
    }

    /// Why the daemon is gone, if it is: a clean "stopped" at the end of its log means a
    /// SIGTERM or SIGINT from outside the test (someone's `pkill corrald`), not a crash.
    pub fn death_note(&self) -> Option<String> {
        if self.child.is_none() || alive(self.pid) {
            return None;
        }
        let log = self.log_text();
        let last = log.lines().last().unwrap_or_default().to_string();
        Some(if last.contains("corrald stopped") {
            format!(
                "corrald (pid {}) was stopped during the test by a SIGTERM/SIGINT from outside \
                 it (a `pkill corrald` on this machine?); its log ends with: {last}",
                self.pid
            )
        } else {
            format!(
                "corrald (pid {}) died during the test; its log ends with: {last}",
                self.pid
            )
        })
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops the daemon with SIGTERM and reaps it; returns its exit status. Containers keep
    /// running (the daemon's documented behaviour).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the daemon was already stopped");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().expect("reap corrald");
                panic!(
                    "corrald did not exit within 10 s of SIGTERM (killed it: {status}); its log:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (a crash: no cleanup of its own) and reaps it.
    /// Containers and their shims keep running; [`Daemon::restart`] starts the next one.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the daemon was already stopped");
        let _ = child.kill();
        let status = child.wait().expect("reap corrald");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "corrald did not die of SIGKILL: {status}"
        );
    }

    /// The shim of a process, from `<state>/<ns>/<id>/<process>/shim.pid` ("pid starttime").
    pub fn shim_pid(&self, ns: &str, id: &str, process: &str) -> i32 {
        let file = self
            .container_state_dir(ns, id)
            .join(process)
            .join("shim.pid");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        text.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{} holds {text:?}, not \"pid starttime\"", file.display()))
    }

    /// `<state>/_events`: the event journal's segments.
    pub fn journal_dir(&self) -> PathBuf {
        self.state_dir.join(corral::JOURNAL_DIR)
    }

    /// The daemon's counters.
    pub fn info(&self) -> corral::DaemonInfo {
        let socket = self.socket.clone();
        within(LIVENESS, "info", move || Client::connect(&socket)?.info())
            .unwrap_or_else(|e| panic!("info: {e}; daemon log:\n{}", self.log_tail(40)))
    }

    /// Every event of the journal that passes `filter`, replayed from sequence 0 (as
    /// `corralctl events --since 0` does) up to the last event published when this is
    /// called. Panics on a stream error or if the replay stalls.
    pub fn replay(&self, mut filter: corral::EventFilter) -> Vec<corral::Event> {
        filter.since = Some(corral::Since::Seq(0));
        let last = self.info().last_seq;
        // A marker subscription tells where the replay ends: every event up to `last` is
        // published, so the unfiltered stream reaches `last` and nothing later is needed.
        let socket = self.socket.clone();
        within(LIVENESS, "replay the journal", move || {
            let mut all = Client::connect(&socket)
                .and_then(|c| {
                    c.subscribe(corral::EventFilter {
                        since: Some(corral::Since::Seq(0)),
                        ..Default::default()
                    })
                })
                .expect("subscribe with since 0");
            all.set_timeout(Some(LIVENESS)).expect("set a read timeout");
            let mut out = Vec::new();
            if last == 0 {
                return out;
            }
            for item in all.by_ref() {
                let event = item.unwrap_or_else(|e| panic!("replay failed: {e}; got {out:#?}"));
                let seq = event.seq;
                if filter.matches(&event) {
                    out.push(event);
                }
                if seq >= last {
                    return out;
                }
            }
            panic!("the replay ended before event {last}; got {out:#?}");
        })
    }

    /// Whether the daemon was stopped by [`Daemon::stop`].
    pub fn stopped(&self) -> bool {
        self.child.is_none()
    }

    fn known_namespaces(&self) -> BTreeSet<String> {
        let mut all = self.namespaces.lock().unwrap().clone();
        for base in [&self.state_dir, &self.root] {
            if let Ok(dir) = std::fs::read_dir(base) {
                for e in dir.flatten() {
                    if e.path().is_dir() {
                        if let Some(n) = e.file_name().to_str() {
                            all.insert(n.to_string());
                        }
                    }
                }
            }
        }
        all
    }

    /// Force-deletes every container the daemon lists; returns what went wrong.
    fn delete_everything(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for ns in self.known_namespaces() {
            if corral::validate_id("namespace", &ns).is_err() {
                continue;
            }
            let socket = self.socket.clone();
            let ns2 = ns.clone();
            let listed = within(LIVENESS, "list (cleanup)", move || {
                Client::connect(&socket)?.list(&ns2, BTreeMap::new())
            });
            let containers = match listed {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("list {ns}: {e}"));
                    continue;
                }
            };
            for c in containers {
                if let Err(e) = self.delete(&ns, &c.id, true) {
                    problems.push(format!("force delete {ns}/{}: {e}", c.id));
                }
            }
        }
        problems
    }

    /// Last resort for what the daemon did not clean: runc's own delete --force on every
    /// container left under our runtime root, then the shims working in our state dir.
    fn runc_cleanup(&self) -> Vec<String> {
        let mut left = Vec::new();
        if let Ok(namespaces) = std::fs::read_dir(&self.root) {
            for ns in namespaces.flatten() {
                // Checkpoints live beside the namespaces (`_checkpoints`): not runc state.
                if ns.file_name() == corral::checkpoint::CHECKPOINTS_DIR {
                    continue;
                }
                let Ok(ids) = std::fs::read_dir(ns.path()) else {
                    continue;
                };
                for id in ids.flatten() {
                    let id = id.file_name().to_string_lossy().into_owned();
                    left.push(format!("runc state {}/{id}", ns.path().display()));
                    let _ = output_within(
                        Command::new(runc())
                            .arg("--root")
                            .arg(ns.path())
                            .arg("delete")
                            .arg("--force")
                            .arg(&id),
                        LIVENESS,
                    );
                }
            }
        }
        let shims: Vec<ProcEntry> = processes_in(&self.state_dir)
            .into_iter()
            .filter(|p| p.comm == "corral-shim")
            .collect();
        if !shims.is_empty() {
            // Their containers are gone now; give them a moment to notice.
            let pids: Vec<i32> = shims.iter().map(|p| p.pid).collect();
            let gone = (0..100).any(|_| {
                pids.iter().all(|p| !alive(*p)) || {
                    std::thread::sleep(Duration::from_millis(50));
                    false
                }
            });
            if !gone {
                for p in pids.iter().filter(|p| alive(**p)) {
                    left.push(format!("corral-shim pid {p} still running; killed it"));
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        left
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut problems = Vec::new();
        if self.child.is_some() {
            if alive(self.pid) {
                problems.extend(self.delete_everything());
            } else {
                let note = self.death_note().unwrap_or_else(|| "corrald died".into());
                eprintln!("NOTE: {note}");
                problems.push(note);
            }
            if let Some(mut child) = self.child.take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            if !status.success() {
                                problems.push(format!("corrald exited with {status} on SIGTERM"));
                            }
                            break;
                        }
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            problems.push("corrald did not exit within 10 s of SIGTERM".into());
                            break;
                        }
                    }
                }
            }
        }
        let forced = self.runc_cleanup();
        if panicking || !problems.is_empty() {
            let mut log = String::new();
            let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut log));
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- corrald log of {} (last 80 lines of {}) ----\n{}\n----",
                self.name,
                self.log.display(),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
        if !forced.is_empty() {
            eprintln!(
                "cleanup of {} had to use runc directly for: {forced:?}",
                self.name
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !panicking && !problems.is_empty() {
            panic!("cleanup of {} failed: {problems:#?}", self.name);
        }
    }
}
