//! Reading what is left of a request body before the answer goes out, so a
//! client that sends its whole body before it reads (Python's `urllib` and
//! `http.client`, and everything built on them) reads an early answer, such
//! as `413 payload_too_large` or a `401`, instead of a broken pipe.
//!
//! hyper closes a connection whose request body was not read to its end as
//! soon as the answer is written. Unread bytes still in the kernel's receive
//! buffer turn that close into a TCP reset, and a reset makes the client's
//! kernel drop the answer before the client reads it. So every request body
//! is wrapped: what the handler leaves unread is handed back here when the
//! handler drops it, and read and discarded, up to [`DRAIN_FACTOR`] times
//! `max_body_bytes` and for at most [`DRAIN_TIME`], before the answer goes
//! out. A body past that bound gets the answer with `Connection: close`
//! without waiting (a client still sending it may then see a reset).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::Response,
};
use http_body::{Frame, SizeHint};

/// How much of an unread body is read and discarded, as a multiple of
/// `max_body_bytes`: 8 MiB at the default 2 MiB cap.
pub const DRAIN_FACTOR: usize = 4;

/// The longest the answer waits for the rest of a body.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A body the handler did not read to its end.
struct Leftover {
    /// The rest of it.
    body: Body,
    /// Whether anyone asked for a frame; a client that sent
    /// `Expect: 100-continue` sends nothing until the body is polled.
    polled: bool,
}

/// Where a dropped [`Tracked`] body leaves what it did not yield.
type Slot = Arc<Mutex<Option<Leftover>>>;

/// The request body as the handler sees it: the real body, handed back to
/// [`Slot`] on drop if it was not read to its end.
struct Tracked {
    /// The real body; `None` only after drop took it.
    inner: Option<Body>,
    /// True once a frame was asked for.
    polled: bool,
    /// Where the rest goes on drop.
    slot: Slot,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        this.polled = true;
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|b| !b.is_end_stream()) {
            let leftover = Leftover {
                body,
                polled: self.polled,
            };
            *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(leftover);
        }
    }
}

/// The middleware: runs the request with a [`Tracked`] body, then reads and
/// discards whatever the handler left of it (within the bound) before
/// answering. The state is `max_body_bytes`.
pub async fn unread_body(State(max_body): State<usize>, req: Request, next: Next) -> Response {
    let bound = max_body.saturating_mul(DRAIN_FACTOR);
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = content_length(req.headers());
    let slot = Slot::default();
    let (parts, body) = req.into_parts();
    let tracked = Tracked {
        inner: Some(body),
        polled: false,
        slot: slot.clone(),
    };
    let mut response = next
        .run(Request::from_parts(parts, Body::new(tracked)))
        .await;
    let leftover = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(leftover) = leftover else {
        return response;
    };
    // The client waits for `100 Continue` before it sends the body, so it
    // reads this answer without having sent anything: nothing to drain.
    if expects_continue && !leftover.polled {
        return response;
    }
    let drained = declared.is_none_or(|n| n <= bound) && drain(leftover.body, bound).await;
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The `Content-Length` the client declared, if any.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads `body` to its end, discarding it; false if more than `bound` bytes
/// came, the client failed, or [`DRAIN_TIME`] passed first.
async fn drain(mut body: Body, bound: usize) -> bool {
    let read = async {
        let mut seen = 0usize;
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                    if seen > bound {
                        return false;
                    }
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}
