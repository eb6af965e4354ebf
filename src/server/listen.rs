//! How every listener of the operator accepts connections: with `TCP_NODELAY`.
//!
//! A response's last, partial TCP segment otherwise waits for the client's ACK of the
//! one before (Nagle), which a client sends only after its delayed-ACK timer (40 ms on
//! Linux). A 10k-VM Table LIST then took 60–70 ms one time in ten instead of ~22 ms; a
//! streamed `/metrics` or a watch event line can stall the same way.

use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use std::net::SocketAddr;

/// A TLS server on `addr`.
pub fn tls(
    addr: SocketAddr,
    config: RustlsConfig,
) -> axum_server::Server<SocketAddr, RustlsAcceptor<NoDelayAcceptor>> {
    axum_server::bind(addr).acceptor(acceptor(config))
}

/// A TLS server on a listener already bound (tests and benchmarks bind port 0).
pub fn tls_from_tcp(
    listener: std::net::TcpListener,
    config: RustlsConfig,
) -> std::io::Result<axum_server::Server<SocketAddr, RustlsAcceptor<NoDelayAcceptor>>> {
    Ok(axum_server::from_tcp(listener)?.acceptor(acceptor(config)))
}

fn acceptor(config: RustlsConfig) -> RustlsAcceptor<NoDelayAcceptor> {
    RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new())
}

/// A plain-HTTP listener for `axum::serve` (a concrete type: `ConnectInfo` needs it).
pub async fn plain(addr: SocketAddr) -> std::io::Result<PlainListener> {
    use axum::serve::ListenerExt as _;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(listener.tap_io(set_nodelay as fn(&mut tokio::net::TcpStream)))
}

pub type PlainListener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

fn set_nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::ManuallyDrop;
    use std::net::TcpStream;
    use std::os::fd::FromRawFd;

    /// Whether this process's accepted socket on `local` (the server's end of the test's
    /// one connection) has `TCP_NODELAY`.
    fn server_end_nodelay(local: SocketAddr) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            // Borrowed, never closed: the fd belongs to the server (or to anyone else in
            // this process; on a non-socket the queries just fail).
            let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            // The listener has no peer; an accepted connection has.
            if socket.local_addr().ok() == Some(local) && socket.peer_addr().is_ok() {
                return socket.nodelay().ok();
            }
        }
        None
    }

    /// GETs `/` at `addr` (so the connection has been accepted and served, not only
    /// queued), then, with the kept-alive connection still open, reads the option.
    async fn served_nodelay(scheme: &str, addr: SocketAddr) -> bool {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let response = client.get(format!("{scheme}://{addr}/")).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        assert_eq!(response.text().await.unwrap(), "ok");
        let nodelay = tokio::task::spawn_blocking(move || server_end_nodelay(addr))
            .await
            .unwrap()
            .expect("the server's end of the connection is open");
        drop(client);
        nodelay
    }

    fn router() -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tls_listener_sets_tcp_nodelay_on_accepted_connections() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tls_from_tcp(listener, config).unwrap();
        tokio::spawn(server.serve(router().into_make_service()));
        assert!(
            served_nodelay("https", addr).await,
            "the accepted connection has TCP_NODELAY"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_plain_listener_sets_tcp_nodelay_on_accepted_connections() {
        let listener = plain("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, router()).await });
        assert!(
            served_nodelay("http", addr).await,
            "the accepted connection has TCP_NODELAY"
        );
    }
}
