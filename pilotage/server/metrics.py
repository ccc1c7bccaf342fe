"""Prometheus text exposition for the server's metrics (names as in DESIGN §4)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from pilotage.server.drift import DriftCounter

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    __slots__ = ("bounds", "buckets", "count", "total")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.buckets = [0] * (len(self.bounds) + 1)  # last: +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str, labels: str) -> list[str]:
        out = []
        cumulative = 0
        for bound, n in zip(self.bounds, self.buckets, strict=False):
            cumulative += n
            out.append(f'{name}_bucket{{{labels},le="{_fmt(bound)}"}} {cumulative}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.total!r}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class ServerMetrics:
    def __init__(self, model: str, version: str, drift: DriftCounter, batching: bool) -> None:
        self.base = f'model="{_escape(model)}",version="{_escape(version)}"'
        self.drift = drift
        self.batching = batching
        self.requests: dict[tuple[str, int], int] = {}
        self.in_flight = 0
        # set when inference runs on a worker thread: onnxruntime calls running there now
        self.inference_running: Callable[[], int] | None = None
        self.request_duration = Histogram(LATENCY_BUCKETS)
        self.inference_duration = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)

    def count_request(self, protocol: str, code: int, seconds: float) -> None:
        key = (protocol, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.request_duration.observe(seconds)

    def render(self) -> str:
        b = self.base
        lines = [
            "# HELP pilotage_server_requests_total Inference requests by protocol and status code.",
            "# TYPE pilotage_server_requests_total counter",
        ]
        for (protocol, code), n in sorted(self.requests.items()):
            lines.append(
                f'pilotage_server_requests_total{{{b},protocol="{protocol}",code="{code}"}} {n}'
            )
        lines += [
            "# HELP pilotage_server_requests_in_flight Inference requests being handled now.",
            "# TYPE pilotage_server_requests_in_flight gauge",
            f"pilotage_server_requests_in_flight{{{b}}} {self.in_flight}",
            "# HELP pilotage_server_request_duration_seconds Inference request time, body read to response.",
            "# TYPE pilotage_server_request_duration_seconds histogram",
            *self.request_duration.lines("pilotage_server_request_duration_seconds", b),
            "# HELP pilotage_server_inference_duration_seconds Time in onnxruntime per call.",
            "# TYPE pilotage_server_inference_duration_seconds histogram",
            *self.inference_duration.lines("pilotage_server_inference_duration_seconds", b),
        ]
        if self.inference_running is not None:
            lines += [
                "# HELP pilotage_server_inference_running onnxruntime calls running on the inference thread now.",
                "# TYPE pilotage_server_inference_running gauge",
                f"pilotage_server_inference_running{{{b}}} {self.inference_running()}",
            ]
        if self.batching:
            lines += [
                "# HELP pilotage_server_batch_size Rows per onnxruntime call.",
                "# TYPE pilotage_server_batch_size histogram",
                *self.batch_size.lines("pilotage_server_batch_size", b),
            ]
        lines += [
            "# HELP pilotage_feature_bin_total Observed feature values per baseline bin.",
            "# TYPE pilotage_feature_bin_total counter",
        ]
        for feature, counts in self.drift.feature_counts().items():
            f = _escape(feature)
            for bin_label, n in counts.items():
                lines.append(
                    f'pilotage_feature_bin_total{{{b},feature="{f}",bin="{_escape(bin_label)}"}} {n}'
                )
        lines += [
            "# HELP pilotage_feature_out_of_schema_total Feature values outside the Dataset "
            "schema (below min, above max, not an int, not a bool).",
            "# TYPE pilotage_feature_out_of_schema_total counter",
        ]
        for feature, n in self.drift.out_of_schema_counts().items():
            lines.append(
                f'pilotage_feature_out_of_schema_total{{{b},feature="{_escape(feature)}"}} {n}'
            )
        if self.drift.is_classifier:
            lines += [
                "# HELP pilotage_prediction_total Predictions per class.",
                "# TYPE pilotage_prediction_total counter",
            ]
            for cls, n in self.drift.prediction_counts().items():
                lines.append(f'pilotage_prediction_total{{{b},class="{_escape(cls)}"}} {n}')
        else:
            lines += [
                "# HELP pilotage_prediction_bin_total Predicted values per baseline bin.",
                "# TYPE pilotage_prediction_bin_total counter",
            ]
            for bin_label, n in self.drift.prediction_counts().items():
                lines.append(f'pilotage_prediction_bin_total{{{b},bin="{bin_label}"}} {n}')
        return "\n".join(lines) + "\n"
