#!/usr/bin/env bash
# Builds cm-core for aarch64-unknown-linux-gnu and runs its tests (the NEON
# kernel against the scalar reference, f32 and f16 weights) under qemu-user.
#
#   bash scripts/test-aarch64.sh          # from anywhere; .ci/run calls it
#
# Needs: rustup, and for the test run Debian's qemu-user, gcc-aarch64-linux-gnu
# and libc6-dev-arm64-cross (installed here with apt-get when missing and we
# are root). The cross build alone needs only the rustup target. Without
# qemu the tests are skipped with a message, except under CI=true, where
# that is an error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

rustup target add "$TARGET"

echo "== cargo build -p cm-core --target $TARGET (f32 and f16 weights)"
cargo build -p cm-core --target "$TARGET"
cargo build -p cm-core --target "$TARGET" --features f16-weights

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
    || [ ! -d "$SYSROOT/lib" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing qemu-user and the aarch64 cross linker"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    fi
fi
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "test-aarch64: qemu-aarch64 or aarch64-linux-gnu-gcc missing; cannot run the NEON tests" >&2
        exit 1
    fi
    echo "test-aarch64: SKIPPED the NEON test run (no qemu-aarch64 or cross linker); build only"
    exit 0
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
# The kernel tests fail if the NEON kernel cannot run or did not run.
export CM_REQUIRE_KERNELS=neon
echo "== cargo test -p cm-core --target $TARGET (under qemu-aarch64)"
cargo test -p cm-core --target "$TARGET"
echo "== cargo test -p cm-core --target $TARGET --features f16-weights (under qemu-aarch64)"
cargo test -p cm-core --target "$TARGET" --features f16-weights
