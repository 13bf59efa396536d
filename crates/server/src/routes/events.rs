//! `GET /v1/jobs/{id}/events`: a job's life as Server-Sent Events: `status`
//! on every transition, `stdout`/`stderr` chunks as the program writes them,
//! `gap` when this reader fell behind the live window, and one `final` with
//! the whole job, after which the stream ends.
//!
//! Event ids are positions, not counters: `S-O-E` is the last status rank
//! seen (1 queued, 2 running, 3 final) and the bytes of stdout and stderr
//! delivered. A reconnecting client's `Last-Event-ID` therefore means the
//! same thing whether the job is still running (the rest comes from the
//! node's live feed) or finished meanwhile (the rest comes from the stored
//! output), so nothing is lost or sent twice. The `final` event's id is
//! `final`; resuming after it answers `204`, which also tells a browser's
//! `EventSource` to stop reconnecting.
//!
//! A job running on another node of a cluster is followed through its
//! mirror here (`relay.rs`): the same feed reading, so a stream resumed on
//! a different node than the first connection continues at its id too.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body::Frame;
use serde_json::{Value, json};
use strictpy_sandbox::StreamKind;
use strictpy_store::JobRecord;
use strictpy_types::JobStatus;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, Scope},
    error::{ApiError, ErrorBody},
    live::{Chunk, Feed},
    relay,
    views::JobView,
};

/// How often a stream on a job that is not running here re-reads the store
/// (the job may be queued, or running on another node).
const POLL: Duration = Duration::from_millis(250);

/// How long a stream follows a mirror before it re-reads the store, in
/// case the notice of the job's end was lost.
const RECHECK: Duration = Duration::from_secs(1);

/// How long a stream may be silent before a comment keeps proxies from
/// closing it.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Encoded events waiting for the client per stream. With the feed's window
/// this bounds a slow reader's memory: beyond it the reader's task waits,
/// and what the window dropped meanwhile becomes a gap.
const OUTBOX: usize = 16;

/// Status ranks in event ids.
const QUEUED: u8 = 1;
/// See [`QUEUED`].
const RUNNING: u8 = 2;
/// See [`QUEUED`].
const FINAL: u8 = 3;

/// Where a reader stands: what it was sent so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    /// The highest status rank sent.
    status: u8,
    /// Bytes of stdout and stderr sent (or reported as a gap).
    sent: [u64; 2],
    /// Bytes received after `sent` but held back: the start of a UTF-8
    /// character whose rest has not arrived.
    carry: [Vec<u8>; 2],
}

impl Cursor {
    /// Parses a `Last-Event-ID`: `S-O-E`.
    fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.trim().split('-');
        let status: u8 = parts.next()?.parse().ok()?;
        let out: u64 = parts.next()?.parse().ok()?;
        let err: u64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || status > FINAL {
            return None;
        }
        Some(Self {
            status,
            sent: [out, err],
            carry: Default::default(),
        })
    }

    fn id(&self) -> String {
        format!("{}-{}-{}", self.status, self.sent[0], self.sent[1])
    }
}

fn slot(stream: StreamKind) -> usize {
    match stream {
        StreamKind::Stdout => 0,
        StreamKind::Stderr => 1,
    }
}

fn stream_name(stream: StreamKind) -> &'static str {
    match stream {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    }
}

fn rank(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => QUEUED,
        JobStatus::Running => RUNNING,
        _ => FINAL,
    }
}

