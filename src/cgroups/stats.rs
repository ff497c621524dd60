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
mod tests {
    use super::*;
    use crate::error::Error;
    use std::path::PathBuf;

    fn fixture(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "corral-stats-{}-{}",
            std::process::id(),
            crate::types::now_ns()
        ));
        for (name, text) in files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn v2_files_parse_as_a_v2_host_lays_them_out() {
        let root = fixture(&[
            ("cgroup.controllers", "cpuset cpu io memory hugetlb pids\n"),
            ("web/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 700\n"),
            ("web/memory.current", "1048576\n"),
            ("web/memory.peak", "2097152\n"),
            ("web/memory.max", "max\n"),
            ("web/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ("web/memory.swap.current", "0\n"),
            ("web/memory.swap.max", "max\n"),
            ("web/memory.stat", "anon 4096\nfile 8192\n"),
            ("web/pids.current", "3\n"),
            ("web/pids.max", "100\n"),
            ("web/io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
        ]);
        let h = Hierarchy::detect(&root);
        assert_eq!(h, Hierarchy::V2 { root: root.clone() });
        let s = h.stats(&CgroupPaths::uniform("/web")).unwrap();
        assert_eq!(s.cpu.usage.total, 2_500_000);
        assert_eq!(s.cpu.usage.kernel, 500_000);
        assert_eq!(s.cpu.throttling.throttled_periods, 3);
        assert_eq!(s.cpu.throttling.throttled_time, 700_000);
        assert_eq!(s.memory.usage.usage, 1_048_576);
        assert_eq!(s.memory.usage.max, 2_097_152);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 4);
        assert_eq!(s.memory.cache, 8192);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 3,
                limit: 100
            }
        );
        let missing = CgroupPaths::uniform("/missing");
        assert!(
            matches!(h.stats(&missing), Err(Error::NotFound(_))),
            "a missing cgroup is an error, not zeros"
        );
        fs::remove_dir_all(root).unwrap();
    }

    fn entry(major: u64, minor: u64, op: &str, value: u64) -> BlkioEntry {
        BlkioEntry {
            major,
            minor,
            op: op.into(),
            value,
        }
    }

    #[test]
    fn v2_io_stat_fills_bytes_and_ios_with_discards() {
        let root = fixture(&[
            ("cgroup.controllers", "io memory\n"),
            (
                "web/io.stat",
                "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=512 dios=3\n\
                 253:1 rbytes=10 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.usage=7\n",
            ),
        ]);
        let s = Hierarchy::detect(&root)
            .stats(&CgroupPaths::uniform("/web"))
            .unwrap();
        let b = &s.blkio;
        assert_eq!(
            b.io_service_bytes_recursive,
            vec![
                entry(8, 0, "Read", 4096),
                entry(8, 0, "Write", 8192),
                entry(8, 0, "Discard", 512),
                entry(253, 1, "Read", 10),
                entry(253, 1, "Write", 0),
                entry(253, 1, "Discard", 0),
            ]
        );
        assert_eq!(
            b.io_serviced_recursive[..3],
            [
                entry(8, 0, "Read", 1),
                entry(8, 0, "Write", 2),
                entry(8, 0, "Discard", 3),
            ]
        );
        assert_eq!(b.io_serviced_recursive.len(), 6);
        for (name, group) in [
            ("io_queued", &b.io_queued_recursive),
            ("io_service_time", &b.io_service_time_recursive),
            ("io_wait_time", &b.io_wait_time_recursive),
            ("io_merged", &b.io_merged_recursive),
            ("io_time", &b.io_time_recursive),
            ("sectors", &b.sectors_recursive),
        ] {
            assert!(group.is_empty(), "v2 has no {name}");
        }
        fs::remove_dir_all(root).unwrap();
    }

    /// A v1 blkio directory with one group's file; the op lines end with a Total.
    fn rwstat(ops: &[(&str, u64)]) -> String {
        let mut text = String::new();
        for (op, v) in ops {
            text += &format!("8:16 {op} {v}\n");
        }
        text + "Total 99\n"
    }

    #[test]
    fn v1_blkio_reads_all_eight_cfq_groups() {
        let two = |r, w| {
            rwstat(&[
                ("Read", r),
                ("Write", w),
                ("Sync", r),
                ("Async", w),
                ("Discard", 0),
                ("Total", r + w),
            ])
        };
        let files = [
            ("memory/web/memory.usage_in_bytes", "1\n".to_string()),
            (
                "blkio/web/blkio.io_service_bytes_recursive",
                two(4096, 8192),
            ),
            ("blkio/web/blkio.io_serviced_recursive", two(1, 2)),
            ("blkio/web/blkio.io_queued_recursive", two(3, 4)),
            ("blkio/web/blkio.io_service_time_recursive", two(5, 6)),
            ("blkio/web/blkio.io_wait_time_recursive", two(7, 8)),
            ("blkio/web/blkio.io_merged_recursive", two(9, 10)),
            (
                "blkio/web/blkio.time_recursive",
                "8:16 1234\n8:0 5\n".to_string(),
            ),
            ("blkio/web/blkio.sectors_recursive", "8:16 24\n".to_string()),
            // Ignored: the CFQ file has entries.
            (
                "blkio/web/blkio.throttle.io_service_bytes_recursive",
                two(1, 1),
            ),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let root = fixture(&files);
        let h = Hierarchy::detect(&root);
        let b = h.stats(&CgroupPaths::uniform("/web")).unwrap().blkio;
        let ops = |g: &[BlkioEntry]| -> Vec<(String, u64)> {
            g.iter().map(|e| (e.op.clone(), e.value)).collect()
        };
        let want = |r: u64, w: u64| -> Vec<(String, u64)> {
            [
                ("Read", r),
                ("Write", w),
                ("Sync", r),
                ("Async", w),
                ("Discard", 0),
                ("Total", r + w),
            ]
            .iter()
            .map(|(o, v)| (o.to_string(), *v))
            .collect()
        };
        assert_eq!(ops(&b.io_service_bytes_recursive), want(4096, 8192));
        assert_eq!(ops(&b.io_serviced_recursive), want(1, 2));
        assert_eq!(ops(&b.io_queued_recursive), want(3, 4));
        assert_eq!(ops(&b.io_service_time_recursive), want(5, 6));
        assert_eq!(ops(&b.io_wait_time_recursive), want(7, 8));
        assert_eq!(ops(&b.io_merged_recursive), want(9, 10));
        assert_eq!(b.io_service_bytes_recursive[0], entry(8, 16, "Read", 4096));
        assert_eq!(
            b.io_time_recursive,
            vec![entry(8, 16, "", 1234), entry(8, 0, "", 5)]
        );
        assert_eq!(b.sectors_recursive, vec![entry(8, 16, "", 24)]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v1_blkio_falls_back_to_bfq_then_throttle() {
        let root = fixture(&[
            ("memory/web/memory.usage_in_bytes", "1\n"),
            // As on a host whose disks use no CFQ: empty BFQ files say only "Total 0".
            (
                "blkio/web/blkio.bfq.io_service_bytes_recursive",
                "Total 0\n",
            ),
            (
                "blkio/web/blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
            ),
            (
                "blkio/web/blkio.bfq.io_serviced_recursive",
                "8:0 Read 1\nTotal 1\n",
            ),
            (
                "blkio/web/blkio.throttle.io_serviced_recursive",
                "8:0 Read 7\nTotal 7\n",
            ),
            (
                "blkio/web/blkio.bfq.io_queued_recursive",
                "8:0 Read 2\nTotal 2\n",
            ),
            ("blkio/web/blkio.bfq.sectors_recursive", "8:0 16\n"),
        ]);
        let b = Hierarchy::detect(&root)
            .stats(&CgroupPaths::uniform("/web"))
            .unwrap()
            .blkio;
        assert_eq!(
            b.io_service_bytes_recursive,
            vec![entry(8, 0, "Read", 10), entry(8, 0, "Write", 20)],
            "throttle, since BFQ has no entries"
        );
        assert_eq!(
            b.io_serviced_recursive,
            vec![entry(8, 0, "Read", 1)],
            "BFQ before throttle"
        );
        assert_eq!(b.io_queued_recursive, vec![entry(8, 0, "Read", 2)]);
        assert_eq!(b.sectors_recursive, vec![entry(8, 0, "", 16)]);
        assert!(b.io_time_recursive.is_empty() && b.io_merged_recursive.is_empty());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn hybrid_hosts_take_hugetlb_from_the_unified_mount() {
        let sizes = hugepage_sizes();
        let size = sizes.first().cloned().unwrap_or_else(|| "2MB".into());
        let current = format!("unified/web/hugetlb.{size}.current");
        let max = format!("unified/web/hugetlb.{size}.max");
        let events = format!("unified/web/hugetlb.{size}.events");
        let root = fixture(&[
            ("unified/cgroup.controllers", "hugetlb\n"),
            ("memory/web/memory.usage_in_bytes", "4096\n"),
            ("memory/web/memory.limit_in_bytes", "16777216\n"),
            ("memory/web/memory.failcnt", "2\n"),
            ("memory/web/memory.stat", "cache 512\nrss 4096\n"),
            ("cpuacct/web/cpuacct.usage", "123456\n"),
            ("cpuacct/web/cpuacct.usage_percpu", "100000 23456 \n"),
            ("cpuacct/web/cpuacct.stat", "user 3\nsystem 1\n"),
            (
                "blkio/web/blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
            ),
            (&current, "0\n"),
            (&max, "max\n"),
            (&events, "max 5\n"),
        ]);
        let h = Hierarchy::detect(&root);
        assert!(matches!(
            &h,
            Hierarchy::V1 {
                unified: Some(_),
                ..
            }
        ));
        let s = h.stats(&CgroupPaths::uniform("web")).unwrap();
        assert_eq!(s.memory.usage.limit, 16_777_216);
        assert_eq!(s.memory.usage.failcnt, 2);
        assert_eq!(s.memory.cache, 512);
        assert_eq!(s.cpu.usage.percpu, vec![100000, 23456]);
        assert_eq!(s.cpu.usage.user, 3 * (1_000_000_000 / clock_ticks()));
        assert_eq!(
            s.blkio.io_service_bytes_recursive.len(),
            2,
            "Total is not an entry"
        );
        if !hugepage_sizes().is_empty() {
            assert_eq!(s.hugetlb[&size].failcnt, 5);
            assert_eq!(s.hugetlb[&size].max, u64::MAX);
        }
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_name(2048), "2MB");
        assert_eq!(hugepage_name(1 << 20), "1GB");
        assert_eq!(hugepage_name(64), "64KB");
    }
}
