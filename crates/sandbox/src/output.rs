//! A capped in-memory sink for the guest's stdout and stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` fails the guest's write once it is full,
//! which would surface in Python as an `OSError` and change the program's
//! behaviour. This sink instead keeps the first `cap` bytes, notes that it cut
//! the rest, and tells the guest every write succeeded, so the run goes on.
//! With a [`LiveTap`] it also forwards what it keeps as it is written.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;

use crate::live::{LiveTap, StreamKind};
use wasmtime_wasi::{
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamError},
};

/// Shared state of one capped stream.
#[derive(Debug, Default)]
struct Inner {
    /// The bytes kept so far (at most the cap).
    buf: Vec<u8>,
    /// True once anything was dropped.
    truncated: bool,
}

/// A clonable handle to one capped stream; clones share the same buffer.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    /// The buffer and the truncation flag.
    inner: Arc<Mutex<Inner>>,
    /// How many bytes to keep.
    cap: usize,
    /// Where kept bytes are also forwarded, and as which stream.
    live: Option<(LiveTap, StreamKind)>,
}

impl Default for CappedOutput {
    /// A sink that keeps nothing (for runs whose output nobody reads).
    fn default() -> Self {
        Self::new(0)
    }
}

impl CappedOutput {
    /// A sink that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            cap,
            live: None,
        }
    }

    /// Also forwards every kept byte to `tap` as `stream`.
    pub fn forwarding(mut self, tap: Option<LiveTap>, stream: StreamKind) -> Self {
        self.live = tap.map(|t| (t, stream));
        self
    }

    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the
        // buffer is still a valid prefix, so keep using it.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(inner.buf.len());
        let was_truncated = inner.truncated;
        if bytes.len() > room {
            inner.truncated = true;
        }
        let take = bytes.len().min(room);
        let offset = inner.buf.len() as u64;
        inner.buf.extend_from_slice(&bytes[..take]);
        // Forward under the lock, so chunks leave in the order they were
        // kept. Past the cap only the first cut is worth telling.
        if let Some((tap, stream)) = &self.live
            && (take > 0 || inner.truncated != was_truncated)
        {
            tap.forward(*stream, offset, &bytes[..take], inner.truncated);
        }
    }

    /// The kept bytes and whether anything was cut.
    pub fn take(&self) -> (Vec<u8>, bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut inner.buf), inner.truncated)
    }
}

/// The most a single `check_write` grants; the guest loops for more.
const WRITE_BUDGET: usize = 1 << 20;

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prefix_and_flags_truncation() {
        let out = CappedOutput::new(5);
        out.push(b"abc");
        out.push(b"defgh");
        assert_eq!(out.take(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let out = CappedOutput::new(3);
        out.push(b"abc");
        assert_eq!(out.take(), (b"abc".to_vec(), false));
    }

    #[test]
    fn forwards_what_it_keeps_with_the_cut() {
        let (tap, got) = crate::live::collecting();
        let out = CappedOutput::new(5).forwarding(Some(tap), StreamKind::Stdout);
        out.push(b"abc");
        out.push(b"defgh");
        out.push(b"ij");
        let events = got.lock().unwrap().clone();
        assert_eq!(
            events,
            vec![
                crate::LiveEvent {
                    stream: StreamKind::Stdout,
                    offset: 0,
                    data: b"abc".to_vec(),
                    truncated: false
                },
                crate::LiveEvent {
                    stream: StreamKind::Stdout,
                    offset: 3,
                    data: b"de".to_vec(),
                    truncated: true
                },
            ]
        );
        assert_eq!(out.take(), (b"abcde".to_vec(), true));
    }
}
