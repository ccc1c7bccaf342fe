"""What `pilotage up` shows: the live table redrawn in place on a terminal (checked on a
small screen model that honours the escape sequences it writes) and the change lines
printed when stdout is not a terminal."""

from __future__ import annotations

import io
import os
import re
from typing import Any

import pytest

from pilotage.api import parse_resource
from pilotage.local.runtime import TickReport
from pilotage.local.store import Store
from pilotage.local.up import Display

API = "pilotage.dev/v1alpha1"
CONTROL = re.compile(r"\x1b\[(\d*)([A-Za-z])|(\n)|(.)", re.DOTALL)


class Screen:
    """A terminal of fixed size: wraps long lines, scrolls at the bottom, and knows the
    sequences the live view uses (erase line, cursor to a previous line, erase below)."""

    def __init__(self, columns: int, lines: int) -> None:
        self.columns, self.lines = columns, lines
        self.rows = [[" "] * columns for _ in range(lines)]
        self.row = self.col = 0

    def _down(self) -> None:
        self.row += 1
        if self.row == self.lines:
            self.rows = [*self.rows[1:], [" "] * self.columns]
            self.row -= 1

    def write(self, text: str) -> None:
        for m in CONTROL.finditer(text):
            count, command, newline, char = m.groups()
            if command == "K":
                self.rows[self.row] = [" "] * self.columns
            elif command == "F":
                self.row, self.col = max(self.row - int(count or 1), 0), 0
            elif command == "J":
                self.rows[self.row][self.col :] = [" "] * (self.columns - self.col)
                for r in range(self.row + 1, self.lines):
                    self.rows[r] = [" "] * self.columns
            elif newline:
                self._down()
                self.col = 0
            elif char:
                if self.col == self.columns:
                    self._down()
                    self.col = 0
                self.rows[self.row][self.col] = char
                self.col += 1

    def text(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows]


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _store(tmp_path: Any) -> Store:
    store = Store(tmp_path / "state")
    store.apply(
        parse_resource(
            _doc("Dataset", "iris", {"source": {"uri": "builtin://iris"}, "target": "target"})
        )
    )
    for n in range(3):
        job = {"datasetRef": {"name": "iris"}, "model": {"algorithm": "logistic_regression"}}
        store.apply(parse_resource(_doc("TrainingJob", f"iris-candidate-number-{n}", job)))
    store.apply(
        parse_resource(
            _doc("ModelDeployment", "iris", {"model": {"trainingJobRef": {"name": "iris-v1"}}})
        )
    )
    return store


def _event(store: Store, n: int) -> None:
    store.record_event(
        "TrainingJob",
        "iris-candidate-number-0",
        "Normal",
        "TrainingStarted",
        f"event {n}: a message long enough to be wider than a narrow terminal " + "x" * 60,
    )


@pytest.mark.parametrize(("columns", "lines"), [(80, 24), (160, 45), (60, 12)])
def test_the_live_table_is_redrawn_in_place(tmp_path: Any, columns: int, lines: int) -> None:
    store = _store(tmp_path)
    out = io.StringIO()
    size = os.terminal_size((columns, lines))
    display = Display(store, out, tty=True, namespace=None, terminal_size=lambda: size)
    screen = Screen(columns, lines)
    for n in range(14):  # more events than the view keeps, each frame different
        _event(store, n)
        display.update(TickReport())
        screen.write(out.getvalue())
        out.seek(0)
        out.truncate()
        shown = screen.text()
        # one frame on the screen, not the remains of earlier ones
        assert sum(line.startswith("RESOURCE") for line in shown) == 1, "\n".join(shown)
        assert all(len(line) < columns for line in shown)
    if lines >= 24:
        for name in ("Dataset/iris", "TrainingJob/iris-candidate-number-2", "ModelDeployment/iris"):
            assert any(line.startswith(name) for line in shown), "\n".join(shown)
        assert "Ctrl-C stops everything." in shown
        assert any("event 13:" in line for line in shown)


