//! The framing as corrald and the client read it: the bytes of a connection, read frame
//! after frame by the blocking reader (the client's) and the async one (the daemon's), in
//! reads of a size the input chooses. Nothing may panic, no payload may be over the limit,
//! and every frame that decodes must encode back to the bytes it came from.
#![no_main]

use corral::rpc::frame::{decode, encode, read_frame_sync, read_payload, MAX_FRAME};
use corral::rpc::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Hands out at most `step` bytes per read, as a socket does.
struct Trickle<'a> {
    rest: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.step).min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        buf.put_slice(head);
        self.rest = tail;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1) * 7;
    let mut r = Trickle { rest: stream, step };
    while let Ok(Some(frame)) = read_frame_sync::<_, ClientFrame>(&mut r) {
        let again = encode(&frame).expect("a decoded frame encodes");
        let back: ClientFrame = read_frame_sync(&mut &again[..])
            .expect("an encoded frame reads back")
            .expect("not empty");
        assert_eq!(encode(&back).expect("encodes"), again, "not a fixed point");
    }
    let mut r = Trickle { rest: stream, step };
    while let Ok(Some(_)) = read_frame_sync::<_, ServerFrame>(&mut r) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut r = Trickle { rest: stream, step };
        while let Ok(Some(payload)) = read_payload(&mut r).await {
            assert!(payload.len() <= MAX_FRAME as usize);
            let _ = decode::<ClientFrame>(&payload);
        }
    });
});
