//! Live output between the nodes of a cluster, over `NOTIFY`: a node that
//! streams a job running elsewhere asks for it on [`WATCH_CHANNEL`], and
//! the node running it publishes the job's output chunks on
//! [`LIVE_CHANNEL`] while such a watch is fresh.
//!
//! Every chunk's bytes are sealed with the store's keyring (bound to the
//! job, stream and offset), as the job's stored output is: `NOTIFY`
//! payloads pass through the database server and its notification queue
//! (which can spill to disk), so they get the same protection at rest. A
//! payload stays under PostgreSQL's 8000-byte limit: publishers coalesce
//! at most [`MAX_LIVE_DATA`] bytes into a chunk, and a chunk whose payload
//! would still be too long is split.

use uuid::Uuid;

use super::{PostgresStore, execute};
use crate::StoreError;
use crate::crypto::Keyring;

/// Channel on which a node asks for the live output of jobs it streams:
/// `fresh` or `renew`, the asking process's origin token, then job ids,
/// separated by spaces.
pub const WATCH_CHANNEL: &str = "strictpy_watch";

/// Channel on which the node running a watched job publishes it:
/// `<id> open`, or `<id> <o|e> <offset> <t|-> <sealed bytes>`.
pub const LIVE_CHANNEL: &str = "strictpy_live";

/// The most output bytes one chunk notice carries.
pub const MAX_LIVE_DATA: usize = 4096;

/// PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7999;

/// Job ids per watch notice (37 bytes each with the space).
const IDS_PER_WATCH: usize = 150;

/// What the node running a watched job publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveNotice {
    /// The publisher (re)starts from the oldest chunk it still holds: a
    /// watcher that just started takes every chunk from here on.
    Open(Uuid),
    /// Output of a running job.
    Chunk(LiveChunk),
}

/// One chunk of a job's output, as it crosses between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChunk {
    /// The job.
    pub job: Uuid,
    /// True for stderr, false for stdout.
    pub stderr: bool,
    /// Byte offset of `data` in the captured stream.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// True when the output cap was reached with this chunk.
    pub truncated: bool,
}

/// What a node heard on [`WATCH_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// A token the asking process picked at start, so a node ignores its
    /// own asks.
    pub origin: String,
    /// True for a watcher that just started (the publisher replays what it
    /// holds), false for a renewal.
    pub fresh: bool,
    /// The jobs watched.
    pub jobs: Vec<Uuid>,
}

/// The associated data a chunk is sealed with: it cannot be replayed as
/// another job's output or at another place in the stream.
fn aad(job: Uuid, stderr: bool, offset: u64) -> Vec<u8> {
    format!("live:{job}:{}:{offset}", if stderr { 'e' } else { 'o' }).into_bytes()
}

/// The payloads of `chunk`: one, or several if it had to be split.
fn encode_chunk(
    keys: &Keyring,
    chunk: &LiveChunk,
    out: &mut Vec<String>,
) -> Result<(), StoreError> {
    let sealed = keys.seal(&chunk.data, &aad(chunk.job, chunk.stderr, chunk.offset))?;
    let payload = format!(
        "{} {} {} {} {sealed}",
        chunk.job,
        if chunk.stderr { 'e' } else { 'o' },
        chunk.offset,
        if chunk.truncated { 't' } else { '-' },
    );
    if payload.len() <= MAX_PAYLOAD || chunk.data.len() < 2 {
        out.push(payload);
        return Ok(());
    }
    let half = chunk.data.len() / 2;
    let first = LiveChunk {
        data: chunk.data[..half].to_vec(),
        truncated: false,
        ..chunk.clone()
    };
    let second = LiveChunk {
        offset: chunk.offset + half as u64,
        data: chunk.data[half..].to_vec(),
        ..chunk.clone()
    };
    encode_chunk(keys, &first, out)?;
    encode_chunk(keys, &second, out)
}

/// Decodes a [`LIVE_CHANNEL`] payload; `None` for anything malformed or
/// not sealed under one of `keys` (it is dropped: the watcher sees a gap,
/// and the job's final output is complete).
pub(super) fn decode_live(keys: &Keyring, payload: &str) -> Option<LiveNotice> {
    let mut parts = payload.splitn(5, ' ');
    let job = Uuid::parse_str(parts.next()?).ok()?;
    let kind = parts.next()?;
    if kind == "open" {
        return parts.next().is_none().then_some(LiveNotice::Open(job));
    }
    let stderr = match kind {
        "o" => false,
        "e" => true,
        _ => return None,
    };
    let offset: u64 = parts.next()?.parse().ok()?;
    let truncated = match parts.next()? {
        "t" => true,
        "-" => false,
        _ => return None,
    };
    let sealed = parts.next()?;
    // `open` passes unsealed text through (for old rows); a chunk must be
    // sealed.
    Keyring::key_id_of(sealed)?;
    let data = keys.open(sealed, &aad(job, stderr, offset)).ok()?;
    Some(LiveNotice::Chunk(LiveChunk {
        job,
        stderr,
        offset,
        data,
        truncated,
    }))
}

