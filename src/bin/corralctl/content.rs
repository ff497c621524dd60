//! The stores under the images: `content` (blobs and ingests), `lease`, `namespace`
//! (alias `ns`) and `prune`.

use crate::cli::{label, namespace};
use crate::events::parse_duration;
use crate::output::{json, labels_text, listing, table};
use crate::resources::human_bytes;
use crate::{each_id, Ctl, Outcome};
use clap::{Args, Subcommand};
use corral::*;
use std::time::Duration;

// ---- content ----

/// `content`.
#[derive(Args)]
pub struct ContentArgs {
    #[command(subcommand)]
    cmd: ContentCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum ContentCmd {
    /// List the blobs of the content store: columns `DIGEST SIZE CREATED`.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Show one blob: `DIGEST SIZE CREATED`, or JSON.
    Info {
        /// The blob's digest (`sha256:<hex>`).
        digest: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the downloads not yet committed: columns `DIGEST OFFSET TOTAL UPDATED`.
    Ingests(JsonArg),
    /// Remove blobs that no image or live lease holds (each in turn).
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// The blobs' digests (`sha256:<hex>`).
        #[arg(required = true)]
        digests: Vec<String>,
    },
}

/// `--json`, `-q`.
#[derive(Args)]
pub struct ListArgs {
    /// Print the digests (ids, names) only.
    #[arg(short, long)]
    quiet: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// `--json`.
#[derive(Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `content ...`.
pub fn content(ctl: &Ctl, a: ContentArgs) -> Outcome {
    let mut client = ctl.client()?;
    match a.cmd {
        ContentCmd::Ls(a) => {
            let blobs = client.content()?;
            listing(
                &blobs,
                a.json,
                a.quiet,
                |b| b.digest.clone(),
                &["DIGEST", "SIZE", "CREATED"],
                blob_row,
            )
        }
        ContentCmd::Ingests(a) => {
            let ingests = client.ingests()?;
            if a.json {
                return json(&ingests);
            }
            let rows: Vec<Vec<String>> = ingests
                .iter()
                .map(|i| {
                    vec![
                        i.expected.clone(),
                        human_bytes(i.offset),
                        human_bytes(i.total),
                        format_time(i.updated_ns),
                    ]
                })
                .collect();
            table(&["DIGEST", "OFFSET", "TOTAL", "UPDATED"], &rows);
            Ok(0)
        }
        ContentCmd::Info {
            digest,
            json: as_json,
        } => {
            let b = client.content_info(&digest)?;
            listing(
                &[b],
                as_json,
                false,
                |b| b.digest.clone(),
                &["DIGEST", "SIZE", "CREATED"],
                blob_row,
            )
        }
        ContentCmd::Rm { digests } => each_id(&digests, |digest| {
            client.remove_content(vec![digest.to_string()])?;
            println!("{digest}");
            Ok(0)
        }),
    }
}

fn blob_row(b: &ContentInfo) -> Vec<String> {
    vec![
        b.digest.clone(),
        human_bytes(b.size),
        format_time(b.created_ns),
    ]
}

// ---- leases ----

/// `lease`.
#[derive(Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    cmd: LeaseCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum LeaseCmd {
    /// Create a lease; prints its id.
    Create {
        /// Its id (default: made up by the daemon).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// How long it holds what it holds (`90s`, `10m`, `24h`, `7d`; `0`: forever).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = expiry)]
        expires: Expiry,
        /// A label (repeatable).
        #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
        labels: Vec<(String, String)>,
    },
    /// List the namespace's leases: columns `ID CREATED EXPIRES RESOURCES LABELS`.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Remove leases (each in turn), then collect garbage.
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// The leases.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Leave what they held for a later `prune`.
        #[arg(long)]
        no_gc: bool,
    },
}

/// `--expires`: a duration, or never.
#[derive(Clone, Copy, Debug)]
pub struct Expiry(Option<Duration>);

/// `0` (never), `90s`, `10m`, `24h`, `7d`.
fn expiry(s: &str) -> Result<Expiry, String> {
    if s == "0" {
        return Ok(Expiry(None));
    }
    let d = match s.strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Duration::from_secs(days.saturating_mul(86_400)),
        _ => parse_duration(s)
            .map_err(|_| format!("{s:?} is not a duration (90s, 10m, 24h, 7d, or 0 for never)"))?,
    };
    if d.is_zero() {
        return Ok(Expiry(None));
    }
    // The daemon counts whole seconds: round a part second up.
    Ok(Expiry(Some(Duration::from_secs(d.as_secs().max(1)))))
}

