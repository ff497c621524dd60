//! Checkpoints: checkpoint (take, rm, export, import, push, pull), checkpoints, restore.

use crate::images::RemoteArgs;
use crate::output::{json, table};
use crate::progress::Display;
use crate::resources::human_bytes;
use crate::{Ctl, Outcome};
use clap::{Args, Subcommand};
use corral::checkpoint::{CheckpointOptions, CheckpointPullRequest, CheckpointPushRequest};
use corral::{format_time, Error};
use std::path::PathBuf;

/// `checkpoint ID NAME [flags]`, or `checkpoint rm|export|import ...`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    action: Option<Action>,
    /// The container to checkpoint.
    #[arg(required = true)]
    id: Option<String>,
    /// The checkpoint's name.
    #[arg(required = true)]
    name: Option<String>,
    /// Checkpoint established TCP connections.
    #[arg(long)]
    tcp: bool,
    /// Checkpoint external unix sockets.
    #[arg(long)]
    unix_sockets: bool,
    /// Checkpoint a shell job.
    #[arg(long)]
    shell: bool,
    /// Stop the container after the checkpoint (it exits with 137).
    #[arg(long)]
    exit: bool,
    /// A namespace CRIU restores empty (repeatable).
    #[arg(long, value_name = "NS")]
    empty_ns: Vec<String>,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum Action {
    /// Remove a checkpoint.
    Rm {
        /// The container.
        id: String,
        /// The checkpoint.
        name: String,
    },
    /// Write a checkpoint as one OCI image-layout tar (written by the daemon, on its host).
    Export {
        /// The container.
        id: String,
        /// The checkpoint.
        name: String,
        /// The tar file to write.
        file: String,
    },
    /// Store a checkpoint from such a tar, under the namespace, id and name it records.
    Import {
        /// The tar file to read.
        file: String,
    },
    /// Push a checkpoint, with the image its container ran from, to a registry; prints
    /// `REF DIGEST`.
    Push {
        /// The container.
        id: String,
        /// The checkpoint.
        name: String,
        /// `[registry/]repository[:tag]`.
        reference: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Pull a checkpoint from a registry into the namespace (under the container id and
    /// name it records, or --as), and its base image into the image store.
    Pull {
        /// `[registry/]repository[:tag|@digest]`.
        reference: String,
        /// Store it as `ID[:NAME]` instead.
        #[arg(long = "as", value_name = "ID[:NAME]")]
        as_id: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// `checkpoints`.
#[derive(Args)]
pub struct CheckpointsArgs {
    /// The container.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// The container the checkpoint was taken of.
    id: String,
    /// The checkpoint.
    name: String,
    /// The new container's id (default: ID).
    #[arg(long = "as", value_name = "NEW_ID")]
    new_id: Option<String>,
    /// Restore from this bundle instead of the recorded one.
    #[arg(short, long, value_name = "DIR")]
    bundle: Option<String>,
}

fn absolute(p: &str) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::InvalidArgument(format!("path {p:?}: {e}")))
}

/// `checkpoint`.
pub fn checkpoint(ctl: &Ctl, a: CheckpointArgs) -> Outcome {
    let mut client = ctl.client()?;
    match a.action {
        Some(Action::Rm { id, name }) => {
            client.remove_checkpoint(&ctl.namespace, &id, &name)?;
        }
        Some(Action::Export { id, name, file }) => {
            let file = absolute(&file)?;
            let size = client.export_checkpoint(&ctl.namespace, &id, &name, &file)?;
            println!("{} ({})", file.display(), human_bytes(size));
        }
        Some(Action::Push {
            id,
            name,
            reference,
            remote,
        }) => {
            let req = CheckpointPushRequest {
                namespace: ctl.namespace.clone(),
                id,
                name,
                reference: reference.clone(),
                remote: remote.options("checkpoint")?,
            };
            let mut display = Display::new(false);
            let result = client.push_checkpoint(req, |p| display.step(p));
            display.finish(result.is_ok());
            drop(display);
            println!("{reference} {}", result?.digest);
        }
        Some(Action::Pull {
            reference,
            as_id,
            remote,
        }) => {
            let (as_id, as_name) = match as_id.as_deref().map(|a| a.split_once(':')) {
                None => (None, None),
                Some(None) => (as_id, None),
                Some(Some((id, name))) => (Some(id.to_string()), Some(name.to_string())),
            };
            let req = CheckpointPullRequest {
                namespace: ctl.namespace.clone(),
                reference,
                as_id,
                as_name,
                remote: remote.options("checkpoint")?,
            };
            let mut display = Display::new(false);
            let result = client.pull_checkpoint(req, |p| display.step(p));
            display.finish(result.is_ok());
            drop(display);
            let c = result?;
            println!(
                "pulled checkpoint {} of {}/{}",
                c.name, c.namespace, c.container_id
            );
        }
        Some(Action::Import { file }) => {
            let c = client.import_checkpoint(&absolute(&file)?)?;
            println!(
                "imported checkpoint {} of {}/{}",
                c.name, c.namespace, c.container_id
            );
        }
        None => {
            // clap requires both when there is no action.
            let (id, name) = (a.id.unwrap_or_default(), a.name.unwrap_or_default());
            let options = CheckpointOptions {
                tcp: a.tcp,
                unix_sockets: a.unix_sockets,
                shell: a.shell,
                exit: a.exit,
                empty_ns: a.empty_ns,
            };
            let c = client.checkpoint(&ctl.namespace, &id, &name, options)?;
            println!(
                "checkpoint {} of {} taken ({})",
                c.name,
                id,
                human_bytes(c.size)
            );
        }
    }
    Ok(0)
}

fn options_text(o: &CheckpointOptions) -> String {
    let mut v: Vec<String> = Vec::new();
    for (on, name) in [
        (o.tcp, "tcp"),
        (o.unix_sockets, "unix-sockets"),
        (o.shell, "shell"),
        (o.exit, "exit"),
    ] {
        if on {
            v.push(name.into());
        }
    }
    v.extend(o.empty_ns.iter().map(|n| format!("empty-ns={n}")));
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// `checkpoints`: columns `NAME CREATED SIZE OPTIONS`.
pub fn checkpoints(ctl: &Ctl, a: CheckpointsArgs) -> Outcome {
    let list = ctl.client()?.checkpoints(&ctl.namespace, &a.id)?;
    if a.json {
        return json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format_time(c.created_ns),
                human_bytes(c.size),
                options_text(&c.options),
            ]
        })
        .collect();
    table(&["NAME", "CREATED", "SIZE", "OPTIONS"], &rows);
    Ok(0)
}

/// `restore`.
pub fn restore(ctl: &Ctl, a: RestoreArgs) -> Outcome {
    let bundle = a.bundle.as_deref().map(absolute).transpose()?;
    let info = ctl.client()?.restore(
        &ctl.namespace,
        &a.id,
        &a.name,
        a.new_id.as_deref(),
        bundle.as_deref(),
    )?;
    println!("{} restored from {} (pid {})", info.id, a.name, info.pid);
    Ok(0)
}
