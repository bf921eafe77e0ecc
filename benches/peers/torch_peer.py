#!/usr/bin/env python3
"""PyTorch peer: the same trained weights, single sample, on CPU, timed in
the same run as our kernels.

1. Builds every network of weights/model.json as a torch.nn.Sequential, as a
   Python miner would run it: input standardisation, Linear, BatchNorm1d in
   eval mode (running statistics), ReLU, Linear, ReLU, Linear (+ Sigmoid for
   classifiers).
2. Checks that these torch networks answer what our binary answers
   (`conversion-miner predict`) on the same requests, so both sides really
   run the same model.
3. Times one single-sample forward of the first classifier, and the whole
   ensemble answer (all networks + calibration + output rules), in torch.
4. Runs our criterion benches for the same two workloads
   (forward/trained/network and predict/stage/ensemble) and reads their
   medians.
5. Prints both medians and their ratio.

Both sides are timed with CPU time (torch: process CPU time, which also
counts any torch worker threads; ours: the bench thread's CPU clock), so a
busy shared machine slows neither the waiting. Run from the repository root:

    python3 benches/peers/torch_peer.py [--kernel NAME] [--quick]
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


# ---------------------------------------------------------------- the model

def load_model(path):
    with open(path) as f:
        m = json.load(f)
    if m.get("format") != "conversion-miner-model" or m.get("version") != 1:
        sys.exit(f"{path}: not a conversion-miner model v1")
    return m


def build_net(spec, mean, std):
    """One network of model.json as a torch module, input scaler included."""
    layers = [Standardize(mean, std)]
    for l in spec["layers"]:
        t = l["type"]
        if t == "linear":
            lin = torch.nn.Linear(l["in"], l["out"])
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(l["weight"], dtype=torch.float32))
                lin.bias.copy_(torch.tensor(l["bias"], dtype=torch.float32))
            layers.append(lin)
        elif t == "batchnorm":
            bn = torch.nn.BatchNorm1d(l["dim"], eps=l["eps"])
            with torch.no_grad():
                bn.running_mean.copy_(torch.tensor(l["mean"], dtype=torch.float32))
                bn.running_var.copy_(torch.tensor(l["var"], dtype=torch.float32))
                bn.weight.copy_(torch.tensor(l["gamma"], dtype=torch.float32))
                bn.bias.copy_(torch.tensor(l["beta"], dtype=torch.float32))
            layers.append(bn)
        elif t == "relu":
            layers.append(torch.nn.ReLU())
        elif t == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        else:
            sys.exit(f"unknown layer type {t}")
    return torch.nn.Sequential(*layers).eval()


class Standardize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std


def inputs_from_raw(raw):
    """The model's feature transform: 40 raw values -> 47 inputs."""
    f = dict(zip(FEATURES, raw))
    ratio = lambda a, b: a / max(1.0, b)
    hour, day = f["hour_of_day"], f["day_of_week"]
    return list(raw) + [
        ratio(f["agent_messages_count"], f["user_messages_count"]),
        ratio(f["avg_message_length_agent"], f["avg_message_length_user"]),
        ratio(f["question_count_agent"], f["agent_messages_count"]),
        math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24),
        math.sin(2 * math.pi * day / 7), math.cos(2 * math.pi * day / 7),
    ]


class Ensemble:
    """What a Python miner computes per request."""

    def __init__(self, m):
        mean, std = m["scaler"]["mean"], m["scaler"]["std"]
        self.classifiers = [build_net(c, mean, std) for c in m["classifiers"]]
        self.regressors = [build_net(r, mean, std) for r in m["regressors"]]
        self.cx, self.cy = m["calibration"]["x"], m["calibration"]["y"]
        self.t_mean, self.t_std = m["target"]["mean"], m["target"]["std"]
        self.t_min, self.t_max = m["time_clamp"]

    def calibrate(self, p):
        xs, ys = self.cx, self.cy
        if p <= xs[0]:
            c = ys[0]
        elif p >= xs[-1]:
            c = ys[-1]
        else:
            k = next(i for i in range(1, len(xs)) if p <= xs[i])
            t = (p - xs[k - 1]) / (xs[k] - xs[k - 1])
            c = ys[k - 1] + t * (ys[k] - ys[k - 1])
        return min(1.0, max(0.0, c))

    def predict(self, x):
        p = sum(float(c(x)) for c in self.classifiers) / len(self.classifiers)
        conf = self.calibrate(p)
        if p < 0.5:
            return 0, -1.0, conf
        t = sum(float(r(x)) for r in self.regressors) / len(self.regressors)
        t = t * self.t_std + self.t_mean
        return 1, min(self.t_max, max(self.t_min, t)), conf


# ----------------------------------------------------------- requests

def requests(m, n, seed):
    """Feature dicts around the model's fill values (its training means)."""
    rng = random.Random(seed)
    ints = {"hour_of_day", "day_of_week", "is_business_hours", "is_weekend", "total_messages",
            "user_messages_count", "agent_messages_count", "max_message_length_user",
            "min_message_length_user", "total_chars_from_user", "max_message_length_agent",
            "min_message_length_agent", "total_chars_from_agent", "question_count_agent",
            "question_count_user", "sequential_user_messages", "sequential_agent_messages",
            "entities_collected_count", "has_target_entity", "repeated_questions"}
    out = []
    for k in range(n):
        f = {"session_id": f"peer-{seed}-{k}"}
        for name, fill in zip(FEATURES, m["fill"]):
            v = abs(fill) * math.exp(rng.gauss(0.0, 0.4))
            if name in ("hour_of_day",):
                v = rng.randint(0, 23)
            elif name in ("day_of_week",):
                v = rng.randint(0, 6)
            elif name in ("is_business_hours", "is_weekend", "has_target_entity"):
                v = rng.randint(0, 1)
            elif name in ints:
                v = int(round(v))
            else:
                v = round(v, 4)
            f[name] = v
        out.append(f)
    return out


