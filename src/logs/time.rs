//! Log timestamps: RFC 3339 with nanoseconds, and the `--since`/`--until` forms.

use crate::types::{civil_from_days, now_ns, parse_rfc3339};

const NS_PER_SEC: u64 = 1_000_000_000;

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits, as in
/// the log files: `2026-12-07T02:39:49.123456789Z`.
pub fn format_time(ns: u64) -> String {
    let secs = ns / NS_PER_SEC;
    let nanos = ns % NS_PER_SEC;
    let rem = secs % 86_400;
    // u64 seconds / 86400 fits an i64 easily.
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses a time given on the command line (`--since`, `--until`) into nanoseconds since
/// the epoch:
/// - RFC 3339 (`2026-12-07T02:39:49Z`, any number of fraction digits, `Z` or `+HH:MM`);
/// - unix seconds, maybe with a fraction (`1796610000`, `1796610000.5`);
/// - a duration before now, as docker takes it (`45s`, `10m`, `1h30m`, `1.5h`, `300ms`).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(ns) = parse_rfc3339(s) {
        return Some(ns);
    }
    if let Some(ns) = parse_unix(s) {
        return Some(ns);
    }
    let ago = parse_duration_ns(s)?;
    Some(now_ns().saturating_sub(ago))
}

/// Unix seconds with an optional fraction: `1796610000` or `1796610000.000000001`.
fn parse_unix(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let mut nanos = 0u64;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
    }
    secs.checked_mul(NS_PER_SEC)?.checked_add(nanos)
}

/// A Go-style duration (`1h30m`, `45s`, `1.5h`, `300ms`, `2us`, `10ns`) in nanoseconds.
fn parse_duration_ns(s: &str) -> Option<u64> {
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = match &rest[..u] {
            "h" => 3600.0 * 1e9,
            "m" => 60.0 * 1e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" => 1e3,
            "ns" => 1.0,
            _ if rest.starts_with("µs") => {
                rest = &rest["µs".len()..];
                total += value * 1e3;
                continue;
            }
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    // A duration beyond u64 nanoseconds (584 years) saturates: the time is then the epoch.
    (total.is_finite() && total >= 0.0).then(|| total.min(u64::MAX as f64) as u64)
}
