//! corralctl: the admin CLI. Talks to corrald over its socket (`--socket`, or
//! `CORRAL_SOCKET`); every command takes `--namespace NS` (or `CORRAL_NAMESPACE`).
//!
//! Exit codes follow docker's convention: `run`, `exec` and `wait` pass the process's own
//! code through; 125 is corral's own failure, 126 a process that cannot be invoked, 127 one
//! that is not found, and 2 a usage error.

mod attach;
mod checkpoints;
mod cli;
mod containers;
mod content;
mod events;
mod images;
mod logs;
mod output;
mod progress;
mod records;
mod resources;
mod show;
mod tools;

use clap::Parser;
use cli::{Cli, Cmd};
use corral::rpc::Client;
use corral::Error;
use std::path::PathBuf;

/// Exit code of corral's own failures (daemon unreachable, an RPC error, a bad state).
pub const EXIT_CORRAL: i32 = 125;
/// Exit code when the process exists but cannot be invoked.
pub const EXIT_CANNOT_INVOKE: i32 = 126;
/// Exit code when the process's executable is not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a usage error.
pub const EXIT_USAGE: i32 = 2;

/// Why a command failed.
pub enum Failure {
    /// The command line makes no sense (exit 2).
    Usage(clap::Error),
    /// corral, the daemon or the runtime failed (exit 125, 126 or 127).
    Corral(Error),
    /// Already reported on stderr; exit with this code.
    Code(i32),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Corral(e)
    }
}

/// A command's result: its exit code.
pub type Outcome = Result<i32, Failure>;

/// A usage error found after parsing `command` (printed like clap's own).
pub fn usage(command: &str, msg: impl std::fmt::Display) -> Failure {
    use clap::CommandFactory;
    let mut root = Cli::command();
    root.build();
    let kind = clap::error::ErrorKind::MissingRequiredArgument;
    Failure::Usage(match root.find_subcommand_mut(command) {
        Some(sub) => sub.error(kind, msg),
        None => root.error(kind, msg),
    })
}

/// What every command needs: where the daemon is and which namespace to use.
pub struct Ctl {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The namespace of every request.
    pub namespace: String,
}

impl Ctl {
    /// A connection to the daemon.
    pub fn client(&self) -> Result<Client, Error> {
        // Every command makes its request at once: the handshake's answer comes with it.
        Client::connect_pipelined(&self.socket)
    }
}

/// The exit code for a corral error: 126/127 when the runtime could not invoke the
/// process (docker's convention), else 125.
pub fn exit_code_of(e: &Error) -> i32 {
    if let Error::RuntimeFailed { stderr, .. } = e {
        // runc: `exec: "X": executable file not found in $PATH`,
        // `exec: "X": stat X: no such file or directory`, `exec: "X": permission denied`.
        if let Some((_, about)) = stderr.split_once("exec: \"") {
            if about.contains("executable file not found")
                || about.contains("no such file or directory")
            {
                return EXIT_NOT_FOUND;
            }
            if about.contains("permission denied") || about.contains("exec format error") {
                return EXIT_CANNOT_INVOKE;
            }
        }
    }
    EXIT_CORRAL
}

/// Runs `f` for each id in turn; every failure is printed naming its id, and the exit code
/// is the first failure's (0 if none).
pub fn each_id(ids: &[String], mut f: impl FnMut(&str) -> Result<i32, Error>) -> Outcome {
    let mut first = 0;
    for id in ids {
        let code = match f(id) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("corralctl: {id}: {e}");
                exit_code_of(&e)
            }
        };
        if first == 0 {
            first = code;
        }
    }
    Ok(first)
}

fn main() {
    // Die quietly on a closed pipe (`corralctl list | head`), like other command-line tools.
    // SAFETY: restoring the default disposition of SIGPIPE runs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = match Cli::try_parse() {
        Err(e) => report_clap(e),
        Ok(cli) => match dispatch(cli) {
            Ok(code) => code,
            Err(Failure::Usage(e)) => report_clap(e),
            Err(Failure::Corral(e)) => {
                eprintln!("corralctl: {e}");
                exit_code_of(&e)
            }
            Err(Failure::Code(code)) => code,
        },
    };
    // Whatever path got here, a raw terminal is put back before we go.
    attach::restore_terminal();
    std::process::exit(code);
}

/// Prints clap's error (or the help or version it asked for) and returns the exit code.
fn report_clap(e: clap::Error) -> i32 {
    if !e.use_stderr() {
        let _ = e.print();
        return 0;
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    eprint!("corralctl: {text}");
    EXIT_USAGE
}

fn dispatch(cli: Cli) -> Outcome {
    let ctl = Ctl {
        socket: cli.socket,
        namespace: cli.namespace,
    };
    match cli.command {
        Cmd::Create(a) => containers::create(&ctl, a),
        Cmd::Start(a) => containers::start(&ctl, a),
        Cmd::Run(a) => containers::run(&ctl, a),
        Cmd::Exec(a) => containers::exec(&ctl, a),
        Cmd::Kill(a) => containers::kill(&ctl, a),
        Cmd::Stop(a) => containers::stop(&ctl, a),
        Cmd::Restart(a) => containers::restart(&ctl, a),
        Cmd::Wait(a) => containers::wait(&ctl, a),
        Cmd::Delete(a) => containers::delete(&ctl, a),
        Cmd::Pause(a) => containers::pause_resume(&ctl, a, true),
        Cmd::Resume(a) => containers::pause_resume(&ctl, a, false),
        Cmd::CloseStdin(a) => containers::close_stdin(&ctl, a),
        Cmd::Attach(a) => containers::attach_cmd(&ctl, a),
        Cmd::Logs(a) => logs::logs(&ctl, a),
        Cmd::ExecRm(a) => containers::exec_rm(&ctl, a),
        Cmd::Resize(a) => containers::resize(&ctl, a),
        Cmd::List(a) => show::list(&ctl, a),
        Cmd::State(a) => show::state(&ctl, a),
        Cmd::Pids(a) => show::pids(&ctl, a),
        Cmd::Inspect(a) => show::inspect(&ctl, a),
        Cmd::Top(a) => show::top(&ctl, a),
        Cmd::Info(a) => show::info(&ctl, a),
        Cmd::Version => show::version(&ctl),
        Cmd::Update(a) => resources::update(&ctl, a),
        Cmd::Stats(a) => resources::stats(&ctl, a),
        Cmd::Checkpoint(a) => checkpoints::checkpoint(&ctl, a),
        Cmd::Checkpoints(a) => checkpoints::checkpoints(&ctl, a),
        Cmd::Restore(a) => checkpoints::restore(&ctl, a),
        Cmd::Events(a) => events::events(&ctl, a),
        Cmd::Image(a) => images::image(&ctl, a),
        Cmd::Images(a) => images::ls(&ctl, a),
        Cmd::Content(a) => content::content(&ctl, a),
        Cmd::Lease(a) => content::lease(&ctl, a),
        Cmd::Namespace(a) => content::namespaces(&ctl, a),
        Cmd::Prune(a) => content::prune(&ctl, a),
        Cmd::Container(a) => records::container(&ctl, a),
        Cmd::Task(a) => records::task(&ctl, a),
        Cmd::Bundle(a) => tools::bundle(a),
        Cmd::Completion(a) => tools::completion(a),
        Cmd::Man(a) => tools::man(a),
    }
}
