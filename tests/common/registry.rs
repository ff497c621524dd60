//! A private OCI registry per test: the upstream distribution registry 2.8 (Debian's
//! `docker-registry`), plain HTTP on 127.0.0.1, its storage in a temp dir, optionally behind
//! htpasswd (bcrypt) basic auth. Killed (and reaped) on drop.

use super::images::TestDir;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOCKER_REGISTRY: &str = "docker-registry";
/// How long a registry may take to answer on `/v2/` after it is spawned.
const READY: Duration = Duration::from_secs(20);

pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Credentials when started with auth.
    pub auth: Option<(String, String)>,
    dir: TestDir,
    child: Option<Child>,
}

impl Registry {
    /// An anonymous registry (anyone may push and pull).
    pub fn start() -> Registry {
        Registry::start_inner(None)
    }

    /// A registry that takes only `user`/`password` (basic auth, bcrypt htpasswd file).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner(Some((user.to_string(), password.to_string())))
    }

    fn start_inner(auth: Option<(String, String)>) -> Registry {
        assert!(
            ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
                .iter()
                .any(|p| Path::new(p).is_file())
                || Command::new(DOCKER_REGISTRY)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok(),
            "docker-registry not found: the image tests need it (scripts/install-deps.sh)"
        );
        let dir = TestDir::new("registry");
        std::fs::create_dir_all(dir.join("storage")).expect("create the registry's storage");
        if let Some((user, password)) = &auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run htpasswd (apt-get install apache2-utils): {e}"));
            assert!(
                out.status.success(),
                "htpasswd -Bbn failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(dir.join("htpasswd"), &out.stdout).expect("write htpasswd");
        }
        let mut registry = Registry {
            addr: String::new(),
            auth,
            dir,
            child: None,
        };
        let mut errors = Vec::new();
        for _ in 0..3 {
            registry.addr = format!("127.0.0.1:{}", super::free_port());
            match registry.spawn() {
                Ok(()) => return registry,
                Err(e) => errors.push(e),
            }
        }
        panic!("docker-registry did not start in 3 attempts: {errors:#?}");
    }

    /// The registry's temp dir (config.yml, registry.log, storage/, htpasswd).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where it stores blobs and manifests (`docker/registry/v2/...` inside).
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The registry's log so far (warnings and the access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The pid of the running registry.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `user:password` when started with auth.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    fn config(&self) -> String {
        let auth = if self.auth.is_some() {
            format!(
                "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
                self.dir.join("htpasswd").display()
            )
        } else {
            String::new()
        };
        format!(
            "version: 0.1\n\
             log:\n  level: warn\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {}\n  secret: corral-test-secret\n\
             {auth}",
            self.storage().display(),
            self.addr,
        )
    }

    /// Writes the config and starts the registry on `self.addr`; waits until `/v2/` answers
    /// (200, or 401 with auth). Err (with the log) if it exits or does not answer.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the registry is already running");
        let config = self.dir.join("config.yml");
        std::fs::write(&config, self.config()).expect("write the registry config");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the registry log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {DOCKER_REGISTRY}: {e}"));
        self.child = Some(child);
        let want = if self.auth.is_some() { 401 } else { 200 };
        let deadline = Instant::now() + READY;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "docker-registry on {} exited with {status}: {}",
                    self.addr,
                    self.log()
                ));
            }
            match http_status(&self.addr, "/v2/") {
                Some(code) if code == want => return Ok(()),
                Some(code) => {
                    // Someone else's server on that port, or a misconfigured registry.
                    self.stop();
                    return Err(format!(
                        "GET http://{}/v2/ answered {code}, not {want}: {}",
                        self.addr,
                        self.log()
                    ));
                }
                None if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                None => {
                    self.stop();
                    return Err(format!(
                        "docker-registry on {} did not answer within {READY:?}: {}",
                        self.addr,
                        self.log()
                    ));
                }
            }
        }
    }

    /// Kills the registry (SIGKILL) and reaps it; its storage stays. A no-op when stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address and storage after [`Registry::stop`] (panics if
    /// that port has been taken meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("restarting the registry: {e}");
        }
    }

    /// The HTTP status of an anonymous `GET http://ADDR/PATH`, None if nothing answers.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        http_status(&self.addr, path)
    }
}

/// The status code of an HTTP/1.0 `GET path` on `addr`, None if it cannot connect or the
/// answer is not HTTP.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- registry {} log (last 40 lines) ----\n{}\n----",
                self.addr,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}
