"""The local store behaves like a small API server: generations, uids, versions, owners."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotage.api import parse_resource
from pilotage.local.store import NotFound, Store, StoreError

DATASET = {
    "apiVersion": "pilotage.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "iris", "labels": {"team": "a"}},
    "spec": {"source": {"uri": "builtin://iris"}, "target": "target"},
}


def _tj(name: str, owner_uid: str | None = None) -> dict:
    meta: dict = {"name": name}
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "pilotage.dev/v1alpha1",
                "kind": "Dataset",
                "name": "iris",
                "uid": owner_uid,
            }
        ]
    return {
        "apiVersion": "pilotage.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": meta,
        "spec": {"datasetRef": {"name": "iris"}, "model": {"algorithm": "logistic_regression"}},
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def test_create_sets_server_fields(store: Store) -> None:
    result = store.apply(parse_resource(DATASET))
    assert result.outcome == "created"
    meta = result.resource.metadata
    assert meta.generation == 1
    assert meta.uid and len(meta.uid) == 36
    assert meta.creation_timestamp and meta.creation_timestamp.endswith("Z")
    assert meta.namespace == "default"
    assert meta.labels == {"team": "a"}


def test_generation_grows_only_on_spec_change(store: Store) -> None:
    first = store.apply(parse_resource(DATASET)).resource
    same = store.apply(parse_resource(DATASET))
    assert same.outcome == "unchanged"
    assert same.resource.metadata.resource_version == first.metadata.resource_version

    relabelled = {**DATASET, "metadata": {"name": "iris", "labels": {"team": "b"}}}
    r = store.apply(parse_resource(relabelled))
    assert r.outcome == "configured"
    assert r.resource.metadata.generation == 1
    assert int(r.resource.metadata.resource_version or 0) > int(
        first.metadata.resource_version or 0
    )

    changed = {**relabelled, "spec": {**DATASET["spec"], "target": "species"}}
    r = store.apply(parse_resource(changed))
    assert r.resource.metadata.generation == 2
    assert r.resource.metadata.uid == first.metadata.uid


def test_status_is_separate_from_spec(store: Store) -> None:
    store.apply(parse_resource(DATASET))
    assert store.write_status("Dataset", "iris", {"phase": "Ready", "rows": 150})
    res = store.apply(parse_resource(DATASET)).resource  # re-apply keeps status
    assert res.dump()["status"]["rows"] == 150
    assert res.metadata.generation == 1
    assert not store.write_status("Dataset", "missing", {"phase": "Ready"})


def test_a_status_the_model_refuses_is_not_stored(store: Store) -> None:
    """Stored, it would make every read of the state fail (`get`, the control loop)."""
    store.apply(parse_resource(DATASET))
    store.write_status("Dataset", "iris", {"phase": "Ready", "rows": 150})
    with pytest.raises(StoreError, match="fingerprint"):
        store.write_status("Dataset", "iris", {"phase": "Ready", "fingerprint": "f" * 500})
    with pytest.raises(StoreError, match="phase"):
        store.write_status("Dataset", "iris", {"phase": "Exploded"})
    assert [r.dump()["status"]["rows"] for r in store.objects()] == [150]


def test_manual_annotations_survive_reapply(store: Store) -> None:
    store.apply(parse_resource(DATASET))
    store.set_annotation("Dataset", "iris", "pilotage.dev/refresh", "tok1")
    res = store.apply(parse_resource(DATASET)).resource
    assert res.metadata.annotations["pilotage.dev/refresh"] == "tok1"


def test_delete_cascades_to_owned(store: Store) -> None:
    ds = store.apply(parse_resource(DATASET)).resource
    store.apply(parse_resource(_tj("owned", ds.metadata.uid)))
    store.apply(parse_resource(_tj("independent")))
    deleted = store.delete("Dataset", "iris")
    assert sorted(deleted) == ["Dataset/iris", "TrainingJob/owned"]
    assert [r.name for r in store.objects("TrainingJob")] == ["independent"]
    with pytest.raises(NotFound):
        store.get("Dataset", "iris")


def test_create_refuses_existing(store: Store) -> None:
    store.apply(parse_resource(_tj("a")))
    with pytest.raises(StoreError):
        store.create(parse_resource(_tj("a")))


def test_events_are_kept_per_object(store: Store) -> None:
    store.record_event("Dataset", "iris", "Normal", "Profiled", "150 rows")
    store.record_event("TrainingJob", "a", "Warning", "Failed", "boom")
    events = [e for _, e in store.events("Dataset", "iris")]
    assert [(e.reason, e.message) for e in events] == [("Profiled", "150 rows")]


def test_two_connections_see_each_other(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "s"), Store(tmp_path / "s")
    a.apply(parse_resource(DATASET))
    b.set_annotation("Dataset", "iris", "pilotage.dev/promote", "x")
    assert a.get("Dataset", "iris").metadata.annotations["pilotage.dev/promote"] == "x"
