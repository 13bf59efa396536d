//! Built-in TLS for `strictpy serve`: loading a PEM certificate chain and key
//! into a rustls (ring) server configuration, and [`TlsListener`], an axum
//! listener that hands out connections only once their handshake succeeded.
//!
//! Handshakes run in tasks of their own, so one slow or broken client can
//! neither hold up other connections nor stop the server.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    http::{HeaderValue, header},
    response::Response,
};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::config::TlsConfig;

/// The `Strict-Transport-Security` value sent on every TLS response: one
/// year, this host only (subdomains may be served by something else).
pub const HSTS: &str = "max-age=31536000";

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; past this, accepting waits.
const MAX_HANDSHAKES: usize = 1024;

/// Connections that finished their handshake and wait for the HTTP server.
const READY_QUEUE: usize = 64;

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls.cert` and `tls.key` is set.
    #[error("tls.cert and tls.key must be set together")]
    Incomplete,
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} {}: {message}", path.display())]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// rustls refused the pair (for example, the key does not match).
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls server configuration for `tls`, or `None` when TLS is off.
///
/// Uses the ring provider, TLS 1.2 and 1.3, and offers only HTTP/1.1 over
/// ALPN (the server speaks nothing else).
pub fn load(tls: &TlsConfig) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (cert, key) = match (&tls.cert, &tls.key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(TlsError::Incomplete),
    };
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        what: "certificate",
        path: path.to_owned(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Adds `Strict-Transport-Security` to a response (a `map_response`
/// middleware on the TLS router).
pub async fn hsts(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    response
}

/// An axum listener over TLS: a background task accepts TCP connections and
/// runs each handshake in a task of its own; `accept` yields the ones that
/// succeeded, with their peer address. Dropping the listener stops the
/// background task and every handshake still in progress.
#[derive(Debug)]
pub struct TlsListener {
    /// The bound address.
    local_addr: SocketAddr,
    /// Connections whose handshake succeeded.
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// The accept loop, aborted on drop.
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting TLS connections on `listener`. Must be called inside
    /// a tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let task = runtime.spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self {
            local_addr,
            ready,
            task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped (or its
            // task panicked): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and runs their handshakes until `ready` closes.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    // Owned here, so aborting this task aborts every handshake too.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if handshakes.len() < MAX_HANDSHAKES => {
                match accepted {
                    Ok((stream, peer)) => {
                        handshakes.spawn(handshake(acceptor.clone(), stream, peer, ready.clone()));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            () = ready.closed() => return,
        }
    }
}

/// One handshake; a failure or timeout only closes that connection.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Fails only when the server stopped listening.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// What axum does for its own TCP listener: errors of one connection are
/// ignored; anything else (such as running out of file descriptors) is
/// logged and retried after a pause, instead of spinning.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
