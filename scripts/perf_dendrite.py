#!/usr/bin/env python3
"""Server CPU per verified request, with real bittensor Dendrites at a validator's rate.

`scripts/perf-server.sh` measures with our own `probe` at full speed, where
the server's thread wake-ups and syscalls are shared by many requests at once.
Validators send far fewer: a few dendrites, a few requests in flight each,
about 100 requests/s in all. This script measures that case with the real
Python client, so the figure is what an operator's machine pays per request.

What it does, on 127.0.0.1 only:
  1. makes a throwaway miner wallet and one validator wallet, writes a
     validators file naming the validator, starts `conversion-miner serve`;
  2. warms up for a few seconds, then reads the server's CPU time and
     `cm_success_total` (/metrics, on the operator listener). CPU time comes from two places: the sum
     of every thread's run time in nanoseconds (/proc/PID/task/*/schedstat)
     for the total, and utime/stime (/proc/PID/stat, all threads, in clock
     ticks of 10 ms) for the user/system split of that total;
  3. runs DENDRITES `bt.Dendrite` objects with INFLIGHT requests in flight
     each, every slot on a fixed schedule so the total is RATE requests/s
     (keep-alive: each dendrite reuses its aiohttp session), for SECONDS;
  4. reads the counters again and prints the server CPU per answered request,
     split into user and system time, with the rate actually reached.
Every answer is checked (success, valid prediction); any failure fails the run.

Usage (bittensor 10.5.0 in the interpreter):
  python scripts/perf_dendrite.py --bin target/release/conversion-miner \
      [--dendrites 4] [--inflight 2] [--rate 100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))

import interop  # noqa: E402  (stubs the Dendrite's public-IP lookup on import)
import bittensor as bt  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) seconds of every thread of `pid` so far."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_run_ns(pid: int) -> tuple[int, int, int]:
    """(run time in ns and times a thread went to sleep, each summed over the
    live threads of `pid`; thread count). A sleep is a voluntary context
    switch: waiting in epoll or on a futex, so each one is a wake-up later."""
    total = 0
    sleeps = 0
    threads = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        sleeps += int(line.split()[1])
            total += ns
            threads += 1
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread exited between listdir and open
    return total, sleeps, threads


def metrics_addr(server) -> tuple[str, int]:
    """The operator listener (/metrics) from the server's "metrics on IP:PORT" line."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(server.lines):
            if line.startswith("metrics on "):
                ip, port = line.split()[-1].rsplit(":", 1)
                return ip, int(port)
        time.sleep(0.05)
    raise RuntimeError("server printed no 'metrics on IP:PORT' line:\n%s" % server.tail())


