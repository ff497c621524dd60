//! `image` (alias `i`): pull, push, ls, inspect, rm, tag, import, export; and `images`.

use crate::cli::{absolute, label};
use crate::output::{json, labels_text, listing};
use crate::progress::{kind, short_digest, Display};
use crate::resources::human_bytes;
use crate::{each_id, usage, Ctl, Failure, Outcome};
use clap::{Args, Subcommand};
use corral::*;
use std::io::{BufRead, IsTerminal, Write};

/// `image`.
#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum ImageCmd {
    /// Pull an image from a registry into the namespace; prints `NAME DIGEST`.
    Pull(PullArgs),
    /// Push an image to a registry (under its name, or REF); prints `REF DIGEST`.
    Push(PushArgs),
    /// List the namespace's images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print an image with its index, manifest and config as one JSON object.
    Inspect(InspectArgs),
    /// Remove images, then collect garbage (each name in turn; every failure is reported).
    #[command(visible_aliases = ["remove", "delete"])]
    Rm(RmArgs),
    /// Give an image another name; prints the new name.
    Tag(TagArgs),
    /// Import the images of an OCI image layout tar or a `docker save` tar (read by the
    /// daemon, on its host); prints `NAME DIGEST` for each.
    Import(ImportArgs),
    /// Export images as one OCI image layout tar (written by the daemon, on its host);
    /// prints `FILE (SIZE)`.
    Export(ExportArgs),
}

/// How to reach a registry and who to be there.
#[derive(Args)]
pub(crate) struct RemoteArgs {
    /// Talk plain HTTP to the registry instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// Log in as USER (basic auth or a token exchange); without `:PASSWORD` the password
    /// is read from stdin when it is not a terminal, else asked for without echo. Without
    /// --user the daemon uses its docker config.json.
    #[arg(short, long, value_name = "USER[:PASSWORD]")]
    user: Option<String>,
    /// Read the password from stdin (one line).
    #[arg(long, requires = "user")]
    password_stdin: bool,
}

/// `image pull`.
#[derive(Args)]
struct PullArgs {
    /// `[registry/]repository[:tag|@digest]` (docker.io and `latest` by default).
    reference: String,
    /// The platform to pick from an index (`os/arch[/variant]`; the host's by default).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    platform: Option<Platform>,
    /// Pull every platform of an index.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// A label for the image record (repeatable).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// One JSON progress object per line, then the image.
    #[arg(long)]
    json: bool,
}

/// `image push`.
#[derive(Args)]
struct PushArgs {
    /// The image in the namespace.
    name: String,
    /// Push it under this reference instead of its name.
    reference: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// One JSON progress object per line, then the descriptor pushed.
    #[arg(long)]
    json: bool,
}

/// `image ls` and `images`.
#[derive(Args)]
pub struct LsArgs {
    /// Print the names only.
    #[arg(short, long)]
    quiet: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// `image inspect`.
#[derive(Args)]
struct InspectArgs {
    /// The image.
    name: String,
    /// The platform whose manifest to show, from an index (the host's by default).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    platform: Option<Platform>,
}

/// `image rm`.
#[derive(Args)]
struct RmArgs {
    /// The images.
    #[arg(required = true)]
    names: Vec<String>,
    /// Leave their blobs for a later `prune`.
    #[arg(long)]
    no_gc: bool,
}

/// `image tag`.
#[derive(Args)]
struct TagArgs {
    /// The image.
    source: String,
    /// Its new name.
    target: String,
    /// Replace what TARGET names.
    #[arg(short, long)]
    force: bool,
}

/// `image import`.
#[derive(Args)]
struct ImportArgs {
    /// The tar (made absolute here; read by the daemon).
    file: String,
    /// For entries named by a tag only: the repository to put before it.
    #[arg(long, value_name = "NAME")]
    base_name: Option<String>,
    /// A label for the image records (repeatable).
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Print the imported images as JSON.
    #[arg(long)]
    json: bool,
}

/// `image export`.
#[derive(Args)]
struct ExportArgs {
    /// The tar to write (made absolute here; written by the daemon).
    file: String,
    /// The images.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `image ...`.
pub fn image(ctl: &Ctl, a: ImageArgs) -> Outcome {
    match a.cmd {
        ImageCmd::Pull(a) => pull(ctl, a),
        ImageCmd::Push(a) => push(ctl, a),
        ImageCmd::Ls(a) => ls(ctl, a),
        ImageCmd::Inspect(a) => inspect(ctl, a),
        ImageCmd::Rm(a) => rm(ctl, a),
        ImageCmd::Tag(a) => tag(ctl, a),
        ImageCmd::Import(a) => import(ctl, a),
        ImageCmd::Export(a) => export(ctl, a),
    }
}

/// Reads one line from stdin, without its line end (an error at the end of input).
fn read_line() -> Result<String, Error> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("read the password from stdin", e))?;
    if n == 0 {
        return Err(Error::InvalidArgument(
            "no password on stdin: give --user USER:PASSWORD, or the password on stdin".into(),
        ));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks for the password on the terminal, without echo.
fn prompt_password(user: &str) -> Result<String, Error> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("Password for {user}: ");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved =
        tcgetattr(&stdin).map_err(|e| Error::io("read the terminal's settings", e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| Error::io("turn the terminal's echo off", e.into()))?;
    let line = read_line();
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    line
}

impl RemoteArgs {
    pub(crate) fn options(&self, command: &str) -> Result<RemoteOptions, Failure> {
        let credentials = match &self.user {
            None => Credentials::FromConfig,
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some(_) if self.password_stdin => {
                        return Err(usage(
                            command,
                            "--user USER:PASSWORD and --password-stdin exclude each other",
                        ))
                    }
                    Some((user, password)) => (user.to_string(), password.to_string()),
                    None if self.password_stdin || !std::io::stdin().is_terminal() => {
                        (u.clone(), read_line()?)
                    }
                    None => (u.clone(), prompt_password(u)?),
                };
                if user.is_empty() {
                    return Err(usage(command, "--user needs a user name"));
                }
                Credentials::Basic { user, password }
            }
        };
        Ok(RemoteOptions {
            plain_http: self.plain_http,
            credentials,
        })
    }
}

