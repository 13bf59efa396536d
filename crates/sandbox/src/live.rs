//! Live output: the guest's stdout and stderr forwarded, as it writes them,
//! to a bounded channel beside the capped capture, or straight into a
//! caller's non-blocking sink ([`sink`]).
//!
//! The forwarding never blocks the guest: a chunk that does not fit in the
//! channel is dropped and remembered as a gap, which is sent (merged with any
//! further dropped bytes) before the next chunk that fits. Memory is bounded
//! by the channel's capacity times [`MAX_CHUNK`]. Only bytes within the
//! output cap are forwarded, at their byte offset in the captured stream, so
//! a consumer can always fill a gap from the run's final output.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// The largest chunk one event carries; bigger writes are split, so the
/// channel's memory bound does not depend on the guest's write sizes.
pub const MAX_CHUNK: usize = 16 * 1024;

/// Which of the job's output streams an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// The program's stdout.
    Stdout,
    /// The program's stderr.
    Stderr,
}

/// One event of a job's live output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// Bytes the program wrote, within the output cap.
    Output {
        /// The stream.
        stream: StreamKind,
        /// Byte offset of `data` in the captured stream.
        offset: u64,
        /// The bytes (at most [`MAX_CHUNK`]).
        data: Vec<u8>,
        /// True when the output cap was reached with this chunk: nothing
        /// after it is captured or forwarded.
        truncated: bool,
    },
    /// Bytes `offset .. offset + len` of `stream` were captured but not
    /// forwarded, because the consumer fell behind. They are in the final
    /// outcome.
    Gap {
        /// The stream.
        stream: StreamKind,
        /// Where the missing bytes start.
        offset: u64,
        /// How many bytes are missing.
        len: u64,
    },
}

/// Per stream (stdout, stderr): the dropped bytes not yet reported, as
/// `(offset, len)`.
type Pending = [Option<(u64, u64)>; 2];

/// A caller's function that takes every event at once, on the guest's
/// thread, and never blocks ([`sink`]).
type Sink = Arc<dyn Fn(LiveEvent) + Send + Sync>;

/// Where a [`LiveTap`] sends its events.
#[derive(Clone)]
enum Target {
    /// A bounded channel whose receiver may fall behind (then: gaps).
    Channel(mpsc::Sender<LiveEvent>),
    /// A function that takes everything (it bounds its own memory).
    Sink(Sink),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Channel(tx) => f.debug_tuple("Channel").field(tx).finish(),
            Self::Sink(_) => f.write_str("Sink"),
        }
    }
}

/// The sending half, set as [`crate::Job::live`]. Cloning shares the channel.
#[derive(Debug, Clone)]
pub struct LiveTap {
    /// Where events go.
    target: Target,
    /// Bytes dropped and not yet reported, per stream (stdout, stderr).
    pending: Arc<Mutex<Pending>>,
}

/// The receiving half. It ends (`recv` gives `None`) once the run is over
/// and every [`LiveTap`] clone (the [`crate::Job`] holding it too) is dropped.
#[derive(Debug)]
pub struct LiveReceiver {
    /// The bounded channel.
    rx: mpsc::Receiver<LiveEvent>,
}

/// A live-output channel holding at most `capacity` events (at least 1).
pub fn channel(capacity: usize) -> (LiveTap, LiveReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        LiveTap {
            target: Target::Channel(tx),
            pending: Arc::new(Mutex::new([None, None])),
        },
        LiveReceiver { rx },
    )
}

/// A tap that hands every event to `sink` on the guest's thread, as the
/// guest writes. The sink must not block (it runs inside the guest's write
/// call) and must bound its own memory; the server's live-output feed does
/// both. This saves a channel, a task to drain it and the thread wake-ups
/// between them for every chunk.
pub fn sink(sink: impl Fn(LiveEvent) + Send + Sync + 'static) -> LiveTap {
    LiveTap {
        target: Target::Sink(Arc::new(sink)),
        pending: Arc::new(Mutex::new([None, None])),
    }
}

impl LiveReceiver {
    /// The next event, waiting for it; `None` once the channel ended.
    pub async fn recv(&mut self) -> Option<LiveEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting. `Err(true)` when the channel ended,
    /// `Err(false)` when it is only empty for now.
    pub fn try_recv(&mut self) -> Result<LiveEvent, bool> {
        self.rx.try_recv().map_err(|e| match e {
            mpsc::error::TryRecvError::Disconnected => true,
            mpsc::error::TryRecvError::Empty => false,
        })
    }
}

