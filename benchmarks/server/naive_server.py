"""The naive baseline: FastAPI + pydantic + onnxruntime, V2 JSON, uvicorn defaults.

What a team writes in an afternoon. onnxruntime threads are set to 1 (as in the
pilotage server) so that neither server borrows cores the other cannot.
Run: python naive_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceRequest(BaseModel):
    inputs: list[Tensor]


def build_app(model_dir: Path) -> FastAPI:
    card = json.loads((model_dir / "model.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options)
    input_name = session.get_inputs()[0].name
    n_features = len(card["features"])
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: InferenceRequest) -> dict[str, object]:
        if name != card["name"]:
            raise HTTPException(404, f"unknown model {name}")
        tensor = request.inputs[0]
        if len(tensor.data) != tensor.shape[0] * n_features:
            raise HTTPException(400, "wrong shape")
        x = np.asarray(tensor.data, dtype=np.float32).reshape(-1, n_features)
        outputs = session.run(None, {input_name: x})
        label = outputs[0].reshape(-1)
        result = [
            {
                "name": "label",
                "shape": list(label.shape),
                "datatype": "INT64",
                "data": label.tolist(),
            }
        ]
        if len(outputs) > 1:
            probs = outputs[1]
            result.append(
                {
                    "name": "probabilities",
                    "shape": list(probs.shape),
                    "datatype": "FP32",
                    "data": probs.ravel().tolist(),
                }
            )
        return {"model_name": name, "outputs": result}

    return app


if __name__ == "__main__":
    uvicorn.run(build_app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]))
