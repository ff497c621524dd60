//! What the benches share: settings from the environment, samples and their statistics,
//! the markdown report, running commands and reading /proc, and the stop signal.
#![allow(dead_code)] // each bench uses its own part of it

use std::fmt::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub type R<T> = Result<T, String>;

/// Set by SIGINT or SIGTERM: the bench stops at the next step and cleans up.
pub static STOP: AtomicBool = AtomicBool::new(false);

pub extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn env_usize(name: &str, default: usize) -> R<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Durations in milliseconds.
#[derive(Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }
    pub fn push_ms(&mut self, ms: f64) {
        self.0.push(ms);
    }
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    /// Nearest-rank percentile, `p` in 0..=100.
    pub fn pct(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b <= 0.0 {
        "-".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

pub fn kib(v: u64) -> String {
    if v >= 1024 {
        format!("{:.2} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "**pass**"
    } else {
        "**FAIL**"
    }
}

pub fn cmd_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The state letter of `/proc/<pid>/stat`, or `None` when the process is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// `(key, KiB)` lines of a /proc file such as `smaps_rollup` or `status`.
pub fn proc_kib(pid: i32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[derive(Default)]
pub struct Report {
    pub text: String,
    /// (target, measured, pass)
    pub targets: Vec<(String, String, bool)>,
}

impl Report {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }
    pub fn target(&mut self, what: &str, measured: String, ok: bool) {
        self.targets.push((what.to_string(), measured, ok));
    }
    /// A table of timings, a row each (`first` names the first column): median, p90, min,
    /// and `base`'s median over the row's.
    pub fn timings(&mut self, first: &str, rows: &[(&str, &Samples)], base: &Samples) {
        self.line(format!(
            "| {first} | median | p90 | min | corral / this (median) |"
        ));
        self.line("|---|---|---|---|---|");
        for (what, s) in rows {
            self.line(format!(
                "| {what} | {} | {} | {} | {} |",
                ms(s.median()),
                ms(s.pct(90.0)),
                ms(s.min()),
                ratio(base.median(), s.median()),
            ));
        }
    }
}

pub fn progress(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

pub fn summary(rep: &mut Report, started: Instant) {
    if !rep.targets.is_empty() {
        rep.line("## Targets");
        rep.line("");
        rep.line("| target | measured | verdict |");
        rep.line("|---|---|---|");
        let rows: Vec<String> = rep
            .targets
            .iter()
            .map(|(what, got, ok)| format!("| {what} | {got} | {} |", verdict(*ok)))
            .collect();
        for r in rows {
            rep.line(r);
        }
        rep.line("");
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        rep.text,
        "Total bench time {:.0} s; load average at the end {}.",
        started.elapsed().as_secs_f64(),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

// What tests/common/images.rs and registry.rs take from tests/common/mod.rs (the benches
// include those files with #[path]).

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
            // SAFETY: SIGKILL to our own child, by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv_timeout(Duration::from_secs(5));
            panic!("{cmd:?} did not finish within {timeout:?}; killed it. Output: {out:?}");
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Stops a bench's corrald (SIGTERM, SIGKILL if it is still there after 5 s), then kills
/// what its containers left (their init processes and shims, each checked against its
/// recorded start time) and force-deletes their runtime state under `corral_root`.
pub fn stop_daemon_and_leftovers(
    daemon: Option<std::process::Child>,
    state_dir: &std::path::Path,
    corral_root: &std::path::Path,
    runc: &std::path::Path,
    problems: &mut Vec<String>,
) {
    use corral::layout::{proc_starttime, StateDir};
    if let Some(mut child) = daemon {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if t.elapsed() > Duration::from_secs(5) => {
                    problems.push("corrald ignored SIGTERM for 5 s; killed".into());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    // Whatever the daemon left: shims and container processes, then runtime state.
    let state = StateDir::new(state_dir);
    let Ok(namespaces) = std::fs::read_dir(state.path()) else {
        return;
    };
    for ns in namespaces.flatten().filter(|e| e.path().is_dir()) {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let id = c.file_name().to_string_lossy().into_owned();
            let dir = state.container(&ns_name, &id).process(corral::INIT_PROCESS);
            let mut pids = Vec::new();
            if let (Some(pid), Some(start)) = (dir.read_pid(), dir.read_starttime()) {
                if proc_starttime(pid) == Some(start) {
                    pids.push(pid);
                }
            }
            if let Some((pid, start)) = dir.read_shim_pid() {
                if proc_starttime(pid) == Some(start) {
                    pids.push(pid);
                }
            }
            for pid in pids {
                problems.push(format!("killed leftover pid {pid} of {ns_name}/{id}"));
                // SAFETY: a pid checked against its recorded start time.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = Command::new(runc)
                .arg("--root")
                .arg(corral_root.join(&ns_name))
                .args(["delete", "--force", &id])
                .output();
        }
    }
}

/// Reaps every exited child except `keep` (the daemon): a bench is a child subreaper, so
/// runc's detached container processes (and conmon, which daemonizes) end up as its
/// children.
pub fn reap_strays(keep: Option<i32>) {
    while let Some(pid) = corral::reaper::exited_child().filter(|&pid| Some(pid) != keep) {
        let mut status = 0;
        // SAFETY: reaping a child that was just seen to have exited.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}

/// Turns `client` into a subscription to every event of the default namespace, with
/// `timeout` on each read, and gives the daemon a moment to register it before anything it
/// should see happens.
pub fn subscribe_all(
    client: corral::rpc::Client,
    timeout: Duration,
) -> R<corral::rpc::Subscription> {
    let sub = client
        .subscribe(corral::EventFilter {
            namespace: Some(corral::DEFAULT_NAMESPACE.into()),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    sub.set_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(sub)
}
