//! The v1 kernel memory limits (`KernelMemory`, `KernelTCPMemory`): runc 1.1 ignores them
//! (with a warning), so corral writes these cgroup files itself and reads them back.

use super::CgroupError;
use std::path::Path;

/// Sets a v1 kernel memory limit (`KernelMemory`, `KernelTCPMemory`) in the container's
/// memory cgroup and reads it back: a kernel that accepts the write but does not keep the
/// value (kernel memory limits are not enforced since Linux 5.16) is told as a refusal.
pub(crate) fn set_kernel_memory(
    memory_dir: &Path,
    v2: bool,
    name: &str,
    value: &str,
) -> Result<(), CgroupError> {
    let refused = |why: String| CgroupError::Refused {
        field: name.to_string(),
        why,
    };
    if v2 {
        return Err(refused("cgroup v2 has no kernel memory limits".into()));
    }
    let file = match name {
        "KernelTCPMemory" => "memory.kmem.tcp.limit_in_bytes",
        _ => "memory.kmem.limit_in_bytes",
    };
    let path = memory_dir.join(file);
    std::fs::write(&path, value).map_err(|e| CgroupError::io("write", &path, e))?;
    let wanted: i64 = value
        .parse()
        .map_err(|_| refused(format!("{value:?} is not a number")))?;
    let got: i64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    // The kernel rounds to pages; "no limit" (-1) reads back as a huge number.
    let page = 4096;
    let kept = if wanted < 0 {
        got >= 1 << 62
    } else {
        (got - wanted).abs() < page
    };
    if kept {
        Ok(())
    } else {
        Err(refused(format!(
            "the kernel accepted {wanted} for {file} but keeps {got}: it does not enforce this limit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "corral-kmem-{}-{}",
            std::process::id(),
            crate::types::now_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_value_read_back_is_kept() {
        let dir = scratch();
        set_kernel_memory(&dir, false, "KernelMemory", "1048576").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.kmem.limit_in_bytes")).unwrap(),
            "1048576"
        );
        set_kernel_memory(&dir, false, "KernelTCPMemory", "65536").unwrap();
        assert!(dir.join("memory.kmem.tcp.limit_in_bytes").is_file());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusals_say_why_in_the_old_words() {
        let dir = scratch();
        let e = set_kernel_memory(&dir, true, "KernelMemory", "1").unwrap_err();
        assert_eq!(e.to_string(), "cgroup v2 has no kernel memory limits");
        // A plain file keeps -1 as -1, where a kernel cgroup would read back "no limit".
        let e = set_kernel_memory(&dir, false, "KernelMemory", "-1").unwrap_err();
        assert!(matches!(&e, CgroupError::Refused { field, .. } if field == "KernelMemory"));
        assert_eq!(
            e.to_string(),
            "the kernel accepted -1 for memory.kmem.limit_in_bytes but keeps -1: it does not enforce this limit"
        );
        let e = set_kernel_memory(&dir, false, "KernelMemory", "lots").unwrap_err();
        assert_eq!(e.to_string(), "\"lots\" is not a number");
        let gone = dir.join("gone");
        let e = set_kernel_memory(&gone, false, "KernelMemory", "1").unwrap_err();
        let path = gone.join("memory.kmem.limit_in_bytes");
        assert!(
            e.to_string()
                .starts_with(&format!("write {}: ", path.display())),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
