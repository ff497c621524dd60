//! The wire protocol from a raw socket: clients that break it get a clear error and a
//! closed connection, and the daemon stays up for everyone else.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::raw::*;
use common::*;
use corral::rpc::frame::MAX_FRAME;
use corral::rpc::{Reply, Request, ServerFrame, PROTOCOL_VERSION};
use corral::{Error, EventFilter, Topic};
use std::io::Write;
use std::os::unix::net::UnixStream;

/// Asserts the daemon answers with a protocol error (id 0) and then closes the connection.
fn expect_protocol_error_then_close(s: &mut UnixStream, what: &str) -> String {
    let msg = match next_frame(s) {
        Some(ServerFrame {
            id: 0,
            reply: Reply::Error(Error::Protocol(msg)),
        }) => msg,
        other => panic!("{what}: expected a protocol error frame, got {other:?}"),
    };
    expect_closed(s, what);
    msg
}

/// Junk inside a well-formed length prefix, before or after the handshake, is a protocol
/// error; the daemon serves the next client as before.
#[test]
fn garbage_frames_get_a_protocol_error() {
    let d = Daemon::start("garbage_frames");
    let junk: &[&[u8]] = &[
        &[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef],
        &[0, 0, 0, 0],
        &[0, 0, 0, 3, 0xff, 0xff, 0xff],
    ];
    for (i, bytes) in junk.iter().enumerate() {
        for after_handshake in [false, true] {
            let what = format!("junk #{i} (after handshake: {after_handshake})");
            let mut s = raw(&d);
            if after_handshake {
                handshake(&mut s);
            }
            s.write_all(bytes).unwrap();
            let msg = expect_protocol_error_then_close(&mut s, &what);
            assert!(!msg.is_empty(), "{what}");
            d.assert_alive();
        }
    }
}

/// A length prefix over the 4 MiB limit is refused at once (before any payload is sent or
/// any memory is set aside for it) and the connection is closed.
#[test]
fn oversized_length_prefix_is_refused() {
    let d = Daemon::start("oversized_frame");
    for len in [u32::MAX, MAX_FRAME + 1] {
        for after_handshake in [false, true] {
            let what = format!("length {len:#x} (after handshake: {after_handshake})");
            let mut s = raw(&d);
            if after_handshake {
                handshake(&mut s);
            }
            s.write_all(&len.to_be_bytes()).unwrap();
            let msg = expect_protocol_error_then_close(&mut s, &what);
            assert!(msg.contains("limit"), "{what}: {msg}");
            d.assert_alive();
        }
    }
}

/// A client speaking another protocol version, or starting with anything but Hello, is
/// refused and disconnected.
#[test]
fn the_handshake_is_enforced() {
    let d = Daemon::start("handshake");
    let mut s = raw(&d);
    send(&mut s, 1, hello(PROTOCOL_VERSION + 1));
    let msg = expect_protocol_error_then_close(&mut s, "wrong version");
    assert!(
        msg.contains(&(PROTOCOL_VERSION + 1).to_string())
            && msg.contains(&PROTOCOL_VERSION.to_string()),
        "the message does not give both versions: {msg}"
    );
    d.assert_alive();

    let mut s = raw(&d);
    send(&mut s, 1, Request::Version);
    let msg = expect_protocol_error_then_close(&mut s, "no hello");
    assert!(msg.contains("Hello"), "{msg}");
    d.assert_alive();

    // A second Hello is refused, but the connection stays usable.
    let mut s = raw(&d);
    handshake(&mut s);
    send(&mut s, 2, hello(PROTOCOL_VERSION));
    match next_frame(&mut s) {
        Some(ServerFrame {
            id: 2,
            reply: Reply::Error(Error::Protocol(_)),
        }) => {}
        other => panic!("a second Hello answered {other:?}"),
    }
    send(&mut s, 3, Request::Version);
    match next_frame(&mut s) {
        Some(ServerFrame {
            id: 3,
            reply: Reply::Version { protocol, .. },
        }) => assert_eq!(protocol, PROTOCOL_VERSION),
        other => panic!("Version after a second Hello answered {other:?}"),
    }
}

/// A pipelined handshake (the request right behind the Hello, as corralctl sends them)
/// is answered like a waited-for one, and the handshake's answer is taken in passing.
#[test]
fn a_pipelined_handshake_is_answered_with_the_first_request() {
    let d = Daemon::start("pipelined_hello");
    let mut c = corral::rpc::Client::connect_pipelined(&d.socket).unwrap();
    assert_eq!(
        c.daemon_version(),
        "",
        "the handshake's answer is not read yet"
    );
    let (release, protocol) = c.version().unwrap();
    assert_eq!(protocol, PROTOCOL_VERSION);
    assert_eq!(c.daemon_version(), release);
    assert!(c.list("default", Default::default()).unwrap().is_empty());
    d.assert_alive();
}

