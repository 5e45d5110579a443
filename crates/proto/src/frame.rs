//! Framing: `[kind u8][len u32 LE][payload]`, blocking std I/O so the guest
//! init needs no async runtime. The host side wraps these in a blocking task
//! or uses the same layout with tokio.

use std::io::{self, Read, Write};

/// Largest payload accepted. Output is chunked well below this; anything
/// larger is a corrupt stream, not a big message.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    // guest -> host
    Hello = 1,
    Ready = 2,
    Stdout = 3,
    Stderr = 4,
    Exited = 5,
    Fatal = 6,
    Log = 7,
    // host -> guest
    Setup = 64,
    Run = 65,
    Shutdown = 66,
    ExportChanges = 67,
    Resume = 68,
    RunTty = 69,
    Stdin = 70,
    Resize = 71,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Ready,
            3 => Self::Stdout,
            4 => Self::Stderr,
            5 => Self::Exited,
            6 => Self::Fatal,
            7 => Self::Log,
            64 => Self::Setup,
            65 => Self::Run,
            66 => Self::Shutdown,
            67 => Self::ExportChanges,
            68 => Self::Resume,
            69 => Self::RunTty,
            70 => Self::Stdin,
            71 => Self::Resize,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o on the control channel: {0}")]
    Io(#[from] io::Error),
    #[error("unknown frame kind {0} on the control channel (host and guest init out of sync? rebuild the initramfs)")]
    UnknownKind(u8),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN} byte limit (corrupt control stream)")]
    TooLarge(u32),
    #[error("malformed {kind:?} message: {source}")]
    Json {
        kind: FrameKind,
        #[source]
        source: serde_json::Error,
    },
    #[error("unexpected {0:?} frame in this direction")]
    Unexpected(FrameKind),
}

/// Encodes the 5-byte frame header.
pub fn header(kind: FrameKind, len: usize) -> Result<[u8; 5], FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    let l = len.to_le_bytes();
    Ok([kind as u8, l[0], l[1], l[2], l[3]])
}

/// Parses a 5-byte frame header into kind and payload length.
pub fn parse_header(h: [u8; 5]) -> Result<(FrameKind, u32), FrameError> {
    let kind = FrameKind::from_u8(h[0]).ok_or(FrameError::UnknownKind(h[0]))?;
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok((kind, len))
}

/// Writes one frame (header and payload in a single `write_all` when small).
pub fn write_frame<W: Write>(w: &mut W, kind: FrameKind, payload: &[u8]) -> Result<(), FrameError> {
    let h = header(kind, payload.len())?;
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` on a clean EOF before a header starts.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut h = [0u8; 5];
    let mut got = 0;
    while got < h.len() {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = parse_header(h)?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_many_frames() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Stdout, b"hello").unwrap();
        write_frame(&mut buf, FrameKind::Stderr, b"").unwrap();
        write_frame(&mut buf, FrameKind::Shutdown, &[0xff; 3]).unwrap();
        let mut r = &buf[..];
        let a = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            (a.kind, a.payload.as_slice()),
            (FrameKind::Stdout, &b"hello"[..])
        );
        let b = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((b.kind, b.payload.len()), (FrameKind::Stderr, 0));
        let c = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((c.kind, c.payload), (FrameKind::Shutdown, vec![0xff; 3]));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn truncated_frame_is_an_error_not_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Stdout, b"hello").unwrap();
        buf.truncate(7);
        assert!(matches!(read_frame(&mut &buf[..]), Err(FrameError::Io(_))));
        assert!(matches!(read_frame(&mut &buf[..3]), Err(FrameError::Io(_))));
    }

    #[test]
    fn rejects_unknown_kind_and_oversize() {
        assert!(matches!(
            parse_header([200, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(200))
        ));
        let big = (MAX_FRAME_LEN + 1).to_le_bytes();
        assert!(matches!(
            parse_header([3, big[0], big[1], big[2], big[3]]),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn every_kind_round_trips_through_u8() {
        for k in [
            FrameKind::Hello,
            FrameKind::Ready,
            FrameKind::Stdout,
            FrameKind::Stderr,
            FrameKind::Exited,
            FrameKind::Fatal,
            FrameKind::Log,
            FrameKind::Setup,
            FrameKind::Run,
            FrameKind::Shutdown,
        ] {
            assert_eq!(FrameKind::from_u8(k as u8), Some(k));
        }
    }
}
