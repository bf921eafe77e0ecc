#!/usr/bin/env python3
"""Interop check: the stock Python `bittensor` Dendrite against the Rust miner.

Why this exists: the Rust server is only useful if a validator running the
ordinary `bittensor` package (10.x) counts its answers as successes. Tests
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
     reports them, and that the miner still answers afterwards.

Exit status 0 when every check passed, 1 otherwise. Usage:
  python tests/interop/interop.py --bin target/release/conversion-miner
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
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
from typing_extensions import TypedDict  # noqa: E402

LISTEN_RE = re.compile(r"listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 12.0
# Relative tolerance when comparing the miner's floats with `predict`'s. Both
# run the same f32 model, so the values agree to the last bit; the tolerance
# only absorbs a different decimal rendering of the same f32 (e.g. "63.2" vs
# "63.20000076293945"), which is well under one f32 ulp in relative terms.
FLOAT_REL_TOL = 1e-6
# Requests one Dendrite sends at once in the burst check.
BURST = 16


class ConversationFeatures(TypedDict, total=False):
    """The validator's feature dict: session id plus the 40 numeric features."""

    session_id: str
    conversation_duration_seconds: float
    has_target_entity: int
    entities_collected_count: int
    message_ratio: float
    conversation_duration_minutes: float
    hour_of_day: int
    day_of_week: int
    is_business_hours: int
    is_weekend: int
    time_to_first_response_seconds: float
    avg_response_time_seconds: float
    max_response_time_seconds: float
    min_response_time_seconds: float
    avg_agent_response_time_seconds: float
    avg_user_response_time_seconds: float
    response_time_stddev: float
    response_gap_max: float
    messages_per_minute: float
    total_messages: int
    user_messages_count: int
    agent_messages_count: int
    avg_message_length_user: float
    max_message_length_user: int
    min_message_length_user: int
    total_chars_from_user: int
    avg_message_length_agent: float
    max_message_length_agent: int
    min_message_length_agent: int
    total_chars_from_agent: int
    question_count_agent: int
    questions_per_agent_message: float
    question_count_user: int
    questions_per_user_message: float
    sequential_user_messages: int
    sequential_agent_messages: int
    avg_entity_confidence: float
    min_entity_confidence: float
    entity_collection_rate: float
    repeated_questions: int
    message_alternation_rate: float


def _default_prediction() -> dict:
    return {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}


class ConversionSynapse(bt.Synapse):
    """Same field names, types and defaults as the subnet's protocol.py."""

    features: ConversationFeatures
    prediction: dict = _default_prediction()
    confidence: Optional[float] = None
    response_time: float = 0.0
    miner_uid: int = 0


# ---------------------------------------------------------------- test data


def _clip_normal(rng: random.Random, mean: float, sd: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, rng.gauss(mean, sd)))


