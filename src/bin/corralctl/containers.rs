//! The lifecycle commands: create, start, run, exec, kill, stop, restart, wait, delete,
//! pause, resume, close-stdin.

use crate::cli::{label, restart_policy, signal};
use crate::pipes::OutputPipes;
use crate::{each_id, usage, Ctl, Outcome};
use clap::Args;
use corral::*;
use std::path::PathBuf;

/// One container.
#[derive(Args)]
pub struct IdArg {
    /// The container.
    pub id: String,
}

/// One or more containers.
#[derive(Args)]
pub struct IdsArg {
    /// The containers, each in turn.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// What create and run share.
#[derive(Args)]
pub struct Spec {
    /// The OCI bundle directory (or give an IMAGE before the id).
    #[arg(short, long, value_name = "DIR")]
    bundle: Option<String>,
    /// A label (repeatable).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// The OCI runtime: a name the daemon knows or a path.
    #[arg(long, value_name = "NAME_OR_PATH")]
    runtime: Option<PathBuf>,
    #[command(flatten)]
    restart: RestartArg,
    /// Move the rootfs and chroot instead of pivot_root (for hosts that boot from an
    /// initramfs, where pivot_root fails).
    #[arg(long)]
    no_pivot_root: bool,
    #[command(flatten)]
    image: ImageFlags,
}

/// `--restart POLICY` (`create`, `run`, `task start`).
#[derive(Args)]
pub struct RestartArg {
    /// The restart policy.
    #[arg(
        long,
        value_name = "POLICY",
        value_parser = restart_policy,
        default_value = "no",
        help = "Restart policy: no, on-failure[:MAX], always, unless-stopped"
    )]
    pub restart: RestartPolicy,
}

/// How a container from an image is made (with an IMAGE before the id).
#[derive(Args)]
pub struct ImageFlags {
    /// `K=V` for the process's environment, after the image's (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The user: name, uid, uid:gid or name:group (the image's User by default).
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// The working directory (the image's WorkingDir by default).
    #[arg(short = 'w', long, value_name = "DIR")]
    cwd: Option<String>,
    /// Replaces the image's Entrypoint (and its Cmd unless `-- CMD` is given); "" clears it.
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// The container's hostname.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// A read-only rootfs.
    #[arg(long)]
    read_only: bool,
    /// `host`: the host's network namespace.
    #[arg(long, value_name = "host", value_parser = ["host"])]
    net: Option<String>,
    /// `type=bind,src=/host,dst=/in[,ro]` or `type=tmpfs,dst=/in` (repeatable).
    #[arg(long = "mount", value_name = "SPEC")]
    mounts: Vec<String>,
    /// Which manifest of an index (`os/arch[/variant]`; the host's by default).
    #[arg(long, value_name = "OS/ARCH", value_parser = platform)]
    platform: Option<Platform>,
    /// A user namespace: container uids from CONTAINER are host uids from HOST, SIZE of
    /// them (repeatable; alone it maps gids too). The rootfs is a remapped snapshot.
    #[arg(long = "uidmap", value_name = "CONTAINER:HOST:SIZE", value_parser = IdMap::parse)]
    uidmap: Vec<IdMap>,
    /// The user namespace's gid map, as --uidmap (repeatable; alone it maps uids too).
    #[arg(long = "gidmap", value_name = "CONTAINER:HOST:SIZE", value_parser = IdMap::parse)]
    gidmap: Vec<IdMap>,
    /// The snapshotter of the rootfs (`overlayfs`, the default and only one).
    #[arg(long, value_name = "NAME")]
    snapshotter: Option<String>,
}

impl ImageFlags {
    /// The image run these flags describe, for `image` with `cmd` (after `--`) as its Cmd.
    pub fn image_run(self, image: String, cmd: Vec<String>) -> ImageRun {
        ImageRun {
            image,
            args: (!cmd.is_empty()).then_some(cmd),
            entrypoint: self
                .entrypoint
                .map(|e| if e.is_empty() { Vec::new() } else { vec![e] }),
            env: self.env,
            user: self.user,
            cwd: self.cwd,
            hostname: self.hostname,
            read_only: self.read_only,
            host_network: self.net.is_some(),
            mounts: self.mounts,
            platform: self.platform,
            uid_maps: self.uidmap,
            gid_maps: self.gidmap,
            snapshotter: self.snapshotter,
        }
    }
}

fn platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s)
}

