//! `logs`: a process's log as it wrote it, stdout to ours and stderr to ours.

use crate::{Ctl, Outcome};
use clap::Args;
use corral::logs::{format_time, parse_time, LogEntry, LogStream};
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
    #[arg(long, value_name = "N")]
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
