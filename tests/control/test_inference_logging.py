"""spec.logging reaches the router through the routing table, and the router's counters
come back as status.logging (pure: plain data in, plain data out)."""

from __future__ import annotations

from dataclasses import replace

from pilotage.control.routes import build_table
from pilotage.wire.router_stats import parse_router_stats as router_stats
from pilotage.wire.routes import parse_table
from tests.control.factories import deployment, job, observe, routes, run, stats_of, variant

URLS = {"v1": "http://127.0.0.1:8001"}
LOGGING = {
    "sampleRate": 0.25,
    "sink": {"uri": "s3://logs/inference", "timeoutSeconds": 3},
    "redact": ["ssn", "email"],
    "shadow": True,
}


def test_the_routing_document_carries_the_logging_settings_the_router_accepts() -> None:
    md = deployment(logging=LOGGING)
    table = build_table(md.spec, "v1", None, 0, namespace="prod")
    routed = parse_table(table.to_document("iris", URLS))
    cfg = routed.logging
    assert (cfg.sample_rate, cfg.sink_uri, cfg.sink_timeout) == (0.25, "s3://logs/inference", 3)
    assert cfg.redact == frozenset({"ssn", "email"}) and cfg.shadow and cfg.namespace == "prod"


def test_logging_off_leaves_the_table_and_its_revision_as_they_were() -> None:
    off = build_table(deployment().spec, "v1", None, 0)
    assert off.logging is None and "logging" not in off.to_document("iris", URLS)
    assert not parse_table(off.to_document("iris", URLS)).logging.enabled
    on = build_table(deployment(logging=LOGGING).spec, "v1", None, 0)
    other = build_table(deployment(logging={**LOGGING, "sampleRate": 1.0}).spec, "v1", None, 0)
    # a change of the settings is a new revision: the shells push the table again
    assert len({off.revision, on.revision, other.revision}) == 3


def test_the_reconciler_routes_with_logging_and_reports_the_counters() -> None:
    md = deployment(logging=LOGGING)
    doc = {"variants": {}, "inferenceLog": {"written": 120, "labelsWritten": 7, "dropped": 3,
                                            "lastError": "s3://logs: timed out"}}  # fmt: skip
    counters = router_stats(doc).logging
    stats = replace(stats_of(variant("stable", "v1", 120)), logging=counters)
    md, result = run(md, observe([job("v1")], ["v1"], stats), 0)
    table = routes(result)
    assert table is not None and table.table.logging is not None
    assert md.status is not None and md.status.logging is not None
    assert (md.status.logging.written, md.status.logging.labels, md.status.logging.dropped) == (
        120, 7, 3
    )  # fmt: skip
    assert md.status.logging.last_error == "s3://logs: timed out"
    # the router cannot be asked: the last counters stay
    md, _ = run(md, observe([job("v1")], ["v1"], router_ready=False), 10)
    assert md.status is not None and md.status.logging is not None
    assert md.status.logging.written == 120
