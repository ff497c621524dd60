//! The metrics endpoint as a scraper sees it: Prometheus text that parses, the documented
//! names, an RPC error's outcome label, the health endpoints, and a scrape that answers at
//! once while one container is wedged in a runtime call.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::{Error, KillRequest, RestartPolicy};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One sample line: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `key="value",...` (the part between the braces); `None` if it is malformed.
fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        if !is_name(key) {
            return None;
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        s = &rest[end + 1..];
        if !s.is_empty() {
            s = s.strip_prefix(',')?;
        }
    }
    Some(labels)
}

/// Every line of `text` as the Prometheus text format (0.0.4) has it: `# HELP`/`# TYPE`
/// comments, and samples `name{labels} value`; panics on any other line.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), Some(_)) if is_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if is_name(name) => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type in {line:?}"
                    );
                    typed.insert(name.to_string(), kind.to_string());
                }
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels =
                    parse_labels(inner).unwrap_or_else(|| panic!("bad labels in {line:?}"));
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            typed.contains_key(family),
            "{name} has no # TYPE line before it"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the sample `name` whose labels include `labels`.
fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
}

/// Every metric docs/operations.md lists, always present (container series need containers).
const DOCUMENTED: &[&str] = &[
    "corral_build_info",
    "corral_scrape_stale",
    "corral_containers",
    "corral_shims",
    "corral_event_subscribers",
    "corral_event_subscribers_lagged_total",
    "corral_events_published_total",
    "corral_rpc_requests_total",
    "corral_rpc_errors_total",
    "corral_rpc_request_duration_seconds_bucket",
    "corral_rpc_request_duration_seconds_sum",
    "corral_rpc_request_duration_seconds_count",
    "process_resident_memory_bytes",
    "process_open_fds",
    "corral_container_cpu_seconds_total",
    "corral_container_memory_usage_bytes",
    "corral_container_pids",
    "corral_container_oom_kills_total",
    "corral_container_restarts_total",
    "corral_container_unresponsive",
];

fn get(addr: &str, path: &str) -> (u32, String) {
    http_get(addr, path)
}

fn scrape(addr: &str) -> Vec<Sample> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body)
}

/// The text parses, every documented name is there, an RPC's error kind is its outcome
/// label, the health endpoints answer 200 and another path 404.
#[test]
fn a_scrape_parses_and_names_errors_and_health() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with("metrics_parse", &["--metrics-address", &addr]);
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("metparse");
    d.run(&id, &sleeper);
    let err = d
        .client()
        .kill(KillRequest {
            namespace: String::new(),
            id: "no-such-container".into(),
            exec_id: None,
            signal: libc::SIGTERM,
            all: false,
        })
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    let samples = scrape(&addr);
    for name in DOCUMENTED {
        assert!(
            samples.iter().any(|s| s.name == *name),
            "no {name} in {samples:#?}"
        );
    }
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    for s in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| s.name.strip_suffix(x))
            .filter(|f| f.ends_with("_seconds"))
            .unwrap_or(&s.name);
        assert!(
            docs.contains(&format!("| `{family}` |")),
            "{family} is not in docs/operations.md's metrics table"
        );
    }
    let kill_not_found = [("request", "kill"), ("outcome", "not_found")];
    assert!(value(&samples, "corral_rpc_requests_total", &kill_not_found) >= 1.0);
    assert!(
        value(
            &samples,
            "corral_rpc_requests_total",
            &[("request", "create"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(value(&samples, "corral_rpc_errors_total", &[]) >= 1.0);
    assert_eq!(
        value(
            &samples,
            "corral_build_info",
            &[("version", corral::VERSION)]
        ),
        1.0
    );
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&samples, "process_open_fds", &[]) >= 3.0);
    assert_eq!(value(&samples, "corral_scrape_stale", &[]), 0.0);
    let mine = [("namespace", "default"), ("id", id.as_str())];
    assert_eq!(value(&samples, "corral_container_unresponsive", &mine), 0.0);
    assert_eq!(value(&samples, "corral_container_pids", &mine), 1.0);
    assert_eq!(
        value(&samples, "corral_containers", &[("state", "running")]),
        1.0
    );

    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&addr, "/readyz"), (200, "ok\n".to_string()));
    assert_eq!(get(&addr, "/nope").0, 404);
    d.delete("", &id, true).unwrap();
}

