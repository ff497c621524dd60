//! corrald: the supervisor daemon. Serves the library's Handle over a unix socket.

use clap::{Parser, Subcommand, ValueEnum};
use corral::daemon_config::{self, Flags, LogFormat, Settings, DEFAULT_CONFIG_FILE};
use corral::rpc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The supervisor daemon: serves corral's API on a unix socket. Flags override the config
/// file's keys, which override the defaults.
#[derive(Parser, Debug)]
#[command(name = "corrald", version = corral::VERSION, args_override_self = true)]
struct Cli {
    /// The config file (TOML; `corrald config default` prints one). A missing default
    /// file is fine.
    #[arg(long, value_name = "FILE", env = "CORRAL_CONFIG")]
    config: Option<PathBuf>,
    /// RPC socket [default: /run/corral/corrald.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Container state [default: /run/corral]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The runtime's state root [default: /run/corral-runc]
    #[arg(long = "root", visible_alias = "runtime-root", value_name = "DIR")]
    runtime_root: Option<PathBuf>,
    /// Images, content, leases and namespaces [default: /var/lib/corral]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Default OCI runtime: a name in the config's runtimes, a path, or a name in PATH
    /// [default: runc]
    #[arg(long, value_name = "NAME|PATH")]
    runtime: Option<PathBuf>,
    /// corral-shim binary [default: beside corrald, else from PATH]
    #[arg(long, value_name = "PATH")]
    shim: Option<PathBuf>,
    /// CRIU for checkpoint/restore [default: /usr/local/sbin/criu, else from PATH]
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// Limit for one runtime call: seconds, or 500ms, 30s, 2m [default: 30]
    #[arg(long, value_name = "SECS", value_parser = daemon_config::parse_duration)]
    runtime_timeout: Option<Duration>,
    /// Limit for a shim to create or exec its process [default: 60]
    #[arg(long, value_name = "SECS", value_parser = daemon_config::parse_duration)]
    shim_timeout: Option<Duration>,
    /// Containers' logs [default: DATA_DIR/logs]
    #[arg(long, value_name = "DIR")]
    container_log_dir: Option<PathBuf>,
    /// Rotate a container's log when it would grow past this many bytes; 0: never
    /// [default: 10485760]
    #[arg(long, value_name = "BYTES")]
    container_log_max_size: Option<u64>,
    /// Log files kept per process, the live one included [default: 3]
    #[arg(long, value_name = "N")]
    container_log_max_files: Option<u32>,
    /// The snapshotter of containers from images that name none: overlayfs or native
    /// [default: overlayfs, or native without overlayfs in the kernel]
    #[arg(long, value_name = "NAME")]
    snapshotter: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9090 [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics_address: Option<SocketAddr>,
    /// Log line format [default: text]
    #[arg(long, value_name = "FORMAT", env = "CORRAL_LOG_FORMAT")]
    log_format: Option<Format>,
    /// error, warn, info, debug, trace, or tracing filter directives; else CORRAL_LOG,
    /// else RUST_LOG, else the file's log_level [default: info]
    #[arg(long, value_name = "LEVEL", env = "CORRAL_LOG")]
    log_level: Option<String>,
    /// Containers' cgroups go in PARENT/NAMESPACE/ID (cgroupfs drivers) [default: /corral]
    #[arg(long, value_name = "CGROUP")]
    cgroup_parent: Option<String>,
    /// The cgroup every shim moves into, out of corrald's ("": stay in corrald's)
    /// [default: /corral/_shims]
    #[arg(long, value_name = "CGROUP")]
    shim_cgroup: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The config file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The systemd unit (Type=notify, KillMode=process, Delegate=yes).
    Unit {
        #[command(subcommand)]
        action: UnitAction,
    },
}

#[derive(Subcommand, Debug)]
enum UnitAction {
    /// Print the unit for this corrald binary.
    Print,
    /// Write it as DIR/corrald.service (then: systemctl daemon-reload; systemctl enable
    /// --now corrald).
    Install {
        /// Where systemd reads units from.
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print a complete, commented config file with every key at its default.
    Default,
}

/// Exit code for a bad command line or config file (clap's usage errors exit 2 too).
const CONFIG_ERROR: i32 = 2;

fn settings(cli: Cli) -> Result<Settings, daemon_config::ConfigError> {
    let (file, explicit) = match cli.config {
        Some(f) => (f, true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let loaded = daemon_config::Loaded::read(&file, explicit)?;
    let flags = Flags {
        socket: cli.socket,
        state_dir: cli.state_dir,
        runtime_root: cli.runtime_root,
        data_dir: cli.data_dir,
        runtime: cli.runtime,
        shim: cli.shim,
        criu: cli.criu,
        runtime_timeout: cli.runtime_timeout,
        shim_timeout: cli.shim_timeout,
        container_log_dir: cli.container_log_dir,
        container_log_max_size: cli.container_log_max_size,
        container_log_max_files: cli.container_log_max_files,
        snapshotter: cli.snapshotter,
        metrics_address: cli.metrics_address,
        log_format: cli.log_format.map(|f| match f {
            Format::Text => LogFormat::Text,
            Format::Json => LogFormat::Json,
        }),
        log_level: cli
            .log_level
            .or_else(|| std::env::var("RUST_LOG").ok().filter(|l| !l.is_empty())),
        cgroup_parent: cli.cgroup_parent,
        shim_cgroup: cli.shim_cgroup,
    };
    daemon_config::resolve(&loaded, flags)
}

fn init_logging(format: LogFormat, level: &str) {
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(level) {
        Ok(f) => (f, false),
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), true),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    if bad {
        tracing::warn!("bad log level {level:?}, using info");
    }
}

/// glibc's allocator with fixed thresholds: blocks of 128 KiB and more are mapped apart and
/// unmapped when freed, and a free top of the heap over 128 KiB goes back to the system.
/// These are glibc's defaults, but by default it raises both as large blocks are freed
/// (up to 32 MiB and twice that): a list of a thousand containers (a reply of about
/// 200 KiB) then moved such buffers into the heap, and up to twice their size stayed
/// resident after every list. Setting one turns that adjustment off.
fn fix_allocator_thresholds() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's parameters; called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() {
    fix_allocator_thresholds();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Config {
            action: ConfigAction::Default,
        }) => {
            print!("{}", daemon_config::default_text());
            return;
        }
        Some(Command::Unit { action }) => std::process::exit(unit(action)),
        None => {}
    }
    let Settings {
        config,
        socket,
        metrics,
        log_format,
        log_level,
    } = match settings(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corrald: {e}");
            std::process::exit(CONFIG_ERROR);
        }
    };
    init_logging(log_format, &log_level);

    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        // Listeners first: a second daemon on the same socket must fail before it adopts,
        // reaps or restarts anything.
        let metrics = match metrics {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some((addr, corral::metrics::Server::spawn(l))),
                Err(e) => {
                    tracing::error!("cannot serve metrics on {addr}: {e}");
                    return 1;
                }
            },
            None => None,
        };
        let listener = match rpc::server::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        let handle = match corral::start(config.clone()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                let _ = std::fs::remove_file(&socket);
                return 1;
            }
        };
        tracing::info!(
            socket = %socket.display(),
            state = %config.state_dir.display(),
            root = %config.runtime_root.display(),
            data = %config.data_dir.display(),
            runtime = %config.runtime.display(),
            "corrald {} ready",
            corral::VERSION
        );
        if let Some((addr, l)) = metrics {
            tracing::info!("metrics at http://{addr}/metrics");
            l.ready(handle.clone());
        }
        // Under systemd (Type=notify): ready once the socket is served and adoption is done.
        match corral::sd_notify::notify("READY=1\nSTATUS=serving") {
            Ok(true) => tracing::info!("told systemd it is ready"),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot tell systemd it is ready: {e}"),
        }
        let serve = Box::pin(rpc::server::serve(handle, listener));
        let stop = Box::pin(shutdown_signal());
        futures_util::future::select(serve, stop).await;
        let _ = corral::sd_notify::notify("STOPPING=1");
        // Containers and their shims keep running; only the socket goes.
        let _ = std::fs::remove_file(&socket);
        tracing::info!("corrald stopped; containers keep running");
        0
    });
    std::process::exit(code);
}

/// `corrald unit print|install`: the exit code.
fn unit(action: &UnitAction) -> i32 {
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("corrald: where is this binary? {e}");
            return 1;
        }
    };
    let text = corral::sd_notify::unit(&binary);
    match action {
        UnitAction::Print => {
            print!("{text}");
            0
        }
        UnitAction::Install { dir } => {
            let path = dir.join("corrald.service");
            match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
                Ok(()) => {
                    println!(
                        "wrote {}; now: systemctl daemon-reload && systemctl enable --now corrald",
                        path.display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("corrald: cannot write {}: {e}", path.display());
                    1
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    let term = Box::pin(term.recv());
    let int = Box::pin(int.recv());
    futures_util::future::select(term, int).await;
}
