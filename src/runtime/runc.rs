//! The real runtime: a runc-compatible binary. The daemon makes the short calls here, each
//! with a timeout and each child registered with the reaper; the long-lived ones (create,
//! run, exec, restore) go through corral-shim ([`crate::launch::launch`]).

use super::{classify, CheckpointCall, OciRuntime, RuntimeError, RuntimeFuture};
use crate::launch::LaunchedShim;
use crate::layout::ShimDir;
use crate::shim::ShimArgs;
use crate::types::Status;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// One runtime binary with its state root and extra global arguments.
#[derive(Clone, Debug)]
pub struct Runc {
    /// The binary.
    pub path: PathBuf,
    /// `--root`: where it keeps its container state.
    pub root: PathBuf,
    /// Extra global arguments, before the verb.
    pub args: Vec<String>,
    /// How long one call may take before it is killed.
    pub timeout: Duration,
    /// The corral-shim binary, for the long-lived verbs.
    pub shim: PathBuf,
    /// The cgroup each shim moves itself into before it runs the runtime (None: it stays
    /// in corrald's).
    pub shim_cgroup: Option<String>,
}

impl Runc {
    /// Runs `<runtime> --root R <args...> <extra...> <verb> <verb_args...>`, returning its
    /// stdout; `id` names the container in errors.
    async fn call(
        self,
        extra: Vec<String>,
        verb: &'static str,
        verb_args: Vec<String>,
        id: String,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root")
            .arg(&self.root)
            .args(&self.args)
            .args(&extra)
            .arg(verb)
            .args(&verb_args)
            // corrald's own (see launch.rs): never the runtime's.
            .env_remove("NOTIFY_SOCKET")
            // A Rust runtime (youki) would append a stack backtrace to every complaint.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: on a timeout the runtime goes with every helper it started
            // (CRIU under `checkpoint`), not just itself.
            .process_group(0);
        super::crun::prepare(&mut cmd, &self.path);
        let (mut child, exited) =
            crate::reaper::spawn(&mut cmd).map_err(|source| RuntimeError::Spawn {
                path: self.path.clone(),
                source,
            })?;
        let pid = child.id() as i32;
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        let work = async move {
            let (out, err) = futures_util::future::join(read_all(stdout), read_all(stderr)).await;
            let code = exited
                .await
                .unwrap_or(crate::types::UNKNOWN_EXIT_CODE as i32);
            (code, out, err)
        };
        let (code, stdout, stderr) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(RuntimeError::Timeout {
                    verb: verb.to_string(),
                    id,
                    timeout: self.timeout,
                });
            }
        };
        if code != 0 {
            let msg = runtime_message(&stderr, code);
            if lacks_verb(&msg, verb) {
                // The complaint's first line (clap adds tips and a usage after it).
                let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                return Err(RuntimeError::Failed {
                    verb: verb.to_string(),
                    id,
                    stderr: format!(
                        "the runtime {} has no `{verb}` command: {}",
                        self.path.display(),
                        first.trim()
                    ),
                });
            }
            return Err(classify(verb, &id, msg));
        }
        Ok(stdout)
    }

    /// `update --resources FILE ID`, the flags written as an OCI resources document: for
    /// youki, which ignores all but `--pids-limit` of the flags (see youki.rs).
    fn update_by_file(&self, id: &str, flags: &[String]) -> RuntimeFuture<()> {
        let failed = |stderr: String| {
            let e = RuntimeError::Failed {
                verb: "update".into(),
                id: id.to_string(),
                stderr,
            };
            Box::pin(std::future::ready(Err(e))) as RuntimeFuture<()>
        };
        let doc = match super::youki::resources_json(flags) {
            Ok(doc) => doc,
            Err(why) => return failed(format!("{}: {why}", self.path.display())),
        };
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!(
            "corral-update-{}-{n}-{id}.json",
            std::process::id()
        ));
        if let Err(e) = std::fs::write(&file, doc.to_string()) {
            return failed(format!("write {}: {e}", file.display()));
        }
        let args = vec![
            "--resources".to_string(),
            file.to_string_lossy().into_owned(),
            id.to_string(),
        ];
        let call = self.short("update", args, id);
        Box::pin(async move {
            let result = call.await;
            let _ = std::fs::remove_file(&file);
            result
        })
    }

    fn short(&self, verb: &'static str, verb_args: Vec<String>, id: &str) -> RuntimeFuture<()> {
        let call = self
            .clone()
            .call(Vec::new(), verb, verb_args, id.to_string());
        Box::pin(async move { call.await.map(drop) })
    }
}

