//! corrald: the supervisor daemon. Serves the library's Handle over a unix socket.

use corral::rpc::{self, DEFAULT_SOCKET};
use corral::Config;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: corrald [--socket PATH] [--state-dir DIR] [--root DIR] [--runtime PATH]
               [--shim PATH] [--criu PATH] [--runtime-timeout SECS] [--log-level LEVEL]
               [--metrics-address ADDR]

  --socket PATH          RPC socket (default /run/corral/corrald.sock)
  --state-dir DIR        container state (default /run/corral)
  --root DIR             the runtime's state root (default /run/corral-runc)
  --runtime PATH         default OCI runtime (default: runc from PATH)
  --shim PATH            corral-shim binary (default: beside corrald)
  --runtime-timeout SECS limit for one runtime call (default 30)
  --log-level LEVEL      error, warn, info, debug or trace (default info; or RUST_LOG)
  --criu PATH            CRIU for checkpoint/restore (default /usr/local/sbin/criu, else PATH)
  --metrics-address ADDR serve Prometheus metrics at http://ADDR/metrics (off by default)";

struct Options {
    config: Config,
    socket: PathBuf,
    level: String,
    metrics: Option<std::net::SocketAddr>,
}

fn parse() -> Result<Options, String> {
    let mut metrics = None;
    let mut config = Config::default();
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--version" {
            println!("corrald {}", corral::VERSION);
            std::process::exit(0);
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--socket" => socket = value.into(),
            "--state-dir" => config.state_dir = value.into(),
            "--root" => config.runtime_root = value.into(),
            "--runtime" => config.runtime = value.into(),
            "--shim" => config.shim = value.into(),
            "--criu" => config.criu = value.into(),
            "--runtime-timeout" => {
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or_else(|| {
                        format!("--runtime-timeout {value:?} is not a positive number")
                    })?;
                config.runtime_timeout = Duration::from_secs_f64(secs);
            }
            "--log-level" => level = value,
            "--metrics-address" => {
                metrics = Some(value.parse().map_err(|_| {
                    format!("--metrics-address {value:?} is not an address like 127.0.0.1:9090")
                })?)
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    // Shims run in their own directories: every path they are given must be absolute.
    config.shim = corral::runtime::resolve_binary(&config.shim)
        .and_then(|p| std::path::absolute(p).ok())
        .ok_or_else(|| {
            format!(
                "corral-shim not found at {} (give --shim PATH)",
                config.shim.display()
            )
        })?;
    if config.runtime.components().count() > 1 {
        config.runtime = std::path::absolute(&config.runtime)
            .map_err(|e| format!("--runtime {}: {e}", config.runtime.display()))?;
    }
    for dir in [&mut config.state_dir, &mut config.runtime_root] {
        *dir = std::path::absolute(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(Options {
        config,
        socket,
        level,
        metrics,
    })
}

fn main() {
    let Options {
        config,
        socket,
        level,
        metrics,
    } = match parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("corrald: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| {
        eprintln!("corrald: bad log level {level:?}, using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

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
            runtime = %config.runtime.display(),
            "corrald {} ready",
            corral::VERSION
        );
        if let Some((addr, l)) = metrics {
            tracing::info!("metrics at http://{addr}/metrics");
            l.ready(handle.clone());
        }
        let serve = Box::pin(rpc::server::serve(handle, listener));
        let stop = Box::pin(shutdown_signal());
        futures_util::future::select(serve, stop).await;
        // Containers and their shims keep running; only the socket goes.
        let _ = std::fs::remove_file(&socket);
        tracing::info!("corrald stopped; containers keep running");
        0
    });
    std::process::exit(code);
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
