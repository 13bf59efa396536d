"""Typed mirrors of the strictpy HTTP API's documents.

Every class parses leniently: fields a newer server adds are ignored, so an
old client keeps working against a newer server. Values the API spells as
strings (statuses, verdicts) stay strings, typed with ``Literal`` aliases,
for the same reason.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
"""Where a job is in its life; the last three are final."""

OutcomeStatus = Literal["succeeded", "failed", "rejected"]
"""The overall result of a run, as ``strictpy run --json`` prints it."""

Verdict = Literal[
    "syntax_error",
    "forbidden_import",
    "forbidden_builtin",
    "forbidden_attribute",
    "source_too_large",
    "too_deeply_nested",
    "invalid_encoding",
    "exception",
    "timeout",
    "fuel_exhausted",
    "memory_limit",
    "stack_overflow",
    "cancelled",
    "internal",
]
"""Why a run did not succeed (``error.kind``)."""

FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
"""The job statuses that never change again."""


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Limits:
    """Resource limits. In a request every field is optional (``None`` keeps
    the server's default); in a job they are the limits as applied."""

    timeout_ms: int | None = None
    """Wall-clock limit in milliseconds."""
    fuel: int | None = None
    """Fuel budget (about one unit per WebAssembly instruction)."""
    memory_mb: int | None = None
    """Memory cap in MiB."""
    max_output_bytes: int | None = None
    """Cap on stdout and on stderr, each, in bytes."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """Parses the API's ``limits`` object."""
        return cls(
            timeout_ms=_opt_int(data.get("timeout_ms")),
            fuel=_opt_int(data.get("fuel")),
            memory_mb=_opt_int(data.get("memory_mb")),
            max_output_bytes=_opt_int(data.get("max_output_bytes")),
        )

    def to_dict(self) -> dict[str, int]:
        """The request form: only the limits that are set."""
        out = {
            "timeout_ms": self.timeout_ms,
            "fuel": self.fuel,
            "memory_mb": self.memory_mb,
            "max_output_bytes": self.max_output_bytes,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Usage:
    """What a run used."""

    fuel_consumed: int
    """Fuel burned by the guest."""
    wall_time_ms: float
    """Wall time of the run in milliseconds."""
    memory_peak_bytes: int
    """The largest linear memory the guest had."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Parses the API's ``usage`` object."""
        return cls(
            fuel_consumed=int(data.get("fuel_consumed", 0)),
            wall_time_ms=float(data.get("wall_time_ms", 0.0)),
            memory_peak_bytes=int(data.get("memory_peak_bytes", 0)),
        )


@dataclass(frozen=True)
class Violation:
    """One finding of the static check."""

    rule: str
    """Which rule fired (a static :data:`Verdict`)."""
    line: int
    """1-based line."""
    column: int
    """1-based column, in characters."""
    message: str
    """A sentence for people."""
    name: str | None = None
    """The offending module, builtin or attribute, when there is one."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        """Parses one violation."""
        return cls(
            rule=str(data.get("rule", "")),
            line=int(data.get("line", 0)),
            column=int(data.get("column", 0)),
            message=str(data.get("message", "")),
            name=data.get("name"),
        )

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.rule}: {self.message}"


def _violations(data: Any) -> builtins.list[Violation]:
    if not isinstance(data, Sequence):
        return []
    return [Violation.from_dict(v) for v in data if isinstance(v, Mapping)]


@dataclass(frozen=True)
class RunError:
    """Why a run failed, in a shape programs can act on."""

    kind: str
    """The :data:`Verdict`."""
    message: str
    """A sentence for people."""
    exception_type: str | None = None
    """The Python exception class, for ``exception``."""
    traceback: str | None = None
    """The formatted Python traceback."""
    limit: int | None = None
    """The value of the limit that fired."""
    exit_code: int | None = None
    """The code of a non-zero ``SystemExit``."""
    violations: tuple[Violation, ...] = ()
    """Static-check findings, for rejected programs."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunError:
        """Parses the API's ``error`` object of a job or outcome."""
        return cls(
            kind=str(data.get("kind", "internal")),
            message=str(data.get("message", "")),
            exception_type=data.get("exception_type"),
            traceback=data.get("traceback"),
            limit=_opt_int(data.get("limit")),
            exit_code=_opt_int(data.get("exit_code")),
            violations=tuple(_violations(data.get("violations"))),
        )


@dataclass(frozen=True)
class CallbackAttempt:
    """One webhook delivery attempt."""

    at: datetime | None
    """When it started."""
    status_code: int | None
    """The receiver's status code, if it answered."""
    error: str | None
    """What went wrong, if anything."""
    duration_ms: int
    """How long it took."""


@dataclass(frozen=True)
class Callback:
    """A job's webhook and how its delivery went."""

    url: str
    """The callback URL."""
    status: str
    """``pending``, ``delivered`` or ``failed``."""
    attempts: tuple[CallbackAttempt, ...]
    """Every attempt, oldest first."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Callback:
        """Parses the API's ``callback`` object."""
        return cls(
            url=str(data.get("url", "")),
            status=str(data.get("status", "")),
            attempts=tuple(
                CallbackAttempt(
                    at=_dt(a.get("at")),
                    status_code=_opt_int(a.get("status_code")),
                    error=a.get("error"),
                    duration_ms=int(a.get("duration_ms", 0)),
                )
                for a in data.get("attempts") or []
                if isinstance(a, Mapping)
            ),
        )


@dataclass(frozen=True)
class Outcome:
    """Everything a run produced: what ``strictpy run --json`` prints."""

    status: OutcomeStatus
    """Succeeded, failed or rejected."""
    stdout: str
    """The program's stdout, up to the output cap."""
    stderr: str
    """The program's stderr, up to the output cap."""
    stdout_truncated: bool
    """True when stdout was cut at the cap."""
    stderr_truncated: bool
    """True when stderr was cut at the cap."""
    result: Any
    """The JSON value of the program's global ``result``."""
    error: RunError | None
    """Why the run failed; ``None`` on success."""
    usage: Usage
    """What the run used."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        """Parses an ``Outcome`` document."""
        error = data.get("error")
        return cls(
            status=cast(OutcomeStatus, str(data.get("status", "failed"))),
            stdout=str(data.get("stdout") or ""),
            stderr=str(data.get("stderr") or ""),
            stdout_truncated=bool(data.get("stdout_truncated")),
            stderr_truncated=bool(data.get("stderr_truncated")),
            result=data.get("result"),
            error=RunError.from_dict(error) if isinstance(error, Mapping) else None,
            usage=Usage.from_dict(data.get("usage") or {}),
        )


@dataclass(frozen=True)
class Job:
    """A job of the service: its state, the limits applied and, once final,
    its outcome."""

    id: str
    """The job id."""
    status: JobStatus
    """Where the job is in its life."""
    created_at: datetime | None
    """When it was accepted."""
    started_at: datetime | None
    """When a worker started it."""
    finished_at: datetime | None
    """When it became final."""
    limits: Limits
    """The limits as applied."""
    allow: tuple[str, ...]
    """The extra modules the request allowed."""
    seed: int | None
    """The seed, if one was given."""
    idempotency_key: str | None
    """The idempotency key the job was created with."""
    stdout: str | None
    """The program's stdout; ``None`` until final."""
    stderr: str | None
    """The program's stderr; ``None`` until final."""
    stdout_truncated: bool | None
    """True when stdout was cut at the output cap."""
    stderr_truncated: bool | None
    """True when stderr was cut at the output cap."""
    result: Any
    """The JSON value of the program's global ``result``."""
    error: RunError | None
    """Why the job failed or was cancelled."""
    usage: Usage | None
    """What the run used; ``None`` until final."""
    callback: Callback | None
    """The webhook, if the job has one."""
    function_name: str | None = None
    """The stored function this job invoked, if it is an invocation."""
    function_version: int | None = None
    """The version of that function that ran."""
    replayed: bool = field(default=False, compare=False)
    """True when the server answered an earlier job with the same
    idempotency key (``Idempotent-Replayed: true``)."""
    queue_position: int | None = None
    """While queued: how many queued jobs are ahead of it; ``None`` otherwise."""
    estimated_start_ms: int | None = None
    """While queued: milliseconds until it is expected to start (from recent
    run times and free workers); ``None`` otherwise or when unknown."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Job:
        """Parses the API's job document."""
        error = data.get("error")
        usage = data.get("usage")
        callback = data.get("callback")
        function = data.get("function")
        return cls(
            id=str(data["id"]),
            status=cast(JobStatus, str(data.get("status", ""))),
            created_at=_dt(data.get("created_at")),
            started_at=_dt(data.get("started_at")),
            finished_at=_dt(data.get("finished_at")),
            limits=Limits.from_dict(data.get("limits") or {}),
            allow=tuple(str(m) for m in data.get("allow") or []),
            seed=_opt_int(data.get("seed")),
            idempotency_key=data.get("idempotency_key"),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
            stdout_truncated=data.get("stdout_truncated"),
            stderr_truncated=data.get("stderr_truncated"),
            result=data.get("result"),
            error=RunError.from_dict(error) if isinstance(error, Mapping) else None,
            usage=Usage.from_dict(usage) if isinstance(usage, Mapping) else None,
            callback=Callback.from_dict(callback) if isinstance(callback, Mapping) else None,
            function_name=str(function["name"]) if isinstance(function, Mapping) else None,
            function_version=_opt_int(function.get("version")) if isinstance(function, Mapping) else None,
            replayed=replayed,
            queue_position=_opt_int(data.get("queue_position")),
            estimated_start_ms=_opt_int(data.get("estimated_start_ms")),
        )

    @property
    def is_final(self) -> bool:
        """True once the job can change no more."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the job ran and succeeded."""
        return self.status == "succeeded"

    @property
    def verdict(self) -> str | None:
        """The :data:`Verdict` of a failed or cancelled job; ``None`` otherwise."""
        return self.error.kind if self.error else None

    def outcome(self) -> Outcome | None:
        """The job's outcome as ``strictpy run`` reports it (a cancelled job
        is ``failed`` with the verdict ``cancelled``); ``None`` until final."""
        if not self.is_final:
            return None
        status: OutcomeStatus = "succeeded" if self.status == "succeeded" else "failed"
        return Outcome(
            status=status,
            stdout=self.stdout or "",
            stderr=self.stderr or "",
            stdout_truncated=bool(self.stdout_truncated),
            stderr_truncated=bool(self.stderr_truncated),
            result=self.result,
            error=self.error,
            usage=self.usage or Usage(0, 0.0, 0),
        )


@dataclass(frozen=True)
class JobSummary:
    """A job in a listing."""

    id: str
    """The job id."""
    status: JobStatus
    """Its status."""
    verdict: str | None
    """The verdict of a failed or cancelled job."""
    created_at: datetime | None
    """When it was accepted."""
    started_at: datetime | None
    """When it started."""
    finished_at: datetime | None
    """When it became final."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSummary:
        """Parses one item of ``GET /v1/jobs``."""
        return cls(
            id=str(data["id"]),
            status=cast(JobStatus, str(data.get("status", ""))),
            verdict=data.get("verdict"),
            created_at=_dt(data.get("created_at")),
            started_at=_dt(data.get("started_at")),
            finished_at=_dt(data.get("finished_at")),
        )


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first."""

    jobs: tuple[JobSummary, ...]
    """The jobs on this page."""
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``None`` on the last page."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobPage:
        """Parses the answer of ``GET /v1/jobs``."""
        return cls(
            jobs=tuple(JobSummary.from_dict(j) for j in data.get("jobs") or []),
            next_cursor=data.get("next_cursor"),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """An API error document: ``{"error": {"code", "message", "details"}}``."""

    code: str
    """A stable, snake_case error code."""
    message: str
    """A sentence for people."""
    details: Any = None
    """Structured details (the offending field, the violations, ...)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorInfo:
        """Parses ``{"error": {...}}`` or the inner object."""
        inner = data.get("error", data)
        if not isinstance(inner, Mapping):
            return cls(code="unknown", message=str(inner))
        return cls(
            code=str(inner.get("code", "unknown")),
            message=str(inner.get("message", "")),
            details=inner.get("details"),
        )


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch answer: the job's id and status, or its error."""

    id: str | None
    """The job's id, when it was accepted."""
    status: JobStatus | None
    """The job's status, when it was accepted."""
    error: ErrorInfo | None
    """Why this item was refused."""

    @property
    def ok(self) -> bool:
        """True when the item was accepted."""
        return self.error is None and self.id is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchItem:
        """Parses one item of ``POST /v1/jobs/batch``."""
        error = data.get("error")
        status = data.get("status")
        return cls(
            id=None if data.get("id") is None else str(data["id"]),
            status=None if status is None else cast(JobStatus, str(status)),
            error=ErrorInfo.from_dict(error) if isinstance(error, Mapping) else None,
        )


@dataclass(frozen=True)
class CheckResult:
    """The static check's verdict, as ``strictpy check --json`` prints it."""

    ok: bool
    """True when there are no violations."""
    violations: tuple[Violation, ...]
    """Every finding."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """Parses the answer of ``POST /v1/check``."""
        return cls(ok=bool(data.get("ok")), violations=tuple(_violations(data.get("violations"))))


@dataclass(frozen=True)
class JobRequest:
    """A job to submit (``POST /v1/jobs`` or one item of a batch)."""

    code: str
    """The Python source."""
    stdin: str | None = None
    """Text for the program's stdin."""
    context: Mapping[str, Any] | None = None
    """A JSON object whose keys become globals of the program."""
    limits: Limits | Mapping[str, int] | None = None
    """Limit overrides, each at most the server's maximum."""
    allow: Sequence[str] = ()
    """Extra modules to allow, from the policy's ``allowable_modules``."""
    seed: int | None = None
    """Seeds every source of randomness, for a reproducible run."""
    callback_url: str | None = None
    """Where the server POSTs the job's final state (signed)."""
    idempotency_key: str | None = None
    """Submitting the same key again returns the original job. The clients
    fill in a fresh one when this is ``None`` (unless told not to), so that a
    retried submission never creates a second job."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON body, without ``wait``, leaving unset fields out."""
        body: dict[str, Any] = {"code": self.code}
        if self.stdin is not None:
            body["stdin"] = self.stdin
        if self.context is not None:
            body["context"] = dict(self.context)
        if self.limits is not None:
            limits = self.limits.to_dict() if isinstance(self.limits, Limits) else dict(self.limits)
            if limits:
                body["limits"] = limits
        if self.allow:
            body["allow"] = list(self.allow)
        if self.seed is not None:
            body["seed"] = self.seed
        if self.callback_url is not None:
            body["callback_url"] = self.callback_url
        if self.idempotency_key is not None:
            body["idempotency_key"] = self.idempotency_key
        return body


JobEventKind = Literal["status", "stdout", "stderr", "gap", "final"]
"""The kinds of event ``GET /v1/jobs/{id}/events`` sends."""


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's live stream (:meth:`Client.stream`)."""

    kind: JobEventKind
    """``status``, ``stdout``, ``stderr``, ``gap`` or ``final``."""
    id: str
    """The event id (a position; the client resumes from it by itself)."""
    data: Mapping[str, Any]
    """The event's JSON document."""

    @property
    def text(self) -> str:
        """The output chunk of a ``stdout``/``stderr`` event; ``""`` otherwise."""
        return str(self.data.get("text", "")) if self.kind in ("stdout", "stderr") else ""

    @property
    def status(self) -> JobStatus | None:
        """The new status of a ``status`` event (or the final job's status)."""
        value = self.data.get("status")
        return cast(JobStatus, value) if isinstance(value, str) else None

    @property
    def job(self) -> Job | None:
        """The whole job, on the ``final`` event."""
        return Job.from_dict(self.data) if self.kind == "final" else None