/// Requests sent back to back on one connection are all answered, each with its own id.
#[test]
fn pipelined_requests_are_answered_by_id() {
    let d = Daemon::start("pipelined");
    let mut s = raw(&d);
    handshake(&mut s);
    send(&mut s, 10, Request::Version);
    send(
        &mut s,
        11,
        Request::List {
            namespace: "default".into(),
            labels: Default::default(),
        },
    );
    send(
        &mut s,
        12,
        Request::State {
            namespace: "default".into(),
            id: "no-such-container".into(),
        },
    );
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let f = next_frame(&mut s).expect("a reply");
        got.insert(f.id, f.reply);
    }
    assert!(
        matches!(got.get(&10), Some(Reply::Version { .. })),
        "{got:?}"
    );
    assert!(
        matches!(got.get(&11), Some(Reply::Containers(c)) if c.is_empty()),
        "{got:?}"
    );
    assert!(
        matches!(got.get(&12), Some(Reply::Error(Error::NotFound(_)))),
        "{got:?}"
    );
}

/// Clients that hang up mid-frame, or connect and say nothing, harm no one.
#[test]
fn truncated_and_silent_clients_do_not_block_others() {
    let d = Daemon::start("truncated");
    // Announces 1000 bytes, sends 10, hangs up.
    {
        let mut s = raw(&d);
        handshake(&mut s);
        s.write_all(&1000u32.to_be_bytes()).unwrap();
        s.write_all(&[7u8; 10]).unwrap();
    }
    // Announces a frame just under the limit and never finishes it, but stays connected.
    let mut stalled = raw(&d);
    handshake(&mut stalled);
    stalled.write_all(&(MAX_FRAME - 1).to_be_bytes()).unwrap();
    stalled.write_all(&[0u8; 1024]).unwrap();
    // Connects and sends nothing at all.
    let silent: Vec<UnixStream> = (0..20).map(|_| raw(&d)).collect();
    // Everyone else is served meanwhile, containers included.
    d.assert_alive();
    let b = d.bundle("true", &["true"]);
    let id = unique_id("proto");
    d.run(&id, &b);
    assert_eq!(d.wait_code("", &id, None), 0);
    d.delete("", &id, false).unwrap();
    drop(silent);
    drop(stalled);
    d.assert_alive();
}

/// Subscribers that disconnect in the middle of a stream of events are forgotten; the
/// daemon and the other subscribers carry on.
#[test]
fn subscribers_that_disconnect_mid_stream_are_harmless() {
    let d = Daemon::start("subscriber_disconnect");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let id = unique_id("subdrop");
    let steady = Events::subscribe(
        &d.socket,
        EventFilter {
            container_id: Some(id.clone()),
            ..Default::default()
        },
    );
    // Raw subscribers that read one event and vanish, some without reading at all.
    let mut quitters = Vec::new();
    for i in 0..10u64 {
        let mut s = raw(&d);
        handshake(&mut s);
        send(
            &mut s,
            2,
            Request::Subscribe(EventFilter {
                container_id: Some(id.clone()),
                ..Default::default()
            }),
        );
        quitters.push((i, s));
    }
    d.run(&id, &b);
    for (i, mut s) in quitters {
        if i % 2 == 0 {
            match next_frame(&mut s) {
                Some(ServerFrame {
                    id: 2,
                    reply: Reply::Event(e),
                }) => assert_eq!(e.topic, Topic::TaskCreate),
                other => panic!("subscriber {i} got {other:?}"),
            }
        }
        drop(s); // hang up with events still coming
    }
    // Keep the events coming after they left.
    for n in 0..5 {
        let exec_id = format!("e{n}");
        // Detached, then waited for: a foreground exec is also removed (one more event).
        d.ctl_ok(&["exec", "-d", &id, &exec_id, "--", "true"]);
        assert_eq!(d.wait_code("", &id, Some(&exec_id)), 0);
    }
    d.delete("", &id, true).unwrap();
    let seen = steady.until("/tasks/delete", |e| e.topic == Topic::TaskDelete);
    // create, start, 5 x (added, started, exit), exit, delete
    assert_eq!(seen.len(), 2 + 15 + 2, "{seen:#?}");
    d.assert_alive();
    // The daemon forgot them: only the steady subscriber is left.
    wait_until(LIVENESS, "the departed subscribers to be dropped", || {
        d.client().info().is_ok_and(|i| i.subscribers == 1)
    });
    assert!(!d.log_text().contains("panicked"), "{}", d.log_tail(40));
}
