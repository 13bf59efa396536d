//! The live-output hub: for every job running on this node, a bounded
//! window of the output chunks its sandbox forwarded, which any number of
//! `GET /v1/jobs/{id}/events` streams read at their own pace.
//!
//! Readers never hold the job back: each keeps its own cursor into the
//! feed, and the feed keeps at most `live_buffer_bytes` of chunks (oldest
//! dropped first). A reader whose cursor fell out of the window is told so
//! with a gap (the bytes are in the job's final output). Feeds exist only on
//! the node that runs the job; see `docs/http-api.md` for what a stream on
//! another node sees.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use strictpy_sandbox::{LiveEvent, StreamKind};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// One chunk of output as a feed keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the feed (never reused).
    pub seq: u64,
    /// The stream.
    pub stream: StreamKind,
    /// Byte offset of `data` in the captured stream.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// True when the output cap was reached with this chunk.
    pub truncated: bool,
}

/// A feed's state under its mutex.
#[derive(Debug, Default)]
struct FeedInner {
    /// The retained chunks, oldest first.
    chunks: VecDeque<Chunk>,
    /// Bytes held in `chunks`.
    bytes: usize,
    /// The `seq` the next chunk gets.
    next_seq: u64,
    /// Set once the job's outcome is in the store: no more chunks.
    closed: bool,
}

/// The live output of one running job.
#[derive(Debug)]
pub struct Feed {
    /// The chunks and the closed flag.
    inner: Mutex<FeedInner>,
    /// Most bytes of chunks kept.
    window: usize,
    /// Bumped on every change, so readers can wait for one.
    version: watch::Sender<u64>,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedInner> {
        // Every update leaves the deque and its byte count consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds what the sandbox forwarded. A sandbox-level gap needs no entry:
    /// readers see the jump in offsets.
    pub fn push(&self, event: LiveEvent) {
        let LiveEvent::Output {
            stream,
            offset,
            data,
            truncated,
        } = event
        else {
            return;
        };
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += data.len();
        inner.chunks.push_back(Chunk {
            seq,
            stream,
            offset,
            data,
            truncated,
        });
        while inner.bytes > self.window && inner.chunks.len() > 1 {
            if let Some(old) = inner.chunks.pop_front() {
                inner.bytes -= old.data.len();
            }
        }
        if inner.bytes > self.window
            && let Some(only) = inner.chunks.front_mut()
        {
            // A single chunk larger than the window: keep its tail.
            let cut = only.data.len() - self.window;
            only.data.drain(..cut);
            only.offset += cut as u64;
            inner.bytes = self.window;
        }
        drop(inner);
        self.version.send_modify(|v| *v += 1);
    }

    /// The retained chunks with `seq >= from`, and whether the feed closed.
    pub fn read(&self, from: u64) -> (Vec<Chunk>, bool) {
        let inner = self.lock();
        let chunks = inner
            .chunks
            .iter()
            .filter(|c| c.seq >= from)
            .cloned()
            .collect();
        (chunks, inner.closed)
    }

    /// A receiver that changes whenever the feed does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Bytes of output held.
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.chunks.clear();
        inner.bytes = 0;
        drop(inner);
        self.version.send_modify(|v| *v += 1);
    }
}

/// Every feed of this node, by job id.
#[derive(Debug)]
pub struct Hub {
    /// The feeds of running jobs.
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
    /// Bytes of output each feed keeps.
    window: usize,
    /// Signalled whenever a feed opens, for streams waiting on a queued job.
    pub opened: Notify,
}

impl Hub {
    /// A hub whose feeds keep `window` bytes each.
    pub fn new(window: usize) -> Self {
        Self {
            feeds: Mutex::new(HashMap::new()),
            window: window.max(1),
            opened: Notify::new(),
        }
    }

    fn feeds(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the feed of job `id`, which just started here.
    pub fn open(&self, id: Uuid) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            inner: Mutex::new(FeedInner::default()),
            window: self.window,
            version: watch::channel(0).0,
        });
        self.feeds().insert(id, feed.clone());
        self.opened.notify_waiters();
        feed
    }

    /// The feed of job `id`, if it runs on this node.
    pub fn get(&self, id: Uuid) -> Option<Arc<Feed>> {
        self.feeds().get(&id).cloned()
    }

    /// Closes job `id`'s feed once its outcome is stored.
    pub fn close(&self, id: Uuid) {
        if let Some(feed) = self.feeds().remove(&id) {
            feed.close();
        }
    }

    /// Bytes of output held by every feed (for tests and metrics).
    pub fn held_bytes(&self) -> usize {
        self.feeds().values().map(|f| f.held_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(offset: u64, data: &[u8]) -> LiveEvent {
        LiveEvent::Output {
            stream: StreamKind::Stdout,
            offset,
            data: data.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn the_window_drops_the_oldest_chunks() {
        let hub = Hub::new(4);
        let feed = hub.open(Uuid::nil());
        feed.push(out(0, b"ab"));
        feed.push(out(2, b"cd"));
        feed.push(out(4, b"ef"));
        let (chunks, closed) = feed.read(0);
        assert!(!closed);
        assert_eq!(chunks.iter().map(|c| c.offset).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(hub.held_bytes(), 4);
        feed.push(out(6, b"0123456789"));
        let (chunks, _) = feed.read(0);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].offset, &chunks[0].data[..]), (12, &b"6789"[..]));
        hub.close(Uuid::nil());
        assert!(feed.read(0).1);
        assert!(hub.get(Uuid::nil()).is_none());
    }
}
