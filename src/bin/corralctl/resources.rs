//! Resources: update and stats.

use crate::output::{json, table};
use crate::{usage, Ctl, Outcome};
use clap::Args;
use corral::cgroups::Stats;
use corral::Resources;
use std::collections::BTreeMap;
use std::io::Write;

/// `update`. SIZE is bytes or 64K, 64M, 1G (powers of 1024); -1 means no limit.
#[derive(Args)]
pub struct UpdateArgs {
    /// The container.
    id: String,
    /// Memory limit (SIZE).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_negative_numbers = true)]
    memory: Option<i64>,
    /// Memory plus swap limit (SIZE).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_negative_numbers = true)]
    memory_swap: Option<i64>,
    /// Memory soft limit (SIZE).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_negative_numbers = true)]
    memory_reservation: Option<i64>,
    /// Kernel memory limit (SIZE, cgroup v1).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_negative_numbers = true)]
    kernel_memory: Option<i64>,
    /// Kernel TCP memory limit (SIZE, cgroup v1).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_negative_numbers = true)]
    kernel_memory_tcp: Option<i64>,
    /// Most processes (-1: no limit).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long, value_name = "N")]
    cpu_shares: Option<u64>,
    /// CFS period in microseconds.
    #[arg(long, value_name = "US")]
    cpu_period: Option<u64>,
    /// CFS quota in microseconds (-1: none).
    #[arg(long, value_name = "US", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    /// CPUs the container may use (e.g. 0-2,4).
    #[arg(long, value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long, value_name = "LIST")]
    cpuset_mems: Option<String>,
    /// Block I/O weight (10-1000).
    #[arg(long, value_name = "N")]
    blkio_weight: Option<u16>,
}

/// `stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// The containers (every live one of the namespace if none).
    ids: Vec<String>,
    /// Redraw every second.
    #[arg(short, long)]
    watch: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A size: bytes, or with a K/M/G suffix (powers of 1024); -1 for no limit.
fn parse_size(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a size (e.g. 65536, 64K, 64M, 1G, -1)");
    if s == "-1" {
        return Ok(-1);
    }
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(bad)
}

/// `update`.
pub fn update(ctl: &Ctl, a: UpdateArgs) -> Outcome {
    let r = Resources {
        memory: a.memory,
        memory_swap: a.memory_swap,
        memory_reservation: a.memory_reservation,
        kernel_memory: a.kernel_memory,
        kernel_tcp_memory: a.kernel_memory_tcp,
        pids_limit: a.pids_limit,
        cpu_shares: a.cpu_shares,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        blkio_weight: a.blkio_weight,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
    };
    if r.fields().is_empty() {
        return Err(usage("update", "update needs at least one resource flag"));
    }
    ctl.client()?.update(&ctl.namespace, &a.id, r)?;
    Ok(0)
}

/// Bytes for people: `512B`, `1.5KiB`, `64.0MiB`, `1.00GiB`, `max`.
pub fn human_bytes(b: u64) -> String {
    // The kernel's "no limit" is u64::MAX on v2 and a page-rounded i64::MAX on v1.
    if b >= 1 << 62 {
        return "max".into();
    }
    let f = b as f64;
    match b {
        0..=1023 => format!("{b}B"),
        1024..=1048575 => format!("{:.1}KiB", f / 1024.0),
        1048576..=1073741823 => format!("{:.1}MiB", f / 1048576.0),
        _ => format!("{:.2}GiB", f / 1073741824.0),
    }
}

/// `stats`.
pub fn stats(ctl: &Ctl, a: StatsArgs) -> Outcome {
    let mut client = ctl.client()?;
    let mut previous: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        let all = client.stats(&ctl.namespace, a.ids.clone())?;
        if a.json {
            let map: BTreeMap<&String, &Stats> = all.iter().map(|(i, s)| (i, s)).collect();
            json(&map)?;
        } else {
            if a.watch {
                print!("\x1b[2J\x1b[H");
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|(id, s)| {
                    // CPU % over the last interval (from the second sample on).
                    let cpu = previous
                        .get(id)
                        .filter(|(t0, _)| s.timestamp_ns > *t0)
                        .map(|(t0, c0)| {
                            let dt = (s.timestamp_ns - t0) as f64;
                            format!(
                                "{:.1}%",
                                (s.cpu.usage.total.saturating_sub(*c0)) as f64 / dt * 100.0
                            )
                        })
                        .unwrap_or_else(|| "-".into());
                    previous.insert(id.clone(), (s.timestamp_ns, s.cpu.usage.total));
                    vec![
                        id.clone(),
                        cpu,
                        format!("{:.3}s", s.cpu.usage.total as f64 / 1e9),
                        human_bytes(s.memory.usage.usage),
                        human_bytes(s.memory.usage.limit),
                        format!(
                            "{}/{}",
                            s.pids.current,
                            if s.pids.limit == u64::MAX || s.pids.limit == 0 {
                                "max".to_string()
                            } else {
                                s.pids.limit.to_string()
                            }
                        ),
                        s.cpu.throttling.throttled_periods.to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "CPU%",
                    "CPU TIME",
                    "MEM",
                    "MEM LIMIT",
                    "PIDS",
                    "THROTTLED",
                ],
                &rows,
            );
        }
        if !a.watch {
            return Ok(0);
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
