"""The exceptions the clients raise.

Every exception derives from :class:`StrictpyError`. An answer of the server
with an error status becomes an :class:`APIError` subclass chosen by status
and error code; a request that never got an answer (after the retries) is a
:class:`TransportError`. None of them carries the request's headers, so a
token can never end up in a traceback or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import ErrorInfo, Violation


class StrictpyError(Exception):
    """Base class of every error of this package."""


class InsecureURLError(StrictpyError, ValueError):
    """The base URL is plain HTTP to a host that is not loopback, or not an
    HTTP(S) URL at all."""


class MissingCredentialsError(StrictpyError):
    """No token was given, none is in ``STRICTPY_TOKEN`` and none is in the
    keyring."""


class TransportError(StrictpyError):
    """The request got no answer (connection error or timeout), and retrying
    was not allowed or did not help."""


class WaitTimeoutError(StrictpyError, TimeoutError):
    """:meth:`Client.wait_for` gave up before the job became final."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} is not final after {timeout:g} s")
        self.job_id = job_id
        """The job that is still running."""
        self.timeout = timeout
        """How long the client waited, in seconds."""


class WebhookVerificationError(StrictpyError):
    """A webhook delivery's ``Strictpy-Signature`` did not verify."""


class APIError(StrictpyError):
    """The server answered with an error status."""

    def __init__(
        self,
        status_code: int,
        info: ErrorInfo,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status_code} {info.code}: {info.message}")
        self.status_code = status_code
        """The HTTP status."""
        self.code = info.code
        """The API's stable error code, e.g. ``limit_exceeded``."""
        self.message = info.message
        """The server's sentence for people."""
        self.details: Any = info.details
        """Structured details, e.g. the offending field."""
        self.retry_after = retry_after
        """Seconds the server asked the client to wait (``Retry-After``)."""
        self.request_id = request_id
        """The server's request id, when it sent one."""


class BadRequestError(APIError):
    """400: malformed JSON, a wrong type, an unknown field, a bad query."""


class AuthenticationError(APIError):
    """401: the token is missing, unknown, expired or revoked."""


class PermissionDeniedError(APIError):
    """403: the token lacks the scope this call needs."""


class NotFoundError(APIError):
    """404: no such job (another tenant's jobs are not found either)."""


class ConflictError(APIError):
    """409: ``idempotency_key_reused`` or ``job_finished``."""


class UnprocessableError(APIError):
    """422: the request is well-formed but not acceptable (a limit above the
    maximum, a module that may not be allowed, a refused callback URL...)."""


class PolicyViolationError(UnprocessableError):
    """422 ``policy_violation``: the static check refused the code; nothing
    was stored and nothing ran."""

    @property
    def violations(self) -> list[Violation]:
        """Every finding of the static check."""
        details = self.details if isinstance(self.details, Mapping) else {}
        raw = details.get("violations") or []
        return [Violation.from_dict(v) for v in raw if isinstance(v, Mapping)]


class RateLimitedError(APIError):
    """429: too many requests, and the retries did not get through."""


class ServerError(APIError):
    """5xx: the server failed or is overloaded (``queue_full``,
    ``shutting_down``), and the retries did not get through."""


def error_for(
    status_code: int,
    info: ErrorInfo,
    *,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> APIError:
    """The :class:`APIError` subclass for an error answer."""
    cls: type[APIError]
    if status_code == 422 and info.code == "policy_violation":
        cls = PolicyViolationError
    else:
        cls = {
            400: BadRequestError,
            401: AuthenticationError,
            403: PermissionDeniedError,
            404: NotFoundError,
            409: ConflictError,
            422: UnprocessableError,
            429: RateLimitedError,
        }.get(status_code, ServerError if status_code >= 500 else APIError)
    return cls(status_code, info, retry_after=retry_after, request_id=request_id)
