//! corrald's config file (TOML) and how its flags override it.
//!
//! Every key is optional; a missing one takes the flag's value if one was given, else its
//! default. Errors name the file, the line and the key.

use crate::config::{default_runtimes, Config, RuntimeEntry, DEFAULT_RUNTIME};
use crate::runtime::resolve_binary;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where corrald looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/corral/corrald.toml";

/// How corrald writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(de::Error::custom(format!(
                "{other:?} is not a log format: \"text\" or \"json\""
            ))),
        }
    }
}

/// A duration in the file: seconds as a number, or a string with a unit (`"30s"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive number of seconds, or a duration like \"30s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Timeout, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Timeout, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Timeout, E> {
                positive_secs(v).map(Timeout).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Timeout, E> {
                parse_duration(v).map(Timeout).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn positive_secs(secs: f64) -> std::result::Result<Duration, String> {
    if secs.is_finite() && secs > 0.0 {
        Duration::try_from_secs_f64(secs).map_err(|e| format!("{secs}: {e}"))
    } else {
        Err(format!("{secs} is not a positive number of seconds"))
    }
}

/// Parses a timeout: seconds (`30`, `2.5`) or a number with a unit: `ms`, `s`, `m` or `h`
/// (`"500ms"`, `"30s"`, `"2m"`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: seconds, or a number with ms, s, m or h"
            ))
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: seconds, or a number with ms, s, m or h")
    })?;
    positive_secs(value * scale).map_err(|_| format!("{text:?} is not a positive duration"))
}

/// The metrics address in the file: `"HOST:PORT"`, or `""` for off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddress(pub Option<SocketAddr>);

impl<'de> Deserialize<'de> for MetricsAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(MetricsAddress(None));
        }
        text.trim()
            .parse()
            .map(|a| MetricsAddress(Some(a)))
            .map_err(|_| {
                de::Error::custom(format!(
                    "{text:?} is not an address like \"127.0.0.1:9090\" (\"\" is off)"
                ))
            })
    }
}

/// An option's value in a `[runtimes.NAME]` table: a string, a boolean or an integer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Text.
    Str(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Str(s) => f.write_str(s),
        }
    }
}

/// One `[runtimes.NAME]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeTable {
    /// A path, or a name looked up in PATH.
    pub binary: Spanned<PathBuf>,
    /// Global arguments, before the verb.
    #[serde(default)]
    pub args: Vec<String>,
    /// More global arguments, each given as `--KEY=VALUE` after `args`.
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// The config file's contents: every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Container state.
    pub state_dir: Option<PathBuf>,
    /// The runtime's state root.
    pub runtime_root: Option<PathBuf>,
    /// Images, content, leases and namespaces (persistent).
    pub data_dir: Option<PathBuf>,
    /// The RPC socket.
    pub socket: Option<PathBuf>,
    /// The default runtime: a name in `runtimes`, a path, or a name in PATH.
    pub runtime: Option<Spanned<PathBuf>>,
    /// The corral-shim binary.
    pub shim: Option<Spanned<PathBuf>>,
    /// The CRIU binary.
    pub criu: Option<PathBuf>,
    /// The limit for one runtime call.
    pub runtime_timeout: Option<Timeout>,
    /// The limit for a shim to create or exec its process.
    pub shim_timeout: Option<Timeout>,
    /// Containers' logs (default `<data_dir>/logs`).
    pub container_log_dir: Option<PathBuf>,
    /// A container log's rotation size in bytes (0: never).
    pub container_log_max_size: Option<u64>,
    /// Log files kept per process, the live one included.
    pub container_log_max_files: Option<u32>,
    /// The default snapshotter for containers from images.
    pub snapshotter: Option<Spanned<String>>,
    /// The metrics endpoint's address (`""`: off).
    pub metrics_address: Option<MetricsAddress>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// A tracing EnvFilter directive.
    pub log_level: Option<String>,
    /// Containers' cgroups go under this cgroup (`<parent>/<namespace>/<id>`).
    pub cgroup_parent: Option<Spanned<String>>,
    /// The shims' cgroup (`""`: shims stay in corrald's).
    pub shim_cgroup: Option<Spanned<String>>,
    /// Named runtimes.
    #[serde(default)]
    pub runtimes: BTreeMap<String, RuntimeTable>,
}

