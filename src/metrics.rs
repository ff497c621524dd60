//! The opt-in Prometheus endpoint (`corrald --metrics-address 127.0.0.1:PORT`): a minimal
//! HTTP/1.1 server answering `GET /metrics` with the text exposition format.
//!
//! Per container: CPU, memory, pids, OOM kills, restarts. Daemon: containers by state,
//! event subscribers, RPC requests and their latency histogram, live shims.

use crate::types::Status;
use crate::Handle;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bounds of the RPC latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// RPC counters, shared by the server's connection tasks.
#[derive(Default)]
pub struct RpcMetrics {
    by_request: Mutex<std::collections::BTreeMap<&'static str, Histogram>>,
    errors: AtomicU64,
}

impl RpcMetrics {
    /// Records one request of kind `request` that took `took`.
    pub fn observe(&self, request: &'static str, took: Duration, failed: bool) {
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        let mut map = self.by_request.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry(request).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i] += 1;
            }
        }
    }
}

/// The process-wide RPC counters.
pub fn rpc() -> &'static RpcMetrics {
    static RPC: std::sync::OnceLock<RpcMetrics> = std::sync::OnceLock::new();
    RPC.get_or_init(RpcMetrics::default)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text format.
pub async fn render(handle: &Handle) -> String {
    let mut out = String::new();
    let containers = handle.all().await.unwrap_or_default();
    let info = handle.info().await.ok();

    let _ = writeln!(
        out,
        "# HELP corral_containers Containers by state.\n# TYPE corral_containers gauge"
    );
    for status in [
        Status::Created,
        Status::Running,
        Status::Pausing,
        Status::Paused,
        Status::Stopped,
        Status::Unknown,
    ] {
        let n = containers.iter().filter(|c| c.status == status).count();
        let _ = writeln!(out, "corral_containers{{state=\"{status}\"}} {n}");
    }
    let shims: usize = containers
        .iter()
        .map(|c| {
            usize::from(c.exit.is_none() && c.pid > 0)
                + c.execs
                    .iter()
                    .filter(|e| e.exit.is_none() && e.pid > 0)
                    .count()
        })
        .sum();
    let _ = writeln!(out, "# HELP corral_shims Live shims (one per running container process).\n# TYPE corral_shims gauge\ncorral_shims {shims}");
    if let Some(i) = &info {
        let _ = writeln!(out, "# HELP corral_event_subscribers Connected event subscribers.\n# TYPE corral_event_subscribers gauge\ncorral_event_subscribers {}", i.subscribers);
        let _ = writeln!(out, "# HELP corral_event_subscribers_lagged_total Subscribers cut off because they could not keep up.\n# TYPE corral_event_subscribers_lagged_total counter\ncorral_event_subscribers_lagged_total {}", i.lagged_subscribers);
        let _ = writeln!(out, "# HELP corral_events_published_total Events published (the last sequence number).\n# TYPE corral_events_published_total counter\ncorral_events_published_total {}", i.last_seq);
    }

    let rpc = rpc();
    let map = rpc
        .by_request
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let _ = writeln!(out, "# HELP corral_rpc_requests_total RPC requests served.\n# TYPE corral_rpc_requests_total counter");
    for (req, h) in &map {
        let _ = writeln!(
            out,
            "corral_rpc_requests_total{{request=\"{req}\"}} {}",
            h.count
        );
    }
    let _ = writeln!(out, "# HELP corral_rpc_errors_total RPC requests answered with an error.\n# TYPE corral_rpc_errors_total counter\ncorral_rpc_errors_total {}", rpc.errors.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP corral_rpc_request_duration_seconds RPC request latency.\n# TYPE corral_rpc_request_duration_seconds histogram");
    for (req, h) in &map {
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "corral_rpc_request_duration_seconds_bucket{{request=\"{req}\",le=\"{le}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "corral_rpc_request_duration_seconds_bucket{{request=\"{req}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "corral_rpc_request_duration_seconds_sum{{request=\"{req}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "corral_rpc_request_duration_seconds_count{{request=\"{req}\"}} {}",
            h.count
        );
    }

    let mut cpu = String::new();
    let mut mem = String::new();
    let mut limit = String::new();
    let mut pids = String::new();
    let mut ooms = String::new();
    let mut restarts = String::new();
    for c in &containers {
        let l = format!(
            "namespace=\"{}\",id=\"{}\"",
            label(&c.namespace),
            label(&c.id)
        );
        let _ = writeln!(
            ooms,
            "corral_container_oom_kills_total{{{l}}} {}",
            c.oom_kills
        );
        let _ = writeln!(
            restarts,
            "corral_container_restarts_total{{{l}}} {}",
            c.restarts
        );
        if !c.status.is_live() {
            continue;
        }
        if let Ok(s) = handle.stats(&c.namespace, &c.id).await {
            let _ = writeln!(
                cpu,
                "corral_container_cpu_seconds_total{{{l}}} {}",
                s.cpu.usage.total as f64 / 1e9
            );
            let _ = writeln!(
                mem,
                "corral_container_memory_usage_bytes{{{l}}} {}",
                s.memory.usage.usage
            );
            if s.memory.usage.limit < 1 << 62 {
                let _ = writeln!(
                    limit,
                    "corral_container_memory_limit_bytes{{{l}}} {}",
                    s.memory.usage.limit
                );
            }
            let _ = writeln!(pids, "corral_container_pids{{{l}}} {}", s.pids.current);
        }
    }
    for (name, kind, help, body) in [
        (
            "corral_container_cpu_seconds_total",
            "counter",
            "CPU time used by the container.",
            cpu,
        ),
        (
            "corral_container_memory_usage_bytes",
            "gauge",
            "Memory used by the container.",
            mem,
        ),
        (
            "corral_container_memory_limit_bytes",
            "gauge",
            "The container's memory limit.",
            limit,
        ),
        (
            "corral_container_pids",
            "gauge",
            "Processes in the container.",
            pids,
        ),
        (
            "corral_container_oom_kills_total",
            "counter",
            "Processes of the container killed by the OOM killer.",
            ooms,
        ),
        (
            "corral_container_restarts_total",
            "counter",
            "Restarts by the container's restart policy.",
            restarts,
        ),
    ] {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    }
    out
}

/// Serves `/metrics` on `listener` until the daemon stops.
pub async fn serve(handle: Handle, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handle = handle.clone();
                actix_rt::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(&handle, stream))
                        .await;
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(handle: &Handle, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(handle).await,
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
