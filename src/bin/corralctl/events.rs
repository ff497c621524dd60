//! `events`: replay from the journal, then follow, with filters and an end point.

use crate::{Ctl, Outcome};
use clap::Args;
use corral::rpc::{Client, Resumed};
use corral::*;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// `events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Only this container's events (as `--filter id=ID`).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// `topic=/tasks/exit` or `id=ID` (repeatable: values of one key are alternatives,
    /// different keys must all match).
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    filters: Vec<EventMatch>,
    /// Replay from here: SEQ, an RFC 3339 TIME, @UNIX_SECONDS or a DURATION ago (90s, 10m, 2h, 1d).
    #[arg(long, value_name = "POINT", value_parser = parse_point)]
    since: Option<Since>,
    /// Stop (exit 0) at the first event past this point (same forms as --since), or once
    /// the point has passed and no event came for half a second.
    #[arg(long, value_name = "POINT", value_parser = parse_point)]
    until: Option<Since>,
    /// One JSON event per line.
    #[arg(long)]
    json: bool,
    /// When corrald goes away, connect again and resume after the last event seen (no gap,
    /// no duplicate) instead of failing with exit 125.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: how long to keep trying after corrald went away (500ms, 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    reconnect_timeout: Duration,
}

/// `500ms`, `90s`, `10m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => match s.char_indices().last() {
            Some((i, 's')) => (&s[..i], 1000),
            Some((i, 'm')) => (&s[..i], 60_000),
            Some((i, 'h')) => (&s[..i], 3_600_000),
            _ => ("", 0),
        },
    };
    match n.parse::<u64>() {
        Ok(n) if unit > 0 => Ok(Duration::from_millis(n.saturating_mul(unit))),
        _ => Err(format!("{s:?} is not a duration (500ms, 90s, 10m, 2h)")),
    }
}

/// One `--filter`.
#[derive(Clone, Debug)]
pub enum EventMatch {
    /// `topic=/tasks/exit`.
    Topic(Topic),
    /// `id=web`.
    Id(String),
}

fn parse_filter(s: &str) -> Result<EventMatch, String> {
    match s.split_once('=') {
        Some(("topic", t)) => Topic::try_from(t.to_string())
            .map(EventMatch::Topic)
            .map_err(|e| {
                let known: Vec<&str> = Topic::ALL.iter().map(Topic::as_str).collect();
                format!("{e}; known: {}", known.join(", "))
            }),
        Some(("id", id)) => validate_id("container id", id)
            .map(|()| EventMatch::Id(id.to_string()))
            .map_err(crate::cli::reason),
        _ => Err(format!("{s:?} is not topic=TOPIC or id=ID")),
    }
}

/// A point in the event stream: a sequence number, an RFC 3339 UTC time, `@` and unix
/// seconds, or a duration ago (`90s`, `10m`, `2h`, `1d`).
pub fn parse_point(s: &str) -> Result<Since, String> {
    if let Ok(seq) = s.parse::<u64>() {
        return Ok(Since::Seq(seq));
    }
    if let Some(secs) = s.strip_prefix('@') {
        return secs
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1_000_000_000))
            .map(Since::Time)
            .ok_or_else(|| format!("{s:?}: @ takes unix seconds, e.g. @1733000000"));
    }
    if let Some(t) = parse_time(s) {
        return Ok(Since::Time(t));
    }
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => 0,
    };
    match s
        .get(..s.len().saturating_sub(1))
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) if unit > 0 => Ok(Since::Time(
            now_ns().saturating_sub(n.saturating_mul(unit * 1_000_000_000)),
        )),
        _ => Err(format!(
            "{s:?} is not a sequence number, an RFC 3339 time (2026-01-02T03:04:05Z), \
             @UNIX_SECONDS or a duration ago (90s, 10m, 2h)"
        )),
    }
}

/// How long the stream must be quiet, once `--until` has passed, for the command to end.
const QUIET: Duration = Duration::from_millis(500);

