"""What the Kubernetes API server does with a custom resource, short of running one.

In order, as the API server does for a create:

1. drop nulls of fields that are not nullable (they would be pruned);
2. apply the schema's defaults;
3. reject unknown fields, as `kubectl apply` does with its default
   `--validate=strict` field validation;
4. validate against `openAPIV3Schema` (a JSON-schema validator: OpenAPI 3.0's
   schema object is JSON Schema draft 4 with boolean exclusiveMinimum/Maximum);
5. evaluate every `x-kubernetes-validations` CEL rule with `self` bound to the
   value at the rule's level, typed by the schema (a `number` is a double even
   when written `1`), with the Kubernetes list extensions the rules use.

Errors are `path: message` strings naming the field, as `kubectl` prints them.
"""

from __future__ import annotations

import copy
import itertools
from functools import cache
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from tests.api.structural import strict_schema


def _is_sorted(values: celtypes.ListType) -> celtypes.BoolType:
    """Kubernetes' `<list>.isSorted()`."""
    items = list(values)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(values: celtypes.ListType) -> Any:
    """Kubernetes' `<list>.sum()` (0 for an empty list)."""
    items = list(values)
    total: Any = items[0] if items else celtypes.IntType(0)
    for item in items[1:]:
        total = total + item
    return total


KUBERNETES_LIST_FUNCTIONS = {"isSorted": _is_sorted, "sum": _sum}

_ENV = celpy.Environment()


@cache
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule), functions=KUBERNETES_LIST_FUNCTIONS)


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as CEL sees it at a node of this schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return celpy.json_to_cel(value)
    type_ = schema.get("type")
    if type_ == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", {})
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, props.get(k, extra))
                for k, v in value.items()
                if v is not None
            }
        )
    if type_ == "array":
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if type_ == "number":
        return celtypes.DoubleType(float(value))
    if type_ == "integer":
        return celtypes.IntType(value)
    if type_ == "boolean":
        return celtypes.BoolType(value)
    if type_ == "string":
        return celtypes.StringType(value)
    return celpy.json_to_cel(value)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def prune_nulls(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", {})
        return {
            k: prune_nulls(v, props.get(k, extra))
            for k, v in value.items()
            if v is not None or props.get(k, extra).get("nullable")
        }
    if isinstance(value, list):
        return [prune_nulls(v, schema.get("items", {})) for v in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """The object with the schema's defaults filled in where a field is absent."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for name, prop in schema.get("properties", {}).items():
            if name not in out and "default" in prop:
                out[name] = copy.deepcopy(prop["default"])
            if name in out:
                out[name] = apply_defaults(out[name], prop)
        if "additionalProperties" in schema:
            out = {k: apply_defaults(v, schema["additionalProperties"]) for k, v in out.items()}
        return out
    if isinstance(value, list) and schema.get("type") == "array":
        return [apply_defaults(v, schema.get("items", {})) for v in value]
    return value


def _schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    strict = strict_schema(schema)
    # metadata is validated by the API server itself, never pruned or checked here.
    strict["properties"]["metadata"] = {"type": "object"}
    out = []
    for err in jsonschema.Draft4Validator(strict).iter_errors(obj):
        where = list(err.absolute_path)
        if err.validator == "required":
            missing = [r for r in err.validator_value if r not in err.instance]
            out += [f"{_path([*where, m])}: Required value" for m in missing]
        elif err.validator == "additionalProperties":
            allowed = err.schema.get("properties", {})
            extra = [k for k in err.instance if k not in allowed]
            out += [f'unknown field "{_path([*where, k])}"' for k in extra]
        else:
            out.append(f"{_path(where) or '.'}: Invalid value: {err.message}")
    return out


def cel_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every failing CEL rule under this node, as `path: message`."""
    out: list[str] = []
    if value is None:
        return out
    for entry in schema.get("x-kubernetes-validations", []):
        try:
            result = _program(entry["rule"]).evaluate({"self": to_cel(value, schema)})
        except celpy.CELEvalError as exc:
            out.append(f"{path or '.'}: Invalid value: rule {entry['rule']!r} errored: {exc}")
            continue
        if isinstance(result, celpy.CELEvalError):
            out.append(f"{path or '.'}: Invalid value: rule {entry['rule']!r} errored: {result}")
        elif result is not True and result != celtypes.BoolType(True):
            out.append(f"{path or '.'}: Invalid value: {entry['message']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, child in value.items():
            sub = props.get(name, schema.get("additionalProperties"))
            if sub is not None:
                out += cel_errors(child, sub, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += cel_errors(child, schema.get("items", {}), f"{path}[{i}]")
    return out


def cel_rules(schema: dict[str, Any]) -> list[dict[str, str]]:
    """Every CEL rule of a schema."""
    found = list(schema.get("x-kubernetes-validations", []))
    for prop in schema.get("properties", {}).values():
        found += cel_rules(prop)
    for key in ("additionalProperties", "items"):
        if isinstance(schema.get(key), dict):
            found += cel_rules(schema[key])
    return found


def admit(obj: dict[str, Any], crd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The stored object and the errors the API server would answer with."""
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    stored = apply_defaults(prune_nulls(obj, schema), schema)
    errors = _schema_errors(stored, schema)
    if errors:
        return stored, errors
    return stored, cel_errors(
        {k: v for k, v in stored.items() if k != "metadata"}, _without_metadata(schema)
    )


def _without_metadata(schema: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in schema["properties"].items() if k != "metadata"}
    return {**schema, "properties": props}
