"""Webhook verification: a real delivery from the server verifies; a
tampered body, a wrong secret and a stale or future timestamp do not."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import WEBHOOK_SECRET
from strictpy_client import (
    SIGNATURE_HEADER,
    Client,
    WebhookVerificationError,
    signature_header,
    verify_signature,
    verify_webhook,
)

Delivery = tuple[bytes, str]


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """A webhook receiver on loopback that records each delivery's raw body
    and signature header."""
    deliveries: queue.Queue[Delivery] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            deliveries.put((body, self.headers.get(SIGNATURE_HEADER, "")))
            self.send_response(204)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    try:
        yield f"http://{host!s}:{port}/hook", deliveries
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_real_delivery_verifies_and_tampering_or_replay_does_not(
    client: Client, receiver: tuple[str, queue.Queue[Delivery]]
) -> None:
    url, deliveries = receiver
    job = client.run("result = {'paid': True}", callback_url=url)
    body, header = deliveries.get(timeout=20)

    t = verify_signature(body, header, WEBHOOK_SECRET)
    delivered = verify_webhook(body, header, [b"old-secret", WEBHOOK_SECRET.encode()])
    assert delivered.id == job.id and delivered.result == {"paid": True}
    assert delivered.status == "succeeded"

    tampered = body.replace(b'"paid":true', b'"paid":false')
    assert tampered != body
    with pytest.raises(WebhookVerificationError, match="tampered"):
        verify_signature(tampered, header, WEBHOOK_SECRET)
    with pytest.raises(WebhookVerificationError):
        verify_signature(body, header, "some-other-secret")
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_signature(body, header, WEBHOOK_SECRET, now=t + 301)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_signature(body, header, WEBHOOK_SECRET, now=t - 301)
    verify_signature(body, header, WEBHOOK_SECRET, now=t + 299)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_signature(body, header, WEBHOOK_SECRET, tolerance=10, now=t + 11)


def test_the_servers_known_vector() -> None:
    header = "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
    assert verify_signature(b"{}", header, "secret", now=1700000000) == 1700000000
    assert signature_header(b"{}", "secret", timestamp=1700000000) == header


def test_rotation_any_signature_against_any_secret() -> None:
    body = b'{"id": "x", "status": "succeeded"}'
    header = signature_header(body, ["new", "old"], timestamp=1000)
    assert header.count("v1=") == 2
    for secrets in (["old"], ["new"], ["unrelated", "old"], "new"):
        verify_signature(body, header, secrets, now=1000)
    with pytest.raises(WebhookVerificationError):
        verify_signature(body, header, ["unrelated"], now=1000)


@pytest.mark.parametrize(
    "header",
    [None, "", "v1=abc", "t=1000", "t=abc,v1=00", "t=1000,t=1000,v1=00", "garbage"],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_signature(b"{}", header, "secret", now=1000)


def test_unknown_schemes_are_ignored_and_parsed_json_is_refused() -> None:
    header = signature_header(b"{}", "secret", timestamp=1000) + ",v2=ffff"
    verify_signature(b"{}", header, "secret", now=1000)
    with pytest.raises(TypeError):
        verify_signature({}, header, "secret", now=1000)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        verify_signature(b"{}", header, [], now=1000)
