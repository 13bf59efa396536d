"""The retry policy, through a fault-injecting proxy in front of the real
server: 5xx, 429 with Retry-After, dropped connections and timeouts are
retried; other 4xx are not; a submission is retried only with an
idempotency key, and the retry never creates a second job."""

from __future__ import annotations

import json
import time

import pytest

from conftest import FAST_RETRY
from faults import Fault, FaultProxy
from strictpy_client import (
    Client,
    RateLimitedError,
    RateLimiter,
    RetryPolicy,
    ServerError,
    TransportError,
    UnprocessableError,
)
from strictpy_client.retry import parse_retry_after


def all_job_ids(client: Client) -> set[str]:
    return {j.id for j in client.iter_jobs(page_size=200)}


def test_5xx_is_retried_with_backoff(proxied: Client, proxy: FaultProxy) -> None:
    job = proxied.run("result = 1")
    proxy.inject(Fault.respond(503, path="/v1/jobs/"), Fault.respond(500, path="/v1/jobs/"))
    got = proxied.get(job.id)
    assert got.result == 1
    gets = proxy.requests("GET", f"/v1/jobs/{job.id}")
    assert [s.fault for s in gets] == ["respond", "respond", None]


def test_retries_give_up_after_max_attempts(proxied: Client, proxy: FaultProxy) -> None:
    proxy.inject(*[Fault.respond(502, path="/v1/check") for _ in range(10)])
    with pytest.raises(ServerError) as info:
        proxied.check("pass")
    assert info.value.status_code == 502
    assert len(proxy.requests("POST", "/v1/check")) == FAST_RETRY.max_attempts


def test_429_honours_retry_after(proxied: Client, proxy: FaultProxy) -> None:
    proxy.inject(
        Fault.respond(429, path="/v1/jobs", retry_after="1", ratelimit="limit=10, remaining=0, reset=1")
    )
    started = time.monotonic()
    job = proxied.run("result = 2")
    assert job.result == 2
    posts = proxy.requests("POST", "/v1/jobs")
    assert len(posts) == 2
    assert posts[1].at - posts[0].at >= 0.95, "waited out Retry-After"
    assert time.monotonic() - started < 5


def test_429_with_a_retry_after_too_long_is_raised(proxy: FaultProxy, token: str) -> None:
    with Client(proxy.url, token=token, retry=RetryPolicy(max_retry_after=5)) as c:
        proxy.inject(Fault.respond(429, path="/v1/check", retry_after="120"))
        with pytest.raises(RateLimitedError) as info:
            c.check("pass")
    assert info.value.retry_after == 120
    assert len(proxy.requests("POST", "/v1/check")) == 1


def test_503_retry_after_is_honoured(proxied: Client, proxy: FaultProxy) -> None:
    proxy.inject(Fault.respond(503, path="/v1/check", retry_after="1"))
    assert proxied.check("pass").ok
    checks = proxy.requests("POST", "/v1/check")
    assert len(checks) == 2 and checks[1].at - checks[0].at >= 0.95


def test_other_4xx_are_not_retried(proxied: Client, proxy: FaultProxy) -> None:
    with pytest.raises(UnprocessableError):
        proxied.run("pass", limits={"timeout_ms": 10**9})
    assert len(proxy.requests("POST", "/v1/jobs")) == 1
    proxy.inject(Fault.respond(403, path="/v1/check"))
    with pytest.raises(Exception):
        proxied.check("pass")
    assert len(proxy.requests("POST", "/v1/check")) == 1


def test_connection_errors_and_timeouts_are_retried(proxy: FaultProxy, token: str) -> None:
    with Client(proxy.url, token=token, retry=FAST_RETRY, timeout=0.5) as c:
        proxy.inject(Fault.drop(path="/v1/check"), Fault.stall(2.0, path="/v1/check"))
        assert c.check("pass").ok
    assert [s.fault for s in proxy.requests("POST", "/v1/check")] == ["drop", "stall", None]


