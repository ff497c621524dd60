//! Deleting a stopped runc container without starting runc: what `runc delete` does for
//! one (runc 1.x `destroy`: remove its cgroups, then its state directory), done in the
//! daemon, and only when nothing else of `destroy` applies. Starting the runtime binary
//! for this cost more than the rest of a foreground run's end together.
//!
//! The direct path is taken only when runc's `<root>/<id>/state.json` says all of this
//! (anything else, or anything unreadable, and the caller runs `runtime delete` as
//! before):
//! - the init process is gone (no such pid, another start time, or a zombie: runc's own
//!   test for `stopped`);
//! - it had a PID namespace of its own (otherwise `destroy` SIGKILLs whatever is left in
//!   its cgroup first);
//! - no poststop hooks (runc runs them after the removal), no Intel RDT group, not
//!   rootless, not systemd's cgroup driver (runc would stop a unit);
//! - every cgroup path is a plain absolute path under `/sys/fs/cgroup`.
//!
//! A cgroup that cannot be removed (still busy) also sends the caller to runc, which
//! retries and reports in its own way.

use serde::Deserialize;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Component, Path};

/// The part of runc's `state.json` that decides whether the direct path is safe.
#[derive(Deserialize)]
struct RuncState {
    init_process_pid: i32,
    init_process_start: u64,
    #[serde(default)]
    rootless: bool,
    #[serde(default)]
    cgroup_paths: HashMap<String, String>,
    #[serde(default)]
    intel_rdt_path: Option<String>,
    config: RuncConfig,
}

#[derive(Deserialize)]
struct RuncConfig {
    #[serde(default)]
    namespaces: Vec<RuncNamespace>,
    #[serde(rename = "Hooks", default)]
    hooks: Option<HashMap<String, Option<Vec<serde_json::Value>>>>,
    #[serde(default)]
    cgroups: Option<RuncCgroup>,
}

#[derive(Deserialize)]
struct RuncNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct RuncCgroup {
    #[serde(rename = "Systemd", default)]
    systemd: bool,
    #[serde(rename = "Rootless", default)]
    rootless: bool,
}

/// Why the direct path was not taken (for the debug log; the caller then runs runc).
pub type NotDirect = String;

/// Removes stopped container `id` under runc root `root` the way `runc delete` would, if
/// that is safe without runc (see the module doc). `Ok(())`: removed, or nothing was
/// there. `Err(why)`: not removed here; run `runtime delete`.
pub fn delete_stopped(root: &Path, id: &str, global_args: &[String]) -> Result<(), NotDirect> {
    if global_args
        .iter()
        .any(|a| a.contains("systemd-cgroup") || a.contains("rootless"))
    {
        return Err("global arguments name systemd cgroups or rootless".into());
    }
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(format!("unusual id {id:?}"));
    }
    let dir = root.join(id);
    let text = match std::fs::read(dir.join("state.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound && !dir.exists() => return Ok(()),
        Err(e) => return Err(format!("read state.json: {e}")),
    };
    let state: RuncState =
        serde_json::from_slice(&text).map_err(|e| format!("not runc's state.json: {e}"))?;
    check(&state)?;
    if init_alive(state.init_process_pid, state.init_process_start) {
        return Err("its init process is still alive".into());
    }
    for path in state.cgroup_paths.values() {
        remove_cgroup(Path::new(path)).map_err(|e| format!("remove cgroup {path}: {e}"))?;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", dir.display())),
    }
}

/// Everything of `state` that `runc delete` would act on beyond the removal.
fn check(state: &RuncState) -> Result<(), NotDirect> {
    if state.init_process_pid <= 0 {
        return Err("no init pid".into());
    }
    let cgroup_rootless = state.config.cgroups.as_ref().is_some_and(|c| c.rootless);
    if state.rootless || cgroup_rootless {
        return Err("rootless".into());
    }
    if state.config.cgroups.as_ref().is_some_and(|c| c.systemd) {
        return Err("systemd cgroup driver".into());
    }
    if state
        .intel_rdt_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err("Intel RDT group".into());
    }
    let own_pid_ns = state
        .config
        .namespaces
        .iter()
        .any(|n| n.kind == "NEWPID" && n.path.is_empty());
    if !own_pid_ns {
        return Err("no PID namespace of its own".into());
    }
    let poststop = state
        .config
        .hooks
        .as_ref()
        .and_then(|h| h.get("poststop"))
        .is_some_and(|p| p.as_ref().is_some_and(|v| !v.is_empty()));
    if poststop {
        return Err("poststop hooks".into());
    }
    for path in state.cgroup_paths.values() {
        let p = Path::new(path);
        let plain = p.is_absolute()
            && p.starts_with("/sys/fs/cgroup")
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain {
            return Err(format!("cgroup path {path:?}"));
        }
    }
    Ok(())
}