impl OciRuntime for Runc {
    fn binary(&self) -> &Path {
        &self.path
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn global_args(&self) -> &[String] {
        &self.args
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn launch(
        &self,
        dir: ShimDir,
        args: ShimArgs,
        timeout: Duration,
    ) -> RuntimeFuture<LaunchedShim> {
        let shim = self.shim.clone();
        let mut args = args;
        args.cgroup = self.shim_cgroup.clone();
        Box::pin(async move {
            crate::launch::launch(&shim, &dir, &args, timeout)
                .await
                .map_err(RuntimeError::Launch)
        })
    }

    fn start(&self, id: &str) -> RuntimeFuture<()> {
        self.short("start", vec![id.to_string()], id)
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> RuntimeFuture<()> {
        let mut args = Vec::new();
        if all {
            args.push("--all".to_string());
        }
        args.extend([id.to_string(), signal.to_string()]);
        self.short("kill", args, id)
    }

    fn delete(&self, id: &str, force: bool) -> RuntimeFuture<()> {
        // A stopped container's state and cgroups are removed here, without starting runc,
        // when runc itself would do nothing more (see runc_state.rs); `--force` adds nothing
        // for a container whose init is gone.
        // Only for runc itself: another runtime's state (crun's, youki's) has another
        // layout and other duties, even under the same root.
        let is_runc = self.path.file_name().is_some_and(|n| n == "runc");
        if is_runc {
            match super::runc_state::delete_stopped(&self.root, id, &self.args) {
                Ok(()) => return Box::pin(std::future::ready(Ok(()))),
                Err(why) => tracing::debug!("{id}: runtime delete, not directly: {why}"),
            }
        }
        let mut args = Vec::new();
        if force {
            args.push("--force".to_string());
        }
        args.push(id.to_string());
        let call = self.short("delete", args, id);
        Box::pin(async move {
            match call.await {
                Err(RuntimeError::NotExist { .. }) => Ok(()),
                other => other,
            }
        })
    }

    fn pause(&self, id: &str) -> RuntimeFuture<()> {
        self.short("pause", vec![id.to_string()], id)
    }

    fn resume(&self, id: &str) -> RuntimeFuture<()> {
        self.short("resume", vec![id.to_string()], id)
    }

    fn update(&self, id: &str, mut flags: Vec<String>) -> RuntimeFuture<()> {
        if super::youki::is_youki(&self.path) {
            return self.update_by_file(id, &flags);
        }
        flags.push(id.to_string());
        self.short("update", flags, id)
    }

    fn checkpoint(&self, id: &str, call: CheckpointCall) -> RuntimeFuture<()> {
        let mut args = vec![
            "--image-path".to_string(),
            call.image_path.to_string_lossy().into_owned(),
            "--work-path".to_string(),
            call.work_path.to_string_lossy().into_owned(),
        ];
        if call.leave_running {
            args.push("--leave-running".to_string());
        }
        args.extend(call.flags);
        args.push(id.to_string());
        // crun links libcriu and has no --criu option (it would refuse the whole call);
        // youki has none either (and no `checkpoint`: 0.7 calls it `checkpointt`, and has
        // no `restore`), so that it says it lacks the verb rather than the option.
        let extra = if super::crun::is_crun(&self.path) || super::youki::is_youki(&self.path) {
            Vec::new()
        } else {
            vec![
                "--criu".to_string(),
                call.criu.to_string_lossy().into_owned(),
            ]
        };
        let call = self.clone().call(extra, "checkpoint", args, id.to_string());
        Box::pin(async move { call.await.map(drop) })
    }

    fn ps(&self, id: &str) -> RuntimeFuture<Vec<u32>> {
        let args = vec!["--format".to_string(), "json".to_string(), id.to_string()];
        let call = self.clone().call(Vec::new(), "ps", args, id.to_string());
        let id = id.to_string();
        let binary = self.path.clone();
        Box::pin(async move {
            let out = call.await?;
            serde_json::from_slice::<Option<Vec<u32>>>(&out)
                .map(Option::unwrap_or_default)
                .map_err(|e| RuntimeError::BadOutput {
                    verb: "ps".into(),
                    id,
                    why: garbage(&binary, &out, e),
                })
        })
    }

    fn state(&self, id: &str) -> RuntimeFuture<Status> {
        #[derive(serde::Deserialize)]
        struct State {
            status: String,
        }
        let call = self
            .clone()
            .call(Vec::new(), "state", vec![id.to_string()], id.to_string());
        let id = id.to_string();
        let binary = self.path.clone();
        Box::pin(async move {
            let out = call.await?;
            let state: State =
                serde_json::from_slice(&out).map_err(|e| RuntimeError::BadOutput {
                    verb: "state".into(),
                    id,
                    why: garbage(&binary, &out, e),
                })?;
            Ok(match state.status.as_str() {
                "created" => Status::Created,
                "running" => Status::Running,
                "paused" => Status::Paused,
                "stopped" => Status::Stopped,
                _ => Status::Unknown,
            })
        })
    }

    fn has_state(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// runc's layout (`<root>/<id>/state.json`): a container stays created while runc's
    /// `exec.fifo` is there (runc's own test; `runc start` removes it).
    fn created_from_files(&self, id: &str) -> Option<bool> {
        let dir = self.root.join(id);
        dir.join("state.json")
            .is_file()
            .then(|| dir.join("exec.fifo").exists())
    }
}

/// The useful part of a runtime's stderr: runc prints logrus lines (`level=error msg="..."`)
/// or a bare message.
pub fn runtime_message(stderr: &[u8], code: i32) -> String {
    let text = String::from_utf8_lossy(stderr);
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let start = l.find("msg=\"")? + 5;
            let rest = &l[start..];
            // logrus escapes quotes and newlines inside msg="...".
            Some(
                rest[..rest.rfind('"').unwrap_or(rest.len())]
                    .replace("\\\"", "\"")
                    .replace("\\n", "\n"),
            )
        })
        .collect();
    let msg = if msgs.is_empty() {
        text.trim().to_string()
    } else {
        msgs.join("; ")
    };
    if msg.is_empty() {
        format!("exited with status {code} and printed nothing")
    } else {
        msg
    }
}

/// Whether a runtime's complaint says it has no such command: crun's "unknown command",
/// runc's "No help topic", clap's (youki's) "unrecognized subcommand".
fn lacks_verb(msg: &str, verb: &str) -> bool {
    let lower = msg.to_lowercase();
    lower.contains(&verb.to_lowercase())
        && (lower.contains("unknown command")
            || lower.contains("no help topic")
            || lower.contains("unrecognized subcommand"))
}

/// What to say about output that is not what `binary` should print: the runtime, the
/// parse error and the start of the text.
fn garbage(binary: &Path, out: &[u8], e: serde_json::Error) -> String {
    let text = String::from_utf8_lossy(out);
    let head: String = text.trim().chars().take(120).collect();
    format!("{} printed {head:?}: {e}", binary.display())
}

async fn read_all(fd: Option<OwnedFd>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(fd) = fd else { return out };
    if let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) {
        let _ = rx.read_to_end(&mut out).await;
    }
    out
}

/// Finds a runtime binary: a path as given, or a bare name looked up in `PATH`.
pub fn resolve_binary(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.components().count() > 1 || name.is_absolute() {
        return executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_stderr_is_shortened() {
        let err = b"time=\"2026-01-01T00:00:00Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(runtime_message(err, 1), "container \"x\" does not exist");
        assert_eq!(runtime_message(b"plain failure\n", 1), "plain failure");
        assert!(runtime_message(b"", 2).contains("status 2"));
    }

    #[test]
    fn missing_verbs_are_told_apart() {
        assert!(lacks_verb("unknown command checkpoint", "checkpoint"));
        assert!(lacks_verb("No help topic for 'checkpoint'", "checkpoint"));
        assert!(lacks_verb(
            "error: unrecognized subcommand 'checkpoint'",
            "checkpoint"
        ));
        assert!(!lacks_verb(
            "criu failed: type NOTIFY errno 0",
            "checkpoint"
        ));
        assert!(!lacks_verb("unknown command checkpoint", "pause"));
        let e = serde_json::from_slice::<u32>(b"hello").unwrap_err();
        let why = garbage(Path::new("/x/rt"), b"hello\n", e);
        assert!(why.contains("/x/rt") && why.contains("hello"), "{why}");
    }

    #[test]
    fn binaries_resolve() {
        assert!(resolve_binary(Path::new("sh")).is_some());
        assert!(resolve_binary(Path::new("/nonexistent/runc")).is_none());
        assert!(resolve_binary(Path::new("no-such-runtime-here")).is_none());
    }
}