def draw_conversation(rng: random.Random) -> dict:
    """One conversation drawn the way the subnet validator draws them (SUBNET.md)."""
    f: dict = {}
    f["session_id"] = "%032x" % rng.getrandbits(128)
    dur = round(_clip_normal(rng, 100, 20, 60, 150), 2)
    f["conversation_duration_seconds"] = dur
    f["hour_of_day"] = rng.randint(8, 19)
    f["day_of_week"] = rng.randint(0, 6)
    f["time_to_first_response_seconds"] = round(_clip_normal(rng, 10, 3, 5, 20), 2)
    for k in ("avg_response_time_seconds", "avg_agent_response_time_seconds", "avg_user_response_time_seconds"):
        f[k] = round(_clip_normal(rng, 15, 2, 10, 20), 2)
    for k in ("max_response_time_seconds", "response_gap_max"):
        f[k] = round(_clip_normal(rng, 18, 2.5, 15, 25), 2)
    f["min_response_time_seconds"] = round(_clip_normal(rng, 10, 2, 5, 15), 2)
    f["response_time_stddev"] = round(_clip_normal(rng, 3, 1, 0, 5), 2)
    total = int(_clip_normal(rng, 8, 2, 4, 20))
    f["total_messages"] = total
    ratio = round(_clip_normal(rng, 1.3, 0.3, 1.0, 2.0), 2)
    f["message_ratio"] = ratio
    f["avg_message_length_user"] = round(_clip_normal(rng, 40, 5, 20, 60), 2)
    f["max_message_length_user"] = int(_clip_normal(rng, 50, 5, 30, 70))
    f["min_message_length_user"] = int(_clip_normal(rng, 30, 5, 15, 45))
    f["avg_message_length_agent"] = round(_clip_normal(rng, 75, 10, 50, 100), 2)
    f["max_message_length_agent"] = int(_clip_normal(rng, 100, 15, 70, 130))
    f["min_message_length_agent"] = int(_clip_normal(rng, 50, 10, 30, 80))
    f["question_count_agent"] = int(_clip_normal(rng, 3, 1, 1, 5))
    f["question_count_user"] = int(_clip_normal(rng, 1, 0.5, 0, 3))
    f["sequential_user_messages"] = int(_clip_normal(rng, 2, 1, 1, 4))
    f["sequential_agent_messages"] = 1
    f["entities_collected_count"] = int(_clip_normal(rng, 4, 1.5, 1, 6))
    f["has_target_entity"] = rng.randint(0, 1)
    f["repeated_questions"] = rng.randint(0, 1)
    f["avg_entity_confidence"] = round(_clip_normal(rng, 0.9, 0.02, 0.8, 0.95), 3)
    f["min_entity_confidence"] = round(_clip_normal(rng, 0.85, 0.03, 0.8, 0.9), 3)
    f["entity_collection_rate"] = 0.0
    f["message_alternation_rate"] = round(_clip_normal(rng, 0.9, 0.1, 0.7, 1.0), 3)

    # Derived fields, recomputed as the validator does.
    f["conversation_duration_minutes"] = round(dur / 60, 4)
    users = int(total / (1 + 1 / ratio))
    agents = total - users
    f["user_messages_count"] = users
    f["agent_messages_count"] = agents
    f["total_chars_from_user"] = int(users * f["avg_message_length_user"])
    f["total_chars_from_agent"] = int(agents * f["avg_message_length_agent"])
    f["is_business_hours"] = 1 if 9 <= f["hour_of_day"] <= 17 else 0
    f["is_weekend"] = 1 if f["day_of_week"] in (0, 6) else 0
    f["questions_per_agent_message"] = round(f["question_count_agent"] / agents, 4) if agents else 0.0
    f["questions_per_user_message"] = round(f["question_count_user"] / users, 4) if users else 0.0
    f["messages_per_minute"] = round(total / f["conversation_duration_minutes"], 4)
    for who in ("user", "agent"):
        avg = f[f"avg_message_length_{who}"]
        lo, hi = f[f"min_message_length_{who}"], f[f"max_message_length_{who}"]
        if lo > avg or avg > hi:
            # The validator's min()/max() can yield a float here; the field is an
            # integer in protocol.py, so it is truncated as the synapse needs.
            f[f"min_message_length_{who}"] = int(min(lo, avg))
            f[f"max_message_length_{who}"] = int(math.ceil(max(hi, avg)))
    return f


