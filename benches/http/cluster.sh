#!/usr/bin/env bash
# benches/http/cluster.sh: the scale-out figures of docs/benchmarks.md.
# Starts N `strictpy serve` nodes on a throwaway PostgreSQL (or one SQLite
# store each) with scripts/cluster.sh, then drives them with
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
concurrency=${CONCURRENCY:-8}
duration=${DURATION:-10}
lease=${LEASE_SECS:-30}

if [ -z "${CLUSTER_URLS:-}" ]; then
  # Outside a cluster: start one (every node gets these settings) and run
  # this script again inside it. The nodes are SIGKILLed at the end, as a
  # bench leaves jobs spinning.
  STRICTPY_CLUSTER__LEASE_SECS=$lease STRICTPY_QUEUE_SIZE=100000 \
    NODES=$nodes WORKERS=${WORKERS:-2} STORE=$store STRICTPY=$bin STOP=KILL \
    exec bash "$(dirname "$0")/../../scripts/cluster.sh" bash "$0" "$@"
fi

read -r -a bases <<<"$CLUSTER_URLS"
read -r -a pids <<<"$CLUSTER_PIDS"
urls=()
for base in "${bases[@]}"; do urls+=(--url "$base"); done
token_file="$CLUSTER_DIR/token"
"$bin" token --data-dir "$CLUSTER_DIR/node1/data" create --tenant bench \
  --scope jobs:write --requests-per-minute 100000000 --burst 1000000 \
  --concurrent-jobs 100000 >"$token_file"

if [ "${KILL:-0}" = 1 ]; then
  # Fill every worker with slow jobs, SIGKILL the last node, and time until
  # the database shows none of its jobs running.
  token=$(cat "$token_file")
  base=${bases[1]}
  for _ in $(seq 1 $((nodes * ${WORKERS:-2} * 2))); do
    curl -s -o /dev/null -X POST "$base/v1/jobs" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' \
      -d '{"code": "while True:\n    pass", "limits": {"timeout_ms": 60000}}'
  done
  sleep 2
  victim=$(cat "$CLUSTER_DIR/node$nodes/data/node-id")
  q() { "$PG_BINDIR/psql" "$STRICTPY_STORE_URL" -Atc "$1"; }
  running="SELECT COUNT(*) FROM jobs WHERE status='running' AND lease_owner='$victim'"
  echo "running on $victim before the kill: $(q "$running")"
  kill -9 "${pids[$((nodes - 1))]}"
  t0=$(date +%s.%N)
  while [ "$(q "$running")" != 0 ]; do
    sleep 0.05
  done
  t1=$(date +%s.%N)
  echo "kill -9 to resolved: $(echo "$t1 - $t0" | bc) s (lease ${lease} s)"
  exit 0
fi

"$bin" load "${urls[@]}" --token-file "$token_file" --concurrency "$concurrency" --seconds "$duration"
