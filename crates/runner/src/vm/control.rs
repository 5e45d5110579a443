//! The host end of the control channel: frames over the unix socket that
//! QEMU bridges to the guest's virtio-serial port.
//!
//! Reading runs in its own task that forwards decoded messages on a channel,
//! so the session can `select!` on messages, QEMU's exit, the deadline and
//! Ctrl-C without losing half-read frames.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use vmbuild_proto::{parse_header, FrameError, GuestMessage, HostMessage, Message};

/// What the reader task reports.
#[derive(Debug)]
pub enum Incoming {
    Message(GuestMessage),
    /// The stream broke or carried garbage.
    Broken(String),
}

pub struct ControlChannel {
    writer: OwnedWriteHalf,
    incoming: mpsc::Receiver<Incoming>,
}

impl ControlChannel {
    pub fn new(stream: UnixStream) -> Self {
        let (reader, writer) = stream.into_split();
        // Small buffer: backpressure reaches the guest through the socket.
        let (tx, incoming) = mpsc::channel(16);
        tokio::spawn(read_loop(reader, tx));
        Self { writer, incoming }
    }

    /// The next message; `None` once the guest side is closed (QEMU exited).
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    pub async fn send(&mut self, msg: &HostMessage) -> std::io::Result<()> {
        let (kind, payload) = msg.encode();
        let h = vmbuild_proto::header(kind, payload.len())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut buf = Vec::with_capacity(h.len() + payload.len());
        buf.extend_from_slice(&h);
        buf.extend_from_slice(&payload);
        self.writer.write_all(&buf).await?;
        self.writer.flush().await
    }
}

async fn read_one(r: &mut OwnedReadHalf) -> Result<Option<GuestMessage>, FrameError> {
    let mut h = [0u8; 5];
    let mut got = 0;
    while got < h.len() {
        let n = r.read(&mut h[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    let (kind, len) = parse_header(h)?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    GuestMessage::decode(kind, payload).map(Some)
}

async fn read_loop(mut r: OwnedReadHalf, tx: mpsc::Sender<Incoming>) {
    loop {
        let item = match read_one(&mut r).await {
            Ok(Some(m)) => Incoming::Message(m),
            Ok(None) => return,
            Err(e) => Incoming::Broken(e.to_string()),
        };
        let stop = matches!(item, Incoming::Broken(_));
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_proto::{ExitInfo, Setup};

    #[tokio::test]
    async fn messages_flow_both_ways_and_eof_ends_the_stream() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut ch = ControlChannel::new(a);
        ch.send(&HostMessage::Setup(Setup::default()))
            .await
            .unwrap();
        // Guest side, written by hand with the sync encoder.
        let mut buf = Vec::new();
        GuestMessage::Stdout(b"out".to_vec())
            .write_to(&mut buf)
            .unwrap();
        GuestMessage::Exited(ExitInfo {
            code: Some(3),
            signal: None,
            started_us: 1,
            ended_us: 2,
            oom: None,
        })
        .write_to(&mut buf)
        .unwrap();
        b.write_all(&buf).await.unwrap();
        let mut got = vec![0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], vmbuild_proto::FrameKind::Setup as u8);
        // Read the payload too: closing with unread data resets the peer.
        let len = u32::from_le_bytes([got[1], got[2], got[3], got[4]]) as usize;
        let mut payload = vec![0u8; len];
        b.read_exact(&mut payload).await.unwrap();
        drop(b);
        assert!(
            matches!(ch.recv().await, Some(Incoming::Message(GuestMessage::Stdout(o))) if o == b"out")
        );
        assert!(
            matches!(ch.recv().await, Some(Incoming::Message(GuestMessage::Exited(e))) if e.code == Some(3))
        );
        assert!(ch.recv().await.is_none());
    }

    #[tokio::test]
    async fn garbage_is_reported_not_hung_on() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut ch = ControlChannel::new(a);
        b.write_all(&[250, 0, 0, 0, 0]).await.unwrap();
        assert!(
            matches!(ch.recv().await, Some(Incoming::Broken(e)) if e.contains("unknown frame kind"))
        );
    }
}
