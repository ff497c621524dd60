//! Stats read from fixture cgroup trees laid out as v1, v2 and hybrid hosts lay them out.

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
