//! corralctl: the admin CLI. Talks to corrald over its socket (`--socket`, or
//! `CORRAL_SOCKET`); every command takes `--namespace NS` (or `CORRAL_NAMESPACE`).

use corral::rpc::{Client, DEFAULT_SOCKET};
use corral::*;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: corralctl [--socket PATH] [--namespace NS] COMMAND [ARGS]

commands:
  create ID --bundle DIR [--label K=V]... [--runtime PATH] [--restart POLICY]
            [--stdin P] [--stdout P] [--stderr P]
  start ID
  run ID --bundle DIR [--rm] [-d] [--label K=V]... [--runtime PATH] [--restart POLICY]
                                  create, start, copy its output, wait; exit with its code
  exec ID EXEC_ID [-d] -- CMD...  run CMD in the container; exit with its code
  kill ID [--signal SIG] [--all] [--exec EXEC_ID]     (SIGTERM by default)
  wait ID [--exec EXEC_ID]        print the exit code and exit with it
  delete ID [--force]
  list [--label K=V]... [--json]
  state ID [--json]
  pids ID [--json]
  close-stdin ID [--exec EXEC_ID]
  pause ID | resume ID
  update ID [--memory SIZE] [--memory-swap SIZE] [--memory-reservation SIZE]
            [--kernel-memory SIZE] [--kernel-memory-tcp SIZE] [--pids-limit N]
            [--cpu-shares N] [--cpu-period US] [--cpu-quota US] [--cpuset-cpus LIST]
            [--cpuset-mems LIST] [--blkio-weight N]      (SIZE: bytes, or 64K, 64M, 1G; -1: none)
  stats [ID...] [--watch] [--json]    one-shot table, or a live one with --watch
  checkpoint ID NAME [--tcp] [--unix-sockets] [--shell] [--exit] [--empty-ns NS]...
                                  checkpoint with CRIU (the container keeps running unless --exit)
  checkpoints ID [--json]         list a container's checkpoints (also after it was deleted)
  checkpoint rm ID NAME
  checkpoint export ID NAME FILE  one OCI image-layout tar, to carry to another machine
  checkpoint import FILE
  restore ID NAME [--as NEW_ID] [--bundle DIR]    create and start a container from a checkpoint
  events [--id ID] [--since SEQ|TIME|DURATION] [--json]
                                  replay from the journal (SEQ, RFC 3339 TIME, or e.g. 10m ago),
                                  then follow; resumes by itself if it falls behind
  info [--json]                   the daemon's counters
  version
  bundle busybox DIR [-- CMD...]  make a runnable bundle from the host's busybox-static

restart policies: no (default), on-failure[:MAX], always, unless-stopped
environment: CORRAL_SOCKET, CORRAL_NAMESPACE";

/// A command-line error: printed with the usage, exit 2.
struct Usage(String);

enum Failure {
    Usage(Usage),
    Corral(Error),
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Self {
        Failure::Usage(u)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Corral(e)
    }
}

type Outcome = Result<i32, Failure>;

/// The arguments left to parse; flags may come anywhere before `--`.
struct Args {
    items: VecDeque<String>,
    rest: Vec<String>,
}

impl Args {
    fn new(argv: Vec<String>) -> Self {
        let mut items = VecDeque::new();
        let mut rest = Vec::new();
        let mut it = argv.into_iter();
        for a in it.by_ref() {
            if a == "--" {
                break;
            }
            items.push_back(a);
        }
        rest.extend(it);
        Args { items, rest }
    }

    fn flag(&mut self, names: &[&str]) -> bool {
        let before = self.items.len();
        self.items.retain(|a| !names.contains(&a.as_str()));
        self.items.len() != before
    }

