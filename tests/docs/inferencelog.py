"""Records for the shape checks of docs/inference-logging.md, made by the code the router
runs (pilotage.inferencelog.record) from an iris request and answer."""

from __future__ import annotations

import time
from typing import Any

import orjson

from pilotage.inferencelog.record import Exchange, Label, label_record, request_record

NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def sample(kind: str) -> dict[str, Any]:
    now = time.time()
    if kind == "label":
        return label_record(Label(now, "5f0c2d8e", "label", 0), "default", "iris")
    exchange = Exchange(
        now, b"5f0c2d8e", "stable", "v1", "http://127.0.0.1:8081", "/v1/models/iris:predict",
        orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}), 200,
        b'{"predictions":[0],"probabilities":[[0.98,0.02,0.0]]}', 0.00193, None, False,
    )  # fmt: skip
    return request_record(
        exchange, "default", "iris", lambda *_: NAMES, frozenset({"petal_width_cm"})
    )
