"""Stored functions (``/v1/functions``): register a program once under a
name, invoke it by name many times. ``client.functions`` is a
:class:`Functions` (``async_client.functions`` an :class:`AsyncFunctions`).

>>> fn = client.functions.register("price", "result = qty * unit", description="pricing rule")
>>> client.functions.invoke("price", context={"qty": 3, "unit": 2}).result
6
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._base import job_from_response, json_of, path_segment
from .models import Job, Limits, _dt

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .client import Client


@dataclass(frozen=True)
class Function:
    """One version of a stored function."""

    name: str
    """The function's name, unique within the tenant."""
    version: int
    """This version's number (1 for the first registration)."""
    description: str | None
    """What it is for."""
    code: str
    """The Python source."""
    allow: tuple[str, ...]
    """The extra modules it may import."""
    limits: Limits
    """Its limits; an invocation may only tighten them."""
    created_at: datetime | None
    """When this version was stored."""
    compiled: bool
    """True when invocations start from a stored compiled form."""
    versions: tuple[int, ...] = ()
    """Every live version's number (only from :meth:`Functions.get` without
    a version)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Function:
        """Parses the API's function document."""
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            description=data.get("description"),
            code=str(data.get("code", "")),
            allow=tuple(str(m) for m in data.get("allow") or []),
            limits=Limits.from_dict(data.get("limits") or {}),
            created_at=_dt(data.get("created_at")),
            compiled=bool(data.get("compiled")),
            versions=tuple(int(v) for v in data.get("versions") or []),
        )


