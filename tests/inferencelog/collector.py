"""A CloudEvents collector for tests: a real process that appends every event it receives.

    python -m tests.inferencelog.collector --port P --out events.jsonl [--mode ok|hang|refuse]

``ok`` stores each event of a ``application/cloudevents-batch+json`` POST as one line
of ``--out`` (with the batch's content type) and answers 202; ``hang`` reads the body and
never answers; ``refuse`` answers 503.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", default="ok", choices=["ok", "hang", "refuse"])
    args = p.parse_args()
    lock = threading.Lock()
    forever = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if args.mode == "hang":
                forever.wait()
                return
            if args.mode == "refuse":
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            ctype = self.headers.get("content-type", "")
            lines = [json.dumps({"contentType": ctype, "event": e}) for e in json.loads(body)]
            with lock, args.out.open("a") as f:
                f.write("".join(line + "\n" for line in lines))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
