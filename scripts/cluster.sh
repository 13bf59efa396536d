#!/usr/bin/env bash
# `make cluster`: a throwaway local PostgreSQL and three `strictpy serve`
# nodes on loopback ports, all on one database, with the same encryption
# key. Prints how to reach them and the admin token; Ctrl-C stops
# everything and removes the temporary directory.
#
#   scripts/cluster.sh              start, print, wait for Ctrl-C
#   scripts/cluster.sh CMD [ARG...] start, run CMD, stop; exits with CMD's status
#
# CMD (benches/http/cluster.sh is one) finds the cluster in its environment:
# CLUSTER_URLS (the nodes' base URLs, space-separated, in start order),
# CLUSTER_PIDS (their process ids, likewise), CLUSTER_DIR (node N's data
# dir is $CLUSTER_DIR/nodeN/data, its stderr $CLUSTER_DIR/nodeN/log),
# PG_BINDIR (psql is there), and, as the token CLI wants them,
# STRICTPY_STORE_URL, PGPASSWORD and STRICTPY_ENCRYPTION_KEY.
#
# PostgreSQL refuses to run as root, so as root initdb and pg_ctl run as the
# `postgres` user (runuser), with the data and the socket in a temp dir that
# user owns. Settings: NODES (3), WORKERS (per node, 1), STRICTPY (the
# binary, target/release/strictpy), STORE (postgres; sqlite gives each node
# its own SQLite store and starts no PostgreSQL), STOP (TERM, a graceful
# drain; KILL for kill -9), KEEP=1 to keep the temp dir. The nodes inherit
# the environment, so STRICTPY_* settings set before apply to every node.
set -euo pipefail

NODES=${NODES:-3}
WORKERS=${WORKERS:-1}
STORE=${STORE:-postgres}
STOP=${STOP:-TERM}
STRICTPY=${STRICTPY:-target/release/strictpy}
STRICTPY=$(realpath "$STRICTPY")
case "$STORE" in
postgres | sqlite) ;;
*)
    echo "STORE must be postgres or sqlite, not $STORE" >&2
    exit 64
    ;;
esac

bindir=${STRICTPY_PG_BINDIR:-}
if [ -z "$bindir" ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    bindir=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

run_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

dir=$(mktemp -d /tmp/strictpy-cluster.XXXXXX)
chmod 755 "$dir"
pids=()
store_url=

cleanup() {
    trap - INT TERM EXIT
    echo >&2
    echo "stopping the nodes${store_url:+ and PostgreSQL}..." >&2
    for pid in "${pids[@]}"; do
        kill -"$STOP" "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -d "$dir/pg/data" ]; then
        run_pg "$bindir/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup INT TERM EXIT

if [ "$STORE" = postgres ]; then
    if [ ! -x "$bindir/initdb" ]; then
        echo "no PostgreSQL found (make postgres installs it; or set STRICTPY_PG_BINDIR)" >&2
        exit 1
    fi
    mkdir "$dir/pg"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir/pg"
    fi
    password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    printf '%s' "$password" >"$dir/pg/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/pg/pwfile"
    run_pg "$bindir/initdb" -D "$dir/pg/data" -U strictpy --pwfile="$dir/pg/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
        --no-sync --no-instructions >"$dir/initdb.log"
    rm -f "$dir/pg/pwfile"
    pgport=$(free_port)
    run_pg "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w -t 60 \
        -o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    PGPASSWORD=$password "$bindir/createdb" -h 127.0.0.1 -p "$pgport" -U strictpy strictpy
    store_url="postgres://strictpy@127.0.0.1:$pgport/strictpy"
fi

# One key ring for every node (and the token CLI).
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
{
    if [ "$STORE" = postgres ]; then
        echo "export STRICTPY_STORE_URL=$store_url"
        echo "export PGPASSWORD=$password"
    else
        # Each node's SQLite store is in its data dir, whatever the caller's
        # environment says.
        echo "unset STRICTPY_STORE_URL"
    fi
    echo "export STRICTPY_ENCRYPTION_KEY=cluster:$key"
} >"$dir/env"
chmod 600 "$dir/env"
# shellcheck disable=SC1091
. "$dir/env"

bases=()
for n in $(seq 1 "$NODES"); do
    mkdir -p "$dir/node$n"
    fifo="$dir/node$n/stdout"
    mkfifo "$fifo"
    "$STRICTPY" serve --listen 127.0.0.1:0 --workers "$WORKERS" \
        --data-dir "$dir/node$n/data" >"$fifo" 2>"$dir/node$n/log" &
    pids+=("$!")
    # The first line names the port of --listen 127.0.0.1:0.
    exec {fd}<"$fifo"
    if ! read -r -t 120 line <&"$fd"; then
        echo "node $n did not start; its log:" >&2
        cat "$dir/node$n/log" >&2
        exit 1
    fi
    # Keep draining the node's stdout so it never blocks on a full pipe.
    cat <&"$fd" >/dev/null &
    exec {fd}<&-
    bases+=("${line#strictpy: listening on }")
done

if [ $# -gt 0 ]; then
    echo "strictpy cluster: $NODES nodes ($STORE): ${bases[*]}" >&2
    status=0
    CLUSTER_DIR=$dir CLUSTER_URLS="${bases[*]}" CLUSTER_PIDS="${pids[*]}" PG_BINDIR=$bindir \
        "$@" || status=$?
    exit "$status"
fi

token=$(cat "$dir"/node*/data/admin-token 2>/dev/null | head -n1)
echo
if [ "$STORE" = postgres ]; then
    echo "strictpy cluster: $NODES nodes on one PostgreSQL ($store_url)"
else
    echo "strictpy cluster: $NODES nodes, each on its own SQLite store"
fi
for n in $(seq 1 "$NODES"); do
    echo "  node $n: ${bases[$((n - 1))]}   (log: $dir/node$n/log)"
done
echo
echo "admin token: $token"
echo
echo "try:"
echo "  curl -s -H 'Authorization: Bearer $token' -H 'Content-Type: application/json' \\"
echo "       -d '{\"code\": \"print(6 * 7)\", \"wait\": true}' ${bases[0]}/v1/jobs"
echo "the token CLI on the same store:"
echo "  . $dir/env && $STRICTPY token list"
echo
echo "Ctrl-C stops everything."
wait "${pids[@]}"
