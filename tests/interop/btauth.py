#!/usr/bin/env python3
"""btauth/1 interop: bittensor 11.3.0's `http_auth` against the Rust miner.

Why this exists: bittensor 11 has no Dendrite; a validator on 11.x signs plain
HTTP requests with `bittensor.http_auth.sign` (the `btauth/1` protocol). Our
server's reading of that protocol is only worth something if the real
package's signatures pass and its refusals line up, and our own signer (the
probe's) is only worth something if the real `http_auth.verify` accepts it.

What it does, all on 127.0.0.1 and without a chain:
  1. makes wallets with bittensor 11.3.0 (miner, validator, an ed25519
     validator, stranger) and a validators file naming the two validators;
  2. starts `conversion-miner serve` with the miner's wallet;
  3. sends N conversations (default 500) from a few threads at once, each
     signed by `http_auth.sign` with a fresh nonce and the miner as receiver,
     and checks every answer: 200, the synapse JSON with every input echoed,
     and the same prediction `conversion-miner predict` gives;
  4. checks the refusals: a body altered after signing, a request signed for
     another receiver, an exact replay and a nonce 60 s old get 401; a caller
     not on the validators file gets 403; a request carrying both the axon
     and the btauth/1 headers gets 400; and the miner still answers after;
  5. runs `conversion-miner probe --protocol btauth` through a proxy that
     checks each request with `http_auth.verify` before passing it on, so our
     signer is judged by the reference verifier and the probe still gets the
     miner's answers to check.

Exit status 0 when every check passed, 1 otherwise. Usage:
  python tests/interop/btauth.py --bin target/debug/conversion-miner
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bittensor as bt
from bittensor import http_auth

from common import Checks, close, make_conversations, predict_offline, serve_miner

ROUTE = "/ConversionSynapse"
REQUEST_TIMEOUT_S = 12.0
# Seconds back the stale request's nonce is (the window is 10 s).
STALE_AGE_S = 60
# Requests the probe sends through the verifying proxy.
PROBE_REQUESTS = 100
# bittensor's crypto type codes.
ED25519 = 0
SR25519 = 1


class Nonces:
    """Unique, increasing nanosecond nonces across threads.

    `http_auth.sign` would take `time.time_ns()` itself; two threads may read
    the same nanosecond, and the miner rightly refuses the second as a replay.
    A validator that sends from several threads has to do the same.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


def make_wallet(root: str, name: str, crypto_type: int = SR25519) -> "bt.Wallet":
    w = bt.Wallet(name=name, hotkey="default", path=root)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True, crypto_type=crypto_type)
    return w


def body_of(features: dict, uid: int) -> bytes:
    return json.dumps({"features": features, "miner_uid": uid}).encode()


def signed(signer, body: bytes, receiver: str, nonce_ns: int, path: str = ROUTE) -> dict:
    h = http_auth.sign(signer, method="POST", path=path, body=body, receiver_ss58=receiver, nonce_ns=nonce_ns)
    h["Content-Type"] = "application/json"
    return h


