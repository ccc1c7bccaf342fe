"""The pod network's address book: a released network is never released twice."""

from __future__ import annotations

import pytest

from testcluster.nodeagent import network
from testcluster.nodeagent.network import Network, PodNetwork


def test_a_second_release_does_not_tear_down_the_pod_that_reuses_the_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    removed: list[PodNetwork] = []
    monkeypatch.setattr(network, "kill_netns_processes", lambda netns: None)
    monkeypatch.setattr(Network, "_remove", lambda self, net: removed.append(net))
    net = Network("pil7br", "10.244.7.0/24")
    finished = net.allocate()
    net.teardown(finished)  # the pod finished: its namespace and address go
    reused = net.allocate()  # the next pod gets the same address, so the same names
    assert (reused.address, reused.netns) == (finished.address, finished.netns)
    net.teardown(finished)  # the finished pod is deleted later: nothing of the new one goes
    assert removed == [finished]
    net.teardown(reused)
    assert removed == [finished, reused]
    assert net.allocate().address == finished.address
