"""The two runs the trainer image performs: profile a Dataset, train a TrainingJob.

Both return the summary dictionary (the keys of the resource's status) and never raise
for bad data or a bad spec: a run that cannot finish returns ``phase: Failed`` with the
reason in ``message``, and leaves nothing at the output URI.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from pilotage import sources
from pilotage.api.dataset import Dataset, DataSource
from pilotage.api.modelcard import (
    CARD_FILE,
    MODEL_FILE,
    Baseline,
    CategoricalProfile,
    DatasetInfo,
    FeatureInfo,
    ModelCard,
    NumericProfile,
    ParityInfo,
    Task,
)
from pilotage.api.trainingjob import GatesStatus, TrainingJob
from pilotage.drift.baseline import categorical_profile, numeric_profile, top_categories
from pilotage.storage import StorageError, join, publish_directory, read_bytes
from pilotage.trainer import streaming
from pilotage.trainer.algorithms import (
    float32_safe_thresholds,
    make_estimator,
    tunable_parameters,
)
from pilotage.trainer.errors import DataError, SpecError, TrainingError
from pilotage.trainer.evaluation import (
    check_gate_metrics,
    classification_metrics,
    describe_gates,
    evaluate_gates,
    regression_metrics,
    reported_metrics,
    residual_histogram,
)
from pilotage.trainer.export import (
    PARITY_TOLERANCE,
    check_parity,
    onnx_feeds,
    onnx_info,
    to_onnx,
)
from pilotage.trainer.pipeline import build_pipeline, encoder_categories, model_input
from pilotage.trainer.sampling import training_sample
from pilotage.trainer.search import search
from pilotage.trainer.summary import failed_profile, failed_train
from pilotage.trainer.validate import Column, ValidatedData, describe_errors, validate

Progress = Callable[[str], None]
PROFILE_FILE = "profile.json"
THREADS_ENV = "PILOTAGE_TRAIN_THREADS"
# A numeric target with at most this many distinct integral values is read as classes.
MAX_INFERRED_CLASSES = 20
LIBRARIES = ("pilotage", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")


def _threads() -> int:
    """Native threads for fitting: 1 unless PILOTAGE_TRAIN_THREADS says otherwise.

    OpenMP estimators (histogram gradient boosting) spin every core by default and are
    25x slower than one thread on a small, busy machine.
    """
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        return 1


def _quiet(_: str) -> None:
    return None


@contextmanager
def _warnings_to(progress: Progress) -> Iterator[None]:
    """Library warnings become progress lines (each text once) instead of stderr noise."""
    seen: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                text = str(w.message).splitlines()[0] if str(w.message) else w.category.__name__
                if text not in seen:
                    seen.add(text)
                    progress(f"warning: {w.category.__name__}: {text}")


def _one_line(exc: BaseException) -> str:
    """The first line of a library's message, quoted text left out: numpy, pandas and
    scikit-learn quote the value they choke on, and a value is data, which the status and
    Events of a resource must not carry (the run's log has the whole line)."""
    text = str(exc).strip()
    return _QUOTED.sub("'…'", text.splitlines()[0]) if text else type(exc).__name__


_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _internal_error(exc: BaseException, say: Progress) -> str:
    text = str(exc).strip()
    say(f"internal error: {type(exc).__name__}: {text.splitlines()[0] if text else ''}")
    return f"internal error: {type(exc).__name__}: {_one_line(exc)}"


def _load_and_validate(
    dataset: Dataset, progress: Progress
) -> tuple[sources.LoadedData, ValidatedData]:
    progress(f"loading {dataset.spec.source.uri}")
    loaded = sources.source_for(dataset.spec.source.uri).load(dataset.spec.source)
    progress(
        f"read {loaded.frame.shape[0]} rows x {loaded.frame.shape[1]} columns, "
        f"sha256 {loaded.fingerprint[:12]}"
    )
    validated = validate(dataset, loaded.frame)
    for f in validated.findings:
        progress(f"finding: {f.severity} {f.kind} {f.column or '(rows)'}: {f.count} - {f.message}")
    return loaded, validated


def _profile_of(
    values: pd.Series, column: Column, max_categories: int
) -> NumericProfile | CategoricalProfile:
    if column.type == "category":
        items = values.tolist()
        return categorical_profile(items, top_categories(items, max_categories))
    return numeric_profile(values.to_numpy(dtype=np.float64))


# ---------------------------------------------------------------- profile


def _column_summary(values: pd.Series, column: Column, role: str) -> dict[str, Any]:
    """One entry of the Dataset's `status.summary`."""
    present = values.dropna()
    out: dict[str, Any] = {
        "name": column.name,
        "role": role,
        "type": column.type,
        "missing": int(values.isna().sum()),
        "distinct": int(present.nunique()),
    }
    if column.type in ("float", "int") and len(present):
        numbers = present.to_numpy(dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        if finite.size:
            out["min"] = float(finite.min())
            out["max"] = float(finite.max())
    return out


def profile(
    dataset: Dataset, output_uri: str | None, progress: Progress | None = None
) -> dict[str, Any]:
    """Validate and profile a Dataset; write ``profile.json`` under ``output_uri`` when given.

    A source that gives a file is read in chunks (pilotage.trainer.streaming; a remote file
    is first copied to a temporary file, disk not memory, within the read timeout), so
    memory stays flat with the file's size; a builtin data set is small and read whole.
    """
    say = progress or _quiet
    summary = failed_profile()
    try:
        with tempfile.TemporaryDirectory(prefix="pilotage-snapshot-") as tmp:
            profiled, snapshot = _snapshot_of(dataset, Path(tmp), say)
            _profile(dataset, profiled, output_uri, say, summary, snapshot)
    except (TrainingError, StorageError) as exc:
        summary["message"] = str(exc)
    except Exception as exc:  # the run must end with a summary, whatever went wrong
        summary["message"] = _internal_error(exc, say)
    return summary


def _snapshot_of(
    dataset: Dataset, directory: Path, say: Progress
) -> tuple[Dataset, sources.Snapshot | None]:
    """The Dataset to profile: itself, or for a source that materialises its data (a window
    of logs) the same Dataset reading the Parquet snapshot written into ``directory``."""
    source = dataset.spec.source
    with _warnings_to(say):
        snapshot = sources.source_for(source.uri).materialise(dataset, directory, datetime.now(UTC))
    if snapshot is None:
        return dataset, None
    facts = snapshot.facts
    say(
        f"snapshot: {facts.get('rows')} rows ({facts.get('loggedRows')} logged, "
        f"{facts.get('labelledRows')} labelled, {facts.get('baseRows')} base) from "
        f"{facts.get('requests')} requests and {facts.get('labels')} labels; "
        f"{facts.get('skipped')} skipped"
        + (f"; read from {facts['sink']}" if facts.get("sink") else "")
    )
    # The snapshot is a plain Parquet file: the source's default target goes with it.
    target = dataset.spec.target or sources.source_for(source.uri).default_target
    spec = dataset.spec.model_copy(
        update={
            "source": DataSource(uri=snapshot.path.as_uri(), format="parquet"),
            "target": target,
        }
    )
    return dataset.model_copy(update={"spec": spec}), snapshot


def _profile(
    dataset: Dataset,
    profiled: Dataset,
    output_uri: str | None,
    say: Progress,
    summary: dict[str, Any],
    snapshot: sources.Snapshot | None,
) -> None:
    uri = dataset.spec.source.uri
    source = sources.source_for(profiled.spec.source.uri)
    with _warnings_to(say), source.local_file(profiled.spec.source) as data_file:
        if data_file is None:
            loaded, validated = _load_and_validate(profiled, say)
            result = streaming.Streamed(
                rows=int(loaded.frame.shape[0]),
                columns=int(loaded.frame.shape[1]),
                fingerprint=loaded.fingerprint,
                findings=validated.findings,
                features=validated.features,
                target=validated.target,
                profiles={
                    c.name: _profile_of(validated.frame[c.name], c, 50)
                    for c in [*validated.features, validated.target]
                },
                summary=[
                    _column_summary(
                        validated.frame[c.name],
                        c,
                        "target" if c is validated.target else "feature",
                    )
                    for c in [validated.target, *validated.features]
                ],
                task=_infer_task(validated.target, validated.frame[validated.target.name]),
            )
        else:
            say(f"reading {uri} in chunks of {streaming.CHUNK_ROWS} rows")
            result = streaming.profile_file(profiled, data_file.path, data_file.format, uri)
            say(
                f"read {result.rows} rows x {result.columns} columns, "
                f"sha256 {result.fingerprint[:12]}"
            )
            for f in result.findings:
                say(
                    f"finding: {f.severity} {f.kind} {f.column or '(rows)'}: {f.count} - {f.message}"
                )
    summary.update(
        rows=result.rows,
        columns=result.columns,
        fingerprint=result.fingerprint,
        findings=[f.dump() for f in result.findings],
    )
    if result.errors:
        raise DataError(describe_errors(result.errors))
    columns = [*result.features, result.target]
    summary["target"] = result.target.name
    summary["task"] = result.task
    summary["summary"] = result.summary
    document = {
        "dataset": dataset.name,
        "uri": dataset.spec.source.uri,
        "fingerprint": result.fingerprint,
        "rows": result.rows,
        "target": result.target.name,
        "columns": {
            c.name: {
                "type": c.type,
                **result.profiles[c.name].model_dump(by_alias=True, exclude_none=True),
            }
            for c in columns
        },
        "findings": summary["findings"],
        "created": _now(),
    }
    if output_uri:
        with tempfile.TemporaryDirectory(prefix="pilotage-profile-") as tmp:
            (Path(tmp) / PROFILE_FILE).write_text(json.dumps(document, indent=2) + "\n")
            if snapshot is not None:
                shutil.copyfile(snapshot.path, Path(tmp) / snapshot.path.name)
            publish_directory(Path(tmp), output_uri)
        summary["profileUri"] = join(output_uri, PROFILE_FILE)
        say(f"wrote {summary['profileUri']}")
        if snapshot is not None:
            summary["snapshot"] = {"uri": join(output_uri, snapshot.path.name), **snapshot.facts}
    warnings_count = len(result.findings)
    summary["phase"] = "Ready"
    summary["message"] = (
        f"{summary['rows']} rows, {summary['columns']} columns, {warnings_count} warning(s)"
    )


# ---------------------------------------------------------------- train


def _infer_task(target: Column, y: pd.Series) -> Task:
    if target.type in ("category", "bool"):
        return "classification"
    integral = bool(np.all(np.floor(y) == y))
    if integral and y.nunique() <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _target_values(target: Column, y: pd.Series, task: Task) -> np.ndarray:
    if task == "regression":
        if target.type == "category":
            raise SpecError(
                f"task regression needs a numeric target, but {target.name} is categorical"
            )
        values: np.ndarray = y.to_numpy(dtype=np.float64)
        return values
    if target.type != "category" and bool(np.all(np.floor(y) == y)):
        whole: np.ndarray = y.to_numpy(dtype=np.float64).astype(np.int64)
        return whole
    return np.array([str(v) for v in y], dtype=object)


def _split(x_frame: pd.DataFrame, y: np.ndarray, dataset: Dataset, task: Task) -> tuple[Any, ...]:
    split = dataset.spec.split
    stratify = None
    if task == "classification" and split.stratify:
        _, counts = np.unique(y.astype(str), return_counts=True)
        if counts.min() >= 2:
            stratify = y
    try:
        return tuple(
            train_test_split(
                x_frame,
                y,
                test_size=split.test_fraction,
                random_state=split.seed,
                stratify=stratify,
            )
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split {len(y)} rows: {_one_line(exc)}") from exc


def _require_every_class_in_training(
    classes: list[Any], y: np.ndarray, y_train: np.ndarray, target: str
) -> None:
    """A class whose rows all fell in the test split cannot be learnt, and the metrics
    (computed over the classes the model knows) cannot score its test rows."""
    seen = set(np.asarray(y_train).tolist())
    absent = [c for c in classes if c not in seen]
    if not absent:
        return
    all_values = np.asarray(y).tolist()
    counts = ", ".join(f"{c!r} ({all_values.count(c)} rows)" for c in absent[:5])
    raise TrainingError(
        f"the training split has no row of class(es) {counts} of target {target}; "
        "add rows of these classes, or remove them from the data"
    )


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(params.items()):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _libraries() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _sha256(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


def train(
    dataset: Dataset, job: TrainingJob, output_uri: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Train, evaluate, export and publish one model version; return the summary."""
    say = progress or _quiet
    summary = failed_train(job.version)
    try:
        with _warnings_to(say), threadpool_limits(limits=_threads()):
            _train(dataset, job, output_uri, say, summary)
    except SpecError as exc:
        summary["message"] = str(exc)
        summary["retryable"] = False
    except (TrainingError, StorageError) as exc:
        summary["message"] = str(exc)
    except Exception as exc:  # the run must end with a summary, whatever went wrong
        summary["message"] = _internal_error(exc, say)
    if summary["phase"] != "Succeeded":
        summary["modelUri"] = None
    return summary


def _train(
    dataset: Dataset, job: TrainingJob, output_uri: str, say: Progress, summary: dict[str, Any]
) -> None:
    spec = job.spec
    if spec.dataset_ref.name != dataset.name:
        raise SpecError(
            f"TrainingJob {job.name} refers to Dataset {spec.dataset_ref.name!r}, "
            f"but the manifests hold Dataset {dataset.name!r}"
        )
    loaded, validated = _load_and_validate(dataset, say)
    summary["datasetFingerprint"] = loaded.fingerprint
    if validated.errors:
        raise DataError(describe_errors(validated.errors))
    frame = validated.frame
    features = validated.features
    target = validated.target
    y_raw = frame[target.name]
    task: Task = spec.task or _infer_task(target, y_raw)
    summary["task"] = task
    y = _target_values(target, y_raw, task)
    check_gate_metrics(spec.evaluation.gates, task)
    classes: list[Any] | None = None
    if task == "classification":
        classes = sorted(set(y.tolist()))
        if len(classes) < 2:
            raise TrainingError(
                f"target {target.name} has a single class {classes}; nothing to learn"
            )
    say(
        f"task {task}, {len(features)} features, target {target.name}"
        + (f" ({len(classes)} classes)" if classes else "")
    )

    train_frame, test_frame, y_train, y_test = _split(
        frame[[f.name for f in features]], y, dataset, task
    )
    say(f"split: {len(y_train)} train, {len(y_test)} test rows")
    if classes is not None:
        _require_every_class_in_training(classes, y, y_train, target.name)
    x_train = model_input(train_frame, features)
    x_test = model_input(test_frame, features)

    categories = (
        encoder_categories(x_train, features, spec.preprocessing)
        if not isinstance(x_train, np.ndarray)
        else {}
    )
    estimator = make_estimator(spec.model.algorithm, task, spec.model.hyperparameters, spec.seed)
    pipeline = build_pipeline(features, spec.preprocessing, estimator, categories, task)
    searched: dict[str, Any] = {}
    try:
        if spec.search is not None:
            pipeline, searched = search(
                pipeline,
                spec.search,
                task,
                binary=bool(classes and len(classes) == 2),
                tunable=tunable_parameters(spec.model.algorithm, task),
                x=x_train,
                y=y_train,
                progress=say,
            )
        else:
            say(f"fitting {spec.model.algorithm}")
            pipeline.fit(x_train, y_train)
    except ValueError as exc:
        raise TrainingError(f"fitting {spec.model.algorithm} failed: {_one_line(exc)}") from exc

    float32_safe_thresholds(pipeline.steps[-1][1])

    all_metrics: dict[str, float]
    extra: dict[str, Any] = {}
    if task == "classification":
        assert classes is not None
        fitted_classes = [c.item() if isinstance(c, np.generic) else c for c in pipeline.classes_]
        proba = pipeline.predict_proba(x_test)
        all_metrics, matrix = classification_metrics(
            y_test, pipeline.predict(x_test), proba, fitted_classes
        )
        extra["confusion_matrix"] = {"labels": fitted_classes, "matrix": matrix}
        classes = fitted_classes
    else:
        predicted = pipeline.predict(x_test)
        all_metrics = regression_metrics(y_test, predicted)
        extra["residuals"] = residual_histogram(y_test, predicted)
    all_metrics = _finite(all_metrics)
    metrics = reported_metrics(all_metrics, list(spec.evaluation.metrics), spec.evaluation.gates)
    gates = evaluate_gates(spec.evaluation.gates, all_metrics)
    summary["metrics"] = metrics
    if spec.evaluation.champion is not None:
        summary["champion"] = _score_champion(
            spec.evaluation.champion.uri, x_test, y_test, features, task, list(metrics), say
        )
    summary["gates"] = gates.dump()
    say("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    name = spec.model_name or dataset.name
    say("exporting to ONNX")
    exported = to_onnx(pipeline, features, task, graph_name=name)
    parity = check_parity(exported, pipeline, x_test, features, task)
    summary["onnxParity"] = {
        "maxAbsDiff": parity.max_abs_diff,
        "labelAgreement": parity.label_agreement,
    }
    say(
        f"parity: max abs diff {parity.max_abs_diff:.3g}, label agreement {parity.label_agreement:.4f}"
    )
    if not parity.max_abs_diff <= PARITY_TOLERANCE:
        raise TrainingError(
            f"ONNX parity check failed: max abs difference {parity.max_abs_diff:.3g} between "
            f"scikit-learn and onnxruntime exceeds {PARITY_TOLERANCE:g}"
        )

    card = _card(
        name=name,
        job=job,
        dataset=dataset,
        task=task,
        features=features,
        target=target,
        classes=classes,
        metrics={**all_metrics, **extra},
        gates=gates,
        hyperparameters=_json_params(pipeline.steps[-1][1].get_params()),
        fingerprint=loaded.fingerprint,
        rows=len(frame),
        sha256=_sha256(exported.content),
        exported=exported,
        parity=parity,
        baseline=_baseline(
            train_frame,
            features,
            pipeline,
            x_train,
            task,
            classes,
            spec.preprocessing.max_categories,
            spec.seed,
        ),
    )
    with tempfile.TemporaryDirectory(prefix="pilotage-model-") as tmp:
        (Path(tmp) / MODEL_FILE).write_bytes(exported.content)
        (Path(tmp) / CARD_FILE).write_text(card.to_json() + "\n")
        publish_directory(Path(tmp), output_uri)
    say(f"wrote {output_uri} (sha256 {card.onnx.sha256[:12]})")
    if searched:
        summary["search"] = searched
        say(f"hyperparameters from search: {searched['bestParameters']}")
    summary["phase"] = "Succeeded"
    summary["modelUri"] = output_uri
    summary["message"] = (
        f"model {name} {job.version}: {describe_gates(gates)}"
        if spec.evaluation.gates
        else f"model {name} {job.version} trained (no gates)"
    )


def _score_champion(
    uri: str,
    x_test: Any,
    y_test: np.ndarray,
    features: list[Column],
    task: Task,
    names: list[str],
    say: Progress,
) -> dict[str, Any]:
    """The champion model's scores on the same test rows as the new model's: ``metrics``,
    or ``error`` saying why it could not be scored (another feature set, unreadable...)."""
    import onnxruntime as ort

    try:
        card = ModelCard.from_json(read_bytes(join(uri, CARD_FILE)).decode())
        content = read_bytes(join(uri, MODEL_FILE))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(
            content, sess_options=options, providers=["CPUExecutionProvider"]
        )
        feeds = onnx_feeds(x_test, features)
        wanted = [i.name for i in session.get_inputs()]
        missing = [n for n in wanted if n not in feeds]
        if missing:
            raise TrainingError(f"it reads input {missing[0]!r}, which the new data lacks")
        outputs = [card.onnx.label_output]
        if task == "classification" and card.onnx.probabilities_output:
            outputs.append(card.onnx.probabilities_output)
        result = session.run(outputs, {n: feeds[n] for n in wanted})
        labels = np.asarray(result[0]).reshape(-1)
        if task == "classification":
            classes = list(card.classes or [])
            proba = np.asarray(result[1], dtype=np.float64) if len(result) > 1 else None
            if proba is None or proba.shape[1] != len(classes):
                raise TrainingError("its card and its probabilities disagree on the classes")
            scores, _ = classification_metrics(y_test, labels, proba, classes)
        else:
            scores = regression_metrics(y_test, labels.astype(np.float64))
    except (StorageError, TrainingError, ValueError, KeyError) as exc:
        say(f"champion {uri} not scored: {_one_line(exc)}")
        return {"error": _one_line(exc)}
    except Exception as exc:  # onnxruntime raises private exception types
        say(f"champion {uri} not scored: {type(exc).__name__}")
        return {"error": f"onnxruntime cannot run it ({type(exc).__name__})"}
    scores = _finite(scores)
    chosen = {n: scores[n] for n in names if n in scores}
    say("champion metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in chosen.items()))
    return {"metrics": chosen}


def _baseline(
    train_frame: pd.DataFrame,
    features: list[Column],
    pipeline: Any,
    x_train: Any,
    task: Task,
    classes: list[Any] | None,
    max_categories: int,
    seed: int,
) -> Baseline:
    profiles = {f.name: _profile_of(train_frame[f.name], f, max_categories) for f in features}
    predicted = pipeline.predict(x_train)
    predictions: NumericProfile | CategoricalProfile
    if task == "classification":
        assert classes is not None
        predictions = categorical_profile([str(v) for v in predicted], [str(c) for c in classes])
    else:
        predictions = numeric_profile(np.asarray(predicted, dtype=np.float64))
    return Baseline(
        rows=len(train_frame),
        features=profiles,
        predictions=predictions,
        sample=training_sample(train_frame, features, seed),
    )


def _card(
    *,
    name: str,
    job: TrainingJob,
    dataset: Dataset,
    task: Task,
    features: list[Column],
    target: Column,
    classes: list[Any] | None,
    metrics: dict[str, Any],
    gates: GatesStatus,
    hyperparameters: dict[str, Any],
    fingerprint: str,
    rows: int,
    sha256: str,
    exported: Any,
    parity: Any,
    baseline: Baseline,
) -> ModelCard:
    infos = []
    for f in features:
        profile_ = baseline.features[f.name]
        infos.append(
            FeatureInfo(
                name=f.name,
                type=f.type,
                nullable=f.nullable,
                categories=list(profile_.categories)
                if isinstance(profile_, CategoricalProfile)
                else None,
                min=f.min,
                max=f.max,
            )
        )
    return ModelCard(
        name=name,
        version=job.version,
        task=task,
        algorithm=job.spec.model.algorithm,
        features=infos,
        target=target.name,
        classes=[c if isinstance(c, str) else int(c) for c in classes] if classes else None,
        metrics=metrics,
        gates=gates.dump(),
        hyperparameters=hyperparameters,
        dataset=DatasetInfo(
            name=dataset.name, uri=dataset.spec.source.uri, fingerprint=fingerprint, rows=rows
        ),
        created=_now(),
        libraries=_libraries(),
        onnx=onnx_info(exported, sha256),
        parity=ParityInfo(
            max_abs_diff=parity.max_abs_diff,
            label_agreement=parity.label_agreement,
            rows=parity.rows,
        ),
        baseline=baseline,
    )