/// Decodes a [`WATCH_CHANNEL`] payload.
pub(super) fn decode_watch(payload: &str) -> Option<Watch> {
    let mut parts = payload.split(' ');
    let fresh = match parts.next()? {
        "fresh" => true,
        "renew" => false,
        _ => return None,
    };
    let origin = parts.next().filter(|o| !o.is_empty())?.to_owned();
    let jobs = parts
        .map(Uuid::parse_str)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(Watch {
        origin,
        fresh,
        jobs,
    })
}

impl PostgresStore {
    /// Asks the nodes running `jobs` to publish their live output
    /// (`fresh`: from the oldest chunk they hold), for the process whose
    /// token is `origin` (one word).
    pub async fn notify_watch(
        &self,
        origin: &str,
        jobs: &[Uuid],
        fresh: bool,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        for batch in jobs.chunks(IDS_PER_WATCH) {
            let mut payload = String::from(if fresh { "fresh " } else { "renew " });
            payload.push_str(origin);
            for id in batch {
                payload.push(' ');
                payload.push_str(&id.to_string());
            }
            execute(
                &client,
                "SELECT pg_notify($1, $2)",
                &[&WATCH_CHANNEL, &payload],
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes `notices` on [`LIVE_CHANNEL`], in order: one statement
    /// (and transaction) each, so they commit, and are delivered, in turn.
    pub async fn publish_live(&self, notices: &[LiveNotice]) -> Result<(), StoreError> {
        let mut payloads = Vec::with_capacity(notices.len());
        for notice in notices {
            match notice {
                LiveNotice::Open(job) => payloads.push(format!("{job} open")),
                LiveNotice::Chunk(chunk) => encode_chunk(&self.keys, chunk, &mut payloads)?,
            }
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        for payload in &payloads {
            execute(
                &client,
                "SELECT pg_notify($1, $2)",
                &[&LIVE_CHANNEL, payload],
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::parse("k1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .expect("a key")
    }

    #[test]
    fn chunks_round_trip_sealed_and_fit_a_notify() {
        let keys = keys();
        let job = Uuid::now_v7();
        let chunk = LiveChunk {
            job,
            stderr: true,
            offset: 70,
            data: vec![b'x'; MAX_LIVE_DATA],
            truncated: true,
        };
        let mut payloads = Vec::new();
        encode_chunk(&keys, &chunk, &mut payloads).expect("seals");
        assert_eq!(payloads.len(), 1);
        assert!(payloads[0].len() <= MAX_PAYLOAD);
        assert!(!payloads[0].contains("xxxx"), "the bytes are sealed");
        assert_eq!(
            decode_live(&keys, &payloads[0]),
            Some(LiveNotice::Chunk(chunk))
        );
        // Moved to another offset, or unsealed, it is refused.
        let moved = payloads[0].replacen(" 70 ", " 71 ", 1);
        assert_eq!(decode_live(&keys, &moved), None);
        assert_eq!(decode_live(&keys, &format!("{job} o 0 - plain")), None);
        assert_eq!(
            decode_live(&keys, &format!("{job} open")),
            Some(LiveNotice::Open(job))
        );
        for bad in [
            String::new(),
            "x open".into(),
            format!("{job} open extra"),
            format!("{job} q 0 - a"),
            format!("{job} o x - a"),
        ] {
            assert_eq!(decode_live(&keys, &bad), None, "{bad}");
        }
    }

    #[test]
    fn a_chunk_too_big_for_one_notify_is_split() {
        let keys = keys();
        let chunk = LiveChunk {
            job: Uuid::nil(),
            stderr: false,
            offset: 5,
            data: (0..3 * MAX_LIVE_DATA).map(|i| i as u8).collect(),
            truncated: true,
        };
        let mut payloads = Vec::new();
        encode_chunk(&keys, &chunk, &mut payloads).expect("seals");
        assert!(payloads.len() > 1);
        let mut data = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            assert!(p.len() <= MAX_PAYLOAD);
            let Some(LiveNotice::Chunk(c)) = decode_live(&keys, p) else {
                panic!("decodes");
            };
            assert_eq!(c.offset, 5 + data.len() as u64);
            assert_eq!(c.truncated, i == payloads.len() - 1);
            data.extend(c.data);
        }
        assert_eq!(data, chunk.data);
    }

    #[test]
    fn watches_parse() {
        let a = Uuid::now_v7();
        assert_eq!(
            decode_watch(&format!("fresh n1 {a}")),
            Some(Watch {
                origin: "n1".into(),
                fresh: true,
                jobs: vec![a]
            })
        );
        assert_eq!(decode_watch(&format!("renew n1 {a} nope")), None);
        assert_eq!(decode_watch("renew"), None);
        assert_eq!(decode_watch("other n1"), None);
    }
}
