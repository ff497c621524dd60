//! The shim's command line, written by the daemon and parsed without a library.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the shim asks the runtime to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `runtime create`: the init process, held until `start`.
    Create,
    /// `runtime run --detach`: create and start the init process in one call.
    Run,
    /// `runtime exec --detach`: another process in a running container.
    Exec,
    /// `runtime restore --detach`: the init process from a checkpoint.
    Restore,
}

impl Mode {
    /// The runtime verb.
    pub fn verb(&self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Run => "run",
            Mode::Exec => "exec",
            Mode::Restore => "restore",
        }
    }
}

/// Everything the shim is told on its command line.
#[derive(Clone, Debug)]
pub struct ShimArgs {
    /// create, run or exec.
    pub mode: Mode,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// The runtime's state root (`--root`).
    pub root: PathBuf,
    /// The runtime's container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Extra global runtime arguments.
    pub runtime_args: Vec<OsString>,
    /// Extra arguments after the verb (restore's --image-path and options).
    pub verb_args: Vec<OsString>,
    /// stdin path, /dev/null if none.
    pub stdin: Option<PathBuf>,
    /// stdout path, /dev/null if none.
    pub stdout: Option<PathBuf>,
    /// stderr path, /dev/null if none.
    pub stderr: Option<PathBuf>,
    /// The CRI log file (`--log`): the shim owns stdout and stderr and writes them here;
    /// `stdout` and `stderr` are then ignored.
    pub log: Option<PathBuf>,
    /// Rotate the log before it would grow past this many bytes; 0: never.
    pub log_max_size: u64,
    /// How many log files to keep, the live one included (at least 1).
    pub log_max_files: u32,
    /// Give the process a terminal (the runtime's `--console-socket`).
    pub terminal: bool,
    /// The terminal's first size, (width, height) in characters.
    pub console_size: Option<(u16, u16)>,
    /// The cgroup the shim moves itself into (in every hierarchy) before it runs the
    /// runtime: out of corrald's, so that stopping corrald's unit leaves it alone.
    pub cgroup: Option<String>,
    /// The shim's directory ([`crate::layout::ShimDir`]), which it makes its working
    /// directory first thing; without it, the directory it was started in.
    pub dir: Option<PathBuf>,
}

impl ShimArgs {
    /// The arguments to pass to `corral-shim` for these settings.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--mode".into(),
            self.mode.verb().into(),
            "--runtime".into(),
            self.runtime.clone().into(),
            "--root".into(),
            self.root.clone().into(),
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
        ];
        for a in &self.runtime_args {
            out.push("--runtime-arg".into());
            out.push(a.clone());
        }
        for a in &self.verb_args {
            out.push("--verb-arg".into());
            out.push(a.clone());
        }
        for (flag, path) in [
            ("--stdin", &self.stdin),
            ("--stdout", &self.stdout),
            ("--stderr", &self.stderr),
        ] {
            if let Some(p) = path {
                out.push(flag.into());
                out.push(p.clone().into());
            }
        }
        if let Some(log) = &self.log {
            out.push("--log".into());
            out.push(log.clone().into());
            out.push("--log-max-size".into());
            out.push(self.log_max_size.to_string().into());
            out.push("--log-max-files".into());
            out.push(self.log_max_files.to_string().into());
        }
        if self.terminal {
            out.push("--terminal".into());
            out.push("1".into());
        }
        if let Some((w, h)) = self.console_size {
            out.push("--console-size".into());
            out.push(format!("{w}x{h}").into());
        }
        if let Some(cgroup) = &self.cgroup {
            out.push("--cgroup".into());
            out.push(cgroup.into());
        }
        if let Some(dir) = &self.dir {
            out.push("--dir".into());
            out.push(dir.clone().into());
        }
        out
    }

    /// Parses the shim's arguments (without argv[0]).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut mode = None;
        let (mut runtime, mut root, mut id, mut bundle) = (None, None, None, None);
        let mut parsed = ShimArgs {
            mode: Mode::Create,
            runtime: PathBuf::new(),
            root: PathBuf::new(),
            id: String::new(),
            bundle: PathBuf::new(),
            runtime_args: Vec::new(),
            verb_args: Vec::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            log: None,
            log_max_size: 0,
            log_max_files: 1,
            terminal: false,
            console_size: None,
            cgroup: None,
            dir: None,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag.to_string_lossy().into_owned();
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--mode" => {
                    mode = Some(match value.to_str() {
                        Some("create") => Mode::Create,
                        Some("run") => Mode::Run,
                        Some("exec") => Mode::Exec,
                        Some("restore") => Mode::Restore,
                        _ => return Err(format!("unknown mode {value:?}")),
                    })
                }
                "--runtime" => runtime = Some(PathBuf::from(value)),
                "--root" => root = Some(PathBuf::from(value)),
                "--id" => id = Some(value.to_string_lossy().into_owned()),
                "--bundle" => bundle = Some(PathBuf::from(value)),
                "--runtime-arg" => parsed.runtime_args.push(value),
                "--verb-arg" => parsed.verb_args.push(value),
                "--stdin" => parsed.stdin = Some(PathBuf::from(value)),
                "--stdout" => parsed.stdout = Some(PathBuf::from(value)),
                "--stderr" => parsed.stderr = Some(PathBuf::from(value)),
                "--log" => parsed.log = Some(PathBuf::from(value)),
                "--log-max-size" => parsed.log_max_size = number(&flag, &value)?,
                "--log-max-files" => parsed.log_max_files = number::<u32>(&flag, &value)?.max(1),
                "--terminal" => {
                    parsed.terminal = match value.to_str() {
                        Some("1" | "true") => true,
                        Some("0" | "false") => false,
                        _ => return Err(format!("--terminal takes 1 or 0, not {value:?}")),
                    }
                }
                "--console-size" => parsed.console_size = Some(console_size(&value)?),
                "--cgroup" => parsed.cgroup = Some(value.to_string_lossy().into_owned()),
                "--dir" => parsed.dir = Some(PathBuf::from(value)),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        parsed.mode = mode.ok_or("--mode is required")?;
        parsed.runtime = runtime.ok_or("--runtime is required")?;
        parsed.root = root.ok_or("--root is required")?;
        parsed.id = id.ok_or("--id is required")?;
        parsed.bundle = bundle.ok_or("--bundle is required")?;
        Ok(parsed)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &OsString) -> Result<T, String> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} takes a number, not {value:?}"))
}

