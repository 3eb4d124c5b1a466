#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, reproducible with one command each (release builds; run on a quiet machine).
#
#   scripts/bench.sh import            Synthea (45,720 resources) as transaction bundles over HTTP, 4 clients:
#                                      nutmeg on SQLite, nutmeg on PostgreSQL and Helios HFS, one after the other
#                                      (SKIP_HFS=1: nutmeg only)
#   scripts/bench.sh search [N]        N resources (default 1000000) from the generator into nutmeg on SQLite,
#                                      then the six searches at 1 and 32 clients, peak memory and database size
#                                      (REUSE=1: search the database a previous run loaded)
#   scripts/bench.sh access [N]        the same searches on N resources loaded by a registered client, with tokens,
#                                      access checks and the read audit, then without them (REUSE=1 as above)
#   scripts/bench.sh search-hfs [N]    the same searches against HFS with N resources (default 45000-ish: the
#                                      generator's first patients), beside nutmeg with the same data
#
# Environment: BENCH_DIR (default ./bench-out), BENCH_POSTGRES (a server URL whose user may create databases;
# default postgres://postgres@127.0.0.1:5432), CLIENTS (import clients, default 4), DURATION (per search, default 20s),
# SETTLE (seconds between a load and its searches, default 15); for `access` also ONLY (queries, e.g. 3) and
# ACCESS_CLIENTS (concurrencies, default 1,32); NUTMEG_BIN and BENCH_BIN (both: use these binaries, build nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-$PWD/bench-out}"
BENCH_POSTGRES="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-20s}"
SYNTHEA="${SYNTHEA:-../shared/data/synthea}"
mkdir -p "$BENCH_DIR"

