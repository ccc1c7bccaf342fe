"""The local store: resources, events and supervised processes in one SQLite file.

It plays the part of the Kubernetes API server for the embedded runtime:

* ``metadata.uid``, ``creationTimestamp`` are set on create; ``metadata.generation``
  starts at 1 and grows by one each time the ``spec`` changes; ``resourceVersion``
  grows on every write (a store-wide counter, as in etcd).
* ``status`` is written separately from ``metadata``/``spec`` (the status subresource),
  so that ``pilotage promote`` in one process and ``pilotage up`` in another never
  overwrite each other's fields.
* Deleting a resource deletes the resources whose ``ownerReferences`` name it.

Several processes may use the same file at once (WAL journal, busy timeout).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pilotage.api import API_VERSION, ManifestError, Resource, parse_resource

DEFAULT_NAMESPACE = "default"
DB_FILE = "state.db"
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE,
    generation INTEGER NOT NULL,
    resource_version INTEGER NOT NULL,
    created TEXT NOT NULL,
    metadata TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_object ON events (kind, namespace, name);
CREATE TABLE IF NOT EXISTS processes (
    key TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,
    argv TEXT NOT NULL,
    port INTEGER,
    log_path TEXT NOT NULL,
    info TEXT NOT NULL,
    started TEXT NOT NULL
);
"""


MAX_OBJECT_BYTES = 1536 * 1024
"""The most JSON one resource's spec and metadata may take, as etcd's default request limit
bounds an object on a cluster: every read of the state reads every row."""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreError(Exception):
    """A store operation that cannot be done, said in one line."""


class NotFound(StoreError):
    pass


@dataclass(frozen=True)
class Event:
    time: str
    kind: str
    namespace: str
    name: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class ProcessRecord:
    """A child process the runtime started (a training run, a server, a router)."""

    key: str
    role: str
    owner: str
    pid: int
    start_ticks: int
    argv: list[str]
    port: int | None
    log_path: str
    info: dict[str, Any]
    started: str


@dataclass(frozen=True)
class ApplyResult:
    resource: Resource
    outcome: str  # created | configured | unchanged


