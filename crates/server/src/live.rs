//! The live-output hub: for every job running on this node, a bounded
//! window of the output chunks its sandbox forwarded, which any number of
//! `GET /v1/jobs/{id}/events` streams read at their own pace.
//!
//! Readers never hold the job back: each keeps its own cursor into the
//! feed, and the feed keeps at most `live_buffer_bytes` of chunks (oldest
//! dropped first). A reader whose cursor fell out of the window is told so
//! with a gap (the bytes are in the job's final output).
//!
//! In a cluster a node also keeps *mirrors*: feeds of jobs running on
//! another node that a stream here follows, filled from the chunks that
//! node publishes (`relay.rs`). A mirror is a [`Feed`] like any other, so
//! the SSE code, the resume and the gap logic are the same for both.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
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
    /// Per stream (stdout, stderr): the end of the furthest chunk taken.
    ends: [u64; 2],
    /// Per stream: a chunk with the truncation flag was taken.
    truncated: [bool; 2],
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
    /// A task publishes this feed to other nodes (`relay.rs`).
    pub publishing: AtomicBool,
    /// The publisher must start again from the oldest chunk held: a node
    /// began watching.
    pub rewind: AtomicBool,
    /// For a mirror: it heard its publisher (re)start, so the chunks it
    /// takes from then on are contiguous from the publisher's window.
    synced: AtomicBool,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedInner> {
        // Every update leaves the deque and its byte count consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new(window: usize) -> Self {
        Self {
            inner: Mutex::new(FeedInner::default()),
            window,
            version: watch::channel(0).0,
            publishing: AtomicBool::new(false),
            rewind: AtomicBool::new(false),
            synced: AtomicBool::new(false),
        }
    }

    /// Adds what the sandbox forwarded (or, for a mirror, what the owning
    /// node published). A mirror that missed chunks needs no entry for
    /// them: readers see the jump in offsets. Bytes already taken are
    /// dropped, so a publisher replaying its window for a new watcher
    /// repeats nothing here.
    pub fn push(&self, event: LiveEvent) {
        let LiveEvent {
            stream,
            mut offset,
            mut data,
            truncated,
        } = event;
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let k = usize::from(stream == StreamKind::Stderr);
        let end = offset + data.len() as u64;
        let have = inner.ends[k];
        if end < have || (end == have && (!truncated || inner.truncated[k])) {
            return;
        }
        if offset < have {
            data.drain(..usize::try_from(have - offset).unwrap_or(data.len()));
            offset = have;
        }
        inner.ends[k] = end;
        inner.truncated[k] |= truncated;
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

    /// Whether the feed closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
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

/// A mirror and the streams of this node following it.
#[derive(Debug)]
struct Mirrored {
    /// The feed.
    feed: Arc<Feed>,
    /// Streams holding a [`Mirror`] of it.
    readers: usize,
}

/// Every feed of this node, by job id.
#[derive(Debug)]
pub struct Hub {
    /// The feeds of running jobs.
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
    /// Mirrors of jobs running on other nodes that streams here follow.
    mirrors: Mutex<HashMap<Uuid, Mirrored>>,
    /// When another node last asked for each job's live output.
    watched: Mutex<HashMap<Uuid, Instant>>,
    /// Bytes of output each feed keeps.
    window: usize,
    /// A random token of this process, on its asks for other nodes' live
    /// output, so it ignores its own.
    pub origin: String,
    /// Signalled whenever a feed opens (here, or a mirror hears its
    /// publisher start), for streams waiting on a queued job.
    pub opened: Notify,
}

/// A stream's hold on a mirror; the mirror goes when its last one drops.
#[derive(Debug)]
pub struct Mirror<'a> {
    /// The hub it is in.
    hub: &'a Hub,
    /// The job.
    id: Uuid,
    /// The mirror's feed.
    feed: Arc<Feed>,
}

impl Mirror<'_> {
    /// The mirror's feed.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }
}

impl Drop for Mirror<'_> {
    fn drop(&mut self) {
        let mut mirrors = self.hub.mirrors();
        if let Some(m) = mirrors.get_mut(&self.id) {
            m.readers -= 1;
            if m.readers == 0 {
                mirrors.remove(&self.id);
            }
        }
    }
}

impl Hub {
    /// A hub whose feeds keep `window` bytes each.
    pub fn new(window: usize) -> Self {
        Self {
            feeds: Mutex::new(HashMap::new()),
            mirrors: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
            window: window.max(1),
            origin: Uuid::new_v4().simple().to_string(),
            opened: Notify::new(),
        }
    }

