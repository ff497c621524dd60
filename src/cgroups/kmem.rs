//! The v1 kernel memory limits (`KernelMemory`, `KernelTCPMemory`): runc 1.1 ignores them
//! (with a warning), so corral writes these cgroup files itself and reads them back.

use std::path::Path;

/// Sets a v1 kernel memory limit (`KernelMemory`, `KernelTCPMemory`) in the container's
/// memory cgroup and reads it back: a kernel that accepts the write but does not keep the
/// value (kernel memory limits are not enforced since Linux 5.16) is told as a refusal.
pub(crate) fn set_kernel_memory(
    memory_dir: &Path,
    v2: bool,
    name: &str,
    value: &str,
) -> std::result::Result<(), String> {
    if v2 {
        return Err("cgroup v2 has no kernel memory limits".into());
    }
    let file = match name {
        "KernelTCPMemory" => "memory.kmem.tcp.limit_in_bytes",
        _ => "memory.kmem.limit_in_bytes",
    };
    let path = memory_dir.join(file);
    std::fs::write(&path, value).map_err(|e| format!("write {}: {e}", path.display()))?;
    let wanted: i64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
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
        Err(format!("the kernel accepted {wanted} for {file} but keeps {got}: it does not enforce this limit"))
    }
}