    fn values(&mut self, names: &[&str]) -> Result<Vec<String>, Usage> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let a = &self.items[i];
            if let Some((name, v)) = a.split_once('=').filter(|(n, _)| names.contains(n)) {
                let _ = name;
                out.push(v.to_string());
                self.items.remove(i);
            } else if names.contains(&a.as_str()) {
                let name = a.clone();
                self.items.remove(i);
                match self.items.remove(i) {
                    Some(v) => out.push(v),
                    None => return Err(Usage(format!("{name} needs a value"))),
                }
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    fn value(&mut self, names: &[&str]) -> Result<Option<String>, Usage> {
        let mut v = self.values(names)?;
        if v.len() > 1 {
            return Err(Usage(format!("{} given more than once", names[0])));
        }
        Ok(v.pop())
    }

    fn positional(&mut self, what: &str) -> Result<String, Usage> {
        let pos = self
            .items
            .iter()
            .position(|a| !a.starts_with('-') || a == "-");
        match pos.and_then(|p| self.items.remove(p)) {
            Some(v) => Ok(v),
            None => Err(Usage(format!("missing {what}"))),
        }
    }

    fn finish(self) -> Result<Vec<String>, Usage> {
        if let Some(extra) = self.items.front() {
            return Err(Usage(format!("unexpected argument {extra:?}")));
        }
        Ok(self.rest)
    }
}

struct Ctl {
    socket: PathBuf,
    namespace: String,
}

impl Ctl {
    fn client(&self) -> Result<Client, Error> {
        Client::connect(&self.socket)
    }
}

fn main() {
    // Die quietly on a closed pipe (`corralctl list | head`), like other command-line tools.
    // SAFETY: restoring the default disposition of SIGPIPE runs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match run_cli(argv) {
        Ok(code) => code,
        Err(Failure::Usage(Usage(msg))) => {
            eprintln!("corralctl: {msg}\n\n{USAGE}");
            2
        }
        Err(Failure::Corral(e)) => {
            eprintln!("corralctl: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run_cli(argv: Vec<String>) -> Outcome {
    let mut args = Args::new(argv);
    if args.flag(&["--help", "-h"]) || args.items.front().is_some_and(|a| a == "help") {
        println!("{USAGE}");
        return Ok(0);
    }
    let socket = args
        .value(&["--socket"])?
        .or_else(|| std::env::var("CORRAL_SOCKET").ok())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let namespace = args
        .value(&["--namespace", "-n"])?
        .or_else(|| std::env::var("CORRAL_NAMESPACE").ok())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    validate_id("namespace", &namespace)?;
    let ctl = Ctl {
        socket: socket.into(),
        namespace,
    };
    let command = args.positional("command")?;
    match command.as_str() {
        "create" => create(&ctl, args),
        "start" => start(&ctl, args),
        "run" => run(&ctl, args),
        "exec" => exec(&ctl, args),
        "kill" => kill(&ctl, args),
        "wait" => wait(&ctl, args),
        "delete" | "rm" => delete(&ctl, args),
        "list" | "ls" => list(&ctl, args),
        "state" => state(&ctl, args),
        "pids" => pids(&ctl, args),
        "close-stdin" => close_stdin(&ctl, args),
        "pause" => pause_resume(&ctl, args, true),
        "resume" => pause_resume(&ctl, args, false),
        "update" => update(&ctl, args),
        "stats" => stats(&ctl, args),
        "checkpoint" => checkpoint(&ctl, args),
        "checkpoints" => checkpoints(&ctl, args),
        "restore" => restore(&ctl, args),
        "events" => events(&ctl, args),
        "version" => version(&ctl, args),
        "info" => info(&ctl, args),
        "bundle" => bundle(args),
        other => Err(Usage(format!("unknown command {other:?}")).into()),
    }
}

fn labels(args: &mut Args) -> Result<BTreeMap<String, String>, Usage> {
    args.values(&["--label", "-l"])?
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Usage(format!("label {kv:?} is not KEY=VALUE"))),
        })
        .collect()
}

fn absolute(p: String) -> Result<PathBuf, Error> {
    std::path::absolute(&p).map_err(|e| Error::InvalidArgument(format!("path {p:?}: {e}")))
}

fn create_request(ctl: &Ctl, args: &mut Args, id: String) -> Result<CreateRequest, Failure> {
    let bundle = args
        .value(&["--bundle", "-b"])?
        .ok_or_else(|| Usage("--bundle DIR is required".into()))?;
    let runtime = args.value(&["--runtime"])?.map(PathBuf::from);
    let restart = match args.value(&["--restart"])? {
        Some(p) => p.parse()?,
        None => RestartPolicy::No,
    };
    Ok(CreateRequest {
        restart,
        namespace: ctl.namespace.clone(),
        id,
        bundle: absolute(bundle)?,
        runtime,
        runtime_args: Vec::new(),
        labels: labels(args)?,
        stdio: Stdio::default(),
        start: false,
    })
}

fn create(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let mut req = create_request(ctl, &mut args, id)?;
    req.stdio = Stdio {
        stdin: args.value(&["--stdin"])?.map(absolute).transpose()?,
        stdout: args.value(&["--stdout"])?.map(absolute).transpose()?,
        stderr: args.value(&["--stderr"])?.map(absolute).transpose()?,
    };
    args.finish()?;
    let info = ctl.client()?.create(req)?;
    println!("{} created (pid {})", info.id, info.pid);
    Ok(0)
}

