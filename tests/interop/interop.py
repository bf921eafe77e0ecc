#!/usr/bin/env python3
"""Interop check: the stock Python `bittensor` Dendrite against the Rust miner.

Why this exists: the Rust server is only useful if a validator running the
ordinary `bittensor` package counts its answers as successes: 9.4.0, which
the subnet's lock file pins and live validators run, and 10.5.0, the last
release with a Dendrite. The same scenario runs with either; the script uses
each version's own spelling (9.x validators call `bt.wallet` and
`bt.dendrite`), and each version makes its own wallets (bittensor-wallet
3.0.9 cannot read files 4.x writes). Tests
written in Rust can only check our reading of the protocol; this script checks
the protocol itself, by letting the real `bt.Dendrite` build, sign and send the
requests and judge the replies with its own properties (`is_success`,
`is_blacklist`, `failed_verification`).

What it does, all on 127.0.0.1 and without a chain:
  1. makes three throwaway wallets in a temp dir (miner, validator, stranger);
  2. writes a validators file naming only the validator;
  3. starts `conversion-miner serve` with the miner's wallet and that file;
  4. sends a `/Synapse` ping, then N conversations (default 500) drawn like the
     subnet validator draws them, and checks every answer: success, every input
     echoed, a valid prediction, and the same prediction `conversion-miner
     predict` gives for the same features (so the fields arrived intact);
  5. checks that a caller missing from the validators file gets 403 and that a
     request whose signature was altered after signing gets 401, as the Dendrite
     reports them, and that the miner still answers afterwards;
  6. with --max-mean-response-time-ms, checks the mean `response_time` the
     miner reported over the main run: validators score latency with it, so it
     must be the miner's own work, not the client's delay between its header
     and body packets (a 9.4.0 dendrite on aiohttp 3.10 sends them apart).

Exit status 0 when every check passed, 1 otherwise. Usage:
  python tests/interop/interop.py --bin target/release/conversion-miner
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from typing import Optional

# The Dendrite looks up its public IP over the internet when it is created. The
# test must only talk to loopback, so that lookup is replaced before any
# Dendrite exists. The value is a documentation address (TEST-NET-1); it only
# travels in a header the miner does not use.
import bittensor.utils.networking as _networking

STUB_EXTERNAL_IP = "192.0.2.1"
_networking.get_external_ip = lambda: STUB_EXTERNAL_IP

import bittensor as bt  # noqa: E402

from common import (  # noqa: E402
    Checks,
    ConversationFeatures,
    close,
    make_conversations,
    percentile,
    predict_offline,
    serve_miner,
)

BT_MAJOR = int(bt.__version__.split(".")[0])
# The names a validator of this version calls (9.x subnets use the lower-case ones).
Wallet = bt.Wallet if BT_MAJOR >= 10 else bt.wallet
Dendrite = bt.Dendrite if BT_MAJOR >= 10 else bt.dendrite

REQUEST_TIMEOUT_S = 12.0
# Requests one Dendrite sends at once in the burst check.
BURST = 16


def _default_prediction() -> dict:
    return {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}


class ConversionSynapse(bt.Synapse):
    """Same field names, types and defaults as the subnet's protocol.py."""

    features: ConversationFeatures
    prediction: dict = _default_prediction()
    confidence: Optional[float] = None
    response_time: float = 0.0
    miner_uid: int = 0


# ---------------------------------------------------------------- wallets


def make_wallet(root: str, name: str):
    w = Wallet(name=name, hotkey="default", path=root)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return w


# ---------------------------------------------------------------- checks


