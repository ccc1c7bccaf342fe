"""The routing table a ModelDeployment's state calls for, and the traffic it reports."""

from __future__ import annotations

from pilotage.api.modeldeployment import ModelDeploymentSpec
from pilotage.control.common import short_hash
from pilotage.control.strategies import strategy_for
from pilotage.control.types import RouteTable, RouteVariant


def build_table(
    spec: ModelDeploymentSpec, stable: str, candidate: str | None, canary_weight: int
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
    content = repr((mode, variants, sticky, shadow))
    return RouteTable(
        mode=mode,
        variants=variants,
        sticky_header=sticky,
        shadow=shadow,
        revision=short_hash(content, 12),
    )


def traffic(table: RouteTable) -> dict[str, int]:
    return table.weights()


def traffic_summary(table: RouteTable) -> str:
    text = " / ".join(f"{v.name} {v.weight}" for v in table.variants)
    if table.shadow is not None:
        text += f" (mirrors {table.shadow.percent}%)"
    return text
