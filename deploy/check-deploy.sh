#!/usr/bin/env bash
# Runs what can be run here of deploy/: the systemd unit, the Prometheus
# scrape config and rules, the Grafana panel queries (grafana-panels.md) and
# the importable dashboard (grafana-dashboard.json), against a real
# `conversion-miner serve --dev` on 127.0.0.1 with probe traffic.
#
#   bash deploy/check-deploy.sh [BINARY]
#
# BINARY defaults to the static x86_64 build (scripts/build-static.sh). Needs
# systemd-analyze (package systemd), and promtool and prometheus (package
# prometheus on Debian). No systemd instance is needed: the unit is checked
# with `systemd-analyze verify` and `security --offline`, not started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

BIN=${1:-${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/conversion-miner}
BIN=$(realpath "$BIN")
[ -x "$BIN" ] || { echo "check-deploy: $BIN is not an executable; build it first" >&2; exit 1; }
PROBE_N=400

fail() { echo "check-deploy: FAIL: $*" >&2; exit 1; }
for tool in systemd-analyze promtool prometheus curl python3; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

WORK=$(mktemp -d /tmp/check-deploy.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== systemd unit"
# verify insists that ExecStart's binary exists; point it at the one we test.
sed "s#^ExecStart=/usr/local/bin/conversion-miner #ExecStart=$BIN #" \
    deploy/conversion-miner.service >"$WORK/conversion-miner.service"
systemd-analyze verify "$WORK/conversion-miner.service"
echo "systemd-analyze verify: ok"
systemd-analyze security --offline=true "$WORK/conversion-miner.service" | tail -1

echo "== promtool"
promtool check config deploy/prometheus.yml
promtool check rules deploy/conversion-miner.rules.yml

echo "== serve --dev and probe traffic"
# --dev still allows every caller; the (at first empty) validators file only
# gives the probe's hotkey a stake once it is known, for the stake panel.
echo "# the probe's hotkey is added below" >"$WORK/validators.txt"
"$BIN" serve --dev --axon.port 0 --metrics.addr 127.0.0.1:0 --validators "$WORK/validators.txt" --validators.poll 0.5 >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/serve.log" && break; sleep 0.1; done
PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/serve.log" | head -1)
[ -n "$PORT" ] || { cat "$WORK/serve.log" >&2; fail "serve printed no listening line"; }
MPORT=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/serve.log" | head -1)
[ -n "$MPORT" ] || { cat "$WORK/serve.log" >&2; fail "serve printed no metrics line"; }
echo "serve: 127.0.0.1:$PORT, metrics on 127.0.0.1:$MPORT"
# The public port must not serve /metrics.
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")" = 404 ] || fail "/metrics answered on the public port"
grep -qx "dashboard http://127.0.0.1:$MPORT/" "$WORK/serve.log" || fail "serve printed no 'dashboard http://127.0.0.1:$MPORT/' line"
curl -fsS -o /dev/null "http://127.0.0.1:$MPORT/" || fail "GET / (the dashboard) failed"
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.txt"
# The page must parse and pass promtool's naming rules (counters end in
# _total, units in names, HELP on every family): findings fail the check.
promtool check metrics <"$WORK/metrics.txt" >"$WORK/lint.txt" 2>&1 || {
    sed 's/^/  /' "$WORK/lint.txt" >&2
    fail "promtool check metrics found problems in /metrics"
}
echo "promtool check metrics: ok ($(grep -c '^cm_' "$WORK/metrics.txt") samples, $(grep -c '^# TYPE ' "$WORK/metrics.txt") families)"

echo "== prometheus scraping the miner"
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The shipped config, with the target moved to the test server and 1 s
# scrape and rule intervals so rates and rules have samples within seconds.
sed -e "s#127.0.0.1:9464#127.0.0.1:$MPORT#" -e 's#scrape_interval: 15s#scrape_interval: 1s#' -e 's#scrape_timeout: 5s#scrape_timeout: 1s#' -e 's#evaluation_interval: 15s#evaluation_interval: 1s#' \
    -e "s#- conversion-miner.rules.yml#- $ROOT/deploy/conversion-miner.rules.yml#" \
    deploy/prometheus.yml >"$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null || { tail "$WORK/prometheus.log" >&2; fail "prometheus not ready"; }

# Wait for the first successful scrape, so the traffic falls inside the series.
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/targets" | grep -q '"health":"up"' && break
    sleep 0.2
done

# Traffic over a few scrapes: signed predictions, pings of /health, and
# unsigned requests (401 refusals) so the refusal panels have data.
"$BIN" probe --dev --target "127.0.0.1:$PORT" --n "$PROBE_N" --rate 100 | sed -n 's/^ *\(ok .*\)$/probe: \1/p'
# Two of them, more than a scrape apart: the per-validator refusal series
# is born at its first refusal, so rate() needs a second one to see growth.
for _ in 1 2; do
    curl -s -o /dev/null -w 'unsigned POST /ConversionSynapse: %{http_code}\n' -X POST \
        -H 'content-type: application/json' --data '{}' "http://127.0.0.1:$PORT/ConversionSynapse"
    sleep 1.5
done
# The probe's hotkey, as the miner's per-validator table saw it, onto the
# validators file with a stake; wait until /status reports that stake.
PROBE_HOTKEY=$(curl -fsS "http://127.0.0.1:$MPORT/status" | python3 -c 'import json, sys; print(next(v["hotkey"] for v in json.load(sys.stdin)["validators"] if v["hotkey"] != "other"))')
echo "$PROBE_HOTKEY,1234" >"$WORK/validators.txt"
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$MPORT/status" | grep -q '"stake":1234' && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$MPORT/status" | grep -q '"stake":1234' || fail "/status shows no stake for the probe's hotkey $PROBE_HOTKEY"
echo "probe hotkey $PROBE_HOTKEY: stake 1234 in /status"
# Again with traffic: per-validator rows, refusals and stakes are on the page now.
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt" >"$WORK/lint.txt" 2>&1 || {
    sed 's/^/  /' "$WORK/lint.txt" >&2
    fail "promtool check metrics found problems in /metrics after traffic"
}
echo "promtool check metrics after traffic: ok ($(grep -c '^cm_' "$WORK/metrics.txt") samples, $(grep -c '^# TYPE ' "$WORK/metrics.txt") families)"
sleep 3

