#!/usr/bin/env bash
# Shows that the binaries from scripts/build-static.sh are what an operator
# can copy to a bare machine as one file, and that they work there:
#
#   both:     `file` and `ldd` say static, no ELF interpreter, size <= 8 MB
#   x86_64:   in a chroot holding nothing but the binary (no libc, no /etc,
#             no /dev, no /proc): --help, predict, and serve --dev answering
#             GET /health and signed ConversionSynapse requests from `probe`
#             run in the same chroot
#   aarch64:  under qemu-aarch64 (user mode): --help, predict, and serve --dev
#             answering GET /health and signed requests from the native
#             x86_64 binary's `probe`
#
#   bash scripts/check-static.sh            # both targets
#   bash scripts/check-static.sh x86_64     # one of them (x86_64 | aarch64)
#
# Needs root for chroot, and qemu-user for the aarch64 part (installed with
# apt-get when missing and we are root). Every server listens on 127.0.0.1
# only (`serve --dev` binds loopback); a chroot shares the network namespace,
# so the host's curl reaches it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
X86="$TARGET_DIR/x86_64-unknown-linux-musl/release/conversion-miner"
ARM="$TARGET_DIR/aarch64-unknown-linux-musl/release/conversion-miner"
MAX_BYTES=8000000
# One request as a validator sends it, features only (missing optional
# features are filled by the model).
LINE='{"session_id":"check-static","conversation_duration_seconds":120.5,"has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}'
PROBE_N=20

case "${1:-all}" in
    all) which=(x86_64 aarch64) ;;
    x86_64 | aarch64) which=("$1") ;;
    *) echo "usage: $0 [all|x86_64|aarch64]" >&2; exit 2 ;;
esac

fail() { echo "check-static: FAIL: $*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/check-static.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Milliseconds a command takes, its output kept in $WORK/out.
timed() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$WORK/out" 2>&1 || { cat "$WORK/out" >&2; fail "$* exited non-zero"; }
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

check_static() {
    local bin=$1 size
    [ -x "$bin" ] || fail "$bin missing: run scripts/build-static.sh first"
    echo "== $bin"
    echo "file: $(file -b "$bin")"
    echo "ldd:  $(ldd "$bin" 2>&1 | tr -s ' \t' ' ' | sed 's/^ //')"
    file -b "$bin" | grep -Eq 'static(-pie)? linked|statically linked' || fail "file does not say static"
    if readelf -lW "$bin" | grep -q INTERP; then fail "$bin has an ELF interpreter"; fi
    if readelf -dW "$bin" 2>/dev/null | grep -q NEEDED; then fail "$bin needs shared libraries"; fi
    size=$(stat -c %s "$bin")
    echo "size: $size bytes (limit $MAX_BYTES)"
    [ "$size" -le "$MAX_BYTES" ] || fail "$bin is larger than $MAX_BYTES bytes"
}

# Starts "$@" (a `serve --dev --axon.port 0` command line) in the background
# and waits for its `listening on 127.0.0.1:PORT` line; sets PORT and HOTKEY.
start_server() {
    local log=$WORK/serve.log i
    : >"$log"
    "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 1 300); do
        if grep -q '^listening on 127\.0\.0\.1:' "$log"; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; fail "server exited"; }
        sleep 0.1
    done
    grep -q '^listening on 127\.0\.0\.1:' "$log" || { cat "$log" >&2; fail "no listening line in 30 s"; }
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log" | head -1)
    HOTKEY=$(sed -n 's/^miner hotkey \([1-9A-HJ-NP-Za-km-z]*\)$/\1/p' "$log" | head -1)
    [ -n "$HOTKEY" ] || { cat "$log" >&2; fail "no 'miner hotkey' line"; }
    echo "serve: listening on 127.0.0.1:$PORT, hotkey $HOTKEY (ready after $(( i * 100 )) ms or less)"
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

check_health() {
    local h
    h=$(curl -fsS --max-time 10 "http://127.0.0.1:$PORT/health") || fail "GET /health failed"
    echo "GET /health: $h"
    echo "$h" | grep -q '"status":"ok"' || fail "/health is not ok"
}

# The probe prints `ok N  errors M`; every request must have been answered.
check_probe_output() {
    cat "$WORK/out"
    grep -Eq "^ *ok $PROBE_N +errors 0\$" "$WORK/out" || fail "probe: not all $PROBE_N requests answered"
}

check_predict_output() {
    echo "predict: $(cat "$WORK/out")"
    grep -q '"conversion_happened":[01]' "$WORK/out" || fail "predict printed no prediction"
}

run_x86() {
    local root=$WORK/root ms
    check_static "$X86"
    [ "$(id -u)" = 0 ] || fail "chroot needs root"
    mkdir -p "$root"
    cp "$X86" "$root/conversion-miner"
    echo "chroot $root holds: $(cd "$root" && find . | sort | tr '\n' ' ')"

    ms=$(timed chroot "$root" /conversion-miner --help)
    echo "chroot --help: ok in $ms ms ($(head -1 "$WORK/out"))"

    ms=$(timed sh -c "printf '%s\n' '$LINE' | chroot '$root' /conversion-miner predict")
    check_predict_output
    echo "chroot predict: $ms ms"

    start_server chroot "$root" /conversion-miner serve --dev --axon.port 0
    check_health
    ms=$(timed chroot "$root" /conversion-miner probe --n "$PROBE_N" --target "127.0.0.1:$PORT" --hotkey "$HOTKEY" --dev)
    check_probe_output
    echo "chroot probe: $ms ms"
    stop_server
    echo "x86_64: OK"
}

need_qemu() {
    if ! command -v qemu-aarch64 >/dev/null && ! command -v qemu-aarch64-static >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user
        fi
    fi
    QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static) || fail "qemu-aarch64 not found (Debian: qemu-user)"
}

run_arm() {
    local ms
    check_static "$ARM"
    need_qemu
    [ -x "$X86" ] || fail "$X86 missing: the aarch64 check probes with the native binary"
    echo "qemu: $("$QEMU" --version | head -1)"

    ms=$(timed "$QEMU" "$ARM" --help)
    echo "qemu --help: ok in $ms ms ($(head -1 "$WORK/out"))"

    ms=$(timed sh -c "printf '%s\n' '$LINE' | '$QEMU' '$ARM' predict")
    check_predict_output
    echo "qemu predict: $ms ms"

    start_server "$QEMU" "$ARM" serve --dev --axon.port 0
    check_health
    ms=$(timed "$X86" probe --n "$PROBE_N" --target "127.0.0.1:$PORT" --hotkey "$HOTKEY" --dev)
    check_probe_output
    echo "native probe against the qemu server: $ms ms"
    stop_server
    echo "aarch64: OK"
}

for w in "${which[@]}"; do
    case "$w" in
        x86_64) run_x86 ;;
        aarch64) run_arm ;;
    esac
done
echo "check-static: all checks passed"
