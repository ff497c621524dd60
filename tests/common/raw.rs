//! A raw socket to corrald, for the tests of the wire protocol and of hostile clients:
//! frames written and read by hand, without the `Client`.

use super::Daemon;
use corral::rpc::frame::{encode, read_frame_sync};
use corral::rpc::{ClientFrame, Reply, Request, ServerFrame, PROTOCOL_VERSION};
use corral::Error;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connection with read and write timeouts.
pub fn raw(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes one frame.
pub fn send(s: &mut UnixStream, id: u64, request: Request) {
    s.write_all(&encode(&ClientFrame { id, request }).unwrap())
        .expect("write a frame");
}

/// The next frame from the daemon; `None` when it closed the connection.
pub fn next_frame(s: &mut UnixStream) -> Option<ServerFrame> {
    match read_frame_sync::<_, ServerFrame>(s) {
        Ok(f) => f,
        Err(Error::Internal(m)) if m.contains("Connection reset") => None,
        Err(e) => panic!("reading the daemon's reply: {e}"),
    }
}

/// Asserts the daemon has closed the connection.
pub fn expect_closed(s: &mut UnixStream, what: &str) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: the connection is still open and sent {n} more bytes"),
        Err(e) => panic!("{what}: the connection was not closed: {e}"),
    }
}

/// The Hello frame of a client speaking `version`.
pub fn hello(version: u32) -> Request {
    Request::Hello {
        version,
        client: "raw test client".into(),
    }
}

/// Says Hello and checks the answer.
pub fn handshake(s: &mut UnixStream) {
    send(s, 1, hello(PROTOCOL_VERSION));
    match next_frame(s) {
        Some(ServerFrame {
            id: 1,
            reply: Reply::Hello { version, .. },
        }) => assert_eq!(version, PROTOCOL_VERSION),
        other => panic!("handshake answered {other:?}"),
    }
}
