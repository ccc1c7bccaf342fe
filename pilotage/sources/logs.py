"""`logs://DEPLOYMENT`: a window of a ModelDeployment's inference logs, as a Dataset.

::

    source:
      uri: logs://iris
      inferenceLogs:                       # every field has a default
        sink: file:///var/log/pilotage     # default: the deployment's spec.logging.sink.uri
        window: 168h                       # the last 7 days
        labelled: true                     # only requests that got a feedback label
        base: {uri: builtin://iris}        # appended, so a retrain keeps the original data

Without `sink`, the control core observes the ModelDeployment the URI names and `resolve`
writes its sink into the source the profiling run reads (and mounts: a `pvc://` claim);
a deployment that does not exist, logs nowhere or logs to a collector is an `Unresolved`
condition that clears by itself once the deployment is there and logs to a readable sink.

The profiling run materialises the window once (`materialise`): one Parquet file in the
artifact store, then validated, profiled and fingerprinted like any file; TrainingJobs read
that file, so a profile and every run trained on it see the same rows.

The join runs in two passes over the window, so memory holds the labels, never the
requests: first every label record (request id -> truth, at most `maxLabels`; a later label
for the same id replaces an earlier one), then the request records, streamed partition by
partition and written out in batches of `BATCH_ROWS` rows. A label sent hours after its
request (another hour partition, long after the router forgot the request) joins all the
same. Left out, and counted in `skipped`: torn or invalid lines, failed requests (status
>= 400), shadow answers, rows the router could not name (`features: null`), and requests
whose label does not match their rows (a list of another length).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pilotage.sources.base import (
    Access,
    Snapshot,
    Source,
    Unresolved,
    register,
    scheme_of,
    source_for,
    uri_access,
    uri_problem,
)
from pilotage.trainer.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from pilotage.api.dataset import Dataset, DataSource, InferenceLogs
    from pilotage.api.modeldeployment import ModelDeployment

TARGET = "target"
"""The target column when `spec.target` is absent."""
SNAPSHOT_FILE = "snapshot.parquet"
BATCH_ROWS = 10_000
READABLE_SINKS = ("file", "pvc", "s3")


def deployment_of(uri: str) -> str:
    return urlparse(uri).netloc


def logs_of(source: DataSource) -> InferenceLogs:
    """`spec.source.inferenceLogs`, its defaults when left out."""
    from pilotage.api.dataset import InferenceLogs

    return source.inference_logs if source.inference_logs is not None else InferenceLogs()


def _unreadable(sink: str) -> bool:
    parsed = urlparse(sink)
    return parsed.scheme not in READABLE_SINKS or not (parsed.netloc or parsed.path.strip("/"))


READABLE = "file:///dir, pvc://CLAIM/dir or s3://bucket/prefix"


def _base_source(source: DataSource) -> DataSource | None:
    from pilotage.api.dataset import DataSource

    logs = source.inference_logs
    if logs is None or logs.base is None:
        return None
    return DataSource.model_construct(
        uri=logs.base.uri, format=logs.base.format, credentials_secret_ref=None, inference_logs=None
    )


@register
class LogsSource(Source):
    schemes = ("logs",)
    default_target = TARGET
    fields = ("inferenceLogs",)
    snapshots = True

    def problem(self, source: DataSource) -> str | None:
        logs = logs_of(source)
        parsed = urlparse(source.uri)
        if not parsed.netloc or parsed.path.strip("/") or parsed.query:
            return (
                f"spec.source.uri: {source.uri!r} must name one ModelDeployment of the "
                "Dataset's namespace, as logs://NAME"
            )
        if source.format is not None:
            return "spec.source.format: a logs:// source is read as log records; leave it out"
        if logs.sink is not None and _unreadable(logs.sink):
            return (
                f"spec.source.inferenceLogs.sink: {logs.sink!r} cannot be read back; use the "
                f"deployment's {READABLE} sink"
            )
        base = _base_source(source)
        if base is not None:
            if scheme_of(base.uri) in self.schemes:
                return "spec.source.inferenceLogs.base.uri: the base cannot be logs:// itself"
            problem = uri_problem(base.uri) or source_for(base.uri).problem(base)
            if problem:
                where = problem.removeprefix("spec.source.").partition(":")[0]
                detail = problem.partition(": ")[2] if problem.startswith("spec.") else problem
                return f"spec.source.inferenceLogs.base.{where or 'uri'}: {detail}"
        return super().problem(source)

    def deployment_read(self, source: DataSource) -> str | None:
        return deployment_of(source.uri) if logs_of(source).sink is None else None

    def resolve(
        self, source: DataSource, deployment: ModelDeployment | None
    ) -> DataSource | Unresolved:
        logs = logs_of(source)
        if logs.sink is not None:
            return source
        name = deployment_of(source.uri)
        instead = "or give spec.source.inferenceLogs.sink"
        if deployment is None:
            return Unresolved(
                "LogsNotFound",
                f"{source.uri}: no ModelDeployment {name!r} in this namespace to read the "
                f"logging sink of; create it, {instead}",
            )
        logging = deployment.spec.logging
        sink = logging.sink.uri if logging is not None and logging.sink is not None else None
        if sink is None:
            return Unresolved(
                "LogsNotFound",
                f"{source.uri}: ModelDeployment {name!r} has no spec.logging.sink; give it "
                f"one ({READABLE}) with a sampleRate above 0, {instead}",
            )
        if _unreadable(sink):
            return Unresolved(
                "LogsUnreadable",
                f"{source.uri}: ModelDeployment {name!r} logs to {sink!r}, which cannot be "
                f"read back; log to {READABLE}, {instead}",
            )
        resolved = logs.model_copy(update={"sink": sink})
        return source.model_copy(update={"inference_logs": resolved})

    def access(self, source: DataSource) -> Access:
        logs = logs_of(source)
        found = [uri_access(logs.sink)] if logs.sink is not None else []
        base = _base_source(source)
        if base is not None and uri_problem(base.uri) is None:
            found.append(source_for(base.uri).access(base))
        claims = tuple(dict.fromkeys(c for a in found for c in a.claims))
        return Access(claims=claims, s3=any(a.s3 for a in found))

    def load(self, source: DataSource) -> Any:
        raise DataError(
            f"{source.uri} is read through its snapshot: profile the Dataset first "
            "(its status.snapshot names the file TrainingJobs train on)"
        )

    def materialise(self, dataset: Dataset, directory: Path, now: datetime) -> Snapshot:
        return _materialise(dataset, directory, now)


# ---- materialising ----------------------------------------------------------------------


def _kind_of(values: list[Any], target: bool) -> str:
    """'int' (a target of whole numbers), 'float' (numbers) or 'string'."""
    present = [v for v in values if v is not None]
    if any(isinstance(v, str) for v in present):
        return "string"
    if target and present and all(isinstance(v, int) for v in present):
        return "int"
    return "float"


def _convert(values: list[Any], kind: str) -> list[Any]:
    """Values as ``kind``; what does not fit becomes null (and shows in the profile as
    missing)."""
    if kind == "string":
        return [None if v is None else str(v) for v in values]
    out: list[Any] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            out.append(None)
        elif kind == "int":
            out.append(int(v) if float(v).is_integer() else None)
        else:
            out.append(float(v))
    return out


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}[kind]


def _kind_of_dtype(dtype: Any, target: bool) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return "string"
    if pd.api.types.is_integer_dtype(dtype):
        return "int" if target else "float"
    if pd.api.types.is_numeric_dtype(dtype):
        return "float"
    return "string"


class _Writer:
    """Rows to a Parquet file in batches; the columns' types fixed by the first batch."""

    def __init__(self, path: Path, features: list[str], target: str):
        self.path = path
        self.features = features
        self.target = target
        self.kinds: dict[str, str] | None = None
        self.rows: list[tuple[dict[str, Any], Any]] = []
        self.writer: Any = None
        self.written = 0

    @property
    def columns(self) -> list[str]:
        return [*self.features, self.target]

    def fix_kinds(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds

    def add(self, row: dict[str, Any], truth: Any) -> None:
        self.rows.append((row, truth))
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = {name: [row.get(name) for row, _ in self.rows] for name in self.features}
        columns[self.target] = [truth for _, truth in self.rows]
        self.rows = []
        if self.kinds is None:
            self.kinds = {
                name: _kind_of(values, name == self.target) for name, values in columns.items()
            }
        self.write_columns({n: _convert(v, self.kinds[n]) for n, v in columns.items()})

    def write_columns(self, columns: dict[str, list[Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.kinds is not None
        schema = pa.schema([(n, _arrow_type(self.kinds[n])) for n in self.columns])
        table = pa.table({n: pa.array(columns[n], schema.field(n).type) for n in self.columns})
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.write_table(table)
        self.written += table.num_rows

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


def _truths(truth: Any, rows: int) -> list[Any] | None:
    """One truth per row of a request, or None when the label does not fit its rows."""
    if isinstance(truth, list):
        return truth if len(truth) == rows else None
    return [truth] if rows == 1 else None


def _collect_labels(reader: Any, limit: int) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for record in reader:
        request_id = record.get("id")
        if not isinstance(request_id, str):
            continue
        truth = record["label"] if "label" in record else record.get("value")
        labels[request_id] = truth
        if len(labels) > limit:
            raise DataError(
                f"spec.source.inferenceLogs.maxLabels: the window holds more than {limit} "
                "labels; shorten the window or raise maxLabels"
            )
    return labels


def _base_chunks(base: DataSource) -> Any:
    """The base data, a frame at a time (a file in chunks; a builtin data set whole)."""
    from pilotage.trainer import streaming

    found = source_for(base.uri)
    with found.local_file(base) as data_file:
        if data_file is None:
            yield found.load(base).frame
            return
        yield from streaming.chunks(data_file.path, data_file.format, base.uri)


def _materialise(dataset: Dataset, directory: Path, now: datetime) -> Snapshot:
    from pilotage.api.common import parse_duration
    from pilotage.inferencelog.reader import LogReader, LogReadError
    from pilotage.inferencelog.record import LABEL, REQUEST, iso_time

    source = dataset.spec.source
    logs = logs_of(source)
    sink = logs.sink
    if sink is None:
        raise DataError(
            f"spec.source.inferenceLogs.sink: not given, and this run was not told the sink "
            f"of ModelDeployment {deployment_of(source.uri)!r} (the control plane resolves it); "
            "give it"
        )
    namespace = dataset.metadata.namespace or "default"
    deployment = deployment_of(source.uri)
    end = now
    start = end - timedelta(seconds=parse_duration(logs.window))
    target = dataset.spec.target or TARGET
    base = _base_source(source)

    def reader(kind: str) -> LogReader:
        try:
            return LogReader(sink, namespace, deployment, start, end, kinds=(kind,))
        except LogReadError as exc:
            raise DataError(f"spec.source.inferenceLogs.sink: {exc}") from None

    label_reader = reader(LABEL)
    labels = _collect_labels(label_reader, logs.max_labels)

    base_frames = _base_chunks(base) if base is not None else None
    first_base = next(base_frames, None) if base_frames is not None else None
    features = list(dataset.spec.features or [])
    if base is not None and first_base is not None:
        if target not in first_base.columns:
            raise DataError(
                f"spec.source.inferenceLogs.base: {base.uri} has no target column {target!r}"
            )
        features = features or [str(c) for c in first_base.columns if c != target]

    path = directory / SNAPSHOT_FILE
    writer = _Writer(path, features, target)
    if first_base is not None:
        writer.fix_kinds(
            {
                str(c): _kind_of_dtype(first_base[c].dtype, c == target)
                for c in first_base.columns
                if c in writer.columns
            }
        )
    skipped = logged = labelled = 0
    request_reader = reader(REQUEST)
    for record in request_reader:
        rows = record.get("features")
        status = record.get("status")
        if (
            record.get("shadow")
            or not isinstance(status, int)
            or status >= 400
            or not isinstance(rows, list)
            or not all(isinstance(r, dict) for r in rows)
        ):
            skipped += 1
            continue
        request_id = record.get("id")
        truth = labels.get(request_id) if isinstance(request_id, str) else None
        has_label = isinstance(request_id, str) and request_id in labels
        if logs.labelled and not has_label:
            continue
        truths = _truths(truth, len(rows)) if has_label else [None] * len(rows)
        if truths is None:
            skipped += 1
            continue
        if not writer.features:
            writer.features = [str(k) for k in rows[0] if k != target]
        for row, value in zip(rows, truths, strict=True):
            writer.add(row, value)
            logged += 1
            labelled += int(has_label and value is not None)
    writer.flush()

    base_rows = 0
    if base is not None and first_base is not None and base_frames is not None:
        missing = [c for c in writer.columns if c not in first_base.columns]
        if missing:
            raise DataError(
                f"spec.source.inferenceLogs.base: {base.uri} has no column {missing[0]!r} "
                "(the logged rows have it)"
            )
        if writer.kinds is None:
            writer.fix_kinds(
                {c: _kind_of_dtype(first_base[c].dtype, c == target) for c in writer.columns}
            )
        for frame in _chain(first_base, base_frames):
            kinds = writer.kinds or {}
            writer.write_columns({c: _convert(frame[c].tolist(), kinds[c]) for c in writer.columns})
            base_rows += len(frame)
    writer.close()

    # Both passes read the same files: count a bad line or file once, from the second.
    stats = request_reader.stats
    skipped += stats.torn + stats.invalid
    what = "labelled rows" if logs.labelled else "rows"
    if writer.written == 0:
        raise DataError(
            f"no {what} in the logs of {namespace}/{deployment} at {sink} over the last "
            f"{logs.window} ({request_reader.stats.records} requests, {len(labels)} labels read)"
        )
    facts = {
        "rows": writer.written,
        "loggedRows": logged,
        "labelledRows": labelled,
        "baseRows": base_rows,
        "sink": sink,
        "requests": request_reader.stats.records,
        "labels": label_reader.stats.labels,
        "skipped": skipped,
        "unreadable": stats.unreadable,
        "windowStart": iso_time(start.timestamp()),
        "windowEnd": iso_time(end.timestamp()),
    }
    return Snapshot(path, facts)


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest
