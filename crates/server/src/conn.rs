//! The accept loop under [`crate::serve`] and [`crate::serve_tls`]: each
//! connection is served by hyper's HTTP/1 server with read timeouts, so a
//! slow client cannot hold the service. A request head must arrive within
//! `header_read_timeout_ms` (hyper closes the connection otherwise), and a
//! request body within `body_read_timeout_ms` of its head ([`TimedBody`];
//! the handler then answers `408 request_timeout`).
//!
//! axum's own `serve` has no such timeouts, so this is the loop it runs,
//! with the same graceful shutdown (stop accepting, let every connection
//! finish its request) and the peer address as `ConnectInfo<SocketAddr>`
//! for [`crate::net::guard`].

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::ConnectInfo,
};
use http_body::{Frame, SizeHint};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};

/// The read timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The most a request head may take.
    pub header: Duration,
    /// The most a request body may take, from the end of its head.
    pub body: Duration,
}

impl Timeouts {
    /// The timeouts `config` sets.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            header: Duration::from_millis(config.header_read_timeout_ms),
            body: Duration::from_millis(config.body_read_timeout_ms),
        }
    }
}

/// Serves `router` on every connection `listener` accepts until `signal`
/// resolves, then stops accepting and waits for open connections to finish
/// the request they are on.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    timeouts: Timeouts,
    signal: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let graceful = GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let req = req.map(|body| Body::new(TimedBody::new(body, timeouts.body)));
                let response = tower::ServiceExt::oneshot(router.clone(), req);
                async move { Ok::<_, Infallible>(response.await.unwrap_or_else(|e| match e {})) }
            });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A connection's errors (a reset, a head that timed out) end only
            // that connection.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The error a [`TimedBody`] yields once its deadline passed; the body
/// extractors' callers map it to `408` ([`crate::http::body_timed_out`]).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that must arrive by a deadline; past it, reading yields
/// [`BodyTimeout`] instead of waiting for more.
pub struct TimedBody<B> {
    /// The body hyper reads from the connection.
    inner: B,
    /// When the body must be complete; armed when the head was read.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Set once the deadline passed, so every later read fails at once.
    expired: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, due within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: false,
        }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.expired = true;
                    Poll::Ready(Some(Err(BodyTimeout.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