/// `[IMAGE] ID [-- CMD...]`: the positional part of `create` and `run`.
#[derive(Args)]
pub struct Names {
    /// `ID`, or `IMAGE ID` to make the container from an image.
    #[arg(value_name = "IMAGE_OR_ID", num_args = 1..=2, required = true)]
    names: Vec<String>,
    /// The command, after `--`: replaces the image's Cmd.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

impl Names {
    fn id(&self) -> String {
        self.names.last().cloned().unwrap_or_default()
    }
}

/// `create`.
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    names: Names,
    #[command(flatten)]
    spec: Spec,
    /// The process's stdin (a path on the daemon's host).
    #[arg(long, value_name = "PATH")]
    stdin: Option<String>,
    /// The process's stdout.
    #[arg(long, value_name = "PATH")]
    stdout: Option<String>,
    /// The process's stderr.
    #[arg(long, value_name = "PATH")]
    stderr: Option<String>,
}

/// `run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    names: Names,
    #[command(flatten)]
    spec: Spec,
    /// Return once it runs; print its pid.
    #[arg(short, long)]
    detach: bool,
    /// Delete the container after it exits.
    #[arg(long, conflicts_with = "detach")]
    rm: bool,
}

/// `exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// The container.
    id: String,
    /// The new process's id.
    exec_id: String,
    /// Return once it runs; print its pid.
    #[arg(short, long)]
    detach: bool,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// `kill`.
#[derive(Args)]
pub struct KillArgs {
    #[command(flatten)]
    ids: IdsArg,
    /// The signal: a number, TERM or SIGTERM.
    #[arg(short, long, default_value = "TERM", value_parser = signal)]
    signal: i32,
    /// Signal every process of the container (runc kill --all).
    #[arg(short, long)]
    all: bool,
    /// Signal this exec instead of the init.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
}

/// How long `stop` and `restart` wait after the first signal.
#[derive(Args)]
pub struct GraceArg {
    /// Seconds to wait after the signal before SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        default_value_t = 10
    )]
    time: u64,
}

/// `stop`.
#[derive(Args)]
pub struct StopArgs {
    #[command(flatten)]
    ids: IdsArg,
    #[command(flatten)]
    grace: GraceArg,
    /// The first signal (the container's stop signal by default: its image's StopSignal,
    /// else TERM).
    #[arg(short, long, value_parser = signal)]
    signal: Option<i32>,
}

/// `restart` (the container's stop signal first).
#[derive(Args)]
pub struct RestartArgs {
    #[command(flatten)]
    ids: IdsArg,
    #[command(flatten)]
    grace: GraceArg,
}

/// `wait`.
#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    ids: IdsArg,
    /// Wait for this exec instead of the init.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
}

/// `delete`.
#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    ids: IdsArg,
    /// Kill a live container first.
    #[arg(short, long)]
    force: bool,
}

/// `close-stdin`.
#[derive(Args)]
pub struct CloseStdinArgs {
    /// The container.
    id: String,
    /// This exec's stdin instead of the init's.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
}

fn absolute(p: &str) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::InvalidArgument(format!("path {p:?}: {e}")))
}

fn create_request(
    ctl: &Ctl,
    command: &str,
    spec: Spec,
    names: Names,
) -> Result<CreateRequest, crate::Failure> {
    let id = names.id();
    let (bundle, image) = match (names.names.len(), spec.bundle) {
        (2, Some(_)) => {
            return Err(usage(command, "give an IMAGE or --bundle DIR, not both"));
        }
        (2, None) => {
            let run = spec.image.image_run(names.names[0].clone(), names.cmd);
            (PathBuf::new(), Some(Box::new(run)))
        }
        (_, Some(bundle)) => {
            if !spec.image.uidmap.is_empty() || !spec.image.gidmap.is_empty() {
                return Err(usage(
                    command,
                    "--uidmap and --gidmap need an IMAGE (a bundle's config.json has its own \
                     user namespace)",
                ));
            }
            if !names.cmd.is_empty() {
                return Err(usage(
                    command,
                    "a command after -- needs an IMAGE (a bundle has its own in config.json)",
                ));
            }
            (absolute(&bundle)?, None)
        }
        (_, None) => {
            return Err(usage(
                command,
                format!("{command} needs --bundle DIR or an IMAGE before the id"),
            ));
        }
    };
    Ok(CreateRequest {
        restart: spec.restart.restart,
        namespace: ctl.namespace.clone(),
        id,
        bundle,
        runtime: spec.runtime,
        runtime_args: Vec::new(),
        labels: spec.labels.into_iter().collect(),
        stdio: Stdio::default(),
        start: false,
        image,
        no_pivot_root: spec.no_pivot_root,
    })
}

/// `create`.
pub fn create(ctl: &Ctl, a: CreateArgs) -> Outcome {
    let path = |p: Option<String>| p.as_deref().map(absolute).transpose();
    let mut req = create_request(ctl, "create", a.spec, a.names)?;
    req.stdio = Stdio {
        stdin: path(a.stdin)?,
        stdout: path(a.stdout)?,
        stderr: path(a.stderr)?,
        ..Stdio::default()
    };
    let info = ctl.client()?.create(req)?;
    println!("{} created (pid {})", info.id, info.pid);
    Ok(0)
}

