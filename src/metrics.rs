//! The opt-in Prometheus endpoint (`corrald --metrics-address 127.0.0.1:PORT`): a minimal
//! HTTP/1.1 server answering `GET /metrics` (the Prometheus text format, version 0.0.4,
//! encoded by `prometheus-client`), `GET /healthz` and `GET /readyz`.
//!
//! Per container: CPU, memory, pids, OOM kills, restarts, and whether it answered. Daemon:
//! containers by state, event subscribers, RPC requests by kind and outcome and their latency
//! histogram, live shims, build, the process's memory and open fds. Every metric is listed
//! in `docs/operations.md`.
//!
//! A scrape never waits on one slow container: the container list is bounded by
//! [`LIST_TIMEOUT`] (the last good list is served when it runs out, with
//! `corral_scrape_stale 1`), and each container's statistics by
//! [`CONTAINER_STATS_TIMEOUT`], asked of every container at once; one that does not answer
//! in time is marked `corral_container_unresponsive 1`.

use crate::error::Error;
use crate::stats::Stats;
use crate::types::{ContainerInfo, Status};
use crate::Handle;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bounds of the RPC latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// How long a scrape waits for one container's statistics; all are asked at once, so a
/// wedged container costs a scrape this long at most.
pub const CONTAINER_STATS_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a scrape waits for the supervisor's container list (and the event counters)
/// before it serves the last good one.
pub const LIST_TIMEOUT: Duration = Duration::from_millis(300);

/// How long `/healthz` and `/readyz` wait for the supervisor to answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    request: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    namespace: String,
    id: String,
    process: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    namespace: String,
    id: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// RPC counters, shared by the server's connection tasks.
pub struct RpcMetrics {
    requests: Family<OutcomeLabels, Counter>,
    errors: Counter,
    duration: Family<RequestLabels, Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            requests: Family::default(),
            errors: Counter::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// The `outcome` label of a request answered with `error` (`ok` for none).
pub fn outcome(error: Option<&Error>) -> &'static str {
    match error {
        None => "ok",
        Some(Error::NotFound(_)) => "not_found",
        Some(Error::AlreadyExists(_)) => "already_exists",
        Some(Error::InvalidArgument(_)) => "invalid_argument",
        Some(Error::PermissionDenied(_)) => "permission_denied",
        Some(Error::WrongState(_)) => "wrong_state",
        Some(Error::RuntimeFailed { .. }) => "runtime_failed",
        Some(Error::Timeout(_)) => "timeout",
        Some(Error::Lagged { .. }) => "lagged",
        Some(Error::Protocol(_)) => "protocol",
        Some(Error::Internal(_)) => "internal",
        Some(Error::Truncated { .. }) => "truncated",
        Some(Error::Unavailable(_)) => "unavailable",
        Some(Error::Corrupt(_)) => "corrupt",
        Some(Error::NoSpace(_)) => "no_space",
    }
}

impl RpcMetrics {
    /// Records one request of kind `request` that took `took` and failed with `error`, if
    /// it failed.
    pub fn observe(&self, request: &'static str, took: Duration, error: Option<&Error>) {
        if error.is_some() {
            self.errors.inc();
        }
        let outcome = outcome(error);
        self.requests
            .get_or_create(&OutcomeLabels { request, outcome })
            .inc();
        self.duration
            .get_or_create(&RequestLabels { request })
            .observe(took.as_secs_f64());
    }
}

/// The process-wide RPC counters.
pub fn rpc() -> &'static RpcMetrics {
    static RPC: OnceLock<RpcMetrics> = OnceLock::new();
    RPC.get_or_init(RpcMetrics::default)
}

/// The supervisor's figures a scrape reads through its mailbox, kept for the next scrape
/// that cannot have them in time.
#[derive(Clone, Default)]
struct Snapshot {
    containers: Vec<ContainerInfo>,
    /// Subscribers, lagged subscribers, last event sequence number.
    events: Option<(usize, u64, u64)>,
}

