//! Container statistics read straight from cgroup files (no runtime fork), on cgroup v1, v2
//! and hybrid hosts (where the cgroup2 mount at `<root>/unified` holds the hugetlb
//! controller). The types follow containerd v0.2's Stat.
//!
//! A missing cgroup is an error, never a silent zero: a path is checked before it is read.

use super::{CgroupError, CgroupPaths, Hierarchy};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// CPU time used, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total.
    pub total: u64,
    /// Per CPU (v1 only; empty on v2).
    pub percpu: Vec<u64>,
    /// In the kernel.
    pub kernel: u64,
    /// In user space.
    pub user: u64,
}

/// CFS throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods.
    pub periods: u64,
    /// Periods in which it was throttled.
    pub throttled_periods: u64,
    /// Time throttled, nanoseconds.
    pub throttled_time: u64,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
}

/// One kind of memory: usage, its high-water mark, its limit, how often the limit was hit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// Limit in bytes (u64::MAX for none).
    pub limit: u64,
    /// Current usage in bytes.
    pub usage: u64,
    /// Highest usage seen (0 where the kernel does not say).
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Page cache in bytes.
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory + swap (v1 memsw) or swap (v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    pub kernel_tcp: MemoryEntry,
    /// Every counter of memory.stat.
    pub raw: BTreeMap<String, u64>,
}

/// Pids statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Processes now.
    pub current: u64,
    /// Limit (0 for none).
    pub limit: u64,
}

/// One block-I/O counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major.
    pub major: u64,
    /// Device minor.
    pub minor: u64,
    /// Read, Write, Sync, Async, Discard, Total; empty for `io_time_recursive` and
    /// `sectors_recursive`, whose lines have no op.
    pub op: String,
    /// The value.
    pub value: u64,
}

/// Block-I/O statistics: containerd v0.2's eight groups. On v1 each comes from the CFQ
/// file, else the BFQ one, else (the first two only) the throttle one; on v2 `io.stat`
/// fills the first two and the others stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStats {
    /// Bytes transferred.
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations done.
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Operations queued (v1 CFQ/BFQ only).
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Time between dispatch and completion, nanoseconds (v1 CFQ/BFQ only).
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Time waiting in the scheduler's queues, nanoseconds (v1 CFQ/BFQ only).
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Requests merged into others (v1 CFQ/BFQ only).
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Disk time, milliseconds (v1 CFQ/BFQ only; no op).
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred (v1 CFQ/BFQ only; no op).
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// Huge pages of one size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    /// Bytes in use.
    pub usage: u64,
    /// Highest usage (v1) or limit (v2 `max`, u64::MAX for none).
    pub max: u64,
    /// Times an allocation failed at the limit.
    pub failcnt: u64,
}

/// A container's statistics at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// When they were read, nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
    /// Pids.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Huge pages by size ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

impl Hierarchy {
    /// Reads the statistics of a container's cgroups.
    pub fn stats(&self, paths: &CgroupPaths) -> Result<Stats> {
        let mut stats = match self {
            Hierarchy::V1 { .. } => self.stats_v1(paths)?,
            Hierarchy::V2 { root } => {
                let dir = root.join(paths.get("").trim_start_matches('/'));
                if !dir.is_dir() {
                    return Err(CgroupError::NotFound { path: dir }.into());
                }
                stats_v2(&dir)
            }
        };
        if let Some(dir) = self.v2_dir(paths.get("")).filter(|d| d.is_dir()) {
            if stats.hugetlb.is_empty() {
                stats.hugetlb = hugetlb_v2(&dir);
            }
        }
        stats.timestamp_ns = crate::types::now_ns();
        Ok(stats)
    }

    fn stats_v1(&self, paths: &CgroupPaths) -> Result<Stats, CgroupError> {
        let dir = |c: &str| self.dir(c, paths.get(c));
        let memory = dir("memory");
        if !memory.is_dir() {
            return Err(CgroupError::NotFound { path: memory });
        }
        let cpuacct = dir("cpuacct");
        let cpu = dir("cpu");
        let pids = dir("pids");
        let blkio = dir("blkio");
        let hugetlb = dir("hugetlb");
        let mut s = Stats::default();
        // CPU
        s.cpu.usage.total = read_u64(&cpuacct.join("cpuacct.usage"));
        s.cpu.usage.percpu = read_string(&cpuacct.join("cpuacct.usage_percpu"))
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let ticks = flat_keyed(&cpuacct.join("cpuacct.stat"));
        let tick_ns = 1_000_000_000 / clock_ticks();
        s.cpu.usage.user = ticks.get("user").copied().unwrap_or(0) * tick_ns;
        s.cpu.usage.kernel = ticks.get("system").copied().unwrap_or(0) * tick_ns;
        let throttle = flat_keyed(&cpu.join("cpu.stat"));
        s.cpu.throttling = Throttling {
            periods: throttle.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: throttle.get("throttled_time").copied().unwrap_or(0),
        };
        // Memory
        let entry = |prefix: &str| MemoryEntry {
            usage: read_u64(&memory.join(format!("{prefix}.usage_in_bytes"))),
            max: read_u64(&memory.join(format!("{prefix}.max_usage_in_bytes"))),
            limit: read_u64(&memory.join(format!("{prefix}.limit_in_bytes"))),
            failcnt: read_u64(&memory.join(format!("{prefix}.failcnt"))),
        };
        s.memory.usage = entry("memory");
        s.memory.swap = entry("memory.memsw");
        s.memory.kernel = entry("memory.kmem");
        s.memory.kernel_tcp = entry("memory.kmem.tcp");
        s.memory.raw = flat_keyed(&memory.join("memory.stat"));
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        // Pids
        s.pids = PidsStats {
            current: read_u64(&pids.join("pids.current")),
            limit: read_u64(&pids.join("pids.max")),
        };
        s.blkio = blkio_v1(&blkio);
        // Huge pages, if the v1 hugetlb controller is mounted (else read from v2 above).
        for size in hugepage_sizes() {
            let usage = hugetlb.join(format!("hugetlb.{size}.usage_in_bytes"));
            if usage.exists() {
                s.hugetlb.insert(
                    size.clone(),
                    HugetlbStats {
                        usage: read_u64(&usage),
                        max: read_u64(&hugetlb.join(format!("hugetlb.{size}.max_usage_in_bytes"))),
                        failcnt: read_u64(&hugetlb.join(format!("hugetlb.{size}.failcnt"))),
                    },
                );
            }
        }
        Ok(s)
    }
}

