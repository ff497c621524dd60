//! The command line: global options, the commands, and the value parsers they share.

use crate::{
    checkpoints, containers, content, events, images, logs, records, resources, show, tools,
};
use clap::{Parser, Subcommand};
use corral::rpc::DEFAULT_SOCKET;
use corral::{RestartPolicy, DEFAULT_NAMESPACE};
use std::path::PathBuf;

/// corralctl: drive corrald, the container supervisor.
#[derive(Parser)]
#[command(
    name = "corralctl",
    version = corral::VERSION,
    about = "Drive corrald, corral's container supervisor",
    after_help = "Exit codes: run, exec and wait pass the process's code through; 125: corral \
                  failed; 126: the process cannot be invoked; 127: it was not found; 2: usage."
)]
pub struct Cli {
    /// The daemon's socket.
    #[arg(
        long,
        global = true,
        env = "CORRAL_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: PathBuf,
    /// The namespace of every request.
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "CORRAL_NAMESPACE",
        default_value = DEFAULT_NAMESPACE,
        value_name = "NS",
        value_parser = namespace,
        help_heading = "Global options"
    )]
    pub namespace: String,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Every command. Each command's arguments are added to the parser only when that command
/// is used (`defer`; so on every subcommand enum): building all of them took about half a
/// millisecond of each corralctl's start.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a container (runc create) from a bundle or an image; prints `ID created (pid N)`.
    #[command(
        override_usage = "corralctl create [OPTIONS] --bundle DIR ID\n       corralctl create [OPTIONS] IMAGE ID [-- CMD...]"
    )]
    Create(containers::CreateArgs),
    /// Start a created container.
    Start(containers::IdArg),
    /// Create and start a container (from a bundle or an image); without -d copy its
    /// output (our stdin with -i), wait, exit with its code.
    #[command(
        override_usage = "corralctl run [OPTIONS] --bundle DIR ID\n       corralctl run [OPTIONS] IMAGE ID [-- CMD...]"
    )]
    Run(containers::RunArgs),
    /// Run a command in a container; copies its output (our stdin with -i), exits with its
    /// code and removes it (not with -d).
    Exec(containers::ExecArgs),
    /// Remove an exited exec; its id is free again.
    #[command(name = "exec-rm")]
    ExecRm(containers::ExecRmArgs),
    /// Join a running process: its output from now on, our stdin to it if it has one;
    /// detach with ctrl-p ctrl-q.
    Attach(containers::AttachArgs),
    /// Print a process's log: stdout to stdout, stderr to stderr.
    Logs(logs::LogsArgs),
    /// Resize a process's terminal.
    Resize(containers::ResizeArgs),
    /// Send a signal to containers (SIGTERM by default).
    Kill(containers::KillArgs),
    /// Stop containers: the signal, then SIGKILL after the timeout; prints each exit code.
    Stop(containers::StopArgs),
    /// Stop containers if they are live and run their init again.
    Restart(containers::RestartArgs),
    /// Wait for containers to exit; prints each exit code and exits with the first non-zero.
    Wait(containers::WaitArgs),
    /// Delete containers.
    #[command(visible_alias = "rm")]
    Delete(containers::DeleteArgs),
    /// Freeze containers.
    Pause(containers::IdsArg),
    /// Thaw containers.
    Resume(containers::IdsArg),
    /// Close a process's stdin.
    CloseStdin(containers::CloseStdinArgs),
    /// List the namespace's containers.
    #[command(visible_aliases = ["ls", "ps"])]
    List(show::ListArgs),
    /// Show one container, with its execs.
    State(show::StateArgs),
    /// List a container's pids.
    Pids(show::PidsArgs),
    /// Print a container's state and its bundle's OCI spec as one JSON object.
    Inspect(containers::IdArg),
    /// Show a container's processes (read from /proc on this host).
    Top(containers::IdArg),
    /// Show the daemon's counters and features.
    Info(show::InfoArgs),
    /// Print corralctl's and the daemon's versions (fails if the daemon is unreachable).
    Version,
    /// Change a container's resource limits (runc update).
    Update(resources::UpdateArgs),
    /// Show containers' resource usage from their cgroups.
    Stats(resources::StatsArgs),
    /// Checkpoint a running container with CRIU, or manage its checkpoints.
    Checkpoint(checkpoints::CheckpointArgs),
    /// List a container's checkpoints (also after it was deleted).
    Checkpoints(checkpoints::CheckpointsArgs),
    /// Create and start a container from a checkpoint.
    Restore(checkpoints::RestoreArgs),
    /// Replay events from the journal, then follow them.
    Events(events::EventsArgs),
    /// Pull, push, list, inspect, remove, tag, import and export images.
    #[command(visible_alias = "i")]
    Image(images::ImageArgs),
    /// List the namespace's images (as `image ls`).
    Images(images::LsArgs),
    /// List and remove the content store's blobs; list the downloads in progress.
    Content(content::ContentArgs),
    /// Create, list and remove leases (while one lives, GC keeps what it holds).
    #[command(visible_alias = "leases")]
    Lease(content::LeaseArgs),
    /// Create, list, label and remove namespaces.
    #[command(visible_alias = "ns")]
    Namespace(content::NamespaceArgs),
    /// Collect garbage now: blobs no image or lease holds, stale ingests, expired leases,
    /// committed snapshots no image or active snapshot needs.
    Prune(content::PruneArgs),
    /// Container records apart from their tasks: create, ls, info, label, update, rm.
    #[command(visible_alias = "c")]
    Container(records::ContainerArgs),
    /// Tasks of container records: start one, list them, delete one keeping its record.
    Task(records::TaskArgs),
    /// Make a runnable bundle.
    Bundle(tools::BundleArgs),
    /// Print a shell completion script.
    Completion(tools::CompletionArgs),
    /// Write man pages for corralctl and every command into a directory.
    Man(tools::ManArgs),
}

/// `--namespace`: a valid id.
pub fn namespace(s: &str) -> Result<String, String> {
    corral::validate_id("namespace", s)
        .map(|()| s.to_string())
        .map_err(reason)
}

/// An error's text without its kind ("invalid argument: ").
pub fn reason(e: corral::Error) -> String {
    match e {
        corral::Error::InvalidArgument(m) => m,
        other => other.to_string(),
    }
}

/// `--label K=V`.
pub fn label(kv: &str) -> Result<(String, String), String> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {kv:?} is not KEY=VALUE")),
    }
}

/// A container record's extension: `NAME=JSON`, `NAME=@FILE` (the JSON read from FILE), or
/// `NAME=` (removes it, in `container update`). The daemon checks that the text is JSON.
pub fn extension(kv: &str) -> Result<(String, String), String> {
    let Some((name, value)) = kv.split_once('=').filter(|(n, _)| !n.is_empty()) else {
        return Err(format!("extension {kv:?} is not NAME=JSON or NAME=@FILE"));
    };
    let text = match value.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("extension {name}: cannot read {file}: {e}"))?,
        None => value.to_string(),
    };
    Ok((name.to_string(), text))
}

/// A path made absolute against the current directory (the daemon reads or writes it).
pub fn absolute(p: &str) -> Result<PathBuf, corral::Error> {
    std::path::absolute(p).map_err(|e| corral::Error::InvalidArgument(format!("path {p:?}: {e}")))
}

/// A signal: a number, `TERM` or `SIGTERM`.
pub fn signal(s: &str) -> Result<i32, String> {
    corral::parse_signal(s).map_err(reason)
}

/// `--restart POLICY`.
pub fn restart_policy(s: &str) -> Result<RestartPolicy, String> {
    s.parse().map_err(reason)
}
