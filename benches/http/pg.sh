# benches/http/pg.sh: sourced by the HTTP bench scripts. `start_pg DIR`
# starts a throwaway PostgreSQL (Debian's package; as the postgres user when
# root) with its data and socket under DIR/pg, and sets `url` to it and
# `pg_ctl_cmd` to the pg_ctl that stops it.
start_pg() {
  local dir=$1 pgbin port
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local as_pg=()
  if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
  mkdir "$dir/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg/data" -U strictpy --auth=trust >/dev/null
  pg_ctl_cmd=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg/data")
  "${pg_ctl_cmd[@]}" -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" \
    -l "$dir/pg/log" -w start >/dev/null
  url="postgres://strictpy@127.0.0.1:$port/postgres"
}