fn start(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    args.finish()?;
    let info = ctl.client()?.start(&ctl.namespace, &id)?;
    println!("{} started (pid {})", info.id, info.pid);
    Ok(0)
}

/// Fifos in a private temp dir that carry a process's stdout and stderr to ours.
struct OutputPipes {
    dir: PathBuf,
    readers: Vec<(std::fs::File, bool)>,
}

impl OutputPipes {
    fn new(tag: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!(
            "corralctl-{}-{}-{}",
            std::process::id(),
            tag,
            now_ns()
        ));
        std::fs::create_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let mut pipes = OutputPipes {
            dir,
            readers: Vec::new(),
        };
        for (name, is_err) in [("stdout", false), ("stderr", true)] {
            let path = pipes.dir.join(name);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::Internal(format!("mkfifo {}: {e}", path.display())))?;
            // Open the read end first (non-blocking) so the shim's open never waits for us.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| Error::io(path.display(), e))?;
            pipes.readers.push((f, is_err));
        }
        Ok(pipes)
    }

    fn stdio(&self) -> Stdio {
        Stdio {
            stdin: None,
            stdout: Some(self.dir.join("stdout")),
            stderr: Some(self.dir.join("stderr")),
        }
    }

    /// Copies both fifos to our stdout and stderr until the writers are gone.
    fn copy(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        self.readers
            .drain(..)
            .map(|(mut f, is_err)| {
                set_blocking(&f);
                std::thread::spawn(move || {
                    let _ = if is_err {
                        std::io::copy(&mut f, &mut std::io::stderr())
                    } else {
                        std::io::copy(&mut f, &mut std::io::stdout())
                    };
                    let _ = std::io::stdout().flush();
                })
            })
            .collect()
    }
}

impl Drop for OutputPipes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_blocking(f: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    if let Ok(flags) = fcntl(f.as_raw_fd(), FcntlArg::F_GETFL) {
        let _ = fcntl(
            f.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK),
        );
    }
}

fn run(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let detach = args.flag(&["-d", "--detach"]);
    let remove = args.flag(&["--rm"]);
    let mut req = create_request(ctl, &mut args, id.clone())?;
    args.finish()?;
    if detach && remove {
        return Err(Usage("--rm cannot be used with -d".into()).into());
    }
    req.start = true;
    let mut client = ctl.client()?;
    if detach {
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
    if remove {
        client.delete(&ctl.namespace, &id, false)?;
    }
    Ok(exit.code as i32)
}

fn exec(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let exec_id = args.positional("EXEC_ID")?;
    let detach = args.flag(&["-d", "--detach"]);
    let cmd = args.finish()?;
    if cmd.is_empty() {
        return Err(Usage("exec needs a command after --".into()).into());
    }
    let mut req = ExecRequest {
        namespace: ctl.namespace.clone(),
        id: id.clone(),
        exec_id: exec_id.clone(),
        process: ExecProcess::Args(cmd),
        stdio: Stdio::default(),
    };
    let mut client = ctl.client()?;
    if detach {
        let p = client.exec(req)?;
        println!("{} started in {} (pid {})", p.id, id, p.pid);
        return Ok(0);
    }
    let mut pipes = OutputPipes::new(&exec_id)?;
    req.stdio = pipes.stdio();
    client.exec(req)?;
    let copiers = pipes.copy();
    let exit = client.wait(&ctl.namespace, &id, Some(&exec_id))?;
    for c in copiers {
        let _ = c.join();
    }
    Ok(exit.code as i32)
}

fn kill(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let signal = args
        .value(&["--signal", "-s"])?
        .unwrap_or_else(|| "TERM".into());
    let all = args.flag(&["--all", "-a"]);
    let exec_id = args.value(&["--exec"])?;
    args.finish()?;
    let signal = parse_signal(&signal)?;
    ctl.client()?.kill(KillRequest {
        namespace: ctl.namespace.clone(),
        id,
        exec_id,
        signal,
        all,
    })?;
    Ok(0)
}

fn wait(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let exec_id = args.value(&["--exec"])?;
    args.finish()?;
    let exit = ctl
        .client()?
        .wait(&ctl.namespace, &id, exec_id.as_deref())?;
    println!("{}", exit.code);
    Ok(exit.code as i32)
}

fn delete(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let force = args.flag(&["--force", "-f"]);
    args.finish()?;
    ctl.client()?.delete(&ctl.namespace, &id, force)?;
    Ok(0)
}

fn json<T: serde::Serialize>(value: &T) -> Result<i32, Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("encode JSON: {e}")))?;
    println!("{text}");
    Ok(0)
}

