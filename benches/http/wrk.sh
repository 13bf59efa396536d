#!/usr/bin/env bash
# benches/http/wrk.sh: the "HTTP: a `wait: true` hello job through the
# service" figures of docs/benchmarks.md. Starts one `strictpy serve` with
# the default worker count on a temporary data dir (SQLite) or a throwaway
# PostgreSQL, makes a token wrk cannot rate-limit, and runs
# benches/http/hello.lua with wrk at 1 and 4 connections.
#
#   benches/http/wrk.sh [sqlite|postgres]
#
# Environment: STRICTPY_BIN (target/release/strictpy), STRICTPY_GUEST,
# DURATION seconds per wrk run (10), PERF=FILE to `perf record -g` the
# server during the 1-connection run into FILE, STAT=1 to count its context
# switches then (`perf stat`; divide by wrk's request count).
set -euo pipefail
store=${1:-sqlite}
bin=${STRICTPY_BIN:-target/release/strictpy}
duration=${DURATION:-10}
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
pg_ctl_cmd=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ ${#pg_ctl_cmd[@]} -gt 0 ]; then "${pg_ctl_cmd[@]}" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

env_store=()
# shellcheck source=benches/http/pg.sh
. "$(dirname "$0")/pg.sh"
if [ "$store" = postgres ]; then
  start_pg "$tmp"
  env_store=(STRICTPY_STORE_URL="$url")
fi

mkdir "$tmp/data"
env "${env_store[@]}" "$bin" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" \
  >"$tmp/stdout" 2>"$tmp/log" &
pids+=($!)
server=$!
for _ in $(seq 1 3000); do
  if grep -q "listening on" "$tmp/stdout" 2>/dev/null; then break; fi
  sleep 0.1
done
if ! grep -q "listening on" "$tmp/stdout"; then cat "$tmp/log" >&2; exit 1; fi
base=$(sed -n 's/^strictpy: listening on //p' "$tmp/stdout")
STRICTPY_TOKEN=$(env "${env_store[@]}" "$bin" token --data-dir "$tmp/data" create \
  --tenant bench --scope jobs:write --requests-per-minute 100000000 --burst 1000000 \
  --concurrent-jobs 100000)
export STRICTPY_TOKEN
script=$(dirname "$0")/hello.lua
# Warm-up: the pool slots, the token, the connections.
wrk -t1 -c4 -d2s -s "$script" "$base" >/dev/null
echo "== $store, 1 connection"
if [ -n "${PERF:-}" ]; then
  perf record -g -o "$PERF" -p "$server" -- sleep "$duration" >/dev/null 2>&1 &
  perf_pid=$!
elif [ -n "${STAT:-}" ]; then
  perf stat -e context-switches,cpu-migrations -p "$server" -- sleep "$duration" &
  perf_pid=$!
fi
wrk -t1 -c1 -d"${duration}s" --latency -s "$script" "$base"
if [ -n "${PERF:-}${STAT:-}" ]; then wait "$perf_pid" || true; fi
echo "== $store, 4 connections"
wrk -t2 -c4 -d"${duration}s" --latency -s "$script" "$base"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
