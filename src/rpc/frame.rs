//! Framing: `u32` big-endian length, then a bincode payload of at most [`MAX_FRAME`] bytes.
//!
//! The length is checked before anything is read, and a payload's buffer grows as its bytes
//! arrive: it starts at [`FIRST_CHUNK`] and doubles up to [`READ_CHUNK`] more per read, so it
//! is never more than twice what has arrived plus 4 KiB. A peer that announces 4 MiB and
//! sends 10 bytes costs 4 KiB, not 4 MiB.

use crate::error::{Error, Result};
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload accepted, checked before allocating.
pub const MAX_FRAME: u32 = 4 * 1024 * 1024;

/// How much a payload's buffer grows by per read, at most.
pub const READ_CHUNK: usize = 64 * 1024;
/// A payload buffer's first size (then it doubles, by at most [`READ_CHUNK`] at a time).
pub const FIRST_CHUNK: usize = 4 * 1024;

/// By how much a payload buffer holding `filled` of `len` bytes grows for the next read.
fn next_chunk(filled: usize, len: usize) -> usize {
    filled.clamp(FIRST_CHUNK, READ_CHUNK).min(len - filled)
}

/// Makes room for the next read into a payload of `len` bytes: the capacity becomes at most
/// twice what has arrived plus [`FIRST_CHUNK`], and never more than `len` (a plain
/// `resize` could reserve up to twice `len`).
fn grow(payload: &mut Vec<u8>, len: usize) {
    let filled = payload.len();
    let want = filled + next_chunk(filled, len);
    if want > payload.capacity() {
        let cap = (2 * filled).clamp(want, len);
        payload.reserve_exact(cap - filled);
    }
    payload.resize(want, 0);
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(u64::from(MAX_FRAME))
}

/// Encodes a value as one frame (length prefix included).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload = encode_payload(value)?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Encodes a value as a frame's payload (no length prefix), or as a part of one: the
/// encoding of a sequence's item is the same inside the sequence as alone.
pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    options()
        .serialize(value)
        .map_err(|e| Error::Protocol(format!("cannot encode frame: {e}")))
}

/// The frame [`encode`] gives for `empty` with `count` items in its last field, a sequence
/// (empty in `empty`): `write_items` appends their encodings ([`encode_payload`]), `len`
/// bytes in all, one after another, to the frame. Items kept encoded are so sent without
/// being decoded and encoded again, in one allocation of the frame's size.
pub fn encode_with_items<T: Serialize>(
    empty: &T,
    count: usize,
    len: usize,
    write_items: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>> {
    let mut head = encode_payload(empty)?;
    // An empty sequence is its length alone: a single 0.
    if head.pop() != Some(0) {
        return Err(Error::Internal(
            "encode_with_items: the value does not end with an empty sequence".into(),
        ));
    }
    let count = encode_payload(&(count as u64))?;
    let payload = head.len() + count.len() + len;
    if payload > MAX_FRAME as usize {
        return Err(Error::Protocol(format!(
            "cannot encode frame: {payload} bytes, over the {MAX_FRAME}-byte limit"
        )));
    }
    let mut frame = Vec::with_capacity(4 + payload);
    frame.extend_from_slice(&(payload as u32).to_be_bytes());
    frame.extend_from_slice(&head);
    frame.extend_from_slice(&count);
    let start = frame.len();
    write_items(&mut frame);
    let written = frame.len() - start;
    if written != len {
        return Err(Error::Internal(format!(
            "encode_with_items: {written} bytes of items written, {len} announced"
        )));
    }
    Ok(frame)
}

/// Decodes one payload (without its length prefix), with the size limit.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    options()
        .deserialize(payload)
        .map_err(|e| Error::Protocol(format!("malformed frame: {e}")))
}

/// Checks an announced payload length against [`MAX_FRAME`].
pub fn check_len(len: u32) -> Result<usize> {
    if len > MAX_FRAME {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes is over the {MAX_FRAME}-byte limit"
        )));
    }
    Ok(len as usize)
}

/// Reads one frame's payload; `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_payload<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("read frame", e)),
    }
    read_body(reader, u32::from_be_bytes(len)).await.map(Some)
}

fn cut_short(e: std::io::Error) -> Error {
    Error::Protocol(format!("frame cut short: {e}"))
}

fn eof() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::UnexpectedEof)
}

/// Reads a payload of the announced length `len` (checked first), growing its buffer as
/// the bytes arrive (see the module's documentation).
pub async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, len: u32) -> Result<Vec<u8>> {
    let len = check_len(len)?;
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        grow(&mut payload, len);
        let n = reader
            .read(&mut payload[start..])
            .await
            .map_err(cut_short)?;
        if n == 0 {
            return Err(cut_short(eof()));
        }
        payload.truncate(start + n);
    }
    Ok(payload)
}

fn read_body_sync<R: Read>(reader: &mut R, len: u32) -> Result<Vec<u8>> {
    let len = check_len(len)?;
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        grow(&mut payload, len);
        let n = loop {
            match reader.read(&mut payload[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(cut_short(e)),
            }
        };
        if n == 0 {
            return Err(cut_short(eof()));
        }
        payload.truncate(start + n);
    }
    Ok(payload)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> Result<()> {
    let frame = encode(value)?;
    writer
        .write_all(&frame)
        .await
        .map_err(|e| Error::io("write frame", e))
}

/// Blocking: reads one frame and decodes it; `Ok(None)` on a clean end of stream.
pub fn read_frame_sync<R: Read, T: DeserializeOwned>(reader: &mut R) -> Result<Option<T>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("read frame", e)),
    }
    let payload = read_body_sync(reader, u32::from_be_bytes(len))?;
    decode(&payload).map(Some)
}