python3 - "$PROM_PORT" deploy/grafana-panels.md deploy/grafana-dashboard.json <<'PY'
import json, re, sys, urllib.parse, urllib.request

port, panels, dashboard = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}/api/v1/"

def get(path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"check-deploy: FAIL: {url}: {body}")
    return body["data"]

targets = get("targets")["activeTargets"]
assert targets and all(t["health"] == "up" for t in targets), targets
print(f"prometheus target {targets[0]['scrapeUrl']}: {targets[0]['health']}")

rules = [r for g in get("rules")["groups"] for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
assert rules and not bad, f"rules not healthy: {bad}"
print(f"alert rules loaded and evaluated: {len(rules)}")

# Panels that are legitimately zero on a fresh --dev server with no errors.
ZERO_OK = {"In flight", "Validators on the allow-list", "Connection errors", "Restarts (24 h)"}
scraped = set(get("label/__name__/values"))

def check(name, query):
    for metric in re.findall(r"\bcm_[a-z0-9_]+", query):
        if metric not in scraped:
            raise SystemExit(f"check-deploy: FAIL: panel {name!r}: {metric} is not a metric Prometheus scraped")
    result = get("query", query=query)["result"]
    if not result:
        raise SystemExit(f"check-deploy: FAIL: panel {name!r}: no series for {query}")
    values = [float(r["value"][1]) for r in result]
    if any(v != v for v in values):
        raise SystemExit(f"check-deploy: FAIL: panel {name!r}: NaN from {query}")
    if name not in ZERO_OK and not any(v > 0 for v in values):
        raise SystemExit(f"check-deploy: FAIL: panel {name!r}: all zero under traffic: {query}")
    return result, values

listed = {}
for line in open(panels, encoding="utf-8"):
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    if len(cells) != 4 or not cells[2].startswith("`"):
        continue
    name, query = cells[0], cells[2].strip("`").replace("\\|", "|")
    result, values = check(name, query)
    print(f"panel {name!r}: {len(result)} series, max {max(values):.6g}")
    listed[name] = query
rows = len(listed)
assert rows >= 10, f"only {rows} panel queries found in {panels}"
print(f"all {rows} panel queries returned data")

# The importable dashboard: every listed panel, with the listed query, and
# every query in it returning data from metrics Prometheus scraped.
with open(dashboard, encoding="utf-8") as f:
    dash = json.load(f)
assert dash.get("title") and dash.get("uid"), "dashboard JSON without title/uid"
graphs = [p for p in dash["panels"] if p.get("type") != "row"]
by_title = {p["title"]: p for p in graphs}
for name, query in listed.items():
    p = by_title.get(name)
    if p is None:
        raise SystemExit(f"check-deploy: FAIL: {dashboard} has no panel {name!r}")
    if p["targets"][0]["expr"] != query:
        raise SystemExit(f"check-deploy: FAIL: {dashboard} panel {name!r} queries {p['targets'][0]['expr']!r}, {panels} says {query!r}")
ids = [p["id"] for p in dash["panels"]]
assert len(ids) == len(set(ids)), "panel ids repeat"
n = 0
for p in graphs:
    for t in p["targets"]:
        check(p["title"], t["expr"])
        n += 1
print(f"{dashboard}: {len(graphs)} panels, all {n} queries returned data")
PY
echo "check-deploy: all checks passed"
