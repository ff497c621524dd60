//! Fifos that carry a process's stdout and stderr to corralctl's own (`run`, `exec`).

use corral::{now_ns, Error, Stdio};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Fifos in a private temp dir that carry a process's stdout and stderr to ours.
pub struct OutputPipes {
    dir: PathBuf,
    readers: Vec<(std::fs::File, bool)>,
}

impl OutputPipes {
    /// Makes the fifos and opens their read ends.
    pub fn new(tag: &str) -> Result<Self, Error> {
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

    /// The stdio to give the process.
    pub fn stdio(&self) -> Stdio {
        Stdio {
            stdin: None,
            stdout: Some(self.dir.join("stdout")),
            stderr: Some(self.dir.join("stderr")),
            ..Stdio::default()
        }
    }

    /// Copies both fifos to our stdout and stderr until the writers are gone.
    pub fn copy(&mut self) -> Vec<std::thread::JoinHandle<()>> {
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