class Client:
    """One keep-alive connection, as a validator's HTTP session keeps."""

    def __init__(self, addr) -> None:
        self.conn = http.client.HTTPConnection(addr[0], addr[1], timeout=REQUEST_TIMEOUT_S)

    def post(self, body: bytes, headers: dict, path: str = ROUTE):
        try:
            self.conn.request("POST", path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The miner closes a connection after refusing a request whose
            # body it never read; the request did not reach it, so send it
            # again on a new connection, as an HTTP client's pool would.
            self.conn.close()
            self.conn.request("POST", path, body=body, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        return r.status, doc, r.getheader("bt_header_axon_status_message", "")

    def close(self) -> None:
        self.conn.close()


def check_answer(c: Checks, tag: str, status: int, doc, sent: dict, uid: int, expected: dict) -> bool:
    if not c.ok(status == 200 and isinstance(doc, dict), "%s: status %s, body %r" % (tag, status, str(doc)[:300])):
        return False
    p = doc.get("prediction")
    if not c.ok(isinstance(p, dict), "%s: no prediction object: %r" % (tag, str(doc)[:300])):
        return False
    cls, t, conf = p.get("conversion_happened"), p.get("time_to_conversion_seconds"), doc.get("confidence")
    good = c.ok(cls in (0, 1) and not isinstance(cls, bool), "%s: class %r not 0/1" % (tag, cls))
    if cls == 0:
        good &= c.ok(t == -1.0, "%s: class 0 with time %r" % (tag, t))
    else:
        good &= c.ok(isinstance(t, float) and t > 0, "%s: class 1 with time %r" % (tag, t))
    good &= c.ok(isinstance(conf, float) and 0.0 <= conf <= 1.0, "%s: confidence %r" % (tag, conf))
    rt = doc.get("response_time")
    good &= c.ok(isinstance(rt, float) and 0.0 <= rt < REQUEST_TIMEOUT_S, "%s: response_time %r" % (tag, rt))
    good &= c.ok(doc.get("features") == sent, "%s: features not echoed intact" % tag)
    good &= c.ok(doc.get("miner_uid") == uid, "%s: miner_uid %r not echoed" % (tag, doc.get("miner_uid")))
    good &= c.ok(cls == expected["conversion_happened"], "%s: class %r, predict says %r" % (tag, cls, expected))
    good &= c.ok(isinstance(t, float) and close(t, expected["time_to_conversion_seconds"]),
                 "%s: time %r, predict says %r" % (tag, t, expected))
    good &= c.ok(isinstance(conf, float) and close(conf, expected["confidence"]),
                 "%s: confidence %r, predict says %r" % (tag, conf, expected))
    return good


def expect_refusal(c: Checks, what: str, got, status: int) -> None:
    code, _doc, message = got
    c.ok(code == status, "%s: expected %d, got %s %r" % (what, status, code, message))
    print("btauth: %s -> %s %s" % (what, code, message))


# ---------------------------------------------------------------- the probe, judged by http_auth.verify


class VerifyingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, miner_addr, miner_hotkey: str) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.miner_addr = miner_addr
        self.miner_hotkey = miner_hotkey
        self.store = http_auth.InMemoryNonceStore()
        self.lock = threading.Lock()
        self.verified = 0
        self.refused: list[str] = []


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: VerifyingProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, headers: list, body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        srv = self.server
        try:
            http_auth.verify(dict(self.headers.items()), body, method="POST", path=self.path,
                             self_hotkey_ss58=srv.miner_hotkey, nonce_store=srv.store)
        except http_auth.AuthError as e:
            with srv.lock:
                srv.refused.append("%s: %s" % (type(e).__name__, e))
            self._answer(401, [("Content-Type", "application/json")], json.dumps({"message": str(e)}).encode())
            return
        with srv.lock:
            srv.verified += 1
        if not hasattr(self, "upstream"):
            self.upstream = http.client.HTTPConnection(*srv.miner_addr, timeout=REQUEST_TIMEOUT_S)
        self.upstream.request("POST", self.path, body=body, headers=dict(self.headers.items()))
        r = self.upstream.getresponse()
        self._answer(r.status, r.getheaders(), r.read())

    def do_GET(self) -> None:
        conn = http.client.HTTPConnection(*self.server.miner_addr, timeout=REQUEST_TIMEOUT_S)
        conn.request("GET", self.path)
        r = conn.getresponse()
        self._answer(r.status, r.getheaders(), r.read())
        conn.close()


def probe_through_verifier(c: Checks, binary: str, addr, miner_hotkey: str, wallet_root: str) -> None:
    proxy = VerifyingProxy(addr, miner_hotkey)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        port = proxy.server_address[1]
        r = subprocess.run(
            [binary, "probe", "--protocol", "btauth", "--target", "127.0.0.1:%d" % port,
             "--hotkey", miner_hotkey, "--wallet.path", wallet_root, "--wallet.name", "validator",
             "--wallet.hotkey", "default", "--n", str(PROBE_REQUESTS), "--concurrency", "2", "--json"],
            capture_output=True, text=True, timeout=120,
        )
        summary = None
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                summary = json.loads(line)
        c.ok(r.returncode == 0, "probe --protocol btauth exited %d:\n%s\n%s" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
        c.ok(summary is not None and summary.get("ok") == PROBE_REQUESTS,
             "probe --protocol btauth: expected %d answers checked ok, summary %r" % (PROBE_REQUESTS, summary))
        c.ok(proxy.verified == PROBE_REQUESTS and not proxy.refused,
             "http_auth.verify accepted %d of the probe's requests (expected %d); refused: %r"
             % (proxy.verified, PROBE_REQUESTS, proxy.refused[:3]))
        print("btauth: probe --protocol btauth: bittensor %s http_auth.verify accepted %d/%d requests; probe checked %s answers"
              % (bt.__version__, proxy.verified, PROBE_REQUESTS, summary.get("ok") if summary else None))
    finally:
        proxy.shutdown()
        proxy.server_close()


# ---------------------------------------------------------------- main checks


def run_checks(args, binary, server, wallets, conversations, expected, wallet_root) -> Checks:
    addr = server.addr
    c = Checks()
    miner = wallets["miner"].hotkey.ss58_address
    validator = wallets["validator"]
    nonces = Nonces()

    # 1. The main run: N conversations from `threads` connections at once.
    results: list = [None] * len(conversations)

    def worker(k: int) -> None:
        cl = Client(addr)
        try:
            for i in range(k, len(conversations), args.threads):
                b = body_of(conversations[i], i % 256)
                # The first request signs through the Wallet object itself,
                # the rest through its hotkey keypair (same key, no file read).
                signer = validator if i == 0 else validator.hotkey
                results[i] = cl.post(b, signed(signer, b, miner, nonces.next()))
        finally:
            cl.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as ex:
        list(ex.map(worker, range(args.threads)))
    wall = time.perf_counter() - t0
    ok = 0
    classes = {0: 0, 1: 0}
    for i, (status, doc, _msg) in enumerate(results):
        if check_answer(c, "request %d" % i, status, doc, conversations[i], i % 256, expected[i]):
            ok += 1
            classes[doc["prediction"]["conversion_happened"]] += 1
    c.ok(ok == len(conversations), "only %d of %d requests fully correct" % (ok, len(conversations)))
    c.ok(classes[0] > 0 and classes[1] > 0, "answers were all one class: %r" % classes)
    print("btauth: bittensor %s http_auth.sign: %d/%d requests succeeded and matched `predict` (class 0: %d, class 1: %d); "
          "%.0f req/s from %d connections" % (bt.__version__, ok, len(conversations), classes[0], classes[1],
                                              len(conversations) / wall, args.threads))

    cl = Client(addr)
    try:
        # 2. An ed25519 hotkey on the validators file is served too.
        ed = wallets["validator_ed25519"]
        ed_ok = 0
        for i in range(3, 8):
            b = body_of(conversations[i], i)
            status, doc, _ = cl.post(b, signed(ed.hotkey, b, miner, nonces.next()))
            ed_ok += check_answer(c, "ed25519 request %d" % i, status, doc, conversations[i], i, expected[i])
        print("btauth: ed25519 signer: %d/5 requests succeeded" % ed_ok)

        # 3. Refusals.
        b = body_of(conversations[0], 0)
        h = signed(validator.hotkey, b, miner, nonces.next())
        altered = body_of(dict(conversations[0], total_messages=conversations[0]["total_messages"] + 1), 0)
        expect_refusal(c, "body altered after signing", cl.post(altered, h), 401)

        stranger = wallets["stranger"].hotkey.ss58_address
        expect_refusal(c, "signed for another receiver",
                       cl.post(b, signed(validator.hotkey, b, stranger, nonces.next())), 401)

        h = signed(validator.hotkey, b, miner, nonces.next())
        first = cl.post(b, h)
        check_answer(c, "request before its replay", first[0], first[1], conversations[0], 0, expected[0])
        expect_refusal(c, "exact replay", cl.post(b, h), 401)

        old = time.time_ns() - STALE_AGE_S * 1_000_000_000
        expect_refusal(c, "nonce %d s old" % STALE_AGE_S, cl.post(b, signed(validator.hotkey, b, miner, old)), 401)

        expect_refusal(c, "signer not on the validators file",
                       cl.post(b, signed(wallets["stranger"].hotkey, b, miner, nonces.next())), 403)

        mixed = signed(validator.hotkey, b, miner, nonces.next())
        mixed["bt_header_dendrite_hotkey"] = validator.hotkey.ss58_address
        expect_refusal(c, "axon and btauth/1 headers together", cl.post(b, mixed), 400)

        # 4. Still serving the good validator afterwards.
        b = body_of(conversations[2], 2)
        status, doc, _ = cl.post(b, signed(validator.hotkey, b, miner, nonces.next()))
        check_answer(c, "request after the refusals", status, doc, conversations[2], 2, expected[2])

        # 5. The metrics (on the operator listener) count the protocol.
        ops = http.client.HTTPConnection(*server.metrics_addr, timeout=REQUEST_TIMEOUT_S)
        ops.request("GET", "/metrics")
        text = ops.getresponse().read().decode()
        ops.close()
        line = 'cm_requests_total{route="ConversionSynapse",protocol="btauth"} '
        counted = [float(l[len(line):]) for l in text.splitlines() if l.startswith(line)]
        c.ok(counted and counted[0] >= len(conversations), "metrics: %r" % counted)
    finally:
        cl.close()

    # 6. Our signer, judged by the reference verifier.
    probe_through_verifier(c, binary, addr, miner, wallet_root)
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="path to the conversion-miner binary")
    ap.add_argument("--n", type=int, default=500, help="conversations to send (default 500)")
    ap.add_argument("--seed", type=int, default=20261207, help="seed for the conversations")
    ap.add_argument("--threads", type=int, default=4, help="connections sending at once (default 4)")
    ap.add_argument("--expect-version", help="fail unless this bittensor version is the one imported")
    args = ap.parse_args()
    if args.n < 8 or args.threads < 1:
        ap.error("--n must be at least 8 and --threads at least 1")
    if args.expect_version and bt.__version__ != args.expect_version:
        print("FAIL: bittensor %s imported, %s expected" % (bt.__version__, args.expect_version), file=sys.stderr)
        return 1
    binary = os.path.abspath(args.bin)

    with tempfile.TemporaryDirectory(prefix="cm-btauth-") as tmp:
        wallets = {name: make_wallet(tmp, name) for name in ("miner", "validator", "stranger")}
        wallets["validator_ed25519"] = make_wallet(tmp, "validator_ed25519", ED25519)
        validators_file = os.path.join(tmp, "validators.txt")
        with open(validators_file, "w") as fh:
            fh.write("# btauth interop test: only these hotkeys may query the miner\n")
            fh.write("%s, 1000\n" % wallets["validator"].hotkey.ss58_address)
            fh.write("%s, 500\n" % wallets["validator_ed25519"].hotkey.ss58_address)

        conversations = make_conversations(args.n, args.seed)
        expected = predict_offline(binary, conversations)
        bad = [e for e in expected if "error" in e]
        if bad:
            print("FAIL: predict refused %d of the test conversations, e.g. %r" % (len(bad), bad[0]), file=sys.stderr)
            return 1

        server = serve_miner(binary, tmp, validators_file)
        try:
            addr = server.wait_ready()
            print("btauth: miner %s listening on %s:%d" % (wallets["miner"].hotkey.ss58_address, addr[0], addr[1]))
            checks = run_checks(args, binary, server, wallets, conversations, expected, tmp)
            checks.ok(server.alive(), "server exited during the run")
        finally:
            server.stop()
        return checks.report("btauth", server)


if __name__ == "__main__":
    sys.exit(main())
