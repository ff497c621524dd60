//! Checkpoint and restore of containers holding TCP sockets, with the real CRIU (4.2 or
//! later: 4.1.1 cannot dump any TCP socket on Linux 6.16+). Each container runs in a
//! network namespace the test made (`ip netns add`, a veth pair with a /30), named in its
//! spec by path, so the host reaches it directly and the connection the test holds survives
//! the container's checkpoint and restore.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs `ip ARGS...`, insisting on success.
fn ip(args: &[&str]) {
    let out = output_within(Command::new("ip").args(args), LIVENESS);
    assert_eq!(code(&out), 0, "ip {args:?}: {}", stderr(&out));
}

/// A network namespace with a veth pair: `host_ip` on the host's end, `ns_ip` on the end
/// inside it (a /30). Dropping it deletes both (also when a test panics).
struct NetNs {
    name: String,
    host_if: String,
    ns_ip: Ipv4Addr,
}

impl NetNs {
    fn new() -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let addrs = String::from_utf8_lossy(
            &output_within(Command::new("ip").args(["-4", "-o", "addr"]), LIVENESS).stdout,
        )
        .into_owned();
        // A /30 in 10.0.0.0/8 from the pid and a counter, not on this host yet.
        let (n, net) = loop {
            let n = N.fetch_add(1, Ordering::SeqCst);
            let net = [
                10,
                100 + ((pid >> 8) % 100) as u8,
                (pid & 0xff) as u8,
                ((n % 64) * 4) as u8,
            ];
            let prefix = format!("10.{}.{}.", net[1], net[2]);
            let taken = addrs.lines().any(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&prefix))
                    .and_then(|rest| rest.split('/').next()?.parse::<u8>().ok())
                    .is_some_and(|last| last & !3 == net[3])
            });
            assert!(n < 64, "no free /30 for the test's veth pair");
            if !taken {
                break (n, net);
            }
        };
        remove_stale();
        let id = format!("{pid}x{n}");
        let ns = NetNs {
            name: format!("{STALE_PREFIX}{id}"),
            host_if: format!("crh{id}"),
            ns_ip: Ipv4Addr::new(net[0], net[1], net[2], net[3] + 2),
        };
        let host_ip = format!("10.{}.{}.{}/30", net[1], net[2], net[3] + 1);
        let ns_ip = format!("{}/30", ns.ns_ip);
        let peer = format!("crn{id}");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &ns.name,
        ]);
        ip(&["addr", "add", &host_ip, "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&["-n", &ns.name, "addr", "add", &ns_ip, "dev", &peer]);
        ip(&["-n", &ns.name, "link", "set", &peer, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Puts a bundle's container into this namespace (its spec names it by path).
    fn join(&self, bundle: &std::path::Path) {
        let path = self.path();
        edit_config(bundle, |spec| {
            let nss = spec["linux"]["namespaces"].as_array_mut().unwrap();
            let net = nss.iter_mut().find(|n| n["type"] == "network").unwrap();
            net["path"] = path.into();
        });
    }
}

/// The namespaces' name prefix; the test process's pid follows it.
const STALE_PREFIX: &str = "corral-tcp-";

/// Deletes the namespaces (and so their veth pairs) of test processes that are gone without
/// their cleanup (killed).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for name in dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
    {
        let Some(pid) = name
            .strip_prefix(STALE_PREFIX)
            .and_then(|rest| rest.split('x').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace takes the veth end inside it and so the pair; the host's
        // end is deleted too in case the namespace is still held.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Connects to `addr`, retrying while nothing listens yet.
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + LIVENESS;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "connect to {addr}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends `line` and reads back as many bytes: the echo server's answer.
fn echo(s: &mut TcpStream, line: &str) {
    s.write_all(line.as_bytes()).unwrap();
    let mut back = vec![0; line.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("reading back {line:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&back), line);
}

/// An HTTP/1.0 GET of `/` at `addr`: the response.
fn http_get(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// An ESTABLISHED connection from the test to a busybox echo server in the container
/// survives `checkpoint --tcp --exit` and a restore: while the container is gone the
/// connection is neither closed nor reset, and afterwards the same socket carries data both
/// ways; its end of file reaches the restored server, which exits 0.
#[test]
fn an_established_connection_survives_checkpoint_and_restore() {
    let ns = NetNs::new();
    let d = Daemon::start("ckpt_tcp_established");
    let port = 7000;
    // nc accepts one connection and execs cat on it: an echo server.
    let b = d.bundle("echo", &["nc", "-l", "-p", &port.to_string(), "-e", "cat"]);
    ns.join(&b);
    let id = unique_id("cktcp");
    d.run(&id, &b);
    let addr = SocketAddr::from((ns.ns_ip, port));
    let mut s = connect(addr);
    echo(&mut s, "hello before the checkpoint\n");
    echo(&mut s, "and once more\n");

    // Without --tcp CRIU refuses an established connection, and the container runs on.
    let out = d.ctl(&["checkpoint", &id, "refused", "--exit"]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    eprintln!("checkpoint without --tcp: {}", stderr(&out));
    assert!(
        stderr(&out).contains("established"),
        "no word of the connection in: {}",
        stderr(&out)
    );
    echo(&mut s, "still there\n");

    let out = d.ctl_ok(&["checkpoint", &id, "est", "--tcp", "--exit"]);
    assert!(out.contains("est"), "{out}");
    assert_eq!(d.wait_code("", &id, None), 137);
    // The process is gone but its socket was closed in repair mode behind a network lock:
    // the host's end sees neither an end of file nor a reset.
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the connection changed while checkpointed: {other:?}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let listed = d.client().checkpoints("", &id).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].options.tcp && listed[0].options.exit);

    d.delete("", &id, false).unwrap();
    let out = d.ctl_ok(&["restore", &id, "est"]);
    assert!(out.contains(&id), "{out}");
    echo(&mut s, "hello after the restore\n");
    echo(&mut s, &"x".repeat(100_000));

    // End of file on the same connection: cat ends and the container exits 0.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(d.wait_code("", &id, None), 0);

    d.delete("", &id, false).unwrap();
    d.assert_no_leftovers("default", &id);
    d.client().remove_checkpoint("", &id, "est").unwrap();
    drop(d);
}

/// A server with only a listening socket (busybox httpd) checkpoints with `--exit` and
/// restores: the restored server accepts new connections on the same address; so does a
/// second restore, under a new id, of the same checkpoint.
#[test]
fn a_listening_server_is_checkpointed_and_restored() {
    let ns = NetNs::new();
    let d = Daemon::start("ckpt_tcp_listening");
    let port = 8080;
    let b = d.bundle(
        "httpd",
        &["httpd", "-f", "-p", &port.to_string(), "-h", "/www"],
    );
    std::fs::create_dir_all(b.join("rootfs/www")).unwrap();
    std::fs::write(
        b.join("rootfs/www/index.html"),
        "served from the container\n",
    )
    .unwrap();
    ns.join(&b);
    let id = unique_id("ckhttpd");
    d.run(&id, &b);
    let addr = SocketAddr::from((ns.ns_ip, port));
    let page = http_get(addr);
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("served from the container"),
        "{page}"
    );

    d.ctl_ok(&["checkpoint", &id, "listening", "--exit"]);
    assert_eq!(d.wait_code("", &id, None), 137);
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => {}
        Ok(_) => panic!("something still accepts on {addr} after checkpoint --exit"),
    }
    d.delete("", &id, false).unwrap();
    d.ctl_ok(&["restore", &id, "listening"]);
    std::fs::write(
        b.join("rootfs/www/index.html"),
        "served after the restore\n",
    )
    .unwrap();
    let page = http_get(addr);
    assert!(page.contains("served after the restore"), "{page}");

    // Once more, under a new id.
    d.delete("", &id, true).unwrap();
    let twin = unique_id("ckhttpd2");
    d.ctl_ok(&["restore", &id, "listening", "--as", &twin]);
    let page = http_get(addr);
    assert!(page.contains("served after the restore"), "{page}");
    d.delete("", &twin, true).unwrap();

    d.assert_no_leftovers("default", &id);
    d.assert_no_leftovers("default", &twin);
    d.client().remove_checkpoint("", &id, "listening").unwrap();
    drop(d);
}
