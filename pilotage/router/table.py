"""The routing file and routing text: decode, read and write the routing document.

The document itself (its fields, ``parse_table``, ``RoutingTable``) is defined in
``pilotage.wire.routes``; this module adds what touches text and files: YAML/JSON
decoding with the manifest bounds, and reading and atomically replacing a routing file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pilotage.safeyaml import (
    MAX_BYTES_ENV,
    ManifestError,
    max_manifest_bytes,
    read_limited,
    safe_load,
    yaml_problem,
)
from pilotage.wire.routes import RoutingError, RoutingTable, parse_table

__all__ = ["decode_document", "load_table_file", "write_table_file"]


def decode_document(text: str | bytes, source: str = "routing document") -> Any:
    """Decode YAML or JSON text (JSON is YAML) into plain data, or raise RoutingError."""
    where = f"{source}: " if source else ""
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingError(f"{where}not valid YAML/JSON: {yaml_problem(exc)}") from None
    except ManifestError as exc:
        raise RoutingError(f"{where}{exc}") from None


def load_table_file(path: str | os.PathLike[str]) -> RoutingTable:
    """Read and validate a routing file; errors name the file."""
    p = Path(path)
    try:
        text = read_limited(p, max_manifest_bytes())
    except OSError as exc:
        raise RoutingError(f"{p}: cannot read routing file ({exc.strerror or exc})") from None
    except ManifestError as exc:
        raise RoutingError(f"{p}: {exc}") from None
    except ValueError as exc:
        raise RoutingError(f"{p}: routing file too large: {exc} ({MAX_BYTES_ENV})") from None
    try:
        return parse_table(decode_document(text, source=""))  # the file is named below
    except RoutingError as exc:
        raise RoutingError(f"{p}: {exc}") from None


def write_table_file(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> None:
    """Validate ``doc`` and replace the routing file atomically (write + fsync + rename).

    The router watching that file never sees a half-written document.
    """
    parse_table(doc)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(dict(doc), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