/// `lease ...`.
pub fn lease(ctl: &Ctl, a: LeaseArgs) -> Outcome {
    let mut client = ctl.client()?;
    match a.cmd {
        LeaseCmd::Create {
            id,
            expires,
            labels,
        } => {
            let lease = client.create_lease(
                &ctl.namespace,
                id.as_deref().unwrap_or(""),
                labels.into_iter().collect(),
                expires.0.map(|d| d.as_secs()),
            )?;
            println!("{}", lease.id);
            Ok(0)
        }
        LeaseCmd::Ls(a) => {
            let leases = client.leases(&ctl.namespace)?;
            listing(
                &leases,
                a.json,
                a.quiet,
                |l| l.id.clone(),
                &["ID", "CREATED", "EXPIRES", "RESOURCES", "LABELS"],
                |l| {
                    vec![
                        l.id.clone(),
                        format_time(l.created_ns),
                        l.expires_ns
                            .map(format_time)
                            .unwrap_or_else(|| "never".into()),
                        (l.content.len() + l.ingests.len()).to_string(),
                        labels_text(&l.labels),
                    ]
                },
            )
        }
        LeaseCmd::Rm { ids, no_gc } => {
            let mut removed = 0;
            let code = each_id(&ids, |id| {
                client.remove_lease(&ctl.namespace, id, true)?;
                println!("{id}");
                removed += 1;
                Ok(0)
            })?;
            if removed > 0 && !no_gc {
                client.prune()?;
            }
            Ok(code)
        }
    }
}

// ---- namespaces ----

/// `namespace`.
#[derive(Args)]
pub struct NamespaceArgs {
    #[command(subcommand)]
    cmd: NamespaceCmd,
}

#[derive(Subcommand)]
#[command(defer = true)]
enum NamespaceCmd {
    /// Record a namespace; prints its name.
    Create {
        /// Its name.
        #[arg(value_parser = namespace)]
        name: String,
        /// A label (repeatable).
        #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
        labels: Vec<(String, String)>,
    },
    /// List the namespaces (recorded, or holding containers): columns `NAME LABELS`.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Set labels of a namespace (`K=` removes K); prints its labels.
    Label {
        /// The namespace.
        #[arg(value_parser = namespace)]
        name: String,
        /// The labels.
        #[arg(required = true, value_name = "K=V", value_parser = label)]
        labels: Vec<(String, String)>,
    },
    /// Remove namespaces that hold no container, image or lease (each in turn).
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// The namespaces.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `namespace ...`.
pub fn namespaces(ctl: &Ctl, a: NamespaceArgs) -> Outcome {
    let mut client = ctl.client()?;
    match a.cmd {
        NamespaceCmd::Create { name, labels } => {
            let ns = client.create_namespace(&name, labels.into_iter().collect())?;
            println!("{}", ns.name);
            Ok(0)
        }
        NamespaceCmd::Ls(a) => {
            let list = client.namespaces()?;
            listing(
                &list,
                a.json,
                a.quiet,
                |n| n.name.clone(),
                &["NAME", "LABELS"],
                |n| vec![n.name.clone(), labels_text(&n.labels)],
            )
        }
        NamespaceCmd::Label { name, labels } => {
            let ns = client.label_namespace(&name, labels.into_iter().collect())?;
            println!(
                "{}",
                format!("{} {}", ns.name, labels_text(&ns.labels)).trim_end()
            );
            Ok(0)
        }
        NamespaceCmd::Rm { names } => each_id(&names, |name| {
            client.remove_namespace(name)?;
            println!("{name}");
            Ok(0)
        }),
    }
}

// ---- prune ----

/// `prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `prune`: collect garbage now; prints what went.
pub fn prune(ctl: &Ctl, a: PruneArgs) -> Outcome {
    let r = ctl.client()?.prune()?;
    if a.json {
        return json(&r);
    }
    println!(
        "removed {} blobs ({}), {} ingests, {} expired leases, {} snapshots",
        r.blobs,
        human_bytes(r.bytes),
        r.ingests,
        r.leases,
        r.snapshots
    );
    Ok(0)
}
