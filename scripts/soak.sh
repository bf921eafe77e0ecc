#!/usr/bin/env bash
# Load and soak runs against a local `conversion-miner serve --dev`, driven by
# `conversion-miner probe` (issue 5, item 4). Results go to stdout; the
# figures recorded in docs/SOAK.md came from this script.
#
#   scripts/soak.sh steady   # (a) steady rate for SOAK_DURATION s: 0 lost or wrong answers
#   scripts/soak.sh flood    # (b) FLOOD_N requests, fresh uuids: server RSS before/after
#   scripts/soak.sh burst    # (c) concurrency far above --max-inflight: 503s, not timeouts
#   scripts/soak.sh all      # a, b, c in turn
#
# Environment (defaults in brackets):
#   CM_BIN          binary [target/release/conversion-miner, built if absent]
#   SOAK_DURATION   seconds for (a) [600]
#   SOAK_RATE       requests/s for (a) [2000]
#   SOAK_CONC       probe concurrency for (a) and (b) [16]
#   FLOOD_N         requests for (b) [1000000]
#   FLOOD_UUID_EVERY  new dendrite uuid every K requests per slot, for (b) [1]
#   BURST_CAP       serve --max-inflight for (c) [8]
#   BURST_CONC      probe concurrency for (c) [256]
#   BURST_N         requests for (c) [20000]
#   SOAK_PORT       port [18091]
# The probe exits non-zero on any error, which is the expected outcome of (c);
# (a) and (b) fail the script if any request failed.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${CM_BIN:-${CARGO_TARGET_DIR:-target}/release/conversion-miner}
if [[ ! -x $BIN ]]; then
    cargo build --release --bin conversion-miner
fi
PORT=${SOAK_PORT:-18091}
TARGET=127.0.0.1:$PORT
# The operator listener (/metrics); the axon port answers /metrics with 404.
METRICS=127.0.0.1:$((PORT + 1))
SERVER_PID=

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
health_field() { curl -s "http://$TARGET/health" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

start_server() {
    "$BIN" serve --dev --axon.port "$PORT" --metrics.addr "$METRICS" --log-level warn "$@" >/tmp/cm-soak-serve.log 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://$TARGET/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "server did not start:"; cat /tmp/cm-soak-serve.log; exit 1
}

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

steady() {
    local dur=${SOAK_DURATION:-600} rate=${SOAK_RATE:-2000} conc=${SOAK_CONC:-16}
    echo "== (a) steady: $rate req/s for $dur s, concurrency $conc"
    start_server
    echo "server RSS before: $(rss_kb "$SERVER_PID") kB"
    "$BIN" probe --dev --target "$TARGET" --duration "$dur" --rate "$rate" \
        --concurrency "$conc" --seed 1 --conversations 20000 --json
    echo "server RSS after: $(rss_kb "$SERVER_PID") kB"
    echo "cm_success_total $(metric cm_success_total)  cm_rejections_total $(metric cm_rejections_total)"
    stop_server
}

flood() {
    local n=${FLOOD_N:-1000000} conc=${SOAK_CONC:-16} every=${FLOOD_UUID_EVERY:-1}
    echo "== (b) flood: $n requests, new uuid every $every per slot, concurrency $conc"
    start_server
    # Warm up so the 'before' figure includes the allocator's steady working set.
    "$BIN" probe --dev --target "$TARGET" --n 2000 --concurrency "$conc" --uuid-every "$every" >/dev/null
    echo "server RSS before: $(rss_kb "$SERVER_PID") kB  nonce_keys $(health_field nonce_keys)"
    local half=$((n / 2))
    "$BIN" probe --dev --target "$TARGET" --n "$half" --concurrency "$conc" \
        --uuid-every "$every" --conversations 20000 --json
    echo "server RSS at half: $(rss_kb "$SERVER_PID") kB  nonce_keys $(health_field nonce_keys)"
    "$BIN" probe --dev --target "$TARGET" --n "$((n - half))" --concurrency "$conc" \
        --uuid-every "$every" --conversations 20000 --json
    echo "server RSS after: $(rss_kb "$SERVER_PID") kB  nonce_keys $(health_field nonce_keys)"
    stop_server
}

burst() {
    local cap=${BURST_CAP:-8} conc=${BURST_CONC:-256} n=${BURST_N:-20000}
    echo "== (c) burst: concurrency $conc against --max-inflight $cap, $n requests"
    start_server --max-inflight "$cap"
    "$BIN" probe --dev --target "$TARGET" --n "$n" --concurrency "$conc" \
        --conversations 20000 --timeout 12 --json || true
    echo "cm_rejections_total{reason=\"overloaded\"} $(metric 'cm_rejections_total{reason="overloaded"')"
    echo "cm_success_total $(metric cm_success_total)"
    stop_server
}

case ${1:-all} in
    steady) steady ;;
    flood) flood ;;
    burst) burst ;;
    all) steady; flood; burst ;;
    *) echo "usage: $0 steady|flood|burst|all"; exit 2 ;;
esac
