"""The miner reads a features body as the validator's side does: Python's
`json.loads`, then the subnet synapse's pydantic model in lax mode.

Builds bodies whose feature values are lax or tricky (numeric strings with
whitespace, signs, `_` separators and exponents; booleans; negative, huge,
fractional and non-finite numbers; wrong types), picked by hand and drawn at
random, and asks the real pydantic what each one means, with a TypedDict
equal in types to the subnet's `ConversationFeatures` (conversion_subnet/
protocol.py; that package is not installed, so it is restated here). Then
one `conversion-miner predict` process reads all the bodies, and:
- where `json.loads` or pydantic refuses a body, `predict` refuses it too;
- where pydantic accepts it, `predict`'s answer for the body as sent is
  byte-identical to its answer for the body rewritten with pydantic's
  coerced values as plain JSON numbers (the meaning the validator sees).

Then the synapse's other fields: full synapse bodies with valid features
whose `prediction`, `confidence`, `response_time`, `miner_uid`, bittensor's
own fields (`timeout`, `total_size`, ...) and `dendrite`/`axon` members get
lax, odd or wrong values (also repeated keys and non-object blocks). Each is
built as a real `bt.Synapse` subclass declaring ConversionSynapse's fields,
as the axon builds it (`Synapse(**json.loads(body))`); `predict` must refuse
exactly the bodies that raise, and answer the others as it answers their
features alone (those fields never change the prediction).

Run per interpreter by tests/interop.rs (CM_INTEROP_PYTHON_94 for pydantic
2.11.4, CM_INTEROP_PYTHON_105 for 2.14). Prints one success line only when
every body agreed and each kind of case was covered.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from importlib import metadata

from typing import Optional

import bittensor as bt
import pydantic
from typing_extensions import TypedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ConversationFeatures, draw_conversation  # noqa: E402

SUCCESS_LINE = "bodies read as pydantic reads them"

INT_FEATURES = [
    "hour_of_day", "day_of_week", "is_business_hours", "is_weekend", "total_messages",
    "user_messages_count", "agent_messages_count", "max_message_length_user",
    "min_message_length_user", "total_chars_from_user", "max_message_length_agent",
    "min_message_length_agent", "total_chars_from_agent", "question_count_agent",
    "question_count_user", "sequential_user_messages", "sequential_agent_messages",
    "entities_collected_count", "has_target_entity", "repeated_questions",
]
FLOAT_FEATURES = [
    "conversation_duration_seconds", "conversation_duration_minutes",
    "time_to_first_response_seconds", "avg_response_time_seconds", "max_response_time_seconds",
    "min_response_time_seconds", "avg_agent_response_time_seconds",
    "avg_user_response_time_seconds", "response_time_stddev", "response_gap_max",
    "messages_per_minute", "message_ratio", "avg_message_length_user",
    "avg_message_length_agent", "questions_per_agent_message", "questions_per_user_message",
    "avg_entity_confidence", "min_entity_confidence", "entity_collection_rate",
    "message_alternation_rate",
]


class Synapse(pydantic.BaseModel):
    """The part of ConversionSynapse that reads the features."""

    features: ConversationFeatures


class PredictionOutput(TypedDict):
    """protocol.py's prediction (a total TypedDict)."""

    conversion_happened: int
    time_to_conversion_seconds: float


class ConversionSynapse(bt.Synapse):
    """protocol.py's synapse, field for field (the package is not installed)."""

    features: ConversationFeatures
    prediction: PredictionOutput = {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}
    confidence: Optional[float] = None
    response_time: float = 0.0
    miner_uid: int = 0


