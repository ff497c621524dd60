//! youki's quirks. youki (0.7) takes runc's `update` flags but applies only
//! `--pids-limit` from them: `--memory`, `--cpu-quota` and the rest are parsed and ignored
//! (youki's `commands/update.rs`), so the call succeeds and changes nothing. Only
//! `--resources FILE` (an OCI `LinuxResources` document) applies the others; corral
//! writes that document from the flags and passes it instead.

use std::path::Path;

/// Whether `binary` is youki (by its file name: `youki`, `youki-0.7`...).
pub fn is_youki(binary: &Path) -> bool {
    binary
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("youki"))
}

/// The OCI `LinuxResources` document for runc-style `update` flags (`--memory=N`...), or
/// the flag that has no place in it.
pub fn resources_json(flags: &[String]) -> Result<serde_json::Value, String> {
    use serde_json::{json, Map, Value};
    let mut doc = Map::new();
    for flag in flags {
        let (name, value) = flag
            .split_once('=')
            .ok_or_else(|| format!("update flag {flag:?} has no value"))?;
        let int = || {
            value
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("update flag {name}: {value:?} is not a number"))
        };
        let (section, key, v) = match name {
            "--cpu-share" => ("cpu", "shares", int()?),
            "--cpu-period" => ("cpu", "period", int()?),
            "--cpu-quota" => ("cpu", "quota", int()?),
            "--cpuset-cpus" => ("cpu", "cpus", json!(value)),
            "--cpuset-mems" => ("cpu", "mems", json!(value)),
            "--blkio-weight" => ("blockIO", "weight", int()?),
            "--memory" => ("memory", "limit", int()?),
            "--memory-reservation" => ("memory", "reservation", int()?),
            "--memory-swap" => ("memory", "swap", int()?),
            "--kernel-memory" => ("memory", "kernel", int()?),
            "--kernel-memory-tcp" => ("memory", "kernelTCP", int()?),
            "--pids-limit" => ("pids", "limit", int()?),
            other => return Err(format!("update flag {other} has no youki resources field")),
        };
        let entry = doc
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(key.to_string(), v);
        }
    }
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youki_is_told_by_its_name() {
        assert!(is_youki(Path::new("/usr/local/bin/youki")));
        assert!(!is_youki(Path::new("/usr/sbin/runc")));
        assert!(!is_youki(Path::new("/usr/bin/crun")));
    }

    #[test]
    fn update_flags_become_linux_resources() {
        let flags: Vec<String> = [
            "--memory=67108864",
            "--pids-limit=20",
            "--cpu-quota=-1",
            "--cpuset-cpus=0-1",
            "--blkio-weight=500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let doc = resources_json(&flags).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "memory": {"limit": 67108864},
                "pids": {"limit": 20},
                "cpu": {"quota": -1, "cpus": "0-1"},
                "blockIO": {"weight": 500},
            })
        );
        // What youki (oci-spec) reads back: the same limits.
        let res: oci_spec::runtime::LinuxResources = serde_json::from_value(doc).unwrap();
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().unwrap().limit(), 20);
        let e = resources_json(&["--memory=lots".to_string()]).unwrap_err();
        assert!(e.contains("--memory") && e.contains("lots"), "{e}");
        assert!(resources_json(&["--bogus=1".to_string()]).is_err());
        assert!(resources_json(&["--memory".to_string()]).is_err());
    }
}
