"""ONNX export of the fitted pipeline and the parity check against scikit-learn.

The graph's outputs are ``label`` + ``probabilities`` (a float tensor, no ZipMap) for
classifiers and ``variable`` for regressors. The serialized bytes are made independent
of the process (skl2onnx names the graph with a random id and emits opset imports in
set order), so the same pipeline always gives the same ``model.onnx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from pilotage.api.modelcard import OnnxInfo, Task, TensorInfo
from pilotage.trainer.errors import TrainingError
from pilotage.trainer.pipeline import Layout, layout_of
from pilotage.trainer.validate import Column

OPSET = 17
ML_OPSET = 3
MATRIX_INPUT = "input"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
REGRESSION_OUTPUT = "variable"
PARITY_TOLERANCE = 1e-4
PRODUCER = "pilotage"

_V2_TYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.STRING: "BYTES",
}


@dataclass(frozen=True)
class Exported:
    content: bytes
    info_inputs: list[TensorInfo]
    info_outputs: list[TensorInfo]
    layout: Layout
    label_output: str
    probabilities_output: str | None


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    label_agreement: float
    rows: int


def _initial_types(features: list[Column]) -> list[tuple[str, Any]]:
    if layout_of(features) == "matrix":
        return [(MATRIX_INPUT, FloatTensorType([None, len(features)]))]
    return [
        (
            f.name,
            StringTensorType([None, 1]) if f.type == "category" else FloatTensorType([None, 1]),
        )
        for f in features
    ]


def _float_output(model: onnx.ModelProto, name: str) -> None:
    """Make the float64 output ``name`` an FP32 output of the same name."""
    internal = f"{name}_float64"
    for node in model.graph.node:
        for i, out in enumerate(node.output):
            if out == name:
                node.output[i] = internal
    model.graph.node.append(
        onnx.helper.make_node(
            "Cast", [internal], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_to_float32"
        )
    )
    for value in model.graph.output:
        if value.name == name:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def _canonical(model: onnx.ModelProto, name: str) -> bytes:
    model.graph.name = name
    model.producer_name = PRODUCER
    model.producer_version = ""
    model.doc_string = ""
    imports = sorted(((o.domain, o.version) for o in model.opset_import), key=lambda o: o[0])
    del model.opset_import[:]
    for domain, version in imports:
        model.opset_import.add(domain=domain, version=version)
    serialized: bytes = model.SerializeToString(deterministic=True)
    return serialized


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return TensorInfo(
        name=value.name, datatype=_V2_TYPES.get(int(tensor.elem_type), "BYTES"), shape=shape
    )


def to_onnx(pipeline: Pipeline, features: list[Column], task: Task, graph_name: str) -> Exported:
    options: dict[int, dict[str, Any]] = {}
    if task == "classification":
        options[id(pipeline.steps[-1][1])] = {"zipmap": False}
    try:
        model = convert_sklearn(
            pipeline,
            initial_types=_initial_types(features),
            options=options,
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as exc:  # skl2onnx raises many exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"ONNX conversion failed: {first}") from exc
    if task == "regression":
        _float_output(model, REGRESSION_OUTPUT)
    content = _canonical(model, graph_name)
    outputs = [_tensor_info(o) for o in model.graph.output]
    names = {o.name for o in outputs}
    if task == "classification":
        expected = {LABEL_OUTPUT, PROBABILITIES_OUTPUT}
    else:
        expected = {REGRESSION_OUTPUT}
    if not expected <= names:
        raise TrainingError(f"ONNX graph has outputs {sorted(names)}, expected {sorted(expected)}")
    return Exported(
        content=content,
        info_inputs=[_tensor_info(i) for i in model.graph.input],
        info_outputs=outputs,
        layout=layout_of(features),
        label_output=LABEL_OUTPUT if task == "classification" else REGRESSION_OUTPUT,
        probabilities_output=PROBABILITIES_OUTPUT if task == "classification" else None,
    )


def onnx_info(exported: Exported, sha256: str) -> OnnxInfo:
    return OnnxInfo(
        sha256=sha256,
        opset=OPSET,
        input_layout=exported.layout,
        inputs=exported.info_inputs,
        outputs=exported.info_outputs,
        label_output=exported.label_output,
        probabilities_output=exported.probabilities_output,
    )


def onnx_feeds(x: Any, features: list[Column]) -> dict[str, np.ndarray]:
    """The ONNX inputs of rows ``x`` (a model's own graph, or a champion's with the same
    feature names)."""
    if layout_of(features) == "matrix":
        return {MATRIX_INPUT: np.asarray(x, dtype=np.float32)}
    feeds: dict[str, np.ndarray] = {}
    for f in features:
        column = x[f.name].to_numpy()
        if f.type == "category":
            feeds[f.name] = column.astype(object).reshape(-1, 1)
        else:
            feeds[f.name] = column.astype(np.float32).reshape(-1, 1)
    return feeds


def check_parity(
    exported: Exported, pipeline: Pipeline, x: Any, features: list[Column], task: Task
) -> Parity:
    """Compare scikit-learn with onnxruntime on ``x``; fail above PARITY_TOLERANCE."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            exported.content, sess_options=options, providers=["CPUExecutionProvider"]
        )
        names = [exported.label_output]
        if exported.probabilities_output:
            names.append(exported.probabilities_output)
        result = session.run(names, onnx_feeds(x, features))
    except Exception as exc:  # onnxruntime raises private exception types
        raise TrainingError(f"onnxruntime cannot run the exported model: {exc}") from exc
    rows = len(x)
    if task == "classification":
        expected_labels = pipeline.predict(x)
        expected_proba = pipeline.predict_proba(x)
        labels = np.asarray(result[0]).reshape(-1)
        proba = np.asarray(result[1], dtype=np.float64)
        agreement = float(np.mean(labels == expected_labels)) if rows else 1.0
        diff = float(np.max(np.abs(proba - expected_proba))) if rows else 0.0
    else:
        # The contract's output is FP32: compare with scikit-learn rounded the same way.
        expected_values = (
            np.asarray(pipeline.predict(x)).astype(np.float32).astype(np.float64).reshape(-1)
        )
        values = np.asarray(result[0], dtype=np.float64).reshape(-1)
        agreement = 1.0
        diff = float(np.max(np.abs(values - expected_values))) if rows else 0.0
    return Parity(max_abs_diff=diff, label_agreement=agreement, rows=rows)
