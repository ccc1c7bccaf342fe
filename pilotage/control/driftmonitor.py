"""DriftMonitor reconciler: drift checks over windows of live traffic, and retraining.

Windows are tumbling and built from differences of the servers' cumulative counters
against `status.checkpoint` (per replica, so one restarted replica loses only its own
counts). A `requests: N` window is judged once N rows arrived since the checkpoint;
a `duration` window once that long has passed. `consecutive` drifting checks are
needed before acting; `cooldown` spaces retrains whatever triggered them (a trigger
that comes inside it waits: a live-performance breach stays pending until a retrain
takes it or a healthy feedback window clears it, a schedule until a retrain takes it). When the
watched (stable) version changes, the previous version's verdict is dropped and the
status reads `InsufficientData` until the new version's first window is judged; the
retrain bookkeeping (and so the cooldown) carries over.

Exact tests: when the model card carries a training sample (`baseline.sample`), the
servers report their recent rows, and the method is `ks`, `wasserstein` or `auto`, the
numeric features are judged by KS / Wasserstein on samples (the window's rows still in
the reservoirs vs the training sample) once at least `minSamples` such rows are there;
otherwise, and always for PSI, JS and chi², on the bins.

Retrain triggers (drift, performance, datasetChange, schedule, manual) are registered
in `pilotage.control.triggers`, one module each; this reconciler asks them in order.

Rollback is not an action of this reconciler: `observe.drift_signal` turns this
status (phase, consecutive count, `driftingSince`) into the `DriftSignal` the
ModelDeployment reconciler reads, which rolls back a candidate whose rollout began
before the drift did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np

from pilotage.api.common import parse_duration
from pilotage.api.driftmonitor import (
    DriftMonitor,
    DriftMonitorSpec,
    DriftMonitorStatus,
    FeatureDrift,
    PredictionDrift,
    RetrainRecord,
    Trigger,
)
from pilotage.control.common import (
    LABEL_MONITOR,
    LABEL_TRIGGER,
    RUN_POLL_SECONDS,
    Readiness,
    dns_name,
    format_time,
    parse_time,
    seconds_between,
)
from pilotage.control.observe import DRIFTING_SINCE
from pilotage.control.triggers import TRIGGERS, RetrainTrigger
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DriftMonitorObservation,
    Event,
    Result,
    ServerCounters,
)
from pilotage.drift.binned import FloatArray
from pilotage.drift.errors import DriftInputError
from pilotage.drift.evaluate import Reservoir, evaluate
from pilotage.drift.reference import current_samples, reference_samples
from pilotage.drift.report import DriftReport
from pilotage.drift.window import add_windows, window_counts

PREDICTIONS_GROUP = "__predictions__"
OUT_OF_SCHEMA_GROUP = "__outOfSchema__"
# Methods that gain from samples: KS and Wasserstein are exact on them (auto uses KS).
EXACT_METHODS = frozenset({"ks", "wasserstein", "auto"})

Window = dict[str, dict[str, int]]


def spec_problem(spec: DriftMonitorSpec) -> str | None:
    for trigger in TRIGGERS:
        problem = trigger.problem(spec)
        if problem:
            return problem
    if spec.window.duration is not None and parse_duration(spec.window.duration) <= 0:
        return "spec.window.duration: must be longer than 0s"
    if parse_duration(spec.interval) <= 0:
        return "spec.interval: must be longer than 0s"
    return None


def _counts(c: ServerCounters) -> Window:
    return {
        **{f: dict(bins) for f, bins in c.features.items()},
        PREDICTIONS_GROUP: dict(c.predictions),
        OUT_OF_SCHEMA_GROUP: dict(c.out_of_schema),
    }


def _snapshot(counters: tuple[ServerCounters, ...]) -> dict[str, Any]:
    return {c.replica: _counts(c) for c in counters}


def _replica_windows(before: dict[str, Any], counters: tuple[ServerCounters, ...]) -> list[Window]:
    """Each replica's window, in the order of `counters`."""
    return [window_counts(before.get(c.replica, {}), _counts(c)) for c in counters]


def _rows_in(window: Window, features: Iterable[str]) -> int:
    """Rows in a window: every row is counted once per feature (into a bin or null)."""
    return max((sum(window.get(f, {}).values()) for f in features), default=0)