/// Prints one value as one line of JSON.
fn json_line<T: serde::Serialize>(value: &T) -> Outcome {
    let text =
        serde_json::to_string(value).map_err(|e| Error::Internal(format!("encode JSON: {e}")))?;
    println!("{text}");
    Ok(0)
}

fn pull(ctl: &Ctl, a: PullArgs) -> Outcome {
    let req = PullRequest {
        namespace: ctl.namespace.clone(),
        reference: a.reference,
        platform: a.platform,
        all_platforms: a.all_platforms,
        labels: a.labels.into_iter().collect(),
        remote: a.remote.options("image")?,
    };
    let mut client = ctl.client()?;
    let mut display = Display::new(a.json);
    let result = client.pull(req, |p| display.step(p));
    display.finish(result.is_ok());
    drop(display);
    let image = result?;
    if a.json {
        return json_line(&image);
    }
    println!("{} {}", image.name, image.target.digest);
    Ok(0)
}

fn push(ctl: &Ctl, a: PushArgs) -> Outcome {
    let shown = a.reference.clone().unwrap_or_else(|| a.name.clone());
    let req = PushRequest {
        namespace: ctl.namespace.clone(),
        image: a.name,
        reference: a.reference,
        remote: a.remote.options("image")?,
    };
    let mut client = ctl.client()?;
    let mut display = Display::new(a.json);
    let result = client.push(req, |p| display.step(p));
    display.finish(result.is_ok());
    drop(display);
    let pushed = result?;
    if a.json {
        return json_line(&pushed);
    }
    println!("{shown} {}", pushed.digest);
    Ok(0)
}

/// `image ls` / `images`: columns `NAME TYPE DIGEST SIZE CREATED LABELS`.
pub fn ls(ctl: &Ctl, a: LsArgs) -> Outcome {
    let images = ctl.client()?.images(&ctl.namespace)?;
    listing(
        &images,
        a.json,
        a.quiet,
        |i| i.name.clone(),
        &["NAME", "TYPE", "DIGEST", "SIZE", "CREATED", "LABELS"],
        |i| {
            vec![
                i.name.clone(),
                kind(&i.target.media_type).to_string(),
                short_digest(&i.target.digest),
                human_bytes(i.size),
                format_time(i.created_ns),
                labels_text(&i.labels),
            ]
        },
    )
}

/// A document's JSON text as JSON (as a string if it does not parse).
fn document(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// The platforms an index's JSON lists.
fn index_platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| serde_json::from_value::<Platform>(m.get("platform")?.clone()).ok())
        .map(|p| p.to_string())
        .collect()
}

fn inspect(ctl: &Ctl, a: InspectArgs) -> Outcome {
    let d = ctl
        .client()?
        .inspect_image(&ctl.namespace, &a.name, a.platform.clone())?;
    let index = d.index.as_deref().map(document);
    // The daemon falls back to any manifest it has when the index has none for the
    // platform: one asked for by name must be the one shown.
    if let (Some(want), Some(index)) = (&a.platform, &index) {
        if !d.platform.as_ref().is_some_and(|got| want.matches(got)) {
            return Err(Error::NotFound(format!(
                "no {want} manifest in {} (it has: {})",
                d.info.name,
                index_platforms(index).join(", ")
            ))
            .into());
        }
    }
    json(&serde_json::json!({
        "info": d.info,
        "index": index,
        "manifest": document(&d.manifest),
        "config": document(&d.config),
        "platform": d.platform,
    }))
}

fn rm(ctl: &Ctl, a: RmArgs) -> Outcome {
    let mut client = ctl.client()?;
    let mut removed = 0;
    let code = each_id(&a.names, |name| {
        client.remove_images(&ctl.namespace, vec![name.to_string()], true)?;
        println!("{name}");
        removed += 1;
        Ok(0)
    })?;
    if removed > 0 && !a.no_gc {
        client.prune()?;
    }
    Ok(code)
}

fn tag(ctl: &Ctl, a: TagArgs) -> Outcome {
    let image = ctl
        .client()?
        .tag_image(&ctl.namespace, &a.source, &a.target, a.force)?;
    println!("{}", image.name);
    Ok(0)
}

fn import(ctl: &Ctl, a: ImportArgs) -> Outcome {
    let req = ImportRequest {
        namespace: ctl.namespace.clone(),
        file: absolute(&a.file)?,
        base_name: a.base_name,
        labels: a.labels.into_iter().collect(),
    };
    let images = ctl.client()?.import_images(req)?;
    if a.json {
        return json(&images);
    }
    for i in &images {
        println!("{} {}", i.name, i.target.digest);
    }
    Ok(0)
}

fn export(ctl: &Ctl, a: ExportArgs) -> Outcome {
    let file = absolute(&a.file)?;
    let req = ExportRequest {
        namespace: ctl.namespace.clone(),
        names: a.names,
        file: file.clone(),
    };
    let size = ctl.client()?.export_images(req)?;
    println!("{} ({})", file.display(), human_bytes(size));
    Ok(0)
}