/// Blocking: writes one frame.
pub fn write_frame_sync<W: Write, T: Serialize>(writer: &mut W, value: &T) -> Result<()> {
    let frame = encode(value)?;
    writer
        .write_all(&frame)
        .map_err(|e| Error::io("write frame", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::protocol::{ClientFrame, Request};

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let frame = ClientFrame {
            id: 7,
            request: Request::Version,
        };
        let bytes = encode(&frame).unwrap();
        let back: ClientFrame = read_frame_sync(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back.id, 7);
        // A forged length prefix is refused before any allocation.
        let forged = u32::MAX.to_be_bytes();
        let err = read_frame_sync::<_, ClientFrame>(&mut &forged[..]).unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m.contains("limit")));
        // Garbage inside a frame is a protocol error, not a panic.
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(read_frame_sync::<_, ClientFrame>(&mut &garbage[..]).is_err());
    }

    #[test]
    fn buffers_grow_as_bytes_arrive() {
        // Doubling from 4 KiB, by 64 KiB at most, never past the announced length.
        assert_eq!(next_chunk(0, 10), 10);
        assert_eq!(next_chunk(0, MAX_FRAME as usize), FIRST_CHUNK);
        assert_eq!(next_chunk(8192, MAX_FRAME as usize), 8192);
        assert_eq!(next_chunk(1 << 20, MAX_FRAME as usize), READ_CHUNK);
        assert_eq!(next_chunk(100, 150), 50);
        let len = 3 * 1024 * 1024 + 5;
        let mut payload = Vec::new();
        while payload.len() < len {
            let arrived = payload.len();
            grow(&mut payload, len);
            assert!(payload.capacity() <= len);
            assert!(payload.capacity() <= 2 * arrived + FIRST_CHUNK);
            // Reads that return less than asked.
            payload.truncate(arrived + (payload.len() - arrived).div_ceil(3));
        }
        assert_eq!(payload.len(), len);
        // A frame of several chunks, read in small pieces, comes back whole both ways.
        let frame = ClientFrame {
            id: 9,
            request: Request::Hello {
                version: 1,
                client: "x".repeat(300_000),
            },
        };
        let bytes = encode(&frame).unwrap();
        let back: ClientFrame = read_frame_sync(&mut Trickle(&bytes[..])).unwrap().unwrap();
        assert!(matches!(back.request, Request::Hello { client, .. } if client.len() == 300_000));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let payload = rt.block_on(read_payload(&mut &bytes[..])).unwrap().unwrap();
        assert_eq!(payload.len(), bytes.len() - 4);
        // Announced long, cut short: a protocol error, with a buffer of what came.
        let mut short = MAX_FRAME.to_be_bytes().to_vec();
        short.extend_from_slice(&[0u8; 10]);
        let err = rt.block_on(read_payload(&mut &short[..])).unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m.contains("cut short")));
    }

    #[test]
    fn items_kept_encoded_make_the_same_frame() {
        use crate::rpc::protocol::{Reply, ServerFrame};
        use crate::types::ContainerInfo;
        // 0, 1, 250 and 251 items: the count's encoding is one byte up to 250, then three.
        for n in [0usize, 1, 250, 251] {
            let list: Vec<ContainerInfo> = (0..n)
                .map(|i| {
                    let mut info = ContainerInfo::unknown("ns", &format!("c{i}"));
                    info.pid = i as u32 * 1000;
                    info.labels.insert("k".into(), "v".repeat(i % 7));
                    info
                })
                .collect();
            let mut items = Vec::new();
            for info in &list {
                items.extend(encode_payload(info).unwrap());
            }
            let frame_of = |list| ServerFrame {
                id: 300 + n as u64,
                reply: Reply::Containers(list),
            };
            let made = encode_with_items(&frame_of(Vec::new()), n, items.len(), |out| {
                out.extend_from_slice(&items)
            })
            .unwrap();
            assert_eq!(made, encode(&frame_of(list)).unwrap(), "{n} items");
        }
        // A value whose last field is not an empty sequence is refused, not mangled.
        let not_empty = ServerFrame {
            id: 1,
            reply: Reply::Ok,
        };
        assert!(encode_with_items(&not_empty, 0, 0, |_| {}).is_err());
        // Over the limit: a protocol error naming it, before anything is written.
        let err = encode_with_items(&frame_of_empty(), 1, MAX_FRAME as usize, |_| {
            panic!("written past the limit")
        })
        .unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m.contains("limit")));
        // Items that are not the announced length: an error, not a frame that lies.
        let err = encode_with_items(&frame_of_empty(), 1, 10, |out| out.push(1)).unwrap_err();
        assert!(matches!(err, Error::Internal(m) if m.contains("1 bytes of items written, 10")));
    }

    fn frame_of_empty() -> crate::rpc::protocol::ServerFrame {
        crate::rpc::protocol::ServerFrame {
            id: 2,
            reply: crate::rpc::protocol::Reply::Containers(Vec::new()),
        }
    }

    /// A reader that hands out at most 1000 bytes per read.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
