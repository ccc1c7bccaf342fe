"""The routing table a ModelDeployment's state calls for, and the traffic it reports."""

from __future__ import annotations

from pilotage.api.modeldeployment import LoggingStatus, ModelDeploymentSpec
from pilotage.control.common import short_hash
from pilotage.control.strategies import strategy_for
from pilotage.control.types import RouteLogging, RouterStats, RouteTable, RouteVariant


def route_logging(spec: ModelDeploymentSpec, namespace: str) -> RouteLogging | None:
    """The router's inference-logging settings, or None when logging is off."""
    logging = spec.logging
    if logging.sample_rate <= 0 or logging.sink is None:
        return None
    return RouteLogging(
        sample_rate=logging.sample_rate,
        sink_uri=logging.sink.uri,
        namespace=namespace,
        redact=tuple(sorted(set(logging.redact))),
        shadow=logging.shadow,
        sink_timeout_seconds=logging.sink.timeout_seconds,
    )


def build_table(
    spec: ModelDeploymentSpec,
    stable: str,
    candidate: str | None,
    canary_weight: int,
    namespace: str = "default",
) -> RouteTable:
    """Stable gets the rest of 100; a candidate that shares traffic `canary_weight`;
    one that does not (preview, shadow) 0.

    `candidate` is None unless the candidate's server is ready to receive requests.
    """
    strategy = strategy_for(spec)
    sticky = strategy.sticky_header(spec)
    if candidate is None:
        mode = strategy.idle_mode or strategy.mode
        variants: tuple[RouteVariant, ...] = (RouteVariant("stable", stable, 100),)
        shadow = None
    else:
        mode = strategy.mode
        weight = max(0, min(100, canary_weight)) if strategy.shares_traffic else 0
        variants = (
            RouteVariant("stable", stable, 100 - weight),
            RouteVariant(strategy.candidate_role, candidate, weight),
        )
        shadow = strategy.mirror(spec)
    logging = route_logging(spec, namespace)
    content = repr((mode, variants, sticky, shadow))
    if logging is not None:  # tables without logging keep the revisions they had
        content += repr(logging)
    return RouteTable(
        mode=mode,
        variants=variants,
        sticky_header=sticky,
        shadow=shadow,
        revision=short_hash(content, 12),
        logging=logging,
    )


def traffic(table: RouteTable) -> dict[str, int]:
    return table.weights()


def traffic_summary(table: RouteTable) -> str:
    text = " / ".join(f"{v.name} {v.weight}" for v in table.variants)
    if table.shadow is not None:
        text += f" (mirrors {table.shadow.percent}%)"
    return text


def logging_status(
    spec: ModelDeploymentSpec, stats: RouterStats | None, previous: LoggingStatus | None
) -> LoggingStatus | None:
    """`status.logging` from the router's counters; unchanged while the router cannot
    say (not ready), None when logging is off and the router never logged."""
    if stats is None:
        return previous
    counters = stats.logging
    if counters is None:
        return None if spec.logging.sample_rate <= 0 else LoggingStatus()
    return LoggingStatus(
        written=counters.written,
        labels=counters.labels,
        dropped=counters.dropped,
        last_error=(counters.last_error or "")[:1024],
    )
