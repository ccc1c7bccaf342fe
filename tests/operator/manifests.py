"""The custom resources the operator tests apply, and a trainer's run summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NS = "default"
CRDS = Path(__file__).resolve().parents[2] / "crds"
BASE = f"/apis/pilotage.dev/v1alpha1/namespaces/{NS}"


def dataset() -> dict[str, Any]:
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
    }


def training_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {"app": "iris"}},
        "spec": {
            "datasetRef": {"name": "iris"},
            "model": {"algorithm": "logistic_regression"},
            "activeDeadlineSeconds": 900,
            "evaluation": {"gates": [{"metric": "accuracy", "min": 0.8}]},
        },
    }


CANARY: dict[str, Any] = {
    "type": "Canary",
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {}},
            {"setWeight": 50},
            {"pause": {"duration": "1h"}},
        ]
    },
}
ANALYSIS: dict[str, Any] = {
    "interval": "1s",
    "minRequests": 5,
    "failureLimit": 0,
    "latency": {"p99Ms": 50},
}


def model_deployment(
    strategy: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"trainingJobSelector": {"matchLabels": {"app": "iris"}}},
            "strategy": strategy or CANARY,
            "analysis": analysis or ANALYSIS,
            **spec,
        },
    }


def drift_monitor() -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "iris"}}, "spec": training_job("x")["spec"]}
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "iris-drift"},
        "spec": {
            "deploymentRef": {"name": "iris"},
            "interval": "1s",
            "onDrift": {"retrain": {"template": template}},
        },
    }


def summary(version: str) -> dict[str, Any]:
    return {
        "modelVersion": version,
        "modelUri": f"pvc://artifacts/pilotage/{NS}/{version}/{version}",
        "metrics": {"accuracy": 0.95, "f1_macro": 0.94},
        "onnxParity": {"maxAbsDiff": 1e-7, "labelAgreement": 1.0},
        "datasetFingerprint": "ab" * 32,
    }
