#!/usr/bin/env python3
"""Print the median of every criterion result under $CARGO_TARGET_DIR/criterion
(default target/criterion), one line each, optionally filtered by a regex.

    python3 benches/medians.py [REGEX]
"""
import json
import os
import re
import sys
from pathlib import Path

root = Path(os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parents[1] / "target")) / "criterion"
pattern = re.compile(sys.argv[1] if len(sys.argv) > 1 else "")
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    name = bench["full_id"]
    if not pattern.search(name):
        continue
    med = json.loads(est.read_text())["median"]
    ns, lo, hi = med["point_estimate"], med["confidence_interval"]["lower_bound"], med["confidence_interval"]["upper_bound"]
    unit, f = ("µs", 1e3) if ns >= 1e3 else ("ns", 1.0)
    print(f"{name:<44} median {ns / f:9.3f} {unit}   (95% CI {lo / f:.3f}..{hi / f:.3f})")
