"""Trigger `datasetChange`: the Dataset's fingerprint changed (`retrainOnDatasetChange`).

The first fingerprint seen is the reference; without `retrainOnDatasetChange` a new one
is simply taken as the reference."""

from __future__ import annotations

from pilotage.api.driftmonitor import DriftMonitorSpec
from pilotage.control.triggers.base import RetrainTrigger, Tick


class DatasetChangeTrigger(RetrainTrigger):
    name = "datasetChange"

    def problem(self, spec: DriftMonitorSpec) -> str | None:
        if spec.retrain_on_dataset_change and spec.on_drift.retrain is None:
            return "spec.onDrift.retrain: retrainOnDatasetChange needs a TrainingJob template"
        return None

    def fired(self, tick: Tick) -> str | None:
        st, fingerprint = tick.st, tick.obs.dataset_fingerprint
        if fingerprint and st.dataset_fingerprint is None:
            st.dataset_fingerprint = fingerprint
        elif fingerprint and fingerprint != st.dataset_fingerprint:
            if tick.spec.retrain_on_dataset_change:
                return f"Dataset fingerprint changed to {fingerprint[:12]}"
            st.dataset_fingerprint = fingerprint
        return None

    def taken(self, tick: Tick) -> None:
        tick.st.dataset_fingerprint = tick.obs.dataset_fingerprint
