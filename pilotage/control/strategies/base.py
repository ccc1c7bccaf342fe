"""What a rollout strategy is, and the registry of them.

A strategy decides how a candidate version reaches traffic: what of the spec it needs,
which variant the candidate is in the routing table (and so in the router's stats the
analysis reads), the router's mode, the candidate's share of user traffic for a status,
and how the rollout moves on each call. Everything else (following the wanted version,
manual actions, analysis and rollback, servers and routes, conditions) is the same for
every strategy and lives in `pilotage.control.modeldeployment` and its helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pilotage.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus, ModelRef
from pilotage.control.types import RouteMode, ShadowRoute, VariantRole

if TYPE_CHECKING:
    from pilotage.control.rollout import Rollout


class RolloutStrategy:
    """One value of `spec.strategy.type`. Subclasses set the class attributes and
    override `advance`; the other hooks have the defaults most strategies want."""

    type: ClassVar[str]
    """The `spec.strategy.type` it serves; one of `pilotage.api.modeldeployment.Strategy.type`."""
    candidate_role: ClassVar[VariantRole]
    """The candidate's variant in the routing table, and the router stats analysed."""
    mode: ClassVar[RouteMode]
    """The router's mode once the candidate's server is ready."""
    idle_mode: ClassVar[RouteMode | None] = None
    """The router's mode while only stable is routable (None: `mode`)."""
    shares_traffic: ClassVar[bool] = False
    """Whether the candidate takes a share of user traffic (`weight`); otherwise it gets
    none of it (a preview, a mirror)."""
    compares: ClassVar[bool] = False
    """Whether the candidate is judged on mirrored requests compared with stable's
    answers (the agreement SLO applies, comparisons count as requests)."""
    first_step: ClassVar[int | None] = None
    """`status.currentStep` when a rollout starts."""

    def problem(self, spec: ModelDeploymentSpec) -> str | None:
        """What makes the strategy's settings unusable, naming the field; None when usable."""
        return None

    def weight(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> int:
        """The candidate's share of user traffic (0..100) for this status."""
        return 0

    def sticky_header(self, spec: ModelDeploymentSpec) -> str | None:
        """Header whose value pins a client to one variant."""
        return None

    def mirror(self, spec: ModelDeploymentSpec) -> ShadowRoute | None:
        """Requests copied to the candidate (answers never returned), if any."""
        return None

    def promotes_at_once(self, value: str) -> bool:
        """Whether a `pilotage.dev/promote` value promotes now; otherwise `advance` is
        called with `promote_requested` and takes one step."""
        return True

    def advance(self, rollout: Rollout, promote_requested: bool) -> None:
        """Move the rollout on as far as the strategy allows now: `rollout.promote(how)`,
        `rollout.wait(seconds)` for a timer, `rollout.paused` / `rollout.waiting` to say
        why it stays. Called while the candidate's server is ready and the analysis has
        not failed beyond the limit."""
        raise NotImplementedError

    def promoted(self, rollout: Rollout, old: ModelRef) -> str:
        """The candidate just became stable: what happens to the `old` stable (a
        message fragment). By default its server goes once the router stops using it."""
        return f"{old.version} scaled down"


STRATEGIES: dict[str, RolloutStrategy] = {}
"""The registered strategies by `spec.strategy.type`."""


def register_strategy(strategy: RolloutStrategy) -> RolloutStrategy:
    """Make `strategy` serve its `spec.strategy.type`; the type must be new."""
    if strategy.type in STRATEGIES:
        raise ValueError(f"a rollout strategy {strategy.type!r} is already registered")
    STRATEGIES[strategy.type] = strategy
    return strategy


def unregister_strategy(kind: str) -> None:
    """Remove the strategy registered for `kind` (tests, plugins that are unloaded)."""
    STRATEGIES.pop(kind, None)


def strategy_for(spec: ModelDeploymentSpec) -> RolloutStrategy:
    try:
        return STRATEGIES[spec.strategy.type]
    except KeyError:
        raise KeyError(f"no rollout strategy {spec.strategy.type!r} is registered") from None
