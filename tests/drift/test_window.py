"""Window counts from two snapshots of cumulative counters."""

from __future__ import annotations

import pytest

from pilotage.drift import DriftInputError, add_windows, counters_reset, window_counts


def test_window_is_the_difference_of_snapshots_with_new_labels_counted_from_zero() -> None:
    before = {"age": {"0": 10, "1": 5, "null": 1}}
    after = {"age": {"0": 14, "1": 5, "2": 3, "null": 2}, "city": {"Paris": 4}}
    assert window_counts(before, after) == {
        "age": {"0": 4, "1": 0, "2": 3, "null": 1},
        "city": {"Paris": 4},
    }


def test_a_counter_going_down_means_a_restart_and_after_alone_is_the_window() -> None:
    before = {"age": {"0": 100, "1": 50}, "city": {"Paris": 30}}
    after = {"age": {"0": 7, "1": 60}, "city": {"Paris": 31}}
    assert counters_reset(before, after)
    assert window_counts(before, after) == {"age": {"0": 7, "1": 60}, "city": {"Paris": 31}}


def test_a_vanished_counter_is_a_restart_too() -> None:
    before = {"age": {"0": 3, "1": 1}}
    after = {"age": {"0": 9}}
    assert window_counts(before, after) == {"age": {"0": 9}}


def test_non_counts_are_refused_naming_the_counter() -> None:
    with pytest.raises(DriftInputError, match="after counter age/0"):
        window_counts({}, {"age": {"0": -1}})
    with pytest.raises(DriftInputError, match="before counter age/1"):
        window_counts({"age": {"1": "x"}}, {})  # type: ignore[dict-item]


def test_windows_of_replicas_add_up() -> None:
    assert add_windows({"a": {"0": 1}}, {"a": {"0": 2, "1": 1}, "b": {"x": 5}}) == {
        "a": {"0": 3, "1": 1},
        "b": {"x": 5},
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2.5, -1])
def test_a_counter_that_is_not_a_whole_number_is_refused_by_name(value: float) -> None:
    with pytest.raises(DriftInputError, match="counter age/0 is not a count"):
        window_counts({}, {"age": {"0": value}})
    with pytest.raises(DriftInputError, match="count age/0 is not a count"):
        add_windows({"age": {"0": value}})
