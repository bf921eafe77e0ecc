#!/usr/bin/env bash
# The server-side figures of issue 4, measured against a real local
# `conversion-miner serve --dev` on 127.0.0.1 with `conversion-miner probe`.
# The numbers in docs/PERF-SERVER.md came from this script.
#
#   scripts/perf-server.sh all         # every figure below, in this order
#   scripts/perf-server.sh flood       # (1) throughput, (2) server CPU per verified request,
#                                      # (4) resident memory after PERF_N requests
#   scripts/perf-server.sh steady      # (3) latency percentiles at a steady PERF_RATE req/s
#   scripts/perf-server.sh startup     # (5) exec of `serve` to the first verified answer
#   scripts/perf-server.sh forge       # (6) the flood of (1) with 1 request in N forged:
#                                      # honest throughput and server CPU per honest request
#
# How each figure is obtained:
#   (1) throughput: the probe's own count of answers that passed its checks
#       (status 200, every request field echoed, valid outputs) over its wall time;
#       any error fails the run.
#   (2) server CPU: utime+stime of the server process (/proc/PID/stat, all
#       threads, kernel time included) before and after the probe run, divided
#       by the increase of cm_success_total (/metrics) over the same run.
#   (3) p99: the probe's latency percentiles (send to answer checked) at a
#       steady total rate, after a short warm-up.
#   (4) RSS: VmRSS of /proc/PID/status once the flood of (1) is done
#       (PERF_N requests on a freshly started server).
#   (5) startup: a probe started beforehand retries connecting every 0.2 ms
#       (`--wait-ready`); the script takes a timestamp ($EPOCHREALTIME)
#       immediately before it starts `serve`, and the probe prints the wall
#       clock of its first verified answer (it first reads the throwaway dev
#       hotkey from /health, then sends one signed request). So the figure
#       covers process start, model selection, key setup, binding, the
#       /health round trip and the first verified request. PERF_STARTS runs.
#   (6) forged signatures: the flood of (1) and (2) on a fresh server per run,
#       with `probe --forge-every N` (request N, 2N, ... of the run carries
#       the probe's hotkey with one bit of the signature's scalar flipped,
#       so it parses and is refused only after the curve check). The probe
#       requires each forged request to be refused with 401 "Signature
#       mismatch" and every honest one to pass the checks of (1); the script
#       also requires the server's signature_mismatch count to equal the
#       probe's forged count. Server CPU as in (2), divided once by the
#       honest requests answered (cm_success_total) and once by all
#       requests; honest throughput is the probe's verified answers over its
#       wall time. Not part of `all`.
#
# Environment (defaults in brackets):
#   CM_BIN          binary [${CARGO_TARGET_DIR:-target}/release/conversion-miner, built if absent]
#   CM_PROBE_BIN    binary whose `probe` drives the load [CM_BIN]
#   PERF_N          requests for (1), (2), (4) [100000]
#   PERF_CONC       probe concurrency for (1) [16]
#   PERF_UUID_EVERY probe --uuid-every for (1): 0 = one dendrite uuid per slot, as
#                   validators do; 1 = a new uuid per request, the nonce map's worst case [0]
#   PERF_RATE       requests/s for (3) [2000]
#   PERF_DURATION   seconds for (3) [20]
#   PERF_STEADY_CONC  probe concurrency for (3) [16]
#   PERF_STARTS     runs of (5) [7]
#   PERF_FORGE_EVERY  the N values of (6), 0 = nothing forged ["0 100 10 2"]
#   PERF_FORGE_RUNS   rounds of (6) over all N values, alternating their order [3]
#   PERF_WORKERS    serve --workers [the server's default: one per core]
#   PERF_PROBE_WORKERS  probe --workers for (1) and (3) [the probe's default: one per core]
#   PERF_PORT       port [18191]
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${CM_BIN:-${CARGO_TARGET_DIR:-target}/release/conversion-miner}
if [[ ! -x $BIN ]]; then
    cargo build --release --bin conversion-miner
fi
PROBE=${CM_PROBE_BIN:-$BIN}
PORT=${PERF_PORT:-18191}
TARGET=127.0.0.1:$PORT
# The operator listener (/metrics); the axon port answers /metrics with 404.
METRICS=127.0.0.1:$((PORT + 1))
SERVER_PID=
LOG=$(mktemp /tmp/cm-perf-serve.XXXXXX)
WORKERS=()
if [[ -n ${PERF_WORKERS:-} ]]; then
    WORKERS=(--workers "$PERF_WORKERS")
