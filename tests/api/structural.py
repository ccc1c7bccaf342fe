"""A checker of the Kubernetes rules a CRD's schema must follow to be accepted.

Written from the apiextensions.k8s.io/v1 documentation ("Specifying a structural
schema", "Validation rules", "Defaulting") and the JSONSchemaProps type:

1. every node (the root, each property, each additionalProperties and items) has
   a non-empty `type`, unless it sets x-kubernetes-int-or-string or
   x-kubernetes-preserve-unknown-fields;
2. inside allOf/anyOf/oneOf/not no type, description, default, additionalProperties
   or nullable, and no field not also specified outside;
3. no keyword JSONSchemaProps lacks (propertyNames, const, $defs, examples, …),
   no $ref/definitions/id/$schema/patternProperties/dependencies/additionalItems,
   no uniqueItems: true, exclusiveMinimum/Maximum are booleans, additionalProperties
   is a schema (not a bool) and never beside properties;
4. `metadata` at the root restricts at most name and generateName;
5. defaults validate against their own node and hold no field the node would prune;
6. a list-type map lists scalar keys that are required (or defaulted) in its items;
7. each x-kubernetes-validations entry has a rule that compiles, uses only the CEL
   functions Kubernetes provides, and sits on a node with a type;
8. for the CEL cost estimate, every string is bounded (maxLength or enum), every
   list (maxItems) and every map (maxProperties).
"""

from __future__ import annotations

from typing import Any

import celpy
import jsonschema
from lark import Tree

JSON_SCHEMA_PROPS = frozenset(
    {
        "id",
        "$schema",
        "$ref",
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "definitions",
        "externalDocs",
        "example",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
FORBIDDEN = frozenset(
    {
        "$ref",
        "id",
        "$schema",
        "definitions",
        "patternProperties",
        "dependencies",
        "additionalItems",
    }
)
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
NOT_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")
PRINTER_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})

# Functions and macros of standard CEL plus the Kubernetes libraries (lists, regex,
# URLs, quantities…) limited to what a rule here may reasonably call.
STANDARD_CEL = frozenset(
    {
        "has",
        "size",
        "all",
        "exists",
        "exists_one",
        "map",
        "filter",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bool",
        "bytes",
        "duration",
        "timestamp",
        "type",
        "dyn",
    }
)
KUBERNETES_CEL_LIST = frozenset({"isSorted", "sum", "min", "max", "indexOf", "lastIndexOf"})
KUBERNETES_CEL_STRINGS = frozenset(
    {"lowerAscii", "upperAscii", "trim", "split", "join", "replace", "substring", "find"}
)
ALLOWED_CEL_FUNCTIONS = STANDARD_CEL | KUBERNETES_CEL_LIST | KUBERNETES_CEL_STRINGS


def cel_function_names(rule: str) -> set[str]:
    """Names of the functions and methods a CEL expression calls."""
    tree = celpy.Environment().compile(rule)
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if not isinstance(node, Tree):
            continue
        if node.data == "member_dot_arg":
            names.add(str(node.children[1]))
        elif node.data == "ident_arg":
            names.add(str(node.children[0]))
    return names