def _recent_samples(
    counters: tuple[ServerCounters, ...],
    windows: list[Window],
    features: Sequence[str],
    wanted: Iterable[str],
) -> tuple[dict[str, FloatArray], int]:
    """Per wanted feature, the values of the window's rows still held in the replicas'
    reservoirs (the newest ones), and how many rows that is. A feature some replica
    cannot give exactly is left out rather than sampled from the other replicas only."""
    parts: dict[str, list[FloatArray]] = {name: [] for name in wanted}
    held = 0
    for c, window in zip(counters, windows, strict=True):
        recent = c.reservoir
        if recent is None:
            continue
        take = min(_rows_in(window, features), len(recent.rows))
        if take == 0:
            continue
        rows = recent.rows[len(recent.rows) - take :]
        columns = current_samples(parts, recent.columns, rows)
        for name in list(parts):
            if name in columns:
                parts[name].append(columns[name])
            else:
                del parts[name]
        held += take
    return {name: np.concatenate(p) for name, p in parts.items() if p}, held


def _exact_note(report: DriftReport) -> str:
    exact = [f for f in report.features if f.exact]
    if not exact:
        return ""
    rows = max(f.samples for f in exact)
    return f"; {len(exact)} features tested exactly on {rows} recent rows"


class _Reconcile:
    """The working state of one call (the `Tick` the triggers see); nothing outlives it."""

    def __init__(self, dm: DriftMonitor, obs: DriftMonitorObservation, now: datetime):
        self.dm, self.spec, self.obs, self.now = dm, dm.spec, obs, now
        self.stamp = format_time(now)
        self.old = dm.status or DriftMonitorStatus()
        self.st = self.old.model_copy(deep=True)
        self.st.observed_generation = dm.generation
        self.checkpoint: dict[str, Any] = dict(self.st.checkpoint or {})
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.timers: list[float] = [parse_duration(self.spec.interval)]

    def wait(self, seconds: float) -> None:
        self.timers.append(max(0.05, seconds))

    # -- drift over a window -----------------------------------------------------

    def check_drift(self) -> None:
        obs, st, cp = self.obs, self.st, self.checkpoint
        version = obs.version
        if version is None:
            return
        if cp.get("version") != version:
            self.watch_version(version)
            return
        if obs.baseline is None:
            return
        if "counts" not in cp:
            # The counters were dropped after a failed check: a fresh window starts now.
            cp.update(time=self.stamp, counts=_snapshot(obs.counters))
            cp.pop(DRIFTING_SINCE, None)
            st.consecutive_drifting = 0
            return
        windows = _replica_windows(cp["counts"], obs.counters)
        window = add_windows(*windows)
        predictions = window.pop(PREDICTIONS_GROUP, {})
        out_of_schema = {f: n for f, n in window.pop(OUT_OF_SCHEMA_GROUP, {}).items() if n > 0}
        window = {f: bins for f, bins in window.items() if f in obs.baseline.features}
        rows = max((sum(b.values()) for b in window.values()), default=0)
        started = parse_time(cp.get("time")) or self.now
        elapsed = seconds_between(started, self.now)
        if self.spec.window.requests is not None:
            if rows < self.spec.window.requests:
                if st.last_check_time is None:
                    st.phase = "InsufficientData"
                    st.samples = rows
                return  # keep accumulating: the window is not full yet
        else:
            length = parse_duration(self.spec.window.duration or "0s")
            if elapsed < length:
                self.wait(length - elapsed)
                return
        report = evaluate(
            obs.baseline,
            window,
            predictions or None,
            method=self.spec.method,
            threshold=self.spec.threshold if "threshold" in self.spec.model_fields_set else None,
            feature_thresholds=self.spec.feature_thresholds,
            drift_share=self.spec.drift_share,
            min_samples=self.spec.min_samples,
            reservoir=self.reservoir(windows),
        )
        cp.update(time=self.stamp, counts=_snapshot(obs.counters))
        self.record(report)
        self.st.out_of_schema = dict(sorted(out_of_schema.items())[:1000])

    def watch_version(self, version: str) -> None:
        """A new model version (or the first look): the previous version's verdict,
        scores and counters say nothing about it, so its first window starts from
        scratch. Retrain bookkeeping (lastRetrain, retrains, the cooldown, handled
        annotations, the dataset fingerprint, the schedule) is the monitor's, and stays."""
        st, cp = self.st, self.checkpoint
        for per_version in (DRIFTING_SINCE, *(k for t in TRIGGERS for k in t.per_version)):
            cp.pop(per_version, None)
        cp.update(version=version, time=self.stamp, counts=_snapshot(self.obs.counters))
        st.version = version
        st.phase = "InsufficientData"
        st.samples = 0
        st.features = []
        st.out_of_schema = {}
        st.dataset_drift = False
        st.drift_score = None
        st.prediction_drift = None
        st.live = None
        st.consecutive_drifting = 0
        st.last_check_time = None
        st.message = f"collecting the first window of {version}"

    def reservoir(self, windows: list[Window]) -> Reservoir | None:
        """Samples for the exact tests, or None to judge on the bins alone."""
        baseline = self.obs.baseline
        if self.spec.method not in EXACT_METHODS or baseline is None:
            return None
        reference = reference_samples(baseline)
        if not reference:
            return None
        current, held = _recent_samples(
            self.obs.counters, windows, list(baseline.features), reference
        )
        if held < self.spec.min_samples or not current:
            return None
        return Reservoir(reference=reference, current=current)

    def record(self, report: DriftReport) -> None:
        st, cp = self.st, self.checkpoint
        st.phase = report.phase
        st.samples = report.samples
        st.last_check_time = self.stamp
        ordered = sorted(report.features, key=lambda f: (not f.drifted, -f.score, f.name))
        st.features = [
            FeatureDrift(
                name=f.name,
                method=f.method,
                score=f.score,
                p_value=f.p_value,
                threshold=f.threshold,
                drifted=f.drifted,
            )
            for f in ordered
        ][:1000]
        st.dataset_drift = report.dataset_drift
        st.drift_score = report.share_drifted
        st.prediction_drift = (
            PredictionDrift(
                score=report.prediction.score,
                p_value=report.prediction.p_value,
                drifted=report.prediction.drifted,
            )
            if report.prediction is not None
            else None
        )
        if report.phase == "Drifting":
            st.consecutive_drifting += 1
            cp.setdefault(DRIFTING_SINCE, self.stamp)
            st.message = "drifted: " + self.drifted_text() + _exact_note(report)
        else:
            st.consecutive_drifting = 0
            cp.pop(DRIFTING_SINCE, None)
            st.message = (
                f"{report.samples} rows < minSamples {self.spec.min_samples}"
                if report.insufficient_data
                else f"no data-set drift over {report.samples} rows "
                f"({len(report.drifted_features)} of {len(report.features)} features drifted)"
                + _exact_note(report)
            )
        if report.phase == "Drifting" and st.consecutive_drifting == self.spec.consecutive:
            self.events.append(
                Event(
                    "Warning",
                    "DriftDetected",
                    f"{st.message} (share {report.share_drifted:.2f} >= "
                    f"driftShare {self.spec.drift_share:g})",
                )
            )

    def drifted_text(self) -> str:
        drifted = [f for f in self.st.features if f.drifted]
        shown = ", ".join(f.text() for f in drifted[:5])
        return shown + (f" and {len(drifted) - 5} more" if len(drifted) > 5 else "")

    # -- retraining --------------------------------------------------------------

    def last_retrain_time(self) -> datetime | None:
        times = [j.created for j in self.obs.retrain_jobs if j.created is not None]
        if self.st.last_retrain is not None:
            recorded = parse_time(self.st.last_retrain.time)
            if recorded is not None:
                times.append(recorded)
        return max(times) if times else None

    def cooldown_left(self) -> float:
        last = self.last_retrain_time()
        if last is None:
            return 0.0
        return parse_duration(self.spec.on_drift.cooldown) - seconds_between(last, self.now)

    def triggers(self) -> list[tuple[RetrainTrigger, str]]:
        """Every trigger that wants a retrain now, in registry order (most specific first).
        Each is asked every call: some keep state (a schedule's start, a feedback window)."""
        fired = [(t, t.fired(self)) for t in TRIGGERS]
        return [(t, why) for t, why in fired if why]

    def retrain(self, fired: list[tuple[RetrainTrigger, str]]) -> None:
        st, spec = self.st, self.spec
        template = spec.on_drift.retrain
        if template is None:
            for ignored, _ in fired:
                ignored.ignored(self)
            return
        left = self.cooldown_left()
        if left > 0:
            self.wait(left)
            base = st.message.split("; retrain waits")[0]
            st.message = (
                f"{base}; retrain waits for the cooldown ({fired[0][0].name}, {left:.0f}s left)"
            )[:1024]
            return
        trigger, why = fired[0][0].name, fired[0][1]
        if not self.fresh_snapshot():
            return
        unchanged = self.same_data()
        if unchanged and trigger != "manual":
            # Trained on the same bytes, the retrain would be the stable model again (a
            # byte-identical model.onnx rolled out every cooldown). A person's on-demand
            # retrain still runs: the template may have changed.
            self.not_started(unchanged)
            return
        st.retrain_not_started = None
        name = self.retrain_name()
        labels = {
            **template.template.metadata.labels,
            LABEL_MONITOR: self.dm.name,
            LABEL_TRIGGER: trigger,
        }
        meta: dict[str, Any] = {"name": name, "labels": labels}
        if self.dm.metadata.namespace:
            meta["namespace"] = self.dm.metadata.namespace
        if template.template.metadata.annotations:
            meta["annotations"] = dict(template.template.metadata.annotations)
        body = template.template.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        body["version"] = name
        champion = self.champion()
        if champion is not None and "champion" not in body.get("evaluation", {}):
            body.setdefault("evaluation", {})["champion"] = champion
        manifest = {
            "apiVersion": self.dm.api_version,
            "kind": "TrainingJob",
            "metadata": meta,
            "spec": body,
        }
        self.actions.append(CreateTrainingJob(manifest, "DriftMonitor", self.dm.name))
        others = [t.name for t, _ in fired[1:]]
        message = why + (f" (also: {', '.join(others)})" if others else "")
        # Built unvalidated: every field is the reconciler's own, and a registered
        # trigger's name is one of the API's `Trigger` values (tests/control/test_triggers.py).
        st.last_retrain = RetrainRecord.model_construct(
            name=name, trigger=cast(Trigger, trigger), time=self.stamp, message=message[:1024]
        )
        st.retrains += 1
        for taken, _ in fired:
            taken.taken(self)
        self.events.append(
            Event(
                "Normal",
                "RetrainCreated",
                f"TrainingJob {name} created by trigger {trigger}: {message}",
            )
        )
        self.wait(parse_duration(spec.on_drift.cooldown))

    def champion(self) -> dict[str, Any] | None:
        """The deployment's stable version, which a retrain must match (spec.evaluation.
        champion of the TrainingJob it creates); None when not compared or none is stable."""
        policy = self.spec.on_drift.champion
        md = self.obs.deployment
        stable = md.status.stable if md is not None and md.status is not None else None
        if not policy.compare or stable is None or not stable.uri:
            return None
        return {"uri": stable.uri, "version": stable.version, "margin": policy.margin}

    def template_dataset(self) -> str:
        template = self.spec.on_drift.retrain
        return template.template.spec.dataset_ref.name if template is not None else "?"

    def waits(self, why: str, seconds: float) -> None:
        base = self.st.message.split("; retrain waits")[0]
        self.st.message = f"{base}; retrain waits {why}"[:1024]
        self.wait(seconds)

    def fresh_snapshot(self) -> bool:
        """For a Dataset read as a snapshot (`logs://`): ask for a fresh one, and wait until
        its profile answers. True when the retrain may go on (with a fresh snapshot, or a
        Dataset of another source)."""
        obs, st = self.obs, self.st
        if not obs.dataset_snapshots:
            return True
        name = self.template_dataset()
        token = st.snapshot_request
        asked = parse_time(token) if token else None
        stale = asked is None or (
            obs.dataset_answered == token
            and seconds_between(asked, self.now) >= parse_duration(self.spec.on_drift.cooldown)
        )
        if stale:
            st.snapshot_request = self.stamp
            self.events.append(
                Event(
                    "Normal",
                    "SnapshotRequested",
                    f"Dataset {name} is profiled again for a fresh snapshot before the retrain",
                )
            )
            self.waits(f"for a fresh snapshot of Dataset {name}", RUN_POLL_SECONDS)
            return False
        if obs.dataset_answered != token:
            self.waits(f"for a fresh snapshot of Dataset {name}", RUN_POLL_SECONDS)
            return False
        if obs.dataset_failed:
            self.not_started(f"Dataset {name}'s fresh snapshot failed: {obs.dataset_failed}")
            return False
        return True

    def not_started(self, why: str) -> None:
        st = self.st
        if st.retrain_not_started != why:
            self.events.append(Event("Normal", "RetrainNotStarted", why[:1024]))
        st.retrain_not_started = why[:1024]
        base = st.message.split("; retrain")[0]
        st.message = f"{base}; retrain not started: {why}"[:1024]
        self.wait(parse_duration(self.spec.interval))

    def same_data(self) -> str | None:
        """Why a retrain would learn nothing new: the stable version is one this monitor's
        template trained, and the template's Dataset still has the fingerprint of the data it
        learned from (the same spec on the same bytes makes the same model). None otherwise
        (a stable version trained by another job, with another spec, retrains)."""
        ours, stable = self.obs.dataset_fingerprint, self.obs.stable_fingerprint
        snapshot = self.obs.dataset_snapshot
        learned = [j for j in self.obs.retrain_jobs if j.dataset_fingerprint]
        last = max(
            learned,
            key=lambda j: (j.created.timestamp() if j.created else 0.0, j.name),
            default=None,
        )
        if snapshot is not None and ours and last is not None and last.dataset_fingerprint == ours:
            return (
                f"Dataset {self.template_dataset()}'s fresh snapshot ({snapshot.rows} rows, "
                f"{snapshot.labelled_rows} labelled, fingerprint {ours[:12]}) is the one retrain "
                f"{last.name} learned from: no new labelled rows since"
            )[:1024]
        if not ours or ours != stable:
            return None
        if not any(j.model_version == self.obs.version for j in self.obs.retrain_jobs):
            return None
        template = self.spec.on_drift.retrain
        dataset = template.template.spec.dataset_ref.name if template is not None else "?"
        return (
            f"Dataset {dataset} (fingerprint {ours[:12]}) holds the data stable version "
            f"{self.obs.version} learned from; profile it again when it has new rows"
        )[:1024]

    def retrain_name(self) -> str:
        taken = {j.name for j in self.obs.retrain_jobs}
        n = max(self.st.retrains, len(self.obs.retrain_jobs)) + 1
        while dns_name(self.dm.name, "retrain", str(n)) in taken:
            n += 1
        return dns_name(self.dm.name, "retrain", str(n))