fn exit_text(exit: Option<ExitStatus>) -> String {
    exit.map(|e| e.code.to_string())
        .unwrap_or_else(|| "-".into())
}

fn list(ctl: &Ctl, mut args: Args) -> Outcome {
    let as_json = args.flag(&["--json"]);
    let labels = labels(&mut args)?;
    args.finish()?;
    let containers = ctl.client()?.list(&ctl.namespace, labels)?;
    if as_json {
        return json(&containers);
    }
    let rows: Vec<[String; 7]> = containers
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.status.to_string(),
                c.pid.to_string(),
                exit_text(c.exit),
                c.restarts.to_string(),
                format_time(c.created_at_ns),
                c.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATUS", "PID", "EXIT", "RESTARTS", "CREATED", "LABELS",
        ],
        &rows,
    );
    Ok(0)
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn state(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let as_json = args.flag(&["--json"]);
    args.finish()?;
    let c = ctl.client()?.state(&ctl.namespace, &id)?;
    if as_json {
        return json(&c);
    }
    println!("namespace: {}", c.namespace);
    println!("id:        {}", c.id);
    println!("status:    {}", c.status);
    println!("pid:       {}", c.pid);
    println!("bundle:    {}", c.bundle.display());
    println!("runtime:   {}", c.runtime.display());
    println!("created:   {}", format_time(c.created_at_ns));
    println!("restart:   {} ({} restarts)", c.restart, c.restarts);
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
        let rows: Vec<[String; 4]> = c
            .execs
            .iter()
            .map(|p| {
                [
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

fn pids(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let as_json = args.flag(&["--json"]);
    args.finish()?;
    let pids = ctl.client()?.pids(&ctl.namespace, &id)?;
    if as_json {
        return json(&pids);
    }
    let rows: Vec<[String; 2]> = pids
        .iter()
        .map(|p| {
            [
                p.pid.to_string(),
                p.process_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["PID", "PROCESS"], &rows);
    Ok(0)
}

fn pause_resume(ctl: &Ctl, mut args: Args, pause: bool) -> Outcome {
    let id = args.positional("container ID")?;
    args.finish()?;
    let mut client = ctl.client()?;
    let info = if pause {
        client.pause(&ctl.namespace, &id)?
    } else {
        client.resume(&ctl.namespace, &id)?
    };
    println!("{} {}", info.id, info.status);
    Ok(0)
}

/// A size: bytes, or with a K/M/G suffix (powers of 1024); -1 for no limit.
fn parse_size(flag: &str, s: &str) -> Result<i64, Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{flag} {s:?} is not a size (e.g. 65536, 64K, 64M, 1G, -1)"
        ))
    };
    if s == "-1" {
        return Ok(-1);
    }
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(bad)
}

fn parse_num<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| Error::InvalidArgument(format!("{flag} {s:?} is not a valid number")))
}

fn update(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let mut r = Resources::default();
    let size = |args: &mut Args, flag: &str| -> Result<Option<i64>, Failure> {
        Ok(args
            .value(&[flag])?
            .map(|v| parse_size(flag, &v))
            .transpose()?)
    };
    r.memory = size(&mut args, "--memory")?;
    r.memory_swap = size(&mut args, "--memory-swap")?;
    r.memory_reservation = size(&mut args, "--memory-reservation")?;
    r.kernel_memory = size(&mut args, "--kernel-memory")?;
    r.kernel_tcp_memory = size(&mut args, "--kernel-memory-tcp")?;
    r.pids_limit = args
        .value(&["--pids-limit"])?
        .map(|v| parse_num("--pids-limit", &v))
        .transpose()?;
    r.cpu_shares = args
        .value(&["--cpu-shares"])?
        .map(|v| parse_num("--cpu-shares", &v))
        .transpose()?;
    r.cpu_period = args
        .value(&["--cpu-period"])?
        .map(|v| parse_num("--cpu-period", &v))
        .transpose()?;
    r.cpu_quota = args
        .value(&["--cpu-quota"])?
        .map(|v| parse_num("--cpu-quota", &v))
        .transpose()?;
    r.blkio_weight = args
        .value(&["--blkio-weight"])?
        .map(|v| parse_num("--blkio-weight", &v))
        .transpose()?;
    r.cpuset_cpus = args.value(&["--cpuset-cpus"])?;
    r.cpuset_mems = args.value(&["--cpuset-mems"])?;
    args.finish()?;
    if r.fields().is_empty() {
        return Err(Usage("update needs at least one resource flag".into()).into());
    }
    ctl.client()?.update(&ctl.namespace, &id, r)?;
    Ok(0)
}