def test_plain_lines_are_not_cut(tmp_path: Any) -> None:
    store = _store(tmp_path)
    long_message = "rollout of iris-v3 stopped: " + "a reason that goes on " * 5 + "until here"
    store.write_status("ModelDeployment", "iris", {"phase": "Degraded", "message": long_message})
    out = io.StringIO()
    Display(store, out, tty=False, namespace=None).update(TickReport())
    assert any(line.endswith(long_message) for line in out.getvalue().splitlines())


def test_a_deleted_resource_gets_a_plain_line(tmp_path: Any) -> None:
    store = _store(tmp_path)
    out = io.StringIO()
    display = Display(store, out, tty=False, namespace=None)
    display.update(TickReport())
    store.delete("TrainingJob", "iris-candidate-number-1")
    display.update(TickReport())
    assert out.getvalue().splitlines()[-1].endswith(" TrainingJob/iris-candidate-number-1: deleted")


def test_describe_shows_a_datasets_profile_summary_and_findings() -> None:
    from pilotage.local.view import describe

    ds = parse_resource(
        {
            "apiVersion": API,
            "kind": "Dataset",
            "metadata": {"name": "churn"},
            "spec": {"source": {"uri": "file:///data/churn.csv"}, "target": "churned"},
            "status": {
                "phase": "Ready",
                "rows": 1500,
                "columns": 4,
                "target": "churned",
                "task": "classification",
                "profileUri": "file:///p/profile.json",
                "summary": [
                    {
                        "name": "churned",
                        "role": "target",
                        "type": "int",
                        "distinct": 2,
                        "min": 0,
                        "max": 1,
                    },
                    {
                        "name": "age",
                        "role": "feature",
                        "type": "float",
                        "missing": 63,
                        "distinct": 62,
                        "min": 18.0,
                        "max": 79.5,
                    },
                    {"name": "country", "role": "feature", "type": "category", "distinct": 4},
                ],
                "findings": [
                    {
                        "column": "age",
                        "kind": "missing",
                        "count": 63,
                        "message": "63 of 1500 values missing",
                    }
                ],
            },
        },
        "test",
    )
    text = describe(ds, [])
    lines = text.splitlines()
    assert "Profile: 1500 rows, 4 columns; target churned (classification)" in lines
    age = next(line for line in lines if line.split()[:1] == ["age"])
    assert age.split() == ["age", "feature", "float", "63", "62", "18", "79.5"]
    country = next(line for line in lines if line.split()[:1] == ["country"])
    assert country.split() == ["country", "feature", "category", "0", "4", "-", "-"]
    assert "(1 more column(s) in file:///p/profile.json)" in text
    finding = next(line for line in lines if "63 of 1500 values missing" in line)
    assert finding.split()[:4] == ["warning", "missing", "age", "63"]
    assert "summary:" not in text  # the table replaces the YAML list


def test_a_growing_sample_count_is_not_a_line_per_tick(tmp_path: Any) -> None:
    store = _store(tmp_path)
    dm = {"deploymentRef": {"name": "iris"}}
    store.apply(parse_resource(_doc("DriftMonitor", "iris-dm", dm)))
    out = io.StringIO()
    display = Display(store, out, tty=False, namespace=None)
    for samples in (0, 12, 40, 75):
        store.write_status(
            "DriftMonitor", "iris-dm", {"phase": "InsufficientData", "samples": samples}
        )
        display.update(TickReport())
    lines = [line for line in out.getvalue().splitlines() if "DriftMonitor/iris-dm" in line]
    assert len(lines) == 1 and "InsufficientData" in lines[0]
    store.write_status("DriftMonitor", "iris-dm", {"phase": "Healthy", "samples": 300})
    display.update(TickReport())
    lines = [line for line in out.getvalue().splitlines() if "DriftMonitor/iris-dm" in line]
    assert len(lines) == 2 and "Healthy" in lines[1] and "n=300" in lines[1]