def successes(addr: tuple[str, int]) -> int:
    with urllib.request.urlopen("http://%s:%d/metrics" % addr, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("cm_success_total"):
            return int(float(line.split()[-1]))
    raise RuntimeError("cm_success_total missing from /metrics")


async def load(args, axon, validator_wallet, conversations, seconds: float) -> tuple[int, int, list[float]]:
    dendrites = [bt.Dendrite(wallet=validator_wallet) for _ in range(args.dendrites)]
    slots = args.dendrites * args.inflight
    interval = slots / args.rate
    ok = 0
    bad = 0
    latencies: list[float] = []
    start = time.perf_counter() + 0.2
    stop = start + seconds

    async def slot(k: int) -> None:
        nonlocal ok, bad
        d = dendrites[k % len(dendrites)]
        # Spread the slots over one interval so the total rate is even.
        due = start + interval * k / slots
        i = k
        while due < stop and time.perf_counter() < stop:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            syn = interop.ConversionSynapse(features=conversations[i % len(conversations)], miner_uid=0)
            t = time.perf_counter()
            got = await d.call(axon, syn, timeout=interop.REQUEST_TIMEOUT_S, deserialize=False)
            latencies.append(time.perf_counter() - t)
            p = got.prediction
            if got.is_success and p.get("conversion_happened") in (0, 1):
                ok += 1
            else:
                bad += 1
                print("perf_dendrite: request failed: %s %r" % (got.dendrite.status_code, got.dendrite.status_message), file=sys.stderr)
            i += slots
            due += interval

    try:
        await asyncio.gather(*(slot(k) for k in range(slots)))
    finally:
        for d in dendrites:
            await d.aclose_session()
    return ok, bad, latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the conversion-miner binary (a release build)")
    ap.add_argument("--dendrites", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=2, help="requests in flight per dendrite")
    ap.add_argument("--rate", type=float, default=100.0, help="total requests/s")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=None, help="serve --workers (default: the server's own)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="cm-perf-dendrite-")
    miner = interop.make_wallet(tmp, "miner")
    validator = interop.make_wallet(tmp, "validator")
    vfile = os.path.join(tmp, "validators.txt")
    with open(vfile, "w") as f:
        f.write("%s,1000\n" % validator.hotkey.ss58_address)
    extra = ["--log-level", "warn"]
    if args.workers:
        extra += ["--workers", str(args.workers)]
    server = interop.serve_miner(args.bin, tmp, vfile, tuple(extra))
    try:
        addr = server.wait_ready()
        ops = metrics_addr(server)
        axon = bt.AxonInfo(version=0, ip=addr[0], port=addr[1], ip_type=4,
                           hotkey=miner.hotkey.ss58_address, coldkey=miner.hotkey.ss58_address)
        conversations = interop.make_conversations(2000, seed=7)
        asyncio.run(load(args, axon, validator, conversations, args.warmup))
        print("perf_dendrite: server pid %d, measuring for %.0f s" % (server.proc.pid, args.seconds), file=sys.stderr, flush=True)
        u0, s0 = proc_cpu(server.proc.pid)
        r0, w0, th0 = proc_run_ns(server.proc.pid)
        n0 = successes(ops)
        t0 = time.perf_counter()
        ok, bad, lat = asyncio.run(load(args, axon, validator, conversations, args.seconds))
        wall = time.perf_counter() - t0
        u1, s1 = proc_cpu(server.proc.pid)
        r1, w1, th1 = proc_run_ns(server.proc.pid)
        n1 = successes(ops)
    finally:
        server.stop()
    n = n1 - n0
    if bad or n <= 0 or n != ok:
        print("perf_dendrite: FAILED: %d ok, %d failed, server counted %d" % (ok, bad, n), file=sys.stderr)
        return 1
    user, sys_ = (u1 - u0) / n, (s1 - s0) / n
    # The total from nanosecond run times when every thread lived through
    # the run (a thread that exited takes its run time with it); the split
    # from the clock ticks, scaled to that total.
    ticks = user + sys_
    if th0 == th1 and r1 > r0:
        run = (r1 - r0) / 1e9 / n
        source = "schedstat ns, %d threads" % th1
    else:
        run = ticks
        source = "clock ticks (thread count changed %d -> %d)" % (th0, th1)
    share = user / ticks if ticks > 0 else 0.0
    lat.sort()
    print("perf_dendrite: bittensor %s, %d dendrites x %d in flight, %.1f req/s for %.1f s (%d answered)"
          % (bt.__version__, args.dendrites, args.inflight, n / wall, wall, n))
    print("perf_dendrite: server CPU per verified request %.1f us (user %.1f us, system %.1f us; total from %s)"
          % (1e6 * run, 1e6 * run * share, 1e6 * run * (1 - share), source))
    print("perf_dendrite: clock ticks alone: %.1f us (user %.1f us, system %.1f us; 10 ms ticks over %d requests)"
          % (1e6 * ticks, 1e6 * user, 1e6 * sys_, n))
    print("perf_dendrite: server threads went to sleep %.2f times per request (voluntary context switches)"
          % ((w1 - w0) / n))
    print("perf_dendrite: load average %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    print("perf_dendrite: client round trip p50 %.2f ms, p99 %.2f ms"
          % (1e3 * lat[len(lat) // 2], 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
