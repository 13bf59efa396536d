"""The playground in a real browser: sign-in and the session cookie, running
jobs and reading verdicts, usage bars, the inline static check, cancelling,
output that stays text, CSRF and sign-out."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import expect

from conftest import Browser, Server, running_server

SESSION_COOKIE = "strictpy_session"


def ratio(b: Browser, key: str) -> float:
    """How full a usage bar is, 0 to 1, as the page draws it."""
    value = b.page.get_attribute(f'#outcome [data-usage="{key}"]', "aria-valuenow")
    assert value is not None
    return float(value)


def test_served_with_strict_headers(browser: Browser, server: Server) -> None:
    for path in ("/", "/ui/"):
        response = browser.page.goto(server.base_url + path)
        assert response is not None and response.status == 200
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "no-cache" in headers["cache-control"]
        expect(browser.page.locator("#signin-form")).to_be_visible()
    script = browser.page.get_attribute("script[type=module]", "src")
    assert script is not None and script.startswith("/ui/assets/")
    asset = browser.page.request.get(server.base_url + script)
    assert asset.status == 200
    assert "immutable" in asset.headers["cache-control"]
    assert asset.headers["content-type"].startswith("text/javascript")


def test_sign_in_sets_a_session_cookie_and_keeps_no_token(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    cookies = {c["name"]: c for c in browser.page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/"
    # Plain http here; the server marks the cookie Secure when it serves TLS.
    assert session["secure"] is False
    assert 0 < session["expires"]
    stored = browser.page.evaluate(
        "() => JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])"
    )
    assert token not in stored
    assert session["value"] not in stored
    assert stored == '["",{},{}]'
    # The sign-in field was emptied; the token is not left in the page either.
    assert browser.page.input_value("#signin-token") == ""
    expect(browser.page.locator("#who-text")).to_contain_text("tenant browser")


def test_hello_job_shows_output_and_usage_bars(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    browser.set_code('print("hello, browser")\nresult = {"answer": 6 * 7}\n')
    browser.run()
    page = browser.page
    expect(page.locator("#outcome [data-status]")).to_have_text("succeeded")
    expect(page.locator("#outcome .verdict")).to_contain_text("succeeded in")
    expect(page.locator('#outcome [data-stream="stdout"]')).to_have_text("hello, browser\n")
    expect(page.locator('#outcome [data-stream="result"]')).to_have_text('{\n  "answer": 42\n}')
    for key in ("fuel", "time", "memory"):
        assert 0 < ratio(browser, key) < 1, key
    expect(page.locator("#outcome .bar")).to_have_count(3)


def test_timeout_verdict_and_a_full_time_bar(browser: Browser, token: str, tmp_path: Path) -> None:
    browser.sign_in(token)
    browser.set_code("while True:\n    pass\n")
    browser.page.fill("#limit-timeout", "300")
    browser.page.fill("#limit-fuel", "")
    browser.run()
    page = browser.page
    expect(page.locator("#outcome [data-status]")).to_have_text("failed")
    expect(page.locator("#outcome [data-verdict]")).to_have_attribute("data-verdict", "timeout")
    expect(page.locator("#outcome .verdict")).to_have_text("stopped by the time limit at 300 ms")
    assert ratio(browser, "time") == 1.0
    assert ratio(browser, "fuel") < 1.0
    # The picture in the README: the page right after a timeout verdict.
    shot = tmp_path / "timeout.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("STRICTPY_UI_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)


def test_print_flood_shows_the_truncation_flag(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    browser.set_code('for i in range(20000):\n    print("flood", i)\n')
    browser.page.fill("#limit-output", "1000")
    browser.run()
    page = browser.page
    expect(page.locator('#outcome [data-truncated="stdout"]')).to_be_visible()
    stdout = page.text_content('#outcome [data-stream="stdout"]')
    assert stdout is not None and stdout.startswith("flood 0\n") and len(stdout.encode()) <= 1000


def test_static_check_violation_shows_inline_before_running(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    browser.set_code("x = 1\nimport socket\n")
    page = browser.page
    mark = page.locator(".cm-lintRange-error")
    expect(mark).to_have_count(1, timeout=10_000)
    # On line 2, where the import is.
    expect(page.locator(".cm-line").nth(1).locator(".cm-lintRange-error")).to_have_count(1)
    expect(page.locator("#check-status")).to_have_text("static check: 1 violation")
    # Nothing ran: there is no outcome yet.
    expect(page.locator("#outcome")).to_be_hidden()
    # The message is the server's, shown on hover.
    mark.hover()
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("socket")
    # Fixing the code clears it.
    browser.set_code("x = 1\n")
    expect(page.locator("#check-status")).to_have_text("static check: ok", timeout=10_000)
    expect(mark).to_have_count(0)


def test_cancel_a_running_job(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    browser.set_code("while True:\n    pass\n")
    page = browser.page
    page.fill("#limit-timeout", "30000")
    page.click("#run")
    expect(page.locator("#outcome [data-status]")).to_have_text("running", timeout=15_000)
    page.click("#cancel")
    expect(page.locator("#outcome [data-status]")).to_have_text("cancelled", timeout=15_000)
    expect(page.locator("#outcome .verdict")).to_have_text("cancelled")


def test_markup_in_output_stays_text(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    page = browser.page
    elements_before = page.evaluate("() => document.querySelectorAll('img, script, iframe').length")
    hostile = (
        'print("<img src=x onerror=alert(1)>")\n'
        'print("<script>alert(2)</script>")\n'
        'print("\\x1b[31mred\\x1b[0m \\u202eevil\\u202c \\u0000 \\U0001F600")\n'
        'raise ValueError("<b>bold</b><iframe src=javascript:alert(3)></iframe>")\n'
    )
    browser.set_code(hostile)
    browser.run()
    stdout = page.text_content('#outcome [data-stream="stdout"]')
    assert stdout == "<img src=x onerror=alert(1)>\n<script>alert(2)</script>\n\x1b[31mred\x1b[0m \u202eevil\u202c \x00 \U0001F600\n"
    markup = "<b>bold</b><iframe src=javascript:alert(3)></iframe>"
    expect(page.locator("#outcome .verdict")).to_have_text(f"failed with ValueError: {markup}")
    expect(page.locator('#outcome [data-stream="traceback"]')).to_contain_text(markup)
    page.wait_for_timeout(300)
    assert browser.dialogs == []
    assert page.evaluate("() => document.querySelectorAll('img, script, iframe, svg[onload], b').length") == elements_before
    assert page.locator("#outcome pre img, #outcome pre script, #outcome pre b").count() == 0


class Attacker(BaseHTTPRequestHandler):
    """Another site, whose page posts a job to the strictpy server."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = (
            "<!doctype html><html><body>"
            f'<form id="f" method="POST" action="{self.target}/v1/jobs" enctype="text/plain">'
            '<input name=\'{"code": "print(1)", "x": "\' value=\'"}\'>'
            "</form></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def job_count(server: Server) -> int:
    status, body, _ = server.api("GET", "/v1/jobs?limit=200")
    assert status == 200
    return len(body["jobs"])


