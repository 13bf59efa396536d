"""Fixtures of the browser tests: a real ``strictpy serve`` (the release
build, a temporary data dir, a free port), tokens for it, and Debian's
``chromium`` driven by Playwright with a fresh, empty profile per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

REPO = Path(__file__).resolve().parents[2]
"""The strictpy checkout these tests live in."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags for a quiet headless chromium that reaches nothing but the test server."""


@dataclass
class Server:
    """A running ``strictpy serve``."""

    base_url: str
    """``http://127.0.0.1:<port>``."""
    admin_token: str
    """The admin token the server made on its first start."""
    log_path: Path
    """Where its log goes."""
    process: subprocess.Popen[bytes] = field(repr=False)
    """The child process."""

    def api(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """One request outside the browser: status, JSON body (or None) and headers."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("authorization", f"Bearer {self.admin_token}")
        if data is not None:
            req.add_header("content-type", "application/json")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                raw = answer.read()
                status = answer.status
                got = dict(answer.headers.items())
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
            got = dict(e.headers.items())
        return status, (json.loads(raw) if raw else None), got

    def create_token(self, scopes: list[str], tenant: str = "browser") -> str:
        """A new API token (``POST /v1/tokens``)."""
        status, body, _ = self.api(
            "POST", "/v1/tokens", {"tenant": tenant, "scopes": scopes, "name": "browser test", "expires_in_secs": 3600}
        )
        assert status == 201, body
        token = body["token"]
        assert isinstance(token, str)
        return token


def strictpy_bin() -> Path:
    """``$STRICTPY_BIN``, else the release build of this checkout."""
    return Path(os.environ.get("STRICTPY_BIN") or REPO / "target/release/strictpy")


@contextmanager
def running_server(root: Path, listen: str = "127.0.0.1:0", *extra: str) -> Iterator[Server]:
    """Starts ``strictpy serve`` with a data dir under ``root``, waits until
    it is ready, and stops it afterwards."""
    binary = strictpy_bin()
    if not binary.is_file():
        pytest.exit(f"{binary} does not exist: run `make build` first", returncode=2)
    data_dir = root / "data"
    data_dir.mkdir()
    env = dict(os.environ)
    env.setdefault("STRICTPY_GUEST", str(REPO / "target/guest/strictpy-guest.wasm"))
    env["STRICTPY_LOG"] = "info"
    env.pop("STRICTPY_TOKEN", None)
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--listen", listen, "--workers", "2", "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        prefix = "strictpy: listening on "
        if not line.startswith(prefix):
            pytest.exit(f"strictpy serve did not start ({line!r}); see {log_path}", returncode=2)
        base_url = line[len(prefix) :].replace("://0.0.0.0:", "://127.0.0.1:")
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.exit("strictpy serve never became ready", returncode=2)
            time.sleep(0.05)
        admin_token = (data_dir / "admin-token").read_text().strip()
        yield Server(base_url, admin_token, log_path, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole run."""
    with running_server(tmp_path_factory.mktemp("strictpy")) as srv:
        yield srv


@pytest.fixture(scope="session")
def token(server: Server) -> str:
    """An ordinary tenant token (no admin scope)."""
    return server.create_token(["jobs:read", "jobs:write", "check"])


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver."""
    with sync_playwright() as p:
        yield p


def chromium_path() -> str:
    """Debian's chromium (``$CHROMIUM`` overrides)."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.exit("chromium is not installed (make web-test installs it with apt-get)", returncode=2)
    return path


@pytest.fixture
def context(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """A browser with a new, empty profile."""
    profile = tmp_path / "profile"
    profile.mkdir()
    ctx = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )
    try:
        yield ctx
    finally:
        ctx.close()


@dataclass
class Browser:
    """A page on the playground, with what the tests watch for."""

    page: Page
    """The page."""
    server: Server
    """The server it talks to."""
    dialogs: list[str] = field(default_factory=list)
    """Messages of every dialog (alert, confirm) the page opened."""
    csp_violations: list[str] = field(default_factory=list)
    """Console messages reporting a Content-Security-Policy violation."""

    def sign_in(self, token: str) -> None:
        """Signs in through the form and waits for the playground."""
        self.page.goto(self.server.base_url + "/")
        self.page.fill("#signin-token", token)
        self.page.click("#signin-submit")
        self.page.wait_for_selector("#view-playground:not([hidden])")

    def set_code(self, code: str) -> None:
        """Replaces the editor's text as a person would: select all, type."""
        self.page.click(".cm-content")
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        # insert_text, not type: CodeMirror would auto-indent typed newlines.
        self.page.keyboard.insert_text(code)

    def run(self) -> None:
        """Clicks Run and waits until the outcome shows a final status."""
        self.page.click("#run")
        self.page.wait_for_selector(
            "#outcome [data-status=succeeded], #outcome [data-status=failed], #outcome [data-status=cancelled]",
            timeout=30_000,
        )


@pytest.fixture
def browser(context: BrowserContext, server: Server) -> Iterator[Browser]:
    """A fresh page that records dialogs and CSP violations, which must not happen."""
    page = context.pages[0] if context.pages else context.new_page()
    b = Browser(page, server)

    def on_dialog(dialog: Any) -> None:
        b.dialogs.append(dialog.message)
        dialog.accept()

    def on_console(msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            b.csp_violations.append(msg.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    yield b
    assert b.csp_violations == [], "the page broke its own Content-Security-Policy"
