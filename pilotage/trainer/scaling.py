"""A scaler whose scikit-learn output is bit-identical to its ONNX conversion.

scikit-learn's scalers compute in float64 and round once; the ONNX ``Scaler`` operator
computes ``(x - offset) * scale`` in float32. The two differ in the last bit for most
values, and a tree split learned on one rendering then sends some rows the other way
in onnxruntime (probability differences of 0.1 and more on iris with a random forest).
``Float32Scaler`` learns its offset and scale with the scikit-learn scaler of choice,
then transforms exactly as the ONNX operator does, and converts to that operator.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

Method = Literal["standard", "minmax", "robust"]


def _safe_inverse(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(values == 0.0, 1.0, 1.0 / np.where(values == 0.0, 1.0, values))


class Float32Scaler(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # untyped sklearn bases
    """Standard, min-max or robust scaling computed as ``(x - offset) * scale`` in float32."""

    def __init__(self, method: Method = "standard") -> None:
        self.method = method

    def fit(self, x: Any, y: Any = None) -> Float32Scaler:
        data = np.asarray(x, dtype=np.float32)
        if self.method == "standard":
            standard = StandardScaler().fit(data)
            offset, scale = standard.mean_, _safe_inverse(standard.scale_)
        elif self.method == "minmax":
            minmax = MinMaxScaler().fit(data)
            offset, scale = minmax.data_min_, _safe_inverse(minmax.data_range_)
        elif self.method == "robust":
            robust = RobustScaler().fit(data)
            offset, scale = robust.center_, _safe_inverse(robust.scale_)
        else:
            raise ValueError(f"unknown scaling method {self.method!r}")
        self.offset_ = np.asarray(offset, dtype=np.float32)
        self.scale_ = np.asarray(scale, dtype=np.float32)
        self.n_features_in_ = data.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        data = np.asarray(x, dtype=np.float32)
        return (data - self.offset_) * self.scale_


def _shape(operator: Any) -> None:
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, operator.raw_operator.n_features_in_])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    model: Float32Scaler = operator.raw_operator
    container.add_node(
        "Scaler",
        operator.inputs[0].full_name,
        operator.outputs[0].full_name,
        op_domain="ai.onnx.ml",
        name=scope.get_unique_operator_name("Scaler"),
        offset=[float(v) for v in model.offset_],
        scale=[float(v) for v in model.scale_],
    )


update_registered_converter(Float32Scaler, "PilotageFloat32Scaler", _shape, _convert)
