"""A fault-injecting HTTP proxy for the retry tests.

It sits between a client and the real strictpy server and forwards every
request, except the ones a queued fault claims: answer with a status of its
own (5xx, 429 with ``Retry-After``) without forwarding; forward and then
lose the answer (a gateway error or a dropped connection after the server
did the work, the case idempotency keys exist for); drop the connection
before forwarding; or stall. Every request it saw is recorded.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade", "date", "server"}
"""Headers the proxy does not copy: per connection, or set by itself."""


@dataclass(frozen=True)
class Fault:
    """What to do with one matching request."""

    action: str
    """``respond``, ``forward_then_respond``, ``drop``, ``forward_then_drop``
    or ``stall``."""
    status: int = 0
    """The status to answer with (``respond``, ``forward_then_respond``)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers of that answer."""
    seconds: float = 0.0
    """How long to stall before forwarding (``stall``)."""
    method: str | None = None
    """Only requests with this method match (``None``: any)."""
    path: str | None = None
    """Only requests whose path starts with this match (``None``: any)."""

    @staticmethod
    def respond(status: int, *, method: str | None = None, path: str | None = None, **headers: str) -> Fault:
        """Answer ``status`` without forwarding."""
        return Fault("respond", status, {k.replace("_", "-"): v for k, v in headers.items()}, method=method, path=path)

    @staticmethod
    def forward_then_respond(status: int, *, method: str | None = None, path: str | None = None) -> Fault:
        """Forward (the server does the work), then answer ``status`` instead."""
        return Fault("forward_then_respond", status, method=method, path=path)

    @staticmethod
    def drop(*, method: str | None = None, path: str | None = None) -> Fault:
        """Close the connection without forwarding or answering."""
        return Fault("drop", method=method, path=path)

    @staticmethod
    def forward_then_drop(*, method: str | None = None, path: str | None = None) -> Fault:
        """Forward, then close the connection without answering."""
        return Fault("forward_then_drop", method=method, path=path)

    @staticmethod
    def stall(seconds: float, *, method: str | None = None, path: str | None = None) -> Fault:
        """Wait ``seconds`` before forwarding (the client times out first)."""
        return Fault("stall", seconds=seconds, method=method, path=path)

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault claims the request."""
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    """The method."""
    path: str
    """Path and query."""
    headers: dict[str, str]
    """The request headers, lower-cased names."""
    body: bytes
    """The raw body."""
    fault: str | None
    """The fault applied, if any."""
    upstream_status: int | None = None
    """What the server answered, when the request was forwarded."""
    upstream_body: bytes = b""
    """The server's answer body, when forwarded."""
    at: float = field(default_factory=time.monotonic)
    """When it arrived (monotonic seconds)."""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class FaultProxy:
    """The proxy, listening on ``127.0.0.1`` on a free port (with TLS when
    given a server-side ``ssl.SSLContext``)."""

    def __init__(self, upstream: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        """The server requests are forwarded to."""
        self.seen: list[Seen] = []
        """Every request received, in order."""
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is for the tests."""

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_DELETE(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            # TLS in front of the real server, for the certificate tests.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"{'https' if tls else 'http'}://{host!s}:{port}"
        """The proxy's base URL."""

    def inject(self, *faults: Fault) -> None:
        """Queues faults; each claims the next request it matches."""
        with self._lock:
            self._faults.extend(faults)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """The requests seen, optionally only those matching."""
        with self._lock:
            return [
                s
                for s in self.seen
                if (method is None or s.method == method) and (path is None or s.path.startswith(path))
            ]

    def close(self) -> None:
        """Stops the proxy."""
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _claim(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    self._faults.remove(fault)
                    return fault
        return None

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> httpx.Response:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        return self._http.request(h.command, h.path, headers=headers, content=body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._claim(h.command, h.path)
        seen = Seen(
            h.command,
            h.path,
            {k.lower(): v for k, v in h.headers.items()},
            body,
            fault.action if fault else None,
        )
        with self._lock:
            self.seen.append(seen)
        h.close_connection = True
        if fault is not None and fault.action == "drop":
            return
        if fault is not None and fault.action == "respond":
            self._reply(h, fault.status, fault.headers, b'{"error": {"code": "injected", "message": "injected fault"}}')
            return
        if fault is not None and fault.action == "stall":
            time.sleep(fault.seconds)
        upstream = self._forward(h, body)
        seen.upstream_status = upstream.status_code
        seen.upstream_body = upstream.content
        if fault is not None and fault.action == "forward_then_drop":
            return
        if fault is not None and fault.action == "forward_then_respond":
            self._reply(h, fault.status, {}, b"<html>bad gateway</html>", content_type="text/html")
            return
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        self._reply(h, upstream.status_code, headers, upstream.content, content_type=None)

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        content_type: str | None = "application/json",
    ) -> None:
        try:
            h.send_response(status)
            if content_type is not None:
                h.send_header("content-type", content_type)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("content-length", str(len(body)))
            h.send_header("connection", "close")
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing to tell it.
            pass
