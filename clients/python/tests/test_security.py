"""HTTPS only (plain HTTP for loopback alone), certificate verification,
where the token comes from, and that it never shows in logs or reprs."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest

from conftest import FAST_RETRY, Server
from faults import Fault, FaultProxy
from strictpy_client import (
    APIError,
    AsyncClient,
    AuthenticationError,
    Client,
    InsecureURLError,
    MissingCredentialsError,
    StaticToken,
    TransportError,
    save_token_to_keyring,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://strictpy.internal:8080/",
        "http://10.0.0.1:8080",
        "http://192.168.1.10",
        "http://127.0.0.1.example.com",
        "http://[::2]:80",
        "ftp://localhost/",
        "localhost:8080",
        "https://user:secret@strictpy.example",
        "https://strictpy.example/?token=x",
        "",
    ],
)
def test_plain_http_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureURLError):
        Client(url, token="t")
    with pytest.raises(InsecureURLError):
        AsyncClient(url, token="t")


@pytest.mark.parametrize(
    "url",
    [
        "https://strictpy.example",
        "https://strictpy.example:8443/base/",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:1/",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    with Client(url, token="t") as c:
        assert c.base_url == url.rstrip("/")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_proxy(server: Server, certificate: tuple[Path, Path]) -> Iterator[FaultProxy]:
    """TLS with the self-signed certificate in front of the real server."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certificate)
    p = FaultProxy(server.base_url, tls=ctx)
    try:
        yield p
    finally:
        p.close()


def test_certificates_are_verified_by_default(
    tls_proxy: FaultProxy,
    certificate: tuple[Path, Path],
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert tls_proxy.url.startswith("https://")
    caplog.set_level(logging.INFO, logger="strictpy_client")
    with Client(tls_proxy.url, token=token, retry=FAST_RETRY) as c:
        with pytest.raises(TransportError, match="(?i)certificate"):
            c.check("pass")
    assert tls_proxy.requests() == [], "no request was sent over the unverified connection"
    assert "retrying" not in caplog.text, "no retry makes an unknown issuer known"
    # Trusting the certificate explicitly works, over TLS to the real server.
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    with Client(tls_proxy.url, token=token, verify=trusted) as c:
        assert c.run("result = 'over tls'").result == "over tls"


def test_redirects_are_not_followed(proxied: Client, proxy: FaultProxy) -> None:
    proxy.inject(Fault.respond(307, path="/v1/check", location="http://elsewhere.example/v1/check"))
    with pytest.raises(APIError) as info:
        proxied.check("pass")
    assert info.value.status_code == 307
    assert len(proxy.requests()) == 1


def test_the_token_is_sent_as_a_bearer(proxied: Client, proxy: FaultProxy, token: str) -> None:
    proxied.check("pass")
    assert proxy.requests()[0].headers["authorization"] == f"Bearer {token}"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring backend, in place of the OS one."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.delenv("STRICTPY_TOKEN", raising=False)
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_token_sources_in_order(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, token: str
) -> None:
    with pytest.raises(MissingCredentialsError):
        Client(proxy.url)
    save_token_to_keyring(proxy.url, token)
    with Client(proxy.url) as c:
        c.check("pass")
    monkeypatch.setenv("STRICTPY_TOKEN", "from-the-environment")
    with Client(proxy.url) as c:
        assert repr(c.credentials) == "StaticToken(<redacted>)"
        proxy.inject(Fault.respond(200, path="/v1/check"))
        c.check("pass")
    with Client(proxy.url, token="from-the-argument") as c:
        proxy.inject(Fault.respond(200, path="/v1/check"))
        c.check("pass")
    seen = [s.headers["authorization"] for s in proxy.requests()]
    assert seen == [f"Bearer {token}", "Bearer from-the-environment", "Bearer from-the-argument"]


def test_a_bad_token_is_refused_and_not_retried(
    server: Server, needs_auth: None, proxy: FaultProxy
) -> None:
    with Client(proxy.url, token="sp_not_a_real_token", retry=FAST_RETRY) as c:
        with pytest.raises(AuthenticationError) as info:
            c.check("pass")
    assert info.value.code == "unauthorized"
    assert len(proxy.requests()) == 1


def test_logs_reprs_and_errors_never_show_the_token(
    proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sp_live_do-not-log-me-0123456789"
    caplog.set_level(logging.DEBUG)
    with Client(proxy.url, token=secret, retry=FAST_RETRY) as c:
        proxy.inject(
            Fault.respond(503, path="/v1/check"),
            Fault.drop(path="/v1/check"),
            Fault.respond(401, path="/v1/check", www_authenticate='Bearer error="invalid_token"'),
        )
        with pytest.raises(AuthenticationError) as info:
            c.check("pass")
        texts = [caplog.text, repr(c), repr(c.credentials), str(info.value), repr(info.value)]
    assert "retrying" in caplog.text, "the retries were logged"
    for text in texts:
        assert secret not in text
    assert repr(StaticToken(secret)) == "StaticToken(<redacted>)"