/// What the server shares between its connections: the supervisor once it is there, and the
/// last good figures.
#[derive(Default)]
struct State {
    handle: OnceLock<Handle>,
    last: Mutex<Snapshot>,
}

/// One container's answer to a scrape.
enum Answer {
    Stats(Box<Stats>),
    /// It answered with an error (it stopped meanwhile, or has no cgroup).
    Nothing,
    /// It did not answer within [`CONTAINER_STATS_TIMEOUT`].
    TimedOut,
}

impl State {
    /// The supervisor's figures, or the last good ones (and `true`) if it does not answer
    /// within [`LIST_TIMEOUT`].
    async fn snapshot(&self, handle: &Handle) -> (Snapshot, bool) {
        let (list, events) = futures_util::future::join(
            tokio::time::timeout(LIST_TIMEOUT, handle.all()),
            tokio::time::timeout(LIST_TIMEOUT, handle.event_counts()),
        )
        .await;
        self.merge(
            list.ok().and_then(Result::ok),
            events.ok().and_then(Result::ok),
        )
    }

    /// Keeps what came in time as the last good figures; the rest is the last good one
    /// (and `true`: stale).
    fn merge(
        &self,
        list: Option<Vec<ContainerInfo>>,
        events: Option<(usize, u64, u64)>,
    ) -> (Snapshot, bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let stale = list.is_none() || events.is_none();
        if let Some(containers) = list {
            last.containers = containers;
        }
        if let Some(counts) = events {
            last.events = Some(counts);
        }
        (last.clone(), stale)
    }

