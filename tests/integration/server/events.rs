//! `GET /v1/jobs/{id}/events` (live output as Server-Sent Events) and the
//! queue position of `202` and `GET /v1/jobs/{id}`, through the router.

use std::{pin::Pin, time::Duration};

use axum::{
    body::{Body, HttpBody as _},
    http::{Request, StatusCode, header},
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::TestServer;
use crate::security::create_token;
use crate::sse::{Event, Reader, Source, statuses, text_of};

/// An open event stream from the router, read frame by frame.
type Stream = Reader<Body>;

impl Source for Body {
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await?;
            // Trailers carry no events.
            if let Ok(data) = frame.expect("body frame").into_data() {
                return Some(data.to_vec());
            }
        }
    }
}

/// Opens the event stream of job `id` with `token`; `last` is sent as
/// `Last-Event-ID`. Returns the status and the stream.
async fn open(s: &TestServer, token: &str, id: &str, last: Option<&str>) -> (StatusCode, Stream) {
    let mut request = Request::get(format!("/v1/jobs/{id}/events"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/event-stream");
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = s
        .app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    if status == StatusCode::OK {
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
    }
    (
        status,
        Stream::new(response.into_body(), Duration::from_secs(20)),
    )
}

/// Submits `code` without waiting; returns the `202`'s job.
async fn submit(s: &TestServer, code: &str) -> Value {
    let reply = s
        .call("POST", "/v1/jobs", Some(json!({ "code": code })))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    reply.json
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_arrive_while_the_job_runs_and_final_ends_the_stream() {
    let s = TestServer::start(|_| {}).await;
    let job = submit(
        &s,
        "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')\nresult = 1",
    )
    .await;
    let id = job["id"].as_str().expect("id").to_owned();
    let (status, mut stream) = open(&s, &s.token, &id, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = Vec::new();
    loop {
        let e = stream.next().await.expect("an event before the end");
        seen.push(e.clone());
        if e.kind == "stdout" {
            break;
        }
    }
    // The first chunk came while the program still sleeps.
    let now = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(now.json["status"], "running", "{}", now.text);
    assert!(now.json["stdout"].is_null());
    seen.extend(stream.rest().await);
    let statuses = statuses(&seen);
    assert_eq!(statuses.last().copied(), Some(&json!("succeeded")));
    assert!(statuses.contains(&&json!("running")));
    assert_eq!(kinds(&seen).last(), Some(&"final"));
    assert_eq!(kinds(&seen).iter().filter(|k| **k == "final").count(), 1);
    let last = seen.last().expect("final");
    assert_eq!(last.id, "final");
    assert_eq!(last.data["id"], id.as_str());
    assert_eq!(last.data["status"], "succeeded");
    assert_eq!(last.data["result"], 1);
    let (text, missed) = text_of(&seen, "stdout", 0);
    assert_eq!(missed, 0);
    assert_eq!(text, "first\nsecond\n");
    assert_eq!(last.data["stdout"], text.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_without_loss_or_repetition_while_running_and_after() {
    let s = TestServer::start(|_| {}).await;
    // Ends with an exception, so stderr has its traceback too.
    let code =
        "import time\nprint('a')\ntime.sleep(0.8)\nprint('b')\ntime.sleep(0.8)\nprint('c')\n1/0";
    let id = submit(&s, code).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, mut first) = open(&s, &s.token, &id, None).await;
    let mut part1 = Vec::new();
    loop {
        let e = first.next().await.expect("event");
        part1.push(e.clone());
        if e.kind == "stdout" {
            break;
        }
    }
    drop(first); // the client goes away mid-stream
    let resume_at = part1.last().expect("event").id.clone();

    // Resumed while the job runs.
    let (status, mut second) = open(&s, &s.token, &id, Some(&resume_at)).await;
    assert_eq!(status, StatusCode::OK);
    let part2 = second.rest().await;
    let final_job = &part2.last().expect("final").data;
    assert_eq!(final_job["status"], "failed");
    assert!(
        final_job["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("ZeroDivisionError"))
    );
    let both: Vec<Event> = part1.iter().chain(&part2).cloned().collect();
    for stream in ["stdout", "stderr"] {
        let (text, missed) = text_of(&both, stream, 0);
        assert_eq!(missed, 0);
        assert_eq!(
            text,
            final_job[stream].as_str().expect("output"),
            "{stream}"
        );
    }
    // No status twice.
    let statuses: Vec<String> = both
        .iter()
        .filter(|e| e.kind == "status")
        .map(|e| e.data["status"].to_string())
        .collect();
    let mut unique = statuses.clone();
    unique.dedup();
    assert_eq!(statuses, unique);

    // Resumed from the same point after the job finished: the same rest,
    // from the stored output.
    let (_, mut third) = open(&s, &s.token, &id, Some(&resume_at)).await;
    let part3 = third.rest().await;
    let offset = part1
        .iter()
        .filter(|e| e.kind == "stdout")
        .map(|e| e.data["text"].as_str().unwrap_or_default().len() as u64)
        .sum::<u64>();
    let (out3, _) = text_of(&part3, "stdout", offset);
    let (out2, _) = text_of(&part2, "stdout", offset);
    assert_eq!(out2, out3);
    assert!(!kinds(&part3).contains(&"gap"));
    assert_eq!(kinds(&part3).last(), Some(&"final"));
    assert!(
        !part3
            .iter()
            .any(|e| e.kind == "status" && e.data["status"] == "running"),
        "running was seen before the resume point"
    );

    // After `final` there is nothing more; a malformed id is a 400.
    let (status, _) = open(&s, &s.token, &id, Some("final")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = open(&s, &s.token, &id, Some("7-x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_sends_final_at_once() {
    let s = TestServer::start(|_| {}).await;
    let done = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print('hello')\n1/0", "wait": true})),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let id = done.json["id"].as_str().expect("id");
    let (_, mut stream) = open(&s, &s.token, id, None).await;
    let events = stream.rest().await;
    assert_eq!(
        kinds(&events),
        ["status", "stdout", "stderr", "status", "final"]
    );
    assert_eq!(events[0].data["status"], "running");
    assert_eq!(events[1].data["text"], "hello\n");
    assert_eq!(events[3].data["status"], "failed");
    assert_eq!(events[4].data["error"]["kind"], "exception");
    assert_eq!(events[4].data["stderr"], events[2].data["text"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_a_gap_and_holds_nothing_back() {
    const WINDOW: usize = 32 * 1024;
    let s = TestServer::start(|c| c.live_buffer_bytes = WINDOW).await;
    // 512 KiB of output in 1 KiB lines, a pause, and a last line.
    let code =
        "import time\nfor i in range(512):\n    print('x' * 1023)\ntime.sleep(1.5)\nprint('end')";
    let id = submit(&s, code).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // `idle` reads nothing until the job is final; `late` starts reading
    // during the pause, long after the window moved past its place.
    let (_, mut idle) = open(&s, &s.token, &id, None).await;
    let (_, mut late) = open(&s, &s.token, &id, None).await;
    let state = s.server.as_ref().expect("server").state();
    let mut peak = 0;
    for _ in 0..100 {
        peak = peak.max(state.live.held_bytes());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut late_events = Vec::new();
    loop {
        let e = late.next().await.expect("an event");
        late_events.push(e.clone());
        if e.kind == "gap" {
            break;
        }
        assert_ne!(e.kind, "final", "a gap comes before the end");
    }
    late_events.extend(late.rest().await);
    let done = s.until_final(&id).await;
    // The job ran to its end with `idle` never read: readers hold it back
    // neither in time nor in memory.
    assert_eq!(done["status"], "succeeded");
    assert!(peak <= WINDOW, "held {peak} bytes");
    let stdout = done["stdout"].as_str().expect("stdout");
    assert_eq!(stdout.len(), 512 * 1024 + 4);
    for events in [late_events, idle.rest().await] {
        let (text, missed) = text_of(&events, "stdout", 0);
        assert_eq!(text.len() as u64 + missed, stdout.len() as u64);
        assert!(text.ends_with("end\n"));
        assert_eq!(events.last().expect("final").data["stdout"], stdout);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_tenants_are_those_of_get_job() {
    let s = TestServer::start(|_| {}).await;
    let id = submit(&s, "print(1)").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, writer) = create_token(&s, "default", &["jobs:write"], json!({})).await;
    let (_, other) = create_token(&s, "other", &["jobs:read"], json!({})).await;
    let (status, _) = open(&s, &writer, &id, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = open(&s, &other, &id, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = open(&s, &s.token, "0190b6f7-0000-7000-8000-000000000000", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = open(&s, &s.token, "not-a-uuid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unauthenticated =
        super::call(&s.app, None, "GET", &format!("/v1/jobs/{id}/events"), None).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_positions_count_down_and_the_estimate_uses_run_times() {
    let s = TestServer::start(|_| {}).await;
    // One run time for the estimate.
    let warm = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import time\ntime.sleep(0.2)", "wait": true})),
        )
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    assert!(warm.json["queue_position"].is_null());
    // Fill both workers; they free up one at a time.
    let a = submit(&s, "import time\ntime.sleep(0.8)").await;
    let b = submit(&s, "import time\ntime.sleep(1.6)").await;
    for j in [&a, &b] {
        s.until(j["id"].as_str().expect("id"), |j| j["status"] == "running")
            .await;
    }
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(submit(&s, "import time\ntime.sleep(1.2)").await);
    }
    let positions: Vec<&Value> = queued.iter().map(|j| &j["queue_position"]).collect();
    assert_eq!(positions, [&json!(0), &json!(1), &json!(2)]);
    let eta: Vec<u64> = queued
        .iter()
        .map(|j| j["estimated_start_ms"].as_u64().expect("an estimate"))
        .collect();
    // No worker free: the first two start after one mean run time, the
    // third after two.
    assert!(eta[0] >= 200, "{eta:?}");
    assert_eq!(eta[1], eta[0]);
    assert_eq!(eta[2], 2 * eta[0]);

    let last = queued[2]["id"].as_str().expect("id").to_owned();
    let mut seen = vec![2];
    loop {
        let j = s.call("GET", &format!("/v1/jobs/{last}"), None).await.json;
        match j["queue_position"].as_u64() {
            Some(p) => {
                assert_eq!(j["status"], "queued");
                assert!(j["estimated_start_ms"].is_u64());
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
            None => {
                assert_ne!(j["status"], "queued");
                assert!(j["estimated_start_ms"].is_null());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [2, 1, 0], "positions count down");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_from_the_run_times() {
    let s = TestServer::start(|c| {
        c.workers = 1;
        c.queue_size = 1;
    })
    .await;
    let warm = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import time\ntime.sleep(2.2)", "wait": true})),
        )
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    let running = submit(&s, "import time\ntime.sleep(5)").await;
    let running = running["id"].as_str().expect("id").to_owned();
    s.until(&running, |j| j["status"] == "running").await;
    let waiting = submit(&s, "print(1)").await;
    assert_eq!(waiting["queue_position"], 0);
    let full = s
        .call("POST", "/v1/jobs", Some(json!({"code": "print(2)"})))
        .await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(super::error_code(&full), "queue_full");
    // One run of about 2.2 s is the whole history: the head of the queue
    // starts in one mean run time, so a place frees in 3 s (rounded up),
    // not a constant.
    assert_eq!(full.headers[header::RETRY_AFTER], "3");
    for id in [waiting["id"].as_str().expect("id"), &running] {
        s.call("DELETE", &format!("/v1/jobs/{id}"), None).await;
    }
    s.stop().await;
}