fn slot(stream: StreamKind) -> usize {
    match stream {
        StreamKind::Stdout => 0,
        StreamKind::Stderr => 1,
    }
}

impl LiveTap {
    /// Sends one event without waiting; false when it did not fit.
    fn send(&self, event: LiveEvent) -> bool {
        match &self.target {
            Target::Channel(tx) => tx.try_send(event).is_ok(),
            Target::Sink(sink) => {
                sink(event);
                true
            }
        }
    }

    /// Forwards `data`, kept at `offset` of `stream`, without ever waiting:
    /// what does not fit becomes a gap.
    pub(crate) fn forward(&self, stream: StreamKind, offset: u64, data: &[u8], truncated: bool) {
        // A poisoned lock only means a panic elsewhere mid-update of two
        // integers; the worst case is a gap reported slightly wrong.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let gap = &mut pending[slot(stream)];
        let mut pieces: Vec<&[u8]> = data.chunks(MAX_CHUNK).collect();
        if pieces.is_empty() {
            // An empty chunk still carries the truncation flag.
            pieces.push(&[]);
        }
        let last = pieces.len() - 1;
        let mut at = offset;
        for (i, piece) in pieces.into_iter().enumerate() {
            let len = piece.len() as u64;
            if let Some((from, missing)) = *gap {
                let event = LiveEvent::Gap {
                    stream,
                    offset: from,
                    len: missing,
                };
                if !self.send(event) {
                    *gap = Some((from, missing + len));
                    at += len;
                    continue;
                }
                *gap = None;
            }
            let event = LiveEvent::Output {
                stream,
                offset: at,
                data: piece.to_vec(),
                truncated: truncated && i == last,
            };
            if !self.send(event) {
                *gap = Some((at, len));
            }
            at += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_and_reports_a_gap() {
        let (tap, mut rx) = channel(2);
        tap.forward(StreamKind::Stdout, 0, b"aa", false);
        tap.forward(StreamKind::Stdout, 2, b"bb", false);
        tap.forward(StreamKind::Stdout, 4, b"cc", false); // dropped
        tap.forward(StreamKind::Stdout, 6, b"dd", false); // dropped
        let first = rx.try_recv().expect("first");
        assert!(matches!(first, LiveEvent::Output { offset: 0, .. }));
        let _ = rx.try_recv().expect("second");
        tap.forward(StreamKind::Stdout, 8, b"ee", true);
        assert_eq!(
            rx.try_recv(),
            Ok(LiveEvent::Gap {
                stream: StreamKind::Stdout,
                offset: 4,
                len: 4
            })
        );
        assert_eq!(
            rx.try_recv(),
            Ok(LiveEvent::Output {
                stream: StreamKind::Stdout,
                offset: 8,
                data: b"ee".to_vec(),
                truncated: true
            })
        );
        assert_eq!(rx.try_recv(), Err(false));
    }

    #[test]
    fn a_sink_gets_every_event_in_order() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let tap = sink({
            let got = got.clone();
            move |e| got.lock().unwrap().push(e)
        });
        for i in 0..100u64 {
            tap.forward(StreamKind::Stdout, i * 2, b"ab", i == 99);
        }
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 100, "a sink never drops: no gaps");
        for (i, e) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                *e,
                LiveEvent::Output {
                    stream: StreamKind::Stdout,
                    offset: i * 2,
                    data: b"ab".to_vec(),
                    truncated: i == 99
                }
            );
        }
    }

    #[test]
    fn big_writes_are_split() {
        let (tap, mut rx) = channel(8);
        let data = vec![b'x'; MAX_CHUNK * 2 + 1];
        tap.forward(StreamKind::Stderr, 10, &data, false);
        let mut offsets = Vec::new();
        while let Ok(LiveEvent::Output { offset, data, .. }) = rx.try_recv() {
            assert!(data.len() <= MAX_CHUNK);
            offsets.push(offset);
        }
        assert_eq!(
            offsets,
            vec![10, 10 + MAX_CHUNK as u64, 10 + 2 * MAX_CHUNK as u64]
        );
    }
}