fi
PROBE_WORKERS=()
if [[ -n ${PERF_PROBE_WORKERS:-} ]]; then
    PROBE_WORKERS=(--workers "$PERF_PROBE_WORKERS")
fi

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
json_field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

start_server() {
    "$BIN" serve --dev --axon.port "$PORT" --metrics.addr "$METRICS" --log-level warn "${WORKERS[@]}" "$@" >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        curl -sf "http://$TARGET/health" >/dev/null && return 0
        sleep 0.05
    done
    echo "server did not start:"; cat "$LOG"; exit 1
}

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() { stop_server; rm -f "$LOG"; }
trap cleanup EXIT

context() {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
    echo "load: $(uptime | sed 's/.*load average/load average/')"
}

flood() {
    local n=${PERF_N:-100000} conc=${PERF_CONC:-16} every=${PERF_UUID_EVERY:-0}
    echo "== (1) throughput, (2) server CPU per verified request, (4) RSS after $n requests (uuid every $every)"
    context
    start_server
    local rss0 ticks0 ok0 ticks1 ok1 hz out
    rss0=$(rss_kb "$SERVER_PID")
    ticks0=$(cpu_ticks "$SERVER_PID")
    ok0=$(metric cm_success_total)
    out=$("$PROBE" probe --dev --target "$TARGET" --n "$n" --concurrency "$conc" \
        --uuid-every "$every" --conversations 20000 "${PROBE_WORKERS[@]}" --json)
    ticks1=$(cpu_ticks "$SERVER_PID")
    ok1=$(metric cm_success_total)
    local batches sigs
    batches=$(metric cm_verify_batches_total)
    sigs=$(metric cm_verify_batched_signatures_total)
    echo "$out" | grep -v '^{'
    hz=$(getconf CLK_TCK)
    echo "(1) throughput: $(echo "$out" | tail -1 | json_field throughput_rps) verified req/s," \
        "errors $(echo "$out" | tail -1 | json_field errors) (probe --n $n --concurrency $conc)"
    awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v n=$((ok1 - ok0)) 'BEGIN {
        printf "(2) server CPU: %.2f s (utime+stime) for %d verified requests = %.1f us per request\n",
            t / hz, n, (n > 0 ? t / hz / n * 1e6 : 0) }'
    if [[ $batches -gt 0 ]]; then
        awk -v b="$batches" -v s="$sigs" 'BEGIN { printf "    signatures checked in %d batches, %.2f per batch (cm_verify_batch*)\n", b, s / b }'
    fi
    echo "(4) server VmRSS: $rss0 kB after start, $(rss_kb "$SERVER_PID") kB after $((ok1 - ok0)) verified requests," \
        "nonce_keys $(curl -s "http://$TARGET/health" | sed -n 's/.*"nonce_keys":\([0-9]*\).*/\1/p')"
    stop_server
    echo "$out" | tail -1 | grep -q '"errors":0,' || { echo "probe reported errors"; exit 1; }
}

steady() {
    local rate=${PERF_RATE:-2000} dur=${PERF_DURATION:-20} conc=${PERF_STEADY_CONC:-16}
    echo "== (3) latency at a steady $rate req/s for $dur s, concurrency $conc"
    context
    start_server
    # Warm-up: connections open, caches and allocator warm, as in service.
    "$PROBE" probe --dev --target "$TARGET" --n 2000 --concurrency "$conc" >/dev/null
    local out
    out=$("$PROBE" probe --dev --target "$TARGET" --duration "$dur" --rate "$rate" \
        --concurrency "$conc" --conversations 20000 "${PROBE_WORKERS[@]}" --json)
    echo "$out" | grep -v '^{'
    echo "(3) p99 $(echo "$out" | tail -1 | json_field p99_ms) ms at $(echo "$out" | tail -1 | json_field throughput_rps) req/s," \
        "errors $(echo "$out" | tail -1 | json_field errors)"
    stop_server
    echo "$out" | tail -1 | grep -q '"errors":0,' || { echo "probe reported errors"; exit 1; }
}

# Server CPU in microseconds per request: $1 clock ticks over $2 requests.
us_per() {
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? t / hz / n * 1e6 : 0) }'
}

