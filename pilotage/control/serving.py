"""What a ModelDeployment's state asks the platform to run: the router, one server per
version still wanted, the routing table, and the removal of servers nothing refers to."""

from __future__ import annotations

from dataclasses import replace

from pilotage.api.modeldeployment import RoutesStatus
from pilotage.control.autoscale import Policy, VariantLoad, autoscale
from pilotage.control.common import namespace_of
from pilotage.control.rollout import Rollout
from pilotage.control.routes import build_table, traffic, traffic_summary
from pilotage.control.types import (
    Action,
    Activation,
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
    table = build_table(r.spec, st.stable.version, routable, weight, namespace_of(r.md))
    policy = Policy.from_spec(r.spec)
    if policy is not None:
        # ready replicas only, none at zero: the router holds requests until one is ready
        table = replace(table, activation=Activation(policy.activation_timeout, policy.max_held))
    return table


def sequenced(r: Rollout, table: RouteTable) -> RouteTable:
    """``table`` with its sequence: the last one sent when the revision is unchanged, the
    next one otherwise; `status.routes` records it. Never below what the router reports:
    a status restored without `routes` (a backup, an edit) must not start again at 1 and
    have every table refused as older than the router's."""
    last = r.st.routes
    router = r.obs.router
    floor = (router.stats.sequence if router and router.stats else None) or 0
    if last is not None and last.revision == table.revision and last.sequence >= floor:
        sequence = last.sequence
    else:
        sequence = max(last.sequence if last is not None else 0, floor) + 1
        r.st.routes = RoutesStatus(revision=table.revision, sequence=sequence)
    return replace(table, sequence=sequence)


ACTIVATION_POLL_SECONDS = 0.1
"""How soon to look again while a variant starts from zero with requests waiting."""


def ready_replicas(r: Rollout, version: str) -> int:
    n = 0
    for s in r.obs.servers:
        if s.version == version:
            n += s.ready_replicas if s.ready_replicas is not None else int(s.ready)
    return n


def autoscaled_replicas(r: Rollout, table: RouteTable | None) -> dict[str, int] | None:
    """With `spec.autoscaling`: the replicas each routed version's servers should have,
    decided from the router's load (`pilotage.control.autoscale`); `status.replicas`,
    its summary and the scaling events follow. None without autoscaling."""
    st = r.st
    policy = Policy.from_spec(r.spec)
    if policy is None:
        st.replicas = {}
        st.replicas_summary = ""
        return None
    loads: dict[str, VariantLoad] = {}
    if table is not None:
        for v in table.variants:
            loads[v.name] = VariantLoad(
                v.version,
                tuple(r.obs.load.get((v.name, v.version), ())),
                ready_replicas(r, v.version),
            )
    result = autoscale(policy, loads, st.replicas, r.now)
    st.replicas = result.status
    st.replicas_summary = result.summary[:128]
    for event in result.events:
        r.event(event.type, event.reason, event.message)
    r.wait(policy.interval)
    if any(d.desired > loads[n].ready for n, d in result.decisions.items()):
        r.wait(ACTIVATION_POLL_SECONDS)  # a replica is starting: route to it once ready
    return result.replicas


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
    scaled = autoscaled_replicas(r, table)
    policy = Policy.from_spec(spec)
    for model in wanted:
        replicas = spec.replicas
        if scaled is not None and policy is not None:
            replicas = scaled.get(model.version, policy.initial)
        out.append(EnsureServer(name, model.version, model.uri, replicas, settings))
    if (
        table is not None
        and st.stable is not None
        and (r.server_ready(st.stable.version) or r.old.traffic)
    ):
        table = sequenced(r, table)
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
