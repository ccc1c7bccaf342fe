"""The pod network's address book: a released network is never released twice."""

from __future__ import annotations

import pytest

from testcluster.nodeagent import network
from testcluster.nodeagent.network import Network, PodNetwork

# one cluster per session: every test of this directory runs on the same xdist worker
pytestmark = pytest.mark.xdist_group("cluster")


def test_a_second_release_does_not_tear_down_the_pod_that_reuses_the_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    removed: list[PodNetwork] = []
    monkeypatch.setattr(network, "kill_netns_processes", lambda netns: None)
    monkeypatch.setattr(Network, "_remove", lambda self, net: removed.append(net))
    net = Network("pil7br", "10.244.7.0/24")
    finished = net.allocate()
    net.teardown(finished)  # the pod finished: its namespace and address go
    others = []
    reused = net.allocate()  # addresses go round robin: the freed one comes back last
    while reused.address != finished.address:
        others.append(reused)
        reused = net.allocate()
    assert reused.netns == finished.netns  # the same address, so the same names
    net.teardown(finished)  # the finished pod is deleted later: nothing of the new one goes
    assert removed == [finished]
    net.teardown(reused)
    assert removed == [finished, reused]


def test_the_cluster_tests_share_one_worker(request: pytest.FixtureRequest) -> None:
    """Guard: with --dist loadgroup every test here carries the group, so one xdist worker
    starts one cluster (pytest 9.2 silently dropped the group xdist 3.8 sets)."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@cluster"), request.node.nodeid
