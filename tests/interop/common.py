"""What the interop scripts share, and none of it imports bittensor.

interop.py (the 9.4.0 and 10.5.0 Dendrites) and btauth.py (bittensor
11.3.0's http_auth) run in different venvs with incompatible bittensor
packages; the conversations they send, the way they start the miner, the
expected answers from `conversion-miner predict` and the check bookkeeping
are the same, so they live here.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
import threading
from typing import Optional

from typing_extensions import TypedDict

LISTEN_RE = re.compile(r"listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
METRICS_RE = re.compile(r"metrics on (\d+\.\d+\.\d+\.\d+):(\d+)")
# `serve` arguments that put /metrics on a free loopback port of its own.
METRICS_ARGS = ["--metrics.addr", "127.0.0.1:0"]
START_TIMEOUT_S = 60.0
# Relative tolerance when comparing the miner's floats with `predict`'s. Both
# run the same f32 model, so the values agree to the last bit; the tolerance
# only absorbs a different decimal rendering of the same f32 (e.g. "63.2" vs
# "63.20000076293945"), which is well under one f32 ulp in relative terms.
FLOAT_REL_TOL = 1e-6


# ---------------------------------------------------------------- test data


class ConversationFeatures(TypedDict, total=False):
    """The subnet's feature dict (conversion_subnet/protocol.py): the session
    id and the numeric features, with the synapse's types."""

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
        self.metrics_addr: Optional[tuple[str, int]] = None
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = METRICS_RE.search(line)
            if m and self.metrics_addr is None:
                self.metrics_addr = (m.group(1), int(m.group(2)))
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


def serve_miner(binary: str, wallet_dir: str, validators_file: str, extra: tuple = ()) -> Server:
    """`serve` with the wallet "miner" made under `wallet_dir` and the given
    validators file, on a free loopback port with its operator listener on
    another; `extra` flags are appended."""
    return Server([
        binary, "serve",
        "--wallet.path", wallet_dir, "--wallet.name", "miner", "--wallet.hotkey", "default",
        "--validators", validators_file,
        "--axon.ip", "127.0.0.1", "--axon.port", "0", *METRICS_ARGS, *extra,
    ])


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

    def report(self, label: str, server: "Server") -> int:
        """Prints the outcome (the server's output tail on failure); the exit code."""
        if self.failures:
            print("%s: %d checks FAILED (%d passed); server output tail:\n%s"
                  % (label, len(self.failures), self.passed, server.tail()), file=sys.stderr)
            return 1
        print("%s: all %d checks passed" % (label, self.passed))
        return 0


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=FLOAT_REL_TOL, abs_tol=1e-9)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")
