//! Live output across a cluster: a stream opened on one node follows a job
//! running on another through the database's notifications.
//!
//! The stream's node keeps a mirror of the job (`live::Hub::mirror`) and
//! asks for it on `strictpy_watch` (`fresh` when the mirror is new, then a
//! `renew` every [`RENEW`] for as long as a stream here holds it). The
//! node running the job publishes its feed on `strictpy_live` only while a
//! watch is younger than [`WATCH_TTL`]: an `open` marker whenever it
//! (re)starts from the oldest chunk it holds, then the chunks, coalesced
//! for [`COALESCE`] into notices of at most 4 KiB. The publisher is a task
//! reading the feed like any stream: it never touches the guest's path,
//! and when it falls behind the feed's window its next chunk simply starts
//! further on, which the watcher's streams report as a gap, exactly as for
//! a slow local reader. The mirror is a feed like the local one, so the
//! SSE code, `Last-Event-ID` and gaps are one implementation.

use std::time::Duration;

use strictpy_sandbox::{LiveEvent, StreamKind};
use strictpy_store::{LiveChunk, LiveNotice, MAX_LIVE_DATA, Watch};
use uuid::Uuid;

use crate::{
    AppState,
    live::{Chunk, Feed, Mirror},
};

/// How long a publisher gathers chunks before it sends them.
pub const COALESCE: Duration = Duration::from_millis(50);

/// How often a node renews its watches.
pub const RENEW: Duration = Duration::from_secs(2);

/// How long a watch lasts without renewal: a node that stopped asking
/// (its streams ended, or it died) stops the publishing.
pub const WATCH_TTL: Duration = Duration::from_secs(6);

/// A stream's hold on the mirror of job `id`, running elsewhere; a new
/// mirror asks the owning node to replay what it holds.
pub fn watch(state: &AppState, id: Uuid) -> Mirror<'_> {
    let (mirror, made) = state.live.mirror(id);
    if made {
        ask(state, vec![id], true);
    }
    mirror
}

/// Sends a watch for `jobs` in the background.
fn ask(state: &AppState, jobs: Vec<Uuid>, fresh: bool) {
    let Some(q) = state.queue.database() else {
        return;
    };
    let store = q.store.clone();
    let origin = state.live.origin.clone();
    state.runtime.spawn(async move {
        if let Err(e) = store.notify_watch(&origin, &jobs, fresh).await {
            tracing::debug!(error = %e, "cannot ask for live output");
        }
    });
}

/// The renewal task of a node's watches, until the cluster tasks stop.
pub async fn renew(state: AppState) {
    let mut ticker = tokio::time::interval(RENEW);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !state
        .cluster_stopped
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        ticker.tick().await;
        let jobs = state.live.mirrored();
        if !jobs.is_empty()
            && let Some(q) = state.queue.database()
            && let Err(e) = q.store.notify_watch(&state.live.origin, &jobs, false).await
        {
            tracing::debug!(error = %e, "cannot renew live-output watches");
        }
    }
}

/// The `LISTEN` connection came back: notices may have been lost, so
/// every mirror starts over from its publisher's window.
pub fn resync(state: &AppState) {
    let jobs = state.live.unsync_mirrors();
    if !jobs.is_empty() {
        ask(state, jobs, true);
    }
}