def ours_predict(binary, feats, kernel):
    lines = "".join(json.dumps({"features": f}) + "\n" for f in feats)
    r = subprocess.run([str(binary), "predict", "--kernel", kernel], input=lines.encode(),
                       capture_output=True, check=False)
    if r.returncode != 0:
        sys.exit(f"{binary} predict failed: {r.stderr.decode()[:500]}")
    return [json.loads(l) for l in r.stdout.decode().splitlines()]


# ----------------------------------------------------------- timing

def median_ns(fn, per_batch, batches):
    """Median over batches of the mean CPU time per call, in ns."""
    for _ in range(per_batch):
        fn()
    samples = []
    for _ in range(batches):
        t = time.process_time_ns()
        for _ in range(per_batch):
            fn()
        samples.append((time.process_time_ns() - t) / per_batch)
    return statistics.median(samples)


def criterion_median_ns(group_id):
    p = TARGET / "criterion" / group_id / "new" / "estimates.json"
    with open(p) as f:
        return json.load(f)["median"]["point_estimate"]


def cargo(*args):
    cmd = ["cargo", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernel", default="auto", help="our kernel for the check (default: auto)")
    ap.add_argument("--quick", action="store_true", help="shorter timing runs")
    ap.add_argument("--f32", action="store_true",
                    help="our side with f32 weight storage (cargo --no-default-features) "
                         "instead of the default f16")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest confidence and relative time difference the agreement "
                         "check allows (default 1e-3; the shipped weights are exact in f16, "
                         "so both storage types meet it)")
    args = ap.parse_args()

    m = load_model(ROOT / "weights" / "model.json")
    global FEATURES
    FEATURES = m["features"]
    ens = Ensemble(m)

    # 2. Same model on both sides.
    feat = ["--no-default-features"] if args.f32 else []
    storage = "f32" if args.f32 else "f16"
    tol = args.tolerance
    cargo("build", "--release", "--quiet", *feat)
    binary = TARGET / "release" / "conversion-miner"
    feats = requests(m, 64, seed=7)
    ours = ours_predict(binary, feats, args.kernel)
    worst_conf, worst_time, agree = 0.0, 0.0, 0
    with torch.inference_mode():
        for f, o in zip(feats, ours):
            raw = [float(f[n]) for n in FEATURES]
            x = torch.tensor([inputs_from_raw(raw)], dtype=torch.float32)
            c, t, conf = ens.predict(x)
            agree += c == o["conversion_happened"]
            worst_conf = max(worst_conf, abs(conf - o["confidence"]))
            if c == 1 == o["conversion_happened"]:
                worst_time = max(worst_time, abs(t - o["time_to_conversion_seconds"]) / t)
    print(f"check: {agree}/{len(feats)} classes agree; max |confidence diff| {worst_conf:.2e}; "
          f"max relative time diff {worst_time:.2e}")
    if agree < len(feats) - 1 or worst_conf > tol or worst_time > tol:
        sys.exit("torch and conversion-miner disagree: not the same model; timings would mean nothing")

    # 3. torch timings.
    torch.manual_seed(0)
    x = torch.tensor([inputs_from_raw([float(feats[0][n]) for n in FEATURES])], dtype=torch.float32)
    net = ens.classifiers[0]
    per, batches = (500, 15) if args.quick else (2000, 30)
    with torch.inference_mode():
        t_forward = median_ns(lambda: net(x), per, batches)
        t_ensemble = median_ns(lambda: ens.predict(x), per // 4, batches)

    # 4. ours, same run.
    secs = ["--warm-up-time", "1", "--measurement-time", "2" if args.quick else "5"]
    cargo("bench", "--bench", "forward", *feat, "--", "--noplot", *secs, "^forward/trained/network/")
    cargo("bench", "--bench", "predict", *feat, "--", "--noplot", *secs, "^predict/stage/ensemble/")
    kernels = sorted(p.name for p in (TARGET / "criterion" / "forward_trained_network").iterdir()
                     if (p / "new" / "estimates.json").exists())

    # 5. Table.
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nPyTorch {torch.__version__} ({torch.get_num_threads()} threads) vs conversion-miner"
          f" ({storage} weights), "
          f"CPU {cpu}, {time.strftime('%Y-%m-%d', time.gmtime())}; medians of CPU time per call")
    print(f"{'workload':<34}{'torch':>12}{'ours':>12}{'kernel':>9}{'ratio':>9}")
    for name, torch_ns, gid in [("one forward (classifier 0)", t_forward, "forward_trained_network"),
                                ("ensemble answer (3+2 networks)", t_ensemble, "predict_stage/ensemble")]:
        for k in kernels:
            ours_ns = criterion_median_ns(f"{gid}/{k}")
            print(f"{name:<34}{torch_ns / 1e3:>10.2f}µs{ours_ns / 1e3:>10.3f}µs{k:>9}{torch_ns / ours_ns:>8.0f}x")


FEATURES = []

if __name__ == "__main__":
    main()
