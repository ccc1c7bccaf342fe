"""Load one model version: fetch the directory, verify the checksum, open the session.

The server never imports scikit-learn: everything it knows about the model comes from
the model card (``model.json``) and the ONNX graph.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from pilotage.api.modelcard import CARD_FILE, MODEL_FILE, ModelCard
from pilotage.storage import StorageError, confined, fetch_directory

ONNX_TO_NUMPY: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
ONNX_TO_V2: dict[str, str] = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class ModelLoadError(Exception):
    """The model cannot be served; the message says why in one line."""


@dataclass(frozen=True)
class GraphTensor:
    """One input or output of the ONNX graph as the V2 protocol describes it."""

    name: str
    onnx_type: str
    datatype: str
    shape: list[int]


@dataclass
class LoadedModel:
    card: ModelCard
    directory: Path
    session: ort.InferenceSession
    inputs: list[GraphTensor]
    outputs: list[GraphTensor]

    def input_dtype(self, name: str) -> type:
        for tensor in self.inputs:
            if tensor.name == name:
                return ONNX_TO_NUMPY[tensor.onnx_type]
        raise KeyError(name)

    def output(self, name: str) -> GraphTensor:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor(arg: ort.NodeArg) -> GraphTensor:
    onnx_type = str(arg.type)
    if onnx_type not in ONNX_TO_V2:
        raise ModelLoadError(f"ONNX tensor {arg.name!r} has unsupported type {onnx_type}")
    shape = [d if isinstance(d, int) else -1 for d in (arg.shape or [])]
    return GraphTensor(arg.name, onnx_type, ONNX_TO_V2[onnx_type], shape)


def _read_card(directory: Path) -> ModelCard:
    path = directory / CARD_FILE
    try:
        return ModelCard.from_json(path.read_bytes())
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise ModelLoadError(_card_problem(path, exc)) from exc


def _card_problem(path: Path, exc: ValidationError) -> str:
    """One line: the first problem of model.json, and how many more there are."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return f"{path} is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    where = ".".join(str(p) for p in first["loc"])
    detail = f"{where}: {first['msg']}" if where else first["msg"]
    more = exc.error_count() - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path} is not a valid model card: {detail}{extra}"


def _check_layout(card: ModelCard, inputs: list[GraphTensor], outputs: list[GraphTensor]) -> None:
    input_names = [t.name for t in inputs]
    if card.onnx.input_layout == "matrix":
        if len(inputs) != 1:
            raise ModelLoadError(
                f"model card says inputLayout=matrix but the ONNX graph has inputs {input_names}"
            )
        if any(f.type == "category" for f in card.features):
            raise ModelLoadError("inputLayout=matrix cannot carry categorical features")
    elif sorted(input_names) != sorted(card.feature_names()):
        raise ModelLoadError(
            f"model card says inputLayout=columns with features {card.feature_names()} "
            f"but the ONNX graph has inputs {input_names}"
        )
    output_names = {t.name for t in outputs}
    wanted = [card.onnx.label_output]
    if card.onnx.probabilities_output:
        wanted.append(card.onnx.probabilities_output)
    for name in wanted:
        if name not in output_names:
            raise ModelLoadError(
                f"model card names output {name!r}, which the ONNX graph lacks "
                f"(it has {sorted(output_names)})"
            )
    if card.task == "classification" and not card.classes:
        raise ModelLoadError("a classification model card must list its classes")


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Explicit on both pools: the defaults ignore CPU pinning and spin on other cores.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def load_model(uri: str, cache_dir: Path, threads: int = 1) -> LoadedModel:
    """Fetch, verify and open the model at ``uri``; raise ModelLoadError if it cannot be served."""
    try:
        directory = fetch_directory(uri, [CARD_FILE, MODEL_FILE], cache_dir)
    except StorageError as exc:
        raise ModelLoadError(str(exc)) from exc
    card = _read_card(directory)
    try:
        model_path = confined(
            directory, card.onnx.file, f"{CARD_FILE}: onnx.file {card.onnx.file!r}"
        )
    except StorageError as exc:
        raise ModelLoadError(f"refusing to serve {uri}: {exc}") from exc
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path} does not exist")
    actual = sha256_of(model_path)
    if actual != card.onnx.sha256:
        raise ModelLoadError(
            f"refusing to serve {uri}: sha256 of {card.onnx.file} is {actual} but "
            f"{CARD_FILE} says {card.onnx.sha256} (corrupt or tampered artifact)"
        )
    try:
        session = ort.InferenceSession(
            os.fspath(model_path),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc
    inputs = [_tensor(a) for a in session.get_inputs()]
    outputs = [_tensor(a) for a in session.get_outputs()]
    _check_layout(card, inputs, outputs)
    return LoadedModel(card, directory, session, inputs, outputs)
