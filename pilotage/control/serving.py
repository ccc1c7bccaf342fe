"""What a ModelDeployment's state asks the platform to run: the router, one server per
version still wanted, the routing table, and the removal of servers nothing refers to."""

from __future__ import annotations

from pilotage.control.common import namespace_of
from pilotage.control.rollout import Rollout
from pilotage.control.routes import build_table, traffic, traffic_summary
from pilotage.control.types import (
    Action,
    EnsureRouter,
    EnsureServer,
    RemoveServer,
    RouteTable,
    ServerSettings,
    SetRoutes,
)


def routing_table(r: Rollout) -> RouteTable | None:
    """The table for the status as it is now; the candidate is routed once its server
    is ready."""
    st = r.st
    if st.stable is None:
        return None
    cand = st.candidate
    routable = cand.version if cand is not None and r.server_ready(cand.version) else None
    weight = r.strategy.weight(r.spec, st) if routable else 0
    return build_table(r.spec, st.stable.version, routable, weight, namespace_of(r.md))


def router_serves(r: Rollout, table: RouteTable | None) -> bool:
    """Whether the router already routes by `table`, so a server the table no longer
    names gets no more requests. Until it reports that revision (a pushed table can
    fail over to the ConfigMap, which takes a while to reach the pod) the old server
    stays: removing it first failed every request still sent to it. When the router
    cannot tell (not ready, no stats), nothing waits."""
    router = r.obs.router
    if table is None or not table.revision or router is None or not router.ready:
        return True
    if router.stats is None or router.stats.revision is None:
        return True
    return router.stats.revision == table.revision


def router_rejection(r: Rollout, table: RouteTable | None) -> str | None:
    """Why the router refused the table this call asks for; None when it did not, or
    when the refusal the shell saw was about another table."""
    router = r.obs.router
    if router is None or router.rejection is None or table is None:
        return None
    rejection = router.rejection
    if rejection.revision is not None and rejection.revision != table.revision:
        return None
    if router.stats is not None and router.stats.revision == table.revision:
        return None  # in use after all (a later push, another router pod)
    return rejection.reason


def serving_actions(r: Rollout, table: RouteTable | None) -> list[Action]:
    """The actions, in order; sets `status.traffic` and `trafficSummary` from the table."""
    st, spec, name = r.st, r.spec, r.md.name
    out: list[Action] = [
        EnsureRouter(
            name,
            spec.router.replicas,
            spec.router.resources.dump(),
            variant_token_secret=spec.router.variant_token_secret,
            feedback_token_secret=spec.router.feedback_token_secret,
            log_sink=spec.logging.sink.uri
            if spec.logging.sample_rate > 0 and spec.logging.sink
            else None,
        )
    ]
    settings = ServerSettings(
        threads=spec.server.threads,
        max_batch_size=spec.server.max_batch_size,
        max_batch_wait_us=spec.server.max_batch_wait_us,
        strict_schema=spec.server.strict_schema,
        resources=spec.server.resources.dump(),
    )
    wanted = [m for m in (st.stable, st.candidate, st.previous) if m is not None]
    versions = {m.version for m in wanted}
    for model in wanted:
        out.append(EnsureServer(name, model.version, model.uri, spec.replicas, settings))
    if (
        table is not None
        and st.stable is not None
        and (r.server_ready(st.stable.version) or r.old.traffic)
    ):
        out.append(SetRoutes(name, table))
        st.traffic = traffic(table)
        st.traffic_summary = traffic_summary(table)
    else:
        st.traffic = {}
        st.traffic_summary = ""
    settled = router_serves(r, table)
    for server in r.obs.servers:
        if server.version in versions:
            continue
        # A rejected candidate goes at once: the router retries its failed requests
        # on stable. A former stable has no such fallback.
        if settled or server.version == st.rejected_version:
            out.append(RemoveServer(name, server.version))
    return out
