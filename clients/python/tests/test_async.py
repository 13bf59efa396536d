"""The asynchronous client against the real server, directly and through
the fault-injecting proxy."""

from __future__ import annotations

import time

import anyio
import pytest

from conftest import ACCESS_TOKEN_TTL_SECS, FAST_RETRY, Server
from faults import Fault, FaultProxy
from strictpy_client import (
    AsyncClient,
    ConflictError,
    JobRequest,
    OAuthCredentials,
    PolicyViolationError,
    RateLimiter,
    ServerError,
)

pytestmark = pytest.mark.anyio


async def test_run_submit_get_wait_cancel(server: Server, token: str) -> None:
    async with AsyncClient(server.base_url, token=token, retry=FAST_RETRY) as c:
        job = await c.run("print('hi')\nresult = n + 1", context={"n": 41})
        assert job.status == "succeeded" and job.result == 42 and job.stdout == "hi\n"
        queued = await c.submit("import time\ntime.sleep(0.1)\nresult = 'later'")
        assert (await c.get(queued.id)).id == queued.id
        assert (await c.wait_for(queued.id, timeout=30)).result == "later"
        spinning = await c.submit("while True:\n    pass", limits={"timeout_ms": 20000})
        cancelled = await c.cancel(spinning.id)
        assert cancelled.status == "cancelled"
        with pytest.raises(ConflictError):
            await c.cancel(job.id)
        with pytest.raises(PolicyViolationError) as info:
            await c.run("import socket")
        assert info.value.violations[0].name == "socket"


async def test_list_batch_and_check(server: Server, token: str) -> None:
    async with AsyncClient(server.base_url, token=token) as c:
        items = await c.batch([JobRequest(code="result = 1"), "import os"])
        assert [i.ok for i in items] == [True, False]
        assert items[0].id is not None
        await c.wait_for(items[0].id, timeout=30)
        page = await c.list(status="succeeded", limit=5)
        assert items[0].id in {j.id for j in page.jobs}
        seen = [j.id async for j in c.iter_jobs(page_size=3)]
        assert items[0].id in seen
        assert (await c.check("x = 1")).ok
        assert not (await c.check("eval('1')")).ok


async def test_retries_and_idempotency(proxy: FaultProxy, token: str) -> None:
    async with AsyncClient(proxy.url, token=token, retry=FAST_RETRY) as c:
        proxy.inject(Fault.respond(503, path="/v1/check"), Fault.drop(path="/v1/check"))
        assert (await c.check("pass")).ok
        proxy.inject(Fault.forward_then_respond(502, method="POST", path="/v1/jobs"))
        job = await c.run("result = 'once'")
        assert job.result == "once" and job.replayed
        proxy.inject(*[Fault.respond(500, path="/v1/check") for _ in range(FAST_RETRY.max_attempts)])
        with pytest.raises(ServerError):
            await c.check("pass")
    posts = proxy.requests("POST", "/v1/jobs")
    assert len(posts) == 2 and posts[0].body == posts[1].body


async def test_rate_limiter_without_blocking_the_loop(proxy: FaultProxy, token: str) -> None:
    limiter = RateLimiter(3, 0.5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.05)
            ticks += 1

    async with AsyncClient(proxy.url, token=token, rate_limiter=limiter) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            started = time.monotonic()
            for _ in range(7):
                await c.check("pass")
            elapsed = time.monotonic() - started
            tg.cancel_scope.cancel()
    assert elapsed >= 1.0
    assert ticks >= 10, "the event loop kept running while the limiter waited"


async def test_oauth_refresh(server: Server, needs_auth: None, proxy: FaultProxy, token: str) -> None:
    async with AsyncClient(proxy.url, token=token, oauth=True, retry=FAST_RETRY) as c:
        await c.check("pass")
        await anyio.sleep(ACCESS_TOKEN_TTL_SECS / 2 + 0.3)
        await c.check("pass")
        proxy.inject(Fault.respond(401, path="/v1/check"))
        await c.check("pass")
        creds = c.credentials
        assert isinstance(creds, OAuthCredentials) and creds.refreshes == 3
    assert [s.path for s in proxy.requests()] == [
        "/v1/oauth/token",
        "/v1/check",
        "/v1/oauth/token/refresh",
        "/v1/check",
        "/v1/check",
        "/v1/oauth/token/refresh",
        "/v1/check",
    ]