def make_conversations(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = [draw_conversation(rng) for _ in range(n)]
    # A validator may leave optional features out; a few requests do so, to
    # exercise the miner's fill path through the real client as well.
    for i in range(0, n, 25):
        for k in ("hour_of_day", "day_of_week", "repeated_questions", "avg_entity_confidence"):
            out[i].pop(k, None)
    return out


# ---------------------------------------------------------------- processes


class Server:
    """`conversion-miner serve` as a child process; stdout+stderr are kept for failure reports."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.addr: Optional[tuple[str, int]] = None
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.addr is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.addr = (m.group(1), int(m.group(2)))
                    self._ready.set()
        self._ready.set()

    def wait_ready(self) -> tuple[str, int]:
        self._ready.wait(START_TIMEOUT_S)
        if self.addr is None:
            raise RuntimeError(
                "server did not print 'listening on IP:PORT' within %.0fs (exit %s); output:\n%s"
                % (START_TIMEOUT_S, self.proc.poll(), self.tail())
            )
        return self.addr

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def predict_offline(binary: str, conversations: list[dict]) -> list[dict]:
    """The binary's `predict` subcommand on the same features: the expected answers."""
    stdin = "".join(json.dumps(c) + "\n" for c in conversations)
    r = subprocess.run([binary, "predict"], input=stdin, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("predict exited %d: %s" % (r.returncode, r.stderr.strip()[-2000:]))
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    if len(lines) != len(conversations):
        raise RuntimeError("predict gave %d lines for %d inputs" % (len(lines), len(conversations)))
    return lines


def make_wallet(root: str, name: str) -> "bt.Wallet":
    w = bt.Wallet(name=name, hotkey="default", path=root)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return w


# ---------------------------------------------------------------- checks


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def ok(self, cond: bool, what: str) -> bool:
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            print("FAIL: " + what, file=sys.stderr)
        return cond


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=FLOAT_REL_TOL, abs_tol=1e-9)


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


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def run_checks(args, addr, miner_hotkey: str, wallets: dict, conversations: list[dict], expected: list[dict]) -> Checks:
    c = Checks()
    ip, port = addr
    axon = bt.AxonInfo(version=0, ip=ip, port=port, ip_type=4, hotkey=miner_hotkey, coldkey=miner_hotkey)
    validator = bt.Dendrite(wallet=wallets["validator"])

    async def ask(d, features, uid=0, timeout=REQUEST_TIMEOUT_S):
        return await d.call(axon, ConversionSynapse(features=features, miner_uid=uid), timeout=timeout, deserialize=False)

    try:
        # 1. The ping route a validator may use.
        ping = await validator.call(axon, bt.Synapse(), timeout=REQUEST_TIMEOUT_S, deserialize=False)
        c.ok(ping.is_success, "ping /Synapse: status %s %r" % (ping.dendrite.status_code, ping.dendrite.status_message))

        # 2. The main run: N conversations from `dendrites` Dendrite objects of
        # the validator's wallet working at once, each one request at a time.
        extra = [bt.Dendrite(wallet=wallets["validator"]) for _ in range(args.dendrites - 1)]
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
        ok_count = 0
        classes = {0: 0, 1: 0}
        for i, got in enumerate(results):
            if check_answer(c, i, conversations[i], got, expected[i], i % 256):
                ok_count += 1
                classes[got.prediction["conversion_happened"]] += 1
                latencies.append(float(got.dendrite.process_time))
        c.ok(ok_count == len(conversations), "only %d of %d requests fully correct" % (ok_count, len(conversations)))
        c.ok(classes[0] > 0 and classes[1] > 0, "answers were all one class: %r" % classes)
        print(
            "interop: %d/%d requests succeeded and matched `predict` (class 0: %d, class 1: %d); "
            "round trip p50 %.2f ms, p99 %.2f ms; %.0f req/s from %d dendrites"
            % (ok_count, len(conversations), classes[0], classes[1], 1e3 * percentile(latencies, 0.5),
               1e3 * percentile(latencies, 0.99), len(conversations) / wall, len(senders))
        )

        # 2b. One Dendrite firing a burst at once, as a validator does when it
        # gathers several synapses for one miner: the requests may reach the
        # miner out of nonce order, and each must still succeed.
        burst = list(range(min(BURST, len(conversations))))
        answers = await asyncio.gather(*(ask(validator, conversations[i], uid=i) for i in burst))
        burst_ok = sum(check_answer(c, i, conversations[i], got, expected[i], i) for i, got in zip(burst, answers))
        print("interop: burst of %d concurrent requests from one dendrite: %d succeeded" % (len(burst), burst_ok))

        # 3. A caller that is not on the validators file.
        stranger = bt.Dendrite(wallet=wallets["stranger"])
        try:
            got = await ask(stranger, conversations[0])
            c.ok(got.is_blacklist and got.dendrite.status_code == 403,
                 "unlisted hotkey: expected 403, got %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
            c.ok(got.prediction == _default_prediction(), "unlisted hotkey: prediction changed to %r" % got.prediction)
            print("interop: unlisted hotkey -> %s %r" % (got.dendrite.status_code, got.dendrite.status_message))
        finally:
            await stranger.aclose_session()

        # 4. A listed caller whose signature is altered after signing.
        tamperer = bt.Dendrite(wallet=wallets["validator"])
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
    args = ap.parse_args()
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

        server = Server([
            binary, "serve",
            "--wallet.path", tmp, "--wallet.name", "miner", "--wallet.hotkey", "default",
            "--validators", validators_file,
            "--axon.ip", "127.0.0.1", "--axon.port", "0",
        ])
        try:
            addr = server.wait_ready()
            print("interop: miner %s listening on %s:%d" % (miner_hotkey, addr[0], addr[1]))
            checks = asyncio.run(run_checks(args, addr, miner_hotkey, wallets, conversations, expected))
            checks.ok(server.alive(), "server exited during the run")
        finally:
            server.stop()
        if checks.failures:
            print("interop: %d checks FAILED (%d passed); server output tail:\n%s"
                  % (len(checks.failures), checks.passed, server.tail()), file=sys.stderr)
            return 1
        print("interop: all %d checks passed" % checks.passed)
        return 0


if __name__ == "__main__":
    sys.exit(main())
