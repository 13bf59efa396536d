"""The OpenAPI contract, checked by schemathesis against a real `strictpy serve`.

`make contract-test` runs this: it starts the release binary on a free port
with a temporary data dir, then `st run --checks all` over every operation in
`/openapi.json` (routes added later come in by themselves), all phases, a
fixed seed and a bounded example count. `schemathesis.toml` at the repository
root holds the few narrowly configured checks, each with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("STRICTPY_BIN", ROOT / "target/release/strictpy"))
ST = Path(sys.executable).with_name("st")

# Limits the run cannot reach, so every answer is about the request itself;
# a bootstrap tenant no generated path will name, so `DELETE
# /v1/tenants/{tenant}` never erases the token the run uses; short job
# limits so the jobs it submits end quickly.
CONFIG = """
max_wait_ms = 2000
queue_size = 100000
workers = 2

[auth]
bootstrap_tenant = "contract-admin-3c9d"

[rate_limit]
requests_per_minute = 1000000
burst = 1000000
concurrent_jobs = 100000
unauthenticated_per_minute = 1000000
unauthenticated_burst = 1000000

[lockout]
max_failures = 1000000

[limits.max]
timeout_ms = 1000
"""


def test_the_server_answers_as_its_openapi_document_says() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        config = Path(tmp) / "strictpy.toml"
        config.write_text(CONFIG)
        server = subprocess.Popen(
            [str(BIN), "serve", "--config", str(config), "--data-dir", str(data),
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            base = ""
            for line in server.stdout:
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    base = found.group(1)
                    break
            assert base, "strictpy serve printed no listening address"
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"{base}/readyz") as ready:
                        if ready.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
            token = (data / "admin-token").read_text().strip()
            run = subprocess.run(
                [str(ST), "run", f"{base}/openapi.json",
                 "--header", f"Authorization: Bearer {token}"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=900,
            )
            print(run.stdout)
            assert run.returncode == 0, run.stdout[-20000:]
        finally:
            server.terminate()
            server.wait(timeout=60)