    fn feeds(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mirrors(&self) -> MutexGuard<'_, HashMap<Uuid, Mirrored>> {
        self.mirrors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watched(&self) -> MutexGuard<'_, HashMap<Uuid, Instant>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the feed of job `id`, which just started here.
    pub fn open(&self, id: Uuid) -> Arc<Feed> {
        let feed = Arc::new(Feed::new(self.window));
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

    /// Bytes of output held by every feed and mirror (for tests and
    /// metrics).
    pub fn held_bytes(&self) -> usize {
        let local: usize = self.feeds().values().map(|f| f.held_bytes()).sum();
        local
            + self
                .mirrors()
                .values()
                .map(|m| m.feed.held_bytes())
                .sum::<usize>()
    }

    /// A hold on the mirror of job `id` (running on another node), and
    /// whether it was just made (its publisher must then be asked to
    /// replay what it holds).
    pub fn mirror(&self, id: Uuid) -> (Mirror<'_>, bool) {
        let mut mirrors = self.mirrors();
        let mut made = false;
        let m = mirrors.entry(id).or_insert_with(|| {
            made = true;
            Mirrored {
                feed: Arc::new(Feed::new(self.window)),
                readers: 0,
            }
        });
        m.readers += 1;
        let feed = m.feed.clone();
        drop(mirrors);
        (
            Mirror {
                hub: self,
                id,
                feed,
            },
            made,
        )
    }

    /// The jobs this node mirrors.
    pub fn mirrored(&self) -> Vec<Uuid> {
        self.mirrors().keys().copied().collect()
    }

    /// The publisher of job `id` (re)started: its mirror here takes chunks
    /// from now on, and streams waiting for the job to start look again.
    pub fn mirror_opened(&self, id: Uuid) {
        if let Some(m) = self.mirrors().get(&id) {
            m.feed.synced.store(true, Ordering::SeqCst);
            self.opened.notify_waiters();
        }
    }

    /// A chunk published by the node running job `id`, for its mirror.
    /// Before the mirror heard its publisher start, chunks are ignored:
    /// they may be a replay's tail for another node, and the replay for
    /// this one starts at the publisher's oldest chunk.
    pub fn mirror_push(&self, id: Uuid, event: LiveEvent) {
        let feed = self.mirrors().get(&id).map(|m| m.feed.clone());
        if let Some(feed) = feed
            && feed.synced.load(Ordering::SeqCst)
        {
            feed.push(event);
        }
    }

    /// Every mirror waits for its publisher to start again (the `LISTEN`
    /// connection was lost, so chunks may have been missed); returns the
    /// jobs to ask for afresh.
    pub fn unsync_mirrors(&self) -> Vec<Uuid> {
        let mirrors = self.mirrors();
        for m in mirrors.values() {
            m.feed.synced.store(false, Ordering::SeqCst);
        }
        mirrors.keys().copied().collect()
    }

    /// Job `id` became final on some node: its mirror here closes.
    pub fn close_mirror(&self, id: Uuid) {
        let feed = self.mirrors().get(&id).map(|m| m.feed.clone());
        if let Some(feed) = feed {
            feed.close();
        }
    }

    /// Another node asked for job `id`'s live output.
    pub fn heard_watch(&self, id: Uuid, ttl: Duration) {
        let now = Instant::now();
        let mut watched = self.watched();
        watched.retain(|_, at| now.duration_since(*at) < ttl);
        watched.insert(id, now);
    }

    /// Whether some node asked for job `id`'s live output within `ttl`.
    pub fn is_watched(&self, id: Uuid, ttl: Duration) -> bool {
        self.watched().get(&id).is_some_and(|at| at.elapsed() < ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(offset: u64, data: &[u8]) -> LiveEvent {
        LiveEvent {
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

    #[test]
    fn a_mirror_takes_chunks_once_synced_and_never_twice() {
        let hub = Hub::new(1024);
        let id = Uuid::now_v7();
        let (first, made) = hub.mirror(id);
        assert!(made);
        hub.mirror_push(id, out(4, b"ef")); // before the publisher started
        hub.mirror_opened(id);
        hub.mirror_push(id, out(0, b"abcd"));
        hub.mirror_push(id, out(2, b"cdef")); // a replay overlapping it
        hub.mirror_push(id, out(0, b"ab")); // all had
        let (chunks, _) = first.feed().read(0);
        let got: Vec<(u64, &[u8])> = chunks.iter().map(|c| (c.offset, &c.data[..])).collect();
        assert_eq!(got, [(0, &b"abcd"[..]), (4, &b"ef"[..])]);
        let (second, made) = hub.mirror(id);
        assert!(!made);
        assert_eq!(hub.mirrored(), [id]);
        drop(first);
        assert_eq!(hub.mirrored(), [id]);
        hub.close_mirror(id);
        assert!(second.feed().is_closed());
        drop(second);
        assert!(hub.mirrored().is_empty());
    }

    #[test]
    fn watches_expire() {
        let hub = Hub::new(16);
        let id = Uuid::now_v7();
        assert!(!hub.is_watched(id, Duration::from_secs(5)));
        hub.heard_watch(id, Duration::from_secs(5));
        assert!(hub.is_watched(id, Duration::from_secs(5)));
        assert!(!hub.is_watched(id, Duration::ZERO));
    }
}