def reconcile_driftmonitor(
    dm: DriftMonitor, obs: DriftMonitorObservation, now: datetime
) -> Result[DriftMonitorStatus]:
    r = _Reconcile(dm, obs, now)
    st = r.st

    def finish(
        ready: bool | None, reason: str, message: str, *, stalled: bool = False
    ) -> Result[DriftMonitorStatus]:
        st.checkpoint = r.checkpoint or None
        readiness = Readiness(ready, reason, message, stalled)
        st.conditions = readiness.conditions(st.conditions, dm.generation, r.stamp)
        return Result(st, r.actions, r.events, min(r.timers))

    problem = spec_problem(dm.spec)
    if problem:
        st.message = problem
        if r.old.message != problem:
            r.events.append(Event("Warning", "InvalidSpec", problem))
        return finish(False, "InvalidSpec", problem, stalled=True)

    if obs.deployment is None:
        st.phase = "Pending"
        message = f"waiting for ModelDeployment {dm.spec.deployment_ref.name}"
        st.message = message
        return finish(False, "DeploymentNotFound", message)

    try:
        r.check_drift()
    except DriftInputError as exc:
        message = f"drift check failed: {exc}"
        st.message = message[:1024]
        r.checkpoint.pop("counts", None)  # start over from the next counters
        return finish(False, "DriftInputError", message)
    fired = r.triggers()
    if fired:
        r.retrain(fired)

    if obs.version is None or obs.baseline is None:
        st.phase = "Pending"
        message = "waiting for the deployment's model baseline and counters"
        st.message = message
        return finish(False, "WaitingForModel", message)
    if st.phase == "Pending":
        st.phase = "InsufficientData"
        st.message = st.message or "collecting the first window"
    return finish(True, st.phase, st.message or st.phase)