def test_requests_without_the_csrf_token_are_refused(browser: Browser, server: Server, token: str) -> None:
    browser.sign_in(token)
    page = browser.page
    before = job_count(server)
    # From the page's own origin, with the cookie but without the header.
    answer = page.evaluate(
        """async () => {
            const r = await fetch('/v1/jobs', {method: 'POST', headers: {'content-type': 'application/json'},
                                               body: JSON.stringify({code: 'print(1)'})});
            return [r.status, await r.json()];
        }"""
    )
    assert answer[0] == 403
    assert answer[1]["error"]["code"] == "csrf_token_invalid"
    # From another site: a form post. SameSite=Strict keeps the cookie home.
    # (localhost and 127.0.0.1 are different sites.)
    Attacker.target = server.base_url
    evil = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://localhost:{evil.server_address[1]}/")
        with page.expect_response(re.compile(r"/v1/jobs$")) as info:
            page.evaluate("() => document.getElementById('f').submit()")
        assert info.value.status in (401, 403)
    finally:
        evil.shutdown()
        evil.server_close()
    assert job_count(server) == before


def test_sign_out_revokes_the_session(browser: Browser, server: Server, token: str) -> None:
    browser.sign_in(token)
    page = browser.page
    old = {c["name"]: c for c in page.context.cookies()}[SESSION_COOKIE]["value"]
    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    assert SESSION_COOKIE not in {c["name"] for c in page.context.cookies()}
    # The old cookie, presented again, is refused server-side.
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": old, "url": server.base_url}])
    for path in ("/v1/sessions/current", "/v1/jobs"):
        answer = page.request.get(server.base_url + path)
        assert answer.status == 401, path
    page.reload()
    expect(page.locator("#view-signin")).to_be_visible()
    # And the audit log has the session's life.
    status, body, _ = server.api("GET", "/v1/audit?tenant=browser&limit=1000")
    assert status == 200
    events = {e["event"] for e in body["events"]}
    assert {"session_created", "session_revoked"} <= events


