//! Carries RFB between a websocket and a VM's VNC server: raw binary messages for the
//! browser's noVNC, or Kubernetes' channel framing (`v4`/`v5.channel.k8s.io`, what
//! kube clients speak through the aggregation layer) for the `vnc` subresource.

use super::{IDLE_TIMEOUT, MAX_SESSION};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Who and what a session is, for its closing audit line.
pub struct Session {
    pub user: String,
    pub cluster: String,
    pub instance: String,
    pub uuid: String,
}

/// How bytes travel in websocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The message is the data.
    Raw,
    /// The first byte is the channel: the client writes on 0 (stdin), the server on 1
    /// (stdout).
    Channel,
}

/// The subprotocols of [`Framing::Channel`], most preferred first.
pub const CHANNEL_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;

impl Framing {
    /// The data a client's message carries for the VM (`None`: not data, e.g. a
    /// resize or close-stream message on another channel).
    pub fn unwrap(self, message: &[u8]) -> Option<&[u8]> {
        match self {
            Self::Raw => Some(message),
            Self::Channel => match message.split_first() {
                Some((&STDIN, data)) => Some(data),
                _ => None,
            },
        }
    }

    /// The message that carries `data` from the VM.
    pub fn wrap(self, data: &[u8]) -> Bytes {
        match self {
            Self::Raw => Bytes::copy_from_slice(data),
            Self::Channel => {
                let mut out = Vec::with_capacity(data.len() + 1);
                out.push(STDOUT);
                out.extend_from_slice(data);
                Bytes::from(out)
            }
        }
    }
}

/// Carries bytes both ways until either side closes, the session is idle for
/// [`IDLE_TIMEOUT`], or it has lasted [`MAX_SESSION`].
pub async fn relay(socket: WebSocket, tcp: TcpStream, session: Session, framing: Framing) {
    let (mut to_client, mut from_client) = socket.split();
    let (mut from_vnc, mut to_vnc) = tcp.into_split();
    let (mut sent, mut received) = (0u64, 0u64);
    // Any data either way keeps the session alive (a stored permit if nobody waits).
    let activity = tokio::sync::Notify::new();
    let upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            let data = match message {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_str().as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some(data) = framing.unwrap(&data) else {
                continue;
            };
            if to_vnc.write_all(data).await.is_err() {
                break;
            }
            sent += data.len() as u64;
            activity.notify_one();
        }
        let _ = to_vnc.shutdown().await;
    };
    let (close_tx, mut close_rx) = tokio::sync::mpsc::channel::<()>(1);
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                read = from_vnc.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received += n as u64;
                        activity.notify_one();
                        if to_client.send(Message::Binary(framing.wrap(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                },
                _ = close_rx.recv() => break,
            }
        }
        let _ = to_client.send(Message::Close(None)).await;
    };
    let limits = async {
        let idle = async {
            while tokio::time::timeout(IDLE_TIMEOUT, activity.notified())
                .await
                .is_ok()
            {}
        };
        let why = tokio::select! {
            () = idle => "idle",
            () = tokio::time::sleep(MAX_SESSION) => "maximum length",
        };
        // The client is told the session closed (downstream sends Close).
        let _ = close_tx.send(()).await;
        why
    };
    tokio::pin!(limits);
    let ended = tokio::select! {
        () = upstream => "closed by the client",
        () = downstream => "closed",
        why = &mut limits => why,
    };
    tracing::info!(
        user = %session.user,
        cluster = %session.cluster,
        vm = %session.instance,
        vm_uuid = %session.uuid,
        bytes_to_vm = sent,
        bytes_from_vm = received,
        ended,
        "console session ended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_framing_reads_stdin_and_writes_stdout() {
        assert_eq!(Framing::Channel.unwrap(&[0, b'R', b'F', b'B']), Some(&b"RFB"[..]));
        // A resize (4) or a v5 close (255) is no data for the VM.
        assert_eq!(Framing::Channel.unwrap(&[4, 1, 2]), None);
        assert_eq!(Framing::Channel.unwrap(&[]), None);
        assert_eq!(&Framing::Channel.wrap(b"RFB")[..], &[1, b'R', b'F', b'B']);
        assert_eq!(Framing::Raw.unwrap(&[0, 1]), Some(&[0u8, 1][..]));
        assert_eq!(&Framing::Raw.wrap(b"x")[..], b"x");
    }
}
