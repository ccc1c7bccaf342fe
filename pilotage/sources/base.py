"""What a data source is, and the registry that picks one by the scheme of `spec.source.uri`.

A source says four things about a Dataset's `spec.source`:

* `problem`: what makes it unusable, naming the field (the control core calls it: pure, no
  I/O, no clock);
* `access`: what the run's pod needs to reach it (a claim to mount, the S3 store, the
  Dataset's own credentials Secret): the operator turns it into volumes and env;
* `load`: the whole table and its fingerprint (the trainer calls it);
* `local_file`: the data as a local CSV or Parquet file that profiling reads in chunks,
  or None for a source that only loads whole.

Reading needs pandas (and scikit-learn, boto3...), which the operator and the data plane
images do not have: a source module imports them inside the functions that read, never at
module level (tests/test_boundaries.py holds every module of this package to that).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlparse

from pilotage.trainer.errors import DataError

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from pilotage.api.dataset import Dataset, DataSource
    from pilotage.api.modeldeployment import ModelDeployment

CREDENTIALS_ENV = "PILOTAGE_CREDENTIALS_DIR"
"""Where a run finds the Secrets its sources name: one directory per Secret, one file per key
(`<dir>/<secret>/AWS_ACCESS_KEY_ID`), as Kubernetes mounts a Secret volume."""
DEFAULT_CREDENTIALS_DIR = "/var/run/secrets/pilotage.dev/credentials"


@dataclass(frozen=True)
class Access:
    """What a run's pod needs to read a URI."""

    claims: tuple[str, ...] = ()
    """PersistentVolumeClaims to mount (at `<pvcRoot>/<claim>`)."""
    s3: bool = False
    """The S3 store: its endpoint and region settings, and the operator-wide credentials
    Secret unless `secret` is set."""
    secret: str | None = None
    """The source's own credentials Secret, mounted at `$PILOTAGE_CREDENTIALS_DIR/<name>`;
    exactly this Secret, and not the operator-wide one, is used to read the source."""


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    fingerprint: str
    """sha256 of the content, by the source's rule (a file's bytes, a builtin frame's CSV)."""


@dataclass(frozen=True)
class Snapshot:
    """What a source that materialises its data wrote: one Parquet file, and the facts of
    how it was made (the keys of a Dataset's `status.snapshot`, camelCase)."""

    path: Path
    facts: dict[str, Any]


@dataclass(frozen=True)
class Unresolved:
    """Why a source that reads a ModelDeployment's spec cannot be read now (one line, and a
    condition reason); it may resolve later, when the deployment appears or changes."""

    reason: str
    message: str


@dataclass(frozen=True)
class DataFile:
    """A source's data as a local file that can be read in chunks."""

    path: Path
    format: Literal["csv", "parquet"]


class Source:
    """A kind of data source: subclass it in a module of this package and register it."""

    schemes: ClassVar[tuple[str, ...]]
    """URI schemes (without `://`) this source reads."""
    credentials: ClassVar[tuple[str, ...]] = ()
    """Keys a `credentialsSecretRef` Secret may hold for this source; empty: it takes none."""
    default_target: ClassVar[str | None] = None
    """The target column when `spec.target` is absent; None: the Dataset must name it."""
    snapshots: ClassVar[bool] = False
    """Whether the source is read through a snapshot that `materialise` writes (its content
    changes with the clock); a DriftMonitor then asks for a fresh one before a retrain."""
    fields: ClassVar[tuple[str, ...]] = ()
    """The source's own fields of `spec.source` (camelCase) beside uri, format and
    credentialsSecretRef; a field of another source is refused."""

    def problem(self, source: DataSource) -> str | None:
        """What makes ``source`` unusable, naming the field; None when it is usable."""
        scheme = scheme_of(source.uri)
        if source.credentials_secret_ref is not None and not self.credentials:
            return f"spec.source.credentialsSecretRef: {scheme}:// sources take no credentials"
        for name in OWN_FIELDS:
            if name not in self.fields and getattr(source, OWN_FIELDS[name]) is not None:
                return f"spec.source.{name}: only a {_owner_of(name)} source takes it"
        return None

    def deployment_read(self, source: DataSource) -> str | None:
        """The ModelDeployment of the Dataset's namespace whose spec ``source`` depends on
        (the control core observes it and passes it to `resolve`); None (the default): none."""
        return None

    def resolve(
        self, source: DataSource, deployment: ModelDeployment | None
    ) -> DataSource | Unresolved:
        """``source`` as the run reads it, completed from ``deployment`` (the one
        `deployment_read` names, None when it does not exist); pure, like `problem`."""
        return source

    def materialise(self, dataset: Dataset, directory: Path, now: datetime) -> Snapshot | None:
        """For a source whose content changes with the clock (a window of logs): write the
        Dataset's rows once, as a Parquet file in ``directory``, and say what went in. The
        profiling run publishes it in the artifact store and TrainingJobs read that file, so
        every run of one profile sees the same rows. None (the default): the source is read
        as it is."""
        return None

    def access(self, source: DataSource) -> Access:
        """What the run's pod needs to read ``source``."""
        return Access()

    def load(self, source: DataSource) -> LoadedData:
        """The whole table and its fingerprint; DataError with the reason when it cannot."""
        raise NotImplementedError

    @contextmanager
    def local_file(self, source: DataSource) -> Iterator[DataFile | None]:
        """The data as a local file for chunked reading (a remote one is copied to a
        temporary file, removed on exit), or None when the source only loads whole."""
        yield None


