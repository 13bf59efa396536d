"""``client.stream``: a job's live events, sync and async, against the real
server."""

from __future__ import annotations

import time

import pytest

from conftest import Server
from strictpy_client import AsyncClient, Client, JobEvent

PRINT_SLEEP_PRINT = "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')\nresult = 3"


def test_stream_yields_output_before_the_job_ends(client: Client) -> None:
    job = client.submit(PRINT_SLEEP_PRINT)
    events: list[JobEvent] = []
    first_stdout_at: float | None = None
    status_then = None
    for event in client.stream(job.id):
        events.append(event)
        if event.kind == "stdout" and first_stdout_at is None:
            first_stdout_at = time.monotonic()
            status_then = client.get(job.id).status
    assert status_then == "running", "the first chunk came while the program slept"
    assert events[-1].kind == "final"
    final = events[-1].job
    assert final is not None and final.status == "succeeded" and final.result == 3
    text = "".join(e.text for e in events if e.kind == "stdout")
    assert text == final.stdout == "first\nsecond\n"
    statuses = [e.status for e in events if e.kind == "status"]
    assert statuses[-1] == "succeeded" and "running" in statuses


def test_stream_resumes_from_an_event_id(client: Client) -> None:
    job = client.run("print('a')\nprint('b')")
    events = list(client.stream(job.id))
    assert [e.kind for e in events][-1] == "final"
    stdout = [e for e in events if e.kind == "stdout"]
    assert stdout, events
    # Resuming after the output gives only what came after it.
    rest = list(client.stream(job.id, last_event_id=stdout[-1].id))
    assert [e.kind for e in rest] == ["status", "final"]
    # Resuming after `final` gives nothing.
    assert list(client.stream(job.id, last_event_id="final")) == []


@pytest.mark.anyio
async def test_async_stream(server: Server, token: str) -> None:
    async with AsyncClient(server.base_url, token=token) as c:
        job = await c.submit(PRINT_SLEEP_PRINT)
        kinds = []
        text = ""
        async for event in c.stream(job.id):
            kinds.append(event.kind)
            text += event.text
        assert kinds[-1] == "final"
        assert text == "first\nsecond\n"


def test_a_queued_job_reports_its_position(client: Client) -> None:
    job = client.submit("result = 1")
    # It may already have started; while queued it carries its place.
    if job.status == "queued":
        assert job.queue_position is not None and job.queue_position >= 0
    done = client.wait_for(job.id, timeout=30)
    assert done.queue_position is None and done.estimated_start_ms is None