/// runc's test: the pid has the recorded start time and is neither a zombie nor dead.
fn init_alive(pid: i32, start: u64) -> bool {
    crate::layout::still_running(pid, start)
}

/// Removes a cgroup directory and any sub-cgroups it holds, deepest first (runc's
/// `RemovePath`). Gone already is fine; a cgroup with processes fails (EBUSY).
fn remove_cgroup(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    // Not empty of sub-cgroups (a cgroup's own files cannot be removed and need not be).
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup(&entry.path())?;
        }
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(extra_config: &str, paths: &str) -> RuncState {
        let text = format!(
            r#"{{"id":"c","init_process_pid":1234,"init_process_start":5,"rootless":false,
            "cgroup_paths":{paths},"intel_rdt_path":"",
            "config":{{"namespaces":[{{"type":"NEWPID","path":""}}],
            "Hooks":{{"poststop":null,"prestart":null}},
            "cgroups":{{"Systemd":false,"Rootless":false}}{extra_config}}}}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_plain_runc_container_may_be_removed_directly() {
        let s = state(
            "",
            r#"{"":"/sys/fs/cgroup/unified/c","memory":"/sys/fs/cgroup/memory/c"}"#,
        );
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn anything_runc_would_do_more_sends_it_to_runc() {
        let mut s = state("", "{}");
        s.config.namespaces[0].path = "/proc/1/ns/pid".into();
        assert!(check(&s).unwrap_err().contains("PID namespace"));

        let mut s = state("", "{}");
        s.config.hooks = serde_json::from_str(r#"{"poststop":[{"path":"/bin/true"}]}"#).unwrap();
        assert!(check(&s).unwrap_err().contains("poststop"));

        let mut s = state("", "{}");
        s.config.cgroups = Some(RuncCgroup {
            systemd: true,
            rootless: false,
        });
        assert!(check(&s).unwrap_err().contains("systemd"));

        let mut s = state("", "{}");
        s.rootless = true;
        assert!(check(&s).unwrap_err().contains("rootless"));

        let mut s = state("", "{}");
        s.intel_rdt_path = Some("/sys/fs/resctrl/c".into());
        assert!(check(&s).unwrap_err().contains("RDT"));

        for bad in [
            r#"{"":"/sys/fs/cgroup/../../etc"}"#,
            r#"{"":"relative/c"}"#,
            r#"{"":"/tmp/c"}"#,
        ] {
            assert!(check(&state("", bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_of_another_runtime_or_a_live_init_is_not_removed() {
        let root = std::env::temp_dir().join(format!("corral-runc-state-{}", std::process::id()));
        let dir = root.join("c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), b"{\"status\":\"stopped\"}").unwrap();
        assert!(delete_stopped(&root, "c", &[]).is_err());
        assert!(dir.exists());

        // Our own pid with its real start time: alive, so runc must decide.
        let me = std::process::id() as i32;
        let start = crate::layout::proc_starttime(me).unwrap();
        let text = format!(
            r#"{{"init_process_pid":{me},"init_process_start":{start},"cgroup_paths":{{}},
            "config":{{"namespaces":[{{"type":"NEWPID","path":""}}]}}}}"#
        );
        std::fs::write(dir.join("state.json"), &text).unwrap();
        assert_eq!(
            delete_stopped(&root, "c", &[]).unwrap_err(),
            "its init process is still alive"
        );
        assert!(delete_stopped(&root, "c", &["--systemd-cgroup".into()]).is_err());

        // The same with a start time that is not its own: stopped, so it goes.
        let text = text.replace(&format!(":{start},"), &format!(":{},", start + 1));
        std::fs::write(dir.join("state.json"), text).unwrap();
        assert_eq!(delete_stopped(&root, "c", &[]), Ok(()));
        assert!(!dir.exists());
        // Nothing there: already deleted.
        assert_eq!(delete_stopped(&root, "c", &[]), Ok(()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
