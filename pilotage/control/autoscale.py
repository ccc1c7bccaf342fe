"""The autoscaler: from the router's load counters over time to replicas per variant.

Pure, like the reconcilers: the shell samples the router's cumulative counters of each
variant every ``autoscaling.interval`` (``LoadSample``), keeps the recent samples, and
calls ``autoscale`` with them; it gets the replicas each variant's servers should have,
the status to write and the events to record.

The decision follows Knative's autoscaler:

* the load of a variant is its average concurrency (requests in flight, from the
  router's in-flight integral) or its request rate, over a *stable window* and over a
  short *panic window*; requests held at zero count as load;
* wanted replicas = ceil(load / target per replica), within minReplicas..maxReplicas,
  and at most ``scaleUpRate`` times the ready replicas per decision;
* a burst that needs ``panicThreshold`` times the ready replicas over the panic window
  scales up on the panic window at once, and no scale-down happens until a whole
  stable window passed without a burst;
* hysteresis: replicas are removed only once fewer have been wanted for
  ``scaleDownDelay``, down to the most wanted during that time;
* with ``minReplicas: 0`` a variant with no request for ``scaleToZeroAfter`` goes to
  zero, and a request held for a variant at zero wakes it (one replica, more if many
  are held) at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pilotage.api.common import parse_duration
from pilotage.api.modeldeployment import Autoscaling, ModelDeploymentSpec, VariantReplicas
from pilotage.control.common import format_time, parse_time, seconds_between
from pilotage.control.types import Event, LoadSample, RouterStats

__all__ = [
    "ACTIVATED",
    "SCALED_DOWN",
    "SCALED_TO_ZERO",
    "SCALED_UP",
    "AutoscaleResult",
    "Decision",
    "LoadHistory",
    "LoadSample",
    "Policy",
    "VariantLoad",
    "autoscale",
    "decide",
    "summary",
    "window_load",
]

Metric = Literal["inFlight", "requestsPerSecond"]

SCALED_UP = "ScaledUp"
SCALED_DOWN = "ScaledDown"
SCALED_TO_ZERO = "ScaledToZero"
ACTIVATED = "Activated"


@dataclass(frozen=True)
class Policy:
    """``spec.autoscaling`` in numbers (seconds, floats)."""

    min_replicas: int
    max_replicas: int
    metric: Metric
    target: float
    interval: float
    activation_timeout: float
    max_held: int
    window: float
    panic_window: float
    panic_threshold: float
    scale_up_rate: float
    scale_down_delay: float
    scale_to_zero_after: float
    initial: int
    """Replicas a variant starts with (spec.replicas within min..max, at least 1)."""

    @classmethod
    def from_spec(cls, spec: ModelDeploymentSpec) -> Policy | None:
        auto = spec.autoscaling
        if auto is None:
            return None
        return cls.of(auto, spec.replicas)

    @classmethod
    def of(cls, auto: Autoscaling, replicas: int = 1) -> Policy:
        target = auto.target
        metric: Metric = "inFlight" if target.in_flight is not None else "requestsPerSecond"
        value = target.in_flight if target.in_flight is not None else target.requests_per_second
        assert value is not None
        return cls(
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            metric=metric,
            target=float(value),
            interval=parse_duration(auto.interval),
            activation_timeout=parse_duration(auto.activation_timeout),
            max_held=auto.max_held_requests,
            window=parse_duration(auto.window),
            panic_window=parse_duration(auto.panic_window),
            panic_threshold=auto.panic_threshold,
            scale_up_rate=auto.scale_up_rate,
            scale_down_delay=parse_duration(auto.scale_down_delay),
            scale_to_zero_after=parse_duration(auto.scale_to_zero_after),
            initial=max(1, min(max(replicas, auto.min_replicas), auto.max_replicas)),
        )


@dataclass(frozen=True)
class VariantLoad:
    """What the shell saw of one variant: its version, samples (oldest first) and the
    replicas that are ready."""

    version: str
    samples: tuple[LoadSample, ...] = ()
    ready: int = 0


@dataclass(frozen=True)
class Decision:
    """Replicas for one variant, the variant's new status entry and why it changed."""

    desired: int
    status: VariantReplicas
    reason: str = ""
    """SCALED_UP, SCALED_DOWN, SCALED_TO_ZERO, ACTIVATED or "" (no change)."""
    message: str = ""
    stable_load: float | None = None
    panic_load: float | None = None
    panicking: bool = False


@dataclass(frozen=True)
class AutoscaleResult:
    """Per variant: the decisions; per version: the replicas its servers should run."""

    decisions: dict[str, Decision]
    replicas: dict[str, int]
    """version → replicas (the most any variant of that version wants)."""
    status: dict[str, VariantReplicas]
    summary: str
    events: list[Event] = field(default_factory=list)


