//! Local tools: bundle, completion, man.

use crate::cli::Cli;
use crate::Outcome;
use clap::{Args, CommandFactory, ValueEnum};
use corral::Error;
use std::path::PathBuf;

/// Kinds of bundle `bundle` makes.
#[derive(Clone, Copy, ValueEnum)]
pub enum BundleKind {
    /// From the host's busybox-static (default CMD `sh`, no terminal, writable rootfs).
    Busybox,
}

/// `bundle`.
#[derive(Args)]
pub struct BundleArgs {
    /// What to make it from.
    kind: BundleKind,
    /// The bundle directory to write.
    dir: PathBuf,
    /// The process, after `--` (default `sh`).
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// Shells `completion` writes for.
#[derive(Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `completion`.
#[derive(Args)]
pub struct CompletionArgs {
    /// The shell.
    shell: Shell,
}

/// `man`.
#[derive(Args)]
pub struct ManArgs {
    /// Where to write corralctl.1 and corralctl-COMMAND.1 (created if missing).
    dir: PathBuf,
}

/// `bundle`.
pub fn bundle(a: BundleArgs) -> Outcome {
    match a.kind {
        BundleKind::Busybox => corral::bundle::make_busybox(&a.dir, &a.cmd)?,
    }
    println!("bundle ready in {}", a.dir.display());
    Ok(0)
}

/// `completion`: the script on stdout.
pub fn completion(a: CompletionArgs) -> Outcome {
    use clap_complete::{generate, shells};
    let mut cmd = Cli::command();
    // Every command's arguments: they are added on first use (`defer`), not at start.
    cmd.build();
    let mut out = std::io::stdout();
    match a.shell {
        Shell::Bash => generate(shells::Bash, &mut cmd, "corralctl", &mut out),
        Shell::Zsh => generate(shells::Zsh, &mut cmd, "corralctl", &mut out),
        Shell::Fish => generate(shells::Fish, &mut cmd, "corralctl", &mut out),
    }
    Ok(0)
}

/// `man`: one page for corralctl and one per command.
pub fn man(a: ManArgs) -> Outcome {
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io(a.dir.display(), e))?;
    let mut cmd = Cli::command();
    cmd.build(); // as for `completion`
    clap_mangen::generate_to(cmd, &a.dir).map_err(|e| Error::io(a.dir.display(), e))?;
    println!("man pages written to {}", a.dir.display());
    Ok(0)
}