/// Another node asked for these jobs' live output: those running here are
/// published.
pub fn on_watch(state: &AppState, watch: Watch) {
    if watch.origin == state.live.origin {
        return; // this node's own ask: it reads its own feeds directly
    }
    for id in watch.jobs {
        state.live.heard_watch(id, WATCH_TTL);
        if let Some(feed) = state.live.get(id) {
            if watch.fresh {
                feed.rewind.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            start(state, id, &feed);
        }
    }
}

/// Job `id` just started here: publish it at once if it is watched
/// already (a stream elsewhere waited for it while it was queued).
pub fn on_open(state: &AppState, id: Uuid, feed: &std::sync::Arc<Feed>) {
    if state.live.is_watched(id, WATCH_TTL) {
        start(state, id, feed);
    }
}

/// What another node published, for this node's mirrors.
pub fn on_live(state: &AppState, notice: LiveNotice) {
    match notice {
        LiveNotice::Open(id) => state.live.mirror_opened(id),
        LiveNotice::Chunk(c) => state.live.mirror_push(
            c.job,
            LiveEvent {
                stream: if c.stderr {
                    StreamKind::Stderr
                } else {
                    StreamKind::Stdout
                },
                offset: c.offset,
                data: c.data,
                truncated: c.truncated,
            },
        ),
    }
}

/// Starts the publisher of job `id`'s feed unless one runs.
fn start(state: &AppState, id: Uuid, feed: &std::sync::Arc<Feed>) {
    use std::sync::atomic::Ordering::SeqCst;
    if state.queue.database().is_none() || feed.publishing.swap(true, SeqCst) {
        return;
    }
    feed.rewind.store(true, SeqCst);
    let state2 = state.clone();
    let feed = feed.clone();
    state.runtime.spawn(async move {
        loop {
            publish(&state2, id, &feed).await;
            feed.publishing.store(false, SeqCst);
            // A watch heard just before the flag dropped found a publisher
            // running and started none: carry on for it.
            if feed.is_closed()
                || !state2.live.is_watched(id, WATCH_TTL)
                || feed.publishing.swap(true, SeqCst)
            {
                return;
            }
        }
    });
}

/// Publishes `feed` while job `id` is watched and the feed is open.
async fn publish(state: &AppState, id: Uuid, feed: &Feed) {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(q) = state.queue.database() else {
        return;
    };
    let mut changes = feed.watch();
    let mut next = 0;
    loop {
        changes.borrow_and_update();
        let mut notices = Vec::new();
        if feed.rewind.swap(false, SeqCst) {
            next = 0;
            notices.push(LiveNotice::Open(id));
        }
        let (chunks, closed) = feed.read(next);
        if closed {
            return;
        }
        if let Some(last) = chunks.last() {
            next = last.seq + 1;
        }
        notices.extend(coalesce(id, &chunks).into_iter().map(LiveNotice::Chunk));
        if !notices.is_empty()
            && let Err(e) = q.store.publish_live(&notices).await
        {
            // Dropped: the watchers see a gap, the final output has it.
            tracing::debug!(%id, error = %e, "cannot publish live output");
        }
        if !state.live.is_watched(id, WATCH_TTL) {
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RENEW) => {},
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// `chunks` as notices: neighbouring chunks of one stream joined up to
/// [`MAX_LIVE_DATA`] bytes, bigger ones split; a truncated chunk ends its
/// notice.
fn coalesce(job: Uuid, chunks: &[Chunk]) -> Vec<LiveChunk> {
    let mut out: Vec<LiveChunk> = Vec::new();
    for chunk in chunks {
        let stderr = chunk.stream == StreamKind::Stderr;
        let mut at = chunk.offset;
        let mut pieces: Vec<&[u8]> = chunk.data.chunks(MAX_LIVE_DATA).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let truncated = chunk.truncated && i == last;
            match out.last_mut() {
                Some(prev)
                    if prev.stderr == stderr
                        && !prev.truncated
                        && prev.offset + prev.data.len() as u64 == at
                        && prev.data.len() + piece.len() <= MAX_LIVE_DATA =>
                {
                    prev.data.extend_from_slice(piece);
                    prev.truncated = truncated;
                }
                _ => out.push(LiveChunk {
                    job,
                    stderr,
                    offset: at,
                    data: piece.to_vec(),
                    truncated,
                }),
            }
            at += piece.len() as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, stream: StreamKind, offset: u64, len: usize, truncated: bool) -> Chunk {
        Chunk {
            seq,
            stream,
            offset,
            data: vec![b'x'; len],
            truncated,
        }
    }

    #[test]
    fn neighbours_join_and_big_chunks_split() {
        use StreamKind::{Stderr, Stdout};
        let job = Uuid::nil();
        let got = coalesce(
            job,
            &[
                chunk(0, Stdout, 0, 10, false),
                chunk(1, Stdout, 10, 5, false),
                chunk(2, Stderr, 0, 3, false),
                chunk(3, Stdout, 15, 2 * MAX_LIVE_DATA + 1, false),
                chunk(4, Stdout, 20_000, 4, true),
                chunk(5, Stdout, 20_004, 0, true),
            ],
        );
        let shape: Vec<(bool, u64, usize, bool)> = got
            .iter()
            .map(|c| (c.stderr, c.offset, c.data.len(), c.truncated))
            .collect();
        let m = MAX_LIVE_DATA;
        assert_eq!(
            shape,
            [
                (false, 0, 15, false),
                (true, 0, 3, false),
                (false, 15, m, false),
                (false, 15 + m as u64, m, false),
                (false, 15 + 2 * m as u64, 1, false),
                (false, 20_000, 4, true),
                (false, 20_004, 0, true),
            ]
        );
    }
}
