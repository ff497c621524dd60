//! `container` (alias `c`): container records apart from their tasks (create, ls, info,
//! label, update, rm); and `task`: start a task from a record, list tasks, delete one while
//! keeping its record.

use crate::cli::{extension, label};
use crate::containers::{ImageFlags, RestartArg};
use crate::output::{json, labels_text, listing};
use crate::show::{self, ListArgs};
use crate::{each_id, Ctl, Failure, Outcome};
use clap::{Args, Subcommand};
use corral::*;
use std::path::PathBuf;

/// `container`.
#[derive(Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    cmd: ContainerCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum ContainerCmd {
    /// Make a container record from an image: unpack it, prepare its writable snapshot,
    /// store the spec from its config; no task (`task start ID` runs one). Prints the id.
    #[command(override_usage = "corralctl container create [OPTIONS] IMAGE ID [-- CMD...]")]
    Create(Box<CreateArgs>),
    /// List the namespace's container records.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print a container record (its spec as JSON) as one JSON object.
    Info {
        /// The container.
        id: String,
    },
    /// Set labels of a container record (`K=` removes K); prints its labels.
    Label {
        /// The container.
        id: String,
        /// `K=V` (repeatable); an empty value removes the label.
        #[arg(required = true, value_name = "K=V", value_parser = label)]
        labels: Vec<(String, String)>,
    },
    /// Change a container record's labels, runtime or spec (the next task uses them).
    Update(UpdateArgs),
    /// Remove container records and their writable snapshots (refused while one has a
    /// task: `task rm ID` first).
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// The containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `container create`.
#[derive(Args)]
struct CreateArgs {
    /// The image.
    image: String,
    /// The container's id.
    id: String,
    /// The command, after `--`: replaces the image's Cmd.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
    /// A label (repeatable).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// The OCI runtime of its tasks: a name the daemon knows or a path.
    #[arg(long, value_name = "NAME_OR_PATH")]
    runtime: Option<PathBuf>,
    /// An extension kept with the record for its owner: `NAME=JSON`, or `NAME=@FILE` to
    /// read the JSON from a file (repeatable; containerd's WithContainerExtension).
    #[arg(short = 'x', long = "extension", value_name = "NAME=JSON", value_parser = extension)]
    extensions: Vec<(String, String)>,
    #[command(flatten)]
    image_flags: ImageFlags,
}

/// `container ls`.
#[derive(Args)]
struct LsArgs {
    /// Only records with this label (repeatable; all must match).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Print the ids only.
    #[arg(short, long)]
    quiet: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// `container update`.
#[derive(Args)]
struct UpdateArgs {
    /// The container.
    id: String,
    /// A label to set (repeatable; `K=` removes K).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// The OCI runtime of its next tasks: a name the daemon knows or a path.
    #[arg(long, value_name = "NAME_OR_PATH")]
    runtime: Option<PathBuf>,
    /// An OCI runtime spec (config.json) for its next tasks; its root path becomes the
    /// bundle's rootfs.
    #[arg(long, value_name = "FILE")]
    spec_file: Option<PathBuf>,
    /// An extension to set: `NAME=JSON` or `NAME=@FILE`; `NAME=` removes it (repeatable).
    #[arg(short = 'x', long = "extension", value_name = "NAME=JSON", value_parser = extension)]
    extensions: Vec<(String, String)>,
}

/// `task`.
#[derive(Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    cmd: TaskCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum TaskCmd {
    /// Make a task from a container record and start it: without -d copy its output,
    /// wait, exit with its code.
    Start(StartArgs),
    /// List the namespace's tasks (as `list`).
    #[command(visible_aliases = ["list", "ps"])]
    Ls(ListArgs),
    /// Delete tasks, keeping their container records and writable snapshots.
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// The containers whose tasks go.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Kill a live task first.
        #[arg(short, long)]
        force: bool,
    },
}

/// `task start`.
#[derive(Args)]
struct StartArgs {
    /// The container.
    id: String,
    /// Return once it runs; print its pid.
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    restart: RestartArg,
    /// Move the rootfs and chroot instead of pivot_root (for hosts that boot from an
    /// initramfs).
    #[arg(long)]
    no_pivot_root: bool,
}

