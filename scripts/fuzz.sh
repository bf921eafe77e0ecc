#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while, starting from the committed
# corpus; fails if any target crashes (a panic, an assertion about the output
# rules, or a sanitizer report). New inputs go to a scratch folder, so a run
# leaves the tree unchanged unless --merge is given.
#
#   scripts/fuzz.sh [SECONDS] [--merge] [TARGET...]
#
#   SECONDS   per target, default 60
#   --merge   fold the new inputs into fuzz/corpus/<target> with `cargo fuzz cmin`
#   TARGET    default: all of `cargo fuzz list` (parse_body, gate)
#
# Needs a nightly toolchain and cargo-fuzz; installs both when missing
# (rustup toolchain install nightly, cargo install cargo-fuzz). Where no
# nightly can be installed, it falls back to the stable toolchain with
# RUSTC_BOOTSTRAP=1, which unlocks the -Z flags cargo-fuzz passes.
# Environment: FUZZ_SANITIZER (address|none; default address for
# parse_body and none for gate, as in the recorded runs of docs/SECURITY.md:
# gate reaches only safe Rust and ASan slows it about fourfold), FUZZ_NICE
# (niceness, default 5), FUZZ_JOBS_DIR (scratch, default a temp dir).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_TARGET=60
MERGE=0
TARGETS=()
for a in "$@"; do
    case "$a" in
        --merge) MERGE=1 ;;
        ''|*[!0-9]*) TARGETS+=("$a") ;;
        *) SECONDS_PER_TARGET="$a" ;;
    esac
done
NICE="${FUZZ_NICE:-5}"

# The fuzz crate has its own workspace and target dir (fuzz/target).
unset CARGO_TARGET_DIR

TOOLCHAIN=(+nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing the nightly toolchain" >&2
    if ! rustup toolchain install nightly --profile minimal >&2; then
        echo "fuzz.sh: no nightly available; using stable with RUSTC_BOOTSTRAP=1" >&2
        TOOLCHAIN=()
        export RUSTC_BOOTSTRAP=1
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi

if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo "${TOOLCHAIN[@]}" fuzz list)
fi

SCRATCH="${FUZZ_JOBS_DIR:-$(mktemp -d)}"
status=0
for t in "${TARGETS[@]}"; do
    default_sanitizer=address
    [ "$t" = gate ] && default_sanitizer=none
    SANITIZER="${FUZZ_SANITIZER:-$default_sanitizer}"
    corpus="fuzz/corpus/$t"
    new="$SCRATCH/$t"
    mkdir -p "$corpus" "$new"
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    echo "== $t: ${SECONDS_PER_TARGET}s, corpus $(ls "$corpus" | wc -l) files, sanitizer $SANITIZER" >&2
    start=$(date +%s)
    if nice -n "$NICE" cargo "${TOOLCHAIN[@]}" fuzz run --debug-assertions -s "$SANITIZER" "$t" "$new" "$corpus" -- \
        "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2> "$SCRATCH/$t.log"; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$SCRATCH/$t.log" | grep -o '[0-9]*$' || true)
        echo "== $t: ok, ${runs:-?} executions in $(( $(date +%s) - start ))s, 0 crashes" >&2
    else
        status=1
        tail -n 60 "$SCRATCH/$t.log" >&2
        echo "== $t: FAILED (reproducer in fuzz/artifacts/$t/, log $SCRATCH/$t.log)" >&2
        continue
    fi
    if [ "$MERGE" = 1 ] && [ -n "$(ls "$new")" ]; then
        cp -n "$new"/* "$corpus"/
        nice -n "$NICE" cargo "${TOOLCHAIN[@]}" fuzz cmin --debug-assertions -s "$SANITIZER" "$t" "$corpus" \
            -- "${dict[@]}" 2>> "$SCRATCH/$t.log"
        echo "== $t: corpus now $(ls "$corpus" | wc -l) files" >&2
    fi
done
exit $status