# JSON value texts picked by hand: each is the text of one feature's value.
HAND_NUMBERS = [
    "0", "-0", "14", "-3", "5.0", "-0.0", "0.5", "-0.5", "5e0", "1e1", "1E+1", "1e-1", "1.5e3",
    "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "9223372036854775807.0", "9223372036854774784.0",
    "-9223372036854775808.0", "9.2e18", "9.3e18", "1e19", "1e20", "1180591620717411303424",
    "1e38", "3.5e38", "-3.5e38", "1e300", "1e308", "1e400", "-1e400", "1e-400", "NaN",
    "Infinity", "-Infinity", "true", "false", "null", "[]", "[1]", "{}", '{"a":1}',
    "9" * 400, "-" + "9" * 400, "1" * 4300, "1" * 4301, "-" + "1" * 4301, "1" * 4301 + ".0",
]
HAND_STRINGS = [
    "14", " 14 ", "\t14\n", "\x0b14\x0c", "\u00a014\u00a0", "\u2009" + "14", "\u3000 14",
    "\x8514", "\u20281", "\u16801", "\u202f1", "\u205f1", "\u200b1", "\u180e1", "\ufeff1",
    "\x1c14", "14\x00", "14.0", "14.000", "1_000", "1__0", "_1", "1_", "1_0.0", "1.0_0",
    "1_0.0_0", " 1_0", "1_0 ", "  +1_0.0_0  ", "+14", "-14", "- 14", "+-1", "-+1", "--1", "++1",
    "+", "-", "", "  ", ".5", "5.", "0.", "-.5", "+.5", "1.e1", ".e1", "e1", "1e", "1e1", "1E1",
    "1e+1", "1e-400", "1e400", "0x10", "0o7", "0b1", "0x", "00", "007", "0_7", "0_", "0_0",
    "0__1", "00_1", "-0_1", "0-5", "-0-5", "+0", "-0", "-00", "-00.00", "-0.0", "0.0",
    "0_.0", "1_.5", "1._5", "+_1", "-_1", "_1.5", "1.5_", "1e1_", "1e1_0", "1_e1",
    "inf", "-inf", "+inf", "INF", "iNf", "infinity", "Infinity", "-Infinity", "infinit",
    "inf_inity", "nan", "NaN", "-nan", "+nan", "n_an", "nana", "True", "true", "1 2", "1,5",
    "1.5.", "0.0.0", "\u0661\u0664", "\uff11\uff14", "14.000000000000001",
    "99999999999999999999.0", "9223372036854775808", str(2 ** 70), "-" + str(2 ** 70),
    "1" * 256, "9" * 254 + ".0", " " * 300 + "1" * 256 + "\u3000" * 50, "\ud800", "1\udc00",
    "\U0001f600",
]
# The miner's one limit (core/src/parse/lax.rs, MAX_NUMERIC_TEXT): longer
# numeric strings are refused with their own message, where pydantic reads them.
OVER_LIMIT = ["1" * 257, " " + "9" * 255 + ".0 ", "1_" * 200 + "1"]
LIMIT_MESSAGE = b"longer than 256 bytes"
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u1680", "\u2000",
              "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_WHITESPACE = ["\x1c", "\x1f", "\u200b", "\ufeff", "\x00", "\u180e"]


def random_numeric_text(rng: random.Random) -> str:
    """A string shaped like a number, with the lax and the broken parts mixed in."""
    def digits(n: int) -> str:
        out = "".join(rng.choice("0123456789") for _ in range(n))
        if n > 1 and rng.random() < 0.3:
            k = rng.randrange(0, n + 1)
            out = out[:k] + rng.choice(["_", "__"]) + out[k:]
        return out

    def pad() -> str:
        r = rng.random()
        if r < 0.6:
            return ""
        if r < 0.9:
            return "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 3)))
        return rng.choice(NOT_WHITESPACE)

    kind = rng.random()
    if kind < 0.08:
        body = rng.choice(["inf", "infinity", "nan", "in_f", "nan_"])
        body = "".join(c.upper() if rng.random() < 0.5 else c for c in body)
    else:
        body = digits(rng.choice([0, 1, 1, 2, 3, 5, 19, 25]))
        if rng.random() < 0.35:
            body += "." + digits(rng.choice([0, 1, 2, 3]))
            if rng.random() < 0.3:
                body = body.split(".")[0] + "." + "0" * rng.randint(1, 3)
        if rng.random() < 0.2:
            body += rng.choice("eE") + rng.choice(["", "+", "-"]) + digits(rng.randint(0, 3))
    sign = rng.choice(["", "", "", "-", "+", "+-", "--", "-_", "_"])
    return pad() + sign + body + pad()


def random_number_text(rng: random.Random) -> str:
    """A JSON number literal, from ordinary to extreme."""
    r = rng.random()
    if r < 0.3:
        return str(rng.randint(-1000, 1000))
    if r < 0.45:
        return str(rng.randint(-(2 ** 80), 2 ** 80))
    if r < 0.65:
        v = rng.choice([rng.uniform(-1e3, 1e3), float(rng.randint(-100, 100)),
                        rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 40)])
        return repr(v)
    mant = str(rng.randint(0, 999))
    if rng.random() < 0.5:
        mant += "." + str(rng.randint(0, 99))
    return rng.choice(["", "-"]) + mant + rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 420))


def string_text(s: str, rng: random.Random) -> str:
    """The JSON text of string `s`: escaped as json.dumps does, or with its
    non-ASCII characters sent as UTF-8 (lone surrogates can only be escaped)."""
    if rng.random() < 0.5 and not any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        return json.dumps(s, ensure_ascii=False)
    return json.dumps(s)


