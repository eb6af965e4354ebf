//! `kubectl ganeti vnc`: a local TCP port relayed to the VM's `vnc` websocket
//! subresource (like `virtctl vnc --proxy-only`), one websocket per TCP connection.
//!
//! Framing (the channel protocol `v4/v5.channel.k8s.io`): each binary message starts with
//! its channel: RFB bytes to the VM on 0, from the VM on 1, an error text on 3; v5 adds
//! `[255, channel]` to close a channel.

use super::client::{About, describe};
use super::resolve::{instance_path, resolve};
use anyhow::Context as _;
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use kube::Client;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tungstenite::Message;

/// RFB bytes to the VM.
pub const TO_VM: u8 = 0;
/// RFB bytes from the VM.
pub const FROM_VM: u8 = 1;
/// An error text from the server.
pub const ERROR: u8 = 3;
/// v5: `[255, channel]` closes that channel.
pub const CLOSE: u8 = 255;

/// One websocket message: the channel byte, then the data.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// A websocket message's channel and data; `None` for an empty message (no channel).
pub fn decode(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(channel, data)| (*channel, data))
}

/// The error channel's text: a `metav1.Status` (v4) as its message, else the text;
/// `None` when it reports success or is empty.
pub fn error_text(data: &[u8]) -> Option<String> {
    if let Ok(serde_json::Value::Object(status)) = serde_json::from_slice(data)
        && let Some(outcome) = status.get("status").and_then(|s| s.as_str())
    {
        if outcome == "Success" {
            return None;
        }
        if let Some(message) = status.get("message").and_then(|m| m.as_str())
            && !message.is_empty()
        {
            return Some(message.to_string());
        }
    }
    let text = String::from_utf8_lossy(data).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// How a relayed connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The VNC viewer closed its connection.
    ViewerClosed,
    /// The server closed the websocket (or the VM's channel).
    ServerClosed,
    /// The server reported an error on channel 3.
    ServerError(String),
}

/// Relays RFB bytes between a viewer's connection and the websocket until either side
/// closes, then closes the other.
pub async fn relay<T, W>(viewer: T, websocket: W) -> Result<End, tungstenite::Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
    W: Stream<Item = Result<Message, tungstenite::Error>> + Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let (mut from_viewer, mut to_viewer) = tokio::io::split(viewer);
    let (mut to_server, mut from_server) = websocket.split();
    let upstream = async {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let n = from_viewer.read(&mut buffer).await?;
            if n == 0 {
                return Ok(End::ViewerClosed);
            }
            let message = encode(TO_VM, &buffer[..n]);
            to_server.send(Message::Binary(message.into())).await?;
        }
    };
    let downstream = async {
        while let Some(message) = from_server.next().await {
            let data = match message? {
                Message::Binary(data) => data,
                Message::Close(_) => return Ok(End::ServerClosed),
                // Pings are answered by tungstenite; text is not part of the protocol.
                _ => continue,
            };
            match decode(&data) {
                Some((FROM_VM, rfb)) => {
                    to_viewer.write_all(rfb).await?;
                    to_viewer.flush().await?;
                }
                Some((ERROR, text)) => match error_text(text) {
                    Some(text) => return Ok(End::ServerError(text)),
                    None => return Ok(End::ServerClosed),
                },
                Some((CLOSE, _)) => return Ok(End::ServerClosed),
                // Empty messages open channels (the server's hello); others are unknown.
                _ => {}
            }
        }
        Ok(End::ServerClosed)
    };
    let end: Result<End, tungstenite::Error> = tokio::select! {
        end = upstream => end,
        end = downstream => end,
    };
    // Whichever side ended, end the other too; errors here change nothing.
    let _ = to_server.send(Message::Close(None)).await;
    let _ = to_server.close().await;
    let _ = to_viewer.shutdown().await;
    end
}

/// Listens on `address:port`, prints `vnc://address:port`, and relays every accepted
/// connection to the VM's console until Ctrl-C.
pub async fn serve(client: &Client, name: &str, address: IpAddr, port: u16) -> anyhow::Result<()> {
    let vm = resolve(client, name).await?;
    let path = instance_path(vm.name(), Some("vnc"));
    let listener = tokio::net::TcpListener::bind((address, port))
        .await
        .with_context(|| format!("listening on {}", SocketAddr::from((address, port))))?;
    let local = listener.local_addr()?;
    println!("{}", vnc_url(local));
    eprintln!(
        "relaying to the console of {} (cluster {}); Ctrl-C stops",
        vm.instance_name(),
        vm.spec.cluster
    );
    loop {
        let (viewer, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (client, path, name) = (client.clone(), path.clone(), name.to_string());
        tokio::spawn(async move {
            match connect_and_relay(&client, &path, &name, viewer).await {
                Ok(End::ViewerClosed | End::ServerClosed) => eprintln!("{peer}: closed"),
                Ok(End::ServerError(text)) => eprintln!("{peer}: the server ended it: {text}"),
                Err(error) => eprintln!("{peer}: {error:#}"),
            }
        });
    }
}

/// Opens the `vnc` websocket at `path` and relays `viewer` through it.
pub async fn connect_and_relay(
    client: &Client,
    path: &str,
    name: &str,
    viewer: tokio::net::TcpStream,
) -> anyhow::Result<End> {
    let request = http::Request::get(path).body(Vec::new())?;
    let connection = match client.connect(request).await {
        Ok(connection) => connection,
        Err(kube::Error::Api(status)) => {
            anyhow::bail!("{}", describe(&status, &About::Vm(name), true))
        }
        Err(error) => return Err(anyhow::Error::new(error).context("opening the console")),
    };
    Ok(relay(viewer, connection.into_stream()).await?)
}

/// `vnc://127.0.0.1:5900`, `vnc://[::1]:5900`.
pub fn vnc_url(address: SocketAddr) -> String {
    format!("vnc://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(encode(TO_VM, b"RFB 003.008\n"), b"\x00RFB 003.008\n");
        assert_eq!(encode(FROM_VM, b""), [1]);
        assert_eq!(decode(b"\x01abc"), Some((FROM_VM, &b"abc"[..])));
        assert_eq!(decode(&[3]), Some((ERROR, &b""[..])));
        assert_eq!(decode(b""), None);
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(7, &data)), Some((7, &data[..])));
    }

    #[test]
    fn the_error_channel_reads_as_text_or_status() {
        assert_eq!(
            error_text(b"no VNC on this VM\n").as_deref(),
            Some("no VNC on this VM")
        );
        assert_eq!(error_text(b""), None);
        let failure = br#"{"kind":"Status","status":"Failure","message":"VM is down","code":409}"#;
        assert_eq!(error_text(failure).as_deref(), Some("VM is down"));
        assert_eq!(error_text(br#"{"status":"Success"}"#), None);
        assert_eq!(error_text(br#"{"other":1}"#).as_deref(), Some(r#"{"other":1}"#));
    }

    #[test]
    fn urls() {
        assert_eq!(vnc_url("127.0.0.1:5901".parse().unwrap()), "vnc://127.0.0.1:5901");
        assert_eq!(vnc_url("[::1]:5901".parse().unwrap()), "vnc://[::1]:5901");
    }
}
