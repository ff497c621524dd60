//! Framing: `u32` big-endian length, then a bincode payload of at most [`MAX_FRAME`] bytes.

use crate::error::{Error, Result};
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload accepted, checked before allocating.
pub const MAX_FRAME: u32 = 4 * 1024 * 1024;

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(u64::from(MAX_FRAME))
}

/// Encodes a value as one frame (length prefix included).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload = options()
        .serialize(value)
        .map_err(|e| Error::Protocol(format!("cannot encode frame: {e}")))?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes one payload (without its length prefix), with the size limit.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    options()
        .deserialize(payload)
        .map_err(|e| Error::Protocol(format!("malformed frame: {e}")))
}

fn check_len(len: u32) -> Result<usize> {
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
    let len = check_len(u32::from_be_bytes(len))?;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|e| Error::Protocol(format!("frame cut short: {e}")))?;
    Ok(Some(payload))
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
    let len = check_len(u32::from_be_bytes(len))?;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|e| Error::Protocol(format!("frame cut short: {e}")))?;
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
}
