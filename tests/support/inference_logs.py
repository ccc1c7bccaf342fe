"""Inference-log records written the way a router's writer thread writes them, for tests
that read logs without running a router."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pilotage.inferencelog.config import LoggingConfig
from pilotage.inferencelog.record import Exchange, Label, label_record, request_record
from pilotage.inferencelog.sinks import FileSink

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def _no_names(upstream: str, model: str, version: str) -> list[str] | None:
    return None


class Log:
    """Writes request and label records the way the router's writer thread does."""

    def __init__(self, root: Path, deployment: str = "iris"):
        self.deployment = deployment
        self.sink = FileSink(LoggingConfig(sample_rate=1.0, sink_uri=root.as_uri()), deployment)
        self.uri = root.as_uri()

    def request(
        self,
        rid: str,
        rows: list[list[float]],
        t: datetime,
        status: int = 200,
        shadow: bool = False,
    ) -> None:
        body = json.dumps({"instances": [dict(zip(FEATURES, r, strict=True)) for r in rows]})
        answer = json.dumps({"predictions": [0] * len(rows)}) if status < 400 else None
        ex = Exchange(
            t.timestamp(), rid.encode(), "stable", "v1", "http://127.0.0.1:1",
            "/v1/models/iris:predict", body.encode(), status,
            answer.encode() if answer else b'{"error": "boom"}', 0.002, None, shadow,
        )  # fmt: skip
        record = request_record(ex, "default", self.deployment, _no_names, frozenset())
        self.sink.write([record], t.timestamp())

    def label(self, rid: str, truth: Any, t: datetime) -> None:
        record = label_record(Label(t.timestamp(), rid, "label", truth), "default", self.deployment)
        self.sink.write([record], t.timestamp())

    def close(self) -> None:
        self.sink.close()
