"""The router's live state: the active routing table and everything derived from it.

``RouterState.apply`` builds a complete ``ActiveTable`` (splitter, sticky chooser,
pools, stats handles) off to the side and then replaces ``state.active`` in one
assignment. A request reads ``state.active`` once when it starts and uses only that
object, so it finishes on the upstream it started with whatever happens meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pilotage.inferencelog.record import Label
from pilotage.inferencelog.writer import InferenceLogger
from pilotage.router.balance import Activator, ReplicaRegistry, ReplicaSet
from pilotage.router.feedback import RecentAnswers
from pilotage.router.shadow import ShadowMirror
from pilotage.router.split import PercentSampler, StickyChooser, WeightedSplitter
from pilotage.router.stats import StatsRegistry, VariantStats
from pilotage.router.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEAD_PEER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    PoolRegistry,
)
from pilotage.wire.router_stats import stats_document
from pilotage.wire.routes import STABLE, RoutingTable, Variant

log = logging.getLogger("pilotage.router")


class Route:
    """One variant of the active table with its replicas and stats, ready for the hot path."""

    __slots__ = ("name_header", "replicas", "stats", "variant", "version_header")

    def __init__(self, variant: Variant, replicas: ReplicaSet, stats: VariantStats):
        self.variant = variant
        self.replicas = replicas
        self.stats = stats
        self.name_header = variant.name.encode()
        self.version_header = variant.version.encode()


class ActiveTable:
    __slots__ = (
        "by_name",
        "fallback",
        "logger",
        "retry_on_stable",
        "routes",
        "sampler",
        "shadow",
        "splitter",
        "sticky",
        "sticky_header",
        "table",
        "timeout",
        "tolerance",
    )

    def __init__(
        self,
        table: RoutingTable,
        replicas: ReplicaRegistry,
        registry: StatsRegistry,
        logger: InferenceLogger | None = None,
    ):
        self.table = table
        self.logger = logger  # None when inference logging is off
        self.routes = {
            v.name: Route(
                v,
                ReplicaSet([replicas.replica(r.url, r.host, r.port) for r in v.replicas]),
                registry.for_variant(v.name, v.version),
            )
            for v in table.variants
        }
        self.by_name = {name.encode(): route for name, route in self.routes.items()}
        routed = table.routed
        self.splitter = WeightedSplitter(routed)
        self.sticky = StickyChooser(routed) if table.sticky_header else None
        self.sticky_header = table.sticky_header.encode() if table.sticky_header else None
        self.timeout = table.timeout_seconds
        self.fallback = self.routes.get(STABLE)
        self.retry_on_stable = table.mode == "canary" and self.fallback is not None
        self.shadow = self.routes[table.shadow.variant] if table.shadow else None
        self.sampler = PercentSampler(table.shadow.percent) if table.shadow else None
        self.tolerance = table.shadow.tolerance if table.shadow else 0.0

    def pick(self, sticky_key: bytes | None) -> Route:
        if sticky_key is not None and self.sticky is not None:
            return self.routes[self.sticky.pick(sticky_key).name]
        return self.routes[self.splitter.pick().name]


class RouterState:
    def __init__(
        self,
        table: RoutingTable,
        source: str,
        shadow_capacity: int = 256,
        shadow_workers: int = 8,
        recent_capacity: int = 10_000,
        max_connections_per_upstream: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dead_peer_timeout: float = DEFAULT_DEAD_PEER_TIMEOUT,
    ):
        self.pools = PoolRegistry(max_connections_per_upstream, connect_timeout, dead_peer_timeout)
        self.replicas = ReplicaRegistry(self.pools)
        self.activator = Activator()
        self.registry = StatsRegistry()
        self.recent = RecentAnswers(recent_capacity)
        self.mirror = ShadowMirror(self.registry.shadow, shadow_capacity, shadow_workers)
        self.started = time.time()
        self.generation = 0
        self.source = source
        self.loaded_at = 0.0
        self.reload_errors = 0
        self.outdated_tables = 0
        """Tables not applied because the active one is newer (`outdated`)."""
        self.last_reload_error: str | None = None
        self.inference_log: InferenceLogger | None = None
        self.retired_logs: list[InferenceLogger] = []
        self.active: ActiveTable = self._build(table)
        self._commit(self.active, source)

    def _build(self, table: RoutingTable) -> ActiveTable:
        return ActiveTable(table, self.replicas, self.registry, self._logger_for(table))

    def _logger_for(self, table: RoutingTable) -> InferenceLogger | None:
        """The inference logger ``table`` asks for: the running one when its settings are
        unchanged, else a new one (the old one writes what it holds and closes, off the
        event loop)."""
        current = self.inference_log
        wanted = table.logging
        if (
            current is not None
            and current.config == wanted
            and current.deployment == table.deployment
        ):
            return current
        logger = None
        if wanted.enabled:
            logger = InferenceLogger(wanted, table.deployment)
            logger.start()
        if current is not None:
            self.retired_logs.append(current)
            threading.Thread(target=current.close, daemon=True).start()
        self.inference_log = logger
        return logger

    def log_labels(self, doc: Any) -> None:
        """Write each item of a valid feedback document to the inference log (when on):
        labels arriving days later still join their request by id."""
        logger = self.inference_log
        if logger is None:
            return
        now = time.time()
        for item in doc["feedback"]:
            kind = "label" if "label" in item else "value"
            logger.offer(Label(now, item["requestId"], kind, item[kind]), 64)

    def close_logs(self, timeout: float = 10.0) -> bool:
        """Write what the inference log holds and close its files (shutdown)."""
        done = all(log.close(timeout) for log in self.retired_logs)
        if self.inference_log is not None:
            done = self.inference_log.close(timeout) and done
        return done

    def _commit(self, active: ActiveTable, source: str) -> None:
        self.active = active  # the one atomic swap
        self.generation += 1
        self.source = source
        self.loaded_at = time.time()
        table = active.table
        self.registry.set_current({(v.name, v.version) for v in table.variants})
        self.replicas.keep_only({(r.host, r.port) for v in table.variants for r in v.replicas})
        activation = table.activation
        if activation is not None:
            self.activator.configure(activation.timeout_seconds, activation.max_held)
        # requests held for a variant at zero go on as soon as it has a replica
        self.activator.released(v.name for v in table.variants if v.replicas)
        self.activator.abandon(set(self.activator.waiting()) - {v.name for v in table.variants})

    def outdated(self, table: RoutingTable, source: str) -> str | None:
        """Why ``table`` must not replace the active one (None: it may), counted in
        `outdatedTables` and logged. A writer that numbers its tables (`sequence`)
        reaches the router twice: pushed through the admin API, and later through a file
        (a ConfigMap the kubelet refreshes within a minute or so). A lower sequence is
        an older table; the same sequence from the file after the admin API delivered it
        is the late copy, possibly with replica URLs the push has since replaced."""
        new, active = table.sequence, self.active.table.sequence
        if new is None or active is None:
            return None
        if new < active:
            why = f"sequence {new} is older than the active table's {active}"
        elif new == active and source == "file" and self.source == "admin":
            why = f"sequence {new} is already active (delivered through the admin API)"
        else:
            return None
        self.outdated_tables += 1
        log.info("routing table from %s not applied: %s", source, why)
        return why

    def apply(self, table: RoutingTable, source: str) -> bool:
        """Make ``table`` the active one; False (and nothing changes) when it is identical
        or ``outdated``."""
        if table == self.active.table:
            return False
        if self.outdated(table, source) is not None:
            return False
        self._commit(self._build(table), source)
        log.info(
            "routing table generation %d from %s: mode=%s weights=%s",
            self.generation,
            source,
            table.mode,
            table.weights(),
        )
        return True

    def reload_failed(self, message: str) -> None:
        self.reload_errors += 1
        self.last_reload_error = message
        log.error("routing table not changed: %s", message)

    def stats_json(self) -> dict[str, Any]:
        active = self.active
        table = active.table
        variants: dict[str, Any] = {}
        for name, route in active.routes.items():
            entry = route.stats.to_json()
            entry["weight"] = route.variant.weight
            entry["url"] = route.variant.url
            entry["replicas"] = len(route.replicas)
            entry["replicasOut"] = sum(1 for r in route.replicas.replicas if r.failures)
            activator = self.activator
            entry["held"] = activator.held.get(name, 0)
            entry["activation"] = {
                "activations": activator.activations.get(name, 0),
                "coldStartSecondsSum": activator.cold_start_seconds.get(name, 0.0),
                "lastColdStartSeconds": activator.last_cold_start.get(name),
                "timeouts": activator.timeouts.get(name, 0),
                "refused": activator.refused.get(name, 0),
            }
            variants[name] = entry
        registry = self.registry
        shadow: dict[str, Any] | None = None
        if table.shadow is not None:
            shadow = {
                "variant": table.shadow.variant,
                "percent": table.shadow.percent,
                "tolerance": table.shadow.tolerance,
                "queued": self.mirror.queued,
                "capacity": self.mirror.capacity,
            }
        return stats_document(
            deployment=table.deployment,
            mode=table.mode,
            generation=self.generation,
            revision=table.revision,
            sequence=table.sequence,
            outdated_tables=self.outdated_tables,
            source=self.source,
            loaded_at=self.loaded_at,
            reload_errors=self.reload_errors,
            last_reload_error=self.last_reload_error,
            uptime_seconds=time.time() - self.started,
            incomplete_bodies=registry.incomplete_bodies,
            weights=table.weights(),
            sticky_header=table.sticky_header,
            variants=variants,
            retired=[(s.name, s.to_json()) for s in registry.retired()],
            shadow=shadow,
            shadow_totals=registry.shadow.to_json(),
            inference_log=self.inference_log_json(),
            feedback={
                "received": registry.feedback_received,
                "unknown": registry.feedback_unknown,
                "mismatched": registry.feedback_invalid,
                "remembered": len(self.recent),
                "rememberedBytes": self.recent.kept_bytes,
                "capacity": self.recent.capacity,
            },
        )

    def inference_log_json(self) -> dict[str, Any] | None:
        """Counters of the inference log, earlier loggers (settings changed) included."""
        current = self.inference_log
        if current is None and not self.retired_logs:
            return None
        doc: dict[str, Any] = (
            current.stats() if current is not None else {"sampleRate": 0.0, "sink": None}
        )
        for old in self.retired_logs:
            for key, value in old.stats().items():
                if key in ("sampleRate", "sink", "queued", "lastError"):
                    doc.setdefault(key, value)
                    continue
                doc[key] = doc.get(key, 0) + value
        return doc
