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
    use std::time::{Duration, Instant};

    /// Whether this process's socket at `local` connected to `peer` (the server's end of
    /// a test connection) has `TCP_NODELAY`; `None` until it is accepted.
    fn server_end_nodelay(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            // Borrowed, never closed: the fd belongs to the server (or to anyone else in
            // this process; on a non-socket the queries just fail).
            let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            if socket.local_addr().ok() == Some(local) && socket.peer_addr().ok() == Some(peer) {
                return socket.nodelay().ok();
            }
        }
        None
    }

    /// Connects to `addr` and waits (up to a generous deadline: the server accepts in
    /// its own task) for the server's end to show up.
    fn accepted_nodelay(addr: SocketAddr) -> bool {
        let client = TcpStream::connect(addr).unwrap();
        let peer = client.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(nodelay) = server_end_nodelay(addr, peer) {
                return nodelay;
            }
            assert!(Instant::now() < deadline, "the server never accepted {peer}");
            std::thread::sleep(Duration::from_millis(10));
        }
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
        let nodelay = tokio::task::spawn_blocking(move || accepted_nodelay(addr))
            .await
            .unwrap();
        assert!(nodelay, "the accepted connection has TCP_NODELAY");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_plain_listener_sets_tcp_nodelay_on_accepted_connections() {
        let listener = plain("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, router()).await });
        let nodelay = tokio::task::spawn_blocking(move || accepted_nodelay(addr))
            .await
            .unwrap();
        assert!(nodelay, "the accepted connection has TCP_NODELAY");
    }
}
