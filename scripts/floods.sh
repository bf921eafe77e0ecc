#!/usr/bin/env bash
# The floods of issue 12 at full scale, each next to an honest validator
# stream (`probe`), against a release build; prints, per flood, the honest
# stream's verified answers per second, refusals and p99.
#
#   scripts/floods.sh NEW_BIN [OLD_BIN]
#
# NEW_BIN (and OLD_BIN, e.g. a build of commit b86c7c9, to compare) are
# `conversion-miner` binaries; the probe of NEW_BIN is the honest client for
# both. Each run starts `serve --dev` on a free port (127.0.0.1), starts the
# attacker (scripts/flood_attacker.py, from 127.0.0.2, so the server sees
# two hosts), waits 3 s for the flood to build (15 s for the slow readers,
# WARMUP_SLOWREAD, so that their connections are open first), then runs
#   probe --dev --duration $DURATION --rate $RATE --concurrency 8 --json
# Floods: none (baseline), slowread (4,200 connections pipelining 20,000
# GET /health each, never reading), forged (1,300 keep-alive connections of
# well-formed requests with signatures nobody made), metrics (64 keep-alive
# connections of GET /metrics), ratemap (defect 4; see below).
# ratemap: the server also gets --allow-all --rate-limit 0.005 --rate-burst
# 1000, so a caller's bucket, once touched, stays short of full (b86c7c9's
# "live") for 200 s, while the honest stream's 10/s for DURATION s spends
# well under its 1,000 tokens and is never over its own limit. The attacker
# is the probe itself with 65,536 hotkeys derived from a seed
# (`probe --hotkeys 65536`, which cycles them in order): first one request
# per hotkey (concurrency 32, time printed), which fills b86c7c9's 65,536-entry
# map with live buckets, then the same at full speed during the honest run.
# Both come from 127.0.0.1. The honest stream there runs at RATE_RATEMAP
# (default 10/s), not RATE.
# Environment: DURATION (s, default 20), RATE (honest requests/s, default
# 500), FLOODS (default "none slowread forged metrics ratemap"), PROBE (the
# binary whose probe is the honest client and the ratemap attacker, default
# NEW_BIN; run a build that has `probe --hotkeys`), ONLY (old or new: run
# one build only).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NEW="${1:?usage: floods.sh NEW_BIN [OLD_BIN]}"
OLD="${2:-}"
DURATION="${DURATION:-20}"
RATE="${RATE:-500}"
FLOODS="${FLOODS:-none slowread forged metrics ratemap}"
RATEMAP_KEYS=65536
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

conns() {
    case "$1" in slowread) echo 4200 ;; forged) echo 1300 ;; metrics) echo 64 ;; *) echo 0 ;; esac
}

run() { # bin label flood
    local bin="$1" label="$2" flood="$3" srv att port rate="$RATE" extra=()
    if [ "$flood" = ratemap ]; then
        extra=(--allow-all --rate-limit 0.005 --rate-burst 1000)
        rate="${RATE_RATEMAP:-10}"
    fi
    "$bin" serve --dev --axon.port 0 "${extra[@]}" >"$WORK/out" 2>"$WORK/err" &
    srv=$!
    for _ in $(seq 100); do
        port="$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/out")"
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "no listening line from $bin" >&2; kill "$srv"; return 1; }
    att=""
    echo '{}' >"$WORK/att"
    if [ "$flood" = ratemap ]; then
        local t0=$SECONDS
        "${PROBE:-$NEW}" probe --dev --target "127.0.0.1:$port" --hotkeys "$RATEMAP_KEYS" --seed 2 \
            --n "$RATEMAP_KEYS" --concurrency 32 --json 2>/dev/null | tail -n 1 >"$WORK/fill" || true
        echo "ratemap $label: one request from each of $RATEMAP_KEYS hotkeys took $((SECONDS - t0)) s: $(cat "$WORK/fill")" >&2
        "${PROBE:-$NEW}" probe --dev --target "127.0.0.1:$port" --hotkeys "$RATEMAP_KEYS" --seed 2 \
            --duration "$((DURATION + 5))" --concurrency 32 --json 2>/dev/null | tail -n 1 >"$WORK/att" &
        att=$!
        sleep 3
    elif [ "$flood" != none ]; then
        python3 "$ROOT/scripts/flood_attacker.py" "$flood" "$(conns "$flood")" \
            "127.0.0.1:$port" "$((DURATION + ${WARMUP_SLOWREAD:-15} + 5))" 127.0.0.2 >"$WORK/att" 2>/dev/null &
        att=$!
        # The slow readers need time to open their 4,200 connections.
        if [ "$flood" = slowread ]; then sleep "${WARMUP_SLOWREAD:-15}"; else sleep 3; fi
    fi
    "${PROBE:-$NEW}" probe --dev --target "127.0.0.1:$port" --duration "$DURATION" --rate "$rate" \
        --concurrency 8 --json 2>/dev/null | tail -n 1 >"$WORK/probe" || true
    local rss
    rss="$(awk '/VmRSS/ {print $2}' "/proc/$srv/status" 2>/dev/null || echo '?')"
    [ -n "$att" ] && wait "$att" 2>/dev/null || true
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    python3 - "$label" "$flood" "$WORK/probe" "$WORK/att" "$rss" <<'PY'
import json, sys
label, flood, pf, af, rss = sys.argv[1:]
try:
    p = json.loads(open(pf).read())
except Exception:
    p = {}
try:
    a = json.loads(open(af).read())
except Exception:
    a = {}
if 'ok_rps' in a:  # the ratemap attacker is a probe
    att = f"{a.get('requests', '-')} sent, {a.get('ok', '-')} served, refused {a.get('errors_by_kind', '')}"
else:
    att = f"{a.get('sent', '-')} sent, {a.get('connects', '-')} connects, {a.get('status', '')}"
print(f"| {flood} | {label} | {p.get('ok_rps', 0):.1f} | {p.get('errors', '?')} {p.get('errors_by_kind', '')} "
      f"| {p.get('p99_ms', float('nan')):.2f} | {rss} kB | {att} |")
PY
}

echo "# $(date -u +%FT%TZ); $(lscpu | sed -n 's/^Model name: *//p'); $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| flood | build | honest ok/s | honest refusals (by status) | honest p99 ms | server RSS at end | attacker |"
echo "|---|---|---|---|---|---|---|"
for f in $FLOODS; do
    if [ -n "$OLD" ] && [ "${ONLY:-}" != new ]; then run "$OLD" before "$f"; fi
    if [ "${ONLY:-}" != old ]; then run "$NEW" after "$f"; fi
done
