//! The on-disk contract between corrald and its shims (containerd v0.2's, kept):
//!
//! ```text
//! <state>/<namespace>/<id>/state.json          the container's record
//! <state>/<namespace>/<id>/<process>/          "init" or the exec id
//!     process.json  exit  control  pid  starttime  exitStatus  shim.pid  shim.log  log.json
//! ```
//! Everything here is plain files and fifos so that a daemon that restarts, or a person with
//! `ls` and `cat`, can read what happened. This module is synchronous: the shim uses it too.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `<state>/_events/`: the event journal (not a valid namespace name).
pub const JOURNAL_DIR: &str = "_events";
/// `<state>/_set-aside/`: state that could not be read, kept for a person.
pub const SET_ASIDE_DIR: &str = "_set-aside";
/// `<state>/_lock`: held (flock) by the one supervisor of the state dir.
pub const LOCK_FILE: &str = "_lock";
/// `<runtime root>/_checkpoints/<ns>/<id>/<name>/`: the checkpoint store.
pub const CHECKPOINTS_DIR: &str = "_checkpoints";
/// A bundle's (or corral's own copy of its) OCI spec.
pub const CONFIG_JSON: &str = "config.json";
/// A process directory's marker, once its /tasks/exit is in the journal; holds the pid.
pub const EXIT_PUBLISHED: &str = "exit.published";

/// `<bundle>/config.json`.
pub fn bundle_config(bundle: &Path) -> PathBuf {
    bundle.join(CONFIG_JSON)
}

/// A checkpoint's CRIU images: `<checkpoint>/images/`.
pub fn checkpoint_images(checkpoint: &Path) -> PathBuf {
    checkpoint.join("images")
}

/// A checkpoint's CRIU work dir (its logs): `<checkpoint>/work/`.
pub fn checkpoint_work(checkpoint: &Path) -> PathBuf {
    checkpoint.join("work")
}

/// The container's spec at checkpoint time: `<checkpoint>/config.json`.
pub fn checkpoint_spec(checkpoint: &Path) -> PathBuf {
    checkpoint.join(CONFIG_JSON)
}

/// What was checkpointed, when and how: `<checkpoint>/checkpoint.json`.
pub fn checkpoint_json(checkpoint: &Path) -> PathBuf {
    checkpoint.join("checkpoint.json")
}

/// The daemon's state directory (default `/run/corral`).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Wraps a path; nothing is created.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }
    /// The directory holding one namespace's containers.
    pub fn namespace(&self, namespace: &str) -> PathBuf {
        self.root.join(namespace)
    }
    /// One container's directory.
    pub fn container(&self, namespace: &str, id: &str) -> ContainerDir {
        ContainerDir {
            path: self.root.join(namespace).join(id),
        }
    }
}

/// `<state>/<namespace>/<id>`: one container's files.
#[derive(Clone, Debug)]
pub struct ContainerDir {
    path: PathBuf,
}

impl ContainerDir {
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// `state.json`: bundle, runtime, labels, stdio.
    pub fn state_json(&self) -> PathBuf {
        self.path.join("state.json")
    }
    /// corral's own copy of the spec, given to the runtime (see `bundle::runtime_spec`).
    pub fn runtime_config(&self) -> PathBuf {
        self.path.join(CONFIG_JSON)
    }
    /// A process's directory (`init` or an exec id).
    pub fn process(&self, process_id: &str) -> ShimDir {
        ShimDir::new(self.path.join(process_id))
    }
}

/// `<state>/<namespace>/<id>/<process>`: one shim's files.
#[derive(Clone, Debug)]
pub struct ShimDir {
    path: PathBuf,
}