/// How many bytes at the end of `buf` start a UTF-8 character that is not
/// complete yet (0 to 3).
fn incomplete_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// One SSE frame; `data` is one line of JSON.
/// One event as a Server-Sent Events parser reads it off the wire (the
/// stream itself is `event:`, `id:` and `data:` lines; keep-alive comments
/// are not events). This is the document's schema of each event.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: events are written by `frame`.
pub struct StreamEvent {
    /// What happened.
    pub event: StreamEventKind,
    /// Where the stream is: `S-O-E` (status rank, stdout and stderr bytes
    /// sent), or `final`; send it back as `Last-Event-ID` to resume.
    #[schema(pattern = "^([0-3]-[0-9]{1,19}-[0-9]{1,19}|final)$")]
    pub id: String,
    /// The event's JSON document, as text: `{"status"}` for `status`,
    /// `{"offset", "text", "truncated"}` for output, `{"stream", "offset",
    /// "length"}` for `gap`, and the whole job for `final`.
    pub data: String,
}

/// The kinds of event in a job's stream.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamEventKind {
    /// A status transition.
    Status,
    /// A chunk of stdout.
    Stdout,
    /// A chunk of stderr.
    Stderr,
    /// Output this reader missed while it fell behind the live window.
    Gap,
    /// The whole job; the stream ends after it.
    Final,
}

fn frame(event: &str, id: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\nid: {id}\ndata: {data}\n\n"))
}

/// Writes events for one reader into its outbox; every send fails once the
/// client went away, which ends the reader's task.
struct Writer {
    /// The outbox the response body reads.
    tx: mpsc::Sender<Bytes>,
    /// What this reader was sent.
    cursor: Cursor,
}

/// The client disconnected.
struct Gone;

/// Why a reader waiting on a feed woke up.
enum Wake {
    /// The feed changed (`false`: it is gone).
    Changed(bool),
    /// The client disconnected.
    Gone,
    /// Nothing happened for [`KEEPALIVE`].
    Quiet,
}

impl Writer {
    async fn send(&self, bytes: Bytes) -> Result<(), Gone> {
        self.tx.send(bytes).await.map_err(|_| Gone)
    }

    async fn status(&mut self, status: JobStatus) -> Result<(), Gone> {
        let r = rank(status);
        if self.cursor.status >= r {
            return Ok(());
        }
        self.cursor.status = r;
        let data = json!({ "status": status });
        self.send(frame("status", &self.cursor.id(), &data)).await
    }

    /// Sends what of `chunk` this reader has not had, after a gap if it
    /// missed bytes before it.
    async fn chunk(&mut self, chunk: &Chunk) -> Result<(), Gone> {
        self.output(chunk.stream, chunk.offset, &chunk.data, chunk.truncated)
            .await
    }

    async fn output(
        &mut self,
        stream: StreamKind,
        offset: u64,
        data: &[u8],
        truncated: bool,
    ) -> Result<(), Gone> {
        let k = slot(stream);
        let expected = self.cursor.sent[k] + self.cursor.carry[k].len() as u64;
        let end = offset + data.len() as u64;
        if end < expected || (end == expected && !(data.is_empty() && truncated)) {
            return Ok(()); // already had all of it
        }
        let mut data = data;
        if offset < expected {
            data = &data[usize::try_from(expected - offset).unwrap_or(data.len())..];
        } else if offset > expected {
            let from = self.cursor.sent[k];
            self.cursor.sent[k] = offset;
            self.cursor.carry[k].clear();
            let body =
                json!({ "stream": stream_name(stream), "offset": from, "length": offset - from });
            self.send(frame("gap", &self.cursor.id(), &body)).await?;
        }
        let mut buf = std::mem::take(&mut self.cursor.carry[k]);
        buf.extend_from_slice(data);
        let hold = if truncated { 0 } else { incomplete_tail(&buf) };
        let emit = buf.len() - hold;
        self.cursor.carry[k] = buf[emit..].to_vec();
        if emit == 0 && !truncated {
            return Ok(());
        }
        let at = self.cursor.sent[k];
        self.cursor.sent[k] += emit as u64;
        let body = json!({
            "offset": at,
            "text": String::from_utf8_lossy(&buf[..emit]),
            "truncated": truncated,
        });
        self.send(frame(stream_name(stream), &self.cursor.id(), &body))
            .await
    }

