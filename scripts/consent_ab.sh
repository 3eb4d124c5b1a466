#!/usr/bin/env bash
# What consent enforcement costs over HTTP (issue 4): the six searches of BENCHMARKS.md at 32 clients,
# 10 s each, with tokens, access checks and the read audit (--auth smart), by two builds on one
# database, in alternating order, ROUNDS times: WITH (the build as it is) and WITHOUT (the same
# source with the privacy policy off at the decision point: `DecisionPoint::enforcing(store.clone())`
# made `.without_privacy()` in crates/server/src/serve.rs, built to another path).
#
#   DIR=bench-out/access WITH=target/release/nutmeg WITHOUT=/tmp/nutmeg-noprivacy \
#     BENCH=target/release/nutmeg-bench scripts/consent_ab.sh
#
# DIR is a database `scripts/bench.sh access N` loaded (its client, key and sampled values); record
# opt-outs for a fifth of the sampled patients first with scripts/opt_out_sampled.py. The searches
# are made by the client in CLIENT (a directory with `client-id` and `key/`; default DIR, the
# loading participant's); another participant's client that attested its relationships
# (scripts/label_sampled.py attest) is not the source of the data, so sensitive labels
# (scripts/label_sampled.py label) withhold from it.
set -euo pipefail
: "${DIR:?}" "${WITH:?}" "${WITHOUT:?}" "${BENCH:?}"
ROUNDS="${ROUNDS:-2}"
CLIENT="${CLIENT:-$DIR}"
for round in $(seq 1 "$ROUNDS"); do
  order="WITH WITHOUT"
  [ $((round % 2)) = 0 ] && order="WITHOUT WITH"
  for which in $order; do
    bin="${!which}"
    "$bin" serve --http 127.0.0.1:18091 --database "sqlite://$DIR/nutmeg.db" --data-dir "$DIR" \
      --log warn --auth smart > "$DIR/consent-ab-$which.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:18091/healthz && break; sleep 0.2; done
    sleep 3
    export NUTMEG_BENCH_TOKEN_COMMAND="$bin client token --client-id=$(cat "$CLIENT/client-id") \
      --key $CLIENT/key/private-key.pem --token-url http://127.0.0.1:18091/auth/token --scope 'system/*.cruds'"
    echo "## round $round: ${which,,} the privacy policy"
    # One query at a time, with the server's CPU time per request (steadier than throughput).
    for q in 1 2 3 4 5 6; do
      before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
      out=$("$BENCH" search --base http://127.0.0.1:18091/fhir --clients 32 --duration 10s \
        --values "$DIR/values.json" --only "$q")
      echo "$out"
      echo "$out" | awk -v ticks="$(( $(awk '{ print $14 + $15 }' "/proc/$pid/stat") - before ))" \
        -v hz="$(getconf CLK_TCK)" -F'|' \
        '/^\| [A-Z]/ { n += $4 } END { if (n > 0) printf "server CPU: %.3f ms per request (%d requests)\n", ticks * 1000 / hz / n, n }'
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
