"""Test traffic through a router: keep-alive HTTP clients in threads, every answer recorded."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    variant: str
    version: str
    request_id: str
    body: bytes
    seconds: float


class Client:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"content-type": "application/json", **(headers or {})}
        started = time.perf_counter()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=data, headers=all_headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        return Answer(
            status=resp.status,
            variant=resp.getheader("x-pilotage-variant", ""),
            version=resp.getheader("x-pilotage-model-version", ""),
            request_id=resp.getheader("x-pilotage-request-id", ""),
            body=raw,
            seconds=time.perf_counter() - started,
        )

    def predict(
        self, rows: list[list[float]], headers: dict[str, str] | None = None, model: str = "iris"
    ) -> Answer:
        return self.request("POST", f"/v1/models/{model}:predict", {"instances": rows}, headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def get_json(base_url: str, path: str, token: str | None = None) -> Any:
    client = Client(base_url)
    headers = {"authorization": f"Bearer {token}"} if token else None
    answer = client.request("GET", path, headers=headers)
    client.close()
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def put_routes(admin_url: str, token: str, doc: dict[str, Any]) -> Answer:
    client = Client(admin_url)
    answer = client.request("PUT", "/admin/routes", doc, {"authorization": f"Bearer {token}"})
    client.close()
    return answer


@dataclass
class Traffic:
    """Threads sending predictions until stopped; per-thread answers in order."""

    base_url: str
    threads: int = 4
    rows: Callable[[int], list[list[float]]] = lambda i: [[float(i % 10), 1.0, 2.0, 3.0]]
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[list[Answer]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        self.answers = [[] for _ in range(self.threads)]
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self, t: int) -> None:
        client = Client(self.base_url)
        i = 0
        while not self._stop.is_set():
            try:
                answer = client.predict(self.rows(i), self.headers)
            except Exception as exc:  # a client-visible failure is what the tests count
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if answer.status != 200:
                self.failures.append(f"HTTP {answer.status}: {answer.body[:200]!r}")
            self.answers[t].append(answer)
            i += 1
        client.close()

    def count(self, variant: str | None = None) -> int:
        return sum(
            1 for per in self.answers for a in list(per) if variant is None or a.variant == variant
        )

    def all(self) -> list[Answer]:
        return [a for per in self.answers for a in per]

    def mark(self) -> list[int]:
        """Where each thread's answers stand now (for ``before`` and ``since``)."""
        return [len(per) for per in self.answers]

    def before(self, mark: list[int]) -> list[Answer]:
        return [a for per, n in zip(self.answers, mark, strict=True) for a in per[:n]]

    def since(self, mark: list[int]) -> list[Answer]:
        """The answers each thread received after ``mark`` (``all()`` concatenates the
        threads' lists: slicing it by a count does not split by time)."""
        return [a for per, n in zip(self.answers, mark, strict=True) for a in per[n:]]