def _current(samples: Sequence[LoadSample]) -> Sequence[LoadSample]:
    """The samples since the router last started counting (counters never decrease)."""
    start = 0
    for i in range(1, len(samples)):
        a, b = samples[i - 1], samples[i]
        restarted = a.clock is not None and b.clock is not None and b.clock < a.clock
        if restarted or b.requests < a.requests or b.busy_seconds < a.busy_seconds - 1e-9:
            start = i
    return samples[start:]


def window_load(samples: Sequence[LoadSample], seconds: float, metric: Metric) -> float | None:
    """The variant's load over the last ``seconds`` (up to the newest sample): average
    concurrency or request rate, plus the requests held now. None without two samples
    spanning some time."""
    samples = _current(samples)
    if len(samples) < 2:
        return None
    last = samples[-1]
    since = last.time.timestamp() - seconds
    first = samples[0]
    for s in samples:
        if s.time.timestamp() >= since - 1e-6:
            first = s
            break
    if first is last:
        first = samples[-2]  # the window is shorter than the sampling interval
    span = seconds_between(first.time, last.time)
    if first.clock is not None and last.clock is not None and last.clock > first.clock:
        span = last.clock - first.clock  # the router's clock, not the read's
    if span <= 0:
        return None
    if metric == "inFlight":
        value = (last.busy_seconds - first.busy_seconds) / span
    else:
        value = (last.requests - first.requests) / span
    return max(value, 0.0) + last.held


def last_active(samples: Sequence[LoadSample]) -> datetime | None:
    """When the variant last had a request: the newest sample with one in flight or held,
    or that counted new ones since the sample before it; None when none did."""
    samples = _current(samples)
    for i in range(len(samples) - 1, -1, -1):
        s = samples[i]
        if s.held or s.in_flight:
            return s.time
        if i > 0:
            p = samples[i - 1]
            if s.requests > p.requests or s.busy_seconds > p.busy_seconds + 1e-9:
                return s.time
    return None


def _wanted(load: float | None, target: float) -> int | None:
    if load is None:
        return None
    # a hair under a multiple of the target is that multiple (float noise of the integral)
    return max(0, math.ceil(load / target - 1e-9))


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def decide(
    policy: Policy, load: VariantLoad, previous: VariantReplicas | None, now: datetime
) -> Decision:
    """Replicas for one variant from its samples and its previous status entry."""
    samples = load.samples
    held = samples[-1].held if samples else 0
    if previous is None or previous.version != load.version:
        previous = VariantReplicas(
            version=load.version,
            desired=policy.initial,
            active_time=format_time(now),
            last_scale_time=format_time(now),
        )
    current = previous.desired
    active_at = parse_time(previous.active_time) or now
    seen = last_active(samples)
    if seen is not None and seen > active_at:
        active_at = seen
    if current > 0 and (load.ready == 0 or not samples):
        # still starting, or the router does not route to it yet: no request could come,
        # so idle time counts from when a ready replica is in the router's table
        active_at = now
    panic_since = parse_time(previous.panic_since)
    down_since = parse_time(previous.down_since)
    down_to = previous.down_to

    stable_load = window_load(samples, policy.window, policy.metric)
    panic_load = window_load(samples, policy.panic_window, policy.metric)
    stable_want = _wanted(stable_load, policy.target)
    panic_want = _wanted(panic_load, policy.target)

    # panic mode: a burst over the short window, measured against what is ready
    if panic_want and panic_want >= policy.panic_threshold * max(load.ready, 1):
        panic_since = now
    if panic_since is not None and seconds_between(panic_since, now) >= policy.window:
        panic_since = None
    panicking = panic_since is not None

    idle = seconds_between(active_at, now)
    floor = policy.min_replicas
    if floor == 0 and current > 0 and idle < policy.scale_to_zero_after:
        floor = 1  # at zero only a held request wakes the variant
    if held and floor == 0:
        floor = 1

    if stable_want is None and panic_want is None:
        want = current  # nothing measured yet: keep what there is
    elif panicking:
        want = max(stable_want or 0, panic_want or 0, current)
    else:
        want = stable_want if stable_want is not None else current
    if held:
        want = max(want, math.ceil(held / policy.target) if policy.metric == "inFlight" else 1)
    if floor == 0 and not held:
        want = 0  # idle for scaleToZeroAfter: whatever the (older) window still averages
    # at most scaleUpRate times the ready replicas per decision (never below what is wanted)
    ceiling = max(math.ceil(policy.scale_up_rate * max(load.ready, 1)), current)
    want = max(floor, min(want, ceiling, policy.max_replicas))

    desired = current
    reason = ""
    message = ""
    measured = _describe(policy, stable_load, panic_load)
    if want > current:
        desired = want
        down_since, down_to = None, None
        if current == 0:
            reason = ACTIVATED
            message = f"{held} request(s) waiting at zero replicas; starting {want}"
        else:
            reason = SCALED_UP
            message = f"{current} → {want} replicas ({measured}{', panic' if panicking else ''})"
    elif want == current or panicking:
        down_since, down_to = None, None
    elif want == 0:
        desired = 0
        down_since, down_to = None, None
        reason = SCALED_TO_ZERO
        message = f"{current} → 0 replicas (no request for {idle:g}s)"
    else:
        if down_since is None:
            down_since, down_to = now, want
        else:
            down_to = max(down_to if down_to is not None else want, want)
        if seconds_between(down_since, now) >= policy.scale_down_delay:
            desired = max(down_to, floor)
            if desired < current:
                reason = SCALED_DOWN
                message = (
                    f"{current} → {desired} replicas ({measured}, lower for "
                    f"{seconds_between(down_since, now):g}s)"
                )
            down_since, down_to = None, None

    status = VariantReplicas(
        version=load.version,
        desired=desired,
        ready=load.ready,
        load=None if stable_load is None else round(stable_load, 3),
        last_scale_time=format_time(now) if desired != current else previous.last_scale_time,
        active_time=_stamp(active_at),
        down_since=_stamp(down_since),
        down_to=down_to,
        panic_since=_stamp(panic_since),
    )
    return Decision(
        desired=desired,
        status=status,
        reason=reason,
        message=message,
        stable_load=stable_load,
        panic_load=panic_load,
        panicking=panicking,
    )