/// Reads a resuming subscription on a thread, so that the caller can wait with a timeout.
fn follow(
    ctl: &Ctl,
    filter: EventFilter,
    reconnect: Duration,
) -> Result<Receiver<Result<Resumed>>> {
    let subscription = Client::subscribe_resuming(&ctl.socket, filter, reconnect)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for item in subscription {
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Whether the daemon's stream has passed `until` (by the clock, or its last sequence).
/// A daemon that cannot be asked has not: the stream itself tells when it went away.
fn passed(ctl: &Ctl, until: Since) -> bool {
    match until {
        Since::Time(t) => now_ns() > t,
        Since::Seq(n) => ctl
            .client()
            .and_then(|mut c| c.info())
            .is_ok_and(|i| i.last_seq >= n),
    }
}

fn line_of(event: &Event) -> String {
    let mut s = format!(
        "{} {:>6} {:<20} {}/{}",
        format_time(event.timestamp_ns),
        event.seq,
        event.topic.as_str(),
        event.namespace,
        event.container_id
    );
    if let Some(p) = &event.process_id {
        s.push_str(&format!(" process={p}"));
    }
    if let Some(pid) = event.pid {
        s.push_str(&format!(" pid={pid}"));
    }
    if let Some(exit) = event.exit {
        s.push_str(&format!(" exit={}", exit.code));
    }
    if let Some(n) = event.restarts {
        s.push_str(&format!(" restarts={n}"));
    }
    if let Some(c) = &event.checkpoint {
        s.push_str(&format!(" checkpoint={c}"));
    }
    if let Some(snap) = &event.snapshot {
        s.push_str(&format!(" key={}", snap.key));
        if let Some(p) = &snap.parent {
            s.push_str(&format!(" parent={p}"));
        }
        if let Some(n) = &snap.name {
            s.push_str(&format!(" name={n}"));
        }
    }
    s
}

/// `events`.
pub fn events(ctl: &Ctl, a: EventsArgs) -> Outcome {
    let mut topics = Vec::new();
    let mut ids: Vec<String> = a.id.into_iter().collect();
    for f in a.filters {
        match f {
            EventMatch::Topic(t) => topics.push(t),
            EventMatch::Id(id) => ids.push(id),
        }
    }
    let filter = EventFilter {
        namespace: Some(ctl.namespace.clone()),
        // One id is filtered by the daemon; several here.
        container_id: if ids.len() == 1 {
            ids.first().cloned()
        } else {
            None
        },
        since: a.since,
    };
    let wanted = |e: &Event| {
        (topics.is_empty() || topics.contains(&e.topic))
            && (ids.is_empty() || ids.contains(&e.container_id))
    };
    let mut out = std::io::stdout().lock();
    let reconnect = if a.reconnect {
        a.reconnect_timeout
    } else {
        Duration::ZERO
    };
    let rx = follow(ctl, filter, reconnect)?;
    // Between a lost connection and the next one, the daemon may pass `until` before this
    // stream has caught up: only a connected stream can end by the quiet rule.
    let mut lost = false;
    loop {
        let item = match a.until {
            None => match rx.recv() {
                Ok(item) => item,
                Err(_) => break,
            },
            Some(until) => match rx.recv_timeout(QUIET) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) if !lost && passed(ctl, until) => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let event = match item? {
            Resumed::Event(event) => event,
            Resumed::Truncated { first_kept } => {
                eprintln!(
                    "corralctl: events before {first_kept} are no longer kept; \
                     replaying from {first_kept}"
                );
                continue;
            }
            Resumed::Lagged { first_missed } => {
                eprintln!("corralctl: fell behind; resuming from event {first_missed}");
                continue;
            }
            Resumed::Lost { last_seq, error } => {
                eprintln!(
                    "corralctl: {} ({error}); reconnecting for up to {:?}",
                    corral::rpc::went_away(last_seq),
                    a.reconnect_timeout
                );
                lost = true;
                continue;
            }
            Resumed::Reconnected { since } => {
                let from = match since {
                    Since::Seq(n) => format!("event {n}"),
                    Since::Time(t) => format_time(t),
                };
                eprintln!("corralctl: reconnected to corrald; resuming from {from}");
                lost = false;
                continue;
            }
            other => {
                return Err(Error::Internal(format!("unexpected stream item {other:?}")).into())
            }
        };
        let (past, last) = match a.until {
            Some(Since::Seq(n)) => (event.seq > n, event.seq == n),
            Some(Since::Time(t)) => (event.timestamp_ns > t, false),
            None => (false, false),
        };
        if past {
            break;
        }
        if wanted(&event) {
            let line = if a.json {
                serde_json::to_string(&event).map_err(|e| Error::Internal(e.to_string()))?
            } else {
                line_of(&event)
            };
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                break; // stdout closed (e.g. piped into head)
            }
        }
        if last {
            break;
        }
    }
    Ok(0)
}
