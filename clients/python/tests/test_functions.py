"""Stored functions through the sync and async clients against the real
server: register, update, get, list, invoke (an ordinary job that records
the function), delete, and the errors."""

from __future__ import annotations

import uuid

import pytest

from conftest import FAST_RETRY, Server
from strictpy_client import (
    AsyncClient,
    Client,
    ConflictError,
    Function,
    Limits,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
    UnprocessableError,
)

FUNCTION_SCOPES = ["jobs:read", "jobs:write", "functions:write", "functions:invoke"]


def fresh(prefix: str) -> str:
    """A name no other test uses (the server is shared by the session)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_register_update_invoke_delete(server: Server) -> None:
    token = server.create_token(FUNCTION_SCOPES, tenant="fn-sync")
    name = fresh("price")
    with Client(server.base_url, token=token, retry=FAST_RETRY) as c:
        fn = c.functions.register(
            name, "result = qty * unit", description="pricing", limits=Limits(timeout_ms=2000)
        )
        assert isinstance(fn, Function)
        assert (fn.name, fn.version, fn.compiled, fn.description) == (name, 1, True, "pricing")
        assert fn.limits.timeout_ms == 2000
        with pytest.raises(ConflictError):
            c.functions.register(name, "result = 0")
        with pytest.raises(PolicyViolationError):
            c.functions.register(fresh("evil"), "import socket")
        v2 = c.functions.update(name, "result = qty * unit * 10", limits={"timeout_ms": 2000})
        assert v2.version == 2
        got = c.functions.get(name)
        assert got.version == 2 and got.versions == (1, 2)
        assert c.functions.get(name, 1).code == "result = qty * unit"
        assert name in [f.name for f in c.functions.list(limit=200).functions]

        job = c.functions.invoke(name, context={"qty": 3, "unit": 2})
        assert job.succeeded and job.result == 60
        assert (job.function_name, job.function_version) == (name, 2)
        old = c.functions.invoke(name, context={"qty": 3, "unit": 2}, version=1)
        assert old.result == 6 and old.function_version == 1
        assert c.get(job.id).function_name == name
        queued = c.functions.invoke(name, context={"qty": 1, "unit": 1}, wait=False)
        assert c.wait_for(queued.id, timeout=30).result == 10
        with pytest.raises(UnprocessableError) as info:
            c.functions.invoke(name, limits={"timeout_ms": 5000})
        assert info.value.code == "limit_exceeded"

        c.functions.delete(name, 2)
        assert c.functions.get(name).version == 1
        c.functions.delete(name)
        with pytest.raises(NotFoundError):
            c.functions.get(name)
        with pytest.raises(NotFoundError):
            c.functions.invoke(name)


def test_scopes_and_tenants(server: Server) -> None:
    name = fresh("scoped")
    writer = server.create_token(["functions:write"], tenant="fn-scopes")
    other = server.create_token(FUNCTION_SCOPES, tenant="fn-other")
    with Client(server.base_url, token=writer, retry=FAST_RETRY) as c:
        c.functions.register(name, "result = 1")
        with pytest.raises(PermissionDeniedError):
            c.functions.invoke(name)
    with Client(server.base_url, token=other, retry=FAST_RETRY) as c:
        with pytest.raises(NotFoundError):
            c.functions.get(name)
        with pytest.raises(NotFoundError):
            c.functions.invoke(name)


@pytest.mark.anyio
async def test_async_client(server: Server) -> None:
    token = server.create_token(FUNCTION_SCOPES, tenant="fn-async")
    name = fresh("fmt")
    async with AsyncClient(server.base_url, token=token, retry=FAST_RETRY) as c:
        fn = await c.functions.register(name, "print(f'{x:>4}|')\nresult = x")
        assert fn.version == 1
        assert (await c.functions.update(name, "result = x + 1")).version == 2
        assert (await c.functions.get(name)).versions == (1, 2)
        page = await c.functions.list()
        assert name in [f.name for f in page.functions]
        first = await c.functions.invoke(name, context={"x": 7}, version=1)
        assert first.stdout == "   7|\n" and first.result == 7
        job = await c.functions.invoke(name, context={"x": 7})
        assert job.result == 8 and job.function_version == 2
        await c.functions.delete(name)
        with pytest.raises(NotFoundError):
            await c.functions.get(name)
