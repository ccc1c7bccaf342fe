"""Prometheus text exposition of the router's counters (DESIGN §4 names).

Series carry ``deployment`` and ``variant`` as in the design, plus ``version`` so
that a new canary version is a new series (sum it away with ``sum without(version)``).
"""

from __future__ import annotations

from pilotage.router.state import RouterState
from pilotage.router.stats import LATENCY_BOUNDS


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())


def render_metrics(state: RouterState) -> str:
    active = state.active
    table = active.table
    dep = table.deployment
    registry = state.registry
    out: list[str] = []

    out.append(
        "# HELP pilotage_router_requests_total Requests answered by the router, per variant and status code."
    )
    out.append("# TYPE pilotage_router_requests_total counter")
    for s in registry.all():
        for code, n in sorted(s.codes.items()):
            out.append(
                f"pilotage_router_requests_total{{{_labels(deployment=dep, variant=s.name, version=s.version, code=str(code))}}} {n}"
            )

    out.append(
        "# HELP pilotage_router_request_duration_seconds Upstream round trip seen by the router, per variant."
    )
    out.append("# TYPE pilotage_router_request_duration_seconds histogram")
    for s in registry.all():
        base = _labels(deployment=dep, variant=s.name, version=s.version)
        cumulative = 0
        for bound, count in zip(LATENCY_BOUNDS, s.latency_counts, strict=False):
            cumulative += count
            out.append(
                f'pilotage_router_request_duration_seconds_bucket{{{base},le="{bound:g}"}} {cumulative}'
            )
        out.append(
            f'pilotage_router_request_duration_seconds_bucket{{{base},le="+Inf"}} {s.requests}'
        )
        out.append(f"pilotage_router_request_duration_seconds_sum{{{base}}} {s.latency_sum:.9g}")
        out.append(f"pilotage_router_request_duration_seconds_count{{{base}}} {s.requests}")

    out.append(
        "# HELP pilotage_router_retries_total Requests that failed on a canary and were answered by stable."
    )
    out.append("# TYPE pilotage_router_retries_total counter")
    for s in registry.all():
        out.append(
            f"pilotage_router_retries_total{{{_labels(deployment=dep, variant=s.name, version=s.version)}}} {s.retried_on_stable}"
        )

    out.append(
        "# HELP pilotage_router_traffic_weight Share of user traffic (percent) the active table gives each variant."
    )
    out.append("# TYPE pilotage_router_traffic_weight gauge")
    for v in table.variants:
        out.append(
            f"pilotage_router_traffic_weight{{{_labels(deployment=dep, variant=v.name)}}} {v.weight}"
        )

    activator = state.activator
    names = [v.name for v in table.variants]
    scaling = (
        ("pilotage_router_replicas", "gauge", "Replicas the active table gives each variant.",
         {v.name: len(active.routes[v.name].replicas) for v in table.variants}),
        ("pilotage_router_in_flight_requests", "gauge",
         "Requests in progress at each variant's replicas.",
         {n: active.routes[n].stats.in_flight for n in names}),
        ("pilotage_router_held_requests", "gauge",
         "Requests waiting in the router for a variant at zero replicas.", activator.held),
        ("pilotage_router_cold_starts_total", "counter",
         "Requests that waited for a variant at zero and were then sent to its first replica.",
         activator.activations),
        ("pilotage_router_cold_start_seconds_total", "counter",
         "Seconds those requests waited (divide by cold_starts_total for the mean).",
         activator.cold_start_seconds),
        ("pilotage_router_activation_timeouts_total", "counter",
         "Held requests answered 503: no replica within the activation timeout.",
         activator.timeouts),
        ("pilotage_router_activation_refused_total", "counter",
         "Requests answered 503 at once: too many held already.", activator.refused),
    )  # fmt: skip
    for metric, kind, help_text, values in scaling:
        out.append(f"# HELP {metric} {help_text}")
        out.append(f"# TYPE {metric} {kind}")
        for name in sorted(set(names) | set(values)):
            value = values.get(name, 0)
            out.append(f"{metric}{{{_labels(deployment=dep, variant=name)}}} {value:.9g}")

    out.append("# HELP pilotage_router_table_generation Routing tables applied since start.")
    out.append("# TYPE pilotage_router_table_generation gauge")
    out.append(f"pilotage_router_table_generation{{{_labels(deployment=dep)}}} {state.generation}")

    shadow = registry.shadow
    out.append(
        "# HELP pilotage_shadow_comparisons_total Shadow answers compared with the primary's."
    )
    out.append("# TYPE pilotage_shadow_comparisons_total counter")
    for result, n in (
        ("agree", shadow.agree),
        ("disagree", shadow.disagree),
        ("error", shadow.error),
    ):
        out.append(
            f"pilotage_shadow_comparisons_total{{{_labels(deployment=dep, result=result)}}} {n}"
        )
    out.append(
        "# HELP pilotage_shadow_dropped_total Shadow copies dropped (queue full or shadow backing off)."
    )
    out.append("# TYPE pilotage_shadow_dropped_total counter")
    out.append(f"pilotage_shadow_dropped_total{{{_labels(deployment=dep)}}} {shadow.dropped}")

    fb_labels = (
        (
            "pilotage_router_feedback_labelled_total",
            "Feedback labels scored, per variant.",
            "labelled",
        ),
        (
            "pilotage_router_feedback_correct_total",
            "Feedback labels the variant predicted right.",
            "correct",
        ),
        (
            "pilotage_router_feedback_valued_total",
            "Feedback regression values scored, per variant.",
            "valued",
        ),
        (
            "pilotage_router_feedback_abs_error_total",
            "Sum of |prediction - value| over regression feedback.",
            "abs_error_sum",
        ),
    )
    for name, help_text, attr in fb_labels:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} counter")
        for s in registry.all():
            value = getattr(s.feedback, attr)
            out.append(
                f"{name}{{{_labels(deployment=dep, variant=s.name, version=s.version)}}} {value:.9g}"
            )
    log_stats = state.inference_log_json()
    if log_stats is not None:
        out.append(
            "# HELP pilotage_router_inference_log_records_total Inference-log records written "
            "(kind request or label)."
        )
        out.append("# TYPE pilotage_router_inference_log_records_total counter")
        for kind, key in (("request", "written"), ("label", "labelsWritten")):
            out.append(
                f"pilotage_router_inference_log_records_total{{{_labels(deployment=dep, kind=kind)}}} {log_stats[key]}"
            )
        out.append(
            "# HELP pilotage_router_inference_log_dropped_total Inference-log records dropped: "
            "buffer full (a slow sink) or lost with a failed sink write."
        )
        out.append("# TYPE pilotage_router_inference_log_dropped_total counter")
        for reason, key in (
            ("buffer_full", "droppedBufferFull"),
            ("sink_failed", "droppedSinkFailed"),
        ):
            out.append(
                f"pilotage_router_inference_log_dropped_total{{{_labels(deployment=dep, reason=reason)}}} {log_stats[key]}"
            )
    out.append("")
    return "\n".join(out)
