//! Live output: the guest's stdout and stderr handed, as it writes them, to
//! a caller's non-blocking sink beside the capped capture.
//!
//! The sink runs on the guest's thread inside the guest's write call, so it
//! must never block and must bound its own memory (the server's live-output
//! feed keeps a window and lets a slow reader see a jump in offsets). Only
//! bytes within the output cap are forwarded, at their byte offset in the
//! captured stream, so a consumer can always fill what it missed from the
//! run's final output.
//!
//! An earlier version sent events through a bounded channel drained by a
//! task; a direct sink saves the channel, the task and a thread wake-up per
//! chunk, and the feed already does the bounding the channel did.

use std::sync::Arc;

/// The largest chunk one event carries; bigger writes are split, so what a
/// consumer holds per event does not depend on the guest's write sizes.
pub const MAX_CHUNK: usize = 16 * 1024;

/// Which of the job's output streams an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// The program's stdout.
    Stdout,
    /// The program's stderr.
    Stderr,
}

/// Bytes the program wrote, within the output cap: one event of a job's
/// live output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// The stream.
    pub stream: StreamKind,
    /// Byte offset of `data` in the captured stream.
    pub offset: u64,
    /// The bytes (at most [`MAX_CHUNK`]).
    pub data: Vec<u8>,
    /// True when the output cap was reached with this chunk: nothing after
    /// it is captured or forwarded.
    pub truncated: bool,
}

/// What a [`LiveTap`] calls with every event.
type Sink = Arc<dyn Fn(LiveEvent) + Send + Sync>;

/// Where live output goes, set as [`crate::Job::live`]. Cloning shares the
/// sink.
#[derive(Clone)]
pub struct LiveTap {
    /// The caller's function.
    sink: Sink,
}

impl std::fmt::Debug for LiveTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTap")
    }
}

/// A tap that hands every event to `sink` on the guest's thread, as the
/// guest writes. The sink must not block (it runs inside the guest's write
/// call) and must bound its own memory.
pub fn sink(sink: impl Fn(LiveEvent) + Send + Sync + 'static) -> LiveTap {
    LiveTap {
        sink: Arc::new(sink),
    }
}

impl LiveTap {
    /// Forwards `data`, kept at `offset` of `stream`, in pieces of at most
    /// [`MAX_CHUNK`]; an empty write still carries the truncation flag.
    pub(crate) fn forward(&self, stream: StreamKind, offset: u64, data: &[u8], truncated: bool) {
        let mut pieces: Vec<&[u8]> = data.chunks(MAX_CHUNK).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let last = pieces.len() - 1;
        let mut at = offset;
        for (i, piece) in pieces.into_iter().enumerate() {
            (self.sink)(LiveEvent {
                stream,
                offset: at,
                data: piece.to_vec(),
                truncated: truncated && i == last,
            });
            at += piece.len() as u64;
        }
    }
}

/// A tap and what it received, for this crate's tests.
#[cfg(test)]
pub(crate) fn collecting() -> (LiveTap, Arc<std::sync::Mutex<Vec<LiveEvent>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tap = sink({
        let got = got.clone();
        move |e| got.lock().unwrap().push(e)
    });
    (tap, got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_gets_every_event_in_order() {
        let (tap, got) = collecting();
        for i in 0..100u64 {
            tap.forward(StreamKind::Stdout, i * 2, b"ab", i == 99);
        }
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 100, "a sink never drops");
        for (i, e) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                *e,
                LiveEvent {
                    stream: StreamKind::Stdout,
                    offset: i * 2,
                    data: b"ab".to_vec(),
                    truncated: i == 99
                }
            );
        }
    }

    #[test]
    fn big_writes_are_split_and_only_the_last_piece_is_cut() {
        let (tap, got) = collecting();
        let data = vec![b'x'; MAX_CHUNK * 2 + 1];
        tap.forward(StreamKind::Stderr, 10, &data, true);
        let got = got.lock().unwrap();
        let pieces: Vec<_> = got
            .iter()
            .map(|e| (e.stream, e.offset, e.data.len(), e.truncated))
            .collect();
        let m = MAX_CHUNK as u64;
        assert_eq!(
            pieces,
            vec![
                (StreamKind::Stderr, 10, MAX_CHUNK, false),
                (StreamKind::Stderr, 10 + m, MAX_CHUNK, false),
                (StreamKind::Stderr, 10 + 2 * m, 1, true),
            ]
        );
    }

    #[test]
    fn an_empty_write_still_carries_the_cut() {
        let (tap, got) = collecting();
        tap.forward(StreamKind::Stdout, 7, b"", true);
        assert_eq!(
            *got.lock().unwrap(),
            vec![LiveEvent {
                stream: StreamKind::Stdout,
                offset: 7,
                data: Vec::new(),
                truncated: true
            }]
        );
    }
}
