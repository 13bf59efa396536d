"""Fixtures: a real ``strictpy serve`` process started from the freshly built
binary on a free port with a temporary data dir, tokens for it, clients and
a fault-injecting proxy in front of it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from faults import FaultProxy
from strictpy_client import Client, RetryPolicy

REPO = Path(__file__).resolve().parents[3]
"""The strictpy checkout these tests live in."""

WEBHOOK_SECRET = "pytest-webhook-secret"
"""The webhook secret the test server signs with."""

ACCESS_TOKEN_TTL_SECS = 4
"""Access-token lifetime of the test server, short so refresh is testable."""

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.02, backoff_max=0.1)
"""Retries without the production waits, to keep the suite fast."""

ALL_SCOPES = ["jobs:read", "jobs:write", "check"]
"""The scopes of an ordinary tenant token."""


@dataclass
class Server:
    """A running ``strictpy serve``."""

    base_url: str
    """``http://127.0.0.1:<port>``."""
    data_dir: Path
    """Its data dir."""
    admin_token: str
    """The generated admin token, or a placeholder while the server has no
    authentication."""
    auth_enabled: bool
    """True when the server refuses requests without a token."""
    process: subprocess.Popen[bytes] = field(repr=False)
    """The child process."""

    def create_token(
        self, scopes: list[str], *, tenant: str = "pytest", expires_in_secs: int = 3600
    ) -> str:
        """A new API token (``POST /v1/tokens``); the admin placeholder while
        the server has no authentication."""
        if not self.auth_enabled:
            return self.admin_token
        answer = httpx.post(
            f"{self.base_url}/v1/tokens",
            headers={"authorization": f"Bearer {self.admin_token}"},
            json={
                "tenant": tenant,
                "scopes": scopes,
                "name": "pytest",
                "expires_in_secs": expires_in_secs,
            },
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        token = answer.json()["token"]
        assert isinstance(token, str)
        return token


def strictpy_bin() -> Path:
    """``$STRICTPY_BIN``, else the release build of this checkout."""
    return Path(os.environ.get("STRICTPY_BIN") or REPO / "target/release/strictpy")


def start_server(data_dir: Path, log_path: Path) -> Server:
    """Starts the server, waits for ``/readyz`` and reads the admin token."""
    binary = strictpy_bin()
    if not binary.is_file():
        pytest.exit(f"{binary} does not exist: run `make build` first", returncode=2)
    env = dict(os.environ)
    env.setdefault("STRICTPY_GUEST", str(REPO / "target/guest/strictpy-guest.wasm"))
    env.update(
        {
            "STRICTPY_WEBHOOK__SECRET": WEBHOOK_SECRET,
            "STRICTPY_WEBHOOK__ALLOW_LOOPBACK": "true",
            "STRICTPY_AUTH__ACCESS_TOKEN_TTL_SECS": str(ACCESS_TOKEN_TTL_SECS),
            "STRICTPY_LOG": "info",
        }
    )
    # The client tests must not pick up a developer's own settings.
    env.pop("STRICTPY_TOKEN", None)
    env.pop("STRICTPY_URL", None)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--workers", "2", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    log.close()
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    prefix = "strictpy: listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        pytest.exit(f"strictpy serve did not start ({line!r}); see {log_path}", returncode=2)
    base_url = line[len(prefix) :]
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.exit("strictpy serve never became ready", returncode=2)
        time.sleep(0.05)
    # Authentication is on when an unauthenticated API call is refused; then
    # the server must have written the admin token on first start.
    probe = httpx.get(f"{base_url}/v1/jobs", params={"limit": 1}, timeout=10)
    auth_enabled = probe.status_code == 401
    token_file = data_dir / "admin-token"
    if auth_enabled:
        assert token_file.is_file(), "authentication is on but there is no admin-token file"
        assert token_file.stat().st_mode & 0o077 == 0, "admin-token must be mode 0600"
        admin_token = token_file.read_text().strip()
    else:
        admin_token = "placeholder-token-server-has-no-auth"
    return Server(base_url, data_dir, admin_token, auth_enabled, process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session (it starts in well under a second once the
    guest's compiled form is cached)."""
    root = tmp_path_factory.mktemp("strictpy")
    data_dir = root / "data"
    data_dir.mkdir()
    srv = start_server(data_dir, root / "server.log")
    try:
        yield srv
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            srv.process.kill()
            srv.process.wait()
        if srv.process.stdout is not None:
            srv.process.stdout.close()


@pytest.fixture(scope="session")
def token(server: Server) -> str:
    """A tenant token with the ordinary scopes."""
    return server.create_token(ALL_SCOPES)


@pytest.fixture
def needs_auth(server: Server) -> None:
    """Skips a test of authentication while the server has none."""
    if not server.auth_enabled:
        pytest.skip("the server does not authenticate yet")


@pytest.fixture
def client(server: Server, token: str) -> Iterator[Client]:
    """A client talking to the server directly."""
    with Client(server.base_url, token=token, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the server."""
    p = FaultProxy(server.base_url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def proxied(proxy: FaultProxy, token: str) -> Iterator[Client]:
    """A client talking to the server through the proxy."""
    with Client(proxy.url, token=token, retry=FAST_RETRY, timeout=5.0) as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    """The async tests run on asyncio."""
    return "asyncio"
