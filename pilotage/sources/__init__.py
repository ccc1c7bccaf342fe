"""Data sources: where a Dataset's rows come from, one module per kind of `spec.source.uri`.

Each module defines a `Source` subclass (pilotage.sources.base says what one provides) and
registers it with `@register`; importing the module below is all it takes to make its
scheme known to the API's validation, the control core, the operator and the trainer.
docs/extending.md walks through adding one.
"""

from __future__ import annotations

from pilotage.sources import builtin, file, http, logs, pvc, s3  # noqa: F401 - each registers its source
from pilotage.sources.base import (
    CREDENTIALS_ENV,
    DEFAULT_CREDENTIALS_DIR,
    Access,
    DataFile,
    LoadedData,
    Snapshot,
    Source,
    Unresolved,
    deployment_read,
    register,
    resolve,
    scheme_of,
    schemes,
    snapshots,
    source_for,
    spec_problem,
    unknown_scheme,
    unregister,
    uri_access,
    uri_pattern,
    uri_problem,
)

__all__ = [
    "CREDENTIALS_ENV",
    "DEFAULT_CREDENTIALS_DIR",
    "Access",
    "DataFile",
    "LoadedData",
    "Snapshot",
    "Source",
    "Unresolved",
    "deployment_read",
    "register",
    "resolve",
    "scheme_of",
    "schemes",
    "snapshots",
    "source_for",
    "spec_problem",
    "unknown_scheme",
    "unregister",
    "uri_access",
    "uri_pattern",
    "uri_problem",
]
