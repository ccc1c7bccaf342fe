"""Routing documents: what is accepted, and the error a bad one gets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pilotage.router.table import load_table_file, write_table_file
from pilotage.wire.routes import RoutingError, parse_table

GOOD: dict[str, Any] = {
    "deployment": "iris",
    "mode": "canary",
    "stickyHeader": "X-User",
    "variants": [
        {"name": "stable", "url": "http://10.0.0.1:8080", "weight": 90, "version": "1"},
        {"name": "canary", "url": "http://10.0.0.2:8080/", "weight": 10, "version": 2},
    ],
}


def edited(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    target: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()


def test_good_document_parses_and_round_trips() -> None:
    table = parse_table(GOOD)
    assert table.weights() == {"stable": 90, "canary": 10}
    assert table.sticky_header == "x-user"
    assert table.variant("canary") is not None
    assert table.variant("canary").version == "2"  # type: ignore[union-attr]
    assert table.variant("canary").url == "http://10.0.0.2:8080"  # type: ignore[union-attr]
    assert parse_table(table.to_document()) == table


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("mode", "linear", "mode: must be one of canary, bluegreen, shadow"),
        ("variants.0.weight", 80, "weights must sum to 100, got 90"),
        ("variants.0.weight", 101, "variants[0].weight: must be an integer 0..100"),
        ("variants.0.weight", True, "variants[0].weight"),
        ("variants.1.url", "https://x:1", "only http:// upstreams"),
        ("variants.1.url", "http://x:99999", "bad port"),
        ("variants.1.url", "http://x:1/v1", "no path"),
        ("variants.1.name", "stable", "duplicate name(s) stable"),
        ("variants.1.name", "Canary!", "variants[1].name"),
        ("variants.1.version", _DELETE, "variants[1].version: required"),
        ("deployment", "", "deployment: required"),
        ("stickyHeader", "bad header", "stickyHeader"),
        ("timeoutSeconds", 0, "timeoutSeconds: must be between"),
        ("weights", {"stable": 100}, "unknown field(s) weights"),
        ("shadow", {"variant": "canary"}, "shadow: only valid with mode: shadow"),
        ("variants", [], "variants: required non-empty list"),
    ],
)
def test_bad_documents_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(RoutingError) as err:
        parse_table(edited(path, value))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML keys that are not strings: an integer, and `on:` (a YAML 1.1 boolean)
        ("1: x", "routing document: unknown field(s) 1"),
        ("on: x", "routing document: unknown field(s) True"),
        ("variants: [{name: stable, url: 'http://a:1', weight: 100, version: 1, 2: 3}]",
         "variants[0]: unknown field(s) 2"),
        ("variants: [{name: stable, url: 'http://[::1', weight: 100, version: 1}]",
         "variants[0].url: not a valid URL"),
        ("mode: shadow\nshadow: {variant: [stable]}", "shadow.variant: ['stable'] is not one of"),
        ("mode: shadow\nshadow: {variant: stable, 7: x}", "shadow: unknown field(s) 7"),
    ],
)  # fmt: skip
def test_odd_yaml_is_a_routing_error_not_a_crash(tmp_path: Path, text: str, message: str) -> None:
    # anything but RoutingError here is a 500 on PUT /admin/routes and kills the file watcher
    base = (
        "deployment: iris\nmode: canary\n"
        "variants: [{name: stable, url: 'http://a:1', weight: 100, version: 1}]\n"
    )
    path = tmp_path / "routes.yaml"
    path.write_text(base + text + "\n")
    with pytest.raises(RoutingError) as err:
        load_table_file(path)
    assert message in str(err.value)


def test_bluegreen_needs_one_active_variant() -> None:
    doc = edited("mode", "bluegreen")
    with pytest.raises(RoutingError, match="one active variant with weight 100"):
        parse_table(doc)
    doc["variants"][0]["weight"], doc["variants"][1]["weight"] = 0, 100
    assert parse_table(doc).weights() == {"stable": 0, "canary": 100}


def test_shadow_mode_rules() -> None:
    doc: dict[str, Any] = {
        "deployment": "iris",
        "mode": "shadow",
        "variants": [
            {"name": "stable", "url": "http://a:1", "weight": 100, "version": "1"},
            {"name": "shadow", "url": "http://b:1", "version": "2"},
        ],
    }
    with pytest.raises(RoutingError, match="shadow: required with mode: shadow"):
        parse_table(doc)
    doc["shadow"] = {"variant": "nope"}
    with pytest.raises(RoutingError, match=r"shadow\.variant: 'nope' is not one of"):
        parse_table(doc)
    doc["shadow"] = {"variant": "shadow", "percent": 150}
    with pytest.raises(RoutingError, match=r"shadow.percent: must be between 0 and 100"):
        parse_table(doc)
    doc["shadow"] = {"variant": "shadow", "percent": 25}
    table = parse_table(doc)
    assert [v.name for v in table.routed] == ["stable"]
    doc["variants"][1]["weight"] = 10
    with pytest.raises(RoutingError, match="shadow variant 'shadow' must have weight 0"):
        parse_table(doc)


def test_files_yaml_json_and_atomic_write(tmp_path: Path) -> None:
    yaml_file = tmp_path / "routes.yaml"
    yaml_file.write_text(
        "deployment: iris\nmode: canary\nvariants:\n"
        "  - {name: stable, url: 'http://a:1', weight: 100, version: '1'}\n"
    )
    assert load_table_file(yaml_file).weights() == {"stable": 100}
    json_file = tmp_path / "routes.json"
    write_table_file(json_file, GOOD)
    assert load_table_file(json_file) == parse_table(GOOD)
    assert [p.name for p in tmp_path.iterdir()] != []  # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.json", "routes.yaml"]
    with pytest.raises(RoutingError, match="weights must sum"):
        write_table_file(json_file, edited("variants.0.weight", 1))
    (tmp_path / "broken.yaml").write_text("deployment: [unclosed")
    with pytest.raises(RoutingError) as broken:
        load_table_file(tmp_path / "broken.yaml")
    # the file named once, where the problem is, on one line
    assert str(broken.value) == (
        f"{tmp_path / 'broken.yaml'}: not valid YAML/JSON: line 1, column 22: "
        "while parsing a flow sequence; expected ',' or ']', but got '<stream end>'"
    )
    with pytest.raises(RoutingError, match="cannot read routing file"):
        load_table_file(tmp_path / "missing.yaml")
