//! The commands that show things: list, state, pids, inspect, top, info, version.

use crate::cli::label;
use crate::containers::IdArg;
use crate::output::LIST_COLUMNS;
use crate::output::{exit_text, json, list_row, parse_format, print_formatted, table, Format};
use crate::{Ctl, Failure, Outcome, EXIT_CORRAL};
use clap::Args;
use corral::*;

/// `list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only containers with this label (repeatable; all must match).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Print JSON.
    #[arg(long, conflicts_with_all = ["quiet", "format"])]
    json: bool,
    /// Print the ids only.
    #[arg(short, long, conflicts_with = "format")]
    quiet: bool,
    /// Fields to print: `id,status,pid` (a table) or a template `{{.ID}} {{.Status}}`.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
}

/// `state`.
#[derive(Args)]
pub struct StateArgs {
    /// The container.
    id: String,
    /// Print JSON.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Fields to print, as for `list --format`.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
}

/// `pids`.
#[derive(Args)]
pub struct PidsArgs {
    /// The container.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `info`.
#[derive(Args)]
pub struct InfoArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `list`.
pub fn list(ctl: &Ctl, a: ListArgs) -> Outcome {
    let containers = ctl
        .client()?
        .list(&ctl.namespace, a.labels.into_iter().collect())?;
    if a.json {
        return json(&containers);
    }
    if a.quiet {
        for c in &containers {
            println!("{}", c.id);
        }
        return Ok(0);
    }
    if let Some(format) = &a.format {
        print_formatted(format, &containers);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = containers.iter().map(list_row).collect();
    table(&LIST_COLUMNS, &rows);
    Ok(0)
}

/// `state`.
pub fn state(ctl: &Ctl, a: StateArgs) -> Outcome {
    let c = ctl.client()?.state(&ctl.namespace, &a.id)?;
    if a.json {
        return json(&c);
    }
    if let Some(format) = &a.format {
        print_formatted(format, std::slice::from_ref(&c));
        return Ok(0);
    }
    println!("namespace: {}", c.namespace);
    println!("id:        {}", c.id);
    println!("status:    {}", c.status);
    println!("pid:       {}", c.pid);
    println!("bundle:    {}", c.bundle.display());
    println!("runtime:   {}", c.runtime.display());
    println!("created:   {}", format_time(c.created_at_ns));
    println!("restart:   {} ({} restarts)", c.restart, c.restarts);
    if c.terminal {
        println!("terminal:  yes");
    }
    if let Some(log) = &c.log_path {
        println!("log:       {}", log.display());
    }
    if c.oom_kills > 0 {
        println!("oom kills: {}", c.oom_kills);
    }
    if let Some(exit) = c.exit {
        let oom = if c.exit_oom_killed {
            " (after an OOM kill)"
        } else {
            ""
        };
        println!(
            "exit:      {}{oom} at {}",
            exit.code,
            format_time(exit.exited_at_ns)
        );
    }
    for (k, v) in &c.labels {
        println!("label:     {k}={v}");
    }
    if !c.execs.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = c
            .execs
            .iter()
            .map(|p| {
                vec![
                    p.id.clone(),
                    p.pid.to_string(),
                    p.status.to_string(),
                    exit_text(p.exit),
                ]
            })
            .collect();
        table(&["EXEC", "PID", "STATUS", "EXIT"], &rows);
    }
    Ok(0)
}

/// `pids`.
pub fn pids(ctl: &Ctl, a: PidsArgs) -> Outcome {
    let pids = ctl.client()?.pids(&ctl.namespace, &a.id)?;
    if a.json {
        return json(&pids);
    }
    let rows: Vec<Vec<String>> = pids
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.process_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["PID", "PROCESS"], &rows);
    Ok(0)
}

/// `inspect`: `{"state": …, "spec": …}`, the spec read from the bundle's config.json.
pub fn inspect(ctl: &Ctl, a: IdArg) -> Outcome {
    let state = ctl.client()?.state(&ctl.namespace, &a.id)?;
    let path = state.bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
    let spec: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    json(&serde_json::json!({ "state": state, "spec": spec }))
}

/// What /proc says about one process.
struct ProcFacts {
    user: String,
    state: String,
    start: String,
    command: String,
}

fn proc_facts(pid: u32) -> Option<ProcFacts> {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.to_string();
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
    let mut command = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if command.is_empty() {
        command = format!("[{}]", stat.split_once('(')?.1.rsplit_once(')')?.0);
    }
    Some(ProcFacts {
        user,
        state,
        start: start_time(start_ticks).unwrap_or_else(|| "-".into()),
        command,
    })
}

/// A process's start (clock ticks after boot) as RFC 3339 UTC, to the second.
fn start_time(ticks: u64) -> Option<String> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    let secs = btime + ticks / hz;
    let text = format_time(secs * 1_000_000_000);
    Some(format!("{}Z", text.split('.').next()?))
}

/// `top`: columns `PID PROCESS USER STATE START COMMAND`.
pub fn top(ctl: &Ctl, a: IdArg) -> Outcome {
    let pids = ctl.client()?.pids(&ctl.namespace, &a.id)?;
    let rows: Vec<Vec<String>> = pids
        .iter()
        .filter_map(|p| {
            let f = proc_facts(p.pid)?; // gone since the daemon listed it
            Some(vec![
                p.pid.to_string(),
                p.process_id.clone().unwrap_or_else(|| "-".into()),
                f.user,
                f.state,
                f.start,
                f.command,
            ])
        })
        .collect();
    table(
        &["PID", "PROCESS", "USER", "STATE", "START", "COMMAND"],
        &rows,
    );
    Ok(0)
}

/// `info`: the daemon's [`DaemonInfo`], every field of it with `--json`.
pub fn info(ctl: &Ctl, a: InfoArgs) -> Outcome {
    let i = ctl.client()?.info()?;
    if a.json {
        return json(&i);
    }
    println!("version:            {}", i.version);
    println!(
        "containers:         {} ({} running)",
        i.containers, i.running
    );
    println!("subscribers:        {}", i.subscribers);
    println!("lagged subscribers: {}", i.lagged_subscribers);
    println!("last event:         {}", i.last_seq);
    println!("pending children:   {}", i.pending_children);
    // Fields added to DaemonInfo since: printed as they come.
    let known = [
        "version",
        "containers",
        "running",
        "subscribers",
        "lagged_subscribers",
        "last_seq",
        "pending_children",
    ];
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&i) {
        for (k, v) in map.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            print_field(&k.replace('_', " "), v);
        }
    }
    Ok(0)
}

/// One `info` line per leaf: nested objects as `features runtimes runc: /usr/bin/runc`.
fn print_field(key: &str, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                print_field(&format!("{key} {}", k.replace('_', " ")), v);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let text: Vec<String> = items.iter().map(leaf).collect();
            let text = if text.is_empty() {
                "-".to_string()
            } else {
                text.join(", ")
            };
            println!("{:<19} {text}", format!("{key}:"));
        }
        other => println!("{:<19} {}", format!("{key}:"), leaf(other)),
    }
}

fn leaf(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `version`: always prints corralctl's; fails (125) when the daemon cannot be asked.
pub fn version(ctl: &Ctl) -> Outcome {
    println!("corralctl {}", VERSION);
    match ctl.client().and_then(|mut c| c.version()) {
        Ok((daemon, protocol)) => {
            println!("corrald   {daemon} (protocol {protocol})");
            Ok(0)
        }
        Err(e) => {
            eprintln!("corralctl: corrald unreachable: {e}");
            Err(Failure::Code(EXIT_CORRAL))
        }
    }
}