impl ShimDir {
    /// Wraps a path; nothing is created.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ShimDir { path: path.into() }
    }
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The exec process's OCI spec.
    pub fn process_json(&self) -> PathBuf {
        self.path.join("process.json")
    }
    /// Fifo whose write end the shim holds until it exits.
    pub fn exit_fifo(&self) -> PathBuf {
        self.path.join("exit")
    }
    /// Fifo the daemon makes for a process with `open_stdin`: `attach` writes into it, the
    /// shim holds a write end so the process sees end-of-file only on close_stdin.
    pub fn stdin_fifo(&self) -> PathBuf {
        self.path.join("stdin")
    }
    /// What the daemon launched the process's stdio with (`key value` lines): read back
    /// when a daemon adopts it.
    pub fn io_file(&self) -> PathBuf {
        self.path.join("io")
    }
    /// Fifo the daemon writes `type w h` lines to (0: close stdin, 1: resize).
    pub fn control_fifo(&self) -> PathBuf {
        self.path.join("control")
    }
    /// The container process's pid, written by the runtime.
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("pid")
    }
    /// `/proc/<pid>/stat` field 22 of the container process: guards against pid reuse.
    pub fn starttime_file(&self) -> PathBuf {
        self.path.join("starttime")
    }
    /// The exit code, written by the shim before it exits.
    pub fn exit_status_file(&self) -> PathBuf {
        self.path.join("exitStatus")
    }
    /// `<pid> <starttime>` of the shim itself.
    pub fn shim_pid_file(&self) -> PathBuf {
        self.path.join("shim.pid")
    }
    /// The shim's own errors.
    pub fn shim_log(&self) -> PathBuf {
        self.path.join("shim.log")
    }
    /// The runtime's log (`--log`, JSON lines).
    pub fn runtime_log(&self) -> PathBuf {
        self.path.join("log.json")
    }

    /// The marker written once this process's /tasks/exit is in the journal.
    pub fn exit_published(&self) -> PathBuf {
        self.path.join(EXIT_PUBLISHED)
    }
    /// CRIU's work dir for a restore of this (init) process.
    pub fn criu_work(&self) -> PathBuf {
        self.path.join("criu")
    }

    /// The pid whose exit the `exit.published` marker marks, if there is one.
    pub fn read_exit_published(&self) -> Option<u32> {
        read_trimmed(&self.exit_published())?.parse().ok()
    }
    /// The container process's pid, if the runtime wrote it.
    pub fn read_pid(&self) -> Option<i32> {
        read_trimmed(&self.pid_file())?.parse().ok()
    }
    /// The recorded start time of the container process.
    pub fn read_starttime(&self) -> Option<u64> {
        read_trimmed(&self.starttime_file())?.parse().ok()
    }
    /// The shim's `(pid, starttime)`.
    pub fn read_shim_pid(&self) -> Option<(i32, u64)> {
        let s = read_trimmed(&self.shim_pid_file())?;
        let (pid, start) = s.split_once(' ')?;
        Some((pid.parse().ok()?, start.parse().ok()?))
    }
    /// The recorded exit: the code, and the file's modification time as the exit time.
    pub fn read_exit_status(&self) -> Option<(u32, u64)> {
        let path = self.exit_status_file();
        let code = read_trimmed(&path)?.parse().ok()?;
        let meta = fs::metadata(&path).ok()?;
        let ns = meta.mtime() as u64 * 1_000_000_000 + meta.mtime_nsec() as u64;
        Some((code, ns))
    }
    /// Records an exit code durably (tmp file, fsync, rename, fsync of the directory).
    pub fn write_exit_status(&self, code: u32) -> io::Result<()> {
        write_durable(&self.exit_status_file(), format!("{code}").as_bytes())
    }
    /// The runtime's error messages from its JSON log, one per line.
    pub fn runtime_errors(&self) -> String {
        fs::read_to_string(self.runtime_log())
            .map(|log| runtime_log_errors(&log))
            .unwrap_or_default()
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Writes `bytes` to `path` atomically: a tmp file beside it, then rename. A reader sees
/// the old content or the new, never a part, whenever a writer dies. No fsync: the state
/// dir lives on tmpfs (/run) where it costs nothing and protects nothing, and on a disk it
/// would put milliseconds on the daemon's single thread for a power loss that takes the
/// containers with it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_tmp_then_rename(path, bytes, false)
}

/// Like [`write_atomic`], with fsync of the file before the rename and of the directory
/// after it: for the record that must outlive everything, the shim's `exitStatus`.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_tmp_then_rename(path, bytes, true)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_tmp_then_rename(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, path)
}

/// Writes `name` inside the open directory `dir` durably (tmp, fsync, rename, fsync of
/// the directory), relative to that directory: if the directory was deleted meanwhile (and
/// maybe made again for a new container of the same name), the write fails with ENOENT
/// instead of landing in the new one.
pub fn write_durable_at(dir: &fs::File, name: &str, bytes: &[u8]) -> io::Result<()> {
    use nix::fcntl::{openat, renameat, OFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let tmp = format!("{name}.tmp");
    let fd = openat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    renameat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        Some(dir.as_raw_fd()),
        name,
    )?;
    dir.sync_all()
}

/// The message a shim writes into its exit fifo just before closing it: `<code> <exited_at_ns>`.
pub fn exit_message(code: u32, exited_at_ns: u64) -> String {
    format!("{code} {exited_at_ns}\n")
}

/// Parses an exit fifo message.
pub fn parse_exit_message(bytes: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (code, at) = text.trim().split_once(' ')?;
    Some((code.parse().ok()?, at.parse().ok()?))
}

/// Reads a small kernel file (a `/proc` or cgroup file that fits in `buf`) with one
/// `read`: `fs::read_to_string` would stat it and read it in growing pieces, their size
/// being 0. For the exit path, where every syscall counts. `None` if it filled `buf`: it
/// may not have fitted, and a cut number would read as another.
pub fn read_small<'a, const N: usize>(path: &Path, buf: &'a mut [u8; N]) -> Option<&'a str> {
    use std::io::Read;
    let n = fs::File::open(path).ok()?.read(buf).ok()?;
    std::str::from_utf8(buf.get(..n).filter(|_| n < N)?).ok()
}

