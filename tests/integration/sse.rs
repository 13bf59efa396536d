//! Reading Server-Sent Events in tests: the `GET /v1/jobs/{id}/events`
//! frames split into events, whichever client received the bytes (the
//! router's body in `server/events.rs`, a real node over HTTP in
//! `cluster/live.rs`), and the checks both make of a stream's output.

use std::time::Duration;

use serde_json::Value;

/// One event as a client sees it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The `event:` field.
    pub(crate) kind: String,
    /// The `id:` field.
    pub(crate) id: String,
    /// The `data:` JSON.
    pub(crate) data: Value,
}

/// Text received and not yet split into events.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// The unsplit text.
    buf: String,
}

impl Frames {
    /// Adds received bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
    }

    /// The next complete event, skipping comments (keep-alives); `None`
    /// until one is complete.
    pub(crate) fn next(&mut self) -> Option<Event> {
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let mut event = Event {
                kind: String::new(),
                id: String::new(),
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event.kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    event.id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    event.data = serde_json::from_str(v).expect("data is JSON");
                }
            }
            if !event.kind.is_empty() {
                return Some(event);
            }
        }
        None
    }

    /// Checks that the stream ended on an event boundary.
    pub(crate) fn assert_drained(&self) {
        assert!(self.buf.trim().is_empty(), "a partial event: {}", self.buf);
    }
}

/// Where an event stream's bytes come from: the router's body
/// (`server/events.rs`) or a real node's HTTP response (`cluster/live.rs`).
pub(crate) trait Source {
    /// The next chunk of the body, `None` at its end; fails the test if the
    /// body breaks.
    async fn chunk(&mut self) -> Option<Vec<u8>>;
}

/// An open event stream, read event by event.
pub(crate) struct Reader<S> {
    /// Where the bytes come from.
    source: S,
    /// Received text, split into events.
    frames: Frames,
    /// True once the body ended.
    ended: bool,
    /// How long the stream may stay silent before the test fails.
    silence: Duration,
}

impl<S: Source> Reader<S> {
    /// A reader of `source` that fails the test after `silence` without a
    /// chunk.
    pub(crate) fn new(source: S, silence: Duration) -> Self {
        Self {
            source,
            frames: Frames::default(),
            ended: false,
            silence,
        }
    }

    /// The next event, or `None` once the stream ended (on an event
    /// boundary, or the test fails).
    pub(crate) async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.frames.next() {
                return Some(event);
            }
            if self.ended {
                self.frames.assert_drained();
                return None;
            }
            let chunk = tokio::time::timeout(self.silence, self.source.chunk())
                .await
                .expect("the stream went silent");
            match chunk {
                Some(bytes) => self.frames.push(&bytes),
                None => self.ended = true,
            }
        }
    }

    /// Every event up to the end of the stream.
    pub(crate) async fn rest(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}

/// The concatenated text of the `stream` events from byte `at` on,
/// checking that every chunk (or gap) starts where the one before ended,
/// so nothing was repeated or skipped unannounced. Returns the text and
/// the bytes reported as gaps.
pub(crate) fn text_of(events: &[Event], stream: &str, mut at: u64) -> (String, u64) {
    let mut text = String::new();
    let mut missed = 0;
    for e in events {
        if e.kind == stream {
            assert_eq!(e.data["offset"], at, "chunks are contiguous: {e:?}");
            let t = e.data["text"].as_str().expect("text");
            at += t.len() as u64;
            text.push_str(t);
        } else if e.kind == "gap" && e.data["stream"] == stream {
            assert_eq!(e.data["offset"], at, "a gap starts where output stopped");
            let len = e.data["length"].as_u64().expect("length");
            assert!(len > 0);
            at += len;
            missed += len;
        }
    }
    (text, missed)
}

/// The statuses the `status` events announced, in order.
pub(crate) fn statuses(events: &[Event]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e.kind == "status")
        .map(|e| &e.data["status"])
        .collect()
}