def _describe(policy: Policy, stable: float | None, panic: float | None) -> str:
    unit = "in flight" if policy.metric == "inFlight" else "requests/s"
    parts = []
    if stable is not None:
        parts.append(f"{stable:.2f} {unit} over {policy.window:g}s")
    if panic is not None:
        parts.append(f"{panic:.2f} over {policy.panic_window:g}s")
    return f"{', '.join(parts) or 'no load measured'}; target {policy.target:g} per replica"


def summary(status: Mapping[str, VariantReplicas]) -> str:
    """`stable 3/3 / canary 1/1` (ready/desired) for the printer column."""
    order = ("stable", "canary", "preview", "shadow")
    names = sorted(status, key=lambda n: (order.index(n) if n in order else len(order), n))
    return " / ".join(f"{n} {status[n].ready}/{status[n].desired}" for n in names)


def _previous(
    previous: Mapping[str, VariantReplicas], name: str, version: str
) -> VariantReplicas | None:
    """The variant's entry; after a promotion (the stable is now the canary's version)
    the entry of the variant that had this version, so its replicas carry over."""
    entry = previous.get(name)
    if entry is not None and entry.version == version:
        return entry
    return next((e for e in previous.values() if e.version == version), None)


def autoscale(
    policy: Policy,
    loads: Mapping[str, VariantLoad],
    previous: Mapping[str, VariantReplicas],
    now: datetime,
) -> AutoscaleResult:
    """Decide every variant separately; a version used by two variants gets the larger."""
    decisions = {
        name: decide(policy, load, _previous(previous, name, load.version), now)
        for name, load in loads.items()
    }
    replicas: dict[str, int] = {}
    for name, d in decisions.items():
        version = loads[name].version
        replicas[version] = max(replicas.get(version, 0), d.desired)
    events = [
        Event("Normal", d.reason, f"{name} ({loads[name].version}): {d.message}")
        for name, d in decisions.items()
        if d.reason
    ]
    status = {name: d.status for name, d in decisions.items()}
    return AutoscaleResult(
        decisions=decisions,
        replicas=replicas,
        status=status,
        summary=summary(status),
        events=events,
    )


class LoadHistory:
    """The recent load samples a shell keeps per deployment, from each read of its router's
    stats (plain data: the shell passes the time; nothing here reads a clock)."""

    def __init__(self, max_samples: int = 2048) -> None:
        self.max_samples = max_samples
        self._samples: dict[Hashable, dict[tuple[str, str], deque[LoadSample]]] = {}

    def add(self, key: Hashable, stats: RouterStats, now: datetime, keep: float) -> None:
        """Record one read of the router's stats; samples older than ``keep`` seconds go."""
        per = self._samples.setdefault(key, {})
        seen = set()
        for v in stats.variants:
            variant = (v.name, v.version)
            seen.add(variant)
            samples = per.setdefault(variant, deque(maxlen=self.max_samples))
            if samples and samples[-1].time >= now:
                continue
            samples.append(
                LoadSample(
                    now, v.requests, v.busy_seconds, v.in_flight, v.held, stats.uptime_seconds
                )
            )
            while len(samples) > 2 and seconds_between(samples[0].time, now) > keep:
                samples.popleft()
        for variant in set(per) - seen:
            del per[variant]

    def samples(self, key: Hashable) -> dict[tuple[str, str], tuple[LoadSample, ...]]:
        return {variant: tuple(s) for variant, s in self._samples.get(key, {}).items()}

    def forget(self, key: Hashable) -> None:
        self._samples.pop(key, None)
