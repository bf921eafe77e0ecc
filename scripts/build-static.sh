#!/usr/bin/env bash
# Builds the two release binaries an operator copies to a machine as one file:
#
#   x86_64-unknown-linux-musl    servers and VMs
#   aarch64-unknown-linux-musl   Raspberry-Pi-class edge nodes (cross-built)
#
# Both link musl statically and use mimalloc as the global allocator (see
# src/main.rs for why). mimalloc is C, so each target needs a C compiler that
# targets musl; Debian ships both as wrappers around gcc:
#
#   x86_64:   musl-gcc                (package musl-tools)
#   aarch64:  aarch64-linux-musl-gcc  (package musl-dev:arm64, which wraps
#             gcc-aarch64-linux-gnu with musl's arm64 headers and specs)
#
# Rust links against the musl libc that rustup's musl targets carry: with the
# host's cc for x86_64, and with rust-lld for aarch64, so no musl cross linker
# is needed.
#
#   bash scripts/build-static.sh            # both targets
#   bash scripts/build-static.sh x86_64     # one of them (x86_64 | aarch64)
#
# Installs the rustup targets, and as root on Debian the packages above, when
# they are missing. Prints each binary's path and size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

X86=x86_64-unknown-linux-musl
ARM=aarch64-unknown-linux-musl
case "${1:-all}" in
    all) targets=("$X86" "$ARM") ;;
    x86_64) targets=("$X86") ;;
    aarch64) targets=("$ARM") ;;
    *) echo "usage: $0 [all|x86_64|aarch64]" >&2; exit 2 ;;
esac

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "build-static: missing $*; install it (Debian: apt-get install $*)" >&2
        exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

need_x86() {
    command -v musl-gcc >/dev/null || apt_install musl-tools
}

need_arm() {
    if ! command -v aarch64-linux-musl-gcc >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null \
            && ! dpkg --print-foreign-architectures | grep -qx arm64; then
            dpkg --add-architecture arm64
        fi
        apt_install gcc-aarch64-linux-gnu musl-dev:arm64
    fi
}

rustup target add "${targets[@]}"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
for t in "${targets[@]}"; do
    case "$t" in
        "$X86")
            need_x86
            export CC_x86_64_unknown_linux_musl=musl-gcc
            ;;
        "$ARM")
            need_arm
            export CC_aarch64_unknown_linux_musl=aarch64-linux-musl-gcc
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
            ;;
    esac
    echo "== cargo build --release --target $t --bin conversion-miner"
    start=$(date +%s)
    cargo build --release --target "$t" --bin conversion-miner
    bin="$TARGET_DIR/$t/release/conversion-miner"
    size=$(stat -c %s "$bin")
    awk -v b="$bin" -v s="$size" -v t="$(( $(date +%s) - start ))" \
        'BEGIN { printf "%s\n  %d bytes (%.2f MiB), cargo ran %d s\n", b, s, s / 1048576, t }'
done