    /// Follows a feed until it closes or `stop` completes.
    async fn follow(
        &mut self,
        feed: &Feed,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), Gone> {
        tokio::pin!(stop);
        let mut changes = feed.watch();
        let mut next = 0;
        loop {
            changes.borrow_and_update();
            let (chunks, closed) = feed.read(next);
            for chunk in &chunks {
                next = chunk.seq + 1;
                self.chunk(chunk).await?;
            }
            if closed {
                return Ok(());
            }
            let wake = tokio::select! {
                changed = changes.changed() => Wake::Changed(changed.is_ok()),
                () = self.tx.closed() => Wake::Gone,
                () = tokio::time::sleep(KEEPALIVE) => Wake::Quiet,
                () = &mut stop => return Ok(()),
            };
            match wake {
                Wake::Changed(true) => {}
                // The feed itself went away: the job is over.
                Wake::Changed(false) => return Ok(()),
                Wake::Gone => return Err(Gone),
                Wake::Quiet => self.send(Bytes::from_static(b": keep-alive\n\n")).await?,
            }
        }
    }

    /// The rest of a final job from the store: the status transitions and
    /// output this reader has not had, then `final`.
    async fn finish(&mut self, job: &JobRecord) -> Result<(), Gone> {
        if job.started_at.is_some() {
            self.status(JobStatus::Running).await?;
        }
        if let Some(outcome) = &job.outcome {
            for (stream, text, truncated) in [
                (
                    StreamKind::Stdout,
                    &outcome.stdout,
                    outcome.stdout_truncated,
                ),
                (
                    StreamKind::Stderr,
                    &outcome.stderr,
                    outcome.stderr_truncated,
                ),
            ] {
                let k = slot(stream);
                let rest = usize::try_from(self.cursor.sent[k])
                    .ok()
                    .and_then(|at| text.as_bytes().get(at..))
                    .unwrap_or_default();
                if !rest.is_empty() {
                    self.cursor.carry[k].clear();
                    let at = self.cursor.sent[k];
                    self.cursor.sent[k] += rest.len() as u64;
                    let body = json!({
                        "offset": at,
                        "text": String::from_utf8_lossy(rest),
                        "truncated": truncated,
                    });
                    self.send(frame(stream_name(stream), &self.cursor.id(), &body))
                        .await?;
                }
            }
        }
        self.status(job.status).await?;
        let view = serde_json::to_value(JobView::from(job)).unwrap_or(Value::Null);
        self.send(frame("final", "final", &view)).await
    }
}

/// Runs one reader's stream until the job's `final` event or the client
/// leaves.
async fn run(state: AppState, mut job: JobRecord, mut writer: Writer) -> Result<(), Gone> {
    let id = job.id;
    // In a cluster, the mirror of a job not running here; held while this
    // stream lasts, so the owning node keeps publishing.
    let mut mirror = None;
    loop {
        if job.status.is_final() {
            return writer.finish(&job).await;
        }
        // Arm the wake-ups before looking, so a start or a finish between
        // the look and the wait still wakes this reader.
        let opened = state.live.opened.notified();
        let waiter = state.waiter(id);
        let finished = waiter.notify().notified();
        tokio::pin!(opened, finished);
        opened.as_mut().enable();
        finished.as_mut().enable();
        if let Some(feed) = state.live.get(id) {
            // Running here after all: no need to ask other nodes.
            mirror = None;
            writer.status(JobStatus::Running).await?;
            writer.follow(&feed, std::future::pending()).await?;
        } else {
            // Shutting down: a job not running here will not end on this
            // node, and an open stream would hold the graceful shutdown
            // up. The client reconnects with its last id elsewhere.
            if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
            if mirror.is_none() && state.queue.database().is_some() {
                mirror = Some(relay::watch(&state, id));
            }
            writer.status(job.status).await?;
            match &mirror {
                Some(m) if job.status == JobStatus::Running && !m.feed().is_closed() => {
                    // Running on another node: its chunks through the
                    // mirror, until the job's end is heard or it is time
                    // to look at the store again.
                    let stop = async {
                        tokio::select! {
                            () = finished => {},
                            () = tokio::time::sleep(RECHECK) => {},
                        }
                    };
                    writer.follow(m.feed(), stop).await?;
                }
                // Queued (here or anywhere): status from the store.
                _ => tokio::select! {
                    () = opened => {},
                    () = finished => {},
                    () = tokio::time::sleep(POLL) => {},
                    () = writer.tx.closed() => return Err(Gone),
                },
            }
        }
        match state.job(id).await {
            Ok(Some(next)) => job = next,
            // Erased or purged meanwhile, or the store failed: end the
            // stream; the client's reconnect gets a clear answer.
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(%id, error = %e, "events: cannot read the job");
                return Ok(());
            }
        }
    }
}