    /// Renders every metric in the Prometheus text format.
    async fn render(&self, handle: &Handle) -> String {
        let (snapshot, stale) = self.snapshot(handle).await;
        let asks = snapshot.containers.iter().map(|c| async move {
            match tokio::time::timeout(CONTAINER_STATS_TIMEOUT, handle.stats(&c.namespace, &c.id))
                .await
            {
                Ok(Ok(s)) => Answer::Stats(Box::new(s)),
                Ok(Err(_)) => Answer::Nothing,
                Err(_) => Answer::TimedOut,
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut registry = Registry::default();
        register_daemon(&mut registry, &snapshot, stale);
        register_containers(&mut registry, &snapshot.containers, &answers);
        register_log_losses(&mut registry, handle, &snapshot.containers);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::warn!("metrics: cannot encode: {e}");
        }
        out
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn register_daemon(registry: &mut Registry, snapshot: &Snapshot, stale: bool) {
    registry.register(
        "corral_build",
        "The daemon's release (always 1)",
        Info::new(BuildLabels {
            version: crate::VERSION,
        }),
    );
    gauge(
        registry,
        "corral_scrape_stale",
        "1 when the supervisor did not answer in time and the container list is the last good one",
        i64::from(stale),
    );

    let by_state: Family<StateLabels, Gauge> = Family::default();
    for status in Status::ALL {
        let n = snapshot
            .containers
            .iter()
            .filter(|c| c.status == status)
            .count();
        by_state
            .get_or_create(&StateLabels {
                state: status.to_string(),
            })
            .set(count(n));
    }
    registry.register("corral_containers", "Containers by state", by_state);

    let shims: usize = snapshot
        .containers
        .iter()
        .map(|c| {
            usize::from(c.exit.is_none() && c.pid > 0)
                + c.execs
                    .iter()
                    .filter(|e| e.exit.is_none() && e.pid > 0)
                    .count()
        })
        .sum();
    gauge(
        registry,
        "corral_shims",
        "Live shims (one per running container process)",
        count(shims),
    );

    if let Some((subscribers, lagged, last_seq)) = snapshot.events {
        gauge(
            registry,
            "corral_event_subscribers",
            "Connected event subscribers",
            count(subscribers),
        );
        let c: Counter = Counter::default();
        c.inc_by(lagged);
        registry.register(
            "corral_event_subscribers_lagged",
            "Subscribers cut off because they could not keep up",
            c,
        );
        let c: Counter = Counter::default();
        c.inc_by(last_seq);
        registry.register(
            "corral_events_published",
            "Events published (the last sequence number)",
            c,
        );
    }

    let rpc = rpc();
    registry.register(
        "corral_rpc_requests",
        "RPC requests served, by request kind and outcome (ok or the error's kind)",
        rpc.requests.clone(),
    );
    registry.register(
        "corral_rpc_errors",
        "RPC requests answered with an error",
        rpc.errors.clone(),
    );
    registry.register_with_unit(
        "corral_rpc_request_duration",
        "RPC request latency",
        Unit::Seconds,
        rpc.duration.clone(),
    );

    let own = ProcessFigures::read();
    if let Some(rss) = own.resident_bytes {
        let g: Gauge<u64, AtomicU64> = Gauge::default();
        g.set(rss);
        registry.register_with_unit(
            "process_resident_memory",
            "The daemon's resident memory",
            Unit::Bytes,
            g,
        );
    }
    if let Some(fds) = own.open_fds {
        gauge(
            registry,
            "process_open_fds",
            "File descriptors the daemon has open",
            count(fds),
        );
    }
}

fn register_containers(registry: &mut Registry, containers: &[ContainerInfo], answers: &[Answer]) {
    let cpu: Family<ContainerLabels, Counter<f64, AtomicU64>> = Family::default();
    let mem: Family<ContainerLabels, Gauge<u64, AtomicU64>> = Family::default();
    let limit: Family<ContainerLabels, Gauge<u64, AtomicU64>> = Family::default();
    let pids: Family<ContainerLabels, Gauge<u64, AtomicU64>> = Family::default();
    let ooms: Family<ContainerLabels, Counter> = Family::default();
    let restarts: Family<ContainerLabels, Counter> = Family::default();
    let unresponsive: Family<ContainerLabels, Gauge> = Family::default();
    let operations: Family<OperationLabels, Gauge> = Family::default();
    for (c, answer) in containers.iter().zip(answers) {
        if !c.operation.is_empty() {
            let l = OperationLabels {
                namespace: c.namespace.clone(),
                id: c.id.clone(),
                operation: c.operation.clone(),
            };
            operations.get_or_create(&l).set(1);
        }
        let l = ContainerLabels {
            namespace: c.namespace.clone(),
            id: c.id.clone(),
        };
        ooms.get_or_create(&l).inc_by(u64::from(c.oom_kills));
        restarts.get_or_create(&l).inc_by(u64::from(c.restarts));
        // Busy: the supervisor's list did not hear from it either (its last known state).
        let timed_out = matches!(answer, Answer::TimedOut) || c.busy;
        if c.status.is_live() || timed_out {
            unresponsive.get_or_create(&l).set(i64::from(timed_out));
        }
        let Answer::Stats(s) = answer else {
            continue;
        };
        if !c.status.is_live() {
            continue; // a stopped container's cgroup figures are its last run's, or none
        }
        cpu.get_or_create(&l).inc_by(s.cpu.usage.total as f64 / 1e9);
        mem.get_or_create(&l).set(s.memory.usage.usage);
        if s.memory.usage.limit < 1 << 62 {
            limit.get_or_create(&l).set(s.memory.usage.limit);
        }
        pids.get_or_create(&l).set(s.pids.current);
    }
    registry.register_with_unit(
        "corral_container_cpu",
        "CPU time used by the container",
        Unit::Seconds,
        cpu,
    );
    registry.register_with_unit(
        "corral_container_memory_usage",
        "Memory used by the container",
        Unit::Bytes,
        mem,
    );
    registry.register_with_unit(
        "corral_container_memory_limit",
        "The container's memory limit",
        Unit::Bytes,
        limit,
    );
    registry.register("corral_container_pids", "Processes in the container", pids);
    registry.register(
        "corral_container_oom_kills",
        "Processes of the container killed by the OOM killer",
        ooms,
    );
    registry.register(
        "corral_container_restarts",
        "Restarts by the container's restart policy",
        restarts,
    );
    registry.register(
        "corral_container_operation",
        "1 for each container with an operation in flight (starting, checkpointing, restart-pending, restarting, deleting): a long-lived series names a container stuck in one",
        operations,
    );
    registry.register(
        "corral_container_unresponsive",
        "1 when the container did not answer this scrape within the per-container timeout (or the supervisor's list marks it busy)",
        unresponsive,
    );
}

/// Output lost to log write errors, per process: read from each shim's count at scrape.
fn register_log_losses(registry: &mut Registry, handle: &Handle, containers: &[ContainerInfo]) {
    let lost: Family<ProcessLabels, Counter> = Family::default();
    for c in containers {
        for (process, bytes) in handle.log_losses(c) {
            let l = ProcessLabels {
                namespace: c.namespace.clone(),
                id: c.id.clone(),
                process,
            };
            lost.get_or_create(&l).inc_by(bytes);
        }
    }
    registry.register_with_unit(
        "corral_log_lost",
        "Output a container process wrote that its shim could not write to its log (a full or failing disk); the process never blocks on it",
        Unit::Bytes,
        lost,
    );
}

/// The daemon's own figures from /proc/self.
struct ProcessFigures {
    resident_bytes: Option<u64>,
    open_fds: Option<usize>,
}

impl ProcessFigures {
    fn read() -> Self {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok());
        let resident_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .zip(page)
            .map(|(pages, page)| pages * page);
        // read_dir's own descriptor is in the listing: one less.
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count().saturating_sub(1));
        ProcessFigures {
            resident_bytes,
            open_fds,
        }
    }
}

/// A metrics server already answering; [`Server::ready`] hands it the supervisor. Until
/// then `/readyz` and `/metrics` answer 503 and `/healthz` 200 `starting`.
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Starts answering on `listener` (on the current actix runtime).
    pub fn spawn(listener: TcpListener) -> Self {
        let state = Arc::new(State::default());
        actix_rt::spawn(run(state.clone(), listener));
        Server { state }
    }

    /// The supervisor has adopted its state dir: serve its figures from now on.
    pub fn ready(&self, handle: Handle) {
        let _ = self.state.handle.set(handle);
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the daemon stops.
pub async fn serve(handle: Handle, listener: TcpListener) {
    let state = Arc::new(State::default());
    let _ = state.handle.set(handle);
    run(state, listener).await
}

async fn run(state: Arc<State>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                actix_rt::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), answer(&state, stream)).await;
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether the supervisor answers within [`HEALTH_TIMEOUT`].
async fn answers(handle: &Handle) -> bool {
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, handle.ping()).await,
        Ok(Ok(()))
    )
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn route(state: &State, method: &str, path: &str) -> (&'static str, &'static str, String) {
    let handle = state.handle.get();
    let unavailable = |why: &str| ("503 Service Unavailable", TEXT, format!("{why}\n"));
    match (method, path) {
        ("GET", "/metrics") => match handle {
            Some(h) => ("200 OK", CONTENT_TYPE, state.render(h).await),
            None => unavailable("starting"),
        },
        ("GET", "/healthz") => match handle {
            None => ("200 OK", TEXT, "starting\n".to_string()),
            Some(h) if answers(h).await => ("200 OK", TEXT, "ok\n".to_string()),
            Some(_) => unavailable("the supervisor does not answer"),
        },
        ("GET", "/readyz") => match handle {
            None => unavailable("starting: adopting the state dir"),
            Some(h) if answers(h).await => ("200 OK", TEXT, "ok\n".to_string()),
            Some(_) => unavailable("the supervisor does not answer"),
        },
        ("GET", _) => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", TEXT, "only GET\n".to_string()),
    }
}

async fn answer(state: &State, mut stream: TcpStream) -> std::io::Result<()> {
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
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = route(state, method, path).await;
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_own_outcome() {
        let errors = [
            Error::NotFound(String::new()),
            Error::AlreadyExists(String::new()),
            Error::InvalidArgument(String::new()),
            Error::PermissionDenied(String::new()),
            Error::WrongState(String::new()),
            Error::RuntimeFailed {
                op: String::new(),
                id: String::new(),
                stderr: String::new(),
            },
            Error::Timeout(String::new()),
            Error::Lagged { first_missed: 0 },
            Error::Protocol(String::new()),
            Error::Internal(String::new()),
            Error::Truncated {
                first_kept: 0,
                asked: crate::types::Since::Seq(0),
            },
        ];
        let mut seen: Vec<&str> = errors.iter().map(|e| outcome(Some(e))).collect();
        seen.push(outcome(None));
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "{seen:?}");
        assert_eq!(outcome(Some(&Error::WrongState("x".into()))), "wrong_state");
    }

