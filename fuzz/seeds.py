#!/usr/bin/env python3
"""Writes the hand-made seed bodies of the `parse_body` fuzz target and the
two libFuzzer dictionaries. Run from anywhere; it writes next to itself.
The committed corpus is these seeds plus what the fuzzer found, minimized
with `cargo fuzz cmin` (see README.md)."""
import hashlib
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "core", "src", "schema.rs")

src = open(SCHEMA).read()
names_block = src.split("pub const FEATURE_NAMES")[1].split("];")[0]
NAMES = re.findall(r'"([a-z_]+)"', names_block)
ints_block = src.split("let ints = [")[1].split("]")[0]
INTS = {int(x) for x in ints_block.replace("\n", " ").split(",") if x.strip()}
assert len(NAMES) == 40, NAMES

# A plausible conversation (numbers in the ranges SUBNET.md gives).
TYPICAL = [312.4, 5.2, 14, 2, 1, 0, 3.1, 11.7, 40.2, 1.9, 9.8, 13.0, 8.4, 40.2,
           4.3, 22, 11, 11, 1.0, 48.2, 160, 5, 530, 96.1, 300, 12, 1057, 4,
           0.36, 3, 0.27, 1, 2, 4, 1, 0.91, 0.8, 0.5, 0, 0.95]


def features(values=TYPICAL, ints_as_float=False, sid="sess-0001"):
    f = {"session_id": sid}
    for i, (n, v) in enumerate(zip(NAMES, values)):
        if i in INTS:
            f[n] = float(v) if ints_as_float else int(v)
        else:
            f[n] = float(v)
    return f


def synapse(feats):
    # Field order and separators as a 10.5 dendrite's json.dumps (AXON.md §3, §9).
    return {
        "name": "ConversionSynapse", "timeout": 60.0, "total_size": 4321, "header_size": 0,
        "dendrite": {"status_code": None, "status_message": None, "process_time": None,
                     "ip": "10.9.9.9", "port": None, "version": 10005000,
                     "nonce": 1795626734383137861, "uuid": "5c06965a-e8f3-11f1-9a7d-02fc00000001",
                     "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
                     "signature": "0x6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b"},
        "axon": {"status_code": None, "status_message": None, "process_time": None,
                 "ip": "127.0.0.1", "port": 8091, "version": None, "nonce": None, "uuid": None,
                 "hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "signature": None},
        "computed_body_hash": "",
        "features": feats,
        "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
        "confidence": None, "response_time": 0.0, "miner_uid": 0,
    }


REQ = {"session_id": "s", "conversation_duration_seconds": 120.5, "has_target_entity": 1,
       "entities_collected_count": 3, "message_ratio": 1.2}

seeds = {
    "synapse_full": json.dumps(synapse(features())),
    "synapse_ints_as_floats": json.dumps(synapse(features(ints_as_float=True))),
    "synapse_compact": json.dumps(synapse(features()), separators=(",", ":")),
    "bare_full": json.dumps(features()),
    "bare_required_only": json.dumps(REQ),
    "synapse_required_only": json.dumps(synapse(REQ)),
    "synapse_unicode_session": json.dumps(synapse(features(sid="s\u00e9\"\\\n\U0001f600"))),
    "top_and_nested": json.dumps(dict(REQ, features=dict(REQ, message_ratio=9.5))),
    "features_not_object": json.dumps(dict(REQ, features=[1, 2])),
    "session_not_string": json.dumps(dict(REQ, session_id=7)),
    "null_feature": json.dumps(dict(REQ, message_ratio=None)),
    "nan_literal": json.dumps(REQ).replace("1.2", "NaN"),
    "inf_literal": json.dumps(REQ).replace("1.2", "Infinity"),
    "huge_f64": json.dumps(REQ).replace("1.2", "1e308"),
    "beyond_f32": json.dumps(REQ).replace("1.2", "3.5e38"),
    "overflow_f64": json.dumps(REQ).replace("1.2", "1e999"),
    "subnormal": json.dumps(REQ).replace("1.2", "1e-320"),
    "neg_zero_count": json.dumps(REQ).replace('"entities_collected_count": 3', '"entities_collected_count": -0.0'),
    "negative_count": json.dumps(dict(REQ, entities_collected_count=-3)),
    "fractional_count": json.dumps(dict(REQ, entities_collected_count=2.5)),
    "count_as_string": json.dumps(dict(REQ, entities_collected_count="3")),
    "count_u64_max": json.dumps(dict(REQ, entities_collected_count=18446744073709551615)),
    "count_beyond_u64": json.dumps(REQ).replace('"entities_collected_count": 3', '"entities_collected_count": 184467440737095516150'),
    "long_digits": json.dumps(REQ).replace("1.2", "1." + "2" * 400),
    "missing_required": json.dumps({k: v for k, v in REQ.items() if k != "has_target_entity"}),
    "missing_session": json.dumps({k: v for k, v in REQ.items() if k != "session_id"}),
    "duplicate_keys": json.dumps(REQ)[:-1] + ', "message_ratio": 2.0, "session_id": "t"}',
    "extra_keys": json.dumps(dict(REQ, unknown_future_field={"a": [1, {"b": None}]}, x=True)),
    "deep_33": "{\"a\":" + "[" * 33 + "]" * 33 + "}",
    "deep_32_ok": json.dumps(dict(REQ, x=json.loads("[" * 30 + "]" * 30))),
    "brackets_in_string": json.dumps(dict(REQ, note="[[[[{{{{" * 10)),
    "trailing": json.dumps(REQ) + " x",
    "empty": "",
    "empty_object": "{}",
    "array": "[1,2,3]",
    "string": "\"features\"",
    "truncated": json.dumps(synapse(features()))[:300],
    "whitespace": " \t\n\r" + json.dumps(REQ) + "\n",
    "escaped_key": json.dumps(REQ).replace('"message_ratio"', '"message\\u005fratio"'),
    "bad_utf8": None,
}

out = os.path.join(HERE, "corpus", "parse_body")
os.makedirs(out, exist_ok=True)
for name, text in seeds.items():
    data = b'{"session_id": "\xff\xfe", "message_ratio": 1}' if text is None else text.encode()
    # libFuzzer names corpus files by content hash; keep that convention.
    with open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

with open(os.path.join(HERE, "dict", "parse_body.dict"), "w") as f:
    for n in NAMES + ["session_id", "features", "dendrite", "prediction"]:
        f.write('"\\"%s\\""\n' % n)
    for tok in ["null", "true", "false", "NaN", "Infinity", "-1", "1e308", "3.5e38", "1e-45",
                "-0.0", "18446744073709551616", "{", "}", "[", "]", ":", ","]:
        f.write('"%s"\n' % tok)
    # A JSON escape of NUL and an escaped quote, in the dictionary's own escaping.
    f.write('"\\\\u0000"\n"\\\\\\""\n')

with open(os.path.join(HERE, "dict", "gate.dict"), "w") as f:
    for tok in ["timeout", "bt_header_dendrite_version", "bt_header_dendrite_nonce",
                "bt_header_dendrite_uuid", "bt_header_dendrite_hotkey",
                "bt_header_dendrite_signature", "computed_body_hash",
                "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
                "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
                "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a",
                "1795626734383137861", "0x", "0X", "12.0", "nan", "inf", "1e309", "-0"]:
        f.write('"%s"\n' % tok)
print(len(seeds), "seeds")
