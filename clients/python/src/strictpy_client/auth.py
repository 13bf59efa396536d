"""Credentials: where the token comes from, and OAuth-style access tokens
that refresh themselves.

A token is never hard-coded: it comes from an argument, the
``STRICTPY_TOKEN`` environment variable or, with the ``keyring`` extra
installed, the operating system's keyring. No class here shows a token in
its ``repr``.

The classes are free of I/O: they say which token request to make and take
its answer, and the sync and async clients do the HTTP. That keeps one
implementation of the refresh logic for both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingCredentialsError

log = logging.getLogger("strictpy_client")

TOKEN_ENV = "STRICTPY_TOKEN"
"""The environment variable the clients read a token from."""

KEYRING_SERVICE = "strictpy"
"""The keyring service name; the user name is the server's base URL."""

OAUTH_TOKEN_PATH = "/v1/oauth/token"
"""Exchanges an API token for an access and a refresh token."""

OAUTH_REFRESH_PATH = "/v1/oauth/token/refresh"
"""Exchanges a refresh token for new tokens (the refresh token rotates)."""

OAUTH_REVOKE_PATH = "/v1/oauth/revoke"
"""Revokes an access or refresh token (RFC 7009)."""


def redact(token: str | None) -> str:
    """What logs and reprs show instead of a token."""
    return "<none>" if not token else "<redacted>"


def token_from_keyring(base_url: str, *, service: str = KEYRING_SERVICE) -> str | None:
    """The token stored in the OS keyring for ``base_url``, or ``None`` when
    the ``keyring`` extra is not installed, no backend is available or
    nothing is stored."""
    try:
        import keyring
        import keyring.errors
    except ImportError:
        return None
    try:
        value = keyring.get_password(service, base_url)
    except keyring.errors.KeyringError as exc:
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None
    return value or None


def save_token_to_keyring(base_url: str, token: str, *, service: str = KEYRING_SERVICE) -> None:
    """Stores ``token`` for ``base_url`` in the OS keyring (needs the
    ``keyring`` extra), where the clients find it without ``STRICTPY_TOKEN``."""
    import keyring

    keyring.set_password(service, base_url, token)


def find_token(base_url: str, token: str | None = None) -> str:
    """The token to use: the argument, else ``STRICTPY_TOKEN``, else the
    keyring entry for ``base_url``. Raises :class:`MissingCredentialsError`
    when there is none."""
    if token:
        return token
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    stored = token_from_keyring(base_url)
    if stored:
        return stored
    raise MissingCredentialsError(
        f"no strictpy token: pass token=..., set {TOKEN_ENV}, "
        "or store one in the keyring (pip install 'strictpy-client[keyring]')"
    )


@dataclass(frozen=True)
class TokenRequest:
    """A token request the client must send on behalf of the credentials."""

    path: str
    """The endpoint, e.g. :data:`OAUTH_TOKEN_PATH`."""
    body: dict[str, str] = field(repr=False)
    """The JSON body (it may hold a refresh token)."""
    bearer: str | None = field(default=None, repr=False)
    """The ``Authorization: Bearer`` token for this request, if any."""
    retryable: bool = True
    """Whether the request may be repeated. A refresh is not: if its answer
    got lost, the server has already rotated the refresh token, and sending
    the old one again would revoke the whole token family."""


class Credentials:
    """Something that yields bearer tokens. Subclasses that refresh override
    :meth:`token_request` and :meth:`accept`."""

    refreshable: bool = False
    """True when the credentials can get a new token after a 401."""

    def current(self) -> str | None:
        """The token to send now, or ``None`` when one must be fetched first."""
        raise NotImplementedError

    def token_request(self, *, force: bool = False) -> TokenRequest | None:
        """The request that gets a fresh token, or ``None`` when the current
        one is good (``force`` asks for a new one regardless)."""
        return None

    def accept(self, request: TokenRequest, answer: Mapping[str, Any]) -> None:
        """Takes the JSON answer of ``request``."""

    def failed(self, request: TokenRequest) -> TokenRequest | None:
        """``request`` was refused: the next request to try, or ``None`` to
        give up (the client then raises the error)."""
        return None

    def revocation(self) -> TokenRequest | None:
        """The request that revokes these credentials server-side, if any."""
        return None