def check_answer(c: Checks, i: int, sent: dict, got: ConversionSynapse, expected: dict, miner_uid: int) -> bool:
    tag = "request %d" % i
    if not c.ok(got.is_success, "%s: not a success: status %s %r" % (tag, got.dendrite.status_code, got.dendrite.status_message)):
        return False
    good = True
    p = got.prediction
    good &= c.ok(isinstance(p, dict) and set(p) >= {"conversion_happened", "time_to_conversion_seconds"},
                 "%s: prediction fields missing: %r" % (tag, p))
    if not good:
        return False
    cls, t, conf = p["conversion_happened"], p["time_to_conversion_seconds"], got.confidence
    good &= c.ok(cls in (0, 1) and not isinstance(cls, bool), "%s: class %r not 0/1" % (tag, cls))
    if cls == 0:
        good &= c.ok(t == -1.0, "%s: class 0 with time %r (must be exactly -1.0)" % (tag, t))
    else:
        good &= c.ok(isinstance(t, float) and math.isfinite(t) and t > 0, "%s: class 1 with time %r" % (tag, t))
    good &= c.ok(isinstance(conf, float) and 0.0 <= conf <= 1.0, "%s: confidence %r not in [0,1]" % (tag, conf))
    good &= c.ok(isinstance(got.response_time, float) and 0.0 <= got.response_time < REQUEST_TIMEOUT_S,
                 "%s: response_time %r" % (tag, got.response_time))
    # Inputs come back as the miner echoed them: the client overwrote its copy.
    good &= c.ok(dict(got.features) == sent, "%s: features not echoed intact" % tag)
    good &= c.ok(got.miner_uid == miner_uid, "%s: miner_uid %r not echoed" % (tag, got.miner_uid))
    # Same answer as the offline path for the same features.
    good &= c.ok(cls == expected["conversion_happened"], "%s: class %r, predict says %r" % (tag, cls, expected))
    good &= c.ok(close(t, expected["time_to_conversion_seconds"]), "%s: time %r, predict says %r" % (tag, t, expected))
    good &= c.ok(conf is not None and close(conf, expected["confidence"]), "%s: confidence %r, predict says %r" % (tag, conf, expected))
    return good


