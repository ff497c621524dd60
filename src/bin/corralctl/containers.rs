//! The lifecycle commands: create, start, run, exec, kill, stop, restart, wait, delete,
//! pause, resume, close-stdin.

use crate::attach::{self, Ended, DEFAULT_DETACH_KEYS};
use crate::cli::{label, restart_policy, signal};
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

/// `-t`, `-i` and the detach keys (`run`, `exec`, `create`).
#[derive(Args)]
pub struct TerminalFlags {
    /// Give the process a pseudo-terminal of our terminal's size (with -i, our terminal is
    /// raw meanwhile: Ctrl-C goes to the process).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep the process's stdin open; in the foreground, send ours to it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The keys that detach from a process with a terminal, leaving it running (docker's
    /// syntax; "" for none).
    #[arg(long, value_name = "KEYS", default_value = DEFAULT_DETACH_KEYS, value_parser = detach_keys)]
    pub detach_keys: String,
}

/// `--detach-keys`: checked here, parsed again where used.
pub fn detach_keys(s: &str) -> Result<String, String> {
    attach::parse_detach_keys(s).map(|_| s.to_string())
}

impl TerminalFlags {
    /// The stdio of a process whose output goes to its log, with these flags.
    fn stdio(&self, logs: &LogFlags) -> Stdio {
        Stdio {
            open_stdin: self.interactive,
            terminal: self.tty,
            console_size: if self.tty {
                attach::terminal_size()
            } else {
                None
            },
            log_max_size: logs.log_max_size,
            log_max_files: logs.log_max_files,
            ..Stdio::default()
        }
    }

