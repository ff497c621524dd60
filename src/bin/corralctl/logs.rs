//! `logs`: a process's log as it wrote it, stdout to ours and stderr to ours.

use crate::{Ctl, Outcome};
use clap::Args;
use corral::logs::{LogEntry, LogStream};
use corral::*;
use std::io::Write;

/// `logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The container.
    id: String,
    /// Keep printing what the process writes until it exits.
    #[arg(short, long)]
    follow: bool,
    /// Only lines at or after this time: RFC 3339, unix seconds, or a duration ago (10m,
    /// 1h30m).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    since: Option<u64>,
    /// Only lines before this time (as --since).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    until: Option<u64>,
    /// Only the last N lines of the history.
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<usize>,
    /// Start each line with its time (RFC 3339, nanoseconds) and a space.
    #[arg(short, long)]
    timestamps: bool,
    /// This exec's log instead of the init's.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
}

fn time_arg(s: &str) -> Result<u64, String> {
    parse_time(s).ok_or_else(|| {
        format!("time {s:?} is not RFC 3339, unix seconds or a duration such as 10m")
    })
}

// Until the log reader's `corral::logs::{parse_time, format_time}` land on this branch
// (branch `logread`), these two stand in for them with the same contracts.

/// Parses `--since`/`--until`: RFC 3339 UTC, unix seconds (maybe with a fraction), or a
/// duration before now (`45s`, `10m`, `1h30m`, `1.5h`, `300ms`).
pub fn parse_time(s: &str) -> Option<u64> {
    const NS: f64 = 1e9;
    if let Some(ns) = corral::parse_time(s) {
        return Some(ns);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * NS) as u64);
    }
    // A duration: numbers each followed by a unit.
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit, scale) = [("ms", 1e-3), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    if s.is_empty() {
        return None;
    }
    Some(now_ns().saturating_sub((total * NS) as u64))
}

/// Formats a time as RFC 3339 UTC with nine fraction digits, as the log files have it:
/// `2026-12-07T02:39:49.123456789Z`.
pub fn format_time(ns: u64) -> String {
    // corral's own has microseconds: keep its date and seconds, put the nanoseconds on.
    let micro = corral::format_time(ns);
    let seconds = micro.split_once('.').map_or(micro.as_str(), |(s, _)| s);
    format!("{seconds}.{:09}Z", ns % 1_000_000_000)
}

/// `logs`.
pub fn logs(ctl: &Ctl, a: LogsArgs) -> Outcome {
    let reader = ctl.client()?.logs(LogsRequest {
        namespace: ctl.namespace.clone(),
        id: a.id,
        exec_id: a.exec,
        follow: a.follow,
        since_ns: a.since,
        until_ns: a.until,
        tail: a.tail,
    })?;
    let mut printer = Printer {
        timestamps: a.timestamps,
        at_line_start: [true, true],
    };
    for batch in reader {
        printer.print(&batch?);
    }
    Ok(0)
}

/// Writes entries out, remembering per stream whether a line was left open by a partial
/// entry (its continuation gets no timestamp of its own).
struct Printer {
    timestamps: bool,
    at_line_start: [bool; 2],
}

impl Printer {
    fn print(&mut self, entries: &[LogEntry]) {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for e in entries {
            let is_err = e.stream == LogStream::Stderr;
            let w: &mut dyn Write = if is_err { &mut err } else { &mut out };
            let start = &mut self.at_line_start[usize::from(is_err)];
            let mut line = Vec::with_capacity(e.content.len() + 40);
            if self.timestamps && *start {
                line.extend_from_slice(format_time(e.time_ns).as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&e.content);
            if !e.partial {
                line.push(b'\n');
            }
            *start = !e.partial;
            // A reader that went away (`| head`) ends us by SIGPIPE.
            let _ = w.write_all(&line);
        }
        let _ = out.flush();
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_format() {
        let t = 1_796_610_000_123_456_789u64;
        assert_eq!(format_time(t), "2026-12-07T02:20:00.123456789Z");
        assert_eq!(parse_time("2026-12-07T02:20:00.123456789Z"), Some(t));
        assert_eq!(parse_time("1796610000"), Some(1_796_610_000_000_000_000));
        let ago = now_ns() - parse_time("1h30m").unwrap_or(0);
        assert!(
            (5_399_000_000_000..5_401_000_000_000).contains(&ago),
            "{ago}"
        );
        assert!(parse_time("10x").is_none());
        assert!(parse_time("").is_none());
    }
}
