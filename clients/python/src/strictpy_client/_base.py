"""What the sync and async clients share: the base-URL check, the choice of
credentials, request bodies, the retry decisions and the mapping of answers
to results and errors. The two clients only differ in how they send and
sleep."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ._version import __version__
from .auth import Credentials, OAuthCredentials, StaticToken, find_token, redact
from .errors import APIError, InsecureURLError, StrictpyError, error_for
from .models import ErrorInfo, Job, JobRequest, Limits
from .retry import RateLimiter, RetryPolicy, parse_retry_after

log = logging.getLogger("strictpy_client")

URL_ENV = "STRICTPY_URL"
"""The environment variable the clients read the base URL from when none is
passed."""

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""Timeout of an ordinary request."""

DEFAULT_WAIT_TIMEOUT = 65.0
"""Read timeout of a ``"wait": true`` submission, which the server holds
open for up to its ``max_wait_ms`` (30 s by default, 60 s at most is
sensible)."""

VerifyTypes = ssl.SSLContext | bool
"""What ``verify`` accepts: ``True`` (the system's CAs, the default) or an
``ssl.SSLContext`` (for a private CA:
``ssl.create_default_context(cafile="ca.pem")``). ``False`` turns
verification off and is only meant for throwaway test setups."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """Validates the server's base URL and returns it without a trailing
    slash. HTTPS is required; plain HTTP only for loopback, where nothing
    crosses a network. Userinfo is refused: a password in a URL ends up in
    logs."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InsecureURLError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise InsecureURLError("the base URL must be an https:// URL with a host")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise InsecureURLError(
            f"refusing plain HTTP to {url.host}: use https:// "
            "(plain http:// is only accepted for localhost and loopback addresses)"
        )
    if url.userinfo:
        raise InsecureURLError("the base URL must not contain a user name or password")
    if url.query or url.fragment:
        raise InsecureURLError("the base URL must not have a query or fragment")
    return str(url).rstrip("/")


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else ``STRICTPY_URL``; validated."""
    raw = base_url or os.environ.get(URL_ENV, "").strip()
    if not raw:
        raise InsecureURLError(f"no base URL: pass one or set {URL_ENV}")
    return check_base_url(raw)


def resolve_credentials(
    base_url: str,
    token: str | None,
    credentials: Credentials | None,
    oauth: bool,
    scope: str | None,
) -> Credentials:
    """Explicit credentials win; otherwise the token from the argument,
    ``STRICTPY_TOKEN`` or the keyring, used as it is or (``oauth=True``)
    exchanged for short-lived access tokens."""
    if credentials is not None:
        if token is not None or oauth:
            raise ValueError("pass either credentials or token/oauth, not both")
        return credentials
    found = find_token(base_url, token)
    if oauth:
        return OAuthCredentials(found, scope=scope)
    return StaticToken(found)


def user_agent() -> str:
    """``strictpy-client/<version> httpx/<version>``."""
    return f"strictpy-client/{__version__} httpx/{httpx.__version__}"


class Core:
    """Configuration and pure decisions shared by both clients."""

    def __init__(
        self,
        *,
        base_url: str | None,
        token: str | None,
        credentials: Credentials | None,
        oauth: bool,
        scope: str | None,
        retry: RetryPolicy | None,
        rate_limiter: RateLimiter | None,
        timeout: float | httpx.Timeout | None,
        wait_timeout: float,
        auto_idempotency_keys: bool,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.credentials = resolve_credentials(self.base_url, token, credentials, oauth, scope)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.timeout = DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout)
        self.wait_timeout = wait_timeout
        self.auto_idempotency_keys = auto_idempotency_keys

    def __repr__(self) -> str:
        return f"base_url={self.base_url!r}, credentials={self.credentials!r}"

    def wait_request_timeout(self) -> httpx.Timeout:
        """The timeout of a long-polling ``"wait": true`` submission."""
        return httpx.Timeout(
            connect=self.timeout.connect,
            read=max(self.wait_timeout, self.timeout.read or 0.0),
            write=self.timeout.write,
            pool=self.timeout.pool,
        )

    def with_key(self, request: JobRequest) -> JobRequest:
        """``request`` with a fresh idempotency key when it has none and the
        client adds them."""
        if request.idempotency_key is not None or not self.auto_idempotency_keys:
            return request
        return JobRequest(
            code=request.code,
            stdin=request.stdin,
            context=request.context,
            limits=request.limits,
            allow=request.allow,
            seed=request.seed,
            callback_url=request.callback_url,
            idempotency_key=str(uuid.uuid4()),
        )

    def job_body(self, request: JobRequest, *, wait: bool) -> tuple[dict[str, Any], bool]:
        """The body of ``POST /v1/jobs`` and whether it may be retried: only
        with an idempotency key, which makes a repeat return the first job."""
        request = self.with_key(request)
        body = request.to_dict()
        if wait:
            body["wait"] = True
        return body, request.idempotency_key is not None

    def batch_body(
        self, jobs: Sequence[JobRequest | str]
    ) -> tuple[dict[str, Any], bool]:
        """The body of ``POST /v1/jobs/batch`` and whether it may be retried:
        only when every item has an idempotency key."""
        requests = [self.with_key(make_request(j)) for j in jobs]
        body = {"jobs": [r.to_dict() for r in requests]}
        return body, all(r.idempotency_key is not None for r in requests)

    def status_delay(self, response: httpx.Response, attempt: int, retryable: bool) -> float | None:
        """How long to wait before retrying an error answer, or ``None``.

        A 429 is retried even for a submission without an idempotency key:
        it means the request was refused before anything was done (RFC 6585).
        A 5xx is retried only for requests that are safe to repeat: a
        gateway's 502 may come after the server stored the job."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if not retryable and status != 429:
            return None
        return self.retry.delay_for_status(status, retry_after, attempt)

    def exception_delay(self, exc: httpx.TransportError, attempt: int, retryable: bool) -> float | None:
        """How long to wait before retrying after ``exc``, or ``None``."""
        if not retryable or isinstance(exc, httpx.UnsupportedProtocol) or _cert_error(exc):
            return None
        return self.retry.delay_for_exception(attempt)

    def transport_error(self, method: str, path: str, exc: httpx.TransportError, attempts: int) -> StrictpyError:
        """The error raised when no answer came."""
        from .errors import TransportError

        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return TransportError(
            f"{method} {path} {kind} after {attempts} attempt(s): {type(exc).__name__}: {exc}"
        )


