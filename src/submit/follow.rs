//! `strictpy submit --follow`: reads the job's event stream
//! (`GET /v1/jobs/{id}/events`) and prints stdout and stderr as the program
//! writes them, resuming from the last event id when the connection drops.

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use serde_json::Value;

use super::{Failure, Remote, RemoteJob, api_failure, error_chain, retry_after};

/// Read timeout of the stream: the server sends a comment every 15 s.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// What was printed live, so the final report prints only the rest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Printed {
    /// Bytes of stdout accounted for (printed, or announced as a gap).
    pub stdout: usize,
    /// Bytes of stderr accounted for.
    pub stderr: usize,
}

/// One parsed event.
#[derive(Debug, Default)]
struct Event {
    /// `status`, `stdout`, `stderr`, `gap` or `final`.
    kind: String,
    /// Its id.
    id: String,
    /// Its data lines, joined.
    data: String,
}

/// Splits SSE text into events; keeps a partial event between reads.
#[derive(Debug, Default)]
struct Parser {
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    /// The event being read.
    current: Event,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.partial.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if !event.data.is_empty() {
                    events.push(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match name {
                "event" => value.clone_into(&mut self.current.kind),
                "id" => value.clone_into(&mut self.current.id),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        events
    }
}

/// Follows job `id` to its `final` event, printing output as it comes.
pub(super) async fn follow(
    remote: &Remote,
    id: &str,
) -> anyhow::Result<Result<(RemoteJob, Printed), Failure>> {
    let url = remote.url(&format!("/v1/jobs/{id}/events"));
    let mut last: Option<String> = None;
    let mut printed = Printed::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = remote
            .http
            .get(url.clone())
            .bearer_auth(&remote.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(last) = &last {
            request = request.header("last-event-id", last);
        }
        let failure = match request.send().await {
            Err(e) => Failure::Unreachable(error_chain(&e)),
            Ok(answer) if !answer.status().is_success() => {
                let status = answer.status();
                let after = retry_after(answer.headers());
                let bytes = answer.bytes().await.unwrap_or_default();
                let failure = api_failure(status, &bytes);
                match remote.retry.delay_for_status(status, after, attempt) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    None => return Ok(Err(failure)),
                }
            }
            Ok(mut answer) => {
                let mut parser = Parser::default();
                loop {
                    let chunk = tokio::time::timeout(STREAM_TIMEOUT, answer.chunk()).await;
                    let bytes = match chunk {
                        Err(_) => {
                            break Failure::Unreachable("the event stream went silent".into());
                        }
                        Ok(Err(e)) => break Failure::Unreachable(error_chain(&e)),
                        Ok(Ok(None)) => {
                            break Failure::Unreachable("the event stream ended early".into());
                        }
                        Ok(Ok(Some(bytes))) => bytes,
                    };
                    for event in parser.feed(&bytes) {
                        attempt = 0;
                        if !event.id.is_empty() {
                            last = Some(event.id.clone());
                        }
                        let data: Value = serde_json::from_str(&event.data)
                            .context("the server sent an event that is not JSON")?;
                        match event.kind.as_str() {
                            "stdout" | "stderr" => {
                                let text = data["text"].as_str().unwrap_or_default();
                                if event.kind == "stdout" {
                                    let mut out = std::io::stdout().lock();
                                    out.write_all(text.as_bytes())?;
                                    out.flush()?;
                                    printed.stdout += text.len();
                                } else {
                                    let mut err = std::io::stderr().lock();
                                    err.write_all(text.as_bytes())?;
                                    printed.stderr += text.len();
                                }
                            }
                            "gap" => {
                                let len = data["length"].as_u64().unwrap_or(0);
                                let stream = data["stream"].as_str().unwrap_or("output");
                                eprintln!(
                                    "\nstrictpy: {len} bytes of {stream} were not shown live (this reader fell behind)"
                                );
                                let len = usize::try_from(len).unwrap_or(usize::MAX);
                                if stream == "stdout" {
                                    printed.stdout = printed.stdout.saturating_add(len);
                                } else {
                                    printed.stderr = printed.stderr.saturating_add(len);
                                }
                            }
                            "final" => {
                                let job: RemoteJob = serde_json::from_value(data)
                                    .context("the final event is not a job")?;
                                return Ok(Ok((job, printed)));
                            }
                            _ => {}
                        }
                    }
                }
            }
        };
        match remote.retry.delay_for_error(attempt.max(1)) {
            Some(wait) => {
                tracing::warn!(
                    attempt,
                    "event stream: {}; resuming",
                    super::describe(&failure)
                );
                tokio::time::sleep(wait).await;
            }
            None => return Ok(Err(failure)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads() {
        let mut p = Parser::default();
        assert!(p.feed(b"event: stdout\nid: 2-3-0\nda").is_empty());
        let events = p.feed(b"ta: {\"text\":\"hi\\n\"}\n\n: keep-alive\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind.as_str(), events[0].id.as_str()),
            ("stdout", "2-3-0")
        );
        assert_eq!(events[0].data, "{\"text\":\"hi\\n\"}");
    }
}
