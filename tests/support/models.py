"""Trained model directories for tests, made with the trainer's Python API.

`build_model` trains a real scikit-learn pipeline on one of scikit-learn's builtin data
sets, exports it to ONNX and writes ``model.onnx`` + ``model.json`` into ``dest``. The
same arguments reuse the directory built earlier in the same test session (copied into
``dest``), since training and conversion cost a second or so each.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

_CACHE: dict[str, Path] = {}
_CACHE_ROOT: Path | None = None


def _cache_root() -> Path:
    global _CACHE_ROOT
    if _CACHE_ROOT is None:
        _CACHE_ROOT = Path(tempfile.mkdtemp(prefix="pilotage-test-models-"))
    return _CACHE_ROOT


def build_model(
    dest: Path,
    dataset: str = "iris",
    algorithm: str = "logistic_regression",
    version: str = "v1",
    **hyperparameters: Any,
) -> Path:
    """Train ``algorithm`` on ``builtin://<dataset>`` and return the model directory ``dest``.

    ``dest`` must not exist yet or be an empty directory. The model is named after the
    data set (``iris``) and carries ``version``.
    """
    from pilotage.api.dataset import Dataset
    from pilotage.api.trainingjob import TrainingJob
    from pilotage.trainer.run import train

    key = json.dumps([dataset, algorithm, version, hyperparameters], sort_keys=True, default=str)
    cached = _CACHE.get(key)
    if cached is None or not cached.is_dir():
        cached = _cache_root() / f"model-{len(_CACHE)}"
        ds = Dataset.model_validate(
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": dataset.replace("_", "-")},
                "spec": {"source": {"uri": f"builtin://{dataset}"}},
            }
        )
        job = TrainingJob.model_validate(
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": f"{dataset.replace('_', '-')}-{version}".lower()},
                "spec": {
                    "datasetRef": {"name": ds.name},
                    "model": {"algorithm": algorithm, "hyperparameters": hyperparameters},
                    "modelName": dataset.replace("_", "-"),
                    "version": version,
                },
            }
        )
        summary = train(ds, job, cached.as_uri())
        if summary["phase"] != "Succeeded":
            raise RuntimeError(f"build_model({dataset}, {algorithm}) failed: {summary['message']}")
        _CACHE[key] = cached
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"build_model: {dest} is not empty")
    shutil.copytree(cached, dest, dirs_exist_ok=True)
    return dest