/// `start`.
pub fn start(ctl: &Ctl, a: IdArg) -> Outcome {
    let info = ctl.client()?.start(&ctl.namespace, &a.id)?;
    println!("{} started (pid {})", info.id, info.pid);
    Ok(0)
}

/// `run`.
pub fn run(ctl: &Ctl, a: RunArgs) -> Outcome {
    let id = a.names.id();
    let mut req = create_request(ctl, "run", a.spec, a.names)?;
    req.start = true;
    let mut client = ctl.client()?;
    if a.detach {
        let info = client.create(req)?;
        println!("{} running (pid {})", info.id, info.pid);
        return Ok(0);
    }
    let mut pipes = OutputPipes::new(&id)?;
    req.stdio = pipes.stdio();
    client.create(req)?;
    let copiers = pipes.copy();
    let exit = client.wait(&ctl.namespace, &id, None)?;
    for c in copiers {
        let _ = c.join();
    }
    if a.rm {
        client.delete(&ctl.namespace, &id, false)?;
    }
    Ok(exit.code as i32)
}

/// `exec`.
pub fn exec(ctl: &Ctl, a: ExecArgs) -> Outcome {
    if a.cmd.is_empty() {
        return Err(usage("exec", "exec needs a command after --"));
    }
    let mut req = ExecRequest {
        namespace: ctl.namespace.clone(),
        id: a.id.clone(),
        exec_id: a.exec_id.clone(),
        process: ExecProcess::Args(a.cmd),
        stdio: Stdio::default(),
    };
    let mut client = ctl.client()?;
    if a.detach {
        let p = client.exec(req)?;
        println!("{} started in {} (pid {})", p.id, a.id, p.pid);
        return Ok(0);
    }
    let mut pipes = OutputPipes::new(&a.exec_id)?;
    req.stdio = pipes.stdio();
    client.exec(req)?;
    let copiers = pipes.copy();
    let exit = client.wait(&ctl.namespace, &a.id, Some(&a.exec_id))?;
    for c in copiers {
        let _ = c.join();
    }
    Ok(exit.code as i32)
}

/// `kill`.
pub fn kill(ctl: &Ctl, a: KillArgs) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids.ids, |id| {
        client.kill(KillRequest {
            namespace: ctl.namespace.clone(),
            id: id.into(),
            exec_id: a.exec.clone(),
            signal: a.signal,
            all: a.all,
        })?;
        Ok(0)
    })
}

fn stop_request(ctl: &Ctl, id: &str, signal: i32, grace: &GraceArg) -> StopRequest {
    StopRequest {
        namespace: ctl.namespace.clone(),
        id: id.into(),
        signal,
        timeout_ms: grace.time.saturating_mul(1000),
    }
}

/// `stop`: prints each exit code; exits 0 when every container stopped.
pub fn stop(ctl: &Ctl, a: StopArgs) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids.ids, |id| {
        let exit = client.stop(stop_request(ctl, id, a.signal.unwrap_or(0), &a.grace))?;
        println!("{}", exit.code);
        Ok(0)
    })
}

/// `restart`: prints `ID restarted (pid N)` for each.
pub fn restart(ctl: &Ctl, a: RestartArgs) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids.ids, |id| {
        let info = client.restart(stop_request(ctl, id, 0, &a.grace))?;
        println!("{} restarted (pid {})", info.id, info.pid);
        Ok(0)
    })
}

/// `wait`: prints each exit code; exits with the first non-zero one.
pub fn wait(ctl: &Ctl, a: WaitArgs) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids.ids, |id| {
        let exit = client.wait(&ctl.namespace, id, a.exec.as_deref())?;
        println!("{}", exit.code);
        Ok(exit.code as i32)
    })
}

/// `delete`.
pub fn delete(ctl: &Ctl, a: DeleteArgs) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids.ids, |id| {
        client.delete(&ctl.namespace, id, a.force)?;
        Ok(0)
    })
}

/// `pause` and `resume`: prints `ID <status>` for each.
pub fn pause_resume(ctl: &Ctl, a: IdsArg, pause: bool) -> Outcome {
    let mut client = ctl.client()?;
    each_id(&a.ids, |id| {
        let info = if pause {
            client.pause(&ctl.namespace, id)?
        } else {
            client.resume(&ctl.namespace, id)?
        };
        println!("{} {}", info.id, info.status);
        Ok(0)
    })
}

/// `close-stdin`.
pub fn close_stdin(ctl: &Ctl, a: CloseStdinArgs) -> Outcome {
    ctl.client()?
        .close_stdin(&ctl.namespace, &a.id, a.exec.as_deref())?;
    Ok(0)
}