/// Room for any `/proc/<pid>/stat` line: a command name of at most 15 bytes and 52
/// fields of at most 20 digits and a sign, about 1.1 KiB.
pub type StatBuf = [u8; 2048];

/// `/proc/<pid>/stat`, in one read into `buf`; `None` if the process is gone (reaped).
pub fn read_proc_stat(pid: i32, buf: &mut StatBuf) -> Option<&str> {
    read_small(Path::new(&format!("/proc/{pid}/stat")), buf)
}

/// A stat line's fields from field 3 (the state) on: the command name (field 2) may hold
/// spaces and parentheses, so the line is split after its last ')'. Field N is at N - 3;
/// see [`stat_field`].
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// Field `n` (as proc(5) numbers them: 3 is the state, 22 the start time) of `fields`
/// (from [`stat_fields`]), parsed.
pub fn stat_field<T: std::str::FromStr>(fields: &[&str], n: usize) -> Option<T> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

/// `/proc/<pid>/stat` field 22 (start time in clock ticks since boot), or `None` if the
/// process is gone.
pub fn proc_starttime(pid: i32) -> Option<u64> {
    let mut buf: StatBuf = [0; 2048];
    stat_field(&stat_fields(read_proc_stat(pid, &mut buf)?)?, 22)
}

/// Whether `pid` is the process that had start time `starttime` and has not been reaped.
pub fn same_process(pid: i32, starttime: u64) -> bool {
    pid > 0 && proc_starttime(pid) == Some(starttime)
}

/// Whether `pid` is still the process that had start time `starttime` and is alive: not
/// gone, not replaced by another with the same pid, not a zombie. One read of its stat.
pub fn still_running(pid: i32, starttime: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let mut buf: StatBuf = [0; 2048];
    let Some(fields) = read_proc_stat(pid, &mut buf).and_then(stat_fields) else {
        return false;
    };
    let alive = stat_field::<String>(&fields, 3).is_some_and(|st| st != "Z" && st != "X");
    alive && stat_field(&fields, 22) == Some(starttime)
}

/// Pulls the `msg` of each error-level line out of a runtime's JSON log
/// (`{"level":"error","msg":"...","time":"..."}`; youki's tracing writes
/// `{"level":"ERROR","message":"..."}`, with a stack backtrace when `RUST_BACKTRACE` is
/// set, left out here), without a JSON parser so the shim stays small.
pub fn runtime_log_errors(log: &str) -> String {
    let mut out = Vec::new();
    for line in log.lines() {
        let level = json_string_field(line, "level").unwrap_or_default();
        if !(level.eq_ignore_ascii_case("error") || level.eq_ignore_ascii_case("fatal")) {
            continue;
        }
        if let Some(msg) =
            json_string_field(line, "msg").or_else(|| json_string_field(line, "message"))
        {
            let msg = msg.split("\n\nStack backtrace:").next().unwrap_or_default();
            out.push(msg.to_string());
        }
    }
    out.join("\n")
}

fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key)? + key.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('?'),
                    );
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_are_extracted() {
        let log = "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\",\"time\":\"t\"}\n";
        assert_eq!(
            runtime_log_errors(log),
            "exec: \"nope\": executable file not found in $PATH"
        );
        let youki = "{\"timestamp\":\"t\",\"level\":\"ERROR\",\"message\":\"error in executing command: oci spec error\\n\\nCaused by:\\n    0: io operation failed\\n\\nStack backtrace:\\n   0: <unknown>\",\"target\":\"youki\"}\n";
        assert_eq!(
            runtime_log_errors(youki),
            "error in executing command: oci spec error\n\nCaused by:\n    0: io operation failed"
        );
    }

    #[test]
    fn exit_messages_round_trip() {
        assert_eq!(
            parse_exit_message(exit_message(137, 42).as_bytes()),
            Some((137, 42))
        );
        assert_eq!(parse_exit_message(b""), None);
        assert_eq!(parse_exit_message(b"garbage"), None);
    }

    #[test]
    fn starttime_of_self_is_stable() {
        let me = std::process::id() as i32;
        let a = proc_starttime(me).unwrap();
        assert!(same_process(me, a));
        assert!(!same_process(me, a + 1));
        assert!(still_running(me, a));
        assert!(!still_running(me, a + 1));
        assert!(!still_running(0, a));
    }

    #[test]
    fn exit_status_round_trips() {
        let dir = std::env::temp_dir().join(format!("corral-layout-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let shim = ShimDir::new(&dir);
        assert!(shim.read_exit_status().is_none());
        shim.write_exit_status(137).unwrap();
        let (code, at) = shim.read_exit_status().unwrap();
        assert_eq!(code, 137);
        assert!(at > 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
