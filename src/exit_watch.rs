//! A container process's exit seen by the daemon itself, through a pidfd on the process,
//! in parallel with its shim: the kernel wakes both when the process dies, so the exit is
//! published without waiting for the shim to be scheduled, reap it, and write its fifo.
//!
//! The process is not the daemon's child, so its status is read where the kernel keeps it
//! for others: `/proc/<pid>/stat`'s `exit_code` while it is a zombie (field 52, since Linux
//! 3.5), and once its shim has reaped it, the pidfd's `PIDFD_GET_INFO` with
//! `PIDFD_INFO_EXIT` (Linux 6.15). Where neither answers (an older kernel and a shim that
//! reaped first), there is no answer here and the shim's fifo tells, as it always does.
//!
//! Only for a process whose output the shim does not own: the shim drains a logged or
//! terminal process's output after its exit, and its log is complete before anyone learns
//! of the exit, so those exits keep coming through the shim.

use crate::layout::{read_proc_stat, stat_field as field, stat_fields, StatBuf};
use crate::reaper::exit_code;
use nix::sys::wait::WaitStatus;
use std::os::fd::{AsRawFd, OwnedFd};

/// A pidfd on `pid`, if it is still the process that started at `starttime` (checked after
/// the pidfd is open, so it cannot refer to a later process with the pid) and the kernel
/// shows this daemon its stat in full: `exit_code` reads 0 to a reader that may not
/// ptrace-read the process (an LSM can deny it even to root), and a 0 that is not the
/// process's would be a lost exit code. Such a process's exit comes from its shim.
pub fn open(pid: i32, starttime: Option<u64>) -> Option<OwnedFd> {
    let starttime = starttime?;
    let fd = crate::launch::pidfd(pid)?;
    let mut buf: StatBuf = [0; 2048];
    shown_in_full(read_proc_stat(pid, &mut buf)?, starttime).then_some(fd)
}

/// Whether a live process's stat line is the one with `starttime` and shows the fields
/// kept from readers without ptrace-read access: its `startcode` (field 26) reads 1 to
/// them, its address to others, or 0 in the middle of an `exec` (the new memory map is in
/// place, with its stack, but no code yet: the runtime may return while its init still
/// execs the container's command). A process with no memory map at all (exiting, or a
/// zombie) reads 0 to anyone: with `vsize` (field 23, shown to all) 0 too, it is not
/// trusted.
fn shown_in_full(stat: &str, starttime: u64) -> bool {
    let Some(fields) = stat_fields(stat) else {
        return false;
    };
    let shown = match field::<u64>(&fields, 26) {
        Some(1) | None => false,
        Some(0) => field::<u64>(&fields, 23).is_some_and(|vsize| vsize > 0),
        Some(_) => true,
    };
    shown && field::<u64>(&fields, 22) == Some(starttime)
}

/// Waits for the process behind `pidfd` to exit and returns its exit code (the code, or
/// 128 + signal), or `None` when the kernel no longer tells it here.
pub async fn exited(pidfd: OwnedFd, pid: i32, starttime: u64) -> Option<u32> {
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .ok()?;
    let _ = afd.readable().await.ok()?;
    zombie_code(pid, starttime).or_else(|| reaped_code(afd.get_ref()))
}

/// The exit code of a zombie: `pid` with start time `starttime`, not yet reaped.
fn zombie_code(pid: i32, starttime: u64) -> Option<u32> {
    let mut buf: StatBuf = [0; 2048];
    parse_zombie_stat(read_proc_stat(pid, &mut buf)?, starttime)
}

/// `exit_code` from a `/proc/<pid>/stat` line, when it is the zombie with `starttime`.
fn parse_zombie_stat(stat: &str, starttime: u64) -> Option<u32> {
    let fields = stat_fields(stat)?;
    // State is field 3, starttime 22, exit_code 52.
    if field::<String>(&fields, 3)? != "Z" || field::<u64>(&fields, 22)? != starttime {
        return None;
    }
    wait_status_code(field(&fields, 52)?)
}

