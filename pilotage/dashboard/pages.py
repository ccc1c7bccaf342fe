"""The dashboard's pages, rendered on the server from resource documents (as the API shows
them) and the bounded history. Each page is a shell plus a *live fragment* that the page's
script fetches again every second and swaps in; every value a person reads is in the HTML.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from pilotage.control.common import LABEL_MONITOR
from pilotage.dashboard.history import History, Key
from pilotage.dashboard.source import KINDS, Event, read_model_card
from pilotage.dashboard.svg import bar_chart, fmt, line_chart

Doc = dict[str, Any]
CardReader = Callable[[str], Doc | None]


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def key_of(doc: Doc) -> Key:
    meta = doc.get("metadata") or {}
    return (str(doc.get("kind")), str(meta.get("namespace") or "default"), str(meta.get("name")))


def href(kind: str, namespace: str, name: str) -> str:
    return f"/r/{quote(kind)}/{quote(namespace)}/{quote(name)}"


def link(kind: str, namespace: str, name: str, text: str | None = None) -> str:
    return f'<a href="{href(kind, namespace, name)}">{e(text or name)}</a>'


def ready_of(doc: Doc) -> tuple[str, str]:
    for c in (doc.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "Unknown")), str(c.get("reason", ""))
    return "Unknown", ""


def badge(phase: str) -> str:
    return f'<span class="badge phase-{e(phase).lower()}" data-phase="{e(phase)}">{e(phase)}</span>'


def detail_of(doc: Doc) -> str:
    kind, status = doc.get("kind"), doc.get("status") or {}
    if kind == "Dataset":
        rows = status.get("rows")
        return f"{rows} rows x {status.get('columns')} columns" if rows is not None else ""
    if kind == "TrainingJob":
        metrics = status.get("metrics") or {}
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in list(metrics.items())[:2])
        return " ".join(x for x in (status.get("modelVersion") or "", shown) if x)
    if kind == "ModelDeployment":
        stable = (status.get("stable") or {}).get("version") or "-"
        traffic = status.get("trafficSummary") or ""
        return f"stable {stable}" + (f", {traffic}" if traffic else "")
    if kind == "DriftMonitor":
        return str(status.get("message") or "")
    return ""


# -- the page shell -----------------------------------------------------------------------


def page(title: str, fragment_url: str, body: str, where: str, read_only: bool) -> str:
    mode = "read-only" if read_only else "actions enabled"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · Pilotage</title>
<link rel="stylesheet" href="/static/dashboard.css">
<link rel="icon" href="data:,">
</head><body data-read-only="{str(read_only).lower()}">
<header><a href="/" class="brand">Pilotage</a><span class="where">{e(where)} · {mode}</span>
<span id="updated" class="updated"></span></header>
<div id="flash" role="status" aria-live="polite"></div>
<main id="live" data-fragment="{e(fragment_url)}">{body}</main>
<script src="/static/dashboard.js"></script>
</body></html>
"""


def error_box(message: str) -> str:
    return f'<div class="error" data-error>{e(message)}</div>'


def action_button(
    action: str, doc: Doc, label: str, enabled: bool, read_only: bool, full: bool = False
) -> str:
    kind, namespace, name = key_of(doc)
    if read_only:
        return ""
    attrs = (
        f'data-action="{e(action)}" data-namespace="{e(namespace)}" data-name="{e(name)}"'
        f' data-kind="{e(kind)}" data-full="{str(full).lower()}"'
    )
    disabled = "" if enabled else " disabled"
    return f'<button class="action" {attrs}{disabled}>{e(label)}</button>'


# -- the list -------------------------------------------------------------------------------


def list_fragment(docs: Sequence[Doc]) -> str:
    if not docs:
        return '<p class="empty">No resources yet.</p>'
    blocks = []
    for kind in KINDS:
        mine = sorted((d for d in docs if d.get("kind") == kind), key=key_of)
        if not mine:
            continue
        rows = []
        for d in mine:
            _, namespace, name = key_of(d)
            ready, reason = ready_of(d)
            phase = str((d.get("status") or {}).get("phase") or "Pending")
            rows.append(
                f'<tr data-kind="{e(kind)}" data-name="{e(name)}">'
                f"<td>{link(kind, namespace, name)}</td><td>{e(namespace)}</td>"
                f"<td>{badge(phase)}</td>"
                f'<td class="ready-{e(ready).lower()}">{e(ready)}'
                f"{' (' + e(reason) + ')' if reason else ''}</td>"
                f"<td>{e(detail_of(d))}</td></tr>"
            )
        blocks.append(
            f'<section class="kind" data-kind="{e(kind)}"><h2>{e(kind)}s</h2><table>'
            "<thead><tr><th>name</th><th>namespace</th><th>phase</th><th>ready</th>"
            f"<th>detail</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
        )
    return "".join(blocks)