/// `container ...`.
pub fn container(ctl: &Ctl, a: ContainerArgs) -> Outcome {
    let mut client = ctl.client()?;
    let ns = ctl.namespace.clone();
    match a.cmd {
        ContainerCmd::Create(a) => {
            let record = client.create_container(ContainerCreateRequest {
                namespace: ns,
                id: a.id,
                image: a.image_flags.image_run(a.image, a.cmd),
                runtime: a.runtime,
                runtime_args: Vec::new(),
                labels: a.labels.into_iter().collect(),
                extensions: a.extensions.into_iter().collect(),
            })?;
            println!("{}", record.id);
            Ok(0)
        }
        ContainerCmd::Ls(a) => {
            let list = client.containers(&ns, a.labels.into_iter().collect())?;
            listing(
                &list,
                a.json,
                a.quiet,
                |r| r.id.clone(),
                &["ID", "IMAGE", "RUNTIME", "CREATED", "LABELS"],
                |r| {
                    vec![
                        r.id.clone(),
                        r.image.clone().unwrap_or_else(|| "-".into()),
                        r.runtime
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "default".into()),
                        format_time(r.created_ns),
                        labels_text(&r.labels),
                    ]
                },
            )
        }
        ContainerCmd::Info { id } => info(&client.container(&ns, &id)?),
        ContainerCmd::Label { id, labels } => {
            let record = client.update_container(ContainerUpdateRequest {
                namespace: ns,
                id,
                labels: labels.into_iter().collect(),
                ..Default::default()
            })?;
            println!(
                "{}",
                format!("{} {}", record.id, labels_text(&record.labels)).trim_end()
            );
            Ok(0)
        }
        ContainerCmd::Update(a) => {
            let spec = match &a.spec_file {
                Some(file) => Some(read_spec(file)?),
                None => None,
            };
            let record = client.update_container(ContainerUpdateRequest {
                namespace: ns,
                id: a.id,
                labels: a.labels.into_iter().collect(),
                runtime: a.runtime,
                spec,
                extensions: a.extensions.into_iter().collect(),
                ..Default::default()
            })?;
            println!("{}", record.id);
            Ok(0)
        }
        ContainerCmd::Rm { ids } => each_id(&ids, |id| {
            client.remove_container(&ns, id)?;
            println!("{id}");
            Ok(0)
        }),
    }
}

/// A record as JSON, its spec as a JSON object rather than text.
fn info(record: &ContainerMeta) -> Outcome {
    let mut value =
        serde_json::to_value(record).map_err(|e| Error::Internal(format!("encode JSON: {e}")))?;
    if let Ok(spec) = serde_json::from_str::<serde_json::Value>(&record.spec) {
        value["spec"] = spec;
    }
    // Extensions are JSON texts: shown as the JSON they hold.
    for (name, text) in &record.extensions {
        if let Ok(ext) = serde_json::from_str::<serde_json::Value>(text) {
            value["extensions"][name] = ext;
        }
    }
    json(&value)
}

/// `--spec-file`: read here, checked as JSON; the daemon checks it is a runnable spec.
fn read_spec(file: &std::path::Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::InvalidArgument(format!("--spec-file {}: {e}", file.display())))?;
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
        Error::InvalidArgument(format!("--spec-file {} is not JSON: {e}", file.display()))
    })?;
    Ok(text)
}

/// `task ...`.
pub fn task(ctl: &Ctl, a: TaskArgs) -> Outcome {
    match a.cmd {
        TaskCmd::Start(a) => start(ctl, a),
        TaskCmd::Ls(a) => show::list(ctl, a),
        TaskCmd::Rm { ids, force } => {
            let mut client = ctl.client()?;
            each_id(&ids, |id| {
                client.delete_task(&ctl.namespace, id, force)?;
                Ok(0)
            })
        }
    }
}

/// `task start`.
fn start(ctl: &Ctl, a: StartArgs) -> Outcome {
    let mut client = ctl.client()?;
    let req = TaskStartRequest {
        namespace: ctl.namespace.clone(),
        id: a.id.clone(),
        stdio: Stdio::default(),
        restart: a.restart.restart,
        no_pivot_root: a.no_pivot_root,
    };
    if a.detach {
        let info = client.start_task(req)?;
        println!("{} running (pid {})", info.id, info.pid);
        return Ok(0);
    }
    // Its output goes to its log (the default stdio); we follow it from the launch.
    crate::attach::block_signals();
    client.start_task(req)?;
    let opts = crate::attach::Options {
        from: AttachFrom::Launch,
        stdin: false,
        tty: false,
        detach_keys: Vec::new(),
    };
    match crate::attach::attach(ctl, &a.id, None, opts)? {
        crate::attach::Ended::Exited(exit) => Ok(exit.code as i32),
        crate::attach::Ended::Detached => Ok(0),
    }
}
