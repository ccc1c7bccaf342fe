"""How resources look on a terminal: `get` tables (from the printer columns), one-line
summaries for `up`, and `describe`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from pilotage.api import KINDS, Resource
from pilotage.local.store import Event

KIND_ALIASES: dict[str, str] = {}
for _kind, _cls in KINDS.items():
    for _alias in (_kind, _kind.lower(), _cls.PLURAL, *_cls.SHORT_NAMES):
        KIND_ALIASES[_alias.lower()] = _kind
# The embedded CLI has no DaemonSets, so it keeps the short name the CRD had to give up.
KIND_ALIASES["ds"] = "Dataset"


def resolve_kind(text: str) -> str | None:
    """``md``, ``modeldeployment``, ``modeldeployments``, ``ModelDeployment`` → the kind."""
    return KIND_ALIASES.get(text.lower())


def json_path(doc: dict[str, Any], path: str) -> Any:
    """Value at a simple ``.a.b.c`` path, None when any part is missing."""
    value: Any = doc
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def age(created: str | None, now: datetime | None = None) -> str:
    if not created:
        return "?"
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def cell(value: Any, type_: str) -> str:
    if value is None:
        return "-"
    if type_ == "number" and isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def get_table(kind: str, resources: Sequence[Resource], wide: bool = False) -> str:
    """The `kubectl get` view of one kind: name + its printer columns."""
    cls = KINDS[kind]
    columns = [c for c in cls.PRINTER_COLUMNS if wide or c.priority == 0]
    headers = ["NAME", *(c.name.upper() for c in columns)]
    rows = []
    for res in resources:
        doc = res.dump()
        row = [res.name]
        for c in columns:
            value = json_path(doc, c.json_path)
            row.append(age(value) if c.type == "date" else cell(value, c.type))
        rows.append(row)
    return render_table(headers, rows)


def _status(res: Resource) -> dict[str, Any]:
    return dict(res.dump().get("status") or {})


def version_of(res: Resource) -> str:
    status = _status(res)
    if res.kind == "TrainingJob":
        return str(status.get("modelVersion") or "-")
    if res.kind == "ModelDeployment":
        stable = (status.get("stable") or {}).get("version")
        candidate = (status.get("candidate") or {}).get("version")
        if stable and candidate:
            return f"{stable} → {candidate}"
        return str(stable or candidate or "-")
    if res.kind == "DriftMonitor":
        return str(status.get("version") or "-")
    return str(status.get("fingerprint") or "-")[:12]


def traffic_of(res: Resource) -> str:
    status = _status(res)
    if res.kind == "ModelDeployment":
        traffic = status.get("trafficSummary") or ", ".join(
            f"{k} {v}" for k, v in (status.get("traffic") or {}).items()
        )
        return str(traffic or "-")
    return "-"


def detail_of(res: Resource) -> str:
    """The figure a person looks at first for this kind."""
    status = _status(res)
    if res.kind == "Dataset":
        rows = status.get("rows")
        return f"{rows} rows" if rows is not None else str(status.get("message") or "")
    if res.kind == "TrainingJob":
        metrics = status.get("metrics") or {}
        shown = ", ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:2])
        gates = status.get("gates")
        if gates is not None:
            shown += f" gates {'passed' if gates.get('passed') else 'FAILED'}"
        return shown or str(status.get("message") or "")
    if res.kind == "ModelDeployment":
        analysis = status.get("lastAnalysis")
        if analysis:
            p99 = analysis.get("p99Ms")
            figure = f" p99={p99:.1f}ms" if isinstance(p99, int | float) else ""
            return f"{analysis.get('verdict')}{figure} n={analysis.get('requests', 0)}"
        return str(status.get("message") or "")
    if res.kind == "DriftMonitor":
        score = status.get("driftScore")
        text = f"drift share {score:.2f}" if isinstance(score, int | float) else ""
        return f"{text} n={status.get('samples', 0)}".strip()
    return ""


def phase_of(res: Resource) -> str:
    return str(_status(res).get("phase") or "Pending")


SUMMARY_HEADERS = ("RESOURCE", "PHASE", "VERSION", "TRAFFIC", "LAST ANALYSIS / DETAIL")


def shorten(text: str, width: int | None) -> str:
    """``text`` within ``width`` characters, its cut end marked with an ellipsis."""
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def summary_rows(resources: Sequence[Resource], detail_width: int | None = 70) -> list[list[str]]:
    """One row per resource; the detail is cut to ``detail_width`` (None: whole)."""
    return [
        [
            f"{res.kind}/{res.name}",
            phase_of(res),
            version_of(res),
            traffic_of(res),
            shorten(detail_of(res), detail_width),
        ]
        for res in resources
    ]


def _number(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.6g}"


def profile_lines(status: dict[str, Any]) -> list[str]:
    """A Dataset's profile summary and findings as tables (empty before the first profile)."""
    columns = status.get("summary") or []
    if not columns:
        return []
    task = status.get("task")
    lines = [
        "",
        f"Profile: {status.get('rows', '?')} rows, {status.get('columns', '?')} columns"
        + (f"; target {status.get('target')} ({task})" if task else ""),
    ]
    rows = [
        [
            "  " + str(c.get("name")),
            str(c.get("role", "")),
            str(c.get("type", "")),
            str(c.get("missing", 0)),
            str(c.get("distinct", 0)),
            _number(c.get("min")),
            _number(c.get("max")),
        ]
        for c in columns
    ]
    lines.append(
        render_table(["  COLUMN", "ROLE", "TYPE", "MISSING", "DISTINCT", "MIN", "MAX"], rows)
    )
    total = status.get("columns")
    if isinstance(total, int) and total > len(columns):
        lines.append(f"  ({total - len(columns)} more column(s) in {status.get('profileUri')})")
    findings = status.get("findings") or []
    lines += ["", "Findings:"]
    if not findings:
        lines.append("  <none>")
    else:
        lines.append(
            render_table(
                ["  SEVERITY", "KIND", "COLUMN", "COUNT", "MESSAGE"],
                [
                    [
                        "  " + str(f.get("severity", "warning")),
                        str(f.get("kind", "")),
                        str(f.get("column") or "(rows)"),
                        str(f.get("count", 0)),
                        str(f.get("message", "")),
                    ]
                    for f in findings
                ],
            )
        )
    return lines


def describe(res: Resource, events: Sequence[Event]) -> str:
    doc = res.dump()
    status = dict(doc.get("status") or {})
    if res.kind == "Dataset" and status.get("summary"):
        # The table below says it more readably than YAML.
        doc = {
            **doc,
            "status": {k: v for k, v in status.items() if k not in ("summary", "findings")},
        }
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
    lines = [body.rstrip()]
    if res.kind == "Dataset":
        lines += profile_lines(status)
    lines += ["", "Events:"]
    if not events:
        lines.append("  <none>")
    else:
        rows = [[e.time, e.type, e.reason, e.message] for e in events[-30:]]
        table = render_table(
            ["  TIME", "TYPE", "REASON", "MESSAGE"], [["  " + r[0], *r[1:]] for r in rows]
        )
        lines.append(table)
    return "\n".join(lines)
