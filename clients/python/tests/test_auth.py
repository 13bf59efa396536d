"""Authentication against the real server: scopes, tenants, and OAuth-style
access tokens that refresh before they expire and once on a 401.

Every test here needs the server's authentication; they skip while the
server has none."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import ACCESS_TOKEN_TTL_SECS, ALL_SCOPES, FAST_RETRY, Server
from faults import Fault, FaultProxy, Seen
from strictpy_client import (
    AuthenticationError,
    Client,
    NotFoundError,
    OAuthCredentials,
    PermissionDeniedError,
)

pytestmark = pytest.mark.usefixtures("needs_auth")


def oauth_exchange(server: Server, api_token: str) -> dict[str, str]:
    answer = httpx.post(
        f"{server.base_url}/v1/oauth/token",
        headers={"authorization": f"Bearer {api_token}"},
        json={"grant_type": "client_credentials"},
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, str] = answer.json()
    return data


def test_a_missing_scope_is_permission_denied(server: Server, proxy: FaultProxy) -> None:
    reader = server.create_token(["jobs:read"])
    with Client(proxy.url, token=reader, retry=FAST_RETRY) as c:
        with pytest.raises(PermissionDeniedError) as info:
            c.submit("result = 1")
        assert info.value.code == "insufficient_scope"
        with pytest.raises(PermissionDeniedError):
            c.check("pass")
        c.list(limit=1)
    assert len(proxy.requests("POST", "/v1/jobs")) == 1, "a 403 is not retried"


def test_tenants_do_not_see_each_others_jobs(server: Server) -> None:
    alice = server.create_token(ALL_SCOPES, tenant="alice")
    bob = server.create_token(ALL_SCOPES, tenant="bob")
    with Client(server.base_url, token=alice) as a, Client(server.base_url, token=bob) as b:
        job = a.run("result = 'private'")
        with pytest.raises(NotFoundError):
            b.get(job.id)
        with pytest.raises(NotFoundError):
            b.cancel(job.id)
        assert job.id not in {j.id for j in b.iter_jobs()}
        assert a.get(job.id).result == "private"


def test_oauth_exchanges_then_refreshes_before_expiry(
    server: Server, proxy: FaultProxy, token: str
) -> None:
    with Client(proxy.url, token=token, oauth=True, retry=FAST_RETRY) as c:
        assert c.check("pass").ok
        creds = c.credentials
        assert isinstance(creds, OAuthCredentials) and creds.refreshes == 1
        first_access = creds.current()
        assert first_access and first_access != token
        # The refresh happens in the last part of the token's life, before
        # the server would refuse it.
        time.sleep(ACCESS_TOKEN_TTL_SECS / 2 + 0.3)
        assert c.check("pass").ok
        assert creds.refreshes == 2
        assert creds.current() not in (None, first_access)
    seen = proxy.requests()
    assert [s.path for s in seen] == [
        "/v1/oauth/token",
        "/v1/check",
        "/v1/oauth/token/refresh",
        "/v1/check",
    ]
    exchange, first, refresh, second = seen
    assert exchange.headers["authorization"] == f"Bearer {token}"
    assert exchange.json()["grant_type"] == "client_credentials"
    assert first.headers["authorization"] == f"Bearer {first_access}"
    assert "authorization" not in refresh.headers
    assert refresh.json()["grant_type"] == "refresh_token"
    assert refresh.json()["refresh_token"] == oauth_answer_field(exchange, "refresh_token")
    assert second.headers["authorization"] != first.headers["authorization"]
    assert all(s.upstream_status == 200 for s in seen), "no 401 was needed"


def oauth_answer_field(seen: Seen, name: str) -> str:
    """A field of the server's answer to a token request the proxy saw."""
    value = json.loads(seen.upstream_body)[name]
    assert isinstance(value, str)
    return value


def test_oauth_refreshes_once_on_a_401(server: Server, proxy: FaultProxy, token: str) -> None:
    with Client(proxy.url, token=token, oauth=True, retry=FAST_RETRY) as c:
        c.check("pass")
        access = c.credentials.current()
        assert access is not None
        revoked = httpx.post(
            f"{server.base_url}/v1/oauth/revoke",
            headers={"authorization": f"Bearer {access}"},
            json={"token": access, "token_type_hint": "access_token"},
        )
        assert revoked.status_code == 200, revoked.text
        job = c.run("result = 'after refresh'")
        assert job.result == "after refresh"
    paths = [(s.method, s.path, s.upstream_status) for s in proxy.requests()]
    assert paths[2:] == [
        ("POST", "/v1/jobs", 401),
        ("POST", "/v1/oauth/token/refresh", 200),
        ("POST", "/v1/jobs", 200),
    ]


def test_a_second_401_is_raised(proxy: FaultProxy, token: str) -> None:
    with Client(proxy.url, token=token, oauth=True, retry=FAST_RETRY) as c:
        c.check("pass")
        proxy.inject(Fault.respond(401, path="/v1/check"), Fault.respond(401, path="/v1/check"))
        with pytest.raises(AuthenticationError):
            c.check("pass")
    paths = [s.path for s in proxy.requests()]
    assert paths == [
        "/v1/oauth/token",
        "/v1/check",
        "/v1/check",
        "/v1/oauth/token/refresh",
        "/v1/check",
    ]


def test_a_spent_refresh_token_falls_back_to_the_api_token(server: Server, token: str) -> None:
    first = oauth_exchange(server, token)
    rotated = httpx.post(
        f"{server.base_url}/v1/oauth/token/refresh",
        json={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert rotated.status_code == 200, rotated.text
    creds = OAuthCredentials(token, refresh_token=first["refresh_token"])
    with Client(server.base_url, credentials=creds) as c:
        assert c.check("pass").ok
    assert creds.refreshes == 1
    # Reusing the spent token revoked its family, the rotated token included.
    reuse = httpx.post(
        f"{server.base_url}/v1/oauth/token/refresh",
        json={"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
    )
    assert reuse.status_code == 400 and reuse.json()["error"]["code"] == "invalid_grant"


def test_revoke_credentials_ends_the_family(server: Server, token: str) -> None:
    creds = OAuthCredentials(token)
    with Client(server.base_url, credentials=creds) as c:
        c.check("pass")
        refresh = creds.token_request(force=True)
        assert refresh is not None
        c.revoke_credentials()
    answer = httpx.post(f"{server.base_url}{refresh.path}", json=refresh.body)
    assert answer.status_code == 400
