"""The rollout strategies of a ModelDeployment, one registered per `spec.strategy.type`.

A new strategy is one module here with a `RolloutStrategy` subclass and one
`register_strategy` line below, plus its API fields in `pilotage.api.modeldeployment`
(a `type` value and its settings block; docs/extending.md walks through it).
"""

from pilotage.control.strategies.base import (
    STRATEGIES,
    RolloutStrategy,
    register_strategy,
    strategy_for,
    unregister_strategy,
)
from pilotage.control.strategies.bluegreen import BlueGreen
from pilotage.control.strategies.canary import Canary
from pilotage.control.strategies.shadow import Shadow

register_strategy(Canary())
register_strategy(BlueGreen())
register_strategy(Shadow())

__all__ = [
    "STRATEGIES",
    "RolloutStrategy",
    "register_strategy",
    "strategy_for",
    "unregister_strategy",
]
