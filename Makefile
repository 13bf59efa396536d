# The verbs people and CI use. `make run` and `make test` work on a fresh
# machine: they install the wasm target and build what they need.

CARGO       ?= cargo
# The pinned ruff parser crates (=0.16.5, what RustPython 0.6 needs) declare
# rust-version 1.96 but build on 1.95.
CARGO_FLAGS := --ignore-rust-version --locked
GUEST_WASM  := target/guest/strictpy-guest.wasm
STRICTPY    := target/release/strictpy
export STRICTPY_GUEST := $(abspath $(GUEST_WASM))

.PHONY: all toolchain guest build run example test client-test contract-test lint fmt fuzz bench clean postgres web web-test ui-screenshot soak corpus-native cluster

all: build

toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# The guest builds for wasm32-wasip1 in its own workspace (guest/.cargo/config.toml).
guest: toolchain
	cd guest && $(CARGO) build --release $(CARGO_FLAGS)
	@mkdir -p target/guest
	cp guest/target/wasm32-wasip1/release/strictpy-guest.wasm $(GUEST_WASM)

# The browser UI (web/): `npm ci` against the committed lockfile, again only
# when the lockfile changes, then `vite build` into web/dist, which
# crates/server/build.rs embeds in the binary (cargo rebuilds when it changes).
WEB_SRC := $(wildcard web/src/*) web/index.html web/vite.config.ts web/tsconfig.json web/package.json

web/node_modules/.installed: web/package-lock.json
	@command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SRC)
	cd web && npm run build

web: web/dist/index.html

# One release build serves `make run`, the tests and the benches.
build: guest web
	$(CARGO) build --release $(CARGO_FLAGS)

# Starts the HTTP job service on 127.0.0.1:8080 with embedded defaults (data
# in ./data). `make example` runs one file through the CLI instead.
run: build
	$(STRICTPY) serve

example: build
	$(STRICTPY) run examples/hello.py

# The store's tests and the server's store-backed tests also run against a
# private PostgreSQL server that the tests start themselves
# (crates/testpg); this only makes sure Debian's package is there. The
# package's own default cluster is not wanted: the tests make their own.
PG_INSTALL := mkdir -p /etc/postgresql-common && \
	{ [ -e /etc/postgresql-common/createcluster.conf ] || \
	  echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf; } && \
	{ DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold postgresql || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold postgresql; }; }

postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ $(PG_INSTALL); } || \
		echo "warning: cannot install postgresql; the PostgreSQL half of the tests is skipped (outside CI)"

test: build postgres
	$(CARGO) test --release --workspace $(CARGO_FLAGS)
	$(MAKE) client-test
	$(MAKE) contract-test
	$(MAKE) web-test

# The Python client (clients/python): a virtualenv under target/ (made once),
# the package installed editable with its dev tools (again only when
# pyproject.toml changes), `mypy --strict`, then pytest against a real
# `strictpy serve` started from the release build.
PY_VENV := target/py-venv
PYTHON  ?= python3

$(PY_VENV)/bin/python:
	$(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/python -m pip install --quiet --upgrade pip

$(PY_VENV)/.installed: clients/python/pyproject.toml | $(PY_VENV)/bin/python
	$(PY_VENV)/bin/python -m pip install --quiet -e 'clients/python[dev]'
	touch $@

client-test: $(PY_VENV)/.installed
	cd clients/python && $(abspath $(PY_VENV))/bin/mypy --strict
	cd clients/python && STRICTPY_BIN=$(abspath $(STRICTPY)) $(abspath $(PY_VENV))/bin/pytest

# The OpenAPI contract: schemathesis 4 (its own virtualenv under target/)
# with every check and phase against a real `strictpy serve`
# (tests/schemathesis; narrow exceptions in schemathesis.toml).
ST_VENV := target/schemathesis-venv

$(ST_VENV)/.installed:
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ST_VENV)/bin/python -m pip install --quiet 'schemathesis==4.32.5' 'pytest>=8'
	touch $@

contract-test: $(ST_VENV)/.installed
	STRICTPY_BIN=$(abspath $(STRICTPY)) $(ST_VENV)/bin/pytest -s tests/schemathesis
# The browser tests (tests/browser): Playwright from PyPI in its own
# virtualenv under target/, driving Debian's chromium (installed here when
# missing; Playwright's own browser download is not used) against a real
# `strictpy serve` from the release build.
WEB_VENV := target/web-venv
CHROMIUM ?= /usr/bin/chromium

$(WEB_VENV)/.installed: tests/browser/requirements.txt
	$(PYTHON) -m venv $(WEB_VENV)
	$(WEB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WEB_VENV)/bin/python -m pip install --quiet -r tests/browser/requirements.txt
	touch $@

$(CHROMIUM):
	apt-get update && apt-get install -y chromium

web-test: $(WEB_VENV)/.installed | $(CHROMIUM)
	cd tests/browser && CHROMIUM=$(CHROMIUM) STRICTPY_BIN=$(abspath $(STRICTPY)) $(abspath $(WEB_VENV))/bin/pytest

# Retakes docs/playground-timeout.png (the README's picture) with the browser tests.
ui-screenshot: build $(WEB_VENV)/.installed | $(CHROMIUM)
	cd tests/browser && CHROMIUM=$(CHROMIUM) STRICTPY_BIN=$(abspath $(STRICTPY)) \
		STRICTPY_UI_SCREENSHOT=$(abspath docs/playground-timeout.png) \
		$(abspath $(WEB_VENV))/bin/pytest -k timeout

lint: toolchain
	$(CARGO) fmt --all --check
	cd guest && $(CARGO) fmt --check
	$(CARGO) clippy --release --workspace --all-targets $(CARGO_FLAGS) -- -D warnings
	cd guest && $(CARGO) clippy --release $(CARGO_FLAGS) -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd guest && $(CARGO) fmt

# The benchmark harness: latency, throughput, fuel calibration, RSS, the CPU
# micro-suite against CPython; docs/benchmarks.md explains each row.
bench: build
	$(STRICTPY) bench

# 10,000 jobs (a tenth hostile) at concurrency 64 against a real `strictpy
# serve` it starts itself; exits non-zero on any lost job or 5xx. Pass more
# flags in SOAK_ARGS, e.g. `make soak SOAK_ARGS="--kill 5"` to SIGKILL and
# restart the server five times. A short run is part of `make test`.
soak: build
	$(STRICTPY) soak $(SOAK_ARGS)

# The fidelity corpus under native RustPython 0.6.0, the sandbox's
# interpreter outside wasm, against CPython (not part of `make test`: the
# native build takes a quarter of an hour, once). docs/compatibility.md has
# the figures.
NATIVE_RUSTPYTHON := target/native-rustpython/bin/rustpython
$(NATIVE_RUSTPYTHON):
	nice -n 10 $(CARGO) install rustpython --version 0.6.0 $(CARGO_FLAGS) --no-default-features \
		--features stdlib,freeze-stdlib,stdio,importlib,host_env,threading --root target/native-rustpython

corpus-native: $(NATIVE_RUSTPYTHON)
	python3 tests/corpus/native.py $(NATIVE_RUSTPYTHON)

# Three `strictpy serve` nodes on one throwaway local PostgreSQL (installed
# if missing), on loopback ports; prints their addresses and the admin
# token. Ctrl-C stops everything. NODES=5 or WORKERS=2 change the shape.
cluster: build postgres
	bash scripts/cluster.sh

# A short fuzzing smoke run of the analyzer (not part of `make test`).
fuzz:
	bash fuzz/smoke.sh

clean:
	$(CARGO) clean
	rm -rf web/dist
	cd guest && $(CARGO) clean