def value_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        return rng.choice(HAND_NUMBERS)
    if r < 0.4:
        return string_text(rng.choice(HAND_STRINGS), rng)
    if r < 0.75:
        return string_text(random_numeric_text(rng), rng)
    return random_number_text(rng)


def body_text(members: list[tuple[str, str]], wrapped: bool) -> str:
    inner = "{" + ", ".join("%s: %s" % (json.dumps(k), v) for k, v in members) + "}"
    if wrapped:
        return '{"name": "ConversionSynapse", "timeout": 12.0, "features": %s, "miner_uid": 0}' % inner
    return inner


def make_cases(n: int, seed: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """`n` bodies as (kind, members (key, value text)): every hand-picked
    value in an int and a float feature, five session ids, then random ones."""
    rng = random.Random(seed)
    base = [(k, json.dumps(v)) for k, v in draw_conversation(rng).items()]
    hand = [("bool" if t in ("true", "false") else "number", t) for t in HAND_NUMBERS]
    hand += [("string", string_text(s, rng)) for s in HAND_STRINGS]
    hand += [("limit", string_text(s, rng)) for s in OVER_LIMIT]
    cases = []
    for kind, text in hand:
        for key in ("total_messages", "message_ratio"):
            cases.append((kind, [(k, text if k == key else v) for k, v in base]))
    for sid in ['5', 'null', '"\\ud800"', '"a\\u00e9\\"b"', '""']:
        cases.append(("session_id", [(k, sid if k == "session_id" else v) for k, v in base]))
    for _ in range(n - len(cases)):
        members = [(k, json.dumps(v)) for k, v in draw_conversation(rng).items()]
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            i = rng.randrange(len(members))
            if members[i][0] != "session_id":
                members[i] = (members[i][0], value_text(rng))
        cases.append(("random", members))
    return cases


def pydantic_meaning(text: str):
    """The features dict the validator's side makes of `text`, or None if
    it refuses the body."""
    try:
        features = json.loads(text)
        if "features" in features:
            features = features["features"]
        return dict(Synapse.model_validate({"features": features}).features)
    except pydantic.ValidationError:
        return None
    except (ValueError, UnicodeError):
        # json.loads (e.g. an integer of more than 4300 digits) or a
        # string pydantic cannot take as text.
        return None


# Synapse fields other than `features`: where each lives, and a real body's
# value for it (what a 9.x/10.x dendrite sends).
TERMINAL_VALUES = {
    "status_code": "null", "status_message": "null", "process_time": "null", "ip": '"10.0.0.7"',
    "port": "8091", "version": "10005000", "nonce": "1795626734383137861", "uuid": '"5c06965a-b1"',
    "hotkey": '"5Grwva"', "signature": '"0x6c2e"',
}
TOP_VALUES = {
    "timeout": "12.0", "total_size": "3701", "header_size": "0", "computed_body_hash": '""',
    "confidence": "null", "response_time": "0.0", "miner_uid": "0",
}
PREDICTION_VALUES = {"conversion_happened": "0", "time_to_conversion_seconds": "-1.0"}
# Python's int()/float() read non-ASCII digits; the miner refuses them
# (lax.rs, python_string), a difference no validator's body can show.
NON_ASCII_DIGIT = [s for s in HAND_STRINGS if any(c.isdigit() and not c.isascii() for c in s)]
FIELD_STRINGS = [s for s in HAND_STRINGS if s not in NON_ASCII_DIGIT and len(s.strip()) <= 256] + [
    "abc", "10.0.0.1", "", "0x6c", "1.5", "-7", "1e3", " 12 ", "007", "1_000", "1_0.5", "1e5_0", ".5", "5.",
    "-iNfInItY", "nan", "1.0"]
FIELD_OTHERS = ["null", "true", "false", "[]", "[1]", "{}", '{"a": 1}', "NaN", "Infinity", "-Infinity",
                "0", "-1", "1.5", "2.0", "1e30", "1e400", "-1e300", str(2 ** 70), "9" * 400]


def field_value_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return rng.choice(FIELD_OTHERS)
    if r < 0.55:
        return string_text(rng.choice(FIELD_STRINGS), rng)
    if r < 0.8:
        text = random_numeric_text(rng)
        if any(not c.isascii() for c in text.strip()):
            text = text.strip()
        return string_text(text, rng)
    return random_number_text(rng)


def obj_text(members: list[tuple[str, str]]) -> str:
    return "{" + ", ".join("%s: %s" % (json.dumps(k), v) for k, v in members) + "}"


def synapse_cases(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """`n` full synapse bodies with one to three odd values among the other
    fields: (what was changed, body text, the features object's text)."""
    cases = []
    for _ in range(n):
        features = obj_text([(k, json.dumps(v)) for k, v in draw_conversation(rng).items()])
        blocks = {
            "dendrite": list(TERMINAL_VALUES.items()),
            "axon": [(k, v) for k, v in TERMINAL_VALUES.items() if rng.random() < 0.7],
            "prediction": list(PREDICTION_VALUES.items()),
        }
        top = list(TOP_VALUES.items())
        whole = {}  # block name -> a value text that replaces the block
        changed = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            where = rng.choice(["top", "top", "dendrite", "axon", "prediction", "block"])
            if where == "block":
                name = rng.choice(list(blocks))
                whole[name] = rng.choice(["null", "5", '"x"', "[]", "true"])
                changed.append(name)
                continue
            members = top if where == "top" else blocks[where]
            if where == "prediction" and rng.random() < 0.15:
                key = rng.choice(list(PREDICTION_VALUES))
                members[:] = [(k, v) for k, v in members if k != key]
                changed.append("prediction-%s" % key)
                continue
            keys = list(TOP_VALUES if where == "top" else TERMINAL_VALUES if where != "prediction"
                        else PREDICTION_VALUES)
            key = rng.choice(keys)
            value = field_value_text(rng)
            if rng.random() < 0.15:
                # The same key twice: the last one counts.
                members.append((key, value))
            else:
                members[:] = [(k, v) for k, v in members if k != key] + [(key, value)]
            changed.append("%s.%s" % (where, key))
        parts = [("name", '"ConversionSynapse"')] + top[:4]
        for name in ("dendrite", "axon"):
            parts.append((name, whole.get(name, obj_text(blocks[name]))))
        parts.append(("features", features))
        parts.append(("prediction", whole.get("prediction", obj_text(blocks["prediction"]))))
        parts += top[4:]
        rng.shuffle(parts)
        cases.append((" ".join(changed), obj_text(parts), features))
    return cases


def synapse_accepts(text: str) -> bool:
    """Whether the axon's `ConversionSynapse(**json.loads(body))` builds."""
    try:
        ConversionSynapse(**json.loads(text))
        return True
    except Exception:  # noqa: BLE001 - cast_int/cast_float raise TypeError, OverflowError too
        return False


def check_synapse_fields(binary: str, n: int, seed: int) -> tuple[list[str], dict]:
    rng = random.Random(seed + 1)
    cases = synapse_cases(n, rng)
    lines = []
    for _, text, features in cases:
        lines += [text, '{"features": %s}' % features]
    stdin = "".join(l + "\n" for l in lines).encode("utf-8", "surrogatepass")
    r = subprocess.run([binary, "predict"], input=stdin, capture_output=True, timeout=120)
    out = r.stdout.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    if len(out) != len(lines):
        return ["predict gave %d lines for %d synapse bodies" % (len(out), len(lines))], {}
    failures = []
    counts = {"synapse_accepted": 0, "synapse_refused": 0, "terminal_refused": 0, "cast_string_accepted": 0}
    for i, (changed, text, _) in enumerate(cases):
        got, alone = out[2 * i], out[2 * i + 1]
        refused = got.startswith(b'{"error"')
        if alone.startswith(b'{"error"'):
            failures.append("the features alone are refused: %s" % alone[:200])
            continue
        if not synapse_accepts(text):
            counts["synapse_refused"] += 1
            if "dendrite." in changed or "axon." in changed:
                counts["terminal_refused"] += 1
            if not refused:
                failures.append("the synapse refuses (%s), predict answers: %s" % (changed, text[:600]))
            continue
        counts["synapse_accepted"] += 1
        if '"' in text and ("timeout" in changed or "size" in changed or "port" in changed
                            or "nonce" in changed or "version" in changed or "status_code" in changed
                            or "process_time" in changed):
            counts["cast_string_accepted"] += 1
        if refused:
            failures.append("the synapse accepts (%s), predict refuses: %s: %s" % (changed, got[:200], text[:600]))
        elif got != alone:
            failures.append("answers differ (%s): %s, %s alone: %s" % (changed, got, alone, text[:600]))
    return failures, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="path to the conversion-miner binary")
    ap.add_argument("--n", type=int, default=3000,
                    help="bodies to check: the hand-picked ones, the rest drawn at random")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--synapse-n", type=int, default=1500,
                    help="full synapse bodies with odd values in the fields other than features")
    ap.add_argument("--expect-version", help="fail unless this bittensor version is installed (picks the venv's pydantic)")
    args = ap.parse_args()
    if args.expect_version and metadata.version("bittensor") != args.expect_version:
        print("FAIL: bittensor %s installed, %s expected" % (metadata.version("bittensor"), args.expect_version),
              file=sys.stderr)
        return 1

    cases = make_cases(args.n, args.seed)
    if len(cases) != args.n:
        ap.error("--n must be at least the %d hand-picked bodies" % len(cases))
    lines: list[str] = []
    plan = []  # per case: (line of the body as sent, line of the rewrite or None)
    for i, (kind, members) in enumerate(cases):
        text = body_text(members, wrapped=i % 2 == 1)
        meaning = pydantic_meaning(text)
        sent = len(lines)
        lines.append(text)
        rewrite = None
        if meaning is not None:
            rewrite = len(lines)
            # Plain JSON numbers (NaN and Infinity as Python writes them).
            lines.append(json.dumps(meaning))
        plan.append((kind, text, sent, rewrite, meaning))

    stdin = "".join(l + "\n" for l in lines).encode("utf-8", "surrogatepass")
    r = subprocess.run([args.bin, "predict"], input=stdin, capture_output=True, timeout=120)
    out = r.stdout.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    if len(out) != len(lines):
        print("FAIL: predict gave %d lines for %d (stderr: %s)" % (len(out), len(lines), r.stderr[-2000:]),
              file=sys.stderr)
        return 1

    failures = []
    counts = {"limit": 0, "accepted": 0, "refused": 0, "accepted_string": 0, "refused_string": 0, "accepted_bool": 0,
              "accepted_nonfinite": 0, "accepted_negative_int": 0, "accepted_big_int": 0}
    for kind, text, sent, rewrite, meaning in plan:
        got = out[sent]
        refused = got.startswith(b'{"error"')
        if kind == "string":
            counts["accepted_string" if meaning is not None else "refused_string"] += 1
        if kind == "bool" and meaning is not None:
            counts["accepted_bool"] += 1
        if kind == "limit":
            counts["limit"] += 1
            if not (refused and LIMIT_MESSAGE in got):
                failures.append("over the length limit, predict answers %s: %s" % (got[:200], text[:400]))
            continue
        if meaning is None:
            counts["refused"] += 1
            if not refused:
                failures.append("pydantic refuses, predict answers %s: %s" % (got[:200], text[:400]))
            continue
        counts["accepted"] += 1
        if refused:
            failures.append("pydantic accepts (%s), predict refuses: %s: %s"
                            % (json.dumps(meaning)[:300], got[:200], text[:400]))
            continue
        want = out[rewrite]
        if got != want:
            failures.append("answers differ: %s for the body, %s for pydantic's meaning %s: %s"
                            % (got, want, json.dumps(meaning)[:300], text[:400]))
        for k, v in meaning.items():
            if k == "session_id":
                continue
            if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
                counts["accepted_nonfinite"] += 1
            if k in INT_FEATURES and v < 0:
                counts["accepted_negative_int"] += 1
            if k in INT_FEATURES and abs(v) >= 2 ** 63:
                counts["accepted_big_int"] += 1
    field_failures, field_counts = check_synapse_fields(args.bin, args.synapse_n, args.seed)
    failures += field_failures
    counts.update(field_counts)
    for f in failures[:20]:
        print("FAIL: " + f, file=sys.stderr)
    # Each kind of case must have happened, or the agreement says little.
    floors = {"accepted": 500, "refused": 500, "accepted_string": 60, "refused_string": 60, "accepted_bool": 2,
              "accepted_nonfinite": 50, "accepted_negative_int": 50, "accepted_big_int": 20,
              "synapse_accepted": 300, "synapse_refused": 300, "terminal_refused": 100, "cast_string_accepted": 50}
    thin = {k: (counts.get(k, 0), v) for k, v in floors.items() if counts.get(k, 0) < v}
    if thin:
        print("FAIL: too few cases of some kinds (seen, wanted): %r" % thin, file=sys.stderr)
    print("pydantic %s (core %s): %r" % (pydantic.VERSION, metadata.version("pydantic_core"), counts))
    if failures or thin:
        print("pydantic_meaning: %d of %d bodies disagree" % (len(failures), len(plan) + args.synapse_n), file=sys.stderr)
        return 1
    print("pydantic_meaning: %d/%d %s" % (len(plan), len(plan), SUCCESS_LINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