/// `WxH`, e.g. `80x24`: width then height.
fn console_size(value: &OsString) -> Result<(u16, u16), String> {
    value
        .to_str()
        .and_then(|v| v.split_once('x'))
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or_else(|| format!("--console-size takes WxH (e.g. 80x24), not {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            mode: Mode::Exec,
            runtime: "/usr/sbin/runc".into(),
            root: "/run/r".into(),
            id: "c1".into(),
            bundle: "/b".into(),
            runtime_args: vec!["--debug".into()],
            verb_args: vec!["--image-path".into(), "/x".into()],
            stdin: None,
            stdout: Some("/tmp/o".into()),
            stderr: None,
            log: Some("/l/c.log".into()),
            log_max_size: 1000,
            log_max_files: 3,
            terminal: true,
            console_size: Some((80, 24)),
            cgroup: Some("/corral/_shims".into()),
            dir: Some("/run/corral/default/c1/e1".into()),
        };
        let b = ShimArgs::parse(a.to_args()).unwrap();
        assert_eq!(b.log, a.log);
        assert_eq!((b.log_max_size, b.log_max_files), (1000, 3));
        assert!(b.terminal);
        assert_eq!(b.console_size, Some((80, 24)));
        assert_eq!(b.mode, Mode::Exec);
        assert_eq!(b.stdout, a.stdout);
        assert_eq!(b.runtime_args, a.runtime_args);
        assert_eq!(b.verb_args, a.verb_args);
        assert_eq!(b.cgroup, a.cgroup);
        assert_eq!(b.dir, a.dir);
        assert!(ShimArgs::parse(vec!["--mode".into()]).is_err());
    }

    #[test]
    fn new_flags_default_off() {
        let base: Vec<OsString> = [
            "--mode",
            "run",
            "--runtime",
            "r",
            "--root",
            "/x",
            "--id",
            "c",
        ]
        .iter()
        .chain(["--bundle", "/b"].iter())
        .map(Into::into)
        .collect();
        let a = ShimArgs::parse(base.clone()).unwrap();
        assert_eq!(a.log, None);
        assert_eq!((a.log_max_size, a.log_max_files), (0, 1));
        assert!(!a.terminal);
        assert_eq!(a.console_size, None);
        assert_eq!(a.cgroup, None);
        let with = |extra: &[&str]| {
            let mut v = base.clone();
            v.extend(extra.iter().map(Into::into));
            ShimArgs::parse(v)
        };
        assert_eq!(with(&["--log-max-files", "0"]).unwrap().log_max_files, 1);
        assert!(with(&["--console-size", "80"]).is_err());
        assert!(with(&["--console-size", "80x"]).is_err());
        assert!(with(&["--terminal", "yes"]).is_err());
        assert!(with(&["--log-max-size", "-1"]).is_err());
    }
}