/// A raw wait status (as `waitpid` gives it) as an exit code.
fn wait_status_code(raw: i32) -> Option<u32> {
    let code = exit_code(WaitStatus::from_raw(nix::unistd::Pid::from_raw(1), raw).ok()?)?;
    u32::try_from(code).ok()
}

/// `struct pidfd_info` (linux/pidfd.h), its first version (64 bytes).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// The exit code of the reaped process behind `pidfd`, if the kernel keeps it (6.15 on).
fn reaped_code(pidfd: &OwnedFd) -> Option<u32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..Default::default()
    };
    // SAFETY: PIDFD_GET_INFO writes at most size_of::<PidfdInfo>() bytes (the size is in
    // the request number) into `info`, which outlives the call.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
    if rc != 0 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    wait_status_code(info.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombies_stat_gives_its_code_and_only_for_its_start_time() {
        // Exited 3 (status 0x300) and killed by SIGKILL (status 9), start time 4242.
        let stat = |state: &str, code: i32| {
            let mut f: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
            f[0] = state.into();
            f[19] = "4242".into();
            f[49] = code.to_string();
            format!("77 (sh (x) y) {}", f.join(" "))
        };
        assert_eq!(parse_zombie_stat(&stat("Z", 0x300), 4242), Some(3));
        assert_eq!(parse_zombie_stat(&stat("Z", 9), 4242), Some(137));
        assert_eq!(parse_zombie_stat(&stat("Z", 9), 4243), None);
        assert_eq!(parse_zombie_stat(&stat("S", 0), 4242), None);
        assert_eq!(parse_zombie_stat("garbage", 4242), None);
    }

    #[test]
    fn a_stat_hidden_from_us_is_not_trusted() {
        let stat = |startcode: &str| {
            let mut f: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
            f[0] = "S".into();
            f[19] = "4242".into();
            f[23] = startcode.into();
            format!("77 (sh) {}", f.join(" "))
        };
        assert!(shown_in_full(&stat("4194304"), 4242));
        assert!(
            !shown_in_full(&stat("1"), 4242),
            "startcode 1: not ptrace-readable"
        );
        // Field 23 (vsize) is 23 in these lines: a memory map.
        assert!(
            shown_in_full(&stat("0"), 4242),
            "startcode 0 with a map: mid-exec"
        );
        assert!(!shown_in_full(&stat("4194304"), 4243), "another process");
        let no_map = stat("0").replacen(" 23 ", " 0 ", 1);
        assert!(
            !shown_in_full(&no_map, 4242),
            "no memory map: exiting, shows nothing"
        );
        assert!(!shown_in_full("garbage", 4242));
        // Our own stat is shown in full to us.
        let me = std::process::id() as i32;
        let own = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        assert!(shown_in_full(
            &own,
            crate::layout::proc_starttime(me).unwrap()
        ));
    }

    #[test]
    fn a_non_childs_exit_is_read_from_its_pidfd() {
        // A grandchild: its parent (our child) reaps it, as a shim does.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sh -c 'echo $$; exec sleep 100' & wait; exit 0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let pid: i32 = line.trim().parse().unwrap();
        // Its `exec` done first: mid-exec its new memory map's `startcode` may still read 0
        // (and `open` then refuses it, as unshown).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let start = crate::layout::proc_starttime(pid).unwrap();
        let fd = open(pid, Some(start)).unwrap();
        let second = open(pid, Some(start)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let code = rt.block_on(exited(fd, pid, start));
        child.wait().unwrap();
        // A kernel before 6.15 may not tell once the parent has reaped it.
        if code.is_some() || kernel_tells_reaped_exits() {
            assert_eq!(code, Some(143));
        }
        // Once its parent has reaped it, the pidfd still tells (6.15 on).
        if kernel_tells_reaped_exits() {
            assert_eq!(reaped_code(&second), Some(143));
        }
    }

    fn kernel_tells_reaped_exits() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        (major, minor) >= (6, 15)
    }
}
