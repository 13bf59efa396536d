"""The synchronous client."""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from ._base import (
    DEFAULT_WAIT_TIMEOUT,
    Core,
    VerifyTypes,
    error_from_response,
    job_from_response,
    json_of,
    log,
    log_retry,
    path_segment,
    request_from_args,
    user_agent,
)
from .auth import Credentials, TokenRequest
from .errors import APIError, MissingCredentialsError, WaitTimeoutError
from ._sse import STREAM_READ_TIMEOUT, EventParser
from .functions import Functions
from .models import (
    BatchItem,
    CheckResult,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    JobStatus,
    JobSummary,
    Limits,
)
from .retry import RateLimiter, RetryPolicy


class Client:
    """A synchronous strictpy client; safe to share between threads.

    >>> with Client("https://strictpy.example") as client:   # token from STRICTPY_TOKEN
    ...     job = client.run("result = 6 * 7")
    ...     job.result
    42
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        oauth: bool = False,
        scope: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float | httpx.Timeout | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        verify: VerifyTypes = True,
        auto_idempotency_keys: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """
        :param base_url: the server, ``https://...`` (``http://`` only for
            loopback); default ``STRICTPY_URL``.
        :param token: an API token; default ``STRICTPY_TOKEN``, then the keyring.
        :param credentials: explicit credentials instead of ``token``.
        :param oauth: exchange the token for short-lived access tokens that
            refresh themselves.
        :param scope: with ``oauth``, the scopes to ask for (space-separated).
        :param retry: the retry policy (default: 4 attempts, full jitter).
        :param rate_limiter: an optional client-side request budget.
        :param timeout: the timeout of an ordinary request (default 30 s).
        :param wait_timeout: the read timeout of a ``wait`` submission.
        :param verify: certificate verification (on by default).
        :param auto_idempotency_keys: give every submission without a key a
            fresh one, so it can be retried safely.
        :param transport: an ``httpx`` transport (tests, proxies).
        """
        self._core = Core(
            base_url=base_url,
            token=token,
            credentials=credentials,
            oauth=oauth,
            scope=scope,
            retry=retry,
            rate_limiter=rate_limiter,
            timeout=timeout,
            wait_timeout=wait_timeout,
            auto_idempotency_keys=auto_idempotency_keys,
        )
        self._auth_lock = threading.Lock()
        # Redirects are not followed: one to another host (or to http://)
        # would carry the Authorization header there.
        self._http = httpx.Client(
            base_url=self._core.base_url,
            timeout=self._core.timeout,
            verify=verify,
            follow_redirects=False,
            headers={"user-agent": user_agent(), "accept": "application/json"},
            transport=transport,
        )
        self.functions = Functions(self)
        """Stored functions: register, update, get, list, delete, invoke."""

    def __repr__(self) -> str:
        return f"Client({self._core!r})"

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self._core.base_url

    @property
    def credentials(self) -> Credentials:
        """The credentials in use."""
        return self._core.credentials

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -----------------------------------------------------

    def _bearer(self, stale: str | None = None) -> str:
        """A token to send: the current one, or a fresh one when there is
        none, it is about to expire, or it is ``stale`` (the server refused
        it)."""
        creds = self._core.credentials
        token = creds.current()
        if token is not None and token != stale:
            return token
        with self._auth_lock:
            # Another thread may have refreshed while this one waited.
            token = creds.current()
            if token is not None and token != stale:
                return token
            request = creds.token_request(force=True)
            while request is not None:
                try:
                    answer = json_of(self._token_call(request))
                except APIError as exc:
                    if exc.status_code not in (400, 401):
                        raise
                    log.info("token request to %s refused: %s", request.path, exc.code)
                    fallback = creds.failed(request)
                    if fallback is None:
                        raise
                    request = fallback
                    continue
                creds.accept(request, answer)
                token = creds.current()
                if token is not None:
                    return token
                request = None
        raise MissingCredentialsError("the credentials yield no token")

    def _token_call(self, request: TokenRequest) -> httpx.Response:
        return self._send(
            "POST",
            request.path,
            json=request.body,
            retryable=request.retryable,
            bearer=request.bearer,
            authenticate=False,
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retryable: bool,
        timeout: httpx.Timeout | None = None,
        bearer: str | None = None,
        authenticate: bool = True,
    ) -> httpx.Response:
        """Sends one API request with the retry policy; returns a 2xx answer
        or raises."""
        core = self._core
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if core.rate_limiter is not None:
                core.rate_limiter.acquire()
            token = self._bearer() if authenticate else bearer
            headers = {"authorization": f"Bearer {token}"} if token else {}
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeout or core.timeout,
                )
            except httpx.TransportError as exc:
                delay = core.exception_delay(exc, attempt, retryable)
                if delay is None:
                    raise core.transport_error(method, path, exc, attempt) from exc
                log_retry(method, path, type(exc).__name__, attempt, delay)
                time.sleep(delay)
                continue
            log.debug("%s %s -> %d (attempt %d)", method, path, response.status_code, attempt)
            if 200 <= response.status_code < 300:
                return response
            # Anything else is an error, redirects included: following one
            # could carry the token to another host or to plain HTTP.
            if (
                response.status_code == 401
                and authenticate
                and core.credentials.refreshable
                and not refreshed
            ):
                # The access token was refused (revoked, or expired early):
                # refresh once and repeat. A 401 means nothing was done, so
                # the repeat is safe for any request and is not a retry.
                refreshed = True
                attempt -= 1
                self._bearer(stale=token)
                continue
            delay = core.status_delay(response, attempt, retryable)
            if delay is None:
                raise error_from_response(response)
            log_retry(method, path, str(response.status_code), attempt, delay)
            time.sleep(delay)

    # -- the API -------------------------------------------------------

    def run(
        self,
        code: str | JobRequest,
        *,
        stdin: str | None = None,
        context: Mapping[str, Any] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        allow: Sequence[str] | None = None,
        seed: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Job:
        """Submits a job and, with ``wait`` (the default), returns it once
        final: the server holds the request until the job finishes (up to its
        ``max_wait_ms``), then the client polls. ``timeout`` bounds the whole
        wait in seconds (``None``: until final). Raises
        :class:`PolicyViolationError` when the static check refuses the code.
        """
        started = time.monotonic()
        job = self.submit(
            code,
            stdin=stdin,
            context=context,
            limits=limits,
            allow=allow,
            seed=seed,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            wait=wait,
        )
        if not wait or job.is_final:
            return job
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self.wait_for(job.id, timeout=remaining)

    def submit(
        self,
        code: str | JobRequest,
        *,
        stdin: str | None = None,
        context: Mapping[str, Any] | None = None,
        limits: Limits | Mapping[str, int] | None = None,
        allow: Sequence[str] | None = None,
        seed: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
    ) -> Job:
        """Submits a job (``POST /v1/jobs``) and returns it as the server
        answered: queued, or final with ``wait`` when it finished in time."""
        request = request_from_args(
            code,
            stdin=stdin,
            context=context,
            limits=limits,
            allow=allow,
            seed=seed,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        body, retryable = self._core.job_body(request, wait=wait)
        response = self._send(
            "POST",
            "/v1/jobs",
            json=body,
            retryable=retryable,
            timeout=self._core.wait_request_timeout() if wait else None,
        )
        return job_from_response(response)

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """Follows a job live (``GET /v1/jobs/{id}/events``): yields its
        ``status`` changes, ``stdout``/``stderr`` chunks as the program
        writes them, a ``gap`` when this reader fell behind (those bytes are
        in the final job), and last the ``final`` event (``event.job``).
        A dropped connection is resumed from the last event id, so nothing
        is lost or repeated; ``last_event_id`` resumes an earlier stream.

        >>> for event in client.stream(job.id):   # doctest: +SKIP
        ...     print(event.text, end="")
        """
        path = f"/v1/jobs/{path_segment(job_id)}/events"
        core = self._core
        last = last_event_id
        attempt = 0
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        while True:
            attempt += 1
            headers = {"authorization": f"Bearer {self._bearer()}", "accept": "text/event-stream"}
            if last:
                headers["last-event-id"] = last
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code == 204:
                        return
                    if not 200 <= response.status_code < 300:
                        response.read()
                        delay = core.status_delay(response, attempt, True)
                        if delay is None:
                            raise error_from_response(response)
                        log_retry("GET", path, str(response.status_code), attempt, delay)
                        time.sleep(delay)
                        continue
                    parser = EventParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        last = event.id or last
                        attempt = 0
                        yield event
                        if event.kind == "final":
                            return
            except httpx.TransportError as exc:
                attempt = max(attempt, 1)
                delay = core.exception_delay(exc, attempt, True)
                if delay is None:
                    raise core.transport_error("GET", path, exc, attempt) from exc
                log_retry("GET", path, type(exc).__name__, attempt, delay)
                time.sleep(delay)
                continue
            # The stream ended before `final` (a proxy, a restart): resume.
            delay = core.retry.delay_for_exception(max(attempt, 1))
            if delay is None:
                raise core.transport_error(
                    "GET", path, httpx.ReadError("the event stream ended early"), attempt
                )
            time.sleep(delay)

    def get(self, job_id: str) -> Job:
        """The job (``GET /v1/jobs/{id}``)."""
        return job_from_response(self._send("GET", f"/v1/jobs/{path_segment(job_id)}", retryable=True))

    def cancel(self, job_id: str) -> Job:
        """Cancels a job (``DELETE /v1/jobs/{id}``): a queued job never runs,
        a running one is interrupted. Raises :class:`ConflictError`
        (``job_finished``) when it already succeeded or failed."""
        return job_from_response(
            self._send("DELETE", f"/v1/jobs/{path_segment(job_id)}", retryable=True)
        )

    def list(
        self,
        *,
        status: JobStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first (``GET /v1/jobs``)."""
        params = {k: v for k, v in (("status", status), ("limit", limit), ("cursor", cursor)) if v is not None}
        return JobPage.from_dict(json_of(self._send("GET", "/v1/jobs", params=params, retryable=True)))

    def iter_jobs(self, *, status: JobStatus | None = None, page_size: int = 100) -> Iterator[JobSummary]:
        """Every job, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def batch(self, jobs: Sequence[JobRequest | str]) -> builtins.list[BatchItem]:
        """Submits 1 to 20 jobs at once (``POST /v1/jobs/batch``); each item
        is accepted or refused on its own."""
        body, retryable = self._core.batch_body(jobs)
        data = json_of(self._send("POST", "/v1/jobs/batch", json=body, retryable=retryable))
        return [BatchItem.from_dict(item) for item in data.get("jobs") or []]

    def check(self, code: str, *, allow: Sequence[str] | None = None) -> CheckResult:
        """The static check only (``POST /v1/check``)."""
        body: dict[str, Any] = {"code": code}
        if allow:
            body["allow"] = builtins.list(allow)
        return CheckResult.from_dict(json_of(self._send("POST", "/v1/check", json=body, retryable=True)))

    def wait_for(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.1,
        max_poll_interval: float = 2.0,
    ) -> Job:
        """Polls the job until it is final, backing off from
        ``poll_interval`` to ``max_poll_interval``. Raises
        :class:`WaitTimeoutError` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.get(job_id)
            if job.is_final:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeoutError(job_id, timeout or 0.0)
                interval = min(interval, left)
            time.sleep(interval)
            interval = min(max_poll_interval, interval * 1.5)

    def revoke_credentials(self) -> None:
        """Revokes OAuth credentials server-side (the refresh token's whole
        family); a no-op for a static token."""
        creds = self._core.credentials
        bearer = creds.current()
        request = creds.revocation()
        if request is not None:
            self._send(
                "POST", request.path, json=request.body, retryable=True, bearer=bearer, authenticate=False
            )
