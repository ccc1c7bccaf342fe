"""Run onnxruntime on validated rows and shape its outputs for the protocols."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pilotage.server.errors import RequestError
from pilotage.server.model import LoadedModel
from pilotage.server.rows import Rows, RowSchema


@dataclass(slots=True)
class Prediction:
    labels: np.ndarray  # [N]: class labels (int64 or object str) or float32 values
    probabilities: np.ndarray | None  # float32 [N, C] for classifiers

    def slice(self, start: int, stop: int) -> Prediction:
        probs = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.labels[start:stop], probs)


class Engine:
    def __init__(self, model: LoadedModel, schema: RowSchema) -> None:
        card = model.card
        self.model = model
        self.schema = schema
        self.session = model.session
        self.is_classifier = card.task == "classification"
        self.label_output = card.onnx.label_output
        self.probabilities_output = card.onnx.probabilities_output if self.is_classifier else None
        self.output_names = [self.label_output]
        if self.probabilities_output:
            self.output_names.append(self.probabilities_output)
        self.matrix_input = model.inputs[0].name if card.onnx.input_layout == "matrix" else None
        self.matrix_dtype = model.input_dtype(self.matrix_input) if self.matrix_input else None
        self.column_dtypes = {t.name: model.input_dtype(t.name) for t in model.inputs}
        label_type = model.output(self.label_output).datatype
        self.label_datatype = "BYTES" if label_type == "BYTES" else label_type
        if not self.is_classifier:
            self.label_datatype = "FP32"
        self.classes = [str(c) for c in card.classes or []]

    def feeds(self, rows: Rows) -> dict[str, np.ndarray]:
        if self.matrix_input is not None:
            x = rows.numeric
            if self.matrix_dtype is not np.float32:
                x = x.astype(self.matrix_dtype)
            return {self.matrix_input: x}
        feeds: dict[str, np.ndarray] = {}
        for feature in self.schema.features:
            slot = self.schema.slot[feature.name]
            dtype = self.column_dtypes[feature.name]
            if feature.type == "category":
                column = rows.categorical[slot]
                values = np.array(["" if v is None else v for v in column], dtype=object)
                feeds[feature.name] = values.reshape(-1, 1)
            else:
                feeds[feature.name] = np.ascontiguousarray(
                    rows.numeric[:, slot : slot + 1], dtype=dtype
                )
        return feeds

    def predict(self, rows: Rows) -> Prediction:
        try:
            result = self.session.run(self.output_names, self.feeds(rows))
        except Exception as exc:  # onnxruntime raises private exception types
            raise RequestError(422, f"the model could not score these rows: {exc}") from exc
        labels = np.asarray(result[0])
        if labels.ndim > 1:
            labels = labels.reshape(labels.shape[0])
        if not self.is_classifier:
            labels = labels.astype(np.float32, copy=False)
        probabilities = np.asarray(result[1], dtype=np.float32) if len(result) > 1 else None
        return Prediction(labels, probabilities)

    def typical_row(self) -> Rows:
        """One row of typical values: the middle baseline edge, the first category."""
        numeric = np.zeros((1, len(self.schema.numeric_features)), dtype=np.float32)
        card = self.model.card
        for j, feature in enumerate(self.schema.numeric_features):
            profile = card.baseline.features.get(feature.name)
            edges = getattr(profile, "edges", None)
            if edges:
                numeric[0, j] = edges[len(edges) // 2]
        categorical = []
        for feature in self.schema.categorical_features:
            cats = feature.categories or [""]
            categorical.append(np.array([cats[0]], dtype=object))
        return Rows(1, numeric, categorical)

    def warm_up(self) -> None:
        """One inference on a typical row before the server reports ready."""
        try:
            self.predict(self.typical_row())
        except RequestError as exc:
            raise RuntimeError(f"warm-up inference failed: {exc.message}") from exc