/// Block I/O from a v1 blkio directory: per group the CFQ file (`blkio.<name>`) where the
/// kernel has one with entries, else the BFQ one (`blkio.bfq.<name>`; all but the first two
/// need CONFIG_BFQ_CGROUP_DEBUG), else the throttle one where there is an equivalent.
fn blkio_v1(dir: &Path) -> BlkioStats {
    let read = |name: &str, throttle: bool| {
        let mut files = vec![format!("blkio.{name}"), format!("blkio.bfq.{name}")];
        if throttle {
            files.push(format!("blkio.throttle.{name}"));
        }
        files
            .iter()
            .map(|f| blkio_entries(&read_string(&dir.join(f))))
            .find(|entries| !entries.is_empty())
            .unwrap_or_default()
    };
    BlkioStats {
        io_service_bytes_recursive: read("io_service_bytes_recursive", true),
        io_serviced_recursive: read("io_serviced_recursive", true),
        io_queued_recursive: read("io_queued_recursive", false),
        io_service_time_recursive: read("io_service_time_recursive", false),
        io_wait_time_recursive: read("io_wait_time_recursive", false),
        io_merged_recursive: read("io_merged_recursive", false),
        io_time_recursive: read("time_recursive", false),
        sectors_recursive: read("sectors_recursive", false),
    }
}

/// Reads a cgroup2 directory.
pub fn stats_v2(dir: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = flat_keyed(&dir.join("cpu.stat"));
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.usage.total = us("usage_usec");
    s.cpu.usage.user = us("user_usec");
    s.cpu.usage.kernel = us("system_usec");
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    let events = flat_keyed(&dir.join("memory.events"));
    s.memory.usage = MemoryEntry {
        usage: read_u64(&dir.join("memory.current")),
        max: read_u64(&dir.join("memory.peak")),
        limit: read_u64(&dir.join("memory.max")),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    let swap_events = flat_keyed(&dir.join("memory.swap.events"));
    s.memory.swap = MemoryEntry {
        usage: read_u64(&dir.join("memory.swap.current")),
        max: read_u64(&dir.join("memory.swap.peak")),
        limit: read_u64(&dir.join("memory.swap.max")),
        failcnt: swap_events.get("max").copied().unwrap_or(0),
    };
    s.memory.raw = flat_keyed(&dir.join("memory.stat"));
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.pids = PidsStats {
        current: read_u64(&dir.join("pids.current")),
        limit: read_u64(&dir.join("pids.max")),
    };
    for line in read_string(&dir.join("io.stat")).lines() {
        let mut parts = line.split_whitespace();
        let Some((major, minor)) = parts.next().and_then(parse_dev) else {
            continue;
        };
        for kv in parts {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut s.blkio.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                "dios" => (&mut s.blkio.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    s.hugetlb = hugetlb_v2(dir);
    s
}

fn hugetlb_v2(dir: &Path) -> BTreeMap<String, HugetlbStats> {
    let mut out = BTreeMap::new();
    for size in hugepage_sizes() {
        let current = dir.join(format!("hugetlb.{size}.current"));
        if current.exists() {
            let events = flat_keyed(&dir.join(format!("hugetlb.{size}.events")));
            out.insert(
                size.clone(),
                HugetlbStats {
                    usage: read_u64(&current),
                    max: read_u64(&dir.join(format!("hugetlb.{size}.max"))),
                    failcnt: events.get("max").copied().unwrap_or(0),
                },
            );
        }
    }
    out
}

/// The host's huge page sizes as cgroup file names spell them ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let mut sizes: Vec<(u64, String)> = fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, hugepage_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

fn hugepage_name(kb: u64) -> String {
    if kb >= 1 << 20 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn read_string(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// A single-value file; "max" (no limit) reads as u64::MAX, a missing file as 0.
fn read_u64(path: &Path) -> u64 {
    let s = read_string(path);
    let s = s.trim();
    if s == "max" {
        u64::MAX
    } else {
        s.parse().unwrap_or(0)
    }
}

/// "key value" lines.
fn flat_keyed(path: &Path) -> BTreeMap<String, u64> {
    read_string(path)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn parse_dev(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// v1 blkio lines: "8:0 Read 4096" (and a closing "Total N"), or "8:0 4096" with no op
/// (`blkio.time_recursive`, `blkio.sectors_recursive`).
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let (major, minor) = parse_dev(p.next()?)?;
            let (op, value) = match (p.next()?, p.next()) {
                (value, None) => (String::new(), value),
                (op, Some(value)) => (op.to_string(), value),
            };
            Some(BlkioEntry {
                major,
                minor,
                op,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
