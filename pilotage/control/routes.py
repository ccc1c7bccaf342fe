"""The routing table a ModelDeployment's state calls for, and the traffic it reports."""

from __future__ import annotations

from pilotage.api.modeldeployment import ModelDeploymentSpec
from pilotage.control.common import short_hash
from pilotage.control.types import RouteMode, RouteTable, RouteVariant, ShadowRoute, VariantRole

MODES: dict[str, RouteMode] = {"Canary": "canary", "BlueGreen": "bluegreen", "Shadow": "shadow"}
CANDIDATE_ROLE: dict[str, VariantRole] = {
    "Canary": "canary",
    "BlueGreen": "preview",
    "Shadow": "shadow",
}


def build_table(
    spec: ModelDeploymentSpec, stable: str, candidate: str | None, canary_weight: int
) -> RouteTable:
    """Stable gets the rest of 100; a canary `canary_weight`; preview and shadow 0.

    `candidate` is None unless the candidate's server is ready to receive requests.
    """
    kind = spec.strategy.type
    mode = MODES[kind]
    sticky = spec.strategy.canary.sticky_header if spec.strategy.canary else None
    if candidate is None:
        variants: tuple[RouteVariant, ...] = (RouteVariant("stable", stable, 100),)
        shadow = None
        if kind == "Shadow":
            mode = "canary"  # nothing to mirror yet: the router needs a shadow variant
    else:
        weight = max(0, min(100, canary_weight)) if kind == "Canary" else 0
        role = CANDIDATE_ROLE[kind]
        variants = (
            RouteVariant("stable", stable, 100 - weight),
            RouteVariant(role, candidate, weight),
        )
        shadow = (
            ShadowRoute("shadow", spec.strategy.shadow_or_default().percent)
            if kind == "Shadow"
            else None
        )
    content = repr((mode, variants, sticky, shadow))
    return RouteTable(
        mode=mode,
        variants=variants,
        sticky_header=sticky if kind == "Canary" else None,
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
