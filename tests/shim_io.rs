//! The shim's own IO, driven directly (no daemon): the real `corral-shim` runs real runc on
//! a busybox bundle in a temp shim dir, with `--log` (CRI lines, rotation) and `--terminal`
//! (console socket, sizes, resize over the control fifo, stdin into the terminal).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{edit_config, runc, unique_id, wait_until, LIVENESS, SHIM};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One container run through a shim: its temp dir (bundle, runc root, shim dir), removed
/// with the container when dropped.
struct Run {
    id: String,
    tmp: PathBuf,
    bundle: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    shim: Option<Child>,
    exit_fifo: Option<File>,
    shim_bin: PathBuf,
}

impl Run {
    /// A busybox bundle running `script` with `sh -c`, with or without a terminal.
    fn new(prefix: &str, script: &str, terminal: bool) -> Run {
        runc();
        let id = unique_id(prefix);
        // Short: console.sock must fit a socket address.
        let tmp = PathBuf::from(format!("/tmp/shimio-{id}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let (bundle, root, dir) = (tmp.join("b"), tmp.join("r"), tmp.join("s"));
        for d in [&bundle, &root, &dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        corral::bundle::make_busybox(&bundle, &["sh".into(), "-c".into(), script.into()]).unwrap();
        edit_config(&bundle, |spec| {
            spec["process"]["terminal"] = serde_json::Value::Bool(terminal);
        });
        for fifo in ["exit", "control"] {
            nix::unistd::mkfifo(
                &dir.join(fifo),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        }
        Run {
            id,
            tmp,
            bundle,
            root,
            dir,
            shim: None,
            exit_fifo: None,
            shim_bin: SHIM.into(),
        }
    }

    fn log(&self) -> PathBuf {
        self.tmp.join("c.log")
    }

    /// Starts the shim (`run` mode) with `extra` flags and returns its answer line.
    fn start(&mut self, extra: &[&str]) -> String {
        self.start_as("run", extra)
    }

    /// Starts the shim in `mode` (`run` or `create`) with `extra` flags; its answer line.
    fn start_as(&mut self, mode: &str, extra: &[&str]) -> String {
        // The exit fifo's read end first, as the daemon does.
        self.exit_fifo = Some(
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(self.dir.join("exit"))
                .unwrap(),
        );
        let mut shim = Command::new(&self.shim_bin)
            .args(["--mode", mode, "--runtime"])
            .arg(runc())
            .arg("--root")
            .arg(&self.root)
            .args(["--id", &self.id, "--bundle"])
            .arg(&self.bundle)
            .args(extra)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(self.dir.join("shim.log")).unwrap())
            .spawn()
            .unwrap();
        let mut answer = String::new();
        shim.stdout
            .take()
            .unwrap()
            .read_to_string(&mut answer)
            .unwrap();
        self.shim = Some(shim);
        assert!(
            answer.starts_with("ok "),
            "shim answered {answer:?}; shim.log: {}",
            std::fs::read_to_string(self.dir.join("shim.log")).unwrap_or_default()
        );
        answer
    }

    /// Waits for the exit fifo's message and end-of-file: `(code, shim took since exit)`.
    fn wait_exit(&mut self) -> u32 {
        let mut fifo = self.exit_fifo.take().unwrap();
        let deadline = Instant::now() + LIVENESS;
        let mut msg = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match fifo.read(&mut buf) {
                Ok(0) if !msg.is_empty() => break,
                Ok(n) => msg.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read exit fifo: {e}"),
            }
            assert!(Instant::now() < deadline, "no exit within {LIVENESS:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = String::from_utf8(msg).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn wait_shim(&mut self) {
        let mut shim = self.shim.take().unwrap();
        let status = shim.wait().unwrap();
        assert!(status.success(), "shim exited with {status:?}");
        assert!(
            !self.dir.join("console.sock").exists(),
            "console.sock left behind"
        );
    }

    fn control(&self, msg: &str) {
        let mut fifo = OpenOptions::new()
            .write(true)
            .open(self.dir.join("control"))
            .unwrap();
        fifo.write_all(msg.as_bytes()).unwrap();
    }

    fn runc(&self, args: &[&str]) {
        let _ = Command::new(runc())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn kill(&self) {
        self.runc(&["kill", &self.id, "KILL"]);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let id = self.id.clone();
        self.runc(&["delete", "-f", &id]);
        if let Some(mut shim) = self.shim.take() {
            let _ = shim.kill();
            let _ = shim.wait();
        }
        // SHIMIO_KEEP=1 keeps the temp dir (log, shim.log) to look at.
        if std::env::var_os("SHIMIO_KEEP").is_none_or(|v| v.is_empty()) {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// One parsed CRI entry.
#[derive(Debug)]
struct Entry {
    stream: String,
    full: bool,
    content: Vec<u8>,
}

/// Parses a CRI log, checking every line's shape.
fn entries(bytes: &[u8]) -> Vec<Entry> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "log ends mid-line"
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let ts = &line[..30];
            assert!(
                ts[4] == b'-'
                    && ts[10] == b'T'
                    && ts[19] == b'.'
                    && ts[29] == b'Z'
                    && ts[20..29].iter().all(u8::is_ascii_digit),
                "bad timestamp in {:?}",
                String::from_utf8_lossy(line)
            );
            let rest = &line[31..];
            let stream = String::from_utf8(rest[..6].to_vec()).unwrap();
            assert!(stream == "stdout" || stream == "stderr", "{stream}");
            let tag = rest[7];
            assert!(tag == b'F' || tag == b'P', "tag {}", tag as char);
            assert_eq!(rest[8], b' ');
            Entry {
                stream,
                full: tag == b'F',
                content: rest[9..].to_vec(),
            }
        })
        .collect()
}

/// The lines of one stream, pieces joined; a trailing partial is returned as it is.
fn lines_of(entries: &[Entry], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut open = false;
    for e in entries.iter().filter(|e| e.stream == stream) {
        cur.extend_from_slice(&e.content);
        open = !e.full;
        if e.full {
            out.push(String::from_utf8_lossy(&cur).into_owned());
            cur.clear();
        }
    }
    if open {
        out.push(String::from_utf8_lossy(&cur).into_owned());
    }
    out
}

fn read_log(path: &Path) -> Vec<Entry> {
    entries(&std::fs::read(path).unwrap_or_default())
}

#[test]
fn stdout_and_stderr_become_cri_lines_complete_at_exit() {
    let mut run = Run::new(
        "shimio-cri",
        "echo out-1; echo err-1 >&2; echo; printf partial; exit 3",
        false,
    );
    let log = run.log();
    run.start(&["--log", log.to_str().unwrap()]);
    assert_eq!(run.wait_exit(), 3);
    // The exit is known: the log is complete already.
    let entries = read_log(&log);
    assert_eq!(lines_of(&entries, "stdout"), ["out-1", "", "partial"]);
    assert_eq!(lines_of(&entries, "stderr"), ["err-1"]);
    let last = entries.iter().rfind(|e| e.stream == "stdout").unwrap();
    assert!(!last.full, "a trailing partial is P");
    run.wait_shim();
    assert_eq!(
        std::fs::read_to_string(run.dir.join("exitStatus")).unwrap(),
        "3"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777 & !0o022, 0o640 & !0o022);
    assert!(!run.dir.join("log-errors").exists());
}

#[test]
fn one_mib_of_output_is_all_there() {
    // seq 1 152000 is 1 052 894 bytes, over 1 MiB; every number, in order, a whole line.
    let mut run = Run::new("shimio-mib", "seq 1 152000; seq 1 1000 >&2", false);
    let log = run.log();
    run.start(&["--log", log.to_str().unwrap()]);
    assert_eq!(run.wait_exit(), 0);
    let entries = read_log(&log);
    let out = lines_of(&entries, "stdout");
    assert_eq!(out.len(), 152_000);
    for (i, line) in out.iter().enumerate() {
        assert_eq!(line, &(i + 1).to_string());
    }
    assert_eq!(lines_of(&entries, "stderr").len(), 1000);
    run.wait_shim();
}

#[test]
fn the_log_rotates_and_keeps_n_files() {
    let script = "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); usleep 5000; done";
    let mut run = Run::new("shimio-rot", script, false);
    let log = run.log();
    run.start(&[
        "--log",
        log.to_str().unwrap(),
        "--log-max-size",
        "300",
        "--log-max-files",
        "3",
    ]);
    assert_eq!(run.wait_exit(), 0);
    run.wait_shim();
    let file = |suffix: &str| PathBuf::from(format!("{}{suffix}", log.display()));
    assert!(!file(".3").exists(), "only 3 files are kept");
    // Oldest first, the lines are consecutive and end with the last one written.
    let mut all = Vec::new();
    for suffix in [".2", ".1", ""] {
        let bytes = std::fs::read(file(suffix)).unwrap();
        assert!(!bytes.is_empty(), "c.log{suffix} is empty");
        // A file grows past the limit only with a single write: one read's entries, which
        // share their timestamp.
        if bytes.len() > 300 {
            let stamps: std::collections::BTreeSet<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| &l[..30])
                .collect();
            assert_eq!(stamps.len(), 1, "c.log{suffix} is {} bytes", bytes.len());
        }
        all.extend(lines_of(&entries(&bytes), "stdout"));
    }
    assert!(all.len() < 40, "older lines were rotated away: {all:?}");
    let first: usize = all[0].strip_prefix("line-").unwrap().parse().unwrap();
    let want: Vec<String> = (first..40).map(|i| format!("line-{i}")).collect();
    assert_eq!(all, want);
}

#[test]
fn a_left_behind_writer_delays_the_exit_by_at_most_a_moment() {
    // No pid namespace: the background sleep outlives sh and keeps the pipes' write ends.
    let mut run = Run::new("shimio-bg", "sleep 30 & echo bye", false);
    edit_config(&run.bundle, |spec| {
        let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    let log = run.log();
    run.start(&["--log", log.to_str().unwrap()]);
    let t = Instant::now();
    assert_eq!(run.wait_exit(), 0);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t.elapsed()
    );
    assert_eq!(lines_of(&read_log(&log), "stdout"), ["bye"]);
    run.wait_shim();
}

/// The terminal's output lines as the log has them (`\r\n` line ends).
fn terminal_lines(log: &Path) -> Vec<String> {
    lines_of(&read_log(log), "stdout")
        .into_iter()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

#[test]
fn a_terminal_has_its_size_and_is_resized() {
    let script = "tty; stty size; while [ ! -e /tmp/go ]; do usleep 10000; done; stty size";
    let mut run = Run::new("shimio-tty", script, true);
    let log = run.log();
    // create, then start, as the daemon does: the size is set before the process runs.
    run.start_as(
        "create",
        &[
            "--log",
            log.to_str().unwrap(),
            "--terminal",
            "1",
            "--console-size",
            "80x24",
        ],
    );
    assert!(!run.dir.join("console.sock").exists());
    run.runc(&["start", &run.id.clone()]);
    wait_until(LIVENESS, "the first stty size", || {
        terminal_lines(&log).iter().any(|l| l == "24 80")
    });
    run.control("1 100 30\n");
    // The resize is served before the next poll; give the shim its turn, then go on.
    std::thread::sleep(Duration::from_millis(100));
    File::create(run.bundle.join("rootfs/tmp/go")).unwrap();
    assert_eq!(run.wait_exit(), 0);
    let lines = terminal_lines(&log);
    assert!(
        lines[0].starts_with("/dev/pts/"),
        "tty printed {:?}",
        lines[0]
    );
    assert_eq!(&lines[1..], ["24 80", "30 100"]);
    run.wait_shim();
}

#[test]
fn stdin_goes_into_the_terminal() {
    let mut run = Run::new("shimio-cat", "cat", true);
    let stdin = run.tmp.join("stdin");
    nix::unistd::mkfifo(&stdin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let log = run.log();
    run.start(&[
        "--log",
        log.to_str().unwrap(),
        "--terminal",
        "1",
        "--stdin",
        stdin.to_str().unwrap(),
    ]);
    {
        let mut w = OpenOptions::new().write(true).open(&stdin).unwrap();
        w.write_all(b"hello-cat\n").unwrap();
    }
    // The terminal echoes the line, and cat writes it again.
    wait_until(LIVENESS, "cat's output", || {
        terminal_lines(&log)
            .iter()
            .filter(|l| *l == "hello-cat")
            .count()
            == 2
    });
    // The client went away: the shim's holder keeps stdin open, cat still reads.
    {
        let mut w = OpenOptions::new().write(true).open(&stdin).unwrap();
        w.write_all(b"again\n").unwrap();
    }
    wait_until(LIVENESS, "cat's second output", || {
        terminal_lines(&log)
            .iter()
            .filter(|l| *l == "again")
            .count()
            == 2
    });
    run.control("0 0 0\n");
    run.kill();
    assert_eq!(run.wait_exit(), 137);
    run.wait_shim();
}

#[test]
fn a_terminal_without_a_log_writes_raw_output_to_stdout() {
    let mut run = Run::new("shimio-raw", "echo raw-out", true);
    let out = run.tmp.join("out");
    run.start(&["--terminal", "1", "--stdout", out.to_str().unwrap()]);
    assert_eq!(run.wait_exit(), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "raw-out\r\n");
    run.wait_shim();
}

/// Checkpoints `run`'s container with CRIU, then restores it through a new shim (in a new
/// shim dir) with `extra` flags.
fn checkpoint_and_restore(run: &mut Run, extra: &[&str]) {
    let criu = ["/usr/local/sbin/criu", "/usr/sbin/criu", "/usr/bin/criu"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("criu is needed for the restore tests");
    let (images, work) = (run.tmp.join("img"), run.tmp.join("work"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(runc())
        .arg("--root")
        .arg(&run.root)
        .args(["--criu", criu, "checkpoint", "--image-path"])
        .arg(&images)
        .arg("--work-path")
        .arg(&work)
        .arg(&run.id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "checkpoint: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(work.join("dump.log")).unwrap_or_default()
    );
    // The checkpointed process is gone: its shim reports an exit and ends.
    run.wait_exit();
    run.wait_shim();
    run.dir = run.tmp.join("s2");
    std::fs::create_dir_all(&run.dir).unwrap();
    for fifo in ["exit", "control"] {
        nix::unistd::mkfifo(
            &run.dir.join(fifo),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    let mut args: Vec<&str> = vec!["--runtime-arg", "--criu", "--runtime-arg", criu];
    let images = images.to_str().unwrap().to_string();
    let work = work.to_str().unwrap().to_string();
    args.extend(["--verb-arg", "--image-path", "--verb-arg", &images]);
    args.extend(["--verb-arg", "--work-path", "--verb-arg", &work]);
    args.extend(extra);
    run.start_as("restore", &args);
}

/// The counter lines a log holds, in order.
fn counters(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("n-").and_then(|n| n.parse().ok()))
        .collect()
}

const COUNT: &str = "i=0; while true; do echo n-$i; i=$((i+1)); usleep 50000; done";

#[test]
fn a_restored_process_logs_through_its_new_shim() {
    let mut run = Run::new("shimio-restore", COUNT, false);
    let log = run.log();
    run.start(&["--log", log.to_str().unwrap()]);
    wait_until(LIVENESS, "some output", || {
        counters(&lines_of(&read_log(&log), "stdout")).len() >= 3
    });
    let log2 = run.tmp.join("c2.log");
    checkpoint_and_restore(&mut run, &["--log", log2.to_str().unwrap()]);
    let before = counters(&lines_of(&read_log(&log), "stdout"));
    let last = *before.last().unwrap();
    wait_until(LIVENESS, "output after the restore", || {
        counters(&lines_of(&read_log(&log2), "stdout")).len() >= 3
    });
    run.kill();
    assert_eq!(run.wait_exit(), 137);
    run.wait_shim();
    // The process goes on where it was checkpointed, into the new shim's log.
    let after = counters(&lines_of(&read_log(&log2), "stdout"));
    assert_eq!(after[0], last + 1, "before: {before:?}, after: {after:?}");
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "{after:?}");
}

#[test]
fn a_restored_process_gets_its_terminal_through_the_new_shim() {
    let mut run = Run::new("shimio-rtty", COUNT, true);
    let log = run.log();
    run.start(&["--log", log.to_str().unwrap(), "--terminal", "1"]);
    wait_until(LIVENESS, "some output", || {
        counters(&terminal_lines(&log)).len() >= 3
    });
    let log2 = run.tmp.join("c2.log");
    checkpoint_and_restore(
        &mut run,
        &["--log", log2.to_str().unwrap(), "--terminal", "1"],
    );
    let last = *counters(&terminal_lines(&log)).last().unwrap();
    wait_until(LIVENESS, "output after the restore", || {
        counters(&terminal_lines(&log2)).len() >= 3
    });
    run.kill();
    assert_eq!(run.wait_exit(), 137);
    run.wait_shim();
    let after = counters(&terminal_lines(&log2));
    assert_eq!(after[0], last + 1, "after: {after:?}");
}

/// Throughput and memory of the log path (run by hand, best with a release shim):
/// `SHIMIO_SHIM=$PWD/target/x86_64-unknown-linux-gnu/release/corral-shim cargo test --test
/// shim_io -- --ignored --nocapture log_throughput`. 100 MiB of 100-byte lines; the rate is
/// from the log's own timestamps (first read to last), the memory the shim's while the
/// process sleeps afterwards, next to a shim that logs nothing.
#[test]
#[ignore]
fn log_throughput() {
    const SIZE: usize = 100 << 20;
    for with_log in [false, true] {
        let mut run = Run::new("shimio-speed", "cat /data; echo done >&2; sleep 2", false);
        let line = format!("{}\n", "x".repeat(99));
        std::fs::write(
            run.bundle.join("rootfs/data"),
            line.repeat(SIZE / line.len()),
        )
        .unwrap();
        let log = run.log();
        let err = run.tmp.join("err");
        std::fs::write(&err, "").unwrap();
        if let Ok(shim) = std::env::var("SHIMIO_SHIM") {
            run.shim_bin = shim.into();
        }
        if with_log {
            run.start(&["--log", log.to_str().unwrap()]);
        } else {
            run.start(&["--stderr", err.to_str().unwrap()]);
        }
        let shim_pid = run.shim.as_ref().unwrap().id();
        wait_until(LIVENESS, "done", || {
            if with_log {
                lines_of(&read_tail(&log), "stderr")
                    .iter()
                    .any(|l| l == "done")
            } else {
                std::fs::read_to_string(&err)
                    .unwrap_or_default()
                    .contains("done")
            }
        });
        let status = std::fs::read_to_string(format!("/proc/{shim_pid}/status")).unwrap();
        let mem = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or("")
                .split_whitespace()
                .nth(1)
                .unwrap_or("?")
                .to_string()
        };
        let rate = if with_log {
            let bytes = std::fs::read(&log).unwrap();
            let stamps: Vec<f64> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| l.len() > 30 && &l[31..37] == b"stdout")
                .map(|l| {
                    let t = std::str::from_utf8(&l[11..29]).unwrap();
                    let (h, rest) = t.split_once(':').unwrap();
                    let (m, sec) = rest.split_once(':').unwrap();
                    h.parse::<f64>().unwrap() * 3600.0
                        + m.parse::<f64>().unwrap() * 60.0
                        + sec.parse::<f64>().unwrap()
                })
                .collect();
            let took = stamps.last().unwrap() - stamps[0];
            assert_eq!(
                lines_of(&entries(&bytes), "stdout").len(),
                SIZE / line.len()
            );
            format!(
                "{:.0} MiB/s ({:.0} ms first read to last)",
                SIZE as f64 / (1 << 20) as f64 / took,
                took * 1000.0
            )
        } else {
            "no log".to_string()
        };
        let stat = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let (user, system): (u64, u64) = (fields[11].parse().unwrap(), fields[12].parse().unwrap());
        eprintln!(
            "{rate}: shim VmRSS {} kB, VmHWM {} kB, CPU {} ms user + {} ms system",
            mem("VmRSS:"),
            mem("VmHWM:"),
            user * 10,
            system * 10
        );
        run.wait_exit();
    }
}

/// The last 64 KiB of a log, from its first whole entry.
fn read_tail(path: &Path) -> Vec<Entry> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().unwrap().len();
    let from = len.saturating_sub(64 << 10);
    file.seek(SeekFrom::Start(from)).unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    let start = if from == 0 {
        0
    } else {
        bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1)
    };
    // A read may catch an entry half written: keep whole lines only.
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    entries(&bytes[start.min(end)..end])
}

#[test]
fn an_exec_logs_and_gets_a_terminal() {
    let mut init = Run::new("shimio-exec", "sleep 60", false);
    let init_log = init.log();
    init.start(&["--log", init_log.to_str().unwrap()]);
    for (terminal, script) in [(false, "echo exec-out; echo exec-err >&2"), (true, "tty")] {
        // An exec shim of its own, in its own dir, on the same container.
        let mut exec = Run::new("shimio-exec-p", "true", terminal);
        exec.id = init.id.clone();
        exec.root = init.root.clone();
        exec.bundle = init.bundle.clone();
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(init.bundle.join("config.json")).unwrap())
                .unwrap();
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(["sh", "-c", script]);
        process["terminal"] = serde_json::Value::Bool(terminal);
        std::fs::write(
            exec.dir.join("process.json"),
            serde_json::to_vec(&process).unwrap(),
        )
        .unwrap();
        let log = exec.log();
        let mut args = vec!["--log", log.to_str().unwrap()];
        if terminal {
            args.extend(["--terminal", "1"]);
        }
        exec.start_as("exec", &args);
        assert_eq!(exec.wait_exit(), 0);
        exec.wait_shim();
        if terminal {
            let lines = terminal_lines(&log);
            assert!(lines[0].starts_with("/dev/pts/"), "{lines:?}");
        } else {
            let entries = read_log(&log);
            assert_eq!(lines_of(&entries, "stdout"), ["exec-out"]);
            assert_eq!(lines_of(&entries, "stderr"), ["exec-err"]);
        }
        // The container is the init's: its Drop must not delete it.
        exec.id = format!("{}-not-a-container", exec.id);
    }
    init.kill();
    assert_eq!(init.wait_exit(), 137);
    init.wait_shim();
}

#[test]
fn log_write_errors_lose_output_but_not_the_process() {
    // /dev/full: every write fails with ENOSPC.
    let mut run = Run::new("shimio-full", "seq 1 20000; echo end", false);
    run.start(&["--log", "/dev/full"]);
    assert_eq!(run.wait_exit(), 0);
    run.wait_shim();
    let report = std::fs::read_to_string(run.dir.join("log-errors")).unwrap();
    let (lost, error) = report.trim_end().split_once(' ').unwrap();
    let lost: u64 = lost.parse().unwrap();
    // Every line was lost, with its CRI header: 88 897 bytes of digits in 20 001 entries of
    // 41 bytes more each (more if a read cut a line into pieces).
    assert!(lost >= 88_897 + 20_001 * 41, "{report}");
    assert!(error.contains("space"), "{report}");
}