# A Kubernetes namespace is a DNS label; the runtime puts it in process keys and file names.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _object_key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
    if not _NAMESPACE.match(namespace):
        raise StoreError(
            f"invalid namespace {namespace!r}: a namespace is a DNS label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    return str(doc["kind"]), namespace, str(meta["name"])


def _user_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata a user writes (labels, annotations, ownerReferences, ...), not server fields."""
    server = {"uid", "generation", "resourceVersion", "creationTimestamp", "namespace", "name"}
    return {k: v for k, v in meta.items() if k not in server and v not in (None, {}, [])}


class Store:
    """The resources, events and processes of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._local = threading.local()  # one SQLite connection per thread
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the state in {state_dir}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.state_dir / DB_FILE, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _next_version(self, db: sqlite3.Connection) -> int:
        db.execute(
            "INSERT INTO counters (name, value) VALUES ('resourceVersion', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )
        row = db.execute("SELECT value FROM counters WHERE name = 'resourceVersion'").fetchone()
        return int(row[0])

    # -- resources -----------------------------------------------------------------

    def apply(self, resource: Resource) -> ApplyResult:
        """Create or update from a manifest; ``status`` in the manifest is ignored."""
        doc = resource.dump()
        kind, namespace, name = _object_key(doc)
        meta = _user_metadata(doc.get("metadata") or {})
        spec = doc.get("spec") or {}
        size = len(json.dumps(spec)) + len(json.dumps(meta))
        if size > MAX_OBJECT_BYTES:
            raise StoreError(
                f"{kind}/{name}: {size} bytes of spec and metadata, more than the "
                f"{MAX_OBJECT_BYTES} an object may hold"
            )
        with self._tx() as db:
            row = db.execute(
                "SELECT generation, metadata, spec FROM resources "
                "WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO resources VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, NULL)",
                    (
                        kind,
                        namespace,
                        name,
                        str(uuid.uuid4()),
                        self._next_version(db),
                        now_rfc3339(),
                        json.dumps(meta, sort_keys=True),
                        json.dumps(spec, sort_keys=True),
                    ),
                )
                outcome = "created"
            else:
                generation, old_meta, old_spec = int(row[0]), json.loads(row[1]), json.loads(row[2])
                # Manual-action annotations set by `promote`/`abort`/`retry` survive a re-apply
                # of a manifest that does not mention them, as `kubectl apply` would keep them.
                kept = {
                    k: v
                    for k, v in (old_meta.get("annotations") or {}).items()
                    if k.startswith("pilotage.dev/")
                }
                if kept:
                    meta["annotations"] = {**kept, **(meta.get("annotations") or {})}
                if old_spec == spec and old_meta == meta:
                    outcome = "unchanged"
                else:
                    if old_spec != spec:
                        generation += 1
                    db.execute(
                        "UPDATE resources SET generation = ?, resource_version = ?, metadata = ?, "
                        "spec = ? WHERE kind = ? AND namespace = ? AND name = ?",
                        (
                            generation,
                            self._next_version(db),
                            json.dumps(meta, sort_keys=True),
                            json.dumps(spec, sort_keys=True),
                            kind,
                            namespace,
                            name,
                        ),
                    )
                    outcome = "configured"
        return ApplyResult(self.get(kind, name, namespace), outcome)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Resource]:
        rows = self._db.execute(
            "SELECT kind, namespace, name, uid, generation, resource_version, created, "
            "metadata, spec, status FROM resources "
            + where
            + " ORDER BY kind, namespace, created, name",
            args,
        ).fetchall()
        return [self._to_resource(r) for r in rows]

    @staticmethod
    def _to_resource(row: tuple[Any, ...]) -> Resource:
        kind, namespace, name, uid, generation, rv, created, meta, spec, status = row
        metadata = {
            **json.loads(meta),
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": generation,
            "resourceVersion": str(rv),
            "creationTimestamp": created,
        }
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": metadata,
            "spec": json.loads(spec),
        }
        if status:
            doc["status"] = json.loads(status)
        return parse_resource(doc, f"{kind}/{name}")

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NAMESPACE) -> Resource:
        found = self._select(
            "WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        )
        if not found:
            raise NotFound(f"{kind} {name!r} not found in namespace {namespace!r}")
        return found[0]

    def find(self, kind: str, name: str, namespace: str = DEFAULT_NAMESPACE) -> Resource | None:
        found = self._select(
            "WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        )
        return found[0] if found else None

    def objects(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        clauses, args = [], []
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._select(where, tuple(args))

    def create(self, resource: Resource) -> Resource:
        """Create a resource made by the control plane (e.g. a retraining TrainingJob)."""
        kind, namespace, name = _object_key(resource.dump())
        if self.find(kind, name, namespace) is not None:
            raise StoreError(f"{kind} {name!r} already exists")
        return self.apply(resource).resource

    def write_status(
        self,
        kind: str,
        name: str,
        status: dict[str, Any],
        namespace: str = DEFAULT_NAMESPACE,
        events: Sequence[tuple[str, str, str]] = (),
    ) -> bool:
        """Replace the status; False when the resource is gone. Unchanged status is not rewritten.

        ``events`` (type, reason, message) are recorded in the same transaction: a reader
        that sees the new status also sees the events that explain it.

        A status the kind's model refuses is refused here (StoreError), as the API server
        refuses one its schema does not allow: stored, it would make every read fail.
        """
        text = json.dumps(status, sort_keys=True)
        with self._tx() as db:
            for type_, reason, message in events:
                self._insert_event(db, kind, name, type_, reason, message, namespace)
            row = db.execute(
                "SELECT kind, namespace, name, uid, generation, resource_version, created, "
                "metadata, spec, status FROM resources "
                "WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                return False
            if row[-1] == text:
                return True
            try:
                self._to_resource((*row[:-1], text))
            except ManifestError as exc:
                raise StoreError(f"status refused: {exc}") from None
            db.execute(
                "UPDATE resources SET status = ?, resource_version = ? "
                "WHERE kind = ? AND namespace = ? AND name = ?",
                (text, self._next_version(db), kind, namespace, name),
            )
        return True

    def set_annotation(
        self, kind: str, name: str, key: str, value: str, namespace: str = DEFAULT_NAMESPACE
    ) -> Resource:
        with self._tx() as db:
            row = db.execute(
                "SELECT metadata FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"{kind} {name!r} not found in namespace {namespace!r}")
            meta = json.loads(row[0])
            meta.setdefault("annotations", {})[key] = value
            db.execute(
                "UPDATE resources SET metadata = ?, resource_version = ? "
                "WHERE kind = ? AND namespace = ? AND name = ?",
                (json.dumps(meta, sort_keys=True), self._next_version(db), kind, namespace, name),
            )
        return self.get(kind, name, namespace)

    def delete(self, kind: str, name: str, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
        """Delete a resource and, recursively, what it owns; returns ``Kind/name`` of each."""
        target = self.get(kind, name, namespace)
        deleted: list[str] = []
        pending = [target]
        while pending:
            res = pending.pop()
            uid = res.metadata.uid
            with self._tx() as db:
                db.execute(
                    "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                    (res.kind, namespace, res.name),
                )
                self._next_version(db)
            deleted.append(f"{res.kind}/{res.name}")
            for other in self.objects(namespace=namespace):
                refs = getattr(other.metadata, "ownerReferences", None) or []
                if any(isinstance(r, dict) and r.get("uid") == uid for r in refs):
                    pending.append(other)
        return deleted

    def resource_version(self) -> int:
        row = self._db.execute(
            "SELECT value FROM counters WHERE name = 'resourceVersion'"
        ).fetchone()
        return int(row[0]) if row else 0

    # -- events --------------------------------------------------------------------

    def record_event(
        self,
        kind: str,
        name: str,
        type_: str,
        reason: str,
        message: str,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        with self._tx() as db:
            self._insert_event(db, kind, name, type_, reason, message, namespace)

    @staticmethod
    def _insert_event(
        db: sqlite3.Connection,
        kind: str,
        name: str,
        type_: str,
        reason: str,
        message: str,
        namespace: str,
    ) -> None:
        db.execute(
            "INSERT INTO events (time, kind, namespace, name, type, reason, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now_rfc3339(), kind, namespace, name, type_, reason, message[:2048]),
        )

    def events(
        self,
        kind: str | None = None,
        name: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        after_id: int = 0,
    ) -> list[tuple[int, Event]]:
        clauses, args = ["namespace = ?", "id > ?"], [namespace, after_id]
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if name is not None:
            clauses.append("name = ?")
            args.append(name)
        rows = self._db.execute(
            "SELECT id, time, kind, namespace, name, type, reason, message FROM events WHERE "
            + " AND ".join(clauses)
            + " ORDER BY id",
            tuple(args),
        ).fetchall()
        return [(int(r[0]), Event(*r[1:])) for r in rows]

    # -- processes -----------------------------------------------------------------

    def save_process(self, rec: ProcessRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.key,
                    rec.role,
                    rec.owner,
                    rec.pid,
                    rec.start_ticks,
                    json.dumps(rec.argv),
                    rec.port,
                    rec.log_path,
                    json.dumps(rec.info, sort_keys=True),
                    rec.started,
                ),
            )

    def forget_process(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM processes WHERE key = ?", (key,))

    def processes(self) -> list[ProcessRecord]:
        rows = self._db.execute(
            "SELECT key, role, owner, pid, start_ticks, argv, port, log_path, info, started "
            "FROM processes ORDER BY started, key"
        ).fetchall()
        return [
            ProcessRecord(
                key=r[0],
                role=r[1],
                owner=r[2],
                pid=int(r[3]),
                start_ticks=int(r[4]),
                argv=json.loads(r[5]),
                port=None if r[6] is None else int(r[6]),
                log_path=r[7],
                info=json.loads(r[8]),
                started=r[9],
            )
            for r in rows
        ]