def test_recent_jobs_open_one_and_load_its_code(browser: Browser, token: str) -> None:
    browser.sign_in(token)
    page = browser.page
    code = 'print("from the list")\n'
    browser.set_code(code)
    page.fill("#stdin", "some input")
    browser.run()
    job_id = page.text_content("#outcome .meta")
    assert job_id is not None
    job_id = job_id.split()[1]
    browser.set_code("pass\n")
    page.click('.tab[data-view="jobs"]')
    page.select_option("#jobs-status", "succeeded")
    page.click("#jobs-filter button[type=submit]")
    page.click(f'[data-job="{job_id}"]')
    expect(page.locator('#job-detail [data-stream="stdout"]')).to_have_text("from the list\n")
    page.click('#job-detail [data-action="load-code"]')
    expect(page.locator("#view-playground")).to_be_visible()
    expect(page.locator(".cm-content")).to_have_text("print(\"from the list\")")
    assert page.input_value("#stdin") == "some input"


def test_admin_creates_a_token_once_and_reads_the_audit_log(browser: Browser, server: Server) -> None:
    browser.sign_in(server.admin_token)
    page = browser.page
    page.click('.tab[data-view="tokens"]')
    page.fill("#token-tenant", "made-in-browser")
    page.fill("#token-name", "from the page")
    page.uncheck('input[name=scope][value="jobs:write"]')
    page.click("#token-form button[type=submit]")
    secret = page.locator("#token-secret-value")
    expect(secret).to_have_text(re.compile(r"^spk_"))
    row = page.locator("#token-rows tr", has_text="made-in-browser")
    expect(row).to_contain_text("jobs:read, check")
    row.locator("[data-revoke]").click()
    expect(row).to_contain_text("revoked")
    page.click('.tab[data-view="audit"]')
    page.fill("#audit-event", "token_created")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator('#audit-rows [data-event="token_created"]').first).to_be_visible()
    expect(page.locator("#audit-rows")).to_contain_text("made-in-browser")


def sign_in_over_http(server: Server, token: str) -> tuple[str, str, str]:
    """``POST /v1/sessions`` outside the browser: the Set-Cookie header, the
    cookie value and the CSRF token."""
    req = urllib.request.Request(
        server.base_url + "/v1/sessions",
        data=json.dumps({"token": token}).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as answer:
        assert answer.status == 201
        set_cookie = answer.headers["set-cookie"]
        body = json.loads(answer.read())
    value = set_cookie.split(";")[0].split("=", 1)[1]
    return set_cookie, value, body["csrf_token"]


def with_cookie(server: Server, method: str, path: str, cookie: str, csrf: str | None = None) -> int:
    """The status of a request authenticated by the session cookie only."""
    req = urllib.request.Request(server.base_url + path, method=method, headers={"cookie": f"{SESSION_COOKIE}={cookie}"})
    if csrf is not None:
        req.add_header("x-csrf-token", csrf)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_revoking_the_parent_token_ends_its_sessions(server: Server) -> None:
    token = server.create_token(["jobs:read", "check"], tenant="parent-revoked")
    _, cookie, csrf = sign_in_over_http(server, token)
    assert with_cookie(server, "GET", "/v1/sessions/current", cookie) == 200
    # The session has its parent's scopes, no more.
    assert with_cookie(server, "DELETE", "/v1/tokens/0123456789abcdef", cookie, csrf) == 403
    status, body, _ = server.api("GET", "/v1/tokens?tenant=parent-revoked")
    assert status == 200
    (parent,) = body["tokens"]
    assert server.api("DELETE", f"/v1/tokens/{parent['id']}")[0] == 200
    assert with_cookie(server, "GET", "/v1/sessions/current", cookie) == 401
    assert with_cookie(server, "GET", "/v1/jobs", cookie) == 401


def test_sign_in_needs_a_json_body_and_a_valid_api_token(server: Server) -> None:
    def post(body: bytes, content_type: str) -> int:
        req = urllib.request.Request(
            server.base_url + "/v1/sessions", data=body, method="POST", headers={"content-type": content_type}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    good = json.dumps({"token": server.admin_token}).encode()
    # What a cross-site HTML form can send is refused: no login CSRF.
    assert post(good, "text/plain") == 415
    assert post(b"token=x", "application/x-www-form-urlencoded") == 415
    assert post(json.dumps({"token": "spk_0123456789abcdef_" + "A" * 43}).encode(), "application/json") == 401
    assert post(b'{"token": 1}', "application/json") == 400


def test_the_cookie_is_secure_when_browsers_reach_the_server_over_tls(tmp_path: Path) -> None:
    # Off loopback, plain HTTP is only allowed behind a TLS-terminating proxy,
    # so the browser is on https and the cookie must be Secure.
    with running_server(tmp_path, "0.0.0.0:0", "--allow-insecure-http") as srv:
        set_cookie, _, _ = sign_in_over_http(srv, srv.admin_token)
    flags = [f.strip().lower() for f in set_cookie.split(";")[1:]]
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