# NUTMEG_BIN and BENCH_BIN run given binaries instead of building (an A/B of two builds on one database).
if [ -z "${NUTMEG_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release --bin nutmeg --bin nutmeg-bench -p server -p bench >&2
fi
NUTMEG="${NUTMEG_BIN:-target/release/nutmeg}"
BENCH="${BENCH_BIN:-target/release/nutmeg-bench}"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() { # URL
  for _ in $(seq 1 600); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "no answer from $1" >&2; return 1
}

cpu_ticks() { # PID: user + system CPU time so far, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

searched_with_cpu() { # PID COMMAND...: runs a search command, then prints the server's CPU time per request
  # (CPU time counts only what the server ran, so it is steadier than throughput on a shared machine)
  local pid=$1 before out; shift
  before=$(cpu_ticks "$pid")
  out=$("$@")
  echo "$out"
  echo "$out" | awk -v ticks="$(( $(cpu_ticks "$pid") - before ))" -v hz="$(getconf CLK_TCK)" -F'|' \
    '/^\| [A-Z]/ { n += $4 } END { if (n > 0) printf "server CPU: %.3f ms per request (%d requests)\n", ticks * 1000 / hz / n, n }'
}

peak_mb() { # PID: peak resident memory in MB
  awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

start_nutmeg() { # PORT DATABASE-URL LOG [AUTH]: AUTH is none (open access: no tokens, no access checks, no read audit) by default
  "$NUTMEG" serve --http "127.0.0.1:$1" --database "$2" --data-dir "$BENCH_DIR" --log warn --auth "${4:-none}" > "$3" 2>&1 &
  pids+=($!)
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$1/healthz"
}

start_hfs() { # PORT DIR LOG
  scripts/hfs.sh run "$1" "$2" > "$3" 2>&1 &
  pids+=($!)
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$1/metadata"
}

fresh_pg_database() { # NAME -> URL
  psql "$BENCH_POSTGRES/postgres" -q -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >&2
  echo "$BENCH_POSTGRES/$1"
}

stop() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }

case "${1:-}" in
  import)
    [ -n "${SKIP_HFS:-}" ] || scripts/hfs.sh install >&2
    rm -rf "$BENCH_DIR/import" && mkdir -p "$BENCH_DIR/import/hfs"
    echo "## nutmeg, SQLite"
    start_nutmeg 18080 "sqlite://$BENCH_DIR/import/nutmeg.db" "$BENCH_DIR/import/nutmeg-sqlite.log"
    "$BENCH" import --base http://127.0.0.1:18080/fhir --dir "$SYNTHEA" --clients "$CLIENTS"
    echo "peak memory: $(peak_mb "$SERVER_PID") MB; database: $(du -ch "$BENCH_DIR/import/nutmeg.db"* | tail -1 | cut -f1)"
    stop
    echo "## nutmeg, PostgreSQL"
    start_nutmeg 18081 "$(fresh_pg_database nutmeg_bench_import)" "$BENCH_DIR/import/nutmeg-pg.log"
    "$BENCH" import --base http://127.0.0.1:18081/fhir --dir "$SYNTHEA" --clients "$CLIENTS"
    echo "peak memory: $(peak_mb "$SERVER_PID") MB; database: $(psql "$BENCH_POSTGRES/postgres" -Atc "SELECT pg_size_pretty(pg_database_size('nutmeg_bench_import'))")"
    stop
    if [ -z "${SKIP_HFS:-}" ]; then
      echo "## Helios HFS, SQLite"
      start_hfs 18082 "$BENCH_DIR/import/hfs" "$BENCH_DIR/import/hfs.log"
      "$BENCH" import --base http://127.0.0.1:18082 --dir "$SYNTHEA" --clients "$CLIENTS"
      echo "peak memory: $(peak_mb "$SERVER_PID") MB; database: $(du -ch "$BENCH_DIR/import/hfs/"hfs.db* | tail -1 | cut -f1)"
      stop
    fi
    ;;
  search)
    resources="${2:-1000000}"
    if [ -n "${REUSE:-}" ] && [ -f "$BENCH_DIR/search/nutmeg.db" ]; then
      # REUSE=1: search the database (and values) a previous run loaded, e.g. after changing the server.
      start_nutmeg 18083 "sqlite://$BENCH_DIR/search/nutmeg.db" "$BENCH_DIR/search/nutmeg.log"
      echo "reusing $BENCH_DIR/search: database $(du -ch "$BENCH_DIR/search/nutmeg.db"* | tail -1 | cut -f1)"
    else
      rm -rf "$BENCH_DIR/search" && mkdir -p "$BENCH_DIR/search"
      start_nutmeg 18083 "sqlite://$BENCH_DIR/search/nutmeg.db" "$BENCH_DIR/search/nutmeg.log"
      /usr/bin/time -f "generator client: %e s, %M KB" \
        "$BENCH" generate --base http://127.0.0.1:18083/fhir --resources "$resources" --clients "$CLIENTS"
      echo "after load: peak memory $(peak_mb "$SERVER_PID") MB; database $(du -ch "$BENCH_DIR/search/nutmeg.db"* | tail -1 | cut -f1)"
      sleep "${SETTLE:-15}"
    fi
    "$BENCH" search --base http://127.0.0.1:18083/fhir --clients 1,32 --duration "$DURATION" \
      --values "$BENCH_DIR/search/values.json"
    echo "after searches: peak memory $(peak_mb "$SERVER_PID") MB"
    stop
    ;;
  access)
    # The searches of `search` on one database, with tokens, access checks and the read audit
    # (--auth smart), then without them (--auth none). The data is loaded by a registered client of a
    # live participant, so that its treatment relationships are the ones a sending hospital has.
    resources="${2:-1000000}"
    dir="$BENCH_DIR/access"
    db="sqlite://$dir/nutmeg.db"
    json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
    nutmeg_admin() { "$NUTMEG" --data-dir "$dir" --database "$db" --log warn admin "$@"; }
    if [ -n "${REUSE:-}" ] && [ -f "$dir/nutmeg.db" ] && [ -f "$dir/client-id" ]; then
      echo "reusing $dir: database $(du -ch "$dir/nutmeg.db"* | tail -1 | cut -f1)"
    else
      rm -rf "$dir" && mkdir -p "$dir"
      org=$(nutmeg_admin participant add --name "Bench General Hospital" --kind hospital --json | json_field id)
      nutmeg_admin participant set-status "$org" onboarding > /dev/null
      nutmeg_admin participant set-status "$org" live > /dev/null
      "$NUTMEG" client keygen --out "$dir/key" > /dev/null
      nutmeg_admin client add --participant "$org" --jwks "$dir/key/jwks.json" --scope "system/*.cruds" --json \
        | json_field clientId > "$dir/client-id"
    fi
    export NUTMEG_BENCH_TOKEN_COMMAND="$NUTMEG client token --client-id=$(cat "$dir/client-id") \
      --key $dir/key/private-key.pem --token-url http://127.0.0.1:18086/auth/token --scope 'system/*.cruds'"
    start_nutmeg 18086 "$db" "$dir/nutmeg-smart.log" smart
    if [ ! -f "$dir/values.json" ]; then
      /usr/bin/time -f "generator client: %e s, %M KB" \
        "$BENCH" generate --base http://127.0.0.1:18086/fhir --resources "$resources" --clients "$CLIENTS"
      sleep "${SETTLE:-15}"
    fi
    echo "## with tokens, access checks and the read audit (--auth smart)"
    searched_with_cpu "$SERVER_PID" "$BENCH" search --base http://127.0.0.1:18086/fhir \
      --clients "${ACCESS_CLIENTS:-1,32}" --duration "$DURATION" --values "$dir/values.json" ${ONLY:+--only "$ONLY"}
    echo "audit records: $(nutmeg_admin audit verify --json)"
    stop
    unset NUTMEG_BENCH_TOKEN_COMMAND
    echo "## without them (--auth none)"
    start_nutmeg 18087 "$db" "$dir/nutmeg-none.log" none
    searched_with_cpu "$SERVER_PID" "$BENCH" search --base http://127.0.0.1:18087/fhir \
      --clients "${ACCESS_CLIENTS:-1,32}" --duration "$DURATION" --values "$dir/values.json" ${ONLY:+--only "$ONLY"}
    stop
    ;;
  search-hfs)
    resources="${2:-45000}"
    scripts/hfs.sh install >&2
    rm -rf "$BENCH_DIR/search-hfs" && mkdir -p "$BENCH_DIR/search-hfs/hfs"
    for server in nutmeg hfs; do
      echo "## $server"
      if [ "$server" = nutmeg ]; then
        start_nutmeg 18084 "sqlite://$BENCH_DIR/search-hfs/nutmeg.db" "$BENCH_DIR/search-hfs/nutmeg.log"
        base=http://127.0.0.1:18084/fhir
      else
        start_hfs 18085 "$BENCH_DIR/search-hfs/hfs" "$BENCH_DIR/search-hfs/hfs.log"
        base=http://127.0.0.1:18085
      fi
      "$BENCH" generate --base "$base" --resources "$resources" --clients "$CLIENTS"
      # Let each server finish what the load left behind (a WAL checkpoint, dirty pages) before timing.
      sleep "${SETTLE:-15}"
      "$BENCH" search --base "$base" --clients 1,32 --duration "$DURATION" --values "$BENCH_DIR/search-hfs/values.json"
      echo "peak memory: $(peak_mb "$SERVER_PID") MB"
      stop
    done
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