class StaticToken(Credentials):
    """A long-lived API token sent as it is."""

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a token is a non-empty string without whitespace")
        self._token = token

    def current(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken({redact(self._token)})"


class OAuthCredentials(Credentials):
    """OAuth-style credentials: an API token exchanged for a short-lived
    access token (``client_credentials``) plus a rotating refresh token.

    The access token is refreshed ``refresh_margin`` seconds before it
    expires (at most half its lifetime before), and once more when the server
    answers 401 anyway (revoked, clock skew). When the refresh token is
    refused (rotated away, family revoked), the API token is exchanged again.
    """

    refreshable = True

    def __init__(
        self,
        api_token: str | None = None,
        *,
        refresh_token: str | None = None,
        scope: str | None = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_token and not refresh_token:
            raise ValueError("OAuthCredentials needs an API token or a refresh token")
        self._api_token = api_token
        self._refresh_token = refresh_token
        self._access_token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self.scope = scope
        """The scopes asked for, space-separated; ``None`` asks for all the
        API token has."""
        self.refresh_margin = refresh_margin
        """Seconds before expiry at which the access token is refreshed."""
        self.refreshes = 0
        """How many access tokens these credentials obtained (for metrics
        and tests)."""

    def __repr__(self) -> str:
        return (
            f"OAuthCredentials(api_token={redact(self._api_token)}, "
            f"access_token={redact(self._access_token)}, scope={self.scope!r})"
        )

    @property
    def expires_in(self) -> float | None:
        """Seconds the current access token has left, or ``None``."""
        if self._access_token is None:
            return None
        return self._expires_at - self._clock()

    def current(self) -> str | None:
        with self._lock:
            if self._access_token is None or self._clock() >= self._refresh_at:
                return None
            return self._access_token

    def _exchange(self) -> TokenRequest | None:
        if not self._api_token:
            return None
        body = {"grant_type": "client_credentials"}
        if self.scope:
            body["scope"] = self.scope
        return TokenRequest(OAUTH_TOKEN_PATH, body, bearer=self._api_token)

    def token_request(self, *, force: bool = False) -> TokenRequest | None:
        with self._lock:
            fresh = self._access_token is not None and self._clock() < self._refresh_at
            if fresh and not force:
                return None
            if self._refresh_token:
                return TokenRequest(
                    OAUTH_REFRESH_PATH,
                    {"grant_type": "refresh_token", "refresh_token": self._refresh_token},
                    retryable=False,
                )
            return self._exchange()

    def accept(self, request: TokenRequest, answer: Mapping[str, Any]) -> None:
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("the token answer has no access_token")
        lifetime = float(answer.get("expires_in") or 0)
        now = self._clock()
        with self._lock:
            self._access_token = access
            refresh = answer.get("refresh_token")
            if isinstance(refresh, str) and refresh:
                self._refresh_token = refresh
            self._expires_at = now + lifetime
            # Refresh shortly before expiry, but never in the first half of a
            # token's life, so a short-lived token is not refreshed at once.
            self._refresh_at = now + max(lifetime / 2, lifetime - self.refresh_margin)
            self.refreshes += 1
        log.debug("obtained an access token valid for %.0f s", lifetime)

    def failed(self, request: TokenRequest) -> TokenRequest | None:
        with self._lock:
            if request.path == OAUTH_REFRESH_PATH:
                # The refresh token is spent or its family revoked; start a
                # new family from the API token if there is one.
                self._refresh_token = None
                self._access_token = None
                return self._exchange()
            self._access_token = None
            return None

    def revocation(self) -> TokenRequest | None:
        with self._lock:
            if self._refresh_token:
                body = {"token": self._refresh_token, "token_type_hint": "refresh_token"}
            elif self._access_token:
                body = {"token": self._access_token, "token_type_hint": "access_token"}
            else:
                return None
            self._refresh_token = None
            self._access_token = None
        return TokenRequest(OAUTH_REVOKE_PATH, body)