/// A config error: what, and where (file, line, key) when it comes from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

/// A config file as read: its path, its text and what it says.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The file.
    pub file: PathBuf,
    /// Its text (for line numbers).
    pub text: String,
    /// Its contents.
    pub config: FileConfig,
}

impl Loaded {
    /// Reads `file`. A missing file is an error only when `explicit` (given with
    /// `--config`); a missing default file is an empty config.
    pub fn read(file: &Path, explicit: bool) -> Result<Loaded> {
        match std::fs::read_to_string(file) {
            Ok(text) => Loaded::parse(file, text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Loaded {
                file: file.to_path_buf(),
                ..Loaded::default()
            }),
            Err(e) => Err(ConfigError(format!(
                "config file {}: cannot read it: {e}",
                file.display()
            ))),
        }
    }

    /// Parses `text` as the contents of `file`.
    pub fn parse(file: &Path, text: String) -> Result<Loaded> {
        match toml::from_str::<FileConfig>(&text) {
            Ok(config) => Ok(Loaded {
                file: file.to_path_buf(),
                text,
                config,
            }),
            Err(e) => Err(located(file, &text, e.span(), None, e.message())),
        }
    }

    fn error_at(&self, span: Range<usize>, key: &str, message: &str) -> ConfigError {
        located(&self.file, &self.text, Some(span), Some(key), message)
    }
}

/// `FILE: line N: key `K`: MESSAGE`, the key taken from the text when not given.
fn located(
    file: &Path,
    text: &str,
    span: Option<Range<usize>>,
    key: Option<&str>,
    message: &str,
) -> ConfigError {
    let message = message.trim();
    let Some(span) = span else {
        return ConfigError(format!("config file {}: {message}", file.display()));
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = key
        .map(str::to_string)
        .or_else(|| key_at(text, start))
        .map(|k| format!(" key `{k}`:"))
        .unwrap_or_default();
    ConfigError(format!(
        "config file {}: line {line}:{key} {message}",
        file.display()
    ))
}

/// The dotted key of the line holding byte `offset`: its table header's path, then the
/// key before `=` (or the header itself on a header line).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        l.starts_with('[').then(|| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    if let Some(h) = header(line) {
        return Some(h);
    }
    let key = line.split('=').next()?.trim().trim_matches('"').to_string();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(header);
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

/// The flags, each `None` when not given.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--root`.
    pub runtime_root: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--runtime`.
    pub runtime: Option<PathBuf>,
    /// `--shim`.
    pub shim: Option<PathBuf>,
    /// `--criu`.
    pub criu: Option<PathBuf>,
    /// `--runtime-timeout`.
    pub runtime_timeout: Option<Duration>,
    /// `--shim-timeout`.
    pub shim_timeout: Option<Duration>,
    /// `--container-log-dir`.
    pub container_log_dir: Option<PathBuf>,
    /// `--container-log-max-size`.
    pub container_log_max_size: Option<u64>,
    /// `--container-log-max-files`.
    pub container_log_max_files: Option<u32>,
    /// `--snapshotter`.
    pub snapshotter: Option<String>,
    /// `--metrics-address`.
    pub metrics_address: Option<SocketAddr>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--log-level` (or its environment variables).
    pub log_level: Option<String>,
    /// `--cgroup-parent`.
    pub cgroup_parent: Option<String>,
    /// `--shim-cgroup`.
    pub shim_cgroup: Option<String>,
}

/// Everything corrald runs with: the library's config and the daemon's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The supervisor's config.
    pub config: Config,
    /// The RPC socket.
    pub socket: PathBuf,
    /// The metrics endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// How to log.
    pub log_format: LogFormat,
    /// The tracing filter.
    pub log_level: String,
}