fn human_bytes(b: u64) -> String {
    // The kernel's "no limit" is u64::MAX on v2 and a page-rounded i64::MAX on v1.
    if b >= 1 << 62 {
        return "max".into();
    }
    let f = b as f64;
    match b {
        0..=1023 => format!("{b}B"),
        1024..=1048575 => format!("{:.1}KiB", f / 1024.0),
        1048576..=1073741823 => format!("{:.1}MiB", f / 1048576.0),
        _ => format!("{:.2}GiB", f / 1073741824.0),
    }
}

fn stats(ctl: &Ctl, mut args: Args) -> Outcome {
    let watch = args.flag(&["--watch", "-w"]);
    let as_json = args.flag(&["--json"]);
    let mut ids = Vec::new();
    while let Ok(id) = args.positional("ID") {
        ids.push(id);
    }
    args.finish()?;
    let mut client = ctl.client()?;
    let mut previous: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        let all = client.stats(&ctl.namespace, ids.clone())?;
        if as_json {
            let map: BTreeMap<&String, &Stats> = all.iter().map(|(i, s)| (i, s)).collect();
            json(&map)?;
        } else {
            if watch {
                print!("\x1b[2J\x1b[H");
            }
            let rows: Vec<[String; 7]> = all
                .iter()
                .map(|(id, s)| {
                    // CPU % over the last interval (from the second sample on).
                    let cpu = previous
                        .get(id)
                        .filter(|(t0, _)| s.timestamp_ns > *t0)
                        .map(|(t0, c0)| {
                            let dt = (s.timestamp_ns - t0) as f64;
                            format!(
                                "{:.1}%",
                                (s.cpu.usage.total.saturating_sub(*c0)) as f64 / dt * 100.0
                            )
                        })
                        .unwrap_or_else(|| "-".into());
                    previous.insert(id.clone(), (s.timestamp_ns, s.cpu.usage.total));
                    [
                        id.clone(),
                        cpu,
                        format!("{:.3}s", s.cpu.usage.total as f64 / 1e9),
                        human_bytes(s.memory.usage.usage),
                        human_bytes(s.memory.usage.limit),
                        format!(
                            "{}/{}",
                            s.pids.current,
                            if s.pids.limit == u64::MAX || s.pids.limit == 0 {
                                "max".to_string()
                            } else {
                                s.pids.limit.to_string()
                            }
                        ),
                        s.cpu.throttling.throttled_periods.to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "CPU%",
                    "CPU TIME",
                    "MEM",
                    "MEM LIMIT",
                    "PIDS",
                    "THROTTLED",
                ],
                &rows,
            );
        }
        if !watch {
            return Ok(0);
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn checkpoint(ctl: &Ctl, mut args: Args) -> Outcome {
    let first = args.positional("container ID or rm/export/import")?;
    let mut client = ctl.client()?;
    match first.as_str() {
        "rm" => {
            let (id, name) = (args.positional("container ID")?, args.positional("NAME")?);
            args.finish()?;
            client.remove_checkpoint(&ctl.namespace, &id, &name)?;
        }
        "export" => {
            let (id, name) = (args.positional("container ID")?, args.positional("NAME")?);
            let file = absolute(args.positional("FILE")?)?;
            args.finish()?;
            let size = client.export_checkpoint(&ctl.namespace, &id, &name, &file)?;
            println!("{} ({})", file.display(), human_bytes(size));
        }
        "import" => {
            let file = absolute(args.positional("FILE")?)?;
            args.finish()?;
            let c = client.import_checkpoint(&file)?;
            println!(
                "imported checkpoint {} of {}/{}",
                c.name, c.namespace, c.container_id
            );
        }
        _ => {
            let id = first;
            let name = args.positional("checkpoint NAME")?;
            let options = CheckpointOptions {
                tcp: args.flag(&["--tcp"]),
                unix_sockets: args.flag(&["--unix-sockets"]),
                shell: args.flag(&["--shell"]),
                exit: args.flag(&["--exit"]),
                empty_ns: args.values(&["--empty-ns"])?,
            };
            args.finish()?;
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

fn checkpoint_options_text(o: &CheckpointOptions) -> String {
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

fn checkpoints(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let as_json = args.flag(&["--json"]);
    args.finish()?;
    let list = ctl.client()?.checkpoints(&ctl.namespace, &id)?;
    if as_json {
        return json(&list);
    }
    let rows: Vec<[String; 4]> = list
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                format_time(c.created_ns),
                human_bytes(c.size),
                checkpoint_options_text(&c.options),
            ]
        })
        .collect();
    table(&["NAME", "CREATED", "SIZE", "OPTIONS"], &rows);
    Ok(0)
}

fn restore(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let name = args.positional("checkpoint NAME")?;
    let new_id = args.value(&["--as"])?;
    let bundle = args.value(&["--bundle", "-b"])?.map(absolute).transpose()?;
    args.finish()?;
    let info = ctl.client()?.restore(
        &ctl.namespace,
        &id,
        &name,
        new_id.as_deref(),
        bundle.as_deref(),
    )?;
    println!("{} restored from {name} (pid {})", info.id, info.pid);
    Ok(0)
}

fn close_stdin(ctl: &Ctl, mut args: Args) -> Outcome {
    let id = args.positional("container ID")?;
    let exec_id = args.value(&["--exec"])?;
    args.finish()?;
    ctl.client()?
        .close_stdin(&ctl.namespace, &id, exec_id.as_deref())?;
    Ok(0)
}

fn events(ctl: &Ctl, mut args: Args) -> Outcome {
    let as_json = args.flag(&["--json"]);
    let id = args.value(&["--id"])?;
    let since = args
        .value(&["--since"])?
        .map(|s| parse_since(&s))
        .transpose()?;
    args.finish()?;
    let mut filter = EventFilter {
        namespace: Some(ctl.namespace.clone()),
        container_id: id,
        since,
    };
    let mut out = std::io::stdout().lock();
    let mut subscription = ctl.client()?.subscribe(filter.clone())?;
    loop {
        let event = match subscription.next() {
            None => break,
            Some(Ok(event)) => event,
            Some(Err(Error::Lagged { first_missed })) => {
                eprintln!("corralctl: fell behind; resuming from event {first_missed}");
                filter.since = Some(Since::Seq(first_missed));
                subscription = ctl.client()?.subscribe(filter.clone())?;
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
        };
        let line = if as_json {
            serde_json::to_string(&event).map_err(|e| Error::Internal(e.to_string()))?
        } else {
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
            s
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(0)
}

/// `--since`: a sequence number, an RFC 3339 UTC time, or a duration ago (`90s`, `10m`, `2h`).
fn parse_since(s: &str) -> Result<Since, Error> {
    if let Ok(seq) = s.parse::<u64>() {
        return Ok(Since::Seq(seq));
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
    match s.get(..s.len().saturating_sub(1)).and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if unit > 0 => Ok(Since::Time(
            now_ns().saturating_sub(n * unit * 1_000_000_000),
        )),
        _ => Err(Error::InvalidArgument(format!(
            "--since {s:?} is not a sequence number, an RFC 3339 time (2026-01-02T03:04:05Z) or a duration (90s, 10m, 2h)"
        ))),
    }
}

fn info(ctl: &Ctl, args: Args) -> Outcome {
    let as_json = {
        let mut args = args;
        let j = args.flag(&["--json"]);
        args.finish()?;
        j
    };
    let i = ctl.client()?.info()?;
    if as_json {
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
    Ok(0)
}

fn version(ctl: &Ctl, args: Args) -> Outcome {
    args.finish()?;
    println!("corralctl {}", VERSION);
    match ctl.client().and_then(|mut c| c.version()) {
        Ok((daemon, protocol)) => println!("corrald   {daemon} (protocol {protocol})"),
        Err(e) => println!("corrald   unreachable: {e}"),
    }
    Ok(0)
}

fn bundle(mut args: Args) -> Outcome {
    let kind = args.positional("bundle kind (busybox)")?;
    if kind != "busybox" {
        return Err(Usage(format!(
            "unknown bundle kind {kind:?}; only busybox is known"
        ))
        .into());
    }
    let dir = args.positional("DIR")?;
    let cmd = args.finish()?;
    let dir = Path::new(&dir);
    corral::bundle::make_busybox(dir, &cmd)?;
    println!("bundle ready in {}", dir.display());
    Ok(0)
}
