"""A hostile client, run as its own process so that it does not share the measuring
test's interpreter:

    python -m tests.security.attacker HOST PORT MODE [N]

Modes: ``bytes`` (V2 binary BYTES tensor of 7 MiB to a numeric model, in a loop),
``rows`` (V1 body of 7 MB, 300,000 rows, in a loop), ``slowloris`` (N connections that
send a partial request header, one byte every 0.2 s), ``partial`` (N uploads that
declare 15 MB (``partial:BYTES``: that many), send 1 MB and stall). It prints ``ready`` once started and, on SIGTERM,
a JSON summary: the answers' status codes and how many connections the peer closed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter

STOP = threading.Event()
HARD_STOP = threading.Event()  # slowloris connections keep dripping until this
codes: Counter[str] = Counter()
closed = 0
refused = 0  # held connections that were answered, closed or reset: not kept by the peer
lock = threading.Lock()


def status_of(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return "closed"
        data += chunk
    return data.split(b" ", 2)[1].decode()


def loop_bodies(host: str, port: int, request: bytes) -> None:
    while not STOP.is_set():
        try:
            with socket.create_connection((host, port), timeout=30) as sock:
                # the server may answer (and close) before the whole body is sent
                with contextlib.suppress(OSError):
                    sock.sendall(request)
                code = status_of(sock)
        except OSError as exc:
            code = type(exc).__name__
        with lock:
            codes[code] += 1


def bytes_request() -> bytes:
    element = b"x" * 60
    count = 7 * 1024 * 1024 // 64  # 7 MiB: under the server's 8 MiB body limit
    raw = b"".join(struct.pack("<I", len(element)) + element for _ in range(count))
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [count // 4, 4],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    body = head + raw
    return (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"inference-header-content-length: %d\r\ncontent-length: %d\r\n\r\n"
        % (len(head), len(body))
    ) + body


def rows_request() -> bytes:
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 300_000}).encode()  # 7 MB
    return (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    ) + body


def hold(host: str, port: int, first: bytes, drip: bytes | None) -> None:
    """Open a connection, send ``first``, then drip ``drip`` until the peer closes (a
    dripping connection keeps going after SIGTERM, for a few seconds, to see it closed)."""
    stop = HARD_STOP if drip else STOP
    global closed, refused
    answered = False
    try:
        sock = socket.create_connection((host, port), timeout=60)
        sock.sendall(first)
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sock.recv(65536)
                if not data:
                    break
                if not answered and data.startswith(b"HTTP/1.1 "):
                    answered = True
                    with lock:
                        codes[data.split(b" ", 2)[1].decode()] += 1
                        refused += 1
            except TimeoutError:
                if drip:
                    sock.sendall(drip)
                continue
        else:
            sock.close()
            return
        sock.close()
    except OSError:
        pass
    with lock:
        closed += 1
        if not answered:
            refused += 1


def main() -> None:
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    threads = []
    if mode in ("bytes", "rows"):
        request = bytes_request() if mode == "bytes" else rows_request()
        threads = [
            threading.Thread(target=loop_bodies, args=(host, port, request)) for _ in range(n)
        ]
    elif mode == "slowloris":
        first = b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n"
        threads = [threading.Thread(target=hold, args=(host, port, first, b"a")) for _ in range(n)]
    elif mode.startswith("partial"):
        declared = int(mode.partition(":")[2] or 15_000_000)
        head = (
            b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % declared
        )
        first = head + b'{"instances": [' + b" " * 1_000_000
        threads = [threading.Thread(target=hold, args=(host, port, first, None)) for _ in range(n)]
    for t in threads:
        t.daemon = True
        t.start()
    print("ready", flush=True)
    while not STOP.is_set():
        time.sleep(0.05)
    deadline = time.monotonic() + (10 if mode == "slowloris" else 0)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    HARD_STOP.set()
    for t in threads:
        t.join(5)
    with lock:
        print(json.dumps({"codes": dict(codes), "closed": closed, "refused": refused}), flush=True)


if __name__ == "__main__":
    main()