/// A container whose restart hangs in `runtime delete` holds its own mailbox: a scrape
/// still answers within a second, names it unresponsive, and has the healthy one's figures.
#[test]
fn a_scrape_answers_at_once_while_a_container_is_wedged() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with("metrics_wedged", &["--metrics-address", &addr]);
    // The wrapper runtime: real runc for every verb, but `delete` sleeps once the flag is
    // there (recording the sleeper's pid).
    let flag = d.path("wedge");
    let sleeper_pid = d.path("sleeper.pid");
    let wrapper = d.path("wedging-runc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = delete ] && [ -e {flag} ]; then\n    echo $$ > {pid}\n    exec sleep 30\n  fi\ndone\nexec {runc} \"$@\"\n",
            flag = flag.display(),
            pid = sleeper_pid.display(),
            runc = runc().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let healthy = unique_id("methealthy");
    let wedged = unique_id("metwedged");
    d.run(&healthy, &d.bundle("sleep", &["sleep", "1000"]));
    let gated = d.bundle(
        "gated",
        &[
            "sh",
            "-c",
            "while [ ! -e /done ]; do sleep 0.05; done; exit 1",
        ],
    );
    let mut req = run_req(&wedged, &gated);
    req.restart = RestartPolicy::Always;
    req.runtime = Some(wrapper.clone());
    d.create(req).unwrap();

    // A first scrape while everyone answers: both are there, neither unresponsive.
    let samples = scrape(&addr);
    for id in [&healthy, &wedged] {
        let l = [("namespace", "default"), ("id", id.as_str())];
        assert_eq!(
            value(&samples, "corral_container_unresponsive", &l),
            0.0,
            "{id}"
        );
    }

    // Wedge it: the exit's restart runs `delete --force ID`, which now sleeps.
    touch(&flag);
    touch(&gated.join("rootfs/done"));
    wait_until(LIVENESS, "the restart to hang in runtime delete", || {
        sleeper_pid.exists()
    });
    let hung = Instant::now();
    std::thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    let (status, body) = get(&addr, "/metrics");
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(1), "the scrape took {took:?}");
    let samples = parse_exposition(&body);
    eprintln!(
        "scrape with a wedged container: {took:?}, corral_scrape_stale {:?}",
        find(&samples, "corral_scrape_stale", &[])
    );
    let wedged_l = [("namespace", "default"), ("id", wedged.as_str())];
    let healthy_l = [("namespace", "default"), ("id", healthy.as_str())];
    // The restart in flight no longer holds the container: the scrape names it by the
    // operation it is stuck in (and, once its runtime call has run for over a second,
    // counts it unresponsive: checked below).
    let restarting = [
        ("namespace", "default"),
        ("id", wedged.as_str()),
        ("operation", "restarting"),
    ];
    assert_eq!(
        value(&samples, "corral_container_operation", &restarting),
        1.0,
        "{body}"
    );
    assert_eq!(
        value(&samples, "corral_container_unresponsive", &healthy_l),
        0.0
    );
    assert!(value(&samples, "corral_container_memory_usage_bytes", &healthy_l) > 0.0);
    assert_eq!(value(&samples, "corral_container_pids", &healthy_l), 1.0);
    // Were the list itself late, the last good one would be served with
    // corral_scrape_stale 1.
    assert!(find(&samples, "corral_scrape_stale", &[]).is_some());
    // A runtime call running for over a second makes the container busy: unresponsive.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(hung.elapsed()));
    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let samples = parse_exposition(&body);
    assert_eq!(
        value(&samples, "corral_container_unresponsive", &wedged_l),
        1.0,
        "{body}"
    );
    assert_eq!(
        value(&samples, "corral_container_unresponsive", &healthy_l),
        0.0
    );
    // The supervisor itself answers.
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(get(&addr, "/readyz").0, 200);

    // Unwedge: no more sleeping deletes, and the sleeper killed (the restart then fails).
    std::fs::remove_file(&flag).unwrap();
    let pid: i32 = std::fs::read_to_string(&sleeper_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_until(LIVENESS, "the wedged container to answer again", || {
        d.client().state("", &wedged).is_ok()
    });
    wait_until(LIVENESS, "the wedged container to be deleted", || {
        d.delete("", &wedged, true).is_ok() || !d.list_ids("default").contains(&wedged)
    });
    d.delete("", &healthy, true).unwrap();
    assert_eq!(get(&addr, "/metrics").0, 200);
}
