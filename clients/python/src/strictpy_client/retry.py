"""The retry policy and the optional client-side rate limiter.

The policy is the one the security guidelines ask of a client: exponential
backoff with full jitter on 5xx answers, timeouts and connection errors; the
server's ``Retry-After`` on 429 (and on a 503 that carries one); no retry on
any other 4xx; and a submission is retried only when it carries an
idempotency key, so a retry can never create a second job.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again."""

    max_attempts: int = 4
    """Attempts per request, the first included; 1 turns retries off."""
    backoff_base: float = 0.25
    """The cap of the first backoff, in seconds; it doubles per attempt."""
    backoff_max: float = 8.0
    """The largest cap of one backoff, in seconds."""
    max_retry_after: float = 60.0
    """The longest ``Retry-After`` the client waits out; a server asking for
    more gets its error raised at once instead of a hung caller."""
    retry_on_timeout: bool = True
    """Retry timeouts and connection errors (only requests that are safe to
    repeat are ever retried)."""
    random: Callable[[float, float], float] = field(
        default=random.uniform, repr=False, compare=False
    )
    """``uniform(a, b)``; replaceable for deterministic tests."""

    def backoff(self, attempt: int) -> float:
        """Full jitter: a uniformly random wait between 0 and
        ``min(backoff_max, backoff_base * 2 ** (attempt - 1))`` after the
        ``attempt``-th failed attempt (1-based). Spreading retries over the
        whole window is what keeps many clients from retrying in lockstep."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return self.random(0.0, cap)

    def delay_for_status(
        self, status: int, retry_after: float | None, attempt: int
    ) -> float | None:
        """How long to wait before retrying an answer with ``status``, or
        ``None`` when it must not be retried. ``attempt`` counts the attempts
        made so far."""
        if attempt >= self.max_attempts:
            return None
        if status == 429 or (status >= 500 and retry_after is not None):
            if retry_after is None:
                return self.backoff(attempt)
            if retry_after > self.max_retry_after:
                return None
            return max(0.0, retry_after)
        if status >= 500:
            return self.backoff(attempt)
        return None

    def delay_for_exception(self, attempt: int) -> float | None:
        """How long to wait before retrying after a timeout or connection
        error, or ``None`` when it must not be retried."""
        if not self.retry_on_timeout or attempt >= self.max_attempts:
            return None
        return self.backoff(attempt)


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an
    HTTP date (RFC 9110, 10.2.3). ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class RateLimiter:
    """At most ``max_requests`` requests in any ``per_seconds`` window
    (a sliding window), shared by every thread or task using the client.

    It keeps the client under the server's quota, so it is throttled at home
    rather than answered with 429s. The same limiter may be shared by several
    clients (for example a sync and an async one) to give them one budget.
    """

    def __init__(
        self,
        max_requests: int,
        per_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("max_requests must be >= 1 and per_seconds > 0")
        self.max_requests = max_requests
        """Requests allowed per window."""
        self.per_seconds = per_seconds
        """The window, in seconds."""
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Takes a slot now and returns 0, or returns how long to wait before
        asking again."""
        with self._lock:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.per_seconds:
                self._sent.popleft()
            if len(self._sent) < self.max_requests:
                self._sent.append(now)
                return 0.0
            return self._sent[0] + self.per_seconds - now

    def acquire(self) -> None:
        """Blocks until a request may go out."""
        while (wait := self._reserve()) > 0:
            time.sleep(wait)

    async def acquire_async(self) -> None:
        """Waits, without blocking the event loop, until a request may go out."""
        while (wait := self._reserve()) > 0:
            await asyncio.sleep(wait)