/// The flags over the file over the defaults, with every path corrald hands to shims made
/// absolute and every runtime binary the file names checked.
pub fn resolve(file: &Loaded, flags: Flags) -> Result<Settings> {
    let f = &file.config;
    let defaults = Config::default();
    let absolute = |p: PathBuf, what: &str| -> Result<PathBuf> {
        std::path::absolute(&p).map_err(|e| ConfigError(format!("{what} {}: {e}", p.display())))
    };

    // The runtimes table: runc implicitly, then the file's entries (which may redefine it).
    let mut runtimes = default_runtimes();
    for (name, table) in &f.runtimes {
        let key = format!("runtimes.{name}.binary");
        let wanted = table.binary.get_ref();
        let binary = resolve_binary(wanted).ok_or_else(|| {
            file.error_at(
                table.binary.span(),
                &key,
                &format!("{} not found or not executable", wanted.display()),
            )
        })?;
        let mut args = table.args.clone();
        args.extend(table.options.iter().map(|(k, v)| format!("--{k}={v}")));
        runtimes.insert(
            name.clone(),
            RuntimeEntry {
                binary: absolute(binary, &key)?,
                args,
            },
        );
    }

    let runtime = match (flags.runtime, &f.runtime) {
        (Some(flag), _) => flag,
        (None, Some(spanned)) => {
            let wanted = spanned.get_ref();
            let known = (is_name(wanted)
                && runtimes.contains_key(wanted.to_string_lossy().as_ref()))
                || resolve_binary(wanted).is_some();
            if !known {
                return Err(file.error_at(
                    spanned.span(),
                    "runtime",
                    &format!(
                        "{} is not a runtime in [runtimes] ({}) nor an executable",
                        wanted.display(),
                        names(&runtimes)
                    ),
                ));
            }
            wanted.clone()
        }
        (None, None) => defaults.runtime.clone(),
    };
    let runtime = if is_name(&runtime) {
        runtime
    } else {
        absolute(runtime, "--runtime")?
    };

    // Shims run in their own directories: every path they are given must be absolute.
    let shim = match (flags.shim, &f.shim) {
        (Some(flag), _) => resolve_binary(&flag).ok_or_else(|| {
            ConfigError(format!(
                "corral-shim not found at {} (give --shim PATH)",
                flag.display()
            ))
        })?,
        (None, Some(spanned)) => resolve_binary(spanned.get_ref()).ok_or_else(|| {
            file.error_at(
                spanned.span(),
                "shim",
                &format!("corral-shim not found at {}", spanned.get_ref().display()),
            )
        })?,
        (None, None) => resolve_binary(&defaults.shim).ok_or_else(|| {
            ConfigError(format!(
                "corral-shim not found at {} (give --shim PATH)",
                defaults.shim.display()
            ))
        })?,
    };

    let cgroups = {
        use crate::cgroups::placement::{check_path, CgroupPlacement};
        let defaults = CgroupPlacement::default();
        let pick = |flag: Option<String>,
                    key: &Option<Spanned<String>>,
                    name: &str,
                    default: String|
         -> Result<String> {
            match (flag, key) {
                (Some(flag), _) => Ok(flag),
                (None, Some(spanned)) => Ok(spanned.get_ref().clone()),
                (None, None) => Ok(default),
            }
            .and_then(|value: String| {
                if name == "shim_cgroup" && value.is_empty() {
                    return Ok(value);
                }
                check_path(name, &value)
                    .map_err(|e| match key {
                        Some(spanned) if spanned.get_ref() == &value => {
                            file.error_at(spanned.span(), name, &e)
                        }
                        _ => ConfigError(e),
                    })
                    .map(|()| value)
            })
        };
        let parent = pick(
            flags.cgroup_parent,
            &f.cgroup_parent,
            "cgroup_parent",
            defaults.parent,
        )?;
        let shims = pick(
            flags.shim_cgroup,
            &f.shim_cgroup,
            "shim_cgroup",
            defaults.shims.unwrap_or_default(),
        )?;
        CgroupPlacement {
            parent,
            shims: (!shims.is_empty()).then_some(shims),
        }
    };

    let config = Config {
        state_dir: absolute(
            flags
                .state_dir
                .or_else(|| f.state_dir.clone())
                .unwrap_or(defaults.state_dir),
            "state_dir",
        )?,
        runtime_root: absolute(
            flags
                .runtime_root
                .or_else(|| f.runtime_root.clone())
                .unwrap_or(defaults.runtime_root),
            "runtime_root",
        )?,
        data_dir: absolute(
            flags
                .data_dir
                .or_else(|| f.data_dir.clone())
                .unwrap_or(defaults.data_dir),
            "data_dir",
        )?,
        runtime,
        runtimes,
        shim: absolute(shim, "shim")?,
        runtime_timeout: flags
            .runtime_timeout
            .or(f.runtime_timeout.map(|t| t.0))
            .unwrap_or(defaults.runtime_timeout),
        shim_timeout: flags
            .shim_timeout
            .or(f.shim_timeout.map(|t| t.0))
            .unwrap_or(defaults.shim_timeout),
        criu: flags
            .criu
            .or_else(|| f.criu.clone())
            .unwrap_or(defaults.criu),
        log_dir: match flags
            .container_log_dir
            .or_else(|| f.container_log_dir.clone())
        {
            Some(dir) => Some(absolute(dir, "container_log_dir")?),
            None => None,
        },
        log_max_size: flags
            .container_log_max_size
            .or(f.container_log_max_size)
            .unwrap_or(defaults.log_max_size),
        log_max_files: match flags
            .container_log_max_files
            .or(f.container_log_max_files)
            .unwrap_or(defaults.log_max_files)
        {
            0 => {
                return Err(ConfigError(
                    "container_log_max_files: at least 1 (the live file)".into(),
                ))
            }
            n => n,
        },
        cgroups,
        snapshotter: match (flags.snapshotter, &f.snapshotter) {
            (Some(flag), _) => Some(
                crate::types::snapshotter_named(&flag)
                    .map_err(|e| ConfigError(format!("--snapshotter: {e}")))?
                    .to_string(),
            ),
            (None, Some(spanned)) => Some(
                crate::types::snapshotter_named(spanned.get_ref())
                    .map_err(|e| file.error_at(spanned.span(), "snapshotter", &e))?
                    .to_string(),
            ),
            (None, None) => None,
        },
    };
    Ok(Settings {
        config,
        socket: flags
            .socket
            .or_else(|| f.socket.clone())
            .unwrap_or_else(|| crate::rpc::DEFAULT_SOCKET.into()),
        metrics: flags
            .metrics_address
            .or(f.metrics_address.and_then(|m| m.0)),
        log_format: flags.log_format.or(f.log_format).unwrap_or_default(),
        log_level: flags
            .log_level
            .or_else(|| f.log_level.clone())
            .unwrap_or_else(|| "info".into()),
    })
}