    #[test]
    fn the_rpc_counters_encode_with_conventional_names() {
        let rpc = RpcMetrics::default();
        rpc.observe("kill", Duration::from_millis(1), None);
        rpc.observe(
            "kill",
            Duration::from_millis(3),
            Some(&Error::WrongState("stopped".into())),
        );
        let mut registry = Registry::default();
        registry.register("corral_rpc_requests", "h", rpc.requests.clone());
        registry.register("corral_rpc_errors", "h", rpc.errors.clone());
        registry.register_with_unit(
            "corral_rpc_request_duration",
            "h",
            Unit::Seconds,
            rpc.duration.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        for line in [
            "# TYPE corral_rpc_requests_total counter",
            "corral_rpc_requests_total{request=\"kill\",outcome=\"wrong_state\"} 1",
            "corral_rpc_requests_total{request=\"kill\",outcome=\"ok\"} 1",
            "corral_rpc_errors_total 1",
            "# TYPE corral_rpc_request_duration_seconds histogram",
            "corral_rpc_request_duration_seconds_count{request=\"kill\"} 2",
            "corral_rpc_request_duration_seconds_bucket{request=\"kill\",le=\"0.0025\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
    }

    #[test]
    fn a_late_list_serves_the_last_good_one_as_stale() {
        let state = State::default();
        let one = ContainerInfo::unknown("default", "one");
        let (s, stale) = state.merge(Some(vec![one]), Some((1, 0, 7)));
        assert!(!stale);
        assert_eq!(s.containers.len(), 1);
        let (s, stale) = state.merge(None, Some((2, 0, 8)));
        assert!(stale);
        assert_eq!(s.containers[0].id, "one");
        assert_eq!(s.events, Some((2, 0, 8)));
        let (s, stale) = state.merge(Some(vec![]), None);
        assert!(stale);
        assert!(s.containers.is_empty());
        assert_eq!(s.events, Some((2, 0, 8)));
    }

    #[test]
    fn the_process_figures_come_from_proc_self() {
        let own = ProcessFigures::read();
        assert!(own.resident_bytes.unwrap() > 0);
        assert!(own.open_fds.unwrap() >= 3);
    }

    #[test]
    fn before_the_supervisor_is_there_readyz_and_metrics_answer_503() {
        let state = State::default();
        let rt = actix_rt::System::new();
        rt.block_on(async {
            assert_eq!(
                route(&state, "GET", "/readyz").await.0,
                "503 Service Unavailable"
            );
            assert_eq!(
                route(&state, "GET", "/metrics").await.0,
                "503 Service Unavailable"
            );
            assert_eq!(route(&state, "GET", "/healthz").await.0, "200 OK");
            assert_eq!(route(&state, "GET", "/x").await.0, "404 Not Found");
            assert_eq!(
                route(&state, "POST", "/metrics").await.0,
                "405 Method Not Allowed"
            );
        });
    }
}