forge() {
    local n=${PERF_N:-100000} conc=${PERF_CONC:-16} runs=${PERF_FORGE_RUNS:-3}
    local values=(${PERF_FORGE_EVERY:-0 100 10 2}) order round every i
    local mismatch='cm_rejections_total{reason="signature_mismatch"'
    echo "== (6) 1 request in N forged, probe --n $n --concurrency $conc, $runs rounds"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
    for round in $(seq "$runs"); do
        order=("${values[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#values[@]} - 1; i >= 0; i--)); do order+=("${values[i]}"); done
        fi
        for every in "${order[@]}"; do
            start_server
            local ticks0 ok0 bad0 ticks1 ok1 bad1 out j batches sigs alone
            ticks0=$(cpu_ticks "$SERVER_PID")
            ok0=$(metric cm_success_total)
            bad0=$(metric "$mismatch")
            out=$("$PROBE" probe --dev --target "$TARGET" --n "$n" --concurrency "$conc" \
                --forge-every "$every" --conversations 20000 "${PROBE_WORKERS[@]}" --json) || true
            ticks1=$(cpu_ticks "$SERVER_PID")
            ok1=$(metric cm_success_total)
            bad1=$(metric "$mismatch")
            batches=$(metric cm_verify_batches_total)
            sigs=$(metric cm_verify_batched_signatures_total)
            alone=$(metric cm_verify_unbatched_signatures_total)
            stop_server
            j=$(echo "$out" | tail -1)
            echo "round $round, N=$every: $(date -u '+%H:%M:%S UTC'), $(uptime | sed 's/.*load average/load average/')"
            echo "    honest verified $((ok1 - ok0)) at $(echo "$j" | json_field ok_rps | xargs printf '%.0f') req/s," \
                "forged refused $((bad1 - bad0)) (probe: $(echo "$j" | json_field forged_refused) of $(echo "$j" | json_field forged))," \
                "errors $(echo "$j" | json_field errors)"
            echo "    server CPU $(us_per $((ticks1 - ticks0)) $((ok1 - ok0))) us per honest request," \
                "$(us_per $((ticks1 - ticks0)) $((ok1 - ok0 + bad1 - bad0))) us per request;" \
                "$sigs signatures in $batches batches ($(awk -v b="$batches" -v s="$sigs" 'BEGIN { printf "%.2f", (b > 0 ? s / b : 0) }') per batch), $alone checked alone while batching was paused"
            echo "$j" | grep -q '"errors":0,' || { echo "$out"; echo "probe reported errors"; exit 1; }
            [[ $((bad1 - bad0)) -eq $(echo "$j" | json_field forged) ]] ||
                { echo "server refused $((bad1 - bad0)) signatures, probe forged $(echo "$j" | json_field forged)"; exit 1; }
        done
    done
}

startup() {
    local runs=${PERF_STARTS:-7} i out t0 first ms all=()
    echo "== (5) exec of serve to the first verified answer, $runs runs"
    context
    for i in $(seq "$runs"); do
        out=$(mktemp /tmp/cm-perf-probe.XXXXXX)
        "$PROBE" probe --dev --target "$TARGET" --n 1 --concurrency 1 --wait-ready 10 --json >"$out" 2>&1 &
        local probe_pid=$!
        # Let the probe finish its own start-up and begin polling.
        sleep 0.5
        t0=$EPOCHREALTIME
        "$BIN" serve --dev --axon.port "$PORT" --metrics.addr "$METRICS" --log-level warn "${WORKERS[@]}" >"$LOG" 2>&1 &
        SERVER_PID=$!
        wait "$probe_pid" || { cat "$out"; echo "startup probe failed"; exit 1; }
        first=$(tail -1 "$out" | json_field first_ok_unix_ns)
        rm -f "$out"
        ms=$(awk -v f="$first" -v t="${t0/./}" 'BEGIN { printf "%.2f", (f / 1000 - t) / 1000 }')
        echo "run $i: $ms ms"
        all+=("$ms")
        stop_server
    done
    printf '%s\n' "${all[@]}" | sort -g | awk '{v[NR] = $1} END {
        printf "(5) start to first verified answer: median %.2f ms, min %.2f, max %.2f over %d runs\n",
            (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR], NR }'
}

case ${1:-all} in
    flood) flood ;;
    steady) steady ;;
    startup) startup ;;
    forge) forge ;;
    all) flood; steady; startup ;;
    *) echo "usage: $0 flood|steady|startup|forge|all"; exit 2 ;;
esac