def test_a_lost_answer_to_a_submission_is_retried_without_a_duplicate(
    proxied: Client, proxy: FaultProxy, client: Client
) -> None:
    before = all_job_ids(client)
    proxy.inject(Fault.forward_then_respond(502, method="POST", path="/v1/jobs"))
    job = proxied.run("result = 'once'")
    assert job.result == "once"
    posts = proxy.requests("POST", "/v1/jobs")
    assert len(posts) == 2
    key = posts[0].json()["idempotency_key"]
    assert key and posts[1].json()["idempotency_key"] == key, "the retry reuses the key"
    assert json.loads(posts[0].upstream_body)["id"] == job.id, "the server had created it"
    assert job.replayed
    assert all_job_ids(client) - before == {job.id}, "exactly one job was created"


def test_a_dropped_connection_after_submission_creates_no_duplicate(
    proxied: Client, proxy: FaultProxy, client: Client
) -> None:
    before = all_job_ids(client)
    proxy.inject(Fault.forward_then_drop(method="POST", path="/v1/jobs"))
    job = proxied.submit("result = 3")
    assert len(proxy.requests("POST", "/v1/jobs")) == 2
    assert all_job_ids(client) - before == {job.id}


def test_a_submission_without_an_idempotency_key_is_not_retried(
    proxy: FaultProxy, token: str, client: Client
) -> None:
    before = all_job_ids(client)
    with Client(proxy.url, token=token, retry=FAST_RETRY, auto_idempotency_keys=False) as c:
        proxy.inject(Fault.forward_then_respond(502, method="POST", path="/v1/jobs"))
        with pytest.raises(ServerError):
            c.submit("result = 4")
        proxy.inject(Fault.forward_then_drop(method="POST", path="/v1/jobs"))
        with pytest.raises(TransportError):
            c.submit("result = 5")
        # A 429 means the request was refused before anything happened, so it
        # is retried even without a key.
        proxy.inject(Fault.respond(429, method="POST", path="/v1/jobs", retry_after="0"))
        job = c.submit("result = 6")
    posts = proxy.requests("POST", "/v1/jobs")
    assert len(posts) == 4
    assert all("idempotency_key" not in p.json() for p in posts)
    # The two lost answers did create jobs, which is why they were not retried.
    assert len(all_job_ids(client) - before) == 3
    assert client.wait_for(job.id, timeout=30).result == 6


def test_a_batch_is_retried_with_a_key_per_item(proxied: Client, proxy: FaultProxy, client: Client) -> None:
    before = all_job_ids(client)
    proxy.inject(Fault.forward_then_respond(504, path="/v1/jobs/batch"))
    items = proxied.batch(["result = 1", "result = 2"])
    posts = proxy.requests("POST", "/v1/jobs/batch")
    assert len(posts) == 2
    assert posts[0].json() == posts[1].json()
    first_ids = [i["id"] for i in json.loads(posts[0].upstream_body)["jobs"]]
    assert [i.id for i in items] == first_ids
    assert all_job_ids(client) - before == set(first_ids)


def test_the_rate_limiter_spaces_requests(proxy: FaultProxy, token: str) -> None:
    limiter = RateLimiter(2, 0.5)
    with Client(proxy.url, token=token, rate_limiter=limiter) as c:
        started = time.monotonic()
        for _ in range(5):
            c.check("pass")
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0, "5 requests at 2 per 0.5 s take at least two windows"
    times = [s.at for s in proxy.requests("POST", "/v1/check")]
    for i in range(2, len(times)):
        assert times[i] - times[i - 2] >= 0.45, "never more than 2 in a window"


def test_backoff_is_full_jitter_with_a_cap() -> None:
    top = RetryPolicy(backoff_base=0.5, backoff_max=3.0, random=lambda a, b: b)
    assert [top.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    bottom = RetryPolicy(random=lambda a, b: a)
    assert bottom.backoff(3) == 0.0
    policy = RetryPolicy(max_attempts=3)
    assert policy.delay_for_status(404, None, 1) is None
    assert policy.delay_for_status(409, None, 1) is None
    assert policy.delay_for_status(503, None, 3) is None, "attempts exhausted"
    assert policy.delay_for_status(429, 2.0, 1) == 2.0
    assert policy.delay_for_status(429, 600.0, 1) is None


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
