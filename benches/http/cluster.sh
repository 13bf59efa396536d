#!/usr/bin/env bash
# benches/http/cluster.sh: the scale-out figures of docs/benchmarks.md.
# Starts a throwaway PostgreSQL (Debian's package; as the postgres user when
# root) and N `strictpy serve` nodes on it, then drives them with
# `strictpy load` (wait: true hello jobs, round-robin over the nodes).
#
#   benches/http/cluster.sh NODES [sqlite|postgres]
#
# Environment: STRICTPY_BIN (target/release/strictpy), STRICTPY_GUEST,
# WORKERS per node (2), CONCURRENCY (8), DURATION seconds (10), KILL=1 to
# instead SIGKILL one node under load and time how long until its running
# jobs are resolved (LEASE_SECS, default 30).
set -euo pipefail
nodes=${1:-1}
store=${2:-postgres}
bin=${STRICTPY_BIN:-target/release/strictpy}
workers=${WORKERS:-2}
concurrency=${CONCURRENCY:-8}
duration=${DURATION:-10}
lease=${LEASE_SECS:-30}
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
pg_ctl_cmd=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ ${#pg_ctl_cmd[@]} -gt 0 ]; then "${pg_ctl_cmd[@]}" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

url=""
# shellcheck source=benches/http/pg.sh
. "$(dirname "$0")/pg.sh"
if [ "$store" = postgres ]; then start_pg "$tmp"; fi

start_node() {
  local n=$1 dir="$tmp/node$1"
  mkdir "$dir"
  local env=(STRICTPY_CLUSTER__LEASE_SECS="$lease" STRICTPY_QUEUE_SIZE=100000)
  if [ -n "$url" ]; then env+=(STRICTPY_STORE_URL="$url"); fi
  if [ "$n" -gt 1 ]; then env+=(STRICTPY_ENCRYPTION__KEY_FILE="$tmp/node1/encryption-keys"); fi
  env "${env[@]}" "$bin" serve --listen 127.0.0.1:0 --workers "$workers" --data-dir "$dir" \
    >"$dir/stdout" 2>"$dir/log" &
  pids+=($!)
  for _ in $(seq 1 600); do
    if grep -q "listening on" "$dir/stdout" 2>/dev/null; then break; fi
    sleep 0.1
  done
  urls+=(--url "$(sed -n 's/^strictpy: listening on //p' "$dir/stdout")")
}

# Not in a subshell: `pids` and `urls` must survive for the cleanup.
urls=()
for n in $(seq 1 "$nodes"); do start_node "$n"; done
token_env=()
if [ -n "$url" ]; then token_env=(STRICTPY_STORE_URL="$url"); fi
env "${token_env[@]}" "$bin" token --data-dir "$tmp/node1" create --tenant bench \
  --scope jobs:write --requests-per-minute 100000000 --burst 1000000 \
  --concurrent-jobs 100000 >"$tmp/token"

if [ "${KILL:-0}" = 1 ]; then
  # Fill every worker with slow jobs, SIGKILL the last node, and time until
  # the database shows none of its jobs running.
  export STRICTPY_TOKEN=$(cat "$tmp/token")
  base=${urls[1]}
  for _ in $(seq 1 $((nodes * workers * 2))); do
    curl -s -o /dev/null -X POST "$base/v1/jobs" -H "authorization: Bearer $STRICTPY_TOKEN" \
      -H 'content-type: application/json' \
      -d '{"code": "while True:\n    pass", "limits": {"timeout_ms": 60000}}'
  done
  sleep 2
  victim=$(cat "$tmp/node$nodes/node-id")
  q() { "$pgbin/psql" "$url" -Atc "$1"; }
  echo "running on $victim before the kill: $(q "SELECT COUNT(*) FROM jobs WHERE status='running' AND lease_owner='$victim'")"
  kill -9 "${pids[$((nodes - 1))]}"
  t0=$(date +%s.%N)
  while [ "$(q "SELECT COUNT(*) FROM jobs WHERE status='running' AND lease_owner='$victim'")" != 0 ]; do
    sleep 0.05
  done
  t1=$(date +%s.%N)
  echo "kill -9 to resolved: $(echo "$t1 - $t0" | bc) s (lease ${lease} s)"
  exit 0
fi

"$bin" load "${urls[@]}" --token-file "$tmp/token" --concurrency "$concurrency" --seconds "$duration"