/// Whether `p` is a bare name (no directory part).
fn is_name(p: &Path) -> bool {
    p.components().count() == 1 && !p.is_absolute()
}

fn names(runtimes: &BTreeMap<String, RuntimeEntry>) -> String {
    runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A complete config file with every key at its default (on this host: the shim and CRIU
/// are where corrald would find them), commented.
pub fn default_text() -> String {
    let c = Config::default();
    let q = |p: &Path| toml_string(&p.to_string_lossy());
    format!(
        r#"# corrald's config file: corrald --config FILE (default {DEFAULT_CONFIG_FILE}).
# Every key is optional: these are the defaults. A flag given to corrald overrides its key.

# Container state, the event journal and the lock (meant for a tmpfs).
state_dir = {state_dir}
# The runtime's state root: each namespace uses <runtime_root>/<namespace>.
runtime_root = {runtime_root}
# Images, content, leases and namespaces: kept across reboots (not a tmpfs).
data_dir = {data_dir}
# The RPC socket.
socket = {socket}
# The default OCI runtime: a name in [runtimes], a path, or a name looked up in PATH.
runtime = {runtime}
# The corral-shim binary (default: beside corrald, else from PATH).
shim = {shim}
# CRIU, for checkpoint and restore (default {criu_default} if there, else from PATH).
criu = {criu}
# Limits for one runtime call and for a shim to create or exec its process: seconds
# (30, 2.5) or a number with a unit ("500ms", "30s", "2m", "1h").
runtime_timeout = "{runtime_timeout}s"
shim_timeout = "{shim_timeout}s"
# Containers' logs (a process with no stdout/stderr path given is logged by its shim):
# <container_log_dir>/<namespace>/<id>/<process>.log, in the CRI format. The directory
# defaults to <data_dir>/logs. A log is rotated when it would grow past
# container_log_max_size bytes (0: never), keeping container_log_max_files files.
# container_log_dir = "/var/lib/corral/logs"
container_log_max_size = {log_max_size}
container_log_max_files = {log_max_files}
# The snapshotter of containers from images that name none (and of restored
# checkpoints): "overlayfs" or "native" (a full copy of the image per container). Unset:
# overlayfs, or native when the kernel has no overlayfs.
# snapshotter = "overlayfs"
# Serve Prometheus metrics at http://ADDRESS/metrics, e.g. "127.0.0.1:9090"; "" is off.
metrics_address = ""
# "text", or "json" (one JSON object per line on stderr).
log_format = "text"
# A tracing filter: error, warn, info, debug, trace, or directives like "corral=debug".
# CORRAL_LOG or RUST_LOG override it, and --log-level overrides them.
log_level = "info"
# Cgroups, apart from corrald's own so that stopping corrald's unit kills no container:
# containers get cgroupsPath <cgroup_parent>/<namespace>/<id> (or, with runc's systemd
# driver, corral.slice:corral-<namespace>:<id>); every shim moves into shim_cgroup in
# every hierarchy before it runs the runtime ("": shims stay in corrald's cgroup).
cgroup_parent = {cgroup_parent}
shim_cgroup = {shim_cgroup}

# Named runtimes: a create request's runtime (corralctl run --runtime NAME) is looked up
# here first. binary: a path or a name in PATH (checked at start); args: global arguments
# placed before the request's own; options: more global arguments, each given as
# --KEY=VALUE after args (a string, boolean or integer value). runc is always here unless
# redefined. options = {{ systemd-cgroup = true }} selects runc's systemd cgroup driver
# (systemd must be PID 1). crun works too, on hybrid cgroup hosts as well:
#   [runtimes.crun]
#   binary = "crun"
[runtimes.{default_name}]
binary = {runc}
args = []
options = {{}}
"#,
        cgroup_parent = toml_string(&c.cgroups.parent),
        shim_cgroup = toml_string(c.cgroups.shims.as_deref().unwrap_or("")),
        state_dir = q(&c.state_dir),
        runtime_root = q(&c.runtime_root),
        data_dir = q(&c.data_dir),
        socket = toml_string(crate::rpc::DEFAULT_SOCKET),
        runtime = q(&c.runtime),
        shim = q(&c.shim),
        criu_default = crate::checkpoint::DEFAULT_CRIU,
        criu = q(&c.criu),
        runtime_timeout = c.runtime_timeout.as_secs_f64(),
        shim_timeout = c.shim_timeout.as_secs_f64(),
        log_max_size = c.log_max_size,
        log_max_files = c.log_max_files,
        default_name = DEFAULT_RUNTIME,
        runc = toml_string(DEFAULT_RUNTIME),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded> {
        Loaded::parse(Path::new("/etc/x.toml"), text.to_string())
    }

    #[test]
    fn the_default_text_parses_to_the_defaults() {
        let loaded = parse(&default_text()).unwrap();
        let f = &loaded.config;
        let d = Config::default();
        assert_eq!(f.state_dir.as_deref(), Some(d.state_dir.as_path()));
        assert_eq!(f.runtime_timeout, Some(Timeout(d.runtime_timeout)));
        assert_eq!(f.shim_timeout, Some(Timeout(d.shim_timeout)));
        assert_eq!(f.metrics_address, Some(MetricsAddress(None)));
        assert_eq!(f.log_format, Some(LogFormat::Text));
        assert_eq!(f.runtimes.len(), 1);
        assert_eq!(f.runtimes["runc"].binary.get_ref(), Path::new("runc"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "-1", "abc", "3 days", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let t: FileConfig = toml::from_str("runtime_timeout = 2\nshim_timeout = 0.5").unwrap();
        assert_eq!(t.runtime_timeout, Some(Timeout(Duration::from_secs(2))));
        assert_eq!(t.shim_timeout, Some(Timeout(Duration::from_millis(500))));
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let e = parse("socket = \"/s\"\n\nbogus = 1\n").unwrap_err().0;
        assert!(e.contains("/etc/x.toml: line 3: key `bogus`"), "{e}");
        let e = parse("socket = \"/s\"\nruntime_timeout = \"soon\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 2: key `runtime_timeout`"), "{e}");
        let e = parse("log_format = 3\n").unwrap_err().0;
        assert!(e.contains("line 1: key `log_format`"), "{e}");
        let e = parse("[runtimes.alt]\nbinary = \"/bin/sh\"\nargz = []\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 3: key `runtimes.alt.argz`"), "{e}");
        let e = parse("\n[runtimes.alt]\nargs = []\n").unwrap_err().0;
        assert!(e.contains("line 2: key `runtimes.alt`"), "{e}");
        assert!(e.contains("binary"), "{e}");
        let e = parse("metrics_address = \"nowhere\"\n").unwrap_err().0;
        assert!(e.contains("line 1: key `metrics_address`"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_runtimes_are_checked() {
        let loaded = parse(
            "state_dir = \"/file/state\"\nsocket = \"/file/sock\"\nlog_level = \"warn\"\n\
             runtime = \"alt\"\nshim = \"/bin/sh\"\n\
             [runtimes.alt]\nbinary = \"sh\"\nargs = [\"--debug\"]\noptions = { systemd-cgroup = true, log = \"x\" }\n",
        )
        .unwrap();
        let s = resolve(&loaded, Flags::default()).unwrap();
        assert_eq!(s.config.state_dir, Path::new("/file/state"));
        assert_eq!(s.socket, Path::new("/file/sock"));
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.config.runtime, Path::new("alt"));
        let alt = &s.config.runtimes["alt"];
        assert!(alt.binary.is_absolute(), "{alt:?}");
        assert_eq!(alt.args, ["--debug", "--log=x", "--systemd-cgroup=true"]);
        assert!(s.config.runtimes.contains_key("runc"));
        let flags = Flags {
            state_dir: Some("/flag/state".into()),
            log_level: Some("debug".into()),
            ..Flags::default()
        };
        let s = resolve(&loaded, flags).unwrap();
        assert_eq!(s.config.state_dir, Path::new("/flag/state"));
        assert_eq!(s.socket, Path::new("/file/sock"));
        assert_eq!(s.log_level, "debug");

        let bad =
            parse("shim = \"/bin/sh\"\n[runtimes.alt]\nbinary = \"/no/such/runc\"\n").unwrap();
        let e = resolve(&bad, Flags::default()).unwrap_err().0;
        assert!(
            e.contains("/etc/x.toml: line 3: key `runtimes.alt.binary`: /no/such/runc"),
            "{e}"
        );
        let bad = parse("shim = \"/bin/sh\"\nruntime = \"nope\"\n").unwrap();
        let e = resolve(&bad, Flags::default()).unwrap_err().0;
        assert!(e.contains("line 2: key `runtime`"), "{e}");
        assert!(e.contains("runc"), "{e}");
    }

    #[test]
    fn cgroup_placement_from_the_file_and_the_flags() {
        let loaded = parse("shim = \"/bin/sh\"\n").unwrap();
        let s = resolve(&loaded, Flags::default()).unwrap();
        assert_eq!(s.config.cgroups, Default::default());
        assert_eq!(s.config.cgroups.shims.as_deref(), Some("/corral/_shims"));
        let loaded =
            parse("shim = \"/bin/sh\"\ncgroup_parent = \"/mine\"\nshim_cgroup = \"/mine/_s\"\n")
                .unwrap();
        let s = resolve(&loaded, Flags::default()).unwrap();
        assert_eq!(s.config.cgroups.parent, "/mine");
        assert_eq!(s.config.cgroups.shims.as_deref(), Some("/mine/_s"));
        // "" keeps shims in corrald's cgroup.
        let flags = Flags {
            shim_cgroup: Some(String::new()),
            ..Flags::default()
        };
        assert_eq!(resolve(&loaded, flags).unwrap().config.cgroups.shims, None);
        let bad = parse("shim = \"/bin/sh\"\nshim_cgroup = \"relative\"\n").unwrap();
        let e = resolve(&bad, Flags::default()).unwrap_err().0;
        assert!(e.contains("line 2: key `shim_cgroup`"), "{e}");
        assert!(e.contains("absolute"), "{e}");
        let flags = Flags {
            cgroup_parent: Some("/".into()),
            ..Flags::default()
        };
        let e = resolve(&loaded, flags).unwrap_err().0;
        assert!(e.contains("cgroup_parent"), "{e}");
    }
}