def _cert_error(exc: BaseException) -> bool:
    """True when ``exc`` comes from a failed certificate check, which no
    retry fixes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def path_segment(job_id: str) -> str:
    """A job id as one path segment: ids are UUIDs, and nothing else may
    reach another route through a ``/`` or ``..``."""
    return quote(str(job_id), safe="")


def make_request(job: JobRequest | str) -> JobRequest:
    """A :class:`JobRequest` from a request or bare source code."""
    return JobRequest(code=job) if isinstance(job, str) else job


def request_from_args(
    code: str | JobRequest,
    *,
    stdin: str | None,
    context: Mapping[str, Any] | None,
    limits: Limits | Mapping[str, int] | None,
    allow: Sequence[str] | None,
    seed: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> JobRequest:
    """The :class:`JobRequest` of ``run``/``submit``'s arguments."""
    if isinstance(code, JobRequest):
        return code
    return JobRequest(
        code=code,
        stdin=stdin,
        context=context,
        limits=limits,
        allow=tuple(allow or ()),
        seed=seed,
        callback_url=callback_url,
        idempotency_key=idempotency_key,
    )


def json_of(response: httpx.Response) -> Any:
    """The JSON body of a successful answer."""
    try:
        return response.json()
    except ValueError as exc:
        raise StrictpyError(
            f"the server answered {response.status_code} with a body that is not JSON"
        ) from exc


def error_from_response(response: httpx.Response) -> APIError:
    """The :class:`APIError` for an error answer."""
    try:
        data = response.json()
        info = ErrorInfo.from_dict(data) if isinstance(data, Mapping) else None
    except ValueError:
        info = None
    if info is None:
        text = response.text[:200].strip()
        info = ErrorInfo(code=f"http_{response.status_code}", message=text or response.reason_phrase)
    return error_for(
        response.status_code,
        info,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        request_id=response.headers.get("x-request-id"),
    )


def job_from_response(response: httpx.Response) -> Job:
    """The job in a ``200``/``202`` answer."""
    replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
    return Job.from_dict(json_of(response), replayed=replayed)


def log_retry(method: str, path: str, what: str, attempt: int, delay: float) -> None:
    """One log line per retry; never headers, so never a token."""
    log.info("%s %s: %s on attempt %d; retrying in %.2f s", method, path, what, attempt, delay)


__all__ = [
    "Core",
    "check_base_url",
    "error_from_response",
    "is_loopback_host",
    "job_from_response",
    "json_of",
    "log_retry",
    "make_request",
    "path_segment",
    "redact",
    "request_from_args",
]