# -- common parts -------------------------------------------------------------------------


def events_table(events: Sequence[Event], limit: int = 25) -> str:
    if not events:
        return '<section><h2>Events</h2><p class="empty">none</p></section>'
    rows = "".join(
        f'<tr class="event-{e(ev.type).lower()}"><td>{e(ev.time[11:19] or ev.time)}</td>'
        f"<td>{e(ev.type)}</td><td>{e(ev.reason)}</td><td>{e(ev.message)}</td></tr>"
        for ev in list(events)[-limit:][::-1]
    )
    return (
        "<section><h2>Events</h2><table class='events'><thead><tr><th>time</th><th>type</th>"
        f"<th>reason</th><th>message</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def head(doc: Doc, extra: str = "") -> str:
    kind, namespace, name = key_of(doc)
    status = doc.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    ready, reason = ready_of(doc)
    message = status.get("message") or ""
    return (
        f'<section class="head"><h1>{e(kind)} <span class="name">{e(name)}</span>'
        f" {badge(phase)}</h1>"
        f'<p class="meta">namespace {e(namespace)} · Ready {e(ready)}'
        f"{' (' + e(reason) + ')' if reason else ''}</p>"
        f"{'<p class=message>' + e(message) + '</p>' if message else ''}{extra}</section>"
    )


def kv_table(pairs: Sequence[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="{cls}">{rows}</table>'


def _series(
    points: list[dict[str, Any]],
    now: float,
    pick: Callable[[dict[str, Any]], dict[str, float | None]],
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        for name, value in pick(p).items():
            if value is not None:
                out.setdefault(name, []).append((p["t"] - now, float(value)))
    return out


# -- ModelDeployment ------------------------------------------------------------------------


def _steps(spec: Doc, status: Doc) -> str:
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type", "Canary")
    current = status.get("currentStep")
    in_rollout = bool(status.get("candidate"))
    if kind == "Canary":
        steps = (strategy.get("canary") or {}).get("steps") or [
            {"setWeight": 10},
            {"pause": {"duration": "30s"}},
            {"setWeight": 50},
            {"pause": {"duration": "30s"}},
        ]
        items = []
        for i, step in enumerate(steps):
            if "setWeight" in step:
                text = f"setWeight {step['setWeight']}%"
            else:
                duration = (step.get("pause") or {}).get("duration")
                text = f"pause {duration}" if duration else "pause (until promoted)"
            state = ""
            if in_rollout and current is not None:
                state = "done" if i < current else "current" if i == current else ""
            marker = ' aria-current="step"' if state == "current" else ""
            items.append(f'<li class="step {state}" data-step="{i}"{marker}>{e(text)}</li>')
        items.append(
            f'<li class="step {"current" if in_rollout and current is not None and current >= len(steps) else ""}">'
            "promote to 100%</li>"
        )
        return f'<ol class="steps">{"".join(items)}</ol>'
    if kind == "BlueGreen":
        bg = strategy.get("blueGreen") or {}
        auto = bg.get("autoPromotionSeconds")
        return (
            "<p>Blue-green: the green version gets no traffic until promoted"
            + (f" (automatically after {e(auto)}s of passing analysis)" if auto else "")
            + ".</p>"
        )
    shadow = strategy.get("shadow") or {}
    return (
        f"<p>Shadow: {e(shadow.get('percent', 100))}% of requests mirrored for "
        f"{e(shadow.get('duration', '5m'))}"
        + (", then promoted" if shadow.get("promote", True) else "")
        + ".</p>"
    )


def _weights(status: Doc) -> str:
    traffic: dict[str, int] = status.get("traffic") or {}
    if not traffic:
        return '<p class="empty">no traffic yet</p>'
    versions = {
        "stable": (status.get("stable") or {}).get("version"),
        "canary": (status.get("candidate") or {}).get("version"),
        "green": (status.get("candidate") or {}).get("version"),
        "shadow": (status.get("candidate") or {}).get("version"),
    }
    rows = []
    for variant, weight in traffic.items():
        rows.append(
            f'<div class="weight-row"><span class="variant">{e(variant)}</span>'
            f'<span class="version">{e(versions.get(variant) or "")}</span>'
            f'<span class="bar"><span class="fill variant-{e(variant)}" style="width:{int(weight)}%"></span></span>'
            f'<span class="pct"><span class="weight" data-variant="{e(variant)}">{int(weight)}</span>%</span></div>'
        )
    return f'<div class="weights">{"".join(rows)}</div>'


def _analysis_charts(spec: Doc, points: list[dict[str, Any]], now: float) -> str:
    """The candidate's measurement at each analysis (one point per analysis time): what a
    rollout was judged on, on both platforms (it comes from the status)."""
    seen: dict[str, tuple[float, dict[str, Any]]] = {}
    for p in points:
        analysis = p.get("analysis") or {}
        if analysis.get("time") and analysis["time"] not in seen:
            seen[analysis["time"]] = (p["t"] - now, analysis)
    slos = spec.get("analysis") or {}

    def series(field: str) -> dict[str, list[tuple[float, float]]]:
        pts = [(t, float(a[field])) for t, a in seen.values() if a.get(field) is not None]
        return {"candidate": pts} if pts else {}

    charts = [
        line_chart(
            "candidate p99 at each analysis",
            series("p99Ms"),
            unit="ms",
            threshold=(slos.get("latency") or {}).get("p99Ms"),
            threshold_label="SLO p99",
            chart_id="chart-analysis-p99",
        ),
        line_chart(
            "candidate error rate at each analysis",
            series("errorRate"),
            threshold=(slos.get("errorRate") or {}).get("max"),
            chart_id="chart-analysis-errors",
        ),
    ]
    if ((spec.get("strategy") or {}).get("type")) == "Shadow" or slos.get("shadow"):
        charts.append(
            line_chart(
                "shadow agreement at each analysis",
                series("agreement"),
                threshold=(slos.get("shadow") or {}).get("minAgreement"),
                threshold_label="min",
                y_max=1.0,
                chart_id="chart-agreement",
            )
        )
    return f"<div class='charts'>{''.join(charts)}</div>"


def _analysis(spec: Doc, status: Doc, charts: str = "") -> str:
    analysis_spec = spec.get("analysis") or {}
    last = status.get("lastAnalysis") or {}
    slos: list[tuple[str, str, Any, Any, bool | None]] = []
    latency = (analysis_spec.get("latency") or {}).get("p99Ms")
    if latency is not None:
        measured = last.get("p99Ms")
        slos.append(
            (
                "p99 latency",
                "ms",
                measured,
                latency,
                None if measured is None else measured <= latency,
            )
        )
    err = (analysis_spec.get("errorRate") or {}).get("max")
    if err is not None:
        measured = last.get("errorRate")
        slos.append(
            ("error rate", "", measured, err, None if measured is None else measured <= err)
        )
    drift = (analysis_spec.get("drift") or {}).get("maxScore")
    if drift is not None:
        measured = last.get("driftScore")
        slos.append(
            ("drift score", "", measured, drift, None if measured is None else measured <= drift)
        )
    shadow = (analysis_spec.get("shadow") or {}).get("minAgreement")
    if shadow is not None:
        measured = last.get("agreement")
        slos.append(
            (
                "shadow agreement",
                "",
                measured,
                shadow,
                None if measured is None else measured >= shadow,
            )
        )
    rows = "".join(
        f'<tr data-slo="{e(name)}" class="{"pass" if ok else "fail" if ok is False else ""}">'
        f"<td>{e(name)}</td><td class='measured'>{e(fmt(measured))}{e(unit) if measured is not None else ''}</td>"
        f"<td class='limit'>{'≥' if name == 'shadow agreement' else '≤'} {e(fmt(limit))}{e(unit)}</td>"
        f"<td>{'pass' if ok else 'FAIL' if ok is False else '-'}</td></tr>"
        for name, unit, measured, limit, ok in slos
    )
    verdict = last.get("verdict")
    summary = (
        f'<p class="verdict verdict-{e(verdict).lower()}">last analysis {e(last.get("time", ""))}: '
        f"<b>{e(verdict)}</b> on {e(last.get('requests', 0))} requests"
        f"{' — ' + e(last.get('message')) if last.get('message') else ''}</p>"
        if verdict
        else '<p class="empty">no analysis yet (analyses run during a rollout)</p>'
    )
    table = (
        "<table class='slos'><thead><tr><th>SLO</th><th>measured</th><th>limit</th><th>verdict</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
        if slos
        else '<p class="empty">no SLO in spec.analysis</p>'
    )
    agreement = last.get("agreement")
    shadow_line = (
        f'<p class="agreement">shadow agreement: {e(fmt(agreement))}</p>'
        if agreement is not None
        else ""
    )
    return f"<section><h2>Analysis</h2>{summary}{table}{shadow_line}{charts}</section>"


def _history(status: Doc) -> str:
    entries = status.get("history") or []
    if not entries:
        return '<section><h2>History</h2><p class="empty">none</p></section>'
    rows = "".join(
        f'<tr class="history-{e(h.get("action")).lower()}"><td>{e(h.get("time"))}</td>'
        f"<td>{e(h.get('version'))}</td><td>{e(h.get('action'))}</td><td>{e(h.get('reason'))}</td>"
        f"<td>{e(h.get('message'))}</td></tr>"
        for h in entries[::-1]
    )
    return (
        "<section><h2>History</h2><table class='history'><thead><tr><th>time</th><th>version</th>"
        f"<th>action</th><th>reason</th><th>measured / why</th></tr></thead><tbody>{rows}</tbody>"
        "</table></section>"
    )


def deployment_fragment(
    doc: Doc, history: History, events: Sequence[Event], read_only: bool, now: float
) -> str:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    key = key_of(doc)
    candidate = status.get("candidate") or {}
    stable = status.get("stable") or {}
    strategy = (spec.get("strategy") or {}).get("type", "Canary")
    buttons = "".join(
        [
            action_button("promote", doc, "Promote (next step)", bool(candidate), read_only),
            action_button("promote", doc, "Promote fully", bool(candidate), read_only, full=True),
            action_button("abort", doc, "Abort", bool(candidate), read_only),
            action_button("retry", doc, "Retry", bool(status.get("rejectedVersion")), read_only),
        ]
    )
    summary = kv_table(
        [
            ("stable", e(stable.get("version") or "-")),
            ("candidate", e(candidate.get("version") or "-")),
            ("strategy", e(strategy)),
            ("endpoint", e(status.get("endpoint") or "-")),
            ("rejected", e(status.get("rejectedVersion") or "-")),
        ]
    )
    analysis_spec = spec.get("analysis") or {}
    p99_slo = (analysis_spec.get("latency") or {}).get("p99Ms")
    err_slo = (analysis_spec.get("errorRate") or {}).get("max")
    status_points = history.status_points(key)
    router_points = history.router_points(key)
    since = min((p["t"] - now for p in status_points + router_points), default=None)
    weights_chart = line_chart(
        "traffic weight per variant",
        _series(status_points, now, lambda p: dict(p.get("traffic") or {})),
        unit="%",
        y_max=100,
        chart_id="chart-weights",
        since=since,
    )

    def per_variant(field: str) -> Callable[[dict[str, Any]], dict[str, float | None]]:
        return lambda p: {n: v.get(field) for n, v in (p.get("variants") or {}).items()}

    rate_chart = line_chart(
        "requests/s per variant",
        _series(router_points, now, per_variant("rps")),
        chart_id="chart-rps",
        since=since,
    )
    error_chart = line_chart(
        "error rate per variant",
        _series(router_points, now, per_variant("errorRate")),
        threshold=err_slo,
        chart_id="chart-errors",
        since=since,
    )
    p50_chart = line_chart(
        "p50 latency per variant",
        _series(router_points, now, per_variant("p50Ms")),
        unit="ms",
        chart_id="chart-p50",
        since=since,
    )
    p99_chart = line_chart(
        "p99 latency per variant",
        _series(router_points, now, per_variant("p99Ms")),
        unit="ms",
        threshold=p99_slo,
        threshold_label="SLO p99",
        chart_id="chart-p99",
        since=since,
    )
    if not router_points:
        note = (
            '<p class="note">Per-variant rates and latencies come from the router stats the '
            "embedded control loop reads; on a cluster the dashboard shows the analysis "
            "results from the status instead.</p>"
        )
    else:
        latest = router_points[-1].get("variants") or {}
        note = (
            "<table class='now'><thead><tr><th>variant</th><th>version</th><th>req/s</th><th>errors</th><th>p50</th><th>p99</th></tr></thead><tbody>"
            + "".join(
                f"<tr data-variant='{e(n)}'><td>{e(n)}</td><td>{e(v.get('version'))}</td><td>{fmt(v.get('rps'))}</td>"
                f"<td>{fmt(v.get('errorRate'))}</td><td>{fmt(v.get('p50Ms'))} ms</td><td>{fmt(v.get('p99Ms'))} ms</td></tr>"
                for n, v in latest.items()
            )
            + "</tbody></table>"
        )
    return (
        head(doc, f'<div class="actions">{buttons}</div>' if buttons else "")
        + f"<div class='grid'><section><h2>Rollout</h2>{summary}{_steps(spec, status)}</section>"
        + f"<section><h2>Traffic</h2>{_weights(status)}{weights_chart}</section></div>"
        + f"<section><h2>Per variant</h2>{note}<div class='charts'>{rate_chart}{error_chart}{p50_chart}{p99_chart}</div></section>"
        + _analysis(spec, status, _analysis_charts(spec, status_points, now))
        + _history(status)
        + events_table(events)
    )


# -- DriftMonitor ---------------------------------------------------------------------------


def _bin_labels(profile: Doc) -> list[str]:
    if profile.get("kind") == "categorical":
        return [*map(str, profile.get("categories") or []), "other"]
    edges = [float(x) for x in profile.get("edges") or []]
    if not edges:
        return ["all"]
    labels = [f"<{fmt(edges[0])}"]
    labels += [f"[{fmt(a)}, {fmt(b)})" for a, b in itertools.pairwise(edges)]
    labels.append(f"≥{fmt(edges[-1])}")
    return labels


def _live_proportions(profile: Doc, counts: dict[str, int]) -> list[float | None]:
    if profile.get("kind") == "categorical":
        keys = [*map(str, profile.get("categories") or []), "__other__"]
    else:
        keys = [str(i) for i in range(len(profile.get("edges") or []) + 1)]
    values = [counts.get(k, 0) for k in keys]
    total = sum(values)
    return [v / total if total else None for v in values]


def monitor_fragment(
    doc: Doc,
    docs: Sequence[Doc],
    history: History,
    events: Sequence[Event],
    read_only: bool,
    now: float,
    feature: str | None,
    card: Doc | None,
) -> str:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    kind, namespace, name = key_of(doc)
    features = status.get("features") or []
    deployment = (spec.get("deploymentRef") or {}).get("name")
    buttons = action_button(
        "retrain", doc, "Retrain now", bool((spec.get("onDrift") or {}).get("retrain")), read_only
    )
    summary = kv_table(
        [
            ("deployment", link("ModelDeployment", namespace, deployment) if deployment else "-"),
            ("model version", e(status.get("version") or "-")),
            ("rows in last window", e(status.get("samples", 0))),
            ("drifted share", e(fmt(status.get("driftScore")))),
            ("data-set drift", e("yes" if status.get("datasetDrift") else "no")),
            ("drifting checks in a row", e(status.get("consecutiveDrifting", 0))),
            ("last check", e(status.get("lastCheckTime") or "-")),
        ]
    )
    rows = "".join(
        f'<tr data-feature="{e(f.get("name"))}" class="{"drifted" if f.get("drifted") else ""}">'
        f'<td><a href="?feature={quote(str(f.get("name")))}">{e(f.get("name"))}</a></td><td>{e(f.get("method"))}</td>'
        f"<td class='score'>{e(fmt(f.get('score')))}</td><td class='threshold'>{e(fmt(f.get('threshold')))}</td>"
        f"<td>{'above threshold' if f.get('drifted') else 'ok'}</td></tr>"
        for f in features
    )
    table = (
        "<table class='features'><thead><tr><th>feature</th><th>method</th><th>score</th>"
        f"<th>threshold</th><th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"
        if features
        else '<p class="empty">no check yet</p>'
    )
    scores_now = bar_chart(
        "drift score per feature (last check)",
        [str(f.get("name")) for f in features],
        {"score": [f.get("score") for f in features]},
        thresholds=[f.get("threshold") for f in features],
        chart_id="chart-scores",
    )
    points = history.status_points((kind, namespace, name))
    thresholds = {t for p in points for t in (p.get("thresholds") or {}).values() if t is not None}
    over_time = line_chart(
        "drift score per feature over time",
        _series(points, now, lambda p: dict(p.get("scores") or {})),
        threshold=thresholds.pop() if len(thresholds) == 1 else None,
        threshold_label="threshold",
        chart_id="chart-drift-time",
    )
    # baseline vs live histogram of one feature
    baseline = ((card or {}).get("baseline") or {}).get("features") or {}
    chosen = (
        feature
        if feature in baseline
        else (
            next((str(f.get("name")) for f in features if f.get("name") in baseline), None)
            or next(iter(baseline), None)
        )
    )
    if chosen is None:
        histogram = '<p class="empty">no baseline readable from here (the model card of the stable version)</p>'
    else:
        profile = baseline[chosen]
        live = history.live_counts((kind, namespace, name), now) or {}
        groups: dict[str, Sequence[float | None]] = {
            "baseline": list(profile.get("proportions") or [])
        }
        if chosen in live:
            groups["live"] = _live_proportions(profile, live[chosen])
        options = "".join(
            f'<a class="{"chosen" if f == chosen else ""}" href="?feature={quote(f)}">{e(f)}</a>'
            for f in baseline
        )
        histogram = f'<p class="features-nav">feature: {options}</p>' + bar_chart(
            f"{chosen}: training baseline vs live (share of rows per bin)",
            _bin_labels(profile),
            groups,
            width=720,
            chart_id="chart-histogram",
        )
    retrain_jobs = sorted(
        (
            d
            for d in docs
            if d.get("kind") == "TrainingJob"
            and ((d.get("metadata") or {}).get("labels") or {}).get(LABEL_MONITOR) == name
            and key_of(d)[1] == namespace
        ),
        key=lambda d: str((d.get("metadata") or {}).get("creationTimestamp") or key_of(d)[2]),
    )
    last = status.get("lastRetrain") or {}
    trigger_rows = "".join(
        f"<tr><td>{link('TrainingJob', namespace, key_of(d)[2])}</td>"
        f"<td>{badge(str((d.get('status') or {}).get('phase') or 'Pending'))}</td>"
        f"<td>{e((d.get('status') or {}).get('modelVersion') or '-')}</td>"
        f"<td>{e(last.get('trigger') if last.get('name') == key_of(d)[2] else '')}</td>"
        f"<td>{e(last.get('message') if last.get('name') == key_of(d)[2] else '')}</td></tr>"
        for d in retrain_jobs
    )
    retrains = (
        f"<p>{e(status.get('retrains', 0))} retrain(s) created"
        + (
            f"; last: {e(last.get('name'))} ({e(last.get('trigger'))}, {e(last.get('time'))})"
            if last
            else ""
        )
        + "</p>"
        + (
            "<table class='retrains'><thead><tr><th>TrainingJob</th><th>phase</th><th>version</th>"
            f"<th>trigger</th><th>why</th></tr></thead><tbody>{trigger_rows}</tbody></table>"
            if trigger_rows
            else ""
        )
    )
    live_q = status.get("live") or {}
    quality = (
        f"<p>live quality from feedback: {e(live_q.get('samples', 0))} labelled, accuracy "
        f"{e(fmt(live_q.get('accuracy')))}, MAE {e(fmt(live_q.get('mae')))}</p>"
        if live_q
        else ""
    )
    return (
        head(doc, f'<div class="actions">{buttons}</div>' if buttons else "")
        + f"<div class='grid'><section><h2>Summary</h2>{summary}{quality}</section>"
        + f"<section><h2>Features</h2>{table}</section></div>"
        + f"<section><h2>Drift</h2><div class='charts'>{scores_now}{over_time}</div></section>"
        + f"<section><h2>Histogram</h2>{histogram}</section>"
        + f"<section><h2>Triggers and retrains</h2>{retrains}</section>"
        + events_table(events)
    )


# -- TrainingJob and Dataset -------------------------------------------------------------------


def _confusion(card: Doc) -> str:
    cm = (card.get("metrics") or {}).get("confusion_matrix") or {}
    labels, matrix = cm.get("labels") or [], cm.get("matrix") or []
    if not labels or not matrix:
        return ""
    peak = max((max(row) for row in matrix if row), default=1) or 1
    head_row = "".join(f"<th>{e(lbl)}</th>" for lbl in labels)
    body = "".join(
        f"<tr><th>{e(labels[i])}</th>"
        + "".join(
            f'<td style="background:rgba(37,99,235,{0.08 + 0.8 * v / peak:.2f})"'
            f' class="{"diag" if i == j else ""}">{e(v)}</td>'
            for j, v in enumerate(row)
        )
        + "</tr>"
        for i, row in enumerate(matrix)
    )
    return (
        "<section><h2>Confusion matrix</h2><p class='note'>rows: true class, columns: predicted "
        f"(test split)</p><table class='confusion'><thead><tr><th></th>{head_row}</tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def _residuals(card: Doc) -> str:
    res = (card.get("metrics") or {}).get("residuals") or {}
    edges, counts = res.get("edges") or [], res.get("counts") or []
    if not counts or len(edges) != len(counts) + 1:
        return ""
    labels = [fmt((a + b) / 2) for a, b in itertools.pairwise(edges)]
    chart = bar_chart(
        "residuals (true - predicted), test split",
        labels,
        {"rows": [float(c) for c in counts]},
        width=720,
        chart_id="chart-residuals",
    )
    return (
        f"<section><h2>Residuals</h2><p class='note'>mean {e(fmt(res.get('mean')))}, "
        f"std {e(fmt(res.get('std')))}</p>{chart}</section>"
    )


def lineage(doc: Doc, docs: Sequence[Doc]) -> str:
    """Dataset → TrainingJob → version → deployment(s) that serve or served it."""
    _, namespace, name = key_of(doc)
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    dataset = (spec.get("datasetRef") or {}).get("name")
    version = status.get("modelVersion")
    uses = []
    for d in docs:
        if d.get("kind") != "ModelDeployment" or key_of(d)[1] != namespace:
            continue
        st = d.get("status") or {}
        roles = []
        if (st.get("stable") or {}).get("trainingJob") == name or (
            version and (st.get("stable") or {}).get("version") == version
        ):
            roles.append("stable")
        if (st.get("candidate") or {}).get("trainingJob") == name or (
            version and (st.get("candidate") or {}).get("version") == version
        ):
            roles.append("candidate")
        actions = [
            h.get("action")
            for h in st.get("history") or []
            if version and h.get("version") == version
        ]
        if roles or actions:
            what = ", ".join(roles + [str(a) for a in actions if a not in roles])
            uses.append(f"{link('ModelDeployment', namespace, key_of(d)[2])} ({e(what)})")
    chain = [
        link("Dataset", namespace, dataset) if dataset else "-",
        link("TrainingJob", namespace, name),
        f"<span class='version'>{e(version or 'no version yet')}</span>",
        ", ".join(uses) or "not deployed",
    ]
    return f'<section><h2>Lineage</h2><p class="lineage">{" → ".join(chain)}</p></section>'


def trainingjob_fragment(
    doc: Doc, docs: Sequence[Doc], events: Sequence[Event], card: Doc | None
) -> str:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    metrics = status.get("metrics") or {}
    gates = (status.get("gates") or {}).get("results") or []
    parity = status.get("onnxParity") or {}
    model = spec.get("model") or {}
    info = kv_table(
        [
            ("algorithm", e(model.get("algorithm"))),
            ("task", e(spec.get("task") or (card or {}).get("task") or "-")),
            ("version", e(status.get("modelVersion") or "-")),
            ("model", e(status.get("modelUri") or "-")),
            ("attempts", e(status.get("attempts", 0))),
            (
                "hyperparameters",
                e((card or {}).get("hyperparameters") or model.get("hyperparameters") or {}),
            ),
            (
                "ONNX parity",
                e(
                    f"max abs diff {fmt(parity.get('maxAbsDiff'))}, label agreement "
                    f"{fmt(parity.get('labelAgreement'))}"
                    if parity
                    else "-"
                ),
            ),
        ]
    )
    metric_rows = "".join(
        f"<tr data-metric='{e(k)}'><td>{e(k)}</td><td>{e(fmt(v, 4))}</td></tr>"
        for k, v in metrics.items()
    )
    gate_rows = "".join(
        f"<tr class='{'pass' if g.get('passed') else 'fail'}'><td>{e(g.get('metric'))}</td>"
        f"<td>{e(fmt(g.get('value'), 4))}</td>"
        f"<td>{e(('≥ ' + fmt(g.get('min'))) if g.get('min') is not None else '')}"
        f"{e((' ≤ ' + fmt(g.get('max'))) if g.get('max') is not None else '')}</td>"
        f"<td>{'pass' if g.get('passed') else 'FAIL'}</td></tr>"
        for g in gates
    )
    search = spec.get("search")
    search_part = ""
    if search:
        found = status.get("search") or {}
        rows = kv_table(
            [
                ("type", e(search.get("type", "grid"))),
                ("parameters", e(search.get("parameters"))),
                ("folds", e(found.get("folds") or search.get("cvFolds", 5))),
                ("trials", e(found.get("trials", "-"))),
                ("scoring", e(found.get("scoring") or "-")),
                ("best parameters", e(found.get("bestParameters") or "-")),
                ("best CV score", e(fmt(found.get("bestScore"), 4))),
            ]
        )
        search_part = f"<section><h2>Search</h2>{rows}</section>"
    card_part = (_confusion(card) + _residuals(card)) if card else ""
    if card is None and status.get("modelUri"):
        card_part = "<p class='note'>the model card is not readable from here</p>"
    return (
        head(doc)
        + lineage(doc, docs)
        + f"<div class='grid'><section><h2>Run</h2>{info}</section>"
        + "<section><h2>Metrics</h2>"
        + (
            f"<table class='metrics'><tbody>{metric_rows}</tbody></table>"
            if metric_rows
            else "<p class='empty'>none yet</p>"
        )
        + (
            "<h3>Gates</h3><table class='gates'><thead><tr><th>metric</th><th>value</th><th>bound</th>"
            f"<th>verdict</th></tr></thead><tbody>{gate_rows}</tbody></table>"
            if gate_rows
            else ""
        )
        + "</section></div>"
        + card_part
        + search_part
        + events_table(events)
    )


def dataset_fragment(
    doc: Doc, docs: Sequence[Doc], events: Sequence[Event], read_only: bool
) -> str:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    _, namespace, name = key_of(doc)
    jobs = [
        link("TrainingJob", namespace, key_of(d)[2])
        for d in docs
        if d.get("kind") == "TrainingJob"
        and ((d.get("spec") or {}).get("datasetRef") or {}).get("name") == name
        and key_of(d)[1] == namespace
    ]
    findings = status.get("findings") or []
    info = kv_table(
        [
            ("source", e((spec.get("source") or {}).get("uri"))),
            ("target", e(spec.get("target"))),
            ("rows", e(status.get("rows") if status.get("rows") is not None else "-")),
            ("columns", e(status.get("columns") if status.get("columns") is not None else "-")),
            ("fingerprint", e(status.get("fingerprint") or "-")),
            ("profiled", e(status.get("lastProfiledTime") or "-")),
            ("trained by", ", ".join(jobs) or "-"),
        ]
    )
    finding_rows = "".join(
        f"<tr><td>{e(f.get('column', ''))}</td><td>{e(f.get('kind', f.get('type', '')))}</td>"
        f"<td>{e(f.get('count', ''))}</td><td>{e(f.get('message', ''))}</td></tr>"
        for f in findings
    )
    button = action_button("refresh", doc, "Re-profile", True, read_only)
    return (
        head(doc, f'<div class="actions">{button}</div>' if button else "")
        + f"<section><h2>Data</h2>{info}</section>"
        + (
            "<section><h2>Validation findings</h2><table><thead><tr><th>column</th><th>finding</th>"
            f"<th>count</th><th>message</th></tr></thead><tbody>{finding_rows}</tbody></table></section>"
            if finding_rows
            else ""
        )
        + events_table(events)
    )


def model_card_for(
    doc: Doc, docs: Sequence[Doc], reader: CardReader = read_model_card
) -> Doc | None:
    """The model card a page needs: a TrainingJob's own; a DriftMonitor's deployment's stable."""
    status = doc.get("status") or {}
    if doc.get("kind") == "TrainingJob" and status.get("modelUri"):
        return reader(str(status["modelUri"]))
    if doc.get("kind") == "DriftMonitor":
        _, namespace, _ = key_of(doc)
        target = ((doc.get("spec") or {}).get("deploymentRef") or {}).get("name")
        for d in docs:
            if d.get("kind") == "ModelDeployment" and key_of(d)[1:] == (namespace, target):
                uri = ((d.get("status") or {}).get("stable") or {}).get("uri")
                return reader(str(uri)) if uri else None
    return None


def now() -> float:
    return time.time()