OWN_FIELDS = {"inferenceLogs": "inference_logs"}
"""Source-specific fields of `spec.source`: API name -> attribute of DataSource."""


def _owner_of(name: str) -> str:
    owners = [f"{s}://" for s, found in _SOURCES.items() if name in found.fields]
    return " or ".join(owners) or "(no registered)"


def scheme_of(uri: str) -> str:
    return urlparse(uri).scheme


def secret_keys(source: DataSource, keys: tuple[str, ...]) -> dict[str, str]:
    """The keys of the Secret ``source`` names, read from where the run's pod mounts it.

    Empty when the source names no Secret. A named Secret that is not there is a DataError:
    reading with other credentials (the ambient ones) instead would be a silent surprise.
    """
    ref = source.credentials_secret_ref
    if ref is None:
        return {}
    base = Path(os.environ.get(CREDENTIALS_ENV) or DEFAULT_CREDENTIALS_DIR)
    directory = base / ref.name
    if not directory.is_dir():
        raise DataError(
            f"spec.source.credentialsSecretRef: Secret {ref.name!r} is not mounted at "
            f"{directory} (${CREDENTIALS_ENV})"
        )
    found = {}
    for key in keys:
        path = directory / key
        if path.is_file():
            found[key] = path.read_text().strip()
    return found


# ---- the registry ---------------------------------------------------------------------

_SOURCES: dict[str, Source] = {}

S = TypeVar("S", bound=type[Source])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` (a Source subclass) read its schemes. A scheme read by
    another source already is refused."""
    instance = cls()
    for scheme in cls.schemes:
        if scheme in _SOURCES:
            raise ValueError(f"data source scheme {scheme}:// is registered already")
    for scheme in cls.schemes:
        _SOURCES[scheme] = instance
    return cls


def unregister(cls: type[Source]) -> None:
    """Remove a registered source (tests that register a toy one)."""
    for scheme in cls.schemes:
        if isinstance(_SOURCES.get(scheme), cls):
            del _SOURCES[scheme]


def schemes() -> list[str]:
    """Every registered scheme, in registration order."""
    return list(_SOURCES)


def uri_pattern() -> str:
    """The regular expression `spec.source.uri` must match (the CRD's pattern)."""
    return rf"^({'|'.join(schemes())})://.+$"


def unknown_scheme(uri: str) -> str:
    listed = ", ".join(f"{s}://" for s in schemes())
    return (
        f"unknown data source scheme {scheme_of(uri) or '(none)'!r} in {uri!r}; use one of {listed}"
    )


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` does not name a registered source (the CRD pattern's rule), or None."""
    if scheme_of(uri) not in _SOURCES:
        return unknown_scheme(uri)
    if not re.match(uri_pattern(), uri):
        return f"{uri!r} names nothing after {scheme_of(uri)}://"
    return None


def source_for(uri: str) -> Source:
    """The registered source that reads ``uri``; ValueError naming the schemes otherwise."""
    found = _SOURCES.get(scheme_of(uri))
    if found is None:
        raise ValueError(unknown_scheme(uri))
    return found


def spec_problem(source: DataSource) -> str | None:
    """What makes a Dataset's `spec.source` unusable, naming the field; None when usable."""
    try:
        found = source_for(source.uri)
    except ValueError as exc:
        return f"spec.source.uri: {exc}"
    return found.problem(source)


def deployment_read(source: DataSource) -> str | None:
    """The ModelDeployment ``source`` depends on (see `Source.deployment_read`), or None."""
    found = _SOURCES.get(scheme_of(source.uri))
    return found.deployment_read(source) if found is not None else None


def resolve(source: DataSource, deployment: ModelDeployment | None) -> DataSource | Unresolved:
    """``source`` as a run reads it (see `Source.resolve`)."""
    found = _SOURCES.get(scheme_of(source.uri))
    return found.resolve(source, deployment) if found is not None else source


def snapshots(source: DataSource) -> bool:
    """Whether ``source`` is read through a materialised snapshot (False for an unknown one)."""
    found = _SOURCES.get(scheme_of(source.uri))
    return found is not None and found.snapshots


def uri_access(uri: str) -> Access:
    """What a pod needs to reach ``uri`` read or written as a plain location (an artifact
    store, a model directory): the access of the source of its scheme, without a Secret of
    its own; nothing for a scheme no source reads."""
    from pilotage.api.dataset import DataSource

    found = _SOURCES.get(scheme_of(uri))
    if found is None or uri_problem(uri):
        return Access()
    return found.access(DataSource(uri=uri))
