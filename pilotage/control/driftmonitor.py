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

Rollback is not an action of this reconciler: `observe.drift_signal` turns this
status (phase, consecutive count, `driftingSince`) into the `DriftSignal` the
ModelDeployment reconciler reads, which rolls back a candidate whose rollout began
before the drift did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from croniter import croniter

from pilotage.api.common import parse_duration
from pilotage.api.driftmonitor import (
    DriftMonitor,
    DriftMonitorSpec,
    DriftMonitorStatus,
    FeatureDrift,
    LiveMetrics,
    PerformanceSpec,
    PredictionDrift,
    RetrainRecord,
    Trigger,
)
from pilotage.control.common import (
    ANNOTATION_RETRAIN,
    LABEL_MONITOR,
    LABEL_TRIGGER,
    dns_name,
    format_time,
    parse_time,
    reconciled_conditions,
    seconds_between,
)
from pilotage.control.observe import DRIFTING_SINCE
from pilotage.control.types import (
    Action,
    CreateTrainingJob,
    DriftMonitorObservation,
    Event,
    FeedbackStats,
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
HANDLED_RETRAIN = "handledRetrain"
RETRAINED_FOR = "retrainedFor"
# A live-performance breach no retrain has taken yet (one inside the cooldown): it is
# acted on when the cooldown ends unless a healthy feedback window came in between.
PENDING_PERFORMANCE = "pendingPerformance"
# Methods that gain from samples: KS and Wasserstein are exact on them (auto uses KS).
EXACT_METHODS = frozenset({"ks", "wasserstein", "auto"})

Window = dict[str, dict[str, int]]


def spec_problem(spec: DriftMonitorSpec) -> str | None:
    if spec.schedule is not None and not croniter.is_valid(spec.schedule):
        return f"spec.schedule: {spec.schedule!r} is not a cron expression"
    if spec.on_drift.retrain is None:
        if spec.schedule is not None:
            return "spec.onDrift.retrain: a schedule needs a TrainingJob template to retrain with"
        if spec.retrain_on_dataset_change:
            return "spec.onDrift.retrain: retrainOnDatasetChange needs a TrainingJob template"
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


def _feedback_doc(fb: FeedbackStats | None) -> dict[str, Any] | None:
    if fb is None:
        return None
    return {
        "labelled": fb.labelled,
        "correct": fb.correct,
        "valued": fb.valued,
        "absErrorSum": fb.abs_error_sum,
    }


class _Reconcile:
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
        for per_version in ("feedback", DRIFTING_SINCE, RETRAINED_FOR, PENDING_PERFORMANCE):
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

    # -- live performance --------------------------------------------------------

    def check_performance(self) -> str | None:
        """A message when a new feedback window breaches `performance`, else None.

        The breach is also kept pending in the checkpoint (see `pending_performance`);
        a window that does not breach clears it."""
        perf, fb, cp = self.spec.performance, self.obs.feedback, self.checkpoint
        if perf is None:
            cp.pop(PENDING_PERFORMANCE, None)
            return None
        if fb is None:
            return None
        judged, breach = self.judge_performance(perf, fb)
        if breach is not None:
            cp[PENDING_PERFORMANCE] = breach
        elif judged:
            cp.pop(PENDING_PERFORMANCE, None)  # a healthy window came after the breach
        return breach

    def pending_performance(self) -> str | None:
        """The breach waiting for a retrain (this tick's or one from inside the cooldown)."""
        pending = self.checkpoint.get(PENDING_PERFORMANCE)
        return str(pending) if pending else None

    def judge_performance(
        self, perf: PerformanceSpec, fb: FeedbackStats
    ) -> tuple[bool, str | None]:
        """Whether a full feedback window was judged (setting `status.live`), and its breach."""
        cp, st = self.checkpoint, self.st
        before = cp.get("feedback")
        if not isinstance(before, dict) or any(
            getattr(fb, counter) < before.get(counter, 0)
            for counter in ("labelled", "correct", "valued")
        ):
            cp["feedback"] = _feedback_doc(fb)
            return False, None
        labelled = fb.labelled - int(before.get("labelled", 0))
        valued = fb.valued - int(before.get("valued", 0))
        samples = labelled if perf.metric == "accuracy" else valued
        if samples < perf.min_samples:
            return False, None
        cp["feedback"] = _feedback_doc(fb)
        if perf.metric == "accuracy":
            accuracy = (fb.correct - int(before.get("correct", 0))) / labelled
            st.live = LiveMetrics(samples=labelled, accuracy=accuracy)
            if perf.min is not None and accuracy < perf.min:
                return True, (
                    f"live accuracy {accuracy:.3f} < min {perf.min:g} "
                    f"over {labelled} labelled requests"
                )
            return True, None
        mae = (fb.abs_error_sum - float(before.get("absErrorSum", 0.0))) / valued
        st.live = LiveMetrics(samples=valued, mae=mae)
        if perf.max is not None and mae > perf.max:
            return True, f"live MAE {mae:.4g} > max {perf.max:g} over {valued} labelled requests"
        return True, None

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

    def schedule_due(self) -> bool:
        schedule, st = self.spec.schedule, self.st
        if schedule is None:
            return False
        last = parse_time(st.last_schedule_time)
        if last is None:
            st.last_schedule_time = self.stamp  # the schedule counts from the first look
            last = self.now
        following: datetime = croniter(schedule, last).get_next(datetime)
        if following <= self.now:
            return True  # stays due until a retrain takes it (see `retrain`): a cooldown delays it
        self.wait(seconds_between(self.now, following))
        return False

    def triggers(self, performance: str | None) -> list[tuple[Trigger, str]]:
        """Every trigger that wants a retrain now, most specific first."""
        st, spec, obs, cp = self.st, self.spec, self.obs, self.checkpoint
        fired: list[tuple[Trigger, str]] = []
        if (
            st.phase == "Drifting"
            and st.consecutive_drifting >= spec.consecutive
            and (cp.get(RETRAINED_FOR) != cp.get(DRIFTING_SINCE))
        ):
            fired.append(("drift", f"data-set drift: {self.drifted_text()}"))
        if performance:
            fired.append(("performance", performance))
        fingerprint = obs.dataset_fingerprint
        if fingerprint and st.dataset_fingerprint is None:
            st.dataset_fingerprint = fingerprint
        elif fingerprint and fingerprint != st.dataset_fingerprint:
            if spec.retrain_on_dataset_change:
                fired.append(
                    ("datasetChange", f"Dataset fingerprint changed to {fingerprint[:12]}")
                )
            else:
                st.dataset_fingerprint = fingerprint
        if self.schedule_due():
            fired.append(("schedule", f"schedule {spec.schedule!r}"))
        token = self.dm.metadata.annotations.get(ANNOTATION_RETRAIN)
        if token and cp.get(HANDLED_RETRAIN) != token:
            fired.append(("manual", f"requested by annotation {ANNOTATION_RETRAIN}={token}"))
        return fired

    def retrain(self, fired: list[tuple[Trigger, str]]) -> None:
        st, cp, spec = self.st, self.checkpoint, self.spec
        template = spec.on_drift.retrain
        if template is None:
            cp.pop(PENDING_PERFORMANCE, None)  # nothing to retrain with: do not keep it
            for trigger, _ in fired:
                if trigger == "manual":
                    cp[HANDLED_RETRAIN] = self.dm.metadata.annotations.get(ANNOTATION_RETRAIN)
                    self.events.append(
                        Event(
                            "Warning",
                            "RetrainIgnored",
                            "retrain requested but spec.onDrift.retrain is not set",
                        )
                    )
            return
        left = self.cooldown_left()
        if left > 0:
            self.wait(left)
            base = st.message.split("; retrain waits")[0]
            st.message = (
                f"{base}; retrain waits for the cooldown ({fired[0][0]}, {left:.0f}s left)"
            )[:1024]
            return
        trigger, why = fired[0]
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
        manifest = {
            "apiVersion": self.dm.api_version,
            "kind": "TrainingJob",
            "metadata": meta,
            "spec": body,
        }
        self.actions.append(CreateTrainingJob(manifest, "DriftMonitor", self.dm.name))
        others = [t for t, _ in fired[1:]]
        message = why + (f" (also: {', '.join(others)})" if others else "")
        st.last_retrain = RetrainRecord(
            name=name, trigger=trigger, time=self.stamp, message=message[:1024]
        )
        st.retrains += 1
        for fired_trigger, _ in fired:
            if fired_trigger == "drift":
                cp[RETRAINED_FOR] = cp.get(DRIFTING_SINCE)
            elif fired_trigger == "performance":
                cp.pop(PENDING_PERFORMANCE, None)
            elif fired_trigger == "datasetChange":
                st.dataset_fingerprint = self.obs.dataset_fingerprint
            elif fired_trigger == "schedule":
                st.last_schedule_time = self.stamp
            elif fired_trigger == "manual":
                cp[HANDLED_RETRAIN] = self.dm.metadata.annotations.get(ANNOTATION_RETRAIN)
        self.events.append(
            Event(
                "Normal",
                "RetrainCreated",
                f"TrainingJob {name} created by trigger {trigger}: {message}",
            )
        )
        self.wait(parse_duration(spec.on_drift.cooldown))

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
        st.conditions = reconciled_conditions(
            st.conditions,
            ready=ready,
            reason=reason,
            message=message,
            stalled=stalled,
            generation=dm.generation,
            now=r.stamp,
        )
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
    performance = r.check_performance()
    if performance:
        r.events.append(Event("Warning", "PerformanceDropped", performance))
    fired = r.triggers(r.pending_performance())
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
