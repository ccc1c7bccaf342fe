"""kstatus condition rules, shared by every reconciler.

* `Ready` is always present (True, False or Unknown).
* `Reconciling` and `Stalled` are present only while True ("abnormal-true" polarity);
  setting them False removes them.
* `observedGeneration` is an integer on the status and on each condition.
* `lastTransitionTime` changes only when a condition's status changes.
"""

from __future__ import annotations

from pilotage.api.common import Condition

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ABNORMAL_TRUE = frozenset({RECONCILING, STALLED})


def get(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    cond = get(conditions, type_)
    return cond is not None and cond.status == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[Condition]:
    """Return a new list with ``type_`` set (None = Unknown), following the kstatus rules."""
    status_text = "Unknown" if status is None else ("True" if status else "False")
    others = [c for c in conditions if c.type != type_]
    if type_ in ABNORMAL_TRUE and status_text != "True":
        return others
    old = get(conditions, type_)
    changed = old is None or old.status != status_text
    new = Condition(
        type=type_,
        status=status_text,
        reason=reason,
        message=message[:1024],
        last_transition_time=now if changed or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    ordered = [new, *others] if type_ == READY else [*others, new]
    ready = [c for c in ordered if c.type == READY]
    return ready + [c for c in ordered if c.type != READY]


def summarize(
    conditions: list[Condition],
    *,
    ready: bool | None,
    reason: str,
    message: str,
    reconciling: bool,
    stalled: bool,
    generation: int,
    now: str,
) -> list[Condition]:
    """Set Ready, Reconciling and Stalled together, the way every reconciler ends."""
    out = set_condition(conditions, READY, ready, reason, message, generation, now)
    out = set_condition(out, RECONCILING, reconciling, reason, message, generation, now)
    return set_condition(out, STALLED, stalled, reason, message, generation, now)