@dataclass(frozen=True)
class FunctionSummary:
    """A function in a listing: its newest version, without the code."""

    name: str
    """The name."""
    version: int
    """The newest version."""
    description: str | None
    """What it is for."""
    created_at: datetime | None
    """When the newest version was stored."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionSummary:
        """Parses one item of ``GET /v1/functions``."""
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            description=data.get("description"),
            created_at=_dt(data.get("created_at")),
        )


@dataclass(frozen=True)
class FunctionPage:
    """A page of functions, by name."""

    functions: tuple[FunctionSummary, ...]
    """The functions on this page."""
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``None`` on the last page."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionPage:
        """Parses the answer of ``GET /v1/functions``."""
        return cls(
            functions=tuple(FunctionSummary.from_dict(f) for f in data.get("functions") or []),
            next_cursor=data.get("next_cursor"),
        )


def _version_body(
    code: str,
    allow: Sequence[str] | None,
    limits: Limits | Mapping[str, int] | None,
    description: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code}
    if allow:
        body["allow"] = builtins.list(allow)
    if limits is not None:
        body["limits"] = limits.to_dict() if isinstance(limits, Limits) else dict(limits)
    if description is not None:
        body["description"] = description
    return body


def _invoke_body(
    *,
    context: Mapping[str, Any] | None,
    stdin: str | None,
    limits: Limits | Mapping[str, int] | None,
    seed: int | None,
    wait: bool,
    callback_url: str | None,
    idempotency_key: str | None,
    version: int | None,
    auto_key: bool,
) -> tuple[dict[str, Any], bool]:
    """The invocation body and whether it may be retried (with a key)."""
    if idempotency_key is None and auto_key:
        idempotency_key = str(uuid.uuid4())
    body: dict[str, Any] = {"wait": wait}
    for key, value in (
        ("context", dict(context) if context is not None else None),
        ("stdin", stdin),
        ("seed", seed),
        ("callback_url", callback_url),
        ("idempotency_key", idempotency_key),
        ("version", version),
    ):
        if value is not None:
            body[key] = value
    if limits is not None:
        body["limits"] = limits.to_dict() if isinstance(limits, Limits) else dict(limits)
    return body, idempotency_key is not None


def _path(name: str, version: int | None = None) -> str:
    path = f"/v1/functions/{path_segment(name)}"
    return path if version is None else f"{path}/versions/{int(version)}"


class Functions:
    """Stored functions on a :class:`Client` (``client.functions``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def register(
        self,
        name: str,
        code: str,
        *,
        allow: Sequence[str] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        description: str | None = None,
    ) -> Function:
        """Registers a function (``POST /v1/functions``): statically checked
        (:class:`PolicyViolationError` when refused) and compiled once.
        Raises :class:`ConflictError` when the name is taken."""
        body = _version_body(code, allow, limits, description)
        body["name"] = name
        response = self._client._send("POST", "/v1/functions", json=body, retryable=False)
        return Function.from_dict(json_of(response))

    def update(
        self,
        name: str,
        code: str,
        *,
        allow: Sequence[str] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        description: str | None = None,
    ) -> Function:
        """Stores the next version (``PUT /v1/functions/{name}``)."""
        body = _version_body(code, allow, limits, description)
        response = self._client._send("PUT", _path(name), json=body, retryable=False)
        return Function.from_dict(json_of(response))

    def get(self, name: str, version: int | None = None) -> Function:
        """The newest version (with every version's number), or ``version``."""
        return Function.from_dict(json_of(self._client._send("GET", _path(name, version), retryable=True)))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> FunctionPage:
        """One page of functions, by name (``GET /v1/functions``)."""
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        return FunctionPage.from_dict(
            json_of(self._client._send("GET", "/v1/functions", params=params, retryable=True))
        )

    def delete(self, name: str, version: int | None = None) -> None:
        """Deletes every version, or one (``DELETE``)."""
        self._client._send("DELETE", _path(name, version), retryable=True)

    def invoke(
        self,
        name: str,
        *,
        context: Mapping[str, Any] | None = None,
        stdin: str | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        seed: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        version: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Job:
        """Runs the function as a job (``POST /v1/functions/{name}/invoke``)
        and, with ``wait`` (the default), returns it once final, as
        :meth:`Client.run` does. ``job.function_name`` and
        ``job.function_version`` say what ran."""
        started = time.monotonic()
        core = self._client._core
        body, retryable = _invoke_body(
            context=context,
            stdin=stdin,
            limits=limits,
            seed=seed,
            wait=wait,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            version=version,
            auto_key=core.auto_idempotency_keys,
        )
        response = self._client._send(
            "POST",
            f"{_path(name)}/invoke",
            json=body,
            retryable=retryable,
            timeout=core.wait_request_timeout() if wait else None,
        )
        job = job_from_response(response)
        if not wait or job.is_final:
            return job
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self._client.wait_for(job.id, timeout=remaining)


class AsyncFunctions:
    """Stored functions on an :class:`AsyncClient` (``client.functions``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def register(
        self,
        name: str,
        code: str,
        *,
        allow: Sequence[str] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        description: str | None = None,
    ) -> Function:
        """See :meth:`Functions.register`."""
        body = _version_body(code, allow, limits, description)
        body["name"] = name
        response = await self._client._send("POST", "/v1/functions", json=body, retryable=False)
        return Function.from_dict(json_of(response))

    async def update(
        self,
        name: str,
        code: str,
        *,
        allow: Sequence[str] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        description: str | None = None,
    ) -> Function:
        """See :meth:`Functions.update`."""
        body = _version_body(code, allow, limits, description)
        response = await self._client._send("PUT", _path(name), json=body, retryable=False)
        return Function.from_dict(json_of(response))

    async def get(self, name: str, version: int | None = None) -> Function:
        """See :meth:`Functions.get`."""
        response = await self._client._send("GET", _path(name, version), retryable=True)
        return Function.from_dict(json_of(response))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> FunctionPage:
        """See :meth:`Functions.list`."""
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        response = await self._client._send("GET", "/v1/functions", params=params, retryable=True)
        return FunctionPage.from_dict(json_of(response))

    async def delete(self, name: str, version: int | None = None) -> None:
        """See :meth:`Functions.delete`."""
        await self._client._send("DELETE", _path(name, version), retryable=True)

    async def invoke(
        self,
        name: str,
        *,
        context: Mapping[str, Any] | None = None,
        stdin: str | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        seed: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        version: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Job:
        """See :meth:`Functions.invoke`."""
        started = time.monotonic()
        core = self._client._core
        body, retryable = _invoke_body(
            context=context,
            stdin=stdin,
            limits=limits,
            seed=seed,
            wait=wait,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            version=version,
            auto_key=core.auto_idempotency_keys,
        )
        response = await self._client._send(
            "POST",
            f"{_path(name)}/invoke",
            json=body,
            retryable=retryable,
            timeout=core.wait_request_timeout() if wait else None,
        )
        job = job_from_response(response)
        if not wait or job.is_final:
            return job
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return await self._client.wait_for(job.id, timeout=remaining)
