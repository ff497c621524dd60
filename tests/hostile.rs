//! Hostile clients against a real corrald: forged lengths, half-written frames, idle
//! connections by the thousand, pipelined requests that are never read back, connections
//! over the cap and streams over theirs. The daemon stays up, answers everyone else, and
//! its RSS grows by at most a few MiB.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::raw::*;
use common::*;
use corral::rpc::frame::{encode, MAX_FRAME};
use corral::rpc::{ClientFrame, Reply, Request, ServerFrame, PROTOCOL_VERSION};
use corral::{Error, EventFilter, DEFAULT_NAMESPACE};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The most a test's attack may grow the daemon's RSS by.
const RSS_BUDGET_KIB: u64 = 8 * 1024;

/// The connection-level error (id 0) the daemon sends before it closes the connection.
fn connection_error(s: &mut UnixStream, what: &str) -> Error {
    let e = match next_frame(s) {
        Some(ServerFrame {
            id: 0,
            reply: Reply::Error(e),
        }) => e,
        other => panic!("{what}: expected a connection-level error, got {other:?}"),
    };
    expect_closed(s, what);
    e
}

/// Another client is answered, within a second.
fn answers(d: &Daemon, what: &str) {
    let started = Instant::now();
    let mut c = d.client();
    match c.call(Request::Version) {
        Ok(Reply::Version { protocol, .. }) => assert_eq!(protocol, PROTOCOL_VERSION),
        other => panic!("{what}: Version answered {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{what}: another client waited {:?}",
        started.elapsed()
    );
}

/// The daemon's RSS once it has served a few clients (allocator pools warmed up).
fn warm_rss(d: &Daemon) -> u64 {
    for _ in 0..20 {
        answers(d, "warm-up");
    }
    std::thread::sleep(Duration::from_millis(100));
    rss_kib(d.pid())
}

fn check_growth(d: &Daemon, what: &str, before: u64) -> u64 {
    let after = rss_kib(d.pid());
    let grown = after.saturating_sub(before);
    println!("{what}: corrald RSS {before} KiB -> {after} KiB (+{grown} KiB)");
    assert!(
        grown <= RSS_BUDGET_KIB,
        "{what}: corrald's RSS grew by {grown} KiB ({before} -> {after})"
    );
    grown
}

/// Forged lengths get a protocol error at once, and the daemon answers another client.
#[test]
fn forged_lengths_get_a_protocol_error() {
    let d = Daemon::start("hostile_forged");
    for len in [u32::MAX, MAX_FRAME + 1] {
        let what = format!("length {len:#x}");
        let mut s = raw(&d);
        handshake(&mut s);
        s.write_all(&len.to_be_bytes()).unwrap();
        match connection_error(&mut s, &what) {
            Error::Protocol(m) => assert!(m.contains("limit"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
        answers(&d, &what);
    }
}

/// Frames announced at 4 MiB that stop after 10 bytes cost no memory for the announced
/// size, and are closed once the half-frame timeout passes.
#[test]
fn half_written_frames_are_closed_and_cost_no_memory() {
    let d = Daemon::start_with_env(
        "hostile_half_frames",
        &[],
        &[("CORRAL_RPC_FRAME_TIMEOUT_MS", "1500")],
    );
    let before = warm_rss(&d);
    let mut held: Vec<UnixStream> = (0..50)
        .map(|_| {
            let mut s = raw(&d);
            handshake(&mut s);
            s.write_all(&MAX_FRAME.to_be_bytes()).unwrap();
            s.write_all(&[0x5a; 10]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    check_growth(&d, "50 half-written 4 MiB frames", before);
    answers(&d, "with 50 half-written frames held");
    let started = Instant::now();
    for (i, s) in held.iter_mut().enumerate() {
        match connection_error(s, &format!("half frame {i}")) {
            Error::Protocol(m) => assert!(m.contains("not finished"), "{m}"),
            other => panic!("half frame {i}: {other:?}"),
        }
    }
    println!("all 50 closed {:?} after the check", started.elapsed());
    answers(&d, "after the half frames");
}

/// Twenty clients each sending 2.5 MiB of a 4 MiB frame and stalling: only two large
/// frames are read at once (the large-frame budget), so the daemon holds about 5 MiB for
/// them, not 50, and a small request is answered meanwhile.
#[test]
fn large_frames_share_a_budget() {
    let d = Daemon::start("hostile_large_frames");
    let before = warm_rss(&d);
    let mut senders = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut s = raw(&d);
        handshake(&mut s);
        let mut w = s.try_clone().unwrap();
        senders.push(std::thread::spawn(move || {
            let _ = w.write_all(&MAX_FRAME.to_be_bytes());
            let _ = w.write_all(&vec![0x5a; 5 * 512 * 1024]);
        }));
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    answers(&d, "with 20 large frames stalled");
    check_growth(&d, "20 stalled 4 MiB frames (2.5 MiB sent each)", before);
    for s in &conns {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    for t in senders {
        t.join().unwrap();
    }
    answers(&d, "after the large frames");
}

/// An idle connection is closed after the idle timeout; one with a subscription is not.
#[test]
fn idle_connections_are_closed_but_streams_are_kept() {
    let d = Daemon::start_with_env(
        "hostile_idle",
        &[],
        &[("CORRAL_RPC_IDLE_TIMEOUT_MS", "1000")],
    );
    let mut idle = raw(&d);
    handshake(&mut idle);
    let mut silent = raw(&d); // never even says Hello
    let mut subscriber = raw(&d);
    handshake(&mut subscriber);
    send(
        &mut subscriber,
        2,
        Request::Subscribe(EventFilter::default()),
    );
    let started = Instant::now();
    for (s, what) in [(&mut idle, "idle"), (&mut silent, "silent")] {
        match connection_error(s, what) {
            Error::Protocol(m) => assert!(m.contains("idle"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "idle connections closed after {closed_after:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    send(&mut subscriber, 3, Request::Version);
    match next_frame(&mut subscriber) {
        Some(ServerFrame {
            id: 3,
            reply: Reply::Version { .. },
        }) => {}
        other => panic!("the subscriber's connection answered {other:?}"),
    }
}

/// A thousand connections opened at once and left idle: the daemon stays up, answers a
/// new client, grows by a few MiB at most, and gets its fds back when they go.
#[test]
fn a_thousand_idle_connections() {
    let d = Daemon::start("hostile_thousand");
    let fds_before = fd_count(d.pid());
    let before = warm_rss(&d);
    let mut conns: Vec<UnixStream> = (0..1000).map(|_| raw(&d)).collect();
    // Half of them get as far as the handshake.
    for s in conns.iter_mut().step_by(2) {
        handshake(s);
    }
    answers(&d, "with 1000 idle connections");
    wait_until(LIVENESS, "the daemon to hold the 1000 connections", || {
        fd_count(d.pid()) >= fds_before + 990
    });
    check_growth(&d, "1000 idle connections", before);
    drop(conns);
    wait_until(LIVENESS, "the daemon's fds to come back", || {
        fd_count(d.pid()) <= fds_before + 2
    });
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "after they closed: corrald RSS {} KiB, fds {} (before {fds_before})",
        rss_kib(d.pid()),
        fd_count(d.pid())
    );
    answers(&d, "after 1000 idle connections");
}

/// 10 000 requests written back to back and never read: the daemon stops reading that
/// connection once its replies back up, grows by a few MiB at most, and serves others.
#[test]
fn pipelined_requests_never_read_back() {
    let d = Daemon::start("hostile_pipelined");
    let before = warm_rss(&d);
    let mut s = raw(&d);
    handshake(&mut s);
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        for id in 2..10_002u64 {
            bytes.extend(
                encode(&ClientFrame {
                    id,
                    request: Request::Version,
                })
                .unwrap(),
            );
        }
        // Blocks once the daemon stops reading; ends when the socket is shut down.
        let written = writer.write(&bytes).unwrap_or(0);
        let _ = writer.write_all(&bytes[written..]);
    });
    std::thread::sleep(Duration::from_secs(1));
    answers(&d, "during the flood");
    check_growth(&d, "10 000 pipelined requests never read", before);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    flood.join().unwrap();
    answers(&d, "after the flood");
}

/// Past the connection cap a new client is told so, clearly, and closed; once a
/// connection goes, a new one is served again.
#[test]
fn connections_over_the_cap_get_a_clear_error() {
    let d = Daemon::start_with_env("hostile_cap", &[], &[("CORRAL_RPC_MAX_CONNECTIONS", "8")]);
    // The daemon's readiness probe may still hold a slot for a moment.
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 8 {
        assert!(Instant::now() < deadline, "could not open 8 connections");
        let mut s = raw(&d);
        send(&mut s, 1, hello(PROTOCOL_VERSION));
        match next_frame(&mut s) {
            Some(ServerFrame {
                reply: Reply::Hello { .. },
                ..
            }) => held.push(s),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let err = match corral::rpc::Client::connect(&d.socket) {
        Ok(_) => panic!("a ninth connection was served"),
        Err(e) => e,
    };
    println!("over the cap: {err}");
    assert!(err.to_string().contains("8 connections"), "{err}");
    // A pipelined handshake (corralctl's) gets the same error with its first reply.
    let err = corral::rpc::Client::connect_pipelined(&d.socket)
        .and_then(|mut c| c.list(DEFAULT_NAMESPACE, Default::default()))
        .expect_err("a ninth, pipelined connection was served");
    assert!(err.to_string().contains("8 connections"), "{err}");
    // A raw client reads the same error frame, then the connection closes.
    let mut s = raw(&d);
    match connection_error(&mut s, "over the cap") {
        Error::Internal(m) => assert!(m.contains("too many connections"), "{m}"),
        other => panic!("over the cap: {other:?}"),
    }
    held.pop();
    wait_until(LIVENESS, "a slot to come free", || {
        corral::rpc::Client::connect(&d.socket).is_ok()
    });
    // All of them go: their slots come back. Seven are checked, so that one is surely free
    // for the fixture's cleanup while those seven are let go.
    drop(held);
    wait_until(LIVENESS, "the slots to come free", || {
        let clients: Vec<_> = (0..7)
            .map(|_| corral::rpc::Client::connect(&d.socket))
            .collect();
        clients.iter().all(|c| c.is_ok())
    });
}

/// Past the stream cap on one connection, a new Subscribe gets an error reply with its
/// id; the connection and the streams before it stay.
#[test]
fn streams_over_the_cap_get_an_error_reply() {
    let d = Daemon::start("hostile_streams");
    let mut s = raw(&d);
    handshake(&mut s);
    for id in 2..=65u64 {
        send(&mut s, id, Request::Subscribe(EventFilter::default()));
    }
    send(&mut s, 66, Request::Subscribe(EventFilter::default()));
    match next_frame(&mut s) {
        Some(ServerFrame {
            id: 66,
            reply: Reply::Error(Error::Protocol(m)),
        }) => assert!(m.contains("64 streams"), "{m}"),
        other => panic!("the 65th stream got {other:?}"),
    }
    send(&mut s, 67, Request::Version);
    match next_frame(&mut s) {
        Some(ServerFrame {
            id: 67,
            reply: Reply::Version { .. },
        }) => {}
        other => panic!("Version after the refused stream got {other:?}"),
    }
    wait_until(LIVENESS, "64 subscribers", || d.info().subscribers == 64);
}