    /// How a foreground run or exec attaches: our stdin with -i, raw mode and the detach
    /// keys with -t too.
    fn foreground(&self) -> attach::Options {
        attach::Options {
            from: AttachFrom::Launch,
            stdin: self.interactive,
            tty: self.tty,
            detach_keys: if self.tty {
                attach::parse_detach_keys(&self.detach_keys).unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }
}

/// How the process's log rotates (`run`, `create`).
#[derive(Args)]
pub struct LogFlags {
    /// Rotate the process's log when it would grow past this many bytes (0: never; the
    /// daemon's default when not given).
    #[arg(long, value_name = "BYTES")]
    pub log_max_size: Option<u64>,
    /// Keep this many log files, the live one included (the daemon's default when not
    /// given).
    #[arg(long, value_name = "N")]
    pub log_max_files: Option<u32>,
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
    /// The snapshotter of the rootfs: `overlayfs`, or `native` (a full copy, for hosts
    /// without overlayfs); default: the daemon's (`info` shows it).
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
    #[command(flatten)]
    term: TerminalFlags,
    #[command(flatten)]
    logs: LogFlags,
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
    /// Delete the container after it exits (not after a detach: it runs on).
    #[arg(long, conflicts_with = "detach")]
    rm: bool,
    #[command(flatten)]
    term: TerminalFlags,
    #[command(flatten)]
    logs: LogFlags,
}

/// `exec`.
#[derive(Args)]
#[command(override_usage = "corralctl exec [OPTIONS] ID [EXEC_ID] -- CMD...")]
pub struct ExecArgs {
    /// The container.
    id: String,
    /// The new process's id (as --exec-id; one is made up when neither is given).
    #[arg(value_name = "EXEC_ID")]
    exec_id: Option<String>,
    /// The new process's id.
    #[arg(long = "exec-id", value_name = "EXEC_ID", conflicts_with = "exec_id")]
    exec_id_flag: Option<String>,
    /// Return once it runs; print its pid (remove it with `exec-rm` after it exits).
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    term: TerminalFlags,
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
        ..a.term.stdio(&a.logs)
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

/// `run`: with -d, returns once it runs; else copies its output (and our stdin with -i)
/// until it exits and exits with its code.
pub fn run(ctl: &Ctl, a: RunArgs) -> Outcome {
    let id = a.names.id();
    let mut req = create_request(ctl, "run", a.spec, a.names)?;
    req.start = true;
    req.stdio = a.term.stdio(&a.logs);
    if a.detach {
        let info = ctl.client()?.create(req)?;
        println!("{} running (pid {})", info.id, info.pid);
        return Ok(0);
    }
    // One request: create, start, attach from its launch and (--rm) the delete after its
    // exit, done by the daemon. Signals are blocked before the container exists: a Ctrl-C
    // from now on is forwarded to it, not lost. A create that fails leaves nothing to
    // delete (and an id taken by another container is not ours to delete).
    let opts = a.term.foreground();
    let run = RunRequest {
        stdin: opts.stdin,
        remove: a.rm,
        create: req,
    };
    attach::ignore_sigpipe();
    let (_, attached) = ctl.client()?.run(run)?;
    match attach::run(ctl, &id, opts, attached) {
        // With --rm the daemon has deleted it (a failed delete is an error here).
        Ok(Ended::Exited(exit)) => Ok(exit.code as i32),
        Ok(Ended::Detached) => {
            if a.rm {
                eprintln!("corralctl: detached from {id}: it runs on and is not removed (--rm)");
            }
            Ok(0)
        }
        Err(e) => {
            if a.rm {
                remove_container(ctl, &id);
            }
            Err(e.into())
        }
    }
}

/// `--rm` after a failure: deletes the container, killing it if it runs; errors are
/// reported, not returned (the failure that got us here is the one to return).
fn remove_container(ctl: &Ctl, id: &str) {
    let removed = ctl
        .client()
        .and_then(|mut c| c.delete(&ctl.namespace, id, true));
    match removed {
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => eprintln!("corralctl: --rm: delete {id}: {e}"),
    }
}

/// A made-up exec id: `exec-` and 8 hex digits from the time and our pid.
fn new_exec_id() -> String {
    let pid = u64::from(std::process::id());
    let mixed = now_ns() ^ pid.rotate_left(40);
    format!("exec-{:08x}", (mixed ^ (mixed >> 32)) as u32)
}

/// `exec`: with -d, returns once it runs; else copies its output (and our stdin with -i)
/// until it exits, removes it (its id is free again) and exits with its code.
pub fn exec(ctl: &Ctl, a: ExecArgs) -> Outcome {
    if a.cmd.is_empty() {
        return Err(usage("exec", "exec needs a command after --"));
    }
    let exec_id = a.exec_id.or(a.exec_id_flag).unwrap_or_else(new_exec_id);
    let req = ExecRequest {
        namespace: ctl.namespace.clone(),
        id: a.id.clone(),
        exec_id: exec_id.clone(),
        process: ExecProcess::Args(a.cmd),
        stdio: a.term.stdio(&LogFlags {
            log_max_size: None,
            log_max_files: None,
        }),
    };
    if a.detach {
        let p = ctl.client()?.exec(req)?;
        println!("{} started in {} (pid {})", p.id, a.id, p.pid);
        return Ok(0);
    }
    attach::block_signals();
    ctl.client()?.exec(req)?;
    let ended = attach::attach(ctl, &a.id, Some(&exec_id), a.term.foreground());
    let remove = || {
        ctl.client()
            .and_then(|mut c| c.remove_exec(&ctl.namespace, &a.id, &exec_id))
    };
    match ended {
        Ok(Ended::Exited(exit)) => {
            remove()?;
            Ok(exit.code as i32)
        }
        // It runs on: `exec-rm` it once it has exited.
        Ok(Ended::Detached) => Ok(0),
        Err(e) => {
            // If it has exited, free its id anyway; if it runs, it stays (`exec-rm` later).
            let _ = remove();
            Err(e.into())
        }
    }
}

/// `attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// The container.
    id: String,
    /// Attach to this exec instead of the init.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
    /// Do not send our stdin, even if the process has one.
    #[arg(long)]
    no_stdin: bool,
    /// The keys that detach, leaving the process running (docker's syntax; "" for none).
    #[arg(long, value_name = "KEYS", default_value = DEFAULT_DETACH_KEYS, value_parser = detach_keys)]
    detach_keys: String,
}

/// `attach`: the process's output from now on (and our stdin to it, if it has one) until
/// it exits (exits with its code) or the detach keys (exits 0).
pub fn attach_cmd(ctl: &Ctl, a: AttachArgs) -> Outcome {
    let c = ctl.client()?.state(&ctl.namespace, &a.id)?;
    let (tty, has_stdin) = match &a.exec {
        None => (c.terminal, None),
        Some(e) => match c.execs.iter().find(|p| &p.id == e) {
            Some(p) => (p.terminal, Some(p.stdin)),
            None => {
                return Err(Error::NotFound(format!(
                    "exec {e} of container {}/{}",
                    c.namespace, c.id
                ))
                .into())
            }
        },
    };
    let keys = attach::parse_detach_keys(&a.detach_keys).unwrap_or_default();
    let opts = |stdin: bool| attach::Options {
        from: AttachFrom::Now,
        stdin,
        tty,
        detach_keys: keys.clone(),
    };
    // The init's stdin is not in its state: ask for it, and do without if it has none.
    let want_stdin = !a.no_stdin && has_stdin.unwrap_or(true);
    let mut ended = attach::attach(ctl, &a.id, a.exec.as_deref(), opts(want_stdin));
    if want_stdin && has_stdin.is_none() {
        if let Err(Error::InvalidArgument(m)) = &ended {
            if m.contains("no stdin") {
                ended = attach::attach(ctl, &a.id, a.exec.as_deref(), opts(false));
            }
        }
    }
    match ended? {
        Ended::Exited(exit) => Ok(exit.code as i32),
        Ended::Detached => Ok(0),
    }
}

/// `exec-rm`.
#[derive(Args)]
pub struct ExecRmArgs {
    /// The container.
    id: String,
    /// The exited exec to remove.
    exec_id: String,
}

/// `exec-rm`: removes an exited exec (its log too); its id is free again.
pub fn exec_rm(ctl: &Ctl, a: ExecRmArgs) -> Outcome {
    ctl.client()?
        .remove_exec(&ctl.namespace, &a.id, &a.exec_id)?;
    Ok(0)
}

/// `resize`.
#[derive(Args)]
pub struct ResizeArgs {
    /// The container.
    id: String,
    /// Resize this exec's terminal instead of the init's.
    #[arg(long, value_name = "EXEC_ID")]
    exec: Option<String>,
    /// Columns.
    width: u16,
    /// Rows.
    height: u16,
}

/// `resize`: sets the size of a process's terminal.
pub fn resize(ctl: &Ctl, a: ResizeArgs) -> Outcome {
    ctl.client()?.resize(
        &ctl.namespace,
        &a.id,
        a.exec.as_deref(),
        ConsoleSize {
            width: a.width,
            height: a.height,
        },
    )?;
    Ok(0)
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