async def run_checks(args, addr, miner_hotkey: str, wallets: dict, conversations: list[dict], expected: list[dict]) -> Checks:
    c = Checks()
    ip, port = addr
    axon = bt.AxonInfo(version=0, ip=ip, port=port, ip_type=4, hotkey=miner_hotkey, coldkey=miner_hotkey)
    validator = Dendrite(wallet=wallets["validator"])

    async def ask(d, features, uid=0, timeout=REQUEST_TIMEOUT_S):
        return await d.call(axon, ConversionSynapse(features=features, miner_uid=uid), timeout=timeout, deserialize=False)

    try:
        # 1. The ping route a validator may use.
        ping = await validator.call(axon, bt.Synapse(), timeout=REQUEST_TIMEOUT_S, deserialize=False)
        c.ok(ping.is_success, "ping /Synapse: status %s %r" % (ping.dendrite.status_code, ping.dendrite.status_message))

        # 2. The main run: N conversations from `dendrites` Dendrite objects of
        # the validator's wallet working at once, each one request at a time.
        extra = [Dendrite(wallet=wallets["validator"]) for _ in range(args.dendrites - 1)]
        senders = [validator] + extra
        results: list = [None] * len(conversations)

        async def worker(k: int, d) -> None:
            for i in range(k, len(conversations), len(senders)):
                results[i] = await ask(d, conversations[i], uid=i % 256)

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(worker(k, d) for k, d in enumerate(senders)))
        finally:
            for d in extra:
                await d.aclose_session()
        wall = time.perf_counter() - t0
        latencies: list[float] = []
        reported: list[float] = []
        ok_count = 0
        classes = {0: 0, 1: 0}
        for i, got in enumerate(results):
            if check_answer(c, i, conversations[i], got, expected[i], i % 256):
                ok_count += 1
                classes[got.prediction["conversion_happened"]] += 1
                latencies.append(float(got.dendrite.process_time))
                reported.append(float(got.response_time))
        c.ok(ok_count == len(conversations), "only %d of %d requests fully correct" % (ok_count, len(conversations)))
        c.ok(classes[0] > 0 and classes[1] > 0, "answers were all one class: %r" % classes)
        print(
            "interop: bittensor %s: %d/%d requests succeeded and matched `predict` (class 0: %d, class 1: %d); "
            "round trip p50 %.2f ms, p99 %.2f ms; %.0f req/s from %d dendrites"
            % (bt.__version__, ok_count, len(conversations), classes[0], classes[1], 1e3 * percentile(latencies, 0.5),
               1e3 * percentile(latencies, 0.99), len(conversations) / wall, len(senders))
        )
        if reported:
            mean_ms = 1e3 * sum(reported) / len(reported)
            print("interop: mean response_time the miner reported: %.4f ms over %d requests (max %.4f ms)"
                  % (mean_ms, len(reported), 1e3 * max(reported)))
            if args.max_mean_response_time_ms is not None:
                c.ok(mean_ms <= args.max_mean_response_time_ms,
                     "mean response_time %.4f ms exceeds %.3f ms: the miner counts time it spent waiting for the body"
                     % (mean_ms, args.max_mean_response_time_ms))

        # 2b. One Dendrite firing a burst at once, as a validator does when it
        # gathers several synapses for one miner: the requests may reach the
        # miner out of nonce order, and each must still succeed.
        burst = list(range(min(BURST, len(conversations))))
        answers = await asyncio.gather(*(ask(validator, conversations[i], uid=i) for i in burst))
        burst_ok = sum(check_answer(c, i, conversations[i], got, expected[i], i) for i, got in zip(burst, answers))
        print("interop: burst of %d concurrent requests from one dendrite: %d succeeded" % (len(burst), burst_ok))

        # 3. A caller that is not on the validators file.
        stranger = Dendrite(wallet=wallets["stranger"])
        try:
            got = await ask(stranger, conversations[0])
            c.ok(got.is_blacklist and got.dendrite.status_code == 403,
                 "unlisted hotkey: expected 403, got %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
            c.ok(got.prediction == _default_prediction(), "unlisted hotkey: prediction changed to %r" % got.prediction)
            print("interop: unlisted hotkey -> %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
        finally:
            await stranger.aclose_session()

        # 4. A listed caller whose signature is altered after signing.
        tamperer = Dendrite(wallet=wallets["validator"])
        signed = tamperer.preprocess_synapse_for_request

        def tampered(target_axon_info, synapse, timeout=12.0):
            s = signed(target_axon_info, synapse, timeout)
            sig = s.dendrite.signature
            last = sig[-1]
            s.dendrite.signature = sig[:-1] + ("0" if last != "0" else "1")
            return s

        tamperer.preprocess_synapse_for_request = tampered
        try:
            got = await ask(tamperer, conversations[1])
            c.ok(got.failed_verification and got.dendrite.status_code == 401,
                 "tampered signature: expected 401, got %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
            c.ok(got.prediction == _default_prediction(), "tampered signature: prediction changed to %r" % got.prediction)
            print("interop: tampered signature -> %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
        finally:
            await tamperer.aclose_session()

        # 5. Still serving the good validator afterwards.
        got = await ask(validator, conversations[2], uid=2)
        check_answer(c, 2, conversations[2], got, expected[2], 2)
    finally:
        await validator.aclose_session()
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="path to the conversion-miner binary")
    ap.add_argument("--n", type=int, default=500, help="conversations to send (default 500)")
    ap.add_argument("--seed", type=int, default=20261125, help="seed for the conversations")
    ap.add_argument("--dendrites", type=int, default=4, help="Dendrite objects sending at once (default 4)")
    ap.add_argument("--expect-version", help="fail unless this bittensor version is the one imported")
    ap.add_argument("--max-mean-response-time-ms", type=float,
                    help="fail when the mean response_time the miner reports exceeds this (ms)")
    args = ap.parse_args()
    if args.expect_version and bt.__version__ != args.expect_version:
        print("FAIL: bittensor %s imported, %s expected" % (bt.__version__, args.expect_version), file=sys.stderr)
        return 1
    if args.n < 3 or args.dendrites < 1:
        ap.error("--n must be at least 3 and --dendrites at least 1")
    binary = os.path.abspath(args.bin)

    with tempfile.TemporaryDirectory(prefix="cm-interop-") as tmp:
        wallets = {name: make_wallet(tmp, name) for name in ("miner", "validator", "stranger")}
        miner_hotkey = wallets["miner"].hotkey.ss58_address
        validators_file = os.path.join(tmp, "validators.txt")
        with open(validators_file, "w") as fh:
            fh.write("# interop test: only this hotkey may query the miner\n")
            fh.write("%s, 1000\n" % wallets["validator"].hotkey.ss58_address)

        conversations = make_conversations(args.n, args.seed)
        expected = predict_offline(binary, conversations)
        bad = [e for e in expected if "error" in e]
        if bad:
            print("FAIL: predict refused %d of the test conversations, e.g. %r" % (len(bad), bad[0]), file=sys.stderr)
            return 1

        server = serve_miner(binary, tmp, validators_file)
        try:
            addr = server.wait_ready()
            print("interop: miner %s listening on %s:%d" % (miner_hotkey, addr[0], addr[1]))
            checks = asyncio.run(run_checks(args, addr, miner_hotkey, wallets, conversations, expected))
            checks.ok(server.alive(), "server exited during the run")
        finally:
            server.stop()
        return checks.report("interop", server)


if __name__ == "__main__":
    sys.exit(main())
