"""Several router pods' stats read as one: counters added, the table in use only when
every pod reports it, the highest table sequence."""

from __future__ import annotations

from pilotage.operator.platform import sum_router_stats
from pilotage.wire.router_stats import RouterStats, VariantStats, parse_router_stats


def pod(revision: str, sequence: int | None, requests: int) -> RouterStats:
    variant = VariantStats("stable", "v1", requests, 1, (0.1,), (requests, 0), in_flight=2)
    return RouterStats(variants=(variant,), revision=revision, sequence=sequence)


def test_counters_add_up_and_the_table_is_live_only_when_every_pod_uses_it() -> None:
    both = sum_router_stats([pod("r2", 7, 10), pod("r2", 7, 5)])
    assert both is not None
    assert (both.revision, both.sequence) == ("r2", 7)
    [stable] = both.variants
    assert (stable.requests, stable.errors, stable.in_flight) == (15, 2, 4)
    assert stable.latency_counts == (15, 0)

    # one pod still on the previous table: not live yet, and the next table must number
    # above the highest sequence any pod has
    pushing = sum_router_stats([pod("r2", 7, 1), pod("r3", 8, 1), pod("r1", None, 1)])
    assert pushing is not None and (pushing.revision, pushing.sequence) == (None, 8)
    assert sum_router_stats([]) is None


def test_the_sequence_is_read_from_the_stats_document() -> None:
    assert parse_router_stats({"revision": "a", "sequence": 3}).sequence == 3
    assert parse_router_stats({"revision": "a"}).sequence is None
