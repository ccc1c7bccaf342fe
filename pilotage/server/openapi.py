"""The hand-written OpenAPI 3 document served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from pilotage.wire.drift_counts import SCHEMA as DRIFT_COUNTS_SCHEMA

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad input; the message names the problem",
        404: "unknown endpoint, model or version",
        405: "wrong method",
        413: "body too large",
        422: "the model could not score the rows",
    }
    return {str(c): {"description": text[c], **_json(ERROR)} for c in codes}


def _get(summary: str, schema: dict[str, Any], params: list[str], *codes: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
            "responses": {"200": {"description": "OK", **_json(schema)}, **_errors(*codes)},
        }
    }


def _post(
    summary: str, body: dict[str, Any], schema: dict[str, Any], params: list[str]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
            "requestBody": {"required": True, **_json(body)},
            "responses": {
                "200": {"description": "OK", **_json(schema)},
                **_errors(400, 404, 405, 413, 422),
            },
        }
    }


def document(
    model: str,
    version: str,
    features: list[str],
    example_row: list[Any],
    fault_injection: bool = False,
) -> dict[str, Any]:
    """The document for one model; ``example_row`` is a typical row in feature order.

    ``/admin/faults`` is described only when the server has fault injection on.
    """
    obj = {"type": "object"}
    ref = "#/components/schemas/"
    name = ["ModelName"]
    named = ["ModelName", "ModelVersion"]
    paths: dict[str, Any] = {
        "/v2/health/live": _get("Liveness", obj, []),
        "/v2/health/ready": _get("Readiness", obj, []),
        "/v2": _get("Server metadata", obj, []),
        "/v2/models/{model_name}": _get(
            "Model metadata", {"$ref": ref + "ModelMetadata"}, name, 404
        ),
        "/v2/models/{model_name}/ready": _get("Model readiness", obj, name, 404),
        "/v2/models/{model_name}/versions/{model_version}": _get(
            "Model metadata (one version)", {"$ref": ref + "ModelMetadata"}, named, 404
        ),
        "/v2/models/{model_name}/versions/{model_version}/ready": _get(
            "Model readiness (one version)", obj, named, 404
        ),
        "/v2/models/{model_name}/infer": _post(
            "V2 inference",
            {"$ref": ref + "InferenceRequest"},
            {"$ref": ref + "InferenceResponse"},
            name,
        ),
        "/v2/models/{model_name}/versions/{model_version}/infer": _post(
            "V2 inference (one version)",
            {"$ref": ref + "InferenceRequest"},
            {"$ref": ref + "InferenceResponse"},
            named,
        ),
        "/v1/models": _get("Models served", obj, []),
        "/v1/models/{model_name}": _get("V1 model status", obj, name, 404),
        "/v1/models/{model_name}:predict": _post(
            "V1 prediction", {"$ref": ref + "V1Request"}, {"$ref": ref + "V1Response"}, name
        ),
        "/v1/models/{model_name}/drift": _get(
            "Cumulative drift counters and recent rows", {"$ref": ref + "Drift"}, name, 404
        ),
        "/v1/models/{model_name}/card": _get(
            "The model card (model.json) as loaded", obj, name, 404
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": _get("This document", obj, []),
    }
    if fault_injection:
        paths["/admin/faults"] = {
            **_get("Current fault injection", {"$ref": ref + "Faults"}, []),
            "post": {
                "summary": "Change fault injection at run time",
                "requestBody": {"required": True, **_json({"$ref": ref + "Faults"})},
                "responses": {
                    "200": {"description": "new settings", **_json({"$ref": ref + "Faults"})},
                    **_errors(400, 413),
                },
            },
        }
    scalar = {
        "oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}],
        "nullable": True,
    }
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {
                "type": "string",
                "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                         "INT64", "FP16", "FP32", "FP64", "BYTES"],
            },
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}},
        },
    }  # fmt: skip
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Tensor": tensor,
        "InferenceRequest": {
            "type": "object",
            "example": {
                "inputs": [
                    {"name": name, "shape": [1, 1], "datatype": _datatype(value), "data": [value]}
                    for name, value in zip(features, example_row, strict=True)
                ]
            },
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": ref + "Tensor"}},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "enum": ["label", "probabilities"]},
                            "parameters": {"type": "object"},
                        },
                    },
                },
                "parameters": {"type": "object"},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": ref + "Tensor"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": obj},
                "outputs": {"type": "array", "items": obj},
                "parameters": obj,
            },
        },
        "V1Request": {
            "type": "object",
            "example": {"instances": [example_row, dict(zip(features, example_row, strict=True))]},
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            {"type": "array", "items": scalar},
                            {"type": "object", "additionalProperties": scalar},
                        ]
                    },
                }
            },
        },
        "V1Response": {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "predictions": {"type": "array", "items": {}},
                "probabilities": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "number"}},
                },
            },
        },
        "Drift": DRIFT_COUNTS_SCHEMA,
        "Faults": {
            "type": "object",
            "properties": {
                "latencyMs": {"type": "number", "minimum": 0, "maximum": 600000},
                "errorRate": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    }
    parameters = {
        "ModelName": {
            "name": "model_name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [model]},
        },
        "ModelVersion": {
            "name": "model_version",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [version]},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"pilotage model server: {model} {version}",
            "version": version,
            "description": "KServe V1 and Open Inference Protocol (V2) for one ONNX model.",
        },
        "paths": paths,
        "components": {"schemas": schemas, "parameters": parameters},
    }


def _datatype(value: Any) -> str:
    return "BYTES" if isinstance(value, str) else "FP32"
