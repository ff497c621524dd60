//! Calls to the OCI runtime binary (runc by default) from the daemon, each with a timeout,
//! each child registered with the reaper. The shim makes the long-lived calls (create, run,
//! exec); the daemon makes the short ones here.

use crate::error::{Error, Result};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// One runtime binary with its state root and extra global arguments.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The binary.
    pub path: PathBuf,
    /// `--root`: where it keeps its container state.
    pub root: PathBuf,
    /// Extra global arguments, before the verb.
    pub args: Vec<String>,
    /// How long one call may take before it is killed.
    pub timeout: Duration,
}

/// The output of a runtime call that succeeded.
pub struct RuntimeOutput {
    /// What it printed on stdout.
    pub stdout: Vec<u8>,
}

impl Runtime {
    /// Runs `<runtime> --root R <args...> <verb> <verb_args...>`; `id` names the container in
    /// errors. Fails with [`Error::RuntimeFailed`] (and the runtime's stderr) or
    /// [`Error::Timeout`].
    pub async fn call(&self, verb: &str, verb_args: &[&str], id: &str) -> Result<RuntimeOutput> {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root")
            .arg(&self.root)
            .args(&self.args)
            .arg(verb)
            .args(verb_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut child, exited) = crate::reaper::spawn(&mut cmd).map_err(|e| {
            let msg = format!("cannot run runtime {}: {e}", self.path.display());
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Error::InvalidArgument(msg)
                }
                _ => Error::Internal(msg),
            }
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
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(Error::Timeout(format!(
                    "runtime {verb} {id} did not finish within {:?}",
                    self.timeout
                )));
            }
        };
        if code != 0 {
            return Err(Error::RuntimeFailed {
                op: verb.to_string(),
                id: id.to_string(),
                stderr: runtime_message(&stderr, code),
            });
        }
        Ok(RuntimeOutput { stdout })
    }

    /// `start ID`.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.call("start", &[id], id).await.map(drop)
    }

    /// `kill [--all] ID SIG`.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.call("kill", &args, id).await.map(drop)
    }

    /// `delete [--force] ID`; a container the runtime does not know is already deleted.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let args: &[&str] = if force { &["--force", id] } else { &[id] };
        match self.call("delete", args, id).await {
            Err(Error::RuntimeFailed { stderr, .. }) if is_not_exist(&stderr) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `ps --format json ID`: the host pids in the container's cgroup.
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let out = self.call("ps", &["--format", "json", id], id).await?;
        serde_json::from_slice::<Option<Vec<u32>>>(&out.stdout)
            .map(Option::unwrap_or_default)
            .map_err(|e| Error::Internal(format!("runtime ps {id}: unreadable output: {e}")))
    }

    /// `state ID`: created, running, paused or stopped, as the runtime sees it.
    pub async fn state(&self, id: &str) -> Result<crate::types::Status> {
        use crate::types::Status;
        #[derive(serde::Deserialize)]
        struct State {
            status: String,
        }
        let out = self.call("state", &[id], id).await?;
        let state: State = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Internal(format!("runtime state {id}: unreadable output: {e}")))?;
        Ok(match state.status.as_str() {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            _ => Status::Unknown,
        })
    }

    /// Whether the runtime still has state for `id` under its root.
    pub fn has_state(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }
}

fn is_not_exist(stderr: &str) -> bool {
    stderr.contains("does not exist") || stderr.contains("not found")
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
    fn binaries_resolve() {
        assert!(resolve_binary(Path::new("sh")).is_some());
        assert!(resolve_binary(Path::new("/nonexistent/runc")).is_none());
        assert!(resolve_binary(Path::new("no-such-runtime-here")).is_none());
    }
}