def _node_violations(node: Any, path: str, *, root: bool = False) -> list[str]:
    out: list[str] = []
    if not isinstance(node, dict):
        return [f"{path}: a schema node must be a mapping"]
    for key in node:
        if key not in JSON_SCHEMA_PROPS:
            out.append(f"{path}: {key} is not a JSONSchemaProps field")
        elif key in FORBIDDEN:
            out.append(f"{path}: {key} is forbidden in a CRD schema")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    type_ = node.get("type")
    if not type_ and not (preserve or int_or_string):
        out.append(f"{path}: type is missing")
    if type_ and type_ not in TYPES:
        out.append(f"{path}: type {type_!r} is not one of {sorted(TYPES)}")
    if node.get("uniqueItems") is True:
        out.append(f"{path}: uniqueItems: true is forbidden")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            out.append(f"{path}: {key} must be a boolean (OpenAPI 3.0)")
    if "additionalProperties" in node:
        if not isinstance(node["additionalProperties"], dict):
            out.append(f"{path}: additionalProperties must be a schema, not a boolean")
        if "properties" in node:
            out.append(f"{path}: properties and additionalProperties are mutually exclusive")
    for key, needs in (("properties", "object"), ("additionalProperties", "object")):
        if key in node and type_ not in (None, needs):
            out.append(f"{path}: {key} on a node of type {type_}")
    if "items" in node and type_ not in (None, "array"):
        out.append(f"{path}: items on a node of type {type_}")
    for junctor in JUNCTORS:
        if junctor in node:
            out += _junctor_violations(node, junctor, path)
    for name in node.get("required", []):
        if name not in node.get("properties", {}) and not preserve:
            out.append(f"{path}: required field {name} is not a property")
    if type_ == "array" and isinstance(node.get("items"), list):
        out.append(f"{path}: items must be one schema, not a list")
    out += _list_map_violations(node, path)
    out += _cel_violations(node, path)
    out += _default_violations(node, path)
    out += _bound_violations(node, path, preserve)

    for name, prop in node.get("properties", {}).items():
        child = f"{path}.{name}"
        if root and name == "metadata":
            out += _metadata_violations(prop, child)
        else:
            out += _node_violations(prop, child)
    if isinstance(node.get("additionalProperties"), dict):
        out += _node_violations(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        out += _node_violations(node["items"], f"{path}[]")
    return out


def _junctor_violations(node: dict[str, Any], junctor: str, path: str) -> list[str]:
    out = []
    branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
    for branch in branches:
        for key in NOT_IN_JUNCTORS:
            if key in branch:
                out.append(f"{path}: {key} inside {junctor}")
        for name in branch.get("properties", {}):
            if name not in node.get("properties", {}):
                out.append(f"{path}: {junctor} specifies {name}, which is not specified outside")
    return out


def _metadata_violations(node: dict[str, Any], path: str) -> list[str]:
    if node.get("type") != "object":
        return [f"{path}: metadata must be of type object"]
    extra = set(node.get("properties", {})) - {"name", "generateName"}
    allowed_keys = {"type", "properties", "description"}
    out = [f"{path}: only name and generateName may be restricted, not {sorted(extra)}"] * bool(
        extra
    )
    out += [f"{path}: {k} is not allowed on metadata" for k in set(node) - allowed_keys]
    return out


def _list_map_violations(node: dict[str, Any], path: str) -> list[str]:
    list_type = node.get("x-kubernetes-list-type")
    if list_type is None:
        return []
    if node.get("type") != "array":
        return [f"{path}: x-kubernetes-list-type on a node that is not a list"]
    if list_type not in ("atomic", "set", "map"):
        return [f"{path}: x-kubernetes-list-type {list_type!r} is not atomic, set or map"]
    if list_type != "map":
        return []
    items = node.get("items", {})
    keys = node.get("x-kubernetes-list-map-keys") or []
    out = [f"{path}: a list-type map needs x-kubernetes-list-map-keys"] * (not keys)
    for key in keys:
        prop = items.get("properties", {}).get(key)
        if prop is None:
            out.append(f"{path}: list-map key {key} is not a property of the items")
        elif prop.get("type") not in ("string", "integer", "number", "boolean"):
            out.append(f"{path}: list-map key {key} must be a scalar")
        elif key not in items.get("required", []) and "default" not in prop:
            out.append(f"{path}: list-map key {key} must be required or defaulted")
    return out


def _cel_violations(node: dict[str, Any], path: str) -> list[str]:
    out = []
    for i, entry in enumerate(node.get("x-kubernetes-validations", [])):
        where = f"{path}: x-kubernetes-validations[{i}]"
        rule = entry.get("rule")
        if not isinstance(rule, str) or not rule.strip():
            out.append(f"{where}: rule is missing")
            continue
        if not entry.get("message"):
            out.append(f"{where}: message is missing")
        extra = set(entry) - {"rule", "message", "messageExpression", "reason", "fieldPath"}
        if extra:
            out.append(f"{where}: unknown keys {sorted(extra)}")
        try:
            unknown = cel_function_names(rule) - ALLOWED_CEL_FUNCTIONS
        except Exception as exc:
            out.append(f"{where}: rule does not compile: {exc}")
            continue
        if unknown:
            out.append(f"{where}: functions Kubernetes CEL lacks: {sorted(unknown)}")
    return out


def _default_violations(node: dict[str, Any], path: str) -> list[str]:
    if "default" not in node:
        return []
    try:
        jsonschema.Draft4Validator(strict_schema(node)).validate(node["default"])
    except jsonschema.ValidationError as exc:
        return [f"{path}: default {node['default']!r} does not validate: {exc.message}"]
    return []


def strict_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of the schema in which unknown fields are errors instead of being pruned."""
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) if isinstance(v, dict) else v for k, v in node.items()}
    if "properties" in node:
        out["properties"] = {k: strict_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    out.pop("default", None)
    return out


def _bound_violations(node: dict[str, Any], path: str, preserve: bool) -> list[str]:
    if preserve:
        return []
    type_ = node.get("type")
    if type_ == "string" and "maxLength" not in node and "enum" not in node:
        return [f"{path}: string without maxLength or enum (CEL cost is unbounded)"]
    if type_ == "array" and "maxItems" not in node:
        return [f"{path}: list without maxItems (CEL cost is unbounded)"]
    if type_ == "object" and "additionalProperties" in node and "maxProperties" not in node:
        return [f"{path}: map without maxProperties (CEL cost is unbounded)"]
    return []


def schema_violations(schema: dict[str, Any]) -> list[str]:
    """Every way `openAPIV3Schema` breaks the structural-schema and CEL-cost rules."""
    out = []
    if schema.get("type") != "object":
        out.append(".: the root must be of type object")
    root_props = schema.get("properties", {})
    # apiVersion and kind are set by the API server's own machinery; like every
    # generated CRD they are plain strings.
    for name in ("apiVersion", "kind"):
        if name in root_props and root_props[name].get("type") == "string":
            root_props = {**root_props, name: {**root_props[name], "maxLength": 253}}
    out += _node_violations({**schema, "properties": root_props}, "", root=True)
    return out


def crd_violations(crd: dict[str, Any]) -> list[str]:
    """The CRD envelope's rules, then each version's schema."""
    out = []
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        out.append("apiVersion must be apiextensions.k8s.io/v1")
    if crd.get("kind") != "CustomResourceDefinition":
        out.append("kind must be CustomResourceDefinition")
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    expected_name = f"{names.get('plural')}.{spec.get('group')}"
    if crd.get("metadata", {}).get("name") != expected_name:
        out.append(f"metadata.name must be {expected_name}")
    versions = spec.get("versions", [])
    if sum(1 for v in versions if v.get("storage")) != 1:
        out.append("exactly one version must be the storage version")
    for version in versions:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if schema is None:
            out.append(f"version {version.get('name')}: openAPIV3Schema is missing")
            continue
        out += [f"{version.get('name')}: {v}" for v in schema_violations(schema)]
        for col in version.get("additionalPrinterColumns", []):
            if col.get("type") not in PRINTER_TYPES:
                out.append(f"printer column {col.get('name')}: type {col.get('type')!r}")
            if not str(col.get("jsonPath", "")).startswith("."):
                out.append(f"printer column {col.get('name')}: jsonPath must start with '.'")
    return out