/// The response body: the frames a reader's task writes.
struct EventBody {
    /// The reader's outbox.
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Follow a job as Server-Sent Events.
///
/// Events: `status` (`{"status"}`) on every transition; `stdout` and
/// `stderr` (`{"offset", "text", "truncated"}`: `offset` is the chunk's byte
/// offset in the stream, `truncated` true once the output cap cut it) as
/// the program writes; `gap` (`{"stream", "offset", "length"}`) when this
/// reader fell behind the live window, those bytes being in the final
/// event; one `final` whose data is the whole job (as `GET /v1/jobs/{id}`),
/// after which the stream ends. A finished job sends `final` at once. Ids
/// are `S-O-E` positions (status rank 1 queued, 2 running, 3 final; bytes
/// of stdout and stderr sent); send the last as `Last-Event-ID` to resume
/// without loss or repetition, also after the job finished, and on any
/// node of a cluster: a job running on another node is followed through
/// the database's notifications (see docs/scale-out.md).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event: an `S-O-E` id from an earlier stream, or `final`", nullable = false, pattern = "^([0-3]-[0-9]{1,19}-[0-9]{1,19}|final)$"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = StreamEvent),
        (status = 204, description = "Last-Event-ID is `final`: nothing more will come"),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::JobsRead)?;
    let Path(raw) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = Uuid::parse_str(&raw).map_err(|_| ApiError::not_found(format!("no job {raw}")))?;
    // Another tenant's job is a 404 exactly like an unknown id.
    let job = match state.job(id).await? {
        Some(job) if job.tenant == who.tenant => job,
        _ => return Err(ApiError::not_found(format!("no job {id}"))),
    };
    let cursor = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => Cursor::default(),
        Some(Ok(v)) if v.trim() == "final" => return Ok(StatusCode::NO_CONTENT.into_response()),
        Some(v) => v.ok().and_then(Cursor::parse).ok_or_else(|| {
            ApiError::bad_request("Last-Event-ID must be an event id of this stream")
                .with_details(json!({ "field": "Last-Event-ID" }))
        })?,
    };
    let (tx, rx) = mpsc::channel(OUTBOX);
    let writer = Writer { tx, cursor };
    state.runtime.spawn(run(state.clone(), job, writer));
    let mut response = Body::new(EventBody { rx }).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_garbage_is_refused() {
        let c = Cursor::parse("2-10-3").expect("parses");
        assert_eq!((c.status, c.sent), (2, [10, 3]));
        assert_eq!(c.id(), "2-10-3");
        for bad in ["", "4-0-0", "1-2", "1-2-3-4", "a-b-c", "-1-0-0"] {
            assert!(Cursor::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_unfinished_character_is_held_back() {
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&euro[..1]), 1);
        assert_eq!(incomplete_tail(&euro[..2]), 2);
        assert_eq!(incomplete_tail(euro), 0);
        assert_eq!(incomplete_tail(&[b'a', 0xF0, 0x9F]), 2);
    }
}
