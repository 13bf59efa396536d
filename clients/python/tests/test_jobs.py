"""run / submit / get / cancel / list / batch / check against the real server."""

from __future__ import annotations

import time

import pytest

from strictpy_client import (
    Client,
    ConflictError,
    Job,
    JobRequest,
    Limits,
    NotFoundError,
    PolicyViolationError,
    UnprocessableError,
    WaitTimeoutError,
)

SPIN = "while True:\n    pass"


def test_run_returns_the_finished_job(client: Client) -> None:
    job = client.run("print('hello')\nresult = 6 * 7")
    assert job.status == "succeeded"
    assert job.is_final and job.succeeded
    assert job.stdout == "hello\n"
    assert job.result == 42
    assert job.error is None
    assert job.usage is not None and job.usage.fuel_consumed > 0
    assert job.created_at is not None and job.finished_at is not None
    assert job.idempotency_key, "the client adds an idempotency key"
    outcome = job.outcome()
    assert outcome is not None and outcome.status == "succeeded" and outcome.result == 42


def test_run_passes_context_stdin_limits_allow_and_seed(client: Client) -> None:
    code = "import random\nname = input()\nresult = [n * 2, name, random.randint(1, 10**9)]"

    def go() -> Job:
        return client.run(
            code,
            context={"n": 21},
            stdin="ada\n",
            limits=Limits(timeout_ms=3000, memory_mb=256),
            allow=["random"],
            seed=7,
        )

    first, second = go(), go()
    assert first.status == "succeeded", first.error
    assert first.result[:2] == [42, "ada"]
    assert first.result == second.result, "a seed makes the run reproducible"
    assert first.limits.timeout_ms == 3000 and first.limits.memory_mb == 256
    assert first.allow == ("random",)
    assert first.seed == 7


def test_a_failing_run_reports_its_verdict(client: Client) -> None:
    job = client.run(SPIN, limits={"timeout_ms": 200})
    assert job.status == "failed"
    assert job.verdict == "timeout"
    assert job.error is not None and job.error.limit == 200
    outcome = job.outcome()
    assert outcome is not None and outcome.status == "failed"

    job = client.run("raise ValueError('nope')")
    assert job.verdict == "exception"
    assert job.error is not None and job.error.exception_type == "ValueError"


def test_policy_violation_raises_with_the_violations(client: Client) -> None:
    with pytest.raises(PolicyViolationError) as info:
        client.run("import os\nos.system('id')")
    err = info.value
    assert err.status_code == 422 and err.code == "policy_violation"
    assert [v.rule for v in err.violations] == ["forbidden_import"]
    assert err.violations[0].name == "os" and err.violations[0].line == 1


def test_a_limit_above_the_maximum_is_refused(client: Client) -> None:
    with pytest.raises(UnprocessableError) as info:
        client.run("pass", limits=Limits(timeout_ms=10**9))
    assert info.value.code == "limit_exceeded"
    assert info.value.details["field"] == "limits.timeout_ms"


def test_submit_get_and_wait_for(client: Client) -> None:
    job = client.submit("import time\ntime.sleep(0.2)\nresult = 'done'")
    assert job.status in ("queued", "running")
    assert job.stdout is None and job.usage is None
    got = client.get(job.id)
    assert got.id == job.id
    done = client.wait_for(job.id, timeout=30)
    assert done.status == "succeeded" and done.result == "done"


def test_run_without_wait_is_submit(client: Client) -> None:
    job = client.run("result = 1", wait=False)
    assert job.status in ("queued", "running", "succeeded")
    assert client.wait_for(job.id, timeout=30).result == 1


def test_wait_for_times_out(client: Client) -> None:
    job = client.submit(SPIN, limits={"timeout_ms": 5000})
    try:
        with pytest.raises(WaitTimeoutError):
            client.wait_for(job.id, timeout=0.3)
    finally:
        client.cancel(job.id)


def test_cancel_interrupts_a_running_job(client: Client) -> None:
    job = client.submit(SPIN, limits={"timeout_ms": 20000})
    deadline = time.monotonic() + 10
    while client.get(job.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    cancelled = client.cancel(job.id)
    assert time.monotonic() - started < 5
    assert cancelled.status == "cancelled"
    assert cancelled.verdict == "cancelled"
    assert client.cancel(job.id).status == "cancelled", "cancelling again answers the job"


def test_cancel_a_finished_job_is_a_conflict(client: Client) -> None:
    job = client.run("result = 1")
    with pytest.raises(ConflictError) as info:
        client.cancel(job.id)
    assert info.value.code == "job_finished"


def test_unknown_job_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.get("0193a4c2-0000-7000-8000-000000000000")


def test_list_pages_newest_first_and_filters(client: Client) -> None:
    ids = [client.run(f"result = {n}").id for n in range(3)]
    page = client.list(limit=2)
    assert [j.id for j in page.jobs] == ids[::-1][:2]
    assert page.next_cursor is not None
    following = client.list(limit=2, cursor=page.next_cursor)
    assert following.jobs[0].id == ids[0]
    succeeded = client.list(status="succeeded", limit=200)
    assert all(j.status == "succeeded" for j in succeeded.jobs)
    assert set(ids) <= {j.id for j in succeeded.jobs}
    every = [j.id for j in client.iter_jobs(page_size=2)]
    assert every[:3] == ids[::-1]
    assert len(every) == len(set(every))


def test_batch_accepts_and_refuses_items_on_their_own(client: Client) -> None:
    items = client.batch(
        [
            "result = 'a'",
            JobRequest(code="import os"),
            JobRequest(code="result = n", context={"n": 5}),
        ]
    )
    assert [i.ok for i in items] == [True, False, True]
    assert items[1].error is not None and items[1].error.code == "policy_violation"
    results = [client.wait_for(i.id, timeout=30).result for i in items if i.id]
    assert results == ["a", 5]


def test_check_reports_violations_without_running(client: Client) -> None:
    assert client.check("import json\nresult = json.dumps([1])").ok
    verdict = client.check("import random\neval('1')")
    assert not verdict.ok
    assert sorted(v.rule for v in verdict.violations) == ["forbidden_builtin", "forbidden_import"]
    assert client.check("import random", allow=["random"]).ok


def test_an_explicit_idempotency_key_returns_the_first_job(client: Client) -> None:
    key = f"order-{time.time_ns()}"
    first = client.run("result = 1", idempotency_key=key)
    again = client.run("result = 1", idempotency_key=key)
    assert again.id == first.id and again.replayed and not first.replayed
    with pytest.raises(ConflictError) as info:
        client.submit("result = 2", idempotency_key=key)
    assert info.value.code == "idempotency_key_reused"
