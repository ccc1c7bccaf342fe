"""The counts seen over a window, from two snapshots of a server's cumulative counters."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pilotage.drift.errors import DriftInputError

Counters = Mapping[str, Mapping[str, int]]


def is_count(value: object) -> bool:
    """A non-negative whole number, as an int or a float (Prometheus counters are floats);
    NaN, infinities and fractions are not counts."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0 and value == int(value)


def _check(snapshot: Counters, what: str) -> None:
    for group, counts in snapshot.items():
        for label, value in counts.items():
            if not is_count(value):
                raise DriftInputError(f"{what} counter {group}/{label} is not a count: {value!r}")


def counters_reset(before: Counters, after: Counters) -> bool:
    """True when any counter went down (or vanished): the server restarted in between."""
    for group, counts in before.items():
        later = after.get(group, {})
        for label, value in counts.items():
            if later.get(label, 0) < value:
                return True
    return False


def window_counts(before: Counters, after: Counters) -> dict[str, dict[str, int]]:
    """Per group (feature) and label (bin), how many were counted between two snapshots.

    Counters only grow while a server lives, so if any of them went down the
    server restarted and ``after`` alone is what it counted since: it is returned
    as is (the window is then shorter than asked; callers see it in ``samples``).
    Call it once per server process (replica) and add the windows up, so one
    replica's restart does not discard the others' counts. Put the prediction
    counters in the same call (under their own group name) so a restart is seen
    across all of them.
    """
    _check(before, "before")
    _check(after, "after")
    if counters_reset(before, after):
        return {
            group: {label: int(v) for label, v in counts.items()} for group, counts in after.items()
        }
    window: dict[str, dict[str, int]] = {}
    for group, counts in after.items():
        earlier = before.get(group, {})
        window[group] = {label: int(v - earlier.get(label, 0)) for label, v in counts.items()}
    return window


def add_windows(*windows: Counters) -> dict[str, dict[str, int]]:
    """Sum windows label by label (e.g. one per replica)."""
    total: dict[str, dict[str, int]] = {}
    for window in windows:
        for group, counts in window.items():
            into = total.setdefault(group, {})
            for label, value in counts.items():
                if not is_count(value):
                    raise DriftInputError(f"window count {group}/{label} is not a count: {value!r}")
                into[label] = into.get(label, 0) + int(value)
    return total
